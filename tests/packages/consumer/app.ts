/**
 * A consumer's service, written against the packed @loom/* packages only: Loom embedded in
 * a Hono app with the PostgreSQL store (DATABASE_URL, or PGlite in a temporary folder) and
 * the local engine, plus a worker built with @loom/worker. It drives one candidate to
 * `completed` over real HTTP on 127.0.0.1 and prints `consumer: completed on node vX`.
 */
import { serve } from '@hono/node-server'
import { createClient } from '@loom/client'
import { createLoom, httpDispatcher, httpDryRunner, localEngine, LoomError } from '@loom/core'
import { loomApp } from '@loom/hono'
import { migrate, pglite, postgresStore } from '@loom/postgres'
import { createWorker, defineMigration } from '@loom/worker'
import { Hono } from 'hono'
import type { AddressInfo } from 'node:net'
import { mkdtempSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import postgres from 'postgres'

const schema = `consumer_${process.pid}`
const embedded = process.env.DATABASE_URL ? undefined : await pglite({ dataDir: mkdtempSync(join(tmpdir(), 'loom-consumer-')) })
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
const service = new Hono()
  .get('/', (c) => c.text('my service'))
  .route('/api', loomApp(loom, { token: 'operator-secret', workerToken }))
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
let status = ''
while (Date.now() < deadline && status !== 'completed') {
  status = (await operator.getRun(runId)).status // not_found if the run failed: the error says why
  if (status !== 'completed') await new Promise((resolve) => setTimeout(resolve, 50))
}
if (status !== 'completed') throw new Error(`run ended as ${status}`)

await worker.stop()
await loom.close()
await sql.unsafe(`drop schema ${schema} cascade`)
if (embedded) await embedded.close()
else await sql.end()
server.close()
workerServer.close()
console.log(`consumer: completed on node ${process.version}`)
process.exit(0)
