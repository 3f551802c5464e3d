/**
 * `GET /migrations/{id}/candidates` of loomApp against bare Hono routes answering the same
 * bytes, on the memory store with 1,000 and 10,000 candidates (SIZES=…,100000 for more):
 *
 * - the whole list (the API 0.2 list): loomApp with its body cache off and on (on by
 *   default), a bare route with the same bytes, and, to separate the store's share from
 *   serialization's, a route that serializes the same list held in memory (`c.json(list)`);
 * - a page, `?limit=50&after=svc-<n/2>`: loomApp uncached (goal of issue 15: ≥ 0.5× the bare
 *   route) and cached, against a bare route with the page's bytes;
 * - a conditional GET of that page with the ETag loomApp answered (goal: ≥ 0.9×), against a
 *   bare route that compares If-None-Match to the same tag and answers 304.
 *
 * Each bare route answers the bytes and headers (Content-Type, X-Total-Count, ETag,
 * Cache-Control) read once from loomApp's own answer, at the same path, so the wire carries
 * the same thing and only the work behind it differs; `check` proves it before any timing
 * (and tests/bench/http-candidates.test.ts at small sizes, so this file cannot rot).
 *
 * The apps run on @hono/node-server in one child process (so the load generator does not
 * share their event loop); autocannon drives them from this process over 127.0.0.1, taking
 * turns each round. Prints requests per second, latency and each route's ratio to its bare
 * route, then a profile of where Loom's time per request goes (in-process, no socket).
 *
 *   npx tsx bench/http-candidates.ts      (ROUNDS=3 DURATION=8 CONNECTIONS=10 SIZES=1000,10000)
 */
import { serve } from '@hono/node-server'
import { type Candidate, createLoom, localEngine, memoryStore } from '@loom/core'
import autocannon from 'autocannon'
import { Hono } from 'hono'
import { type ChildProcess, fork } from 'node:child_process'
import { fileURLToPath, pathToFileURL } from 'node:url'
import { loomApp } from '../packages/hono/src/index'

const ROUNDS = Number(process.env.ROUNDS ?? 3)
const DURATION = Number(process.env.DURATION ?? 8)
const CONNECTIONS = Number(process.env.CONNECTIONS ?? 10)
const SIZES = (process.env.SIZES ?? '1000,10000').split(',').map(Number)
export const M = 'app-chart'
export const PAGE = 50

/** The whole list, as API 0.2 serves it. */
export const LIST_PATH = `/migrations/${M}/candidates`
/** A page of 50 from the middle of the list, by cursor. */
export const pagePath = (n: number) => `${LIST_PATH}?limit=${PAGE}&after=svc-${n / 2}`

/** The headers a bare route copies from loomApp's answer, and `check` compares. */
export const COPIED_HEADERS = ['content-type', 'x-total-count', 'etag', 'cache-control'] as const

/** Candidates shaped like a real discovery: a kind, two metadata values, one file group. */
export const candidates = (n: number): Candidate[] =>
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

/** An answer as the bare routes replay it: status, bytes and the headers that belong to it. */
export interface Answer {
  status: number
  bytes: Uint8Array<ArrayBuffer>
  headers: Record<string, string>
}

interface Requester {
  request(path: string, init?: RequestInit): Response | Promise<Response>
}

export async function answerOf(app: Requester, path: string, headers: Record<string, string> = {}): Promise<Answer> {
  const res = await app.request(path, { headers })
  const copied: Record<string, string> = {}
  for (const name of COPIED_HEADERS) {
    const value = res.headers.get(name)
    if (value !== null) copied[name] = value
  }
  return { status: res.status, bytes: new Uint8Array(await res.arrayBuffer()), headers: copied }
}

/** A route at the candidate list's path that answers `answer` whatever it is asked. */
const bareRoute = (answer: Answer) => new Hono().get('/migrations/:id/candidates', (c) => c.body(answer.bytes, 200, answer.headers))

/** The same, answering 304 (ETag and Cache-Control, no body) when If-None-Match is exactly the answer's tag. */
function bareConditional(answer: Answer) {
  const tag = answer.headers.etag!
  const validators = { etag: tag, 'cache-control': answer.headers['cache-control']! }
  return new Hono().get('/migrations/:id/candidates', (c) =>
    c.req.header('if-none-match') === tag ? c.body(null, 304, validators) : c.body(answer.bytes, 200, answer.headers),
  )
}

/** Every app the benchmark serves, by name. */
export type AppName = 'loom' | 'cached' | 'bare' | 'serialize' | 'barePage' | 'bareConditional'
export type Apps = Record<AppName, Requester & { fetch: (request: Request) => Response | Promise<Response> }>

export async function buildApps(n: number) {
  const loom = createLoom({ store: memoryStore(), engine: localEngine() })
  await loom.ready
  await loom.announce({ id: M, name: 'App chart', steps: [{ name: 'bump', workerApp: 'charts' }], candidates: candidates(n) })
  // A few runs, so statuses and run ids vary as they would.
  for (let i = 0; i < n; i += 10) await loom.queue(M, `svc-${i}`)
  const loomHttp = loomApp(loom, { bodyCache: false })
  const loomCached = loomApp(loom)
  // The bare routes replay loomApp's answers, read once.
  const list = await answerOf(loomHttp, LIST_PATH)
  const page = await answerOf(loomHttp, pagePath(n))
  // The same list kept as objects and serialized per request: what any JSON API pays, store or not.
  const objects = await loom.listCandidates(M)
  const apps: Apps = {
    loom: loomHttp,
    cached: loomCached,
    bare: bareRoute(list),
    serialize: new Hono().get('/migrations/:id/candidates', (c) => c.json(objects)),
    barePage: bareRoute(page),
    bareConditional: bareConditional(page),
  }
  return { loom, apps, list, page }
}

/** One measured route: which app, which request, what it must answer, and what it is compared with. */
export interface Line {
  section: 'list' | 'page' | 'conditional'
  label: string
  app: AppName
  path: string
  headers: Record<string, string>
  status: 200 | 304
  /** The bare route it is timed against and must answer the same as; none for a bare route itself. */
  against?: AppName
  /** The headers it must answer as its bare route does (the body always). */
  same: readonly string[]
  /** The least ratio to `against` issue 15 asks for. */
  goal?: number
}

/** What the benchmark times at `n` candidates; `tag` is the ETag loomApp answers the page with. */
export function lines(n: number, tag: string): Line[] {
  const list = { section: 'list', path: LIST_PATH, headers: {}, status: 200, same: COPIED_HEADERS } as const
  const page = { section: 'page', path: pagePath(n), headers: {}, status: 200, same: COPIED_HEADERS } as const
  const conditional = {
    section: 'conditional',
    path: pagePath(n),
    headers: { 'if-none-match': tag },
    status: 304,
    same: ['etag', 'cache-control'],
  } as const
  return [
    { ...list, label: 'bare route (same bytes)', app: 'bare' },
    { ...list, label: 'loomApp, bodyCache off', app: 'loom', against: 'bare' },
    // c.json sends no ETag: only the body is the same.
    { ...list, label: 'c.json of the list (no store)', app: 'serialize', against: 'bare', same: ['content-type'] },
    { ...list, label: 'loomApp, body cache', app: 'cached', against: 'bare' },
    { ...page, label: 'bare route (same bytes)', app: 'barePage' },
    { ...page, label: 'loomApp, bodyCache off', app: 'loom', against: 'barePage', goal: 0.5 },
    { ...page, label: 'loomApp, body cache', app: 'cached', against: 'barePage' },
    { ...conditional, label: 'bare route (compares the tag)', app: 'bareConditional' },
    { ...conditional, label: 'loomApp, bodyCache off', app: 'loom', against: 'bareConditional', goal: 0.9 },
    { ...conditional, label: 'loomApp, body cache', app: 'cached', against: 'bareConditional', goal: 0.9 },
  ]
}

const decoder = new TextDecoder()

/**
 * What is wrong with the benchmark at `n` candidates, as sentences; empty when every route
 * answers what its line says and exactly what its bare route answers, and the answers are
 * what they claim to be (the whole list; the 50 after svc-<n/2> with the total; a 304 without a body).
 */
export async function check(apps: Apps, n: number): Promise<string[]> {
  const problems: string[] = []
  const tag = (await answerOf(apps.loom, pagePath(n))).headers.etag
  if (!tag) return ['loomApp answers the page without an ETag']
  for (const line of lines(n, tag)) {
    const name = `${line.section}: ${line.label}`
    const got = await answerOf(apps[line.app], line.path, line.headers)
    if (got.status !== line.status) problems.push(`${name}: status ${got.status}, not ${line.status}`)
    if (line.status === 304 && got.bytes.length > 0) problems.push(`${name}: a 304 with ${got.bytes.length} bytes of body`)
    if (line.status === 304 && got.headers.etag !== tag) problems.push(`${name}: ETag ${got.headers.etag}, not ${tag}`)
    if (line.status === 200) {
      const ids = (JSON.parse(decoder.decode(got.bytes)) as { id: string }[]).map((c) => c.id)
      const want =
        line.section === 'list'
          ? candidates(n).map((c) => c.id)
          : candidates(n)
              .slice(n / 2 + 1, n / 2 + 1 + PAGE)
              .map((c) => c.id)
      if (ids.join() !== want.join()) problems.push(`${name}: ${ids.length} candidates from ${ids[0]}, not ${want.length} from ${want[0]}`)
      if (line.section === 'page' && got.headers['x-total-count'] !== String(n)) {
        problems.push(`${name}: X-Total-Count ${got.headers['x-total-count']}, not ${n}`)
      }
    }
    if (!line.against) continue
    const bare = await answerOf(apps[line.against], line.path, line.headers)
    if (got.status !== bare.status) problems.push(`${name}: status ${got.status}, the bare route's ${bare.status}`)
    if (Buffer.compare(got.bytes, bare.bytes) !== 0) {
      problems.push(`${name}: ${got.bytes.length} bytes of body, not the bare route's ${bare.bytes.length} bytes`)
    }
    for (const header of line.same) {
      if (got.headers[header] !== bare.headers[header]) {
        problems.push(`${name}: ${header} ${got.headers[header]}, the bare route's ${bare.headers[header]}`)
      }
    }
  }
  return problems
}

interface Served {
  ports: Record<AppName, number>
  tag: string
  bytes: { list: number; page: number }
}

/** Child: checks and serves every app for every size and reports their ports. */
async function child() {
  const served: Record<string, Served> = {}
  for (const n of SIZES) {
    const { apps, list, page } = await buildApps(n)
    const problems = await check(apps, n)
    if (problems.length > 0) {
      process.send!({ problems: problems.map((p) => `${n} candidates: ${p}`) })
      return
    }
    const listen = (fetch: (r: Request) => Response | Promise<Response>) =>
      new Promise<number>((resolve) => {
        serve({ fetch, hostname: '127.0.0.1', port: 0 }, (info) => resolve(info.port))
      })
    const ports = {} as Record<AppName, number>
    for (const name of Object.keys(apps) as AppName[]) ports[name] = await listen(apps[name].fetch)
    served[n] = { ports, tag: page.headers.etag!, bytes: { list: list.bytes.length, page: page.bytes.length } }
  }
  process.send!({ served })
}

interface Measure {
  rps: number
  p50: number
  p99: number
  /** Socket errors, timeouts and answers of any other status than the line's. */
  errors: number
}

async function load(url: string, headers: Record<string, string>, status: number, duration: number): Promise<Measure> {
  const result = await autocannon({ url, headers, connections: CONNECTIONS, duration, pipelining: 1 })
  const wrong = Object.entries(result.statusCodeStats ?? {})
    .filter(([code]) => Number(code) !== status)
    .reduce((sum, [, stats]) => sum + (stats as { count: number }).count, 0)
  return { rps: result.requests.average, p50: result.latency.p50, p99: result.latency.p99, errors: result.errors + result.timeouts + wrong }
}

/** Where Loom's time per request goes, measured in this process without HTTP. */
async function profile(n: number) {
  const { loom, apps, list } = await buildApps(n)
  const store = memoryStore()
  await store.upsertMigration({ id: M, name: 'x', steps: [{ name: 'bump', workerApp: 'charts' }] }, candidates(n))
  const time = async (label: string, fn: () => unknown, iterations: number) => {
    for (let i = 0; i < Math.min(20, iterations); i++) await fn()
    const start = performance.now()
    for (let i = 0; i < iterations; i++) await fn()
    return [label, (performance.now() - start) / iterations] as const
  }
  const iterations = n >= 10_000 ? 30 : 300
  const all = await loom.listCandidates(M)
  const tag = (await answerOf(apps.loom, pagePath(n))).headers.etag!
  const request =
    (app: AppName, path: string, headers: Record<string, string> = {}) =>
    async () =>
      (await apps[app].request(path, { headers })).arrayBuffer()
  // Pages and 304s take microseconds: enough iterations that the clock's resolution does not show.
  const many = 3_000
  const conditional = { 'if-none-match': tag }
  const rows = [
    await time('store.listCandidates (filter + copy)', () => store.listCandidates(M, {}), iterations),
    await time('shallow copy of the list instead (copy-on-write)', () => all.map((c) => ({ ...c })), iterations),
    await time('JSON.stringify of the list', () => JSON.stringify(all), iterations),
    await time('loom.listCandidates (whole call)', () => loom.listCandidates(M), iterations),
    await time('loomApp.request list, bodyCache off (body read)', request('loom', LIST_PATH), iterations),
    await time('store.listCandidates page of 50 (after=)', () => store.listCandidates(M, { limit: PAGE, after: `svc-${n / 2}` }), many),
    await time('bare app.request page', request('barePage', pagePath(n)), many),
    await time('loomApp.request page, bodyCache off', request('loom', pagePath(n)), many),
    await time('loomApp.request page, body cache', request('cached', pagePath(n)), many),
    await time('loom.versionOf (what a 304 reads)', () => loom.versionOf(M), many),
    await time('bare app.request 304', request('bareConditional', pagePath(n), conditional), many),
    await time('loomApp.request 304, bodyCache off', request('loom', pagePath(n), conditional), many),
    await time('loomApp.request 304, body cache', request('cached', pagePath(n), conditional), many),
  ]
  await loom.close()
  return { rows, bytes: list.bytes.length }
}

const SECTIONS = {
  list: 'whole list (API 0.2)',
  page: 'page of 50, after=svc-<n/2>',
  conditional: 'that page, If-None-Match: its ETag (304)',
}

async function parent() {
  const worker: ChildProcess = fork(fileURLToPath(import.meta.url), ['--serve'], { execArgv: ['--import', 'tsx'], stdio: 'inherit' })
  const reply = await new Promise<{ served?: Record<string, Served>; problems?: string[] }>((resolve) =>
    worker.once('message', resolve as never),
  )
  if (reply.problems) {
    worker.kill()
    throw new Error(`the routes do not answer what the benchmark says they do:\n  ${reply.problems.join('\n  ')}`)
  }
  const served = reply.served!
  try {
    console.log(`Node ${process.version}; ${CONNECTIONS} connections, ${DURATION} s per measurement, ${ROUNDS} rounds, best round kept\n`)
    for (const n of SIZES) {
      const s = served[n]!
      const measured = lines(n, s.tag)
      const run = (line: Line, duration: number) =>
        load(`http://127.0.0.1:${s.ports[line.app]}${line.path}`, line.headers, line.status, duration)
      // Warm-up: JIT and connection pools on every route.
      for (const line of measured) await run(line, 2)
      const rounds = measured.map(() => [] as Measure[])
      // Rounds alternate the routes, so that a busy moment of the machine falls on all of them alike.
      for (let round = 0; round < ROUNDS; round++) {
        for (const [i, line] of measured.entries()) rounds[i]!.push(await run(line, DURATION))
      }
      const best = (ms: Measure[]) => ms.reduce((a, b) => (b.rps > a.rps ? b : a))
      const show = (m: Measure) =>
        `${m.rps.toFixed(0).padStart(6)} req/s (p50 ${String(m.p50).padStart(3)} ms, p99 ${String(m.p99).padStart(3)} ms)`
      const out = [`${String(n).padStart(6)} candidates (list ${(s.bytes.list / 1024).toFixed(0)} KiB, page ${s.bytes.page} B):`]
      let section: string | undefined
      for (const [i, line] of measured.entries()) {
        if (line.section !== section) out.push(`  ${SECTIONS[(section = line.section)]}`)
        const m = best(rounds[i]!)
        let text = `    ${line.label.padEnd(32)} ${show(m)}`
        if (line.against) {
          const ratio = m.rps / best(rounds[measured.findIndex((l) => l.app === line.against)]!).rps
          text += `   ratio to bare ${ratio.toFixed(2)}`
          if (line.goal !== undefined) text += `  goal ≥ ${line.goal}: ${ratio >= line.goal ? 'met' : 'MISSED'}`
        }
        out.push(text)
      }
      const errors = rounds.flat().reduce((sum, m) => sum + m.errors, 0)
      out.push(
        `  rounds (req/s): ${measured.map((l, i) => `${l.section}/${l.app} ${rounds[i]!.map((m) => m.rps.toFixed(0)).join(' / ')}`).join('; ')}`,
      )
      out.push(`  errors and wrong statuses: ${errors}`)
      console.log(out.join('\n'))
    }
  } finally {
    worker.kill()
  }
  console.log('\nWhere loomApp spends its time per request (in-process, no HTTP):')
  for (const n of SIZES) {
    const { rows, bytes } = await profile(n)
    console.log(`  ${n} candidates, ${(bytes / 1024).toFixed(0)} KiB of JSON`)
    for (const [label, ms] of rows) console.log(`    ${label.padEnd(50)} ${ms.toFixed(4)} ms`)
  }
}

// Run only when executed (the test imports buildApps and check).
if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  if (process.argv.includes('--serve')) await child()
  else await parent()
}
