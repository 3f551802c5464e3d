/**
 * Big migrations (issue 15): what a page, a submission and a summary cost as migrations grow,
 * each against a bare baseline measured in the same run. Every store is reached through the
 * `MigrationStore` port only.
 *
 * A. Pages of 50 (`listCandidates(id, { limit: 50, … })`) of a migration of each size of --sizes,
 *    on the memory store, PGlite and PostgreSQL: the first page, `status=queued`,
 *    `lastOutcome=failed`, `q=` a metadata value exactly 10 candidates have at every size, and a
 *    cursor at the end of the list (`after=` the 60th candidate from the last). Candidates are
 *    243 bytes of JSON each (a kind, 4 metadata and 3 state values); 2 % of them queued and 1 %
 *    failed (queue, execute, a failed final step report, fail: the store's own calls), spread
 *    through the list. Per store and query: the median ms per page at each size and the ratio of
 *    the largest size to the smallest (goal ≤ 1.5×). Baselines, at each size: on memory, a slice
 *    of 50 out of an array of n listed candidates, each copied as a store must return copies; on
 *    PGlite and PostgreSQL, `select … order by position limit 50` of the same rows in a bare
 *    table (the candidate columns, primary key on the order) through the same client.
 * B. Submitting --submit-size candidates with `replaceCandidates`, into an empty migration and then
 *    again with the same list, against a bare set-based insert of the same rows (JSON.stringify,
 *    then one `insert … select … from json_array_elements($1)` into a plain table with a primary
 *    key). Goals: first submit ≤ 3× bare, resubmit ≤ first submit. Each list is read back whole
 *    and checked. (The issue measures discovery sessions over HTTP; they are not built yet.)
 * C. Summaries: --migrations migrations of --migration-size candidates each (2 % queued, 1 %
 *    failed); `listMigrations()` against JSON.stringify of what it returned (goal ≤ 3× the same
 *    bytes), and `getMigration(id)` the same way, for scale only (one summary, no goal).
 *
 * Every answer is checked against the seeded data before any timing; a wrong answer, like any
 * error, is printed and makes the exit code 1. Missed goals do not: each line says "goal met" or
 * "goal missed". Times are medians over --reads reads (B: over --submit-rounds rounds); in each
 * round the sizes, queries and the baseline take turns, each round starting one further along,
 * so that the machine's noise falls on all. A read shorter than 1 ms is repeated until 1 ms has
 * passed and counted per call (the timer's grain would otherwise dominate).
 *
 *   npx tsx bench/big-migrations.ts      # DATABASE_URL, or postgres://postgres@127.0.0.1:5432/test
 *   npx tsx bench/big-migrations.ts --sizes 1000,10000,100000 --reads 30 \
 *     --stores memory,pglite,postgres --parts pages,submit,summary \
 *     --submit-size 100000 --submit-rounds 3 --submit-stores postgres \
 *     --migrations 100 --migration-size 1000 --concurrency 16 --timeout-ms 600000 --json
 *
 * --submit-size defaults to the largest of --sizes. --json prints the figures as JSON instead of
 * the tables, with every goal's ratio and verdict under `goals` (progress goes to stderr either way). Each run works in throwaway schemas
 * (`loom_bench_<random>_<part>`), dropped at the end. tests/bench/big-migrations.test.ts runs these
 * functions at small sizes, for correctness only.
 */
import { cpus } from 'node:os'
import { pathToFileURL } from 'node:url'
import { parseArgs } from 'node:util'
import { type Actor, type Candidate, type CandidateQuery, type MigrationStore, memoryStore, SYSTEM_ACTOR } from '@loom/core'
import type { CandidatePage, MigrationSummary } from '@loom/core/store'
import postgres, { type Sql } from 'postgres'
import { clientOptions, migrate, pglite, postgresStore } from '../packages/postgres/src/index'

/** The page size of every read. */
export const PAGE = 50
/** The metadata value (`env`) that exactly NEEDLES candidates have, at every size: what `q=` looks for. */
export const NEEDLE = 'canary-eu9'
export const NEEDLES = 10
/** How far from the end the cursor query starts: its page is the 50 candidates after this one. */
export const CURSOR_FROM_END = 60

const PAGE_GOAL = 1.5
const SUBMIT_GOAL = 3
const RESUBMIT_GOAL = 1
const SUMMARY_GOAL = 3

const operator: Actor = { kind: 'operator', name: 'bench' }
const worker: Actor = { kind: 'worker', name: 'charts' }

// ---------------------------------------------------------------------------------------
// The data
// ---------------------------------------------------------------------------------------

const pad = (value: number, width: number) => String(value).padStart(width, '0')

/** Where candidate `i` of a migration of `n` stands after seeding. */
function plannedStanding(i: number): 'queued' | 'failed' | undefined {
  // 2 % and 1 %, spread evenly through the list; the two residues never meet.
  if (i % 50 === 17) return 'queued'
  if (i % 100 === 41) return 'failed'
  return undefined
}

/** Whether candidate `i` of a migration of `n` carries NEEDLE: NEEDLES of them, spread through the list. */
function isNeedle(i: number, n: number): boolean {
  const k = Math.floor((i * NEEDLES) / n)
  return i === Math.floor(((k + 0.5) * n) / NEEDLES)
}

/** Candidate `i` of a migration of `n`: 243 bytes of JSON at any size below a million. */
function candidate(i: number, n: number): Candidate {
  const env = isNeedle(i, n) ? NEEDLE : i % 5 ? 'production' : 'preprod-eu'
  return {
    id: `svc-${pad(i, 6)}`,
    kind: 'application',
    metadata: {
      team: `team-${pad(i % 40, 2)}`,
      cluster: `eu-west-${i % 3}-k8s-${pad(i % 12, 2)}`,
      env,
      repoName: `acme-corp/service-${pad(i, 6)}`,
    },
    state: { chart: `chart/app-${i % 7}`, version: `1.${pad(i % 13, 2)}.${i % 5}`, path: `apps/svc-${pad(i, 6)}/values.yml` },
  }
}

export function candidates(n: number): Candidate[] {
  return Array.from({ length: n }, (_, i) => candidate(i, n))
}

const definition = (id: string) => ({ id, name: `Bench ${id}`, steps: [{ name: 'bump', workerApp: 'charts' }] })

/** A migration as seeded: its candidates in submission order, and which are queued and failed. */
export interface Seeded {
  migrationId: string
  candidates: Candidate[]
  queued: Set<string>
  failed: Set<string>
}

/**
 * Creates each migration with its candidates (one `upsertMigration` each, in order, so that
 * `listMigrations` lists them in this order), then moves the planned candidates with the store's
 * own calls, `concurrency` at a time across all of them: queue; for the failed ones also execute,
 * a failed final step report and fail.
 */
export async function seedMigrations(
  store: MigrationStore,
  specs: { migrationId: string; size: number }[],
  concurrency: number,
): Promise<Seeded[]> {
  const seeded: Seeded[] = []
  for (const { migrationId, size } of specs) {
    const list = candidates(size)
    await store.upsertMigration(definition(migrationId), list)
    seeded.push({ migrationId, candidates: list, queued: new Set(), failed: new Set() })
  }
  const moves: { m: Seeded; candidateId: string; fails: boolean }[] = []
  for (const m of seeded) {
    m.candidates.forEach((c, i) => {
      const standing = plannedStanding(i)
      if (!standing) return
      // In list order; a move that is refused stops the seeding, so the sets hold what the store does.
      m[standing].add(c.id)
      moves.push({ m, candidateId: c.id, fails: standing === 'failed' })
    })
  }
  const at = new Date().toISOString()
  await inParallel(concurrency, moves, async ({ m, candidateId, fails }) => {
    const { migrationId } = m
    const move = async (action: 'queue' | 'execute' | 'fail', by: Actor) => {
      const result = await store.transition({
        migrationId,
        candidateId,
        action,
        at,
        by,
        ...(action === 'execute' ? { owner: 'bench' } : {}),
      })
      if (!result.ok) throw new Error(`seeding ${migrationId}: ${action} of ${candidateId} refused: ${result.reason}`)
    }
    await move('queue', operator)
    if (!fails) return
    await move('execute', operator)
    const report = await store.recordStep({
      migrationId,
      candidateId,
      result: {
        stepName: 'bump',
        candidate: { id: candidateId },
        success: false,
        metadata: { error: 'chart/app-3 has no version 1.12.0' },
      },
      done: true,
      at,
      by: worker,
    })
    if (report.outcome !== 'recorded') throw new Error(`seeding ${migrationId}: step report of ${candidateId}: ${report.outcome}`)
    await move('fail', SYSTEM_ACTOR)
  })
  return seeded
}

/** The queries of part A for one migration, with their names. */
export function pageQueries(m: Seeded): { name: string; query: CandidateQuery }[] {
  const n = m.candidates.length
  return [
    { name: 'first page', query: { limit: PAGE } },
    { name: 'status=queued', query: { status: 'queued', limit: PAGE } },
    { name: 'lastOutcome=failed', query: { lastOutcome: 'failed', limit: PAGE } },
    { name: `q=${NEEDLE}`, query: { q: NEEDLE, limit: PAGE } },
    { name: 'after=<60th from last>', query: { after: m.candidates[Math.max(0, n - CURSOR_FROM_END)]!.id, limit: PAGE } },
  ]
}

/** The status and last outcome a seeded candidate has. */
function standingIn(m: Seeded, candidateId: string): { status: 'queued' | 'not_started'; outcome?: 'failed' } {
  if (m.queued.has(candidateId)) return { status: 'queued' }
  return m.failed.has(candidateId) ? { status: 'not_started', outcome: 'failed' } : { status: 'not_started' }
}

/** The page and total `query` should give on the seeded migration, worked out from the seeding alone. */
function expectedPage(m: Seeded, query: CandidateQuery): { ids: string[]; total: number } {
  const needle = query.q?.toLowerCase()
  const matches = (c: Candidate) => {
    const { status, outcome } = standingIn(m, c.id)
    if (query.status && status !== query.status) return false
    if (query.lastOutcome && outcome !== query.lastOutcome) return false
    return !needle || [c.id, ...Object.values(c.metadata ?? {})].some((value) => value.toLowerCase().includes(needle))
  }
  const from = query.after === undefined ? 0 : m.candidates.findIndex((c) => c.id === query.after) + 1
  const start = query.after === undefined ? (query.offset ?? 0) : 0
  const listed = m.candidates.slice(from).filter(matches)
  return { ids: listed.slice(start, start + (query.limit ?? listed.length)).map((c) => c.id), total: m.candidates.filter(matches).length }
}

/** What is wrong with `page` as the answer to `query`, or undefined when it is right. */
export function pageProblem(m: Seeded, query: CandidateQuery, page: CandidatePage | undefined): string | undefined {
  if (!page) return 'no page (the migration was not found)'
  const expected = expectedPage(m, query)
  const ids = page.candidates.map((c) => c.id)
  if (page.total !== expected.total) return `total ${page.total}, expected ${expected.total}`
  if (ids.join() !== expected.ids.join()) return `ids ${brief(ids)}, expected ${brief(expected.ids)}`
  const byId = new Map(m.candidates.map((c) => [c.id, c]))
  for (const listed of page.candidates) {
    const { status, outcome } = standingIn(m, listed.id)
    if (listed.status !== status || listed.lastAttempt?.outcome !== outcome) {
      return `${listed.id} is ${listed.status} (last outcome ${listed.lastAttempt?.outcome}), expected ${status} (${outcome})`
    }
    if (canonical(listed) !== canonical(byId.get(listed.id)!)) return `${listed.id} came back changed`
  }
  return undefined
}

/** A candidate's fields as text, maps in key order: a store may keep keys in another order (jsonb does). */
function canonical({ id, kind, metadata, state }: Candidate): string {
  const sorted = (map: Record<string, string> | undefined) => map && Object.entries(map).sort(([a], [b]) => (a < b ? -1 : 1))
  return JSON.stringify([id, kind, sorted(metadata), sorted(state)])
}

function brief(ids: string[]): string {
  return ids.length <= 4 ? `[${ids.join(', ')}]` : `[${ids.slice(0, 2).join(', ')} … ${ids.slice(-2).join(', ')}] (${ids.length})`
}

// ---------------------------------------------------------------------------------------
// A. Pages
// ---------------------------------------------------------------------------------------

/** One bare page read at a size: resolves to how many rows it read. */
export type BarePage = (m: Seeded) => Promise<number> | number

/** The bare page of the memory store: a slice of 50 listed candidates out of an array of all, each copied. */
export function memoryBare(seeded: Seeded[]): BarePage {
  const arrays = new Map(
    seeded.map((m) => [
      m.migrationId,
      m.candidates.map((c) => ({ ...c, ...standingIn(m, c.id), metadata: { ...c.metadata }, state: { ...c.state } })),
    ]),
  )
  return (m) => {
    const page = arrays
      .get(m.migrationId)!
      .slice(0, PAGE)
      .map((c) => ({ ...c, metadata: { ...c.metadata }, state: { ...c.state } }))
    return page.length
  }
}

/**
 * The bare page on PostgreSQL: the same rows in a plain table (`bare_candidates`, created in
 * `schema`, the candidate columns as the store keeps them and a primary key on the order), read
 * by `select … order by position limit 50` through the same client.
 */
export async function sqlBare(sql: Sql<any>, schema: string, seeded: Seeded[]): Promise<BarePage> {
  const table = `"${schema}".bare_candidates`
  await sql.unsafe(
    `create table ${table} (migration_id text not null, position integer not null, id text not null, kind text, metadata json, state json,
      primary key (migration_id, position))`,
  )
  for (const m of seeded) await bareInsert(sql, table, m.migrationId, m.candidates)
  await sql.unsafe(`analyze ${table}`)
  const select = `select id, kind, metadata, state from ${table} where migration_id = $1 order by position limit ${PAGE}`
  return async (m) => (await sql.unsafe(select, [m.migrationId])).length
}

/** One set-based insert of `list` into `table`: the list sent as one JSON text, split by the server. */
export async function bareInsert(sql: Sql<any>, table: string, migrationId: string, list: Candidate[]): Promise<number> {
  const inserted = await sql.unsafe(
    `insert into ${table} (migration_id, position, id, kind, metadata, state)
     select $1, (r.ordinality - 1)::integer, r.value->>'id', r.value->>'kind', r.value->'metadata', r.value->'state'
     from json_array_elements($2::text::json) with ordinality as r(value, ordinality)`,
    [migrationId, JSON.stringify(list)],
  )
  return inserted.count
}

/** The median time of one query at one size (`query` is `bare` for the baseline), or why it was not timed. */
export interface PageTiming {
  query: string
  size: number
  ms?: number
  error?: string
}

/**
 * Part A on one store: checks every query of every seeded migration (and the baseline) once,
 * then times those that answered right over `reads` rounds.
 */
export async function measurePages(
  store: MigrationStore,
  seeded: Seeded[],
  options: { reads: number; bare?: BarePage },
): Promise<PageTiming[]> {
  const tasks: { timing: PageTiming; run: () => Promise<unknown>; times: number[] }[] = []
  const timings: PageTiming[] = []
  for (const m of seeded) {
    const size = m.candidates.length
    if (options.bare) {
      const bare = options.bare
      const timing: PageTiming = { query: 'bare', size }
      timings.push(timing)
      const rows = await bare(m)
      if (rows !== Math.min(PAGE, size)) timing.error = `bare page of ${rows} rows, expected ${Math.min(PAGE, size)}`
      else tasks.push({ timing, run: async () => bare(m), times: [] })
    }
    for (const { name, query } of pageQueries(m)) {
      const timing: PageTiming = { query: name, size }
      timings.push(timing)
      try {
        const problem = pageProblem(m, query, await store.listCandidates(m.migrationId, query))
        if (problem) timing.error = `wrong answer: ${problem}`
        else tasks.push({ timing, run: () => store.listCandidates(m.migrationId, query), times: [] })
      } catch (error) {
        timing.error = (error as Error).message
      }
    }
  }
  await takeTurns(tasks, options.reads)
  return timings
}

// ---------------------------------------------------------------------------------------
// B. Submitting
// ---------------------------------------------------------------------------------------

export interface SubmitTiming {
  size: number
  rounds: number
  bareMs?: number
  firstMs?: number
  resubmitMs?: number
  error?: string
}

/**
 * Part B on a store over `sql` (its tables in `schema`): per round, a new migration gets `size`
 * candidates by `replaceCandidates`, then the same list again, and a new plain table the same rows
 * by one insert; the bare insert goes first in odd rounds, last in even ones. Each list is read
 * back whole and checked.
 */
export async function measureSubmit(
  store: MigrationStore,
  sql: Sql<any>,
  schema: string,
  options: { size: number; rounds: number },
): Promise<SubmitTiming> {
  const { size, rounds } = options
  const list = candidates(size)
  const timing: SubmitTiming = { size, rounds }
  const bare: number[] = []
  const first: number[] = []
  const resubmit: number[] = []
  const time = async (times: number[], run: () => Promise<unknown>) => {
    const start = performance.now()
    await run()
    times.push(performance.now() - start)
  }
  try {
    for (let round = 0; round < rounds; round++) {
      const migrationId = `submit-${round}`
      const table = `"${schema}".bare_submit_${round}`
      await store.upsertMigration(definition(migrationId))
      await sql.unsafe(
        `create table ${table} (migration_id text not null, position integer not null, id text not null, kind text, metadata json, state json,
          primary key (migration_id, id))`,
      )
      const submit = (times: number[]) =>
        time(times, async () => {
          const at = new Date().toISOString()
          const activity = { at, actor: operator, type: 'candidates.submitted' as const, migrationId, detail: { count: size } }
          if (!(await store.replaceCandidates(migrationId, list, activity))) throw new Error(`replaceCandidates: ${migrationId} not found`)
        })
      const insertBare = () => time(bare, () => bareInsert(sql, table, migrationId, list))
      if (round % 2 === 0) await insertBare()
      await submit(first)
      await checkWholeList(store, migrationId, list, 'first submit')
      await submit(resubmit)
      await checkWholeList(store, migrationId, list, 'resubmit')
      if (round % 2 === 1) await insertBare()
      const [row] = await sql.unsafe(`select count(*)::int as n from ${table}`)
      if (row!.n !== size) throw new Error(`bare insert: ${row!.n} rows, expected ${size}`)
    }
    timing.bareMs = median(bare)
    timing.firstMs = median(first)
    timing.resubmitMs = median(resubmit)
  } catch (error) {
    timing.error = (error as Error).message
  }
  return timing
}

/** Reads the whole list back and checks it is `list`, in order, every candidate not started. */
async function checkWholeList(store: MigrationStore, migrationId: string, list: Candidate[], after: string): Promise<void> {
  const page = await store.listCandidates(migrationId)
  const m: Seeded = { migrationId, candidates: list, queued: new Set(), failed: new Set() }
  const problem = pageProblem(m, {}, page)
  if (problem) throw new Error(`wrong list after the ${after}: ${problem}`)
}

// ---------------------------------------------------------------------------------------
// C. Summaries
// ---------------------------------------------------------------------------------------

export interface SummaryTiming {
  migrations: number
  size: number
  /** Bytes of JSON.stringify(listMigrations()) and of JSON.stringify(getMigration(id)). */
  listBytes?: number
  getBytes?: number
  listMs?: number
  listStringifyMs?: number
  getMs?: number
  getStringifyMs?: number
  /** SQL stores: a bare select of the same bytes (each summary's JSON text, one row per migration) through the same client. */
  listBareMs?: number
  error?: string
}

/** What is wrong with a summary of the seeded migration, or undefined when it is right. */
function summaryProblem(m: Seeded, summary: MigrationSummary | undefined): string | undefined {
  if (!summary) return `${m.migrationId} not found`
  const expected = {
    not_started: m.candidates.length - m.queued.size,
    queued: m.queued.size,
    running: 0,
    completed: 0,
    failed: m.failed.size,
  }
  if (summary.id !== m.migrationId) return `summary of ${summary.id}, expected ${m.migrationId}`
  const counts = JSON.stringify(summary.counts, Object.keys(expected))
  if (counts !== JSON.stringify(expected)) return `${m.migrationId} counts ${counts}, expected ${JSON.stringify(expected)}`
  return undefined
}

/**
 * Part C on a store of its own (it must hold no other migration): seeds `migrations` migrations
 * of `size` candidates, checks `listMigrations` and `getMigration`, then times them against
 * JSON.stringify of what they returned.
 */
export async function measureSummaries(
  store: MigrationStore,
  options: { migrations: number; size: number; reads: number; concurrency: number },
  bare?: { sql: Sql<any>; schema: string },
): Promise<SummaryTiming> {
  const { migrations, size } = options
  const timing: SummaryTiming = { migrations, size }
  try {
    const specs = Array.from({ length: migrations }, (_, k) => ({ migrationId: `summary-${pad(k, 4)}`, size }))
    const seeded = await seedMigrations(store, specs, options.concurrency)
    const middle = seeded[Math.floor(migrations / 2)]!
    const list = await store.listMigrations()
    if (list.map((s) => s.id).join() !== specs.map((s) => s.migrationId).join()) {
      throw new Error(`listMigrations: ${brief(list.map((s) => s.id))}, expected ${brief(specs.map((s) => s.migrationId))}`)
    }
    for (const [k, m] of seeded.entries()) {
      const problem = summaryProblem(m, list[k])
      if (problem) throw new Error(`listMigrations: ${problem}`)
    }
    const one = await store.getMigration(middle.migrationId)
    const problem = summaryProblem(middle, one)
    if (problem) throw new Error(`getMigration: ${problem}`)
    timing.listBytes = Buffer.byteLength(JSON.stringify(list))
    timing.getBytes = Buffer.byteLength(JSON.stringify(one))
    const tasks = [
      { run: () => store.listMigrations(), times: [] as number[] },
      { run: async () => JSON.stringify(list), times: [] as number[] },
      { run: () => store.getMigration(middle.migrationId), times: [] as number[] },
      { run: async () => JSON.stringify(one), times: [] as number[] },
    ]
    if (bare) {
      // The same bytes from the same database: what a store that kept each summary as one text would read.
      const table = `"${bare.schema}".bare_summaries`
      await bare.sql.unsafe(`create table ${table} (position integer primary key, body text not null)`)
      await bare.sql.unsafe(
        `insert into ${table} (position, body) select (r.ordinality - 1)::integer, r.value::text
         from json_array_elements($1::text::json) with ordinality as r(value, ordinality)`,
        [JSON.stringify(list)],
      )
      const select = `select body from ${table} order by position`
      tasks.push({ run: () => bare.sql.unsafe(select), times: [] })
    }
    await takeTurns(tasks, options.reads)
    ;[timing.listMs, timing.listStringifyMs, timing.getMs, timing.getStringifyMs, timing.listBareMs] = tasks.map((t) => median(t.times))
  } catch (error) {
    timing.error = (error as Error).message
  }
  return timing
}

// ---------------------------------------------------------------------------------------
// Timing
// ---------------------------------------------------------------------------------------

/** A read shorter than this is repeated until it has passed, and counted per call. */
const MIN_SAMPLE_MS = 1
const WARM_UP_ROUNDS = 3

async function sample(run: () => Promise<unknown>): Promise<number> {
  const start = performance.now()
  let calls = 0
  let elapsed: number
  do {
    await run()
    calls++
  } while ((elapsed = performance.now() - start) < MIN_SAMPLE_MS)
  return elapsed / calls
}

/**
 * Warms every task up, then runs `reads` rounds in which each task is sampled once, each round
 * starting one task further along; sets each task's `timing.ms` (if it has one) to its median.
 */
async function takeTurns(
  tasks: { run: () => Promise<unknown>; times: number[]; timing?: { ms?: number } }[],
  reads: number,
): Promise<void> {
  for (let round = 0; round < WARM_UP_ROUNDS; round++) for (const task of tasks) await task.run()
  for (let round = 0; round < reads; round++) {
    for (let k = 0; k < tasks.length; k++) {
      const task = tasks[(round + k) % tasks.length]!
      task.times.push(await sample(task.run))
    }
  }
  for (const task of tasks) if (task.timing) task.timing.ms = median(task.times)
}

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b)
  const middle = Math.floor(sorted.length / 2)
  return sorted.length % 2 ? sorted[middle]! : (sorted[middle - 1]! + sorted[middle]!) / 2
}

/** Runs `work` on every item, at most `concurrency` at a time; the first error stops it. */
async function inParallel<T>(concurrency: number, items: T[], work: (item: T) => Promise<void>): Promise<void> {
  let next = 0
  let failed = false
  await Promise.all(
    Array.from({ length: Math.min(concurrency, items.length) }, async () => {
      while (!failed && next < items.length) {
        const item = items[next++]!
        try {
          await work(item)
        } catch (error) {
          failed = true
          throw error
        }
      }
    }),
  )
}

// ---------------------------------------------------------------------------------------
// The command line
// ---------------------------------------------------------------------------------------

const STORE_NAMES = { memory: 'memory', pglite: 'PGlite', postgres: 'PostgreSQL' } as const
type StoreKind = keyof typeof STORE_NAMES
const PARTS = ['pages', 'submit', 'summary'] as const
type Part = (typeof PARTS)[number]

interface Options {
  sizes: number[]
  reads: number
  stores: StoreKind[]
  parts: Part[]
  submitSize: number
  submitRounds: number
  submitStores: StoreKind[]
  migrations: number
  migrationSize: number
  concurrency: number
  timeoutMs: number
  json: boolean
}

function options(): Options {
  const { values } = parseArgs({
    options: {
      sizes: { type: 'string', default: '1000,10000,100000' },
      reads: { type: 'string', default: '30' },
      stores: { type: 'string', default: 'memory,pglite,postgres' },
      parts: { type: 'string', default: PARTS.join(',') },
      'submit-size': { type: 'string' },
      'submit-rounds': { type: 'string', default: '3' },
      'submit-stores': { type: 'string', default: 'postgres' },
      migrations: { type: 'string', default: '100' },
      'migration-size': { type: 'string', default: '1000' },
      concurrency: { type: 'string', default: '16' },
      'timeout-ms': { type: 'string', default: '600000' },
      json: { type: 'boolean', default: false },
    },
  })
  const whole = (flag: string, text: string, least: number) => {
    const value = Number(text)
    if (!/^\d+$/.test(text) || value < least) usage(`--${flag}: "${text}" must be a whole number, at least ${least}`)
    return value
  }
  const oneOf = <T extends string>(flag: string, text: string, allowed: readonly T[]): T[] => {
    const picked = text.split(',').filter(Boolean)
    const wrong = picked.find((p) => !allowed.includes(p as T))
    if (wrong !== undefined || picked.length === 0) usage(`--${flag}: "${text}" must list some of ${allowed.join(', ')}`)
    return picked as T[]
  }
  // The cursor query starts 60 from the end and q= needs 10 distinct candidates.
  const sizes = values.sizes.split(',').map((size) => whole('sizes', size, CURSOR_FROM_END))
  const storeKinds = Object.keys(STORE_NAMES) as StoreKind[]
  return {
    sizes,
    reads: whole('reads', values.reads, 1),
    stores: oneOf('stores', values.stores, storeKinds),
    parts: oneOf('parts', values.parts, PARTS),
    submitSize: whole('submit-size', values['submit-size'] ?? String(Math.max(...sizes)), 1),
    submitRounds: whole('submit-rounds', values['submit-rounds'], 1),
    submitStores: oneOf('submit-stores', values['submit-stores'], ['pglite', 'postgres'] as StoreKind[]),
    migrations: whole('migrations', values.migrations, 1),
    migrationSize: whole('migration-size', values['migration-size'], CURSOR_FROM_END),
    concurrency: whole('concurrency', values.concurrency, 1),
    timeoutMs: whole('timeout-ms', values['timeout-ms'], 0),
    json: values.json,
  }
}

function usage(message: string): never {
  console.error(message)
  process.exit(2)
}

/** One store to measure: a fresh MigrationStore for each part, and its SQL client if it has one. */
interface Target {
  kind: StoreKind
  sql?: Sql<any>
  /** A store for `part`; for SQL stores in a schema of its own, `loom_bench_<random>_<part>`. */
  open(part: Part): Promise<{ store: MigrationStore; schema?: string }>
  close(): Promise<void>
}

async function openTarget(kind: StoreKind, base: string, o: Options): Promise<Target> {
  if (kind === 'memory') return { kind, open: async () => ({ store: memoryStore() }), close: async () => {} }
  const url = process.env.DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/test'
  const embedded = kind === 'pglite' ? await pglite() : undefined
  const sql: Sql<any> = embedded?.sql ?? postgres(url, { ...clientOptions, max: o.concurrency, onnotice: () => {} })
  const schemas: string[] = []
  return {
    kind,
    sql,
    async open(part) {
      const schema = `${base}_${part}`
      schemas.push(schema)
      await migrate(sql, { schema })
      // Seeding and submitting send single long statements; the default bound (5 s) is for ordinary calls.
      return { store: postgresStore(sql, { schema, timeoutMs: o.timeoutMs }), schema }
    },
    async close() {
      try {
        for (const schema of schemas) await sql.unsafe(`drop schema if exists "${schema}" cascade`)
      } finally {
        if (embedded) await embedded.close()
        else await sql.end({ timeout: 5 })
      }
    },
  }
}

interface Report {
  machine: { node: string; cpus: number }
  options: Omit<Options, 'json'>
  pages: (PageTiming & { store: string })[]
  submit: (SubmitTiming & { store: string })[]
  summary: (SummaryTiming & { store: string })[]
  /** Every goal of issue 15 this run measured: the ratio, its bound, and whether it was met. */
  goals: Goal[]
  errors: string[]
}

interface Goal {
  part: Part
  store: string
  /** What the ratio compares, e.g. `status=queued 100000/1000`. */
  what: string
  ratio?: number
  most: number
  met?: boolean
}

async function main(): Promise<void> {
  const o = options()
  const { json: _json, ...shown } = o
  const report: Report = {
    machine: { node: process.version, cpus: cpus().length },
    options: shown,
    pages: [],
    submit: [],
    summary: [],
    goals: [],
    errors: [],
  }
  const base = `loom_bench_${Math.random().toString(36).slice(2, 8)}`
  const progress = (line: string) => console.error(`[${(performance.now() / 1000).toFixed(0).padStart(4)} s] ${line}`)

  for (const kind of o.stores) {
    const name = STORE_NAMES[kind]
    let target: Target | undefined
    try {
      target = await openTarget(kind, base, o)
      if (o.parts.includes('pages')) {
        const { store, schema } = await target.open('pages')
        progress(`${name}: seeding ${o.sizes.join(', ')} candidates`)
        const started = performance.now()
        const specs = o.sizes.map((size) => ({ migrationId: `pages-${size}`, size }))
        const seeded = await seedMigrations(store, specs, o.concurrency)
        const bare = target.sql ? await sqlBare(target.sql, schema!, seeded) : memoryBare(seeded)
        progress(`${name}: seeded in ${((performance.now() - started) / 1000).toFixed(1)} s; reading pages`)
        for (const timing of await measurePages(store, seeded, { reads: o.reads, bare })) report.pages.push({ store: name, ...timing })
      }
      if (o.parts.includes('submit') && target.sql && o.submitStores.includes(kind)) {
        const { store, schema } = await target.open('submit')
        progress(`${name}: submitting ${o.submitSize} candidates, ${o.submitRounds} rounds`)
        const timing = await measureSubmit(store, target.sql, schema!, { size: o.submitSize, rounds: o.submitRounds })
        report.submit.push({ store: name, ...timing })
      }
      if (o.parts.includes('summary')) {
        const { store, schema } = await target.open('summary')
        progress(`${name}: seeding ${o.migrations} migrations of ${o.migrationSize}; reading summaries`)
        const shape = { migrations: o.migrations, size: o.migrationSize, reads: o.reads, concurrency: o.concurrency }
        const bare = target.sql ? { sql: target.sql, schema: schema! } : undefined
        report.summary.push({ store: name, ...(await measureSummaries(store, shape, bare)) })
      }
    } catch (error) {
      report.errors.push(`${name}: ${(error as Error).stack ?? error}`)
    } finally {
      await target?.close().catch((error: Error) => report.errors.push(`${name}: closing: ${error.message}`))
    }
  }

  for (const t of report.pages) if (t.error) report.errors.push(`${t.store}, page ${t.query} at ${t.size}: ${t.error}`)
  for (const t of report.submit) if (t.error) report.errors.push(`${t.store}, submit ${t.size}: ${t.error}`)
  for (const t of report.summary) if (t.error) report.errors.push(`${t.store}, summaries ${t.migrations} × ${t.size}: ${t.error}`)
  report.goals = goals(report, o)
  console.log(o.json ? JSON.stringify(report, null, 2) : tables(report, o))
  process.exitCode = report.errors.length > 0 ? 1 : 0
}

const ratioOf = (a: number | undefined, b: number | undefined) => (a === undefined || b === undefined ? undefined : a / b)
const msAt = (report: Report, store: string, query: string, size: number) =>
  report.pages.find((t) => t.store === store && t.query === query && t.size === size)?.ms

function goals(report: Report, o: Options): Goal[] {
  const found: Goal[] = []
  const add = (part: Part, store: string, what: string, ratio: number | undefined, most: number) =>
    found.push({ part, store, what, most, ...(ratio === undefined ? {} : { ratio, met: ratio <= most }) })
  const small = Math.min(...o.sizes)
  const large = Math.max(...o.sizes)
  for (const { store, query, size } of report.pages) {
    if (query === 'bare' || size !== large) continue
    add(
      'pages',
      store,
      `${query} ${large}/${small}`,
      ratioOf(msAt(report, store, query, large), msAt(report, store, query, small)),
      PAGE_GOAL,
    )
  }
  for (const t of report.submit) {
    add('submit', t.store, `first submit of ${t.size} / bare insert`, ratioOf(t.firstMs, t.bareMs), SUBMIT_GOAL)
    add('submit', t.store, `resubmit of ${t.size} / first submit`, ratioOf(t.resubmitMs, t.firstMs), RESUBMIT_GOAL)
  }
  for (const t of report.summary) {
    // The issue's goal is for the list (`GET /migrations?summary=true`); one summary (a few hundred bytes) is shown for scale only.
    // "The same bytes": on a SQL store, read from the same database; in memory, serialized.
    add(
      'summary',
      t.store,
      `listMigrations of ${t.migrations} × ${t.size} / ${t.listBareMs === undefined ? 'JSON.stringify' : 'bare select of the same bytes'}`,
      ratioOf(t.listMs, t.listBareMs ?? t.listStringifyMs),
      SUMMARY_GOAL,
    )
  }
  return found
}

// ---------------------------------------------------------------------------------------
// The tables
// ---------------------------------------------------------------------------------------

const verdict = (g: Goal | undefined) => (g?.met === undefined ? '' : g.met ? 'goal met' : 'goal missed')
const ms = (value: number | undefined) =>
  value === undefined ? 'error' : value < 1 ? value.toFixed(3) : value < 100 ? value.toFixed(2) : value.toFixed(0)
const times = (ratio: number | undefined) => (ratio === undefined ? '' : `${ratio.toFixed(2)}×`)

function table(rows: string[][]): string {
  const widths = rows[0]!.map((_, k) => Math.max(...rows.map((row) => row[k]!.length)))
  return rows
    .map((row) => `  ${row.map((cell, k) => (k < 2 ? cell.padEnd(widths[k]!) : cell.padStart(widths[k]!))).join('  ')}`.trimEnd())
    .join('\n')
}

function tables(report: Report, o: Options): string {
  const out = [`Node ${report.machine.node}, ${report.machine.cpus} cores; medians of ${o.reads} reads`]
  const goalOf = (part: Part, store: string, what: string) =>
    report.goals.find((g) => g.part === part && g.store === store && g.what === what)
  if (report.pages.length > 0) {
    const small = Math.min(...o.sizes)
    const large = Math.max(...o.sizes)
    out.push(`\nA. page of ${PAGE}, ms per page; ratio ${large}/${small} (goal ≤ ${PAGE_GOAL}×); vs bare at ${large}`)
    const rows = [['store', 'query', ...o.sizes.map(String), `${large}/${small}`, 'vs bare', 'goal']]
    for (const store of new Set(report.pages.map((t) => t.store))) {
      for (const query of new Set(report.pages.filter((t) => t.store === store).map((t) => t.query))) {
        const bare = query === 'bare'
        const g = goalOf('pages', store, `${query} ${large}/${small}`)
        rows.push([
          store,
          bare ? (store === 'memory' ? 'bare: slice of 50, copied' : 'bare: select … limit 50') : query,
          ...o.sizes.map((size) => ms(msAt(report, store, query, size))),
          times(ratioOf(msAt(report, store, query, large), msAt(report, store, query, small))),
          bare ? '' : times(ratioOf(msAt(report, store, query, large), msAt(report, store, 'bare', large))),
          verdict(g),
        ])
      }
    }
    out.push(table(rows))
  }
  if (report.submit.length > 0) {
    out.push(`\nB. submitting candidates (replaceCandidates), ms, median of ${o.submitRounds} rounds; discovery sessions are not built yet`)
    const rows = [['store', 'measure', 'size', 'ms', 'ratio', 'goal']]
    for (const t of report.submit) {
      const first = goalOf('submit', t.store, `first submit of ${t.size} / bare insert`)
      const again = goalOf('submit', t.store, `resubmit of ${t.size} / first submit`)
      rows.push([t.store, 'bare insert … select json_array_elements', String(t.size), ms(t.bareMs), '', ''])
      rows.push([
        t.store,
        'first submit',
        String(t.size),
        ms(t.firstMs),
        `${times(first?.ratio)} bare`,
        `≤ ${SUBMIT_GOAL}×: ${verdict(first)}`,
      ])
      rows.push([
        t.store,
        'resubmit, same list',
        String(t.size),
        ms(t.resubmitMs),
        `${times(again?.ratio)} first`,
        `≤ 1×: ${verdict(again)}`,
      ])
    }
    out.push(table(rows))
  }
  if (report.summary.length > 0) {
    out.push(
      `\nC. summaries of ${o.migrations} migrations × ${o.migrationSize} candidates, ms (listMigrations: goal ≤ ${SUMMARY_GOAL}× the same bytes: a bare select of them on SQL stores, JSON.stringify in memory)`,
    )
    const rows = [['store', 'call', 'bytes', 'ms', 'bare ms', 'stringify ms', 'ratio', 'goal']]
    for (const t of report.summary) {
      const list = report.goals.find((g) => g.part === 'summary' && g.store === t.store)
      const one = ratioOf(t.getMs, t.getStringifyMs)
      rows.push([
        t.store,
        'listMigrations()',
        String(t.listBytes ?? ''),
        ms(t.listMs),
        t.listBareMs === undefined ? '' : ms(t.listBareMs),
        ms(t.listStringifyMs),
        times(list?.ratio),
        verdict(list),
      ])
      rows.push([t.store, 'getMigration(id)', String(t.getBytes ?? ''), ms(t.getMs), '', ms(t.getStringifyMs), times(one), '(for scale)'])
    }
    out.push(table(rows))
  }
  if (report.errors.length > 0) out.push(`\nerrors (exit code 1):\n${report.errors.map((e) => `  ${e}`).join('\n')}`)
  return out.join('\n')
}

// Run from the command line; imported (by the test), only the functions above.
if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  main().catch((error: Error) => {
    console.error(error.stack ?? error)
    process.exitCode = 1
  })
}
