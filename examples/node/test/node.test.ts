import { fileURLToPath } from 'node:url'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { checkEdges, driveWholeRun, startFakeWorker, startServer, type FakeWorker, type RunningServer } from './whole-run'

/** The example as it runs in production: its built entry point on Node, a real server on 127.0.0.1. */
const main = fileURLToPath(new URL('../dist/main.js', import.meta.url))
const TOKEN = 'node-example-token'

describe('examples/node: loomApp under /api of an existing Hono app on @hono/node-server', () => {
  let server: RunningServer
  let worker: FakeWorker

  beforeAll(async () => {
    worker = await startFakeWorker()
    server = await startServer(process.execPath, [main], { PORT: '0', HOST: '127.0.0.1', LOOM_TOKEN: TOKEN })
  })
  afterAll(async () => {
    await server?.stop()
    await worker?.close()
  })

  it('keeps the service’s own routes', async () => {
    const response = await fetch(`${server.url}/version`)
    expect(await response.json()).toEqual({ service: 'billing-service', version: '1.4.2' })
  })

  it('answers health, a JSON 404 under /api and 401 without the token', async () => {
    await checkEdges(`${server.url}/api`, TOKEN)
  })

  it('drives a whole run over HTTP to completed', async () => {
    await driveWholeRun({ api: `${server.url}/api`, token: TOKEN, worker })
  })
})
