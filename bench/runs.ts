/**
 * Many concurrent runs on the local engine, end to end over HTTP, against the bare HTTP round
 * trips of the same workload in the same process and run (issue 12, case 5).
 *
 * Loom: `loomApp` on @hono/node-server over `createLoom` with `localEngine()` and the default
 * `httpDispatcher` (wrapped only to time its calls), and a fast worker app on another server
 * that answers each dispatch 202 and at once reports the step with `POST /event/{runId}`,
 * echoing the attempt. All RUNS candidates are queued at once over HTTP, then all executed at
 * once; the wait for every run to end is bounded by TIMEOUT_S. Completion is observed through
 * `loom.subscribe` (in process, so it adds no round trip).
 *
 * Bare: two Hono apps that only answer, and the same round trips at the same concurrency:
 * queue and execute per run, then per step a dispatch to the "worker" and a report to the "API".
 *
 * Prints runs/s, p50/p95 execute→completed, the ratio Loom / bare, duplicate dispatches (the
 * same runId, attempt and step dispatched more than once; must be 0), the reports answered
 * non-2xx by status and message, and how the dispatches went as Loom saw them.
 *
 *   npx tsx bench/runs.ts            (RUNS=1000 STEPS=3 STORE=memory TIMEOUT_S=300)
 *   STORE=pglite npx tsx bench/runs.ts
 *   STORE=postgres DATABASE_URL=postgres://postgres@127.0.0.1:5432/test npx tsx bench/runs.ts
 *   BACKLOG=4096 npx tsx bench/runs.ts    (every server's listen backlog; Node's default is 511)
 *   MAX_DISPATCHES=256 npx tsx bench/runs.ts    (localEngine's bound on dispatches in flight)
 */
import { once } from 'node:events'
import { readFileSync } from 'node:fs'
import type { AddressInfo } from 'node:net'
import { monitorEventLoopDelay } from 'node:perf_hooks'
import { createAdaptorServer, serve } from '@hono/node-server'
import { type LoomEvent, type MigrationStore, type StepDispatcher, createLoom, httpDispatcher, localEngine, memoryStore } from '@loom/core'
import { loomApp } from '@loom/hono'
import { Hono } from 'hono'

const RUNS = Number(process.env.RUNS ?? 1000)
const STEPS = Number(process.env.STEPS ?? 3)
const STORE = process.env.STORE ?? 'memory'
const TIMEOUT_MS = Number(process.env.TIMEOUT_S ?? 300) * 1000
const MAX_DISPATCHES = process.env.MAX_DISPATCHES ? Number(process.env.MAX_DISPATCHES) : undefined
const BACKLOG = process.env.BACKLOG ? Number(process.env.BACKLOG) : undefined
const M = 'bench-runs'
const stepNames = Array.from({ length: STEPS }, (_, i) => `step-${i + 1}`)
const candidateIds = Array.from({ length: RUNS }, (_, i) => `c-${String(i).padStart(5, '0')}`)

interface Result {
  runsPerSecond: number
  p50: number
  p95: number
  ended: number
  seconds: number
  /** What the phase did to the process and the machine (see `watch`). */
  health?: Health
}

interface Health {
  loopP99Ms: number
  loopMaxMs: number
  listenOverflows: number
  synRetransmits: number
}

/** Linux's TCP counters (the whole machine's): a connect storm past a listen backlog shows here. */
function tcpCounters(): { listenOverflows: number; synRetransmits: number } {
  try {
    const lines = readFileSync('/proc/net/netstat', 'utf8').split('\n')
    const at = lines.findIndex((l) => l.startsWith('TcpExt:'))
    const names = lines[at]!.split(' ')
    const values = lines[at + 1]!.split(' ').map(Number)
    const value = (name: string) => values[names.indexOf(name)] ?? Number.NaN
    return { listenOverflows: value('ListenOverflows'), synRetransmits: value('TCPSynRetrans') }
  } catch {
    return { listenOverflows: Number.NaN, synRetransmits: Number.NaN }
  }
}

/** Event-loop delay and TCP counters over a phase, to tell a busy process from a queue in the network stack. */
async function watch<T extends Result>(phase: () => Promise<T>): Promise<T> {
  const loop = monitorEventLoopDelay({ resolution: 10 })
  const before = tcpCounters()
  loop.enable()
  const result = await phase()
  loop.disable()
  const after = tcpCounters()
  result.health = {
    loopP99Ms: loop.percentile(99) / 1e6,
    loopMaxMs: loop.max / 1e6,
    listenOverflows: after.listenOverflows - before.listenOverflows,
    synRetransmits: after.synRetransmits - before.synRetransmits,
  }
  return result
}

const quantile = (values: number[], q: number) => {
  if (values.length === 0) return Number.NaN
  const sorted = [...values].sort((a, b) => a - b)
  return sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))]!
}

const tally = (map: Map<string, number>, key: string) => map.set(key, (map.get(key) ?? 0) + 1)

/** Messages name runs and attempts; grouping needs them without. */
const generic = (message: string) => message.replace(/bench-runs__c-\d+/g, '{runId}').replace(/attempt \d+/g, 'attempt N')

/**
 * Serves an app on 127.0.0.1 as `serve` does; with BACKLOG, with that listen backlog instead of
 * Node's 511 (a knob to show how much of the cost is connect storms overflowing it).
 */
async function listen(fetch: (request: Request) => Response | Promise<Response>) {
  const server = BACKLOG === undefined ? serve({ fetch, hostname: '127.0.0.1', port: 0 }) : createAdaptorServer({ fetch })
  if (BACKLOG !== undefined) server.listen({ host: '127.0.0.1', port: 0, backlog: BACKLOG })
  if (!server.listening) await once(server, 'listening')
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    close: () => new Promise<void>((done) => server.close(() => done())),
  }
}

async function post(url: string, body: unknown): Promise<Response> {
  return fetch(url, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) })
}

async function postOk(url: string, body: unknown): Promise<unknown> {
  const response = await post(url, body)
  if (!response.ok) throw new Error(`POST ${url}: ${response.status} ${await response.text()}`)
  const text = await response.text()
  return text ? JSON.parse(text) : undefined
}

/** Resolves when `until()` holds, checking every 20 ms; false once `ms` passed. */
async function eventually(until: () => boolean, ms: number): Promise<boolean> {
  const deadline = Date.now() + ms
  while (!until()) {
    if (Date.now() > deadline) return false
    await new Promise((r) => setTimeout(r, 20))
  }
  return true
}

async function openStore(): Promise<{ store: MigrationStore; close: () => Promise<void> }> {
  if (STORE === 'memory') return { store: memoryStore(), close: async () => {} }
  const { migrate, pglite, postgresStore } = await import('@loom/postgres')
  if (STORE === 'pglite') {
    const db = await pglite()
    await migrate(db.sql)
    return { store: postgresStore(db.sql), close: () => db.close() }
  }
  if (STORE === 'postgres') {
    const { default: postgres } = await import('postgres')
    const sql = postgres(process.env.DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/test', { max: 10, onnotice: () => {} })
    const schema = `loom_bench_${Math.random().toString(36).slice(2, 8)}`
    await migrate(sql, { schema })
    return {
      store: postgresStore(sql, { schema }),
      close: async () => {
        await sql.unsafe(`drop schema ${schema} cascade`)
        await sql.end()
      },
    }
  }
  throw new Error(`STORE must be memory, pglite or postgres, not ${STORE}`)
}

/** The same round trips as Loom's workload against apps that only answer. */
async function bare(runs: number): Promise<Result> {
  const api = new Hono()
    .post('/migrations/:id/queue', async (c) => {
      const { candidateId } = await c.req.json()
      return c.json({ runId: `${c.req.param('id')}__${candidateId}` }, 202)
    })
    .post('/runs/:runId/execute', (c) => c.json({ runId: c.req.param('runId') }, 202))
    .post('/event/:runId', async (c) => {
      await c.req.json()
      return c.json({ status: 'accepted' }, 202)
    })
  const worker = new Hono().post('/steps/dispatch', async (c) => {
    await c.req.json()
    return c.body(null, 202)
  })
  const [apiServer, workerServer] = [await listen(api.fetch), await listen(worker.fetch)]
  try {
    const ids = candidateIds.slice(0, runs)
    const started = performance.now()
    const runIds = await Promise.all(
      ids.map(async (id) => ((await postOk(`${apiServer.url}/migrations/${M}/queue`, { candidateId: id })) as { runId: string }).runId),
    )
    const durations = await Promise.all(
      runIds.map(async (runId, i) => {
        const t0 = performance.now()
        await postOk(`${apiServer.url}/runs/${runId}/execute`, {})
        for (const stepName of stepNames) {
          // Bodies shaped like Loom's, so both sides pay the same serialization.
          await postOk(`${workerServer.url}/steps/dispatch`, {
            migrationId: M,
            runId,
            stepName,
            candidate: { id: ids[i] },
            callbackId: runId,
            eventName: `${stepName}-done`,
            attempt: 1,
          })
          await postOk(`${apiServer.url}/event/${runId}`, { stepName, candidate: { id: ids[i] }, success: true, attempt: 1 })
        }
        return performance.now() - t0
      }),
    )
    const seconds = (performance.now() - started) / 1000
    return { runsPerSecond: runs / seconds, p50: quantile(durations, 0.5), p95: quantile(durations, 0.95), ended: runs, seconds }
  } finally {
    await Promise.all([apiServer.close(), workerServer.close()])
  }
}

interface LoomFigures extends Result {
  completed: number
  failed: number
  executed: number
  refusedOperator: Map<string, number>
  finalStatuses: Map<string, number>
  storeCalls: Map<string, { n: number; ms: number }>
  engineErrors: Map<string, number>
  duplicateKeys: number
  extraDispatches: number
  duplicateGapsMs: number[]
  duplicateSteps: Map<string, number>
  reportsSent: number
  refusedReports: Map<string, number>
  failures: Map<string, number>
  dispatchMs: number[]
  toWorkerMs: number[]
  dispatchErrors: Map<string, number>
}

/** The store with each method's calls counted and timed: which of them a run's cost is made of. */
function counted(store: MigrationStore, calls: Map<string, { n: number; ms: number }>): MigrationStore {
  return new Proxy(store, {
    get(target, name, receiver) {
      const value = Reflect.get(target, name, receiver)
      if (typeof value !== 'function' || typeof name !== 'string') return value
      // The one method that answers at once (it returns the function that stops the watch).
      if (name === 'watchActivity') return value.bind(target)
      return async (...args: unknown[]) => {
        const t0 = performance.now()
        try {
          return await value.apply(target, args)
        } finally {
          const c = calls.get(name) ?? { n: 0, ms: 0 }
          c.n++
          c.ms += performance.now() - t0
          calls.set(name, c)
        }
      }
    },
  })
}

async function loomRuns(): Promise<LoomFigures> {
  const opened = await openStore()
  const closeStore = opened.close
  const storeCalls = new Map<string, { n: number; ms: number }>()
  const store = counted(opened.store, storeCalls)
  const dispatches = new Map<string, number[]>()
  const refusedReports = new Map<string, number>()
  const failures = new Map<string, number>()
  const dispatchErrors = new Map<string, number>()
  const refusedOperator = new Map<string, number>()
  const engineErrors = new Map<string, number>()
  const dispatchMs: number[] = []
  const sentAt = new Map<string, number[]>()
  let reportsSent = 0
  let reportsInFlight = 0
  let dispatchesInFlight = 0

  let loomUrl = ''
  const report = async (request: { runId: string; stepName: string; candidate: { id: string }; attempt?: number }) => {
    reportsInFlight++
    try {
      const body = { stepName: request.stepName, candidate: { id: request.candidate.id }, success: true, attempt: request.attempt }
      const response = await post(`${loomUrl}/event/${request.runId}`, body)
      reportsSent++
      if (!response.ok) {
        const text = await response.text()
        let message = text
        try {
          message = (JSON.parse(text) as { error: string }).error
        } catch {}
        tally(refusedReports, `${response.status} ${generic(message)}`)
      } else await response.body?.cancel()
    } catch (error) {
      tally(refusedReports, `no answer: ${(error as Error).message}`)
    } finally {
      reportsInFlight--
    }
  }
  // The fast worker: accepts, then reports as a separate call once the 202 is on its way.
  const workerApp = new Hono().post('/steps/dispatch', async (c) => {
    const request = await c.req.json()
    const key = `${request.runId}|${request.attempt}|${request.stepName}`
    dispatches.set(key, [...(dispatches.get(key) ?? []), performance.now()])
    setImmediate(() => void report(request))
    return c.body(null, 202)
  })
  const workerServer = await listen(workerApp.fetch)

  // The default dispatcher, timed: Loom's view of each dispatch round trip.
  const http = httpDispatcher()
  const dispatcher: StepDispatcher = {
    async dispatch(target, request) {
      const t0 = performance.now()
      const key = `${request.runId}|${request.attempt}|${request.stepName}`
      sentAt.set(key, [...(sentAt.get(key) ?? []), t0])
      dispatchesInFlight++
      try {
        await http.dispatch(target, request)
      } catch (error) {
        tally(dispatchErrors, generic((error as Error).message).replace(/127\.0\.0\.1:\d+/, 'worker'))
        throw error
      } finally {
        dispatchesInFlight--
        dispatchMs.push(performance.now() - t0)
      }
    },
  }
  // Errors a run loop met (and, at 7a4ebf7, died of): counted instead of printed.
  const onError = (error: unknown) => tally(engineErrors, generic((error as Error).message))
  const loom = createLoom({
    store,
    engine: localEngine({ onError, ...(MAX_DISPATCHES ? { maxDispatches: MAX_DISPATCHES } : {}) }),
    dispatcher,
    onError,
  })
  await loom.ready
  const apiServer = await listen(loomApp(loom).fetch)
  loomUrl = apiServer.url

  const executedAt = new Map<string, number>()
  const durations: number[] = []
  let completed = 0
  let failed = 0
  let executed = 0
  const unsubscribe = loom.subscribe((event: LoomEvent) => {
    if (event.type === 'step.reported' && event.done && !event.result.success) {
      tally(failures, generic(String(event.result.metadata?.error ?? 'no error')).replace(/127\.0\.0\.1:\d+/, 'worker'))
    }
    if (event.type !== 'run.status') return
    if (event.status === 'completed') completed++
    else if (event.status === 'not_started') failed++
    else return
    const t0 = executedAt.get(event.runId)
    if (t0 !== undefined) durations.push(performance.now() - t0)
  })

  try {
    await loom.announce({
      id: M,
      name: 'Bench runs',
      workerUrl: workerServer.url,
      steps: stepNames.map((name) => ({ name, workerApp: 'bench' })),
      candidates: candidateIds.map((id) => ({ id })),
    })
    // An operator request refused is counted, and its run left out, rather than ending the bench.
    const operator = async (path: string, body: unknown): Promise<{ runId?: string } | undefined> => {
      const response = await post(`${loomUrl}${path}`, body)
      const text = await response.text()
      if (response.ok) return text ? JSON.parse(text) : {}
      tally(
        refusedOperator,
        `${path.split('/').at(-1)}: ${response.status} ${generic(text ? (JSON.parse(text) as { error: string }).error : '')}`,
      )
      return undefined
    }
    storeCalls.clear() // the announce is setup, not the workload
    const started = performance.now()
    const runIds = await Promise.all(candidateIds.map(async (id) => (await operator(`/migrations/${M}/queue`, { candidateId: id }))?.runId))
    await Promise.all(
      runIds.map(async (runId) => {
        if (!runId) return
        executedAt.set(runId, performance.now())
        if (await operator(`/runs/${runId}/execute`, {})) executed++
        else executedAt.delete(runId)
      }),
    )
    await eventually(() => completed + failed >= executed, TIMEOUT_MS)
    const seconds = (performance.now() - started) / 1000
    // Late reports and retried dispatches still in flight count too; bounded.
    await eventually(() => reportsInFlight === 0 && dispatchesInFlight === 0, 30_000)

    // Where every candidate ended, whatever the requests were answered.
    const finalStatuses = new Map<string, number>()
    try {
      for (const c of await loom.listCandidates(M)) tally(finalStatuses, c.status)
    } catch (error) {
      tally(finalStatuses, `unknown (${generic((error as Error).message)})`)
    }
    // The n-th send of a key against its n-th arrival at the worker: how long the request took to get there.
    const toWorkerMs: number[] = []
    for (const [key, sends] of sentAt) {
      const arrivals = dispatches.get(key) ?? []
      for (const [i, t] of sends.entries()) if (arrivals[i] !== undefined) toWorkerMs.push(arrivals[i]! - t)
    }
    const duplicateSteps = new Map<string, number>()
    const duplicateGapsMs: number[] = []
    let duplicateKeys = 0
    let extraDispatches = 0
    for (const [key, times] of dispatches) {
      if (times.length < 2) continue
      duplicateKeys++
      extraDispatches += times.length - 1
      tally(duplicateSteps, key.split('|')[2]!)
      for (let i = 1; i < times.length; i++) duplicateGapsMs.push(times[i]! - times[i - 1]!)
    }
    return {
      runsPerSecond: completed / seconds,
      p50: quantile(durations, 0.5),
      p95: quantile(durations, 0.95),
      ended: completed + failed,
      seconds,
      completed,
      failed,
      executed,
      refusedOperator,
      engineErrors,
      finalStatuses,
      storeCalls: new Map(storeCalls),
      duplicateKeys,
      extraDispatches,
      duplicateGapsMs,
      duplicateSteps,
      reportsSent,
      refusedReports,
      failures,
      dispatchMs,
      toWorkerMs,
      dispatchErrors,
    }
  } finally {
    unsubscribe()
    await loom.close()
    await Promise.all([apiServer.close(), workerServer.close()])
    await closeStore()
  }
}

const ms = (n: number) => (Number.isNaN(n) ? '—' : `${n.toFixed(0)} ms`)
const row = (label: string, r: Result) =>
  `  ${label.padEnd(6)} ${r.runsPerSecond.toFixed(0).padStart(7)} ${ms(r.p50).padStart(10)} ${ms(r.p95).padStart(10)} ${String(r.ended).padStart(7)} ${r.seconds.toFixed(1).padStart(7)}` +
  `  ${ms(r.health!.loopP99Ms).padStart(8)} ${ms(r.health!.loopMaxMs).padStart(8)} ${String(r.health!.listenOverflows).padStart(9)} ${String(r.health!.synRetransmits).padStart(9)}`
const listed = (map: Map<string, number>) =>
  map.size === 0
    ? '    none'
    : [...map]
        .sort((a, b) => b[1] - a[1])
        .map(([k, n]) => `    ${String(n).padStart(6)}  ${k}`)
        .join('\n')

console.log(
  `Node ${process.version}; ${RUNS} runs × ${STEPS} steps, all at once; store ${STORE}; local engine (maxDispatches ${MAX_DISPATCHES ?? 'default'}); listen backlog ${BACKLOG ?? 'default (511)'}\n`,
)
// Warm-up: JIT and connection pools, on the bare apps only (Loom's first run is part of what it costs).
await bare(Math.min(100, RUNS))
const b = await watch(() => bare(RUNS))
const l = await watch(loomRuns)

console.log('                                                          event loop    machine-wide TCP')
console.log('           runs/s        p50        p95   ended       s       p99      max  listen-of  SYN-retr')
console.log(row('bare', b))
console.log(row('loom', l))
console.log(
  `\n  Loom / bare: throughput ${(l.runsPerSecond / b.runsPerSecond).toFixed(2)}×, p50 ${(l.p50 / b.p50).toFixed(1)}×, p95 ${(l.p95 / b.p95).toFixed(1)}×`,
)
console.log(
  `  Loom runs: ${l.executed} executed, ${l.completed} completed, ${l.failed} failed, ${l.executed - l.ended} not ended within ${TIMEOUT_MS / 1000} s`,
)
console.log(`  candidates at the end: ${[...l.finalStatuses].map(([status, n]) => `${status} ${n}`).join(', ')}`)
if (l.refusedOperator.size > 0) console.log(`  queue/execute answered non-2xx:\n${listed(l.refusedOperator)}`)
if (l.engineErrors.size > 0) console.log(`  errors the engine reported (onError):\n${listed(l.engineErrors)}`)
console.log(
  `\n  duplicate dispatches: ${l.duplicateKeys} (runId, attempt, step) dispatched more than once, ${l.extraDispatches} extra dispatches`,
)
if (l.duplicateKeys > 0) {
  console.log(`    by step: ${[...l.duplicateSteps].map(([s, n]) => `${s} ${n}`).join(', ')}`)
  console.log(
    `    gap to the previous dispatch: p50 ${ms(quantile(l.duplicateGapsMs, 0.5))}, min ${ms(Math.min(...l.duplicateGapsMs))}, max ${ms(Math.max(...l.duplicateGapsMs))}`,
  )
}
console.log(
  `  reports sent by the worker: ${l.reportsSent}; answered non-2xx: ${[...l.refusedReports.values()].reduce((s, n) => s + n, 0)}`,
)
console.log(listed(l.refusedReports))
console.log(
  `  dispatches as Loom saw them: ${l.dispatchMs.length}, p50 ${ms(quantile(l.dispatchMs, 0.5))}, p95 ${ms(quantile(l.dispatchMs, 0.95))}, max ${ms(Math.max(...l.dispatchMs))}; failed:`,
)
console.log(listed(l.dispatchErrors))
console.log(
  `  send → arrival at the worker: p50 ${ms(quantile(l.toWorkerMs, 0.5))}, p95 ${ms(quantile(l.toWorkerMs, 0.95))}, max ${ms(Math.max(...l.toWorkerMs))}`,
)
console.log(`  store calls per run (mean ms each), ${[...l.storeCalls.values()].reduce((s, c) => s + c.n, 0) / RUNS} in all:`)
for (const [name, c] of [...l.storeCalls].sort((a, b) => b[1].n - a[1].n)) {
  console.log(`    ${(c.n / RUNS).toFixed(2).padStart(6)}  ${name.padEnd(18)} ${ms(c.ms / c.n)}`)
}
console.log('  steps failed (their error):')
console.log(listed(l.failures))
