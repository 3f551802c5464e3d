/**
 * The Temporal worker process of the events test (process C): `createLoomWorker` over the
 * PostgreSQL store on the test's schema, dispatching steps over HTTP; no HTTP API of its own.
 * The entries its runs write (a step dispatched, a run completed) reach the API processes'
 * `/events` through the store alone. Its dispatches carry EVENTS_WORKER_TOKEN as their bearer
 * token, so the worker app can tell they came from this process. Prints `ready` once it polls.
 *
 * Environment: EVENTS_DATABASE_URL, EVENTS_SCHEMA, EVENTS_TEMPORAL_ADDRESS, EVENTS_TASK_QUEUE,
 * EVENTS_WORKER_TOKEN.
 */
import { httpDispatcher } from '@loom/core'
import { postgresStore } from '@loom/postgres'
import { createLoomWorker } from '@loom/temporal'
import { DefaultLogger, NativeConnection, Runtime } from '@temporalio/worker'
import postgres from 'postgres'
import { env } from './env'

Runtime.install({
  logger: new DefaultLogger('WARN'),
  telemetryOptions: { logging: { filter: { core: 'WARN', other: 'ERROR' }, forward: {} } },
})

const sql = postgres(env('EVENTS_DATABASE_URL'), { max: 10, onnotice: () => {} })
const connection = await NativeConnection.connect({ address: env('EVENTS_TEMPORAL_ADDRESS') })
const worker = await createLoomWorker({
  connection,
  taskQueue: env('EVENTS_TASK_QUEUE'),
  store: postgresStore(sql, { schema: env('EVENTS_SCHEMA') }),
  dispatcher: httpDispatcher({ token: env('EVENTS_WORKER_TOKEN') }),
})
const running = worker.run()
// `run` resolves only at shutdown (and a failure to start ends this process); the worker polls once its state says so.
const deadline = Date.now() + 30_000
while (worker.getState() !== 'RUNNING') {
  if (Date.now() > deadline) throw new Error(`the Temporal worker is ${worker.getState()} after 30 s`)
  await new Promise((resolve) => setTimeout(resolve, 20))
}
console.log('ready')
await running
