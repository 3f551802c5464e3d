import { httpDispatcher, httpDryRunner } from '@loom/core'
import { eventually } from '@loom/core/testing'
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http'
import type { AddressInfo } from 'node:net'
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest'
import { announcement, setup } from './helpers'

/**
 * The SSRF, tried against loomApp with the real HTTP dispatcher and dry runner: a
 * listener on 127.0.0.1 poses as an internal admin endpoint that answers 403 with a secret
 * and records every request it gets. Loom must not be pointed at it with a query or
 * credentials, nor past an allow-list, nor through a redirect; and when it is allowed and
 * refuses, no answer of Loom's carries its body.
 */

const SECRET = 'INTERNAL-SECRET: db_password=hunter2'
const WORKER_TOKEN = 'worker-secret'

interface Received {
  method: string
  path: string
  authorization: boolean
}

/** A listener on 127.0.0.1 that records each request and answers with `respond`. */
async function listener(respond: (req: IncomingMessage, res: ServerResponse) => void) {
  const received: Received[] = []
  const server: Server = createServer((req, res) => {
    received.push({ method: req.method ?? '', path: req.url ?? '', authorization: req.headers.authorization !== undefined })
    req.resume()
    req.on('end', () => respond(req, res))
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const origin = `http://127.0.0.1:${(server.address() as AddressInfo).port}`
  return { origin, received, close: () => new Promise<void>((resolve) => server.close(() => resolve())) }
}

let admin: Awaited<ReturnType<typeof listener>>
let redirector: Awaited<ReturnType<typeof listener>>
beforeAll(async () => {
  admin = await listener((_, res) => {
    res.writeHead(403, { 'content-type': 'text/plain' })
    res.end(SECRET)
  })
  // A worker that sends every call on to the admin endpoint, credentials and all.
  redirector = await listener((_, res) => {
    res.writeHead(302, {
      location: `${admin.origin.replace('//', '//root:toor@')}/admin/delete-everything?token=abc`,
      'content-type': 'text/plain',
    })
    res.end(SECRET)
  })
})
afterAll(async () => {
  await admin.close()
  await redirector.close()
})

/** Every answer body the test saw; none may carry the admin endpoint's body or a URL's credentials. */
const bodies: string[] = []
afterEach(() => {
  for (const body of bodies) {
    expect(body).not.toContain('INTERNAL-SECRET')
    expect(body).not.toContain('hunter2')
    expect(body).not.toContain('user:pw')
    expect(body).not.toContain('root:toor')
  }
  bodies.length = 0
  admin.received.length = 0
  redirector.received.length = 0
})

async function loomWith(allowedWorkerUrls?: string[]) {
  const t = await setup({
    deps: {
      dispatcher: httpDispatcher({ token: WORKER_TOKEN, timeoutMs: 2_000 }),
      dryRunner: httpDryRunner({ token: WORKER_TOKEN, timeoutMs: 2_000 }),
      ...(allowedWorkerUrls ? { allowedWorkerUrls } : {}),
    },
  })
  const call = async (method: string, path: string, body?: unknown) => {
    const answer = await t.call(method, path, body)
    bodies.push(answer.text)
    return answer
  }
  return { ...t, call }
}

const announce = (workerUrl: string) => ({ ...announcement('app-chart', { workerUrl }), candidates: [{ id: 'billing-api' }] })

describe('SSRF through workerUrl', () => {
  it('refuses a workerUrl with a query (the issue’s delete-everything?ignore=) and calls nothing', async () => {
    const t = await loomWith()
    const answer = await t.call('POST', '/registry/announce', announce(`${admin.origin}/admin/delete-everything?ignore=`))
    expect(answer.status).toBe(400)
    expect(answer.json).toMatchObject({ code: 'invalid', field: 'workerUrl' })
    expect(answer.json.error).toContain('must not have a query or a fragment')
    expect((await t.call('POST', '/migrations/app-chart/dry-run', { candidateId: 'billing-api' })).status).toBe(404)
    expect(await t.loom.listMigrations()).toEqual([])
    expect(admin.received).toEqual([])
    await t.close()
  })

  it('refuses a workerUrl with credentials without repeating them', async () => {
    const t = await loomWith()
    const answer = await t.call('POST', '/registry/announce', announce(admin.origin.replace('//', '//user:pw@')))
    expect(answer.status).toBe(400)
    expect(answer.json).toMatchObject({ code: 'invalid', field: 'workerUrl' })
    expect(answer.json.error).toContain('must not carry credentials')
    expect(await t.loom.listMigrations()).toEqual([])
    expect(admin.received).toEqual([])
    await t.close()
  })

  it('refuses a workerUrl off the allow-list and calls nothing', async () => {
    const t = await loomWith([redirector.origin])
    // The same listener under another name is another origin.
    for (const workerUrl of [`${admin.origin}/admin`, redirector.origin.replace('127.0.0.1', 'localhost')]) {
      const answer = await t.call('POST', '/registry/announce', announce(workerUrl))
      expect(answer.status, workerUrl).toBe(400)
      expect(answer.json).toMatchObject({ code: 'invalid', field: 'workerUrl' })
      expect(answer.json.error).toContain('is not an allowed worker URL')
    }
    expect(await t.loom.listMigrations()).toEqual([])
    expect(admin.received).toEqual([])
    await t.close()
  })

  it('answers an allowed worker’s 403 with 503 naming the worker, never its body', async () => {
    const t = await loomWith([admin.origin])
    expect((await t.call('POST', '/registry/announce', announce(`${admin.origin}/admin`))).status).toBe(200)

    const dryRun = await t.call('POST', '/migrations/app-chart/dry-run', { candidateId: 'billing-api' })
    expect(dryRun.status).toBe(503)
    expect(dryRun.json).toEqual({
      error: `worker app charts at ${admin.origin}/admin/dry-run answered 403`,
      code: 'unavailable',
      dependency: 'worker app charts',
    })
    // Allowed, so it was called, with the worker token: once, on the path announced.
    expect(admin.received).toEqual([{ method: 'POST', path: '/admin/dry-run', authorization: true }])

    const { runId } = (await t.call('POST', '/migrations/app-chart/queue', { candidateId: 'billing-api' })).json
    expect((await t.call('POST', `/runs/${runId}/execute`)).status).toBe(202)
    const status = await eventually(async () => {
      const answer = await t.call('GET', `/status/${runId}`)
      expect(answer.json.result.results[0]?.metadata?.error).toBeDefined()
      return answer
    })
    expect(status.json.result.results[0].metadata.error).toContain(`worker app charts at ${admin.origin}/admin/steps/dispatch answered 403`)
    bodies.push((await t.call('GET', `/runs/${runId}`)).text, (await t.call('GET', '/migrations/app-chart')).text)
    expect(admin.received.slice(1)).toEqual([{ method: 'POST', path: '/admin/steps/dispatch', authorization: true }])
    await t.close()
  })

  it('does not follow an allowed worker’s redirect to the admin endpoint', async () => {
    const t = await loomWith([redirector.origin])
    expect((await t.call('POST', '/registry/announce', announce(`${redirector.origin}/loom`))).status).toBe(200)

    const dryRun = await t.call('POST', '/migrations/app-chart/dry-run', { candidateId: 'billing-api' })
    expect(dryRun.status).toBe(503)
    expect(dryRun.json.error).toBe(
      `worker app charts at ${redirector.origin}/loom/dry-run answered 302, a redirect, which Loom does not follow: announce the worker's final URL`,
    )
    expect(dryRun.text).not.toContain('delete-everything')

    const { runId } = (await t.call('POST', '/migrations/app-chart/queue', { candidateId: 'billing-api' })).json
    await t.call('POST', `/runs/${runId}/execute`)
    const error = await eventually(async () => {
      const answer = await t.call('GET', `/status/${runId}`)
      const reason = answer.json.result.results[0]?.metadata?.error
      expect(reason).toBeDefined()
      return reason as string
    })
    expect(error).toContain(`worker app charts at ${redirector.origin}/loom/steps/dispatch answered 302, a redirect`)
    expect(redirector.received).toEqual([
      { method: 'POST', path: '/loom/dry-run', authorization: true },
      { method: 'POST', path: '/loom/steps/dispatch', authorization: true },
    ])
    expect(admin.received).toEqual([])
    await t.close()
  })
})
