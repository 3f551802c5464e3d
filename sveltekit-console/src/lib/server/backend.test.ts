import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterEach, describe, expect, it } from 'vitest'
import { serve, type ServerType } from '@hono/node-server'
import { LoomError, memoryStore } from '@loom/core'
import { startBackend, type Backend } from './backend'
import { readConfig } from './config'

const opened: Array<() => Promise<unknown>> = []
afterEach(async () => {
  for (const close of opened.splice(0).reverse()) await close()
})

async function tempDir() {
  const dir = await mkdtemp(join(tmpdir(), 'loom-console-backend-'))
  opened.push(() => rm(dir, { recursive: true, force: true }))
  return dir
}

async function started(backend: Promise<Backend>) {
  const b = await backend
  opened.push(() => b.close())
  return b
}

const announcement = {
  id: 'app-chart',
  name: 'App chart',
  steps: [{ name: 'bump', workerApp: 'charts' }],
  candidates: [{ id: 'billing-api' }, { id: 'checkout' }],
}

describe('the embedded backend', () => {
  it('serves the HTTP API under /api over the same Loom the pages use', async () => {
    const backend = await started(startBackend(readConfig({}), { store: memoryStore(), log: () => {} }))
    const announced = await backend.api(
      new Request('http://console.test/api/registry/announce', {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify(announcement),
      }),
    )
    expect(announced.status).toBe(200)
    expect((await backend.loom.listCandidates('app-chart')).map((c) => c.id)).toEqual(['billing-api', 'checkout'])
    const missing = await backend.api(new Request('http://console.test/api/migrations/nope'))
    expect(missing.status).toBe(404)
    expect(await missing.json()).toEqual({ error: 'migration nope not found', code: 'not_found' })
  })

  it('requires LOOM_TOKEN on the API when it is set', async () => {
    const backend = await started(startBackend(readConfig({ LOOM_TOKEN: 'op' }), { store: memoryStore(), log: () => {} }))
    expect((await backend.api(new Request('http://console.test/api/migrations'))).status).toBe(401)
    const ok = await backend.api(new Request('http://console.test/api/migrations', { headers: { authorization: 'Bearer op' } }))
    expect(ok.status).toBe(200)
  })

  it('keeps its data in PGlite in the data folder across a restart', async () => {
    const dataDir = await tempDir()
    const config = readConfig({ LOOM_DATA_DIR: dataDir })
    const first = await startBackend(config, { log: () => {} })
    try {
      await first.loom.announce(announcement)
      await first.loom.queue('app-chart', 'checkout')
    } finally {
      await first.close()
    }
    const second = await started(startBackend(config, { log: () => {} }))
    const statuses = Object.fromEntries((await second.loom.listCandidates('app-chart')).map((c) => [c.id, c.status]))
    expect(statuses).toEqual({ 'billing-api': 'not_started', checkout: 'queued' })
  })
})

describe('the remote backend (LOOM_URL)', () => {
  it('works against another Loom through @loom/client and forwards /api to it', async () => {
    const origin = await started(startBackend(readConfig({ LOOM_TOKEN: 'op' }), { store: memoryStore(), log: () => {} }))
    await origin.loom.announce(announcement)
    const server: ServerType = await new Promise((resolve) => {
      const s = serve({ fetch: (request) => origin.api(request), port: 0, hostname: '127.0.0.1' }, () => resolve(s))
    })
    opened.push(() => new Promise((resolve) => server.close(resolve)))
    const address = server.address()
    const port = typeof address === 'object' && address ? address.port : 0

    const remote = await started(startBackend(readConfig({ LOOM_URL: `http://127.0.0.1:${port}/api`, LOOM_TOKEN: 'op' })))
    expect(remote.mode).toBe('remote')
    const runId = await remote.loom.queue('app-chart', 'billing-api')
    expect(runId).toBe('app-chart__billing-api')
    expect((await origin.loom.listCandidates('app-chart')).find((c) => c.id === 'billing-api')?.status).toBe('queued')
    // The run page looks a candidate up by its id, without paging through the others.
    expect(await remote.loom.getCandidate('app-chart', 'billing-api')).toEqual({ id: 'billing-api', status: 'queued', runId })

    // The same typed errors as in-process.
    const conflict = await remote.loom.queue('app-chart', 'billing-api').catch((e: unknown) => e)
    expect(LoomError.is(conflict, 'conflict')).toBe(true)

    // The browser's /api requests are forwarded with their own credentials.
    const forwarded = await remote.api(
      new Request('http://console.test/api/migrations?summary=true', { headers: { authorization: 'Bearer op' } }),
    )
    expect(forwarded.status).toBe(200)
    const body = (await forwarded.json()) as { migrations: Array<{ id: string; counts: Record<string, number> }> }
    expect(body.migrations.map((m) => [m.id, m.counts.queued])).toEqual([['app-chart', 1]])
    expect((await remote.api(new Request('http://console.test/api/migrations'))).status).toBe(401)
  })

  it('answers 503 on /api when the remote Loom cannot be reached', async () => {
    const remote = await started(startBackend(readConfig({ LOOM_URL: 'http://127.0.0.1:9/api' })))
    const response = await remote.api(new Request('http://console.test/api/health'))
    expect(response.status).toBe(503)
    expect(await response.json()).toMatchObject({ code: 'unavailable' })
  })
})
