/**
 * Benchmark of the activity log and of last outcomes in @loom/postgres (issue 14), on one
 * database in one run:
 *
 * 1. What the log adds to a transition. Schemas at the same version: in one the log works as
 *    shipped (the `activity` table, its indexes, and the NOTIFY each process sends after its
 *    writes); in another it is switched off, so that the store's code is the same: the id's
 *    default (`activity_id()`) is dropped, a row trigger discards every entry before it is
 *    stored, and the store's client sends no NOTIFY. A third keeps the log and sends no NOTIFY,
 *    to tell which part costs what (it is not part of the verdict). The same workload
 *    runs on each in rounds, every round visiting every schema, each round starting one
 *    further along, so that the machine's noise falls on all: CALLERS concurrent callers,
 *    each queueing then dequeueing its own candidates with `store.transition`, as an operator,
 *    all at the same `at`. Per variant: transitions/s and the p50/p95 latency of one
 *    transition, medians over rounds; the overhead is the median over rounds of (time with
 *    the log / time without, in the same round) - 1. Then the log's bytes per entry on disk
 *    (`pg_total_relation_size` / rows).
 * 2. `lastOutcome=failed` against `status=queued` on a migration with CANDIDATES candidates,
 *    QUEUED of them queued and FAILED whose last attempt failed (queue, execute, a failing
 *    final step report, fail: every row written by the store's own calls). The two
 *    `listCandidates` pages (limit 50) alternate, after a warm-up, and the ratio of their
 *    medians is reported. When it is above 1.2 (or with --explain), the plans of both queries
 *    are printed, as the store's prepared statements run them.
 *
 * Exits 1 when the log adds more than 20 % or `lastOutcome=failed` costs more than 1.2x
 * `status=queued` (issue 14's "Done means"); the numbers are printed either way.
 *
 *   npx tsx bench/activity.ts            # DATABASE_URL, or postgres://postgres@127.0.0.1:5432/test
 *   npx tsx bench/activity.ts --pglite   # the embedded database, in memory
 *   npx tsx bench/activity.ts --candidates 100000 --queued 5000 --failed 5000 --callers 16 \
 *     --rounds 10 --transitions 2000 --list-rounds 40 --explain
 */
import { parseArgs } from 'node:util'
import { type Actor, SYSTEM_ACTOR } from '@loom/core'
import type { StatusAction } from '@loom/core/store'
import postgres, { type Sql } from 'postgres'
import { clientOptions, migrate, pglite, postgresStore, type PostgresStore } from '../packages/postgres/src/index'

const MAX_LOG_OVERHEAD = 0.2
const MAX_LIST_RATIO = 1.2
const PAGE = 50

const { values: flags } = parseArgs({
  options: {
    pglite: { type: 'boolean', default: false },
    explain: { type: 'boolean', default: false },
    candidates: { type: 'string', default: '100000' },
    queued: { type: 'string', default: '5000' },
    failed: { type: 'string', default: '5000' },
    callers: { type: 'string', default: '16' },
    rounds: { type: 'string', default: '10' },
    transitions: { type: 'string', default: '2000' },
    'list-rounds': { type: 'string', default: '40' },
  },
})
const CANDIDATES = numberFlag('candidates', 1)
const QUEUED = numberFlag('queued', 1)
const FAILED = numberFlag('failed', 1)
const CALLERS = numberFlag('callers', 1)
const ROUNDS = numberFlag('rounds', 1)
const TRANSITIONS = numberFlag('transitions', 2 * CALLERS)
const LIST_ROUNDS = numberFlag('list-rounds', 1)
if (QUEUED + FAILED > CANDIDATES) fail(`--queued and --failed: ${QUEUED} + ${FAILED} exceed --candidates (${CANDIDATES})`)
/** Candidates per caller in the transition rounds: each caller moves its own, in turn. */
const OWN = 4

const usePglite = flags.pglite
const url = process.env.DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/test'
/** The text and parameters of the last statement sent, for EXPLAIN of exactly what the store ran. */
let lastStatement: { query: string; parameters: unknown[] } | undefined
const debug = (_connection: number, query: string, parameters: unknown[]) => {
  lastStatement = { query, parameters }
}
const embedded = usePglite ? await pglite({ client: { debug } }) : undefined
const sql: Sql<any> = embedded?.sql ?? postgres(url, { ...clientOptions, max: CALLERS, debug, onnotice: () => {} })
const base = `loom_bench_${Math.random().toString(36).slice(2, 8)}`
const schemas = { log: `${base}_log`, nolog: `${base}_nolog`, silent: `${base}_silent`, list: `${base}_list` }

const operator: Actor = { kind: 'operator', name: 'bench' }
const worker: Actor = { kind: 'worker', name: 'charts' }
const at = new Date().toISOString()
const definition = (id: string) => ({ id, name: 'Bench', steps: [{ name: 'bump', workerApp: 'charts' }] })
const candidate = (i: number) => ({
  id: `svc-${i}`,
  kind: 'application',
  metadata: { team: `team-${i % 40}`, repoName: `acme/svc-${i}`, gitopsPath: `apps/svc-${i}/values.yaml` },
  state: { chart: `chart-${i % 7}`, version: `1.${i % 13}.0` },
})

let failures = 0
try {
  console.log(`database: ${usePglite ? 'PGlite (in memory, through pglite-socket)' : url.replace(/\/\/[^@]*@/, '//')}`)
  await logOverhead()
  await lastOutcomeAgainstStatus()
} finally {
  for (const schema of Object.values(schemas)) await sql.unsafe(`drop schema if exists "${schema}" cascade`)
  if (embedded) await embedded.close()
  else await sql.end({ timeout: 5 })
}
process.exitCode = failures > 0 ? 1 : 0

async function logOverhead(): Promise<void> {
  const migrationId = 'bench-transitions'
  // Switched off below the store: no id drawn, no row, no index entry (and, by its client, no
  // notification). The NOT NULL id is checked after BEFORE triggers, so a discarded row never needs one.
  const off = `"${schemas.nolog}"`
  const switchOff = `
    alter table ${off}.activity alter column id drop default;
    create function ${off}.discard_activity() returns trigger language plpgsql as $$ begin return null; end $$;
    create trigger activity_discard before insert on ${off}.activity for each row execute function ${off}.discard_activity();
  `
  // Not part of the verdict: the log stored without its notification, to tell which part costs what.
  const variants: Variant[] = [
    { name: 'with log', schema: schemas.log, rounds: [] },
    { name: 'without log', schema: schemas.nolog, rounds: [], change: switchOff, quiet: true },
    { name: 'log, no notify', schema: schemas.silent, rounds: [], quiet: true },
  ]
  for (const { schema, change } of variants) {
    await migrate(sql, { schema })
    if (change) await sql.unsafe(change)
  }
  // The same client, but its NOTIFY goes nowhere: the store's code is unchanged.
  const quiet = new Proxy(sql, { get: (target, key) => (key === 'notify' ? async () => [] : Reflect.get(target, key)) })
  const stores = variants.map(({ schema, quiet: silent }) => postgresStore(silent ? quiet : sql, { schema }))
  for (const store of stores) {
    await store.upsertMigration(
      definition(migrationId),
      Array.from({ length: CALLERS * OWN }, (_, i) => candidate(i)),
    )
  }

  const pairs = Math.floor(TRANSITIONS / (2 * CALLERS))
  /** One round on `store`: every caller queues then dequeues its candidates in turn, `pairs` times. */
  const round = async (store: PostgresStore): Promise<Round> => {
    const latencies: number[] = []
    const move = async (candidateId: string, action: StatusAction) => {
      const start = performance.now()
      const result = await store.transition({ migrationId, candidateId, action, at, by: operator })
      latencies.push(performance.now() - start)
      if (!result.ok) throw new Error(`${action} of ${candidateId} refused: ${result.reason}`)
    }
    const started = performance.now()
    await Promise.all(
      Array.from({ length: CALLERS }, async (_, caller) => {
        for (let i = 0; i < pairs; i++) {
          const candidateId = `svc-${caller * OWN + (i % OWN)}`
          await move(candidateId, 'queue')
          await move(candidateId, 'dequeue')
        }
      }),
    )
    const seconds = (performance.now() - started) / 1000
    return { seconds, perSecond: latencies.length / seconds, p50: percentile(latencies, 0.5), p95: percentile(latencies, 0.95) }
  }

  // The warm-up creates every run (the first queue inserts it; the rounds measure updates) and warms plans and caches.
  for (const store of stores) await round(store)
  // Each round runs every variant once, starting one further along each time, so none always goes first.
  for (let r = 0; r < ROUNDS; r++) {
    for (let k = 0; k < variants.length; k++) {
      const v = (r + k) % variants.length
      variants[v]!.rounds.push(await round(stores[v]!))
    }
  }

  const [discarded] = await sql.unsafe(`select count(*)::int as n from ${off}.activity`)
  if (discarded!.n !== 0) throw new Error(`the log was not switched off: ${discarded!.n} entries in ${schemas.nolog}.activity`)
  const on = `"${schemas.log}"`
  const [size] = await sql.unsafe(`
    select count(*)::float8 as entries, pg_total_relation_size('${on}.activity')::float8 as total,
      pg_relation_size('${on}.activity')::float8 as heap, pg_indexes_size('${on}.activity')::float8 as indexes
    from ${on}.activity
  `)
  const [withLog, withoutLog] = variants as [Variant, Variant]
  /** The median over rounds of a variant's time against the log switched off's, in the same round. */
  const overheadOf = (variant: Variant) => median(variant.rounds.map((round, i) => round.seconds / withoutLog.rounds[i]!.seconds)) - 1
  const overhead = overheadOf(withLog)

  console.log(
    `\ntransitions: ${CALLERS} concurrent callers, queue then dequeue as an operator, ${ROUNDS} rounds of ${pairs * 2 * CALLERS} per variant (medians over rounds)`,
  )
  console.log('                    transitions/s   p50 ms   p95 ms   vs without')
  for (const variant of variants) {
    const { name, rounds } = variant
    const cells = [
      median(rounds.map((r) => r.perSecond))
        .toFixed(0)
        .padStart(13),
      ms(rounds, 'p50'),
      ms(rounds, 'p95'),
    ]
    const versus = variant === withoutLog ? '' : `   ${signed(overheadOf(variant) * 100).padStart(7)} %`
    console.log(`  ${name.padEnd(16)}  ${cells.join('')}${versus}`)
  }
  console.log(
    `activity on disk: ${size!.entries} entries, ${mb(size!.total)} (heap ${mb(size!.heap)}, indexes ${mb(size!.indexes)}): ` +
      `${(size!.total / size!.entries).toFixed(0)} bytes per entry`,
  )
  console.log(`log overhead: ${signed(overhead * 100)} % per transition (median of ${ROUNDS} rounds; at most ${MAX_LOG_OVERHEAD * 100} %)`)
  if (overhead > MAX_LOG_OVERHEAD) failures++
}

async function lastOutcomeAgainstStatus(): Promise<void> {
  const migrationId = 'bench-outcomes'
  const schema = schemas.list
  await migrate(sql, { schema })
  // One upsert of every candidate is a single long statement; the default bound (5 s) is for ordinary calls.
  const store = postgresStore(sql, { schema, timeoutMs: 120_000 })

  const setupStarted = performance.now()
  await store.upsertMigration(
    definition(migrationId),
    Array.from({ length: CANDIDATES }, (_, i) => candidate(i)),
  )
  const upserted = performance.now()
  // Spread over the list in a fixed pseudo-random order: the queued first, then the failed.
  const picked = shuffled(CANDIDATES).slice(0, QUEUED + FAILED)
  const move = async (candidateId: string, action: StatusAction, by: Actor) => {
    const result = await store.transition({ migrationId, candidateId, action, at, by, ...(action === 'execute' ? { owner: 'bench' } : {}) })
    if (!result.ok) throw new Error(`${action} of ${candidateId} refused: ${result.reason}`)
  }
  let next = 0
  await Promise.all(
    Array.from({ length: CALLERS }, async () => {
      while (next < picked.length) {
        const k = next++
        const candidateId = `svc-${picked[k]}`
        await move(candidateId, 'queue', operator)
        if (k < QUEUED) continue
        await move(candidateId, 'execute', operator)
        const report = await store.recordStep({
          migrationId,
          candidateId,
          result: {
            stepName: 'bump',
            candidate: { id: candidateId },
            success: false,
            metadata: { error: 'chart-7 has no version 1.12.0' },
          },
          done: true,
          at,
          by: worker,
        })
        if (report.outcome !== 'recorded') throw new Error(`step report of ${candidateId}: ${report.outcome}`)
        await move(candidateId, 'fail', SYSTEM_ACTOR)
      }
    }),
  )
  const written = performance.now()
  // The planner's statistics as a running database has them; autovacuum would gather them within a minute.
  await sql.unsafe(`analyze "${schema}".candidates; analyze "${schema}".runs`)
  console.log(
    `\nlistCandidates, ${CANDIDATES} candidates (${QUEUED} queued, ${FAILED} failed), limit ${PAGE}; ` +
      `setup ${seconds(written - setupStarted)} (upsert ${seconds(upserted - setupStarted)}, runs ${seconds(written - upserted)})`,
  )

  const queries = {
    queued: { query: { status: 'queued', limit: PAGE } as const, total: QUEUED, times: [] as number[] },
    failed: { query: { lastOutcome: 'failed', limit: PAGE } as const, total: FAILED, times: [] as number[] },
  }
  const list = async (which: keyof typeof queries) => {
    const { query, total, times } = queries[which]
    const start = performance.now()
    const page = await store.listCandidates(migrationId, query)
    times.push(performance.now() - start)
    const wrong = page?.candidates.find((c) => (which === 'queued' ? c.status !== 'queued' : c.lastAttempt?.outcome !== 'failed'))
    if (!page || page.total !== total || page.candidates.length !== Math.min(PAGE, total) || wrong) {
      throw new Error(
        `${which}: expected ${total} in all, ${Math.min(PAGE, total)} on the page, got ${page?.total} and ${page?.candidates.length}`,
      )
    }
  }
  for (let i = 0; i < 5; i++) {
    await list('queued')
    await list('failed')
  }
  for (const { times } of Object.values(queries)) times.length = 0
  for (let i = 0; i < LIST_ROUNDS; i++) {
    // Alternate which goes first so neither always meets a warmer cache.
    for (const which of i % 2 === 0 ? (['queued', 'failed'] as const) : (['failed', 'queued'] as const)) await list(which)
  }

  for (const [name, { times }] of Object.entries(queries)) {
    const label = name === 'queued' ? 'status=queued' : 'lastOutcome=failed'
    console.log(
      `  ${label.padEnd(19)} median ${median(times).toFixed(1)} ms, p95 ${percentile(times, 0.95).toFixed(1)} ms (${LIST_ROUNDS} rounds)`,
    )
  }
  const ratio = median(queries.failed.times) / median(queries.queued.times)
  console.log(`lastOutcome=failed costs ${ratio.toFixed(2)}x status=queued (at most ${MAX_LIST_RATIO}x)`)
  if (ratio > MAX_LIST_RATIO) failures++
  if (ratio > MAX_LIST_RATIO || flags.explain) {
    for (const which of ['queued', 'failed'] as const) {
      await store.listCandidates(migrationId, queries[which].query)
      console.log(`\nEXPLAIN ANALYZE of listCandidates ${which}, ${await explain(lastStatement!)}`)
    }
  }
}

/**
 * The plan a statement the store sends runs with. postgres.js prepares every statement of the
 * store, and after five executions PostgreSQL may switch a prepared statement to a generic plan
 * (one that does not know the parameters), so this prepares the same text on one connection,
 * executes it as often, and explains the next execution: the plan the store's calls get.
 */
async function explain({ query, parameters }: { query: string; parameters: unknown[] }): Promise<string> {
  const args = parameters.map((p) => (p === null ? 'null' : `'${String(p).replaceAll("'", "''")}'`)).join(', ')
  const connection = await sql.reserve()
  try {
    await connection.unsafe(`prepare bench_plan as ${query}`)
    for (let i = 0; i < 6; i++) await connection.unsafe(`execute bench_plan(${args})`)
    const plan = await connection.unsafe(`explain (analyze, buffers) execute bench_plan(${args})`)
    const [cache] = await connection.unsafe(`select generic_plans, custom_plans from pg_prepared_statements where name = 'bench_plan'`)
    await connection.unsafe('deallocate bench_plan')
    const kind = Number(cache!.generic_plans) > 0 ? 'generic' : 'custom'
    return `${kind} plan (as the store's prepared statement runs it after 5 executions):\n${plan.map((row) => row['QUERY PLAN']).join('\n')}`
  } finally {
    connection.release()
  }
}

/** A schema the transition rounds run on, and what is changed in it after `migrate`. */
interface Variant {
  name: string
  schema: string
  change?: string
  /** The store's client sends no NOTIFY. */
  quiet?: boolean
  rounds: Round[]
}

interface Round {
  seconds: number
  perSecond: number
  p50: number
  p95: number
}

function numberFlag(flag: keyof typeof flags, least: number): number {
  const text = String(flags[flag])
  const value = Number(text)
  if (!/^\d+$/.test(text) || value < least) fail(`--${flag}: "${text}" must be a whole number, at least ${least}`)
  return value
}

function fail(message: string): never {
  console.error(message)
  process.exit(2)
}

/** 0 … n-1 in a fixed pseudo-random order (Fisher–Yates on mulberry32, seed 14). */
function shuffled(n: number): number[] {
  let seed = 14
  const random = () => {
    seed = (seed + 0x6d2b79f5) | 0
    let t = Math.imul(seed ^ (seed >>> 15), 1 | seed)
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
  const order = Array.from({ length: n }, (_, i) => i)
  for (let i = n - 1; i > 0; i--) {
    const j = Math.floor(random() * (i + 1))
    ;[order[i], order[j]] = [order[j]!, order[i]!]
  }
  return order
}

function ms(rounds: Round[], key: 'p50' | 'p95'): string {
  return median(rounds.map((r) => r[key]))
    .toFixed(2)
    .padStart(9)
}

function mb(bytes: number): string {
  return `${(bytes / 1024 / 1024).toFixed(1)} MB`
}

function seconds(millis: number): string {
  return `${(millis / 1000).toFixed(1)} s`
}

function signed(value: number): string {
  return `${value >= 0 ? '+' : ''}${value.toFixed(1)}`
}

function median(values: number[]): number {
  return percentile(values, 0.5)
}

function percentile(values: number[], p: number): number {
  const sorted = [...values].sort((a, b) => a - b)
  return sorted[Math.min(sorted.length - 1, Math.floor(p * sorted.length))]!
}
