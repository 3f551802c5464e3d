/**
 * A consumer's service, written against the packed @loom/* packages only: Loom embedded in
 * a Hono app with the PostgreSQL store (DATABASE_URL, or PGlite in a temporary folder) and
 * the local engine, plus a worker built with @loom/worker. It drives one candidate to
 * `completed` over real HTTP on 127.0.0.1, then prints one JSON line: the Node version, the
 * store used, and the run as the HTTP API reports it.
 */
import { serve } from '@hono/node-server'
import { createClient } from '@loom/client'
import { createLoom, httpDispatcher, httpDryRunner, localEngine, LoomError } from '@loom/core'
import { loomApp } from '@loom/hono'
import { migrate, pglite, postgresStore } from '@loom/postgres'
import { createWorker, defineMigration } from '@loom/worker'
import { Hono } from 'hono'
import type { AddressInfo } from 'node:net'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import postgres from 'postgres'

const schema = `consumer_${process.pid}`
const dataDir = process.env.DATABASE_URL ? undefined : mkdtempSync(join(tmpdir(), 'loom-consumer-pglite-'))
const embedded = dataDir ? await pglite({ dataDir }) : undefined
const sql = embedded ? embedded.sql : postgres(process.env.DATABASE_URL!, { onnotice: () => {} })
await migrate(sql, { schema })

// Workers get their own token; Loom sends the same one when it dispatches to them.
const workerToken = 'worker-secret'
const loom = createLoom({
  store: postgresStore(sql, { schema }),
  engine: localEngine(),
  dispatcher: httpDispatcher({ token: workerToken }),
  dryRunner: httpDryRunner({ token: workerToken }),
})
const service = new Hono().get('/', (c) => c.text('my service')).route('/api', loomApp(loom, { token: 'operator-secret', workerToken }))
const server = serve({ fetch: service.fetch, port: 0, hostname: '127.0.0.1' })
await new Promise((resolve) => server.once('listening', resolve))
const loomUrl = `http://127.0.0.1:${(server.address() as AddressInfo).port}/api`

const appChart = defineMigration({
  id: 'app-chart',
  name: 'Per-app charts',
  steps: [{ name: 'update-chart', run: async ({ candidate }) => ({ metadata: { chart: candidate.id } }) }],
  discover: async () => [{ id: 'billing-api', kind: 'application' }],
})
const workerServer = serve({ fetch: (request) => worker.fetch(request), port: 0, hostname: '127.0.0.1' })
await new Promise((resolve) => workerServer.once('listening', resolve))
const worker = createWorker({
  app: 'charts',
  loomUrl,
  token: workerToken,
  url: `http://127.0.0.1:${(workerServer.address() as AddressInfo).port}`,
  migrations: [appChart],
})
await worker.start()

const operator = createClient({ baseUrl: loomUrl, token: 'operator-secret' })
const runId = await operator.queue('app-chart', 'billing-api')
try {
  await operator.queue('app-chart', 'billing-api')
  throw new Error('a second queue should be a conflict')
} catch (error) {
  if (!LoomError.is(error, 'conflict')) throw error
}
await operator.execute(runId)
const deadline = Date.now() + 20_000
let run = await operator.getRun(runId)
// A failed run is no longer a run of its candidate: getRun then rejects with not_found, saying why.
while (Date.now() < deadline && run.status !== 'completed') {
  await new Promise((resolve) => setTimeout(resolve, 50))
  run = await operator.getRun(runId)
}

await worker.stop()
await loom.close()
await sql.unsafe(`drop schema ${schema} cascade`)
if (embedded) await embedded.close()
else await sql.end()
if (dataDir) rmSync(dataDir, { recursive: true, force: true })
server.close()
workerServer.close()
console.log(
  JSON.stringify({
    node: process.version,
    store: embedded ? 'pglite' : 'postgresql',
    sameRun: run.runId === runId,
    status: run.status,
    steps: (run.steps ?? []).map(({ stepName, success, metadata }) => ({ stepName, success, metadata })),
  }),
)
process.exit(0)
