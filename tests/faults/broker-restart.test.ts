/**
 * Fault: the MQTT broker restarted mid-run (issue 12, "the broker restarted"). Loom dispatches
 * steps over a Mosquitto of this test's own (free port, never the machine's 1883) to a
 * `@loom/worker` worker on MQTT that echoes the attempt; the broker is stopped by PID while
 * steps are dispatched and handled, and started again on the same port. Every run must end
 * `completed`, or `not_started` with a visible error, within a stated bound after the broker is
 * back; no run stuck; no step dispatched again after its worker accepted it (a dispatch retried
 * because the earlier one failed is allowed, and counted); no report lost.
 */
import { createLoom, localEngine, memoryStore, type Loom, type LoomInstance } from '@loom/core'
import { mqttDispatcher } from '@loom/mqtt'
import { createWorker, defineMigration } from '@loom/worker'
import mqtt, { type MqttClient } from 'mqtt'
import { afterAll, afterEach, beforeAll, expect, it } from 'vitest'
import { countBy, dispatchKey, Ledger, lostReports, outcomes, summarize, tally, type RunOutcome } from './support-temporal/ledger'
import { startRestartableMosquitto, type RestartableMosquitto } from './support-temporal/mosquitto'
import { pollUntil } from './support-temporal/processes'

const RUNS = 24
const STEPS = ['bump-chart', 'open-pr', 'verify'] as const
/**
 * A dispatch is tried 4 times, each waiting 2 s for the worker's acceptance, 0.5, 1 and 2 s
 * apart: about 11.5 s from its first try to its last answer. A shorter outage is ridden out by
 * retries; a longer one makes the dispatches that began at the stop fail.
 */
const SHORT_OUTAGE_MS = 5_000
const LONG_OUTAGE_MS = 13_000
/** How long a step's handler works before the worker reports it. */
const HANDLER_MS = [300, 2_500] as const
/** MQTT dispatch waits this long for the worker's acceptance. */
const DISPATCH_TIMEOUT_MS = 2_000
/**
 * The bound: every run ends within this long after the broker accepts connections again. The
 * clients reconnect every 200 ms; a dispatch that failed is retried after 0.5, 1 and 2 s (each
 * try waits 2 s for an answer), and the slowest handler takes 2.5 s.
 */
const BOUND_MS = 30_000

let broker: RestartableMosquitto
beforeAll(async () => {
  broker = await startRestartableMosquitto()
})
afterAll(async () => {
  await broker?.close()
})

const cleanups: Array<() => Promise<unknown>> = []
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup().catch(() => {})
})

async function connect(name: string): Promise<MqttClient> {
  const client = await mqtt.connectAsync(broker.url, {
    protocolVersion: 5,
    clientId: `loom-faults-${name}-${crypto.randomUUID().slice(0, 8)}`,
    reconnectPeriod: 200,
    connectTimeout: 2_000,
  })
  // The broker going away is the point of the test; mqtt.js reports it as error events.
  client.on('error', () => {})
  cleanups.push(() => client.endAsync(true))
  return client
}

/** Starts RUNS runs, stops the broker mid-run for `outageMs`, starts it again and waits for every run to end (bounded); returns what it saw. */
async function restartMidRun(M: string, outageMs: number) {
  const ledger = new Ledger()
  const store = memoryStore()
  const prefix = `loom-faults-${crypto.randomUUID().slice(0, 8)}`
  const loomErrors: string[] = []
  const workerErrors: string[] = []
  const reconnects = { server: 0, worker: 0 }

  const [serverClient, workerClient] = [await connect('server'), await connect('worker')]
  serverClient.on('reconnect', () => reconnects.server++)
  workerClient.on('reconnect', () => reconnects.worker++)
  const dispatcher = mqttDispatcher(serverClient, { topicPrefix: prefix, timeoutMs: DISPATCH_TIMEOUT_MS })
  cleanups.push(() => dispatcher.close())

  const loom: LoomInstance = createLoom({
    store,
    engine: localEngine({ dispatchAttempts: 4, retryDelayMs: 500, onError: (error) => loomErrors.push((error as Error).message) }),
    dispatcher: ledger.recording(dispatcher),
    instanceId: 'faults-broker',
    reconcile: { intervalMs: 500 },
    onError: (error) => loomErrors.push((error as Error).message),
  })
  cleanups.push(() => loom.close())

  // The worker reports through this Loom; each report and its answer is counted.
  const reporting: Loom = {
    ...loom,
    async complete(runId, event) {
      const record = ledger.report({ runId, attempt: event.attempt, stepName: event.stepName })
      const started = Date.now()
      try {
        await loom.complete(runId, event)
        record.answer = 'accepted'
      } catch (error) {
        record.answer = (error as { code?: string }).code ?? (error as Error).message
        throw error
      } finally {
        record.tookMs = Date.now() - started
      }
    },
  }

  const handled = new Map<string, number>()
  let handling = 0
  const candidates = Array.from({ length: RUNS }, (_, i) => ({ id: `svc-${String(i).padStart(2, '0')}` }))
  const worker = createWorker({
    app: 'charts',
    loom: reporting,
    dispatch: { mqtt: workerClient, topicPrefix: prefix },
    retry: { attempts: 5, initialDelayMs: 100 },
    onError: (error) => workerErrors.push((error as Error).message),
    migrations: [
      defineMigration({
        id: M,
        name: 'Broker restart',
        steps: STEPS.map((name) => ({
          name,
          run: async ({ request }) => {
            const key = dispatchKey(request)
            handled.set(key, (handled.get(key) ?? 0) + 1)
            handling++
            try {
              await new Promise((resolve) => setTimeout(resolve, HANDLER_MS[0] + Math.random() * (HANDLER_MS[1] - HANDLER_MS[0])))
              return { metadata: { attempt: String(request.attempt) } }
            } finally {
              handling--
            }
          },
        })),
        discover: () => candidates,
      }),
    ],
  })
  cleanups.push(() => worker.stop())
  // Subscribes to the dispatch topic, announces through Loom and submits the candidates.
  await worker.start()
  expect((await loom.listCandidates(M)).map((c) => c.id)).toEqual(candidates.map((c) => c.id))

  const runs = await Promise.all(candidates.map(async (c) => ({ runId: await loom.queue(M, c.id), candidateId: c.id })))
  await Promise.all(runs.map((r) => loom.execute(r.runId)))

  // Stop the broker once some runs are past step 1 and many handlers are still working.
  expect(await pollUntil(() => ledger.dispatches.length >= RUNS + 4 && handling >= 8, 60_000)).toBe(true)
  const atStop = { dispatches: ledger.dispatches.length, reports: ledger.reports.length, handling }

  ledger.faultOn = true
  const stopStarted = Date.now()
  const stoppedBy = await broker.stop()
  // The outage itself: its length is the fault, not a wait for a condition.
  await new Promise((resolve) => setTimeout(resolve, outageMs))
  await broker.start()
  ledger.faultOn = false
  const backAt = Date.now()
  const reconnectedMs = await timeUntil(() => serverClient.connected && workerClient.connected, BOUND_MS)

  const finishedAt = new Map<string, number>()
  let final: RunOutcome[] = []
  await pollUntil(async () => {
    final = await outcomes(loom, store, M, runs)
    for (const o of final) if (o.status !== 'running' && !finishedAt.has(o.runId)) finishedAt.set(o.runId, Date.now() - backAt)
    return final.every((o) => o.status === 'completed' || o.status === 'not_started')
  }, BOUND_MS)
  // Handlers still working when the bound ran out are not the fault's: let them report before counting.
  await pollUntil(() => handling === 0 && ledger.reports.every((r) => r.answer !== undefined), 10_000)

  const { retries, duplicates } = ledger.redispatches()
  const failedDispatches = ledger.dispatches.filter((d) => d.outcome?.ok === false)
  const notStarted = await Promise.all(
    final
      .filter((o) => o.status === 'not_started')
      .map(async (o) => {
        const results = (await loom.runStatus(o.runId)).result.results
        return { runId: o.runId, error: results.find((r) => !r.success)?.metadata?.error }
      }),
  )
  const stuck = final.filter((o) => o.status !== 'completed' && o.status !== 'not_started')
  const lost = lostReports(ledger, final, STEPS)
  const observed = {
    atStop,
    stoppedBy,
    stopMs: backAt - stopStarted - outageMs,
    reconnectedMs,
    reconnects,
    statuses: tally(final),
    slowestRunAfterBackMs: Math.max(0, ...finishedAt.values()),
    dispatches: ledger.dispatches.length,
    failedDispatches: failedDispatches.length,
    failedDispatchReasons: summarize(
      failedDispatches.map((d) => (d.outcome?.ok === false ? d.outcome.error.replace(/run \S+/, 'run …') : '')),
    ),
    retriesAfterFailedDispatch: retries.length,
    stepsRetried: new Set(retries.map(dispatchKey)).size,
    duplicates: duplicates.map(dispatchKey),
    handledTwice: [...handled].filter(([, n]) => n > 1).map(([key, n]) => `${key} ×${n}`),
    reports: ledger.reports.length,
    reportsDuringOutage: ledger.reports.filter((r) => r.duringFault).length,
    answers: countBy(ledger.reports.map((r) => String(r.answer))),
    lostReports: lost.map((r) => `${r.runId}/${r.stepName} answered ${r.answer}`),
    notStarted,
    stuck: stuck.map((o) => `${o.runId} ${o.status} (reported: ${o.steps.map((s) => s.stepName).join(',') || 'none'})`),
    loomErrors: summarize(loomErrors),
    workerErrors: summarize(workerErrors),
  }
  console.log(`[faults] broker restart, ${outageMs / 1000} s down:`, JSON.stringify(observed, null, 1))
  return { observed, final, ledger, handled }
}

/** What holds whatever the outage: every run ended, none stuck, no accepted step dispatched again, no report lost. */
function expectNothingStuckOrLost({ observed, final, ledger, handled }: Awaited<ReturnType<typeof restartMidRun>>) {
  // The fault hit runs in flight: dispatches failed while the broker was down.
  expect(observed.failedDispatches).toBeGreaterThan(0)
  // Every run ended within the bound: completed, or not_started with an error that names the step and its worker app.
  expect(observed.stuck).toEqual([])
  expect(observed.slowestRunAfterBackMs).toBeLessThanOrEqual(BOUND_MS)
  for (const n of observed.notStarted)
    expect(n.error, `${n.runId} is not_started without a visible error`).toMatch(/step "[a-z-]+".*worker app charts/)
  // A completed run has its three steps, each reported once and in order.
  for (const o of final.filter((f) => f.status === 'completed')) expect(o.steps.map((s) => s.stepName)).toEqual([...STEPS])
  // No step dispatched again after its worker accepted it; retries follow only failed dispatches.
  expect(observed.duplicates).toEqual([])
  expect(observed.handledTwice).toEqual([])
  // No report lost: each was taken (or refused because its run had ended), and none left a run waiting.
  expect(observed.lostReports).toEqual([])
  expect(Object.keys(observed.answers).filter((a) => a !== 'accepted' && a !== 'conflict')).toEqual([])
  expect(ledger.reports.length).toBe([...handled.values()].reduce((a, b) => a + b, 0))
}

it(`completes ${RUNS} runs × ${STEPS.length} steps over MQTT when the broker is down ${SHORT_OUTAGE_MS / 1000} s mid-run`, {
  timeout: 90_000,
}, async () => {
  const seen = await restartMidRun('broker-restart-short', SHORT_OUTAGE_MS)
  expectNothingStuckOrLost(seen)
  // Retries outlast the outage: every run completes.
  expect(seen.observed.statuses).toEqual({ completed: RUNS })
})

it(`ends ${RUNS} runs completed or not_started with the error when the broker is down ${LONG_OUTAGE_MS / 1000} s mid-run`, {
  timeout: 90_000,
}, async () => {
  const seen = await restartMidRun('broker-restart-long', LONG_OUTAGE_MS)
  expectNothingStuckOrLost(seen)
  // The dispatches in flight at the stop ran out of retries: those runs are not_started, and say why.
  expect(seen.observed.notStarted.length).toBeGreaterThan(0)
  expect((seen.observed.statuses.completed ?? 0) + (seen.observed.statuses.not_started ?? 0)).toBe(RUNS)
})

async function timeUntil(probe: () => boolean, ms: number): Promise<number | undefined> {
  const started = Date.now()
  return (await pollUntil(probe, ms)) ? Date.now() - started : undefined
}
