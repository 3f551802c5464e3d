/**
 * Serves a store and a dispatcher of this process over HTTP on 127.0.0.1, and the client side
 * for another process: the restart test hosts the Loom worker in a child process that must
 * use the test's store and dispatcher.
 */
import { createServer, type Server } from 'node:http'
import { LoomError, type MigrationStore, type StepDispatcher } from '@loom/core'

const STORE_METHODS = [
  'upsertMigration',
  'getMigration',
  'getMigrationRecord',
  'listMigrations',
  'deleteMigration',
  'replaceCandidates',
  'listCandidates',
  'getCandidate',
  'transition',
  'recordStep',
  'markStep',
  'listRuns',
  'listActivity',
  'renewLease',
  'claimRuns',
  'ping',
] as const satisfies readonly (keyof MigrationStore)[]

export async function serveRpc(target: {
  store: MigrationStore
  dispatcher: StepDispatcher
}): Promise<{ url: string; close(): Promise<void> }> {
  const server: Server = createServer(async (req, res) => {
    let body = ''
    for await (const chunk of req) body += chunk
    const { args = [], absent = [] } = JSON.parse(body || '{}') as { args?: unknown[]; absent?: number[] }
    // JSON has no undefined: an argument left out travels as its position, so `upsertMigration(d, undefined, claimant)`
    // arrives with its candidates absent, not null, and a claimant left out is no claimant.
    for (const i of absent) args[i] = undefined
    const [kind, method] = (req.url ?? '').split('/').filter(Boolean)
    try {
      let result: unknown
      if (kind === 'store' && (STORE_METHODS as readonly string[]).includes(method!)) {
        result = await (target.store[method as keyof MigrationStore] as (...a: unknown[]) => Promise<unknown>)(...args)
      } else if (kind === 'dispatcher' && method === 'dispatch') {
        result = await target.dispatcher.dispatch(...(args as Parameters<StepDispatcher['dispatch']>))
      } else {
        throw new LoomError('not_found', `no rpc ${req.url}`)
      }
      res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ result: result ?? null }))
    } catch (error) {
      const code = LoomError.is(error) ? error.code : 'unavailable'
      res.writeHead(500, { 'content-type': 'application/json' }).end(JSON.stringify({ error: { code, message: (error as Error).message } }))
    }
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const { port } = server.address() as { port: number }
  return {
    url: `http://127.0.0.1:${port}`,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections()
        server.close(() => resolve())
      }),
  }
}

async function call(url: string, path: string, args: unknown[]): Promise<unknown> {
  const absent = args.flatMap((arg, i) => (arg === undefined ? [i] : []))
  const response = await fetch(`${url}/${path}`, { method: 'POST', body: JSON.stringify({ args, absent }) })
  const body = (await response.json()) as { result?: unknown; error?: { code: string; message: string } }
  if (body.error) throw new LoomError(LoomError.isCode(body.error.code) ? body.error.code : 'unavailable', body.error.message)
  return body.result === null ? undefined : body.result
}

export function rpcStore(url: string): MigrationStore {
  const store: Partial<Record<string, unknown>> = {}
  for (const method of STORE_METHODS) store[method] = (...args: unknown[]) => call(url, `store/${method}`, args)
  return store as unknown as MigrationStore
}

export function rpcDispatcher(url: string): StepDispatcher {
  return { dispatch: async (target, request) => void (await call(url, 'dispatcher/dispatch', [target, request])) }
}
