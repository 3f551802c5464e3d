/**
 * A Loom worker and a `temporalEngine` on one fresh task queue of the test server, over the
 * given store and dispatcher. `close` terminates the workflows this harness started that are
 * still open (so a later test may reuse their run ids), then stops the worker.
 */
import { randomUUID } from 'node:crypto'
import { Client, Connection, WorkflowNotFoundError } from '@temporalio/client'
import { DefaultLogger, NativeConnection, Runtime, type WorkflowBundle } from '@temporalio/worker'
import type { Engine, MigrationStore, StepDispatcher } from '@loom/core'
import { bundleLoomWorkflows, createLoomWorker, temporalEngine, type TemporalEngineOptions } from '../../src/index'

// Workers log every state change at INFO, and the core warns when a test terminates a
// workflow mid-task; tests only want real trouble.
Runtime.install({ logger: new DefaultLogger('ERROR'), telemetryOptions: { logging: { filter: { core: 'ERROR', other: 'ERROR' } } } })

let bundle: Promise<WorkflowBundle> | undefined

/** The workflow code, bundled once per test file. */
export function loomBundle(): Promise<WorkflowBundle> {
  bundle ??= bundleLoomWorkflows({ logger: new DefaultLogger('WARN') })
  return bundle
}

export interface Harness {
  engine: Engine
  client: Client
  taskQueue: string
  /** Stops the worker (its workflows stay open on the server). */
  stopWorker(): Promise<void>
  close(): Promise<void>
}

export interface HarnessOptions {
  address: string
  store: MigrationStore
  dispatcher: StepDispatcher
  engine?: Omit<TemporalEngineOptions, 'client' | 'taskQueue'>
  /** Start no worker (the test hosts it elsewhere). */
  noWorker?: boolean
  taskQueue?: string
}

export async function createHarness(options: HarnessOptions): Promise<Harness> {
  const taskQueue = options.taskQueue ?? `loom-test-${randomUUID()}`
  const connection = await Connection.connect({ address: options.address })
  const client = new Client({ connection })
  let stopWorker = async () => {}
  let nativeConnection: NativeConnection | undefined
  if (!options.noWorker) {
    nativeConnection = await NativeConnection.connect({ address: options.address })
    const worker = await createLoomWorker({
      connection: nativeConnection,
      taskQueue,
      store: options.store,
      dispatcher: options.dispatcher,
      workflowBundle: await loomBundle(),
    })
    const running = worker.run()
    let stopped: Promise<void> | undefined
    stopWorker = () => {
      stopped ??= (async () => {
        if (worker.getState() === 'RUNNING') worker.shutdown()
        await running
      })()
      return stopped
    }
  }

  const started = new Set<string>()
  const inner = temporalEngine({ client, taskQueue, ...options.engine })
  const engine: Engine = {
    ...inner,
    async start(run) {
      await inner.start(run)
      started.add(run.runId)
    },
    async resume(run) {
      await inner.resume!(run)
      started.add(run.runId)
    },
  }

  return {
    engine,
    client,
    taskQueue,
    stopWorker,
    async close() {
      for (const runId of started) {
        try {
          const handle = client.workflow.getHandle(runId)
          if ((await handle.describe()).status.name === 'RUNNING') await handle.terminate('test finished')
        } catch (error) {
          if (!(error instanceof WorkflowNotFoundError)) throw error
        }
      }
      await stopWorker()
      await nativeConnection?.close()
      await connection.close()
    },
  }
}
