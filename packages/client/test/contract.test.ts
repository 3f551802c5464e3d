import { serve, type ServerType } from '@hono/node-server'
import { createLoom, localEngine, memoryStore, type DryRunner, type StepDispatcher } from '@loom/core'
import { loomContract } from '@loom/core/testing'
import { loomApp } from '@loom/hono'
import type { AddressInfo } from 'node:net'
import { createClient } from '../src/index'

/**
 * `createClient → loomApp → createLoom` passes the same contract as `createLoom` itself:
 * the two implementations of `Loom` are interchangeable. Once through `app.request` (no
 * socket), once through a real HTTP server on 127.0.0.1.
 */
const inProcess = (deps: { dispatcher: StepDispatcher; dryRunner: DryRunner }) => {
  const loom = createLoom({ store: memoryStore(), engine: localEngine({ retryDelayMs: 10 }), onError: () => {}, ...deps })
  return loom
}

loomContract('createLoom (memoryStore, localEngine)', async (deps) => {
  const loom = inProcess(deps)
  await loom.ready
  return { loom, close: () => loom.close() }
})

loomContract('createClient → loomApp via app.request', async (deps) => {
  const loom = inProcess(deps)
  await loom.ready
  const app = loomApp(loom, { heartbeatMs: 1_000 })
  const client = createClient({ baseUrl: 'http://loom.test/', fetch: (input, init) => app.request(input, init) })
  return {
    loom: client,
    close: async () => {
      client.close()
      await loom.close()
    },
  }
})

loomContract('createClient → loomApp over HTTP on 127.0.0.1, with tokens', async (deps) => {
  const loom = inProcess(deps)
  await loom.ready
  const app = loomApp(loom, { token: 'operator-secret', workerToken: 'worker-secret' })
  const server = await new Promise<ServerType>((resolve) => {
    const s = serve({ fetch: app.fetch, hostname: '127.0.0.1', port: 0 }, () => resolve(s))
  })
  const { port } = server.address() as AddressInfo
  // The operator token is accepted on worker routes too, so one client can do everything.
  const client = createClient({ baseUrl: `http://127.0.0.1:${port}`, token: 'operator-secret' })
  return {
    loom: client,
    close: async () => {
      client.close()
      await new Promise<void>((resolve) => server.close(() => resolve()))
      await loom.close()
    },
  }
})
