/**
 * Issue 12, case 4: the worker process dies (SIGKILL) with steps in hand and is started
 * again. A step it had accepted and never reported is lost with it: that run fails at the
 * step's deadline (`config.timeout: '5s'`) and returns to `not_started` with an error naming
 * the step, the worker app and the deadline. Every other run completes — those executed
 * while the worker was down too (Loom retries their dispatch until it is back); none stays running.
 */
import { expect, it } from 'vitest'
import { allEnded, candidateId, eventually, executeRuns, launchRuns } from './support/api'
import { checkRuns, figures } from './support/invariants'
import { acceptedReports, keyOf, unreported, WORKER_APP } from './support/log'
import { fleets } from './support/suite'

const RUNS = 24
/** Runs executed while the worker is down. */
const LATE_RUNS = 8
const TIMEOUT = '5s'
/** After the kill, every run has ended within this: the deadline, a reconciler tick, and slack for two loaded cores. */
const END_BOUND_MS = 45_000

const start = fleets()

it(`worker SIGKILLed with steps of ${RUNS} runs in flight, ${LATE_RUNS} more executed while it is down, restarted: lost steps fail at their ${TIMEOUT} deadline, the other runs complete`, async () => {
  const M = 'worker-kill'
  const fleet = await start({ name: 'worker-kill', migrations: [M] })
  const firstRuns = await launchRuns(fleet.loomUrl, {
    migrationId: M,
    count: RUNS,
    spare: LATE_RUNS,
    workerUrl: fleet.workerUrl,
    // Well inside the deadline, so that only a lost step can miss it.
    config: { timeout: TIMEOUT, reportAfterMs: '200-1000' },
  })

  expect(await eventually(() => acceptedReports(fleet.log()).length >= RUNS || undefined, 30_000)).toBe(true)
  const killedAt = Date.now()
  await fleet.worker().kill('SIGKILL')
  // Accepted by the dead worker and never reported: their report timers died with it.
  const lost = unreported(fleet.log(), 1)
  const lateRuns = await executeRuns(
    fleet.loomUrl,
    M,
    Array.from({ length: LATE_RUNS }, (_, i) => candidateId(RUNS + i + 1)),
  )
  await fleet.restartWorker()
  const runIds = [...firstRuns, ...lateRuns]

  const ended = await allEnded(fleet.loomUrl, M, END_BOUND_MS, killedAt)
  const log = fleet.log()
  const stored = await fleet.storedRuns(M)
  const answeredBefore = (d: { runId?: string; step?: string; attempt?: number }, at: number) =>
    log.some((e) => e.kind === 'answered' && e.generation === 1 && e.status === 202 && e.at < at && keyOf(e) === keyOf(d))
  const { summary, failures, problems } = await checkRuns({
    loomUrl: fleet.loomUrl,
    runIds,
    stored,
    log,
    // Allowed again: a dispatch the dead worker received and never answered, or answered as it died (Loom saw it fail and retried).
    failedDispatch: (first) => first.generation === 1 && !answeredBefore(first, killedAt - 200),
  })

  const lostRuns = new Map([...lost].map((key) => [key.split('|')[0]!, key.split('|')[2]!]))
  const wrong: string[] = []
  for (const runId of runIds) {
    const step = lostRuns.get(runId)
    const failure = failures.get(runId)
    const run = stored.get(runId)
    if (!step) {
      if (run?.state !== 'completed') wrong.push(`${runId}: not lost, but ${run?.state} (${failure?.step}: ${failure?.error})`)
      continue
    }
    // A report the dead worker sent just before it died may have been stored although it never saw the answer.
    const reportedByDead = run?.steps.some((s) => s.result.stepName === step && s.result.metadata?.reportedBy === 'generation-1')
    if (run?.state === 'completed' && reportedByDead) continue
    // Answered as the worker died, the answer lost: Loom dispatched it again to the new worker.
    if (run?.state === 'completed' && !answeredBefore({ runId, step, attempt: run.attempt }, killedAt - 200)) continue
    if (run?.state !== 'failed' || failure?.step !== step) {
      wrong.push(`${runId}: lost at ${step}, but ${run?.state} (${JSON.stringify(failure)})`)
      continue
    }
    for (const needed of [step, WORKER_APP, TIMEOUT]) {
      if (!failure.error.includes(needed)) wrong.push(`${runId}: the error "${failure.error}" does not name ${needed}`)
    }
  }
  console.log(
    figures('worker killed', summary, {
      lostSteps: lost.size,
      endedAfterKillMs: ended,
      deadlineErrors: [...new Set([...failures.values()].map((f) => f.error))].slice(0, 3),
    }),
  )

  expect(lost.size, 'steps the killed worker had accepted and not reported').toBeGreaterThan(0)
  expect(problems).toEqual([])
  expect(wrong).toEqual([])
  expect(ended, `every run ends within ${END_BOUND_MS} ms of the kill`).toBeDefined()
  expect(summary).toMatchObject({
    runs: RUNS + LATE_RUNS,
    stuck: 0,
    failedSilently: 0,
    reportsLost: 0,
    lateReportsApplied: 0,
    duplicateDispatches: 0,
  })
  expect(summary.failedVisibly).toBeGreaterThan(0)
  expect(summary.completed).toBeGreaterThanOrEqual(LATE_RUNS)
  expect(summary.completed + summary.failedVisibly).toBe(RUNS + LATE_RUNS)
})
