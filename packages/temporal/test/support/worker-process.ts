/**
 * A Loom worker in its own process, over the store and dispatcher of the test process (rpc).
 * Env: TEMPORAL_ADDRESS, LOOM_TASK_QUEUE, LOOM_RPC_URL, LOOM_BUNDLE_PATH. Prints `ready`
 * once it polls; the test kills it with SIGKILL, as a crash would.
 */
import { NativeConnection, Runtime, DefaultLogger } from '@temporalio/worker'
import { createLoomWorker } from '../../src/index'
import { rpcDispatcher, rpcStore } from './rpc'

const env = (name: string) => {
  const value = process.env[name]
  if (!value) throw new Error(`worker-process: ${name} is not set`)
  return value
}

Runtime.install({ logger: new DefaultLogger('ERROR'), telemetryOptions: { logging: { filter: { core: 'ERROR', other: 'ERROR' } } } })
const connection = await NativeConnection.connect({ address: env('TEMPORAL_ADDRESS') })
const worker = await createLoomWorker({
  connection,
  taskQueue: env('LOOM_TASK_QUEUE'),
  store: rpcStore(env('LOOM_RPC_URL')),
  dispatcher: rpcDispatcher(env('LOOM_RPC_URL')),
  workflowBundle: { codePath: env('LOOM_BUNDLE_PATH') },
  // A crashed worker's cached workflows move to the shared queue after this long (default 10 s).
  worker: { stickyQueueScheduleToStartTimeout: '2s' },
})
const running = worker.run()
process.stdout.write('ready\n')
await running
await connection.close()
