/**
 * `GET /migrations/{id}/candidates` of loomApp against a bare Hono route returning the
 * same JSON bytes, with 1,000 and 10,000 candidates on the memory store; and, to separate
 * the store's share from serialization's, a route that serializes the same list held in
 * memory (`c.json(list)`), and loomApp with its body cache (on by default; off for the
 * uncached figure). The apps run
 * on @hono/node-server in one child process (so the load generator does not share their
 * event loop); autocannon drives them from this process over 127.0.0.1, taking turns each
 * round. Prints requests per second, latency and Loom's ratio to the
 * bare route, then a profile of where Loom's time per request goes.
 *
 *   npx tsx bench/http-candidates.ts      (ROUNDS=3 DURATION=8 CONNECTIONS=10 SIZES=1000,10000)
 */
import { serve } from '@hono/node-server'
import { createLoom, localEngine, memoryStore, type Candidate } from '@loom/core'
import autocannon from 'autocannon'
import { Hono } from 'hono'
import { fork, type ChildProcess } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import { loomApp } from '../packages/hono/src/index'

const ROUNDS = Number(process.env.ROUNDS ?? 3)
const DURATION = Number(process.env.DURATION ?? 8)
const CONNECTIONS = Number(process.env.CONNECTIONS ?? 10)
const SIZES = (process.env.SIZES ?? '1000,10000').split(',').map(Number)
const M = 'app-chart'

/** Candidates shaped like a real discovery: a kind, two metadata values, one file group. */
const candidates = (n: number): Candidate[] =>
  Array.from({ length: n }, (_, i) => ({
    id: `svc-${i}`,
    kind: 'application',
    metadata: { team: i % 2 === 0 ? 'payments' : 'search', repoName: `acme/svc-${i}` },
    files: [
      {
        name: 'chart',
        repo: 'gitops',
        files: [{ path: `apps/svc-${i}/values.yaml`, url: `https://git.example/gitops/apps/svc-${i}/values.yaml` }],
      },
    ],
  }))

async function buildApps(n: number) {
  const loom = createLoom({ store: memoryStore(), engine: localEngine() })
  await loom.ready
  await loom.announce({ id: M, name: 'App chart', steps: [{ name: 'bump', workerApp: 'charts' }], candidates: candidates(n) })
  // A few runs, so statuses and run ids vary as they would.
  for (let i = 0; i < n; i += 10) await loom.queue(M, `svc-${i}`)
  const loomHttp = loomApp(loom, { bodyCache: false })
  const loomCached = loomApp(loom)
  const reference = await loomHttp.request(`/migrations/${M}/candidates`)
  const bytes = new Uint8Array(await reference.arrayBuffer())
  const bare = new Hono().get('/migrations/:id/candidates', (c) => c.body(bytes, 200, { 'content-type': 'application/json' }))
  // The same list kept as objects and serialized per request: what any JSON API pays, store or not.
  const list = await loom.listCandidates(M)
  const serialize = new Hono().get('/migrations/:id/candidates', (c) => c.json(list))
  return { loom, loomHttp, loomCached, bare, serialize, bytes }
}

interface Ports {
  loom: number
  cached: number
  bare: number
  serialize: number
  bytes: number
}

/** Child: serves both apps for every size and reports their ports. */
async function child() {
  const ports: Record<string, Ports> = {}
  for (const n of SIZES) {
    const { loomHttp, loomCached, bare, serialize, bytes } = await buildApps(n)
    const listen = (fetch: (r: Request) => Response | Promise<Response>) =>
      new Promise<number>((resolve) => {
        serve({ fetch, hostname: '127.0.0.1', port: 0 }, (info) => resolve(info.port))
      })
    ports[n] = {
      loom: await listen(loomHttp.fetch),
      cached: await listen(loomCached.fetch),
      bare: await listen(bare.fetch),
      serialize: await listen(serialize.fetch),
      bytes: bytes.length,
    }
  }
  process.send!({ ports })
}

interface Measure {
  rps: number
  p50: number
  p99: number
  errors: number
}

async function load(url: string, duration: number): Promise<Measure> {
  const result = await autocannon({ url, connections: CONNECTIONS, duration, pipelining: 1 })
  return {
    rps: result.requests.average,
    p50: result.latency.p50,
    p99: result.latency.p99,
    errors: result.errors + result.non2xx + result.timeouts,
  }
}

/** Where Loom's time per request goes, measured in this process without HTTP. */
async function profile(n: number) {
  const { loom, loomHttp, bytes } = await buildApps(n)
  const store = memoryStore()
  await store.upsertMigration({ id: M, name: 'x', steps: [{ name: 'bump', workerApp: 'charts' }] }, candidates(n))
  const time = async (label: string, fn: () => unknown, iterations: number) => {
    for (let i = 0; i < Math.min(20, iterations); i++) await fn()
    const start = performance.now()
    for (let i = 0; i < iterations; i++) await fn()
    return [label, (performance.now() - start) / iterations] as const
  }
  const iterations = n >= 10_000 ? 30 : 300
  const page = await loom.listCandidates(M)
  const rows = [
    await time('store.listCandidates (filter + copy)', () => store.listCandidates(M, {}), iterations),
    await time('shallow copy of the page instead (copy-on-write)', () => page.map((c) => ({ ...c })), iterations),
    await time('JSON.stringify of the list', () => JSON.stringify(page), iterations),
    await time('loom.listCandidates (whole call)', () => loom.listCandidates(M), iterations),
    await time(
      'loomApp.request (no socket, body read)',
      async () => (await loomHttp.request(`/migrations/${M}/candidates`)).arrayBuffer(),
      iterations,
    ),
  ]
  await loom.close()
  return { rows, bytes: bytes.length }
}

async function parent() {
  const worker: ChildProcess = fork(fileURLToPath(import.meta.url), ['--serve'], { execArgv: ['--import', 'tsx'], stdio: 'inherit' })
  const { ports } = await new Promise<{ ports: Record<string, Ports> }>((resolve) => worker.once('message', resolve as never))
  try {
    console.log(`Node ${process.version}; ${CONNECTIONS} connections, ${DURATION} s per measurement, ${ROUNDS} rounds, best round kept\n`)
    const lines: string[] = []
    for (const n of SIZES) {
      const p = ports[n]!
      const path = `/migrations/${M}/candidates`
      const url = (port: number) => `http://127.0.0.1:${port}${path}`
      // Warm-up: JIT and connection pools on all three.
      for (const port of [p.bare, p.serialize, p.loom, p.cached]) await load(url(port), 2)
      const cached: Measure[] = []
      const bare: Measure[] = []
      const serialize: Measure[] = []
      const loom: Measure[] = []
      for (let round = 0; round < ROUNDS; round++) {
        bare.push(await load(url(p.bare), DURATION))
        loom.push(await load(url(p.loom), DURATION))
        serialize.push(await load(url(p.serialize), DURATION))
        cached.push(await load(url(p.cached), DURATION))
      }
      const best = (ms: Measure[]) => ms.reduce((a, b) => (b.rps > a.rps ? b : a))
      const [b, l, j, k] = [best(bare), best(loom), best(serialize), best(cached)]
      const all = (ms: Measure[]) => ms.map((m) => m.rps.toFixed(0)).join(' / ')
      const show = (m: Measure) => `${m.rps.toFixed(0)} req/s (p50 ${m.p50} ms, p99 ${m.p99} ms)`
      lines.push(
        `${String(n).padStart(6)} candidates (${(p.bytes / 1024).toFixed(0)} KiB):\n` +
          `    bare route (same bytes)        ${show(b)}\n` +
          `    loomApp                        ${show(l)}   ratio to bare ${(l.rps / b.rps).toFixed(2)}\n` +
          `    c.json of the list (no store)  ${show(j)}   ratio to bare ${(j.rps / b.rps).toFixed(2)}\n` +
          `    loomApp, body cache           ${show(k)}   ratio to bare ${(k.rps / b.rps).toFixed(2)}\n` +
          `    rounds: bare ${all(bare)}; loomApp ${all(loom)}; c.json ${all(serialize)}; cached ${all(cached)}; ` +
          `errors ${[...bare, ...loom, ...serialize, ...cached].reduce((s, m) => s + m.errors, 0)}`,
      )
      console.log(lines.at(-1))
    }
  } finally {
    worker.kill()
  }
  console.log('\nWhere loomApp spends its time per request (in-process, no HTTP):')
  for (const n of SIZES) {
    const { rows, bytes } = await profile(n)
    console.log(`  ${n} candidates, ${(bytes / 1024).toFixed(0)} KiB of JSON`)
    for (const [label, ms] of rows) console.log(`    ${label.padEnd(50)} ${ms.toFixed(3)} ms`)
  }
}

if (process.argv.includes('--serve')) await child()
else await parent()
