/**
 * Issue 12: the Loom process dies (SIGKILL) mid-run and is started again under the same
 * instanceId; and case 3, a late report from a cancelled attempt. After the restart every
 * run completes, a step whose dispatch the store had recorded as accepted is not sent
 * again, and the reports the worker sent while Loom was down are retried and applied.
 */
import { expect, it } from 'vitest'
import { allEnded, call, eventually, launchRuns } from './support/api'
import { checkRuns, figures } from './support/invariants'
import { acceptedReports, keyOf, STEP_NAMES, unreported } from './support/log'
import { fleets, hold } from './support/suite'

const RUNS = 24
/** After the restart, every run has completed within this. */
const RECOVERY_BOUND_MS = 60_000
/** Time Loom has, after a worker accepted a dispatch, to record it (one UPDATE) before a kill may make it dispatch again. */
const ACCEPT_WRITE_MS = 500

const start = fleets()

it(`Loom SIGKILLed mid-run and restarted with the same instanceId: all ${RUNS} runs complete, nothing dispatched twice`, async () => {
  const M = 'loom-kill'
  const fleet = await start({ name: 'loom-kill', migrations: [M] })
  const runIds = await launchRuns(fleet.loomUrl, {
    migrationId: M,
    count: RUNS,
    workerUrl: fleet.workerUrl,
    config: { reportAfterMs: '1000-3000' },
  })

  expect(await eventually(() => acceptedReports(fleet.log()).length >= RUNS || undefined, 30_000)).toBe(true)
  const inFlightAtKill = unreported(fleet.log()).size
  const killedAt = Date.now()
  await fleet.loom().kill('SIGKILL')
  // Nothing changes the store while Loom is down: this is where each run stood when it died.
  const atKill = await fleet.storedRuns(M)
  // Keep Loom down while reports fall due, so that the worker has to retry them.
  await hold(3_000)
  await fleet.restartLoom()
  const restartedAt = Date.now()

  const ended = await allEnded(fleet.loomUrl, M, RECOVERY_BOUND_MS, restartedAt)
  const log = fleet.log()
  const { summary, problems } = await checkRuns({
    loomUrl: fleet.loomUrl,
    runIds,
    stored: await fleet.storedRuns(M),
    log,
    // Allowed again: the step in flight at the kill whose acceptance the store had not recorded
    // (`stepDispatchedAt`) because Loom died between the worker's answer and that write; an answer
    // given more than ACCEPT_WRITE_MS before the kill has had time to be written.
    failedDispatch: (first) => {
      const run = atKill.get(first.runId!)
      const answered = log.find((e) => e.kind === 'answered' && e.status === 202 && keyOf(e) === keyOf(first))
      return (
        run?.state === 'running' &&
        run.attempt === first.attempt &&
        STEP_NAMES[run.currentStep] === first.step &&
        !run.stepDispatchedAt &&
        (!answered || answered.at >= killedAt - ACCEPT_WRITE_MS)
      )
    },
  })
  const triedWhileDown = log.filter((e) => e.kind === 'call' && e.runId && e.error && e.at >= killedAt && e.at < restartedAt)
  const retriedKeys = new Set(triedWhileDown.map(keyOf))
  const appliedLater = new Set(
    acceptedReports(log)
      .map(keyOf)
      .filter((k) => retriedKeys.has(k)),
  )
  console.log(
    figures('Loom killed', summary, {
      inFlightAtKill,
      runningAtKill: [...atKill.values()].filter((r) => r?.state === 'running').length,
      dispatchedAtKill: [...atKill.values()].filter((r) => r?.state === 'running' && r.stepDispatchedAt).length,
      reportsTriedWhileDown: retriedKeys.size,
      reportsAppliedAfterRestart: appliedLater.size,
      completedAfterRestartMs: ended,
    }),
  )

  expect(inFlightAtKill, 'steps in flight when Loom died').toBeGreaterThan(0)
  expect(problems).toEqual([])
  expect(ended, `every run ends within ${RECOVERY_BOUND_MS} ms of the restart`).toBeDefined()
  expect(summary).toMatchObject({
    runs: RUNS,
    completed: RUNS,
    stuck: 0,
    failedSilently: 0,
    reportsLost: 0,
    lateReportsApplied: 0,
    duplicateDispatches: 0,
  })
  // Reports sent while Loom was down were retried by the worker, and each got in.
  expect(retriedKeys.size).toBeGreaterThan(0)
  expect([...retriedKeys].filter((k) => !appliedLater.has(k))).toEqual([])
})

it(`a late report from a cancelled attempt is refused 409 and does not move the new attempt (issue case 3), ${RUNS} runs`, async () => {
  const M = 'late-report'
  const fleet = await start({ name: 'late-report', migrations: [M] })
  // The worker never reports by itself here: the test sends the reports, late ones included.
  const runIds = await launchRuns(fleet.loomUrl, {
    migrationId: M,
    count: RUNS,
    workerUrl: fleet.workerUrl,
    config: { reportAfterMs: 'never' },
  })
  const firstStep = STEP_NAMES[0]
  // Attempt A: each run's first step is dispatched; then the operator cancels and runs it again (attempt B).
  const firstAttempts = await eventually(() => {
    const log = fleet.log()
    const found = runIds.map((runId) => log.find((e) => e.kind === 'answered' && e.runId === runId && e.step === firstStep))
    return found.every(Boolean) ? found.map((e) => e!.attempt!) : undefined
  }, 30_000)
  expect(firstAttempts).toHaveLength(RUNS)
  for (const runId of runIds) expect((await call(fleet.loomUrl, 'POST', `/runs/${runId}/cancel`)).status).toBe(204)
  await Promise.all(
    runIds.map(async (runId) => {
      const candidateId = runId.split('__')[1]
      expect((await call(fleet.loomUrl, 'POST', `/migrations/${M}/queue`, { candidateId })).status).toBe(202)
      expect((await call(fleet.loomUrl, 'POST', `/runs/${runId}/execute`)).status).toBe(202)
    }),
  )
  const newAttempts = await eventually(() => {
    const log = fleet.log()
    const found = runIds.map((runId, i) =>
      log.find((e) => e.kind === 'answered' && e.runId === runId && e.step === firstStep && (e.attempt ?? 0) > firstAttempts![i]!),
    )
    return found.every(Boolean) ? found.map((e) => e!.attempt!) : undefined
  }, 30_000)
  expect(newAttempts).toHaveLength(RUNS)

  // The worker's report of attempt A arrives now, late: refused, and nothing moves.
  const late = await Promise.all(
    runIds.map((runId, i) =>
      call(fleet.loomUrl, 'POST', `/event/${runId}`, {
        stepName: firstStep,
        candidate: { id: runId.split('__')[1] },
        success: true,
        attempt: firstAttempts![i],
      }),
    ),
  )
  expect(late.map((a) => a.status)).toEqual(runIds.map(() => 409))
  expect(late.every((a) => a.body?.code === 'conflict')).toBe(true)
  // Give a wrongly applied report the time to move a run on before looking (the engine dispatches within milliseconds).
  await hold(1_000)
  const stored = await fleet.storedRuns(M)
  const moved = runIds.filter((runId, i) => {
    const run = stored.get(runId)
    return run?.state !== 'running' || run.attempt !== newAttempts![i] || run.currentStep !== 0 || run.steps.length > 0
  })
  const dispatchedSecond = fleet.log().filter((e) => e.kind === 'dispatch' && e.step === STEP_NAMES[1])
  console.log(
    `[faults] late reports: ${JSON.stringify({ runs: RUNS, refused409: late.filter((a) => a.status === 409).length, moved: moved.length })}`,
  )
  expect(moved).toEqual([])
  expect(dispatchedSecond).toEqual([])

  // The report of the current attempt does move each run on: the fence refuses only the stale one.
  const current = await Promise.all(
    runIds.map((runId, i) =>
      call(fleet.loomUrl, 'POST', `/event/${runId}`, {
        stepName: firstStep,
        candidate: { id: runId.split('__')[1] },
        success: true,
        attempt: newAttempts![i],
      }),
    ),
  )
  expect(current.map((a) => a.status)).toEqual(runIds.map(() => 202))
  const next = await eventually(() => {
    const log = fleet.log()
    return runIds.every((runId, i) =>
      log.some((e) => e.kind === 'answered' && e.runId === runId && e.step === STEP_NAMES[1] && e.attempt === newAttempts![i]),
    )
      ? true
      : undefined
  }, 30_000)
  expect(next).toBe(true)
})
