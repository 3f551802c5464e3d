/**
 * Issue 12, case 1: the store goes away while runs are in flight (local engine, real
 * PostgreSQL behind a proxy the test cuts). Every run must end — `completed`, or
 * `not_started` with its error visible — with no run stuck, no accepted report lost, no
 * report of another attempt applied and no step dispatched twice; requests made during the
 * outage answer 503 quickly instead of hanging.
 */
import { expect, it } from 'vitest'
import { allEnded, eventually, launchRuns, prober, type Sample } from './support/api'
import { checkRuns, figures } from './support/invariants'
import { acceptedReports, type Logged, unreported } from './support/log'
import { fleets, hold, nextBurst } from './support/suite'

const RUNS = 24
/** No request, from an operator or the worker, may take longer than this, outage or not. */
const REQUEST_BOUND_MS = 10_000
/** After the store is back, every run has ended within this. */
const RECOVERY_BOUND_MS = 60_000

const start = fleets()

/** Reports arrive in bursts on the whole second; each fault strikes as the first of a burst is accepted, while runs move on. */
const BURSTS = (reportAfterMs: string) => ({ reportAfterMs, reportOnTheSecond: 'true' })

/** How long Loom took to answer the worker's calls (reports), and the longest of the probe's. */
function slowest(samples: Sample[], log: Logged[]): { probe: number; worker: number } {
  const calls = log.filter((e) => e.kind === 'call')
  return { probe: Math.max(0, ...samples.map((s) => s.ms)), worker: Math.max(0, ...calls.map((c) => c.ms)) }
}

it(`store down 30 s mid-run (proxy cut, new connections blackholed): all ${RUNS} runs end`, async () => {
  const M = 'store-down'
  const fleet = await start({ name: 'store-down', migrations: [M] })
  const runIds = await launchRuns(fleet.loomUrl, {
    migrationId: M,
    count: RUNS,
    workerUrl: fleet.workerUrl,
    config: BURSTS('1000-3000'),
  })
  const probe = prober(fleet.loomUrl, `/migrations/${M}/candidates`, 500)

  // Mid-run: a third of the reports are in, other steps are in flight and their reports are due.
  expect(await eventually(() => acceptedReports(fleet.log()).length >= RUNS || undefined, 30_000)).toBe(true)
  await nextBurst(fleet.log)
  fleet.proxy.cut('blackhole')
  const inFlightAtCut = unreported(fleet.log()).size
  const cutAt = Date.now()
  await hold(30_000)
  fleet.proxy.restore()
  const restoredAt = Date.now()

  const ended = await allEnded(fleet.loomUrl, M, RECOVERY_BOUND_MS, restoredAt)
  const samples = await probe.stop()
  const log = fleet.log()
  const { summary, problems } = await checkRuns({ loomUrl: fleet.loomUrl, runIds, stored: await fleet.storedRuns(M), log })
  const during = samples.filter((s) => s.at >= cutAt && s.at < restoredAt)
  const reportsRefusedDuringOutage = log.filter(
    (e) => e.kind === 'call' && e.runId && e.at >= cutAt && e.at < restoredAt + 1_000 && e.status === 503,
  )
  const slow = slowest(samples, log)
  console.log(
    figures('store down 30 s', summary, {
      inFlightAtCut,
      endedAfterRestoreMs: ended,
      probesDuringOutage: during.length,
      probes503: during.filter((s) => s.status === 503).length,
      reportsAnswered503: reportsRefusedDuringOutage.length,
      slowestProbeMs: slow.probe,
      slowestWorkerCallMs: slow.worker,
    }),
  )

  expect(inFlightAtCut, 'steps in flight when the store went down').toBeGreaterThan(0)
  expect(problems).toEqual([])
  expect(ended, `every run ends within ${RECOVERY_BOUND_MS} ms of the store coming back`).toBeDefined()
  expect(summary).toMatchObject({ runs: RUNS, stuck: 0, failedSilently: 0, reportsLost: 0, lateReportsApplied: 0, duplicateDispatches: 0 })
  expect(summary.completed + summary.failedVisibly).toBe(RUNS)
  // A store outage lets no dispatch fail twice over: the worker is up; a dispatch the store kept from starting was never sent.
  expect(summary.failedDispatches).toBe(0)
  // Requests made while the store was down were answered, 503, and quickly.
  expect(during.length).toBeGreaterThan(0)
  expect(during.filter((s) => s.status === 503).length).toBeGreaterThan(0)
  expect(during.every((s) => s.status === 503 || s.status === 200)).toBe(true)
  expect(slow.probe).toBeLessThan(REQUEST_BOUND_MS)
  expect(slow.worker).toBeLessThan(REQUEST_BOUND_MS)
})

it(`store connections killed twice mid-run (pg_terminate_backend): all ${RUNS} runs end, no request waits`, async () => {
  const M = 'store-killed'
  const fleet = await start({ name: 'store-killed', migrations: [M] })
  const runIds = await launchRuns(fleet.loomUrl, {
    migrationId: M,
    count: RUNS,
    workerUrl: fleet.workerUrl,
    config: BURSTS('500-2000'),
  })
  const probe = prober(fleet.loomUrl, `/migrations/${M}/candidates`, 250)

  const terminated: number[] = []
  const inFlight: number[] = []
  for (const reports of [RUNS / 2, RUNS * 1.5]) {
    expect(await eventually(() => acceptedReports(fleet.log()).length >= reports || undefined, 30_000)).toBe(true)
    await nextBurst(fleet.log)
    terminated.push(await fleet.terminateBackends())
    inFlight.push(unreported(fleet.log()).size)
  }
  const lastKillAt = Date.now()

  const ended = await allEnded(fleet.loomUrl, M, RECOVERY_BOUND_MS, lastKillAt)
  const samples = await probe.stop()
  const log = fleet.log()
  const { summary, problems } = await checkRuns({ loomUrl: fleet.loomUrl, runIds, stored: await fleet.storedRuns(M), log })
  const slow = slowest(samples, log)
  console.log(
    figures('store connections killed twice', summary, {
      terminated,
      inFlight,
      endedAfterLastKillMs: ended,
      probes: samples.length,
      probes503: samples.filter((s) => s.status === 503).length,
      reportsAnswered503: log.filter((e) => e.kind === 'call' && e.runId && e.status === 503).length,
      slowestProbeMs: slow.probe,
      slowestWorkerCallMs: slow.worker,
    }),
  )

  expect(
    terminated.every((n) => n > 0),
    'Loom had connections to terminate both times',
  ).toBe(true)
  expect(
    inFlight.every((n) => n > 0),
    'steps were in flight both times',
  ).toBe(true)
  expect(problems).toEqual([])
  expect(ended, `every run ends within ${RECOVERY_BOUND_MS} ms of the last kill`).toBeDefined()
  expect(summary).toMatchObject({ runs: RUNS, stuck: 0, failedSilently: 0, reportsLost: 0, lateReportsApplied: 0, duplicateDispatches: 0 })
  expect(summary.completed + summary.failedVisibly).toBe(RUNS)
  expect(summary.failedDispatches).toBe(0)
  expect(samples.every((s) => s.status === 503 || s.status === 200)).toBe(true)
  expect(slow.probe).toBeLessThan(REQUEST_BOUND_MS)
  expect(slow.worker).toBeLessThan(REQUEST_BOUND_MS)
})
