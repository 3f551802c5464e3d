import { createLoom, localEngine, memoryStore, type Engine, type LoomDeps, type MigrationStore } from '@loom/core'
import { announcement, candidates, fakeWorker } from '@loom/core/testing'
import { loomApp, type LoomAppOptions } from '../src/index'

export const M = 'app-chart'

/** Loom over a fresh memory store and the local engine, a fake worker, and the app over them. */
export async function setup(options: LoomAppOptions & { store?: MigrationStore; engine?: Engine; deps?: Partial<LoomDeps> } = {}) {
  const worker = fakeWorker()
  const store = options.store ?? memoryStore()
  const loom = createLoom({
    store,
    engine: options.engine ?? localEngine({ retryDelayMs: 5, dispatchAttempts: 1 }),
    dispatcher: worker.dispatcher,
    dryRunner: worker.dryRunner,
    onError: () => {},
    ...options.deps,
  })
  await loom.ready
  const errors: unknown[] = []
  const app = loomApp(loom, { onError: (e) => errors.push(e), ...options })

  /** One request; `body` is sent as JSON unless it is a string (sent as is, still labelled JSON). */
  const call = async (method: string, path: string, body?: unknown, headers: Record<string, string> = {}) => {
    const init: RequestInit = { method, headers: { ...headers } }
    if (body !== undefined) {
      init.headers = { 'content-type': 'application/json', ...headers }
      init.body = typeof body === 'string' ? body : JSON.stringify(body)
    }
    const response = await app.request(path, init)
    const text = await response.text()
    let json: any
    try {
      json = text ? JSON.parse(text) : undefined
    } catch {
      json = undefined
    }
    return { status: response.status, headers: response.headers, text, json }
  }

  /** Everything a request could have changed, to compare before and after a refusal. */
  const snapshot = async () => ({
    migrations: await loom.listMigrations(),
    runs: await store
      .listRuns('queued')
      .then(async (q) => [...q, ...(await store.listRuns('running')), ...(await store.listRuns('completed'))]),
  })

  return { loom, app, worker, store, call, snapshot, errors, close: () => loom.close() }
}

export { announcement, candidates }
