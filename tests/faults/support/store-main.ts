/**
 * Reads the runs of a migration straight from the store (not through Loom, which may be
 * down), with what only the store knows: attempt, step in flight, whether its dispatch was
 * accepted. Prints `{ runs: [{ candidateId, run? }] }` as JSON on one line.
 *
 * Environment: FAULTS_DATABASE_URL (the database itself, not the proxy), FAULTS_SCHEMA, FAULTS_MIGRATION.
 */
import { postgresStore } from '@loom/postgres'
import postgres from 'postgres'

function env(name: string): string {
  const value = process.env[name]
  if (!value) throw new Error(`${name} is not set`)
  return value
}

const sql = postgres(env('FAULTS_DATABASE_URL'), { max: 4, onnotice: () => {} })
try {
  const store = postgresStore(sql, { schema: env('FAULTS_SCHEMA') })
  const migrationId = env('FAULTS_MIGRATION')
  const page = await store.listCandidates(migrationId)
  if (!page) throw new Error(`no migration ${migrationId}`)
  const runs = await Promise.all(
    page.candidates.map(async ({ id }) => ({ candidateId: id, run: (await store.getCandidate(migrationId, id))?.run })),
  )
  console.log(JSON.stringify({ runs }))
} finally {
  await sql.end({ timeout: 2 })
}
