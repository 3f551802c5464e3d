/**
 * Benchmark of @loom/postgres, on one database in one run:
 *
 * 1. `listCandidates` of a migration with 10,000 candidates, against the bare SQL query
 *    that returns the same rows (candidate columns joined with their status, in submission
 *    order) through the same client. The store also counts the total and builds records.
 * 2. Transitions per second: 16 concurrent callers, each queueing then dequeueing its own
 *    candidate.
 *
 *   npx tsx bench/postgres-store.ts            # DATABASE_URL, or postgres://postgres@127.0.0.1:5432/test
 *   npx tsx bench/postgres-store.ts --pglite   # the embedded database, in memory
 */
import type { StatusAction } from '@loom/core/store'
import postgres, { type Sql } from 'postgres'
import { migrate, pglite, postgresStore } from '../packages/postgres/src/index'

const CANDIDATES = 10_000
const LIST_ROUNDS = 30
const CALLERS = 16
const TRANSITION_SECONDS = 5

const usePglite = process.argv.includes('--pglite')
const url = process.env.DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/test'

const embedded = usePglite ? await pglite() : undefined
const sql: Sql<any> = embedded?.sql ?? postgres(url, { max: CALLERS, onnotice: () => {} })
const schema = `loom_bench_${Math.random().toString(36).slice(2, 8)}`

try {
  await migrate(sql, { schema })
  const store = postgresStore(sql, { schema })
  const migrationId = 'bench'
  const candidates = Array.from({ length: CANDIDATES }, (_, i) => ({
    id: `svc-${i}`,
    kind: 'application',
    metadata: { team: `team-${i % 40}`, repoName: `acme/svc-${i}`, gitopsPath: `apps/svc-${i}/values.yaml` },
    state: { chart: `chart-${i % 7}`, version: `1.${i % 13}.0` },
  }))
  await store.upsertMigration({ id: migrationId, name: 'Bench', steps: [{ name: 'bump', workerApp: 'charts' }] }, candidates)
  const move = (candidateId: string, action: StatusAction) =>
    store.transition({ migrationId, candidateId, action, at: new Date().toISOString() })
  for (let i = 0; i < CANDIDATES; i += 4) await move(`svc-${i}`, 'queue')

  const T = { candidates: sql(`${schema}.candidates`), runs: sql(`${schema}.runs`) }
  const bare = () => sql`
    select c.id, c.kind, c.metadata, c.state, c.files,
      case when r.state in ('queued', 'running', 'completed') then r.state else 'not_started' end as status
    from ${T.candidates} c
    left join ${T.runs} r on r.migration_id = c.migration_id and r.candidate_id = c.id
    where c.migration_id = ${migrationId}
    order by c.position
  `
  const viaStore = () => store.listCandidates(migrationId)

  const [storeRows, bareRows] = [(await viaStore())!.candidates.length, (await bare()).length]
  if (storeRows !== CANDIDATES || bareRows !== CANDIDATES) throw new Error(`expected ${CANDIDATES} rows, got ${storeRows} and ${bareRows}`)

  const storeTimes: number[] = []
  const bareTimes: number[] = []
  for (let i = 0; i < 3; i++) await Promise.all([viaStore(), bare()]) // warm caches and plans
  for (let i = 0; i < LIST_ROUNDS; i++) {
    // Alternate which goes first so neither always meets a warmer cache.
    const order =
      i % 2
        ? ([
            [viaStore, storeTimes],
            [bare, bareTimes],
          ] as const)
        : ([
            [bare, bareTimes],
            [viaStore, storeTimes],
          ] as const)
    for (const [run, times] of order) {
      const start = performance.now()
      await run()
      times.push(performance.now() - start)
    }
  }

  const callers = Array.from({ length: CALLERS }, (_, i) => `svc-${i * 4 + 1}`) // not queued above
  let transitions = 0
  const until = performance.now() + TRANSITION_SECONDS * 1000
  const started = performance.now()
  await Promise.all(
    callers.map(async (candidateId) => {
      while (performance.now() < until) {
        const queued = await move(candidateId, 'queue')
        const dequeued = await move(candidateId, 'dequeue')
        if (!queued.ok || !dequeued.ok) throw new Error(`transition refused for ${candidateId}`)
        transitions += 2
      }
    }),
  )
  const elapsed = (performance.now() - started) / 1000

  const storeMedian = median(storeTimes)
  const bareMedian = median(bareTimes)
  console.log(`database: ${usePglite ? 'PGlite 0.5.14 (in memory, through pglite-socket)' : url.replace(/\/\/[^@]*@/, '//')}`)
  console.log(`listCandidates, ${CANDIDATES} candidates (${CANDIDATES / 4} queued), median of ${LIST_ROUNDS}:`)
  console.log(`  store     ${storeMedian.toFixed(1)} ms (p90 ${percentile(storeTimes, 0.9).toFixed(1)} ms)`)
  console.log(`  bare SQL  ${bareMedian.toFixed(1)} ms (p90 ${percentile(bareTimes, 0.9).toFixed(1)} ms)`)
  console.log(`  ratio     ${(storeMedian / bareMedian).toFixed(2)}x (aim: within 1.5x)`)
  console.log(`transitions (queue then dequeue), ${CALLERS} concurrent callers, ${elapsed.toFixed(1)} s:`)
  console.log(`  ${transitions} transitions, ${(transitions / elapsed).toFixed(0)} per second`)
} finally {
  await sql.unsafe(`drop schema if exists "${schema}" cascade`)
  if (embedded) await embedded.close()
  else await sql.end({ timeout: 5 })
}

function median(values: number[]): number {
  return percentile(values, 0.5)
}

function percentile(values: number[], p: number): number {
  const sorted = [...values].sort((a, b) => a - b)
  return sorted[Math.min(sorted.length - 1, Math.floor(p * sorted.length))]!
}
