/**
 * Issue 14, "Done means": events come from the store, so they cross processes. Two API
 * processes, A and B (`loomApp` over one PostgreSQL schema, the Temporal engine), and a
 * Temporal worker in a third, C, on a Temporal dev server of this test's own; the worker app
 * is this process. An action through A, and a step dispatched and a run completed by C, reach
 * B's `GET /events` within 1 s, once each. B SIGKILLed while changes go on and started again:
 * its stream resumed with `Last-Event-ID` gives exactly the entries of the store's log it
 * missed (read through A), then goes on live.
 *
 * "Within 1 s" is measured twice for each event, both times to the moment this process read it
 * off B's stream: from the moment this process saw the change made (it sent the request that
 * makes it, the worker app answered the dispatch, or a poll of A first showed the run completed),
 * and from the entry's own `at`, stamped by the process that wrote it (all the processes share
 * this machine's clock).
 */
import postgres from 'postgres'
import { migrate } from '@loom/postgres'
import { afterAll, beforeAll, expect, it, onTestFailed } from 'vitest'
import { call } from './support/api'
import { type Child, freePort, startChild } from './support/children'
import { hold } from './support/suite'
import { openEventStream, type EventStream, type StreamedEvent } from './support-events/event-stream'
import { startWorkerApp, type WorkerApp } from './support-events/worker-app'
import { pollUntil } from './support-temporal/processes'
import { startRestartableTemporal, type RestartableTemporal } from './support-temporal/temporal-dev-server'

const DATABASE_URL = process.env.DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/test'
const M = 'events-across'
const STEPS = ['bump-chart', 'open-pr'] as const
const CANDIDATES = Array.from({ length: 8 }, (_, i) => `svc-${String(i + 1).padStart(2, '0')}`)
/** The bound the issue sets: a change reaches another process's stream within this. */
const WITHIN_MS = 1_000
/** How long the test waits for something before it says it did not come (a late event then fails on its latency). */
const WAIT_MS = 10_000
/** After the events awaited have come, a duplicate of one would have come within this. */
const SETTLE_MS = 500
/** The bearer token of the Temporal worker's dispatches: the mark of process C. */
const WORKER_TOKEN = `temporal-worker-${crypto.randomUUID().slice(0, 8)}`

const schema = `faults_events_${Math.random().toString(36).slice(2, 8)}`
const taskQueue = `loom-events-${crypto.randomUUID().slice(0, 8)}`
const admin = postgres(DATABASE_URL, { max: 2, onnotice: () => {} })
const cleanups: Array<() => Promise<unknown>> = []
/** Per event: ms to B's stream from the change as this process saw it (`fromSeen`) and from the entry's `at` (`fromAt`). */
const latencies: Record<string, Record<string, number>> = {}

let temporal: RestartableTemporal
let workerApp: WorkerApp
let apiA: string
let apiB: string
let startB: () => Promise<Child>
let b: Child | undefined
let children: Array<[string, () => Child | undefined]> = []
/** B's stream from before the first action until B is killed. */
let firstStream: EventStream
/** The newest entry of the log when B's first stream connected: its events are the ones after. */
let headAtConnect: string | undefined

beforeAll(async () => {
  const [portA, portB] = [await freePort(), await freePort()]
  apiA = `http://127.0.0.1:${portA}/api`
  apiB = `http://127.0.0.1:${portB}/api`
  workerApp = await startWorkerApp({ api: apiA })
  cleanups.push(() => workerApp.close())
  const startingTemporal = startRestartableTemporal().then((server) => {
    temporal = server
    cleanups.push(() => server.close())
  })
  await Promise.all([startingTemporal, migrate(admin, { schema })])

  const shared = {
    EVENTS_DATABASE_URL: DATABASE_URL,
    EVENTS_SCHEMA: schema,
    EVENTS_TEMPORAL_ADDRESS: temporal.address,
    EVENTS_TASK_QUEUE: taskQueue,
  }
  const startApi = (instanceId: string, port: number) =>
    startChild('../support-events/api-main.ts', { ...shared, EVENTS_INSTANCE_ID: instanceId, EVENTS_PORT: String(port) }, 60_000)
  startB = () => startApi('api-b', portB)
  const started = await Promise.allSettled([
    startApi('api-a', portA),
    startB(),
    startChild('../support-events/temporal-worker-main.ts', { ...shared, EVENTS_WORKER_TOKEN: WORKER_TOKEN }, 60_000),
  ])
  const [a, firstB, c] = started.map((s) => (s.status === 'fulfilled' ? s.value : undefined))
  b = firstB
  children = [
    ['A', () => a],
    ['B', () => b],
    ['C', () => c],
  ]
  // Each child by its pid, B's current one included: it is restarted under the same name.
  cleanups.push(() => Promise.allSettled(children.map(([, child]) => child()?.kill('SIGKILL'))))
  for (const s of started) if (s.status === 'rejected') throw s.reason

  await ok('POST', apiA, '/registry/announce', {
    id: M,
    name: 'Events across processes',
    workerUrl: workerApp.url,
    steps: STEPS.map((name) => ({ name, workerApp: 'charts' })),
    candidates: CANDIDATES.map((id) => ({ id })),
  })
  headAtConnect = (await logAfter(undefined)).at(-1)?.id
  firstStream = await openEventStream(`${apiB}/events`)
  cleanups.push(() => firstStream.close())
}, 120_000)

afterAll(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup().catch(() => {})
  await admin.unsafe(`drop schema if exists "${schema}" cascade`)
  await admin.end({ timeout: 5 })
  console.log(`[faults] events across processes, latencies to B's stream (ms): ${JSON.stringify(latencies)}`)
})

// A failing test shows what the processes said.
const showOutput = () =>
  onTestFailed(() => {
    for (const [name, child] of children)
      console.error(`[faults] output of ${name}:\n${child()?.output().slice(-4_000) ?? '(not started)'}`)
  })

it('an action through A reaches B’s /events within 1 s, once', async () => {
  showOutput()
  const sentAt = Date.now()
  const { runId } = await ok<{ runId: string }>('POST', apiA, `/migrations/${M}/queue`, { candidateId: CANDIDATES[0] })

  const queued = await firstStream.next(status(runId, 'queued'), WAIT_MS)
  expect(queued, 'B streamed svc-01 queued').toBeDefined()
  expect(queued!.data).toMatchObject({
    type: 'run.status',
    previous: 'not_started',
    status: 'queued',
    candidateId: CANDIDATES[0],
    migrationId: M,
  })
  measure('queued (A)', queued!, sentAt)
  await hold(SETTLE_MS)
  expect(firstStream.all(status(runId, 'queued'))).toHaveLength(1)
})

it('a step dispatched and a run completed by the Temporal worker reach B’s /events within 1 s, once each', async () => {
  showOutput()
  const candidateId = CANDIDATES[1]!
  const { runId } = await ok<{ runId: string }>('POST', apiA, `/migrations/${M}/queue`, { candidateId })
  const executedAt = Date.now()
  await ok('POST', apiA, `/runs/${runId}/execute`)
  measure('running (A)', await arrived(firstStream, status(runId, 'running')), executedAt)

  let lastReport: { answeredAt: number } | undefined
  for (const [index, stepName] of STEPS.entries()) {
    const dispatch = await workerApp.dispatched(runId, stepName, WAIT_MS)
    expect(dispatch, `${stepName} dispatched to the worker app`).toBeDefined()
    // The dispatch came from C: only C's dispatcher has its token (A's engine only starts workflows).
    expect(dispatch!.authorization).toBe(`Bearer ${WORKER_TOKEN}`)
    const dispatched = await arrived(firstStream, stepDispatched(runId, index))
    expect(dispatched.data).toMatchObject({ actor: { kind: 'system' }, attempt: dispatch!.attempt, candidateId })
    measure(`${stepName} dispatched (C)`, dispatched, dispatch!.answeredAt)

    const report = await workerApp.report(dispatch!)
    expect(report.status).toBe(202)
    lastReport = report
    const reported = await arrived(firstStream, stepReported(runId, stepName))
    expect(reported.data).toMatchObject({ done: true, result: { stepName, success: true }, attempt: dispatch!.attempt })
    measure(`${stepName} reported (A)`, reported, report.sentAt)
  }

  // The run's completion is C's to write once the last report's signal reaches the workflow;
  // its moment here is the first of A's answers (polled every 10 ms) that shows it.
  const [completedInStore, completed] = await Promise.all([
    firstPollShowing(candidateId, 'completed'),
    arrived(firstStream, status(runId, 'completed')),
  ])
  expect(completed.data).toMatchObject({ previous: 'running', actor: { kind: 'system' } })
  measure('completed (C)', completed, completedInStore)
  latencies['completed (C)']!.fromLastReport = completed.receivedAt - lastReport!.answeredAt

  await hold(SETTLE_MS)
  expect(firstStream.all(status(runId, 'running'))).toHaveLength(1)
  for (const [index, stepName] of STEPS.entries()) {
    expect(firstStream.all(stepDispatched(runId, index))).toHaveLength(1)
    expect(firstStream.all(stepReported(runId, stepName))).toHaveLength(1)
  }
  expect(firstStream.all(status(runId, 'completed'))).toHaveLength(1)
})

it('B restarted and resumed with Last-Event-ID misses nothing, repeats nothing, then goes on live', async () => {
  showOutput()
  // B's first stream, whole: exactly the log's entries since it connected, each once, in order.
  const seenBeforeKill = firstStream.events.map((e) => e.id)
  expect(seenBeforeKill).toEqual((await logAfter(headAtConnect)).map((e) => e.id))
  const lastId = seenBeforeKill.at(-1)!

  await b!.kill('SIGKILL')
  await pollUntil(() => firstStream.ended(), WAIT_MS)
  expect(firstStream.ended(), 'B’s stream ended with B').toBe(true)

  // While B is down: three runs through A, each step dispatched by C and reported by the worker app.
  workerApp.autoReport = true
  const missedRuns = CANDIDATES.slice(2, 5)
  for (const candidateId of missedRuns) {
    const { runId } = await ok<{ runId: string }>('POST', apiA, `/migrations/${M}/queue`, { candidateId })
    await ok('POST', apiA, `/runs/${runId}/execute`)
  }
  for (const candidateId of missedRuns) await firstPollShowing(candidateId, 'completed')

  b = await startB()
  const missed = await logAfter(lastId)
  // What the log holds is what happened: per run, queued, running, each step dispatched and reported, completed.
  expect(tally(missed.map((e) => e.type))).toEqual({
    'run.queue': missedRuns.length,
    'run.execute': missedRuns.length,
    'step.dispatched': missedRuns.length * STEPS.length,
    'step.reported': missedRuns.length * STEPS.length,
    'run.complete': missedRuns.length,
  })

  const resumed = await openEventStream(`${apiB}/events`, { lastEventId: lastId })
  cleanups.push(() => resumed.close())
  await pollUntil(
    () => resumed.events.length >= missed.length,
    WAIT_MS,
    () => resumed.ended(),
  )
  expect(resumed.events.map((e) => e.id)).toEqual(missed.map((e) => e.id))
  expect(resumed.events.map((e) => ('candidateId' in e.data ? e.data.candidateId : undefined))).toEqual(missed.map((e) => e.candidateId))

  // Then live: one more change through A arrives once, after the replay.
  const sentAt = Date.now()
  const { runId } = await ok<{ runId: string }>('POST', apiA, `/migrations/${M}/queue`, { candidateId: CANDIDATES[5] })
  measure('queued (A) after B restarted', await arrived(resumed, status(runId, 'queued')), sentAt)
  await hold(SETTLE_MS)
  expect(resumed.events.map((e) => e.id)).toEqual((await logAfter(lastId)).map((e) => e.id))
  expect(resumed.all(status(runId, 'queued'))).toHaveLength(1)
})

/** Records an event's latencies and holds them to the bound: from `seenAt` (this process saw the change) and from the entry's `at`. */
function measure(name: string, event: StreamedEvent, seenAt: number) {
  const measured = { fromSeen: event.receivedAt - seenAt, fromAt: event.receivedAt - Date.parse(event.data.at) }
  latencies[name] = measured
  expect(measured.fromSeen, `${name}: ms from the change to B's stream`).toBeLessThanOrEqual(WITHIN_MS)
  expect(measured.fromAt, `${name}: ms from the entry's at to B's stream`).toBeLessThanOrEqual(WITHIN_MS)
}

async function arrived(stream: EventStream, matches: (event: StreamedEvent) => boolean): Promise<StreamedEvent> {
  const event = await stream.next(matches, WAIT_MS)
  if (!event)
    throw new Error(`no such event within ${WAIT_MS} ms; the stream has: ${stream.events.map((e) => `${e.id} ${e.type}`).join(', ')}`)
  return event
}

const status = (runId: string, to: string) => (e: StreamedEvent) =>
  e.data.type === 'run.status' && e.data.runId === runId && e.data.status === to
const stepDispatched = (runId: string, index: number) => (e: StreamedEvent) =>
  e.data.type === 'step.dispatched' && e.data.runId === runId && e.data.step === index
const stepReported = (runId: string, stepName: string) => (e: StreamedEvent) =>
  e.data.type === 'step.reported' && e.data.runId === runId && e.data.result.stepName === stepName

/** When A first answers the candidate with `to`, polled every 10 ms. */
async function firstPollShowing(candidateId: string, to: string): Promise<number> {
  const deadline = Date.now() + WAIT_MS
  while (Date.now() < deadline) {
    const answer = await call<{ status: string }>(apiA, 'GET', `/migrations/${M}/candidates/${candidateId}`)
    if (answer.body?.status === to) return Date.now()
    await new Promise((resolve) => setTimeout(resolve, 10))
  }
  throw new Error(`${candidateId} is not ${to} within ${WAIT_MS} ms`)
}

interface LoggedEntry {
  id: string
  type: string
  candidateId?: string
}

/** The migration's activity log after `after` (all of it without), read through A page by page. */
async function logAfter(after: string | undefined): Promise<LoggedEntry[]> {
  const entries: LoggedEntry[] = []
  let cursor = after
  // Pages of 10, so a resume spans several; the log here holds well under 100 pages.
  for (let page = 0; page < 100; page++) {
    const query = new URLSearchParams({ limit: '10', ...(cursor ? { after: cursor } : {}) })
    const body = await ok<{ entries: LoggedEntry[]; next?: string }>('GET', apiA, `/migrations/${M}/activity?${query}`)
    entries.push(...body.entries)
    if (!body.next) return entries
    cursor = body.next
  }
  throw new Error('the activity log has more than 100 pages')
}

async function ok<T = unknown>(method: string, base: string, path: string, body?: unknown): Promise<T> {
  const answer = await call<T>(base, method, path, body)
  if (answer.status >= 300) throw new Error(`${method} ${path} answered ${answer.status}: ${JSON.stringify(answer.body)}`)
  return answer.body
}

function tally(values: string[]): Record<string, number> {
  const counts: Record<string, number> = {}
  for (const value of values) counts[value] = (counts[value] ?? 0) + 1
  return counts
}
