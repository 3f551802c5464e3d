import { existsSync } from 'node:fs'
import { fileURLToPath } from 'node:url'
import {
  Worker,
  bundleWorkflowCode,
  type BundleOptions,
  type NativeConnection,
  type WorkerOptions,
  type WorkflowBundle,
  type WorkflowBundleOption,
} from '@temporalio/worker'
import { LoomError, type MigrationStore, type StepDispatcher } from '@loom/core'
import { createActivities } from './activities'

export interface LoomWorkerOptions {
  /** The caller's connection to Temporal; the worker never closes it. */
  connection: NativeConnection
  /** The task queue `temporalEngine` starts runs on. */
  taskQueue: string
  /** The store the runs read and write: the same one the service's `createLoom` uses. */
  store: MigrationStore
  /** How steps reach worker apps (`httpDispatcher()` from core, or `mqttDispatcher` from `@loom/mqtt`). */
  dispatcher: StepDispatcher
  /** Default `default`. */
  namespace?: string
  /**
   * The workflow code, bundled ahead of time with {@link bundleLoomWorkflows} (`{ code }`), or
   * written to a file at build time (`{ codePath }`). Without it the worker bundles `loomRun`
   * from this package when it is created (a second or two, once per worker).
   */
  workflowBundle?: WorkflowBundleOption
  /** Further Temporal worker options (concurrency, sticky queue timeout, interceptors, …). */
  worker?: Omit<Partial<WorkerOptions>, 'connection' | 'taskQueue' | 'namespace' | 'activities' | 'workflowsPath' | 'workflowBundle'>
}

/**
 * The Temporal worker that hosts Loom's runs: the `loomRun` workflow and its activities over
 * your store and dispatcher. Start it with `run()`; stop it with `shutdown()` (in-flight
 * runs are kept by Temporal and resumed by the next worker on the task queue).
 *
 * @example
 * import { NativeConnection } from '@temporalio/worker'
 * import { httpDispatcher } from '@loom/core'
 * import { createLoomWorker } from '@loom/temporal'
 *
 * const connection = await NativeConnection.connect({ address: 'localhost:7233' })
 * const worker = await createLoomWorker({ connection, taskQueue: 'loom', store, dispatcher: httpDispatcher() })
 * const running = worker.run()
 * process.on('SIGTERM', () => worker.shutdown())
 * await running
 */
export async function createLoomWorker(options: LoomWorkerOptions): Promise<Worker> {
  const { connection, taskQueue, store, dispatcher } = options
  return Worker.create({
    ...options.worker,
    connection,
    taskQueue,
    namespace: options.namespace ?? 'default',
    activities: createActivities({ store, dispatcher }),
    ...(options.workflowBundle ? { workflowBundle: options.workflowBundle } : { workflowsPath: loomWorkflowsPath() }),
  })
}

/**
 * Bundles the `loomRun` workflow code once, for workers created later in this process (or
 * written to a file at build time and loaded with `{ codePath }`). The bundle holds the
 * installed `@temporalio/workflow`, so make it with the same version the worker runs.
 *
 * @example
 * const workflowBundle = await bundleLoomWorkflows()
 * const worker = await createLoomWorker({ connection, taskQueue: 'loom', store, dispatcher, workflowBundle })
 */
export async function bundleLoomWorkflows(options: Omit<BundleOptions, 'workflowsPath'> = {}): Promise<WorkflowBundle> {
  const { code } = await bundleWorkflowCode({ ...options, workflowsPath: loomWorkflowsPath() })
  return { code }
}

/**
 * The file that defines `loomRun`: `workflows.js` beside this module in the published
 * package, `workflows.ts` when running from source.
 */
export function loomWorkflowsPath(): string {
  for (const name of ['./workflows.js', './workflows.ts']) {
    const path = fileURLToPath(new URL(name, import.meta.url))
    if (existsSync(path)) return path
  }
  throw new LoomError('unavailable', '@loom/temporal: workflows.js is missing beside the package entry; rebuild or reinstall the package')
}
