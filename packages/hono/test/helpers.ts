import { createLoom, localEngine, memoryStore, type Engine, type LoomDeps, type MigrationStore } from '@loom/core'
import type { RunRecord } from '@loom/core/store'
import { announcement, candidates, fakeWorker } from '@loom/core/testing'
import { type LoomAppOptions, loomApp, openApiDocument } from '../src/index'

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
  let documented: ReturnType<typeof documentedStatuses> | undefined

  /**
   * Fails a test whose request got an answer its route's OpenAPI operation does not list,
   * so every test of the app also checks the document. Unknown routes, wrong methods (no
   * operation) and bugs (500) are the document's preamble, not an operation's.
   */
  const checkDocumented = (method: string, path: string, status: number) => {
    documented ??= documentedStatuses(openApiDocument(app))
    const pathname = new URL(path, 'http://loom.test').pathname
    const op = documented.find((o) => o.method === method.toLowerCase() && o.pattern.test(pathname))
    if (op && status !== 500 && !op.statuses.includes(String(status))) {
      throw new Error(`${method} ${pathname} answered ${status}; its operation ${op.operationId} lists only ${op.statuses.join(', ')}`)
    }
  }

  /** One request; `body` is sent as JSON unless it is a string (sent as is, still labelled JSON). */
  const call = async (method: string, path: string, body?: unknown, headers: Record<string, string> = {}) => {
    const init: RequestInit = { method, headers: { ...headers } }
    if (body !== undefined) {
      init.headers = { 'content-type': 'application/json', ...headers }
      init.body = typeof body === 'string' ? body : JSON.stringify(body)
    }
    const response = await app.request(path, init)
    checkDocumented(method, path, response.status)
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
  const snapshot = async (): Promise<{ migrations: unknown[]; runs: RunRecord[] }> => ({
    migrations: await loom.listMigrations(),
    runs: await store
      .listRuns('queued')
      .then(async (q) => [...q, ...(await store.listRuns('running')), ...(await store.listRuns('completed'))]),
  })

  return { loom, app, worker, store, call, snapshot, errors, close: () => loom.close() }
}

export { announcement, candidates }

/** Each operation of an OpenAPI document with a pattern for its concrete paths and the statuses it lists. */
function documentedStatuses(doc: Record<string, any>) {
  return Object.entries(doc.paths as Record<string, Record<string, any>>).flatMap(([path, item]) =>
    Object.entries(item).map(([method, op]) => ({
      method,
      operationId: op.operationId as string,
      pattern: new RegExp(`^${path.replace(/[.]/g, '\\.').replace(/\{\w+\}/g, '[^/]+')}$`),
      statuses: Object.keys(op.responses),
    })),
  )
}
