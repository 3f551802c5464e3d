import { createLoom, LoomError, localEngine, memoryStore } from '@loom/core'
import { describe, expect, it } from 'vitest'
import { announcement, candidates, M, setup } from '../test/helpers'
import { loomApp } from './app'
import { openApiDocument } from './openapi'

const RUN = `${M}__svc-0`
const samplePath = (path: string) => path.replace('{id}', M).replace('{runId}', RUN).replace('{candidateId}', 'svc-0')
const bodies: Record<string, unknown> = {
  announce: announcement(M),
  registerMigration: { name: 'x', candidates: [], steps: [{ name: 's', workerApp: 'w' }] },
  submitCandidates: { candidates: [] },
  queue: { candidateId: 'svc-1' },
  dryRun: { candidateId: 'svc-1' },
  complete: { stepName: 'update-chart', candidate: { id: 'svc-0' }, success: true },
  prOpened: { stepName: 'update-chart', candidate: { id: 'svc-0' }, success: true },
}

describe('bearer tokens', () => {
  it('guards every route as the OpenAPI document declares it: operator, worker or public', async () => {
    const t = await setup({ token: 'op-secret', workerToken: 'wk-secret' })
    // The worker announces, so the migration is its own and its worker routes are open to it.
    await t.loom.as({ kind: 'worker', name: 'worker' }).announce(announcement(M, { candidates: candidates(2) }))
    await t.loom.queue(M, 'svc-0')
    const operations = Object.entries(openApiDocument(t.app).paths as Record<string, Record<string, any>>).flatMap(([path, item]) =>
      Object.entries(item).map(([method, op]) => ({ method, path, operationId: op.operationId as string, access: op.tags[0] as string })),
    )
    expect(operations).toHaveLength(26)
    const tried: string[] = []
    for (const op of operations) {
      const request = (authorization?: string) =>
        t.call(op.method.toUpperCase(), samplePath(op.path), bodies[op.operationId], authorization ? { authorization } : {})
      const anonymous = await request()
      const asWorker = await request('Bearer wk-secret')
      const wrong = await request('Bearer op-secret-but-longer')
      if (op.access === 'public') {
        expect(anonymous.status, op.operationId).not.toBe(401)
        continue
      }
      for (const refused of [anonymous, wrong]) {
        expect(refused.status, op.operationId).toBe(401)
        expect(refused.json.code, op.operationId).toBe('unauthorized')
        expect(refused.headers.get('www-authenticate')).toBe('Bearer realm="loom"')
      }
      // The worker token is known, so the worker is who it says; an operator route then refuses its role.
      if (op.access === 'operator') {
        expect(asWorker.status, op.operationId).toBe(403)
        expect(asWorker.json.code, op.operationId).toBe('forbidden')
        expect(asWorker.headers.get('www-authenticate'), op.operationId).toBeNull()
      } else expect([401, 403], op.operationId).not.toContain(asWorker.status)
      tried.push(`${op.method} ${op.path}`)
    }
    expect(tried).toHaveLength(operations.filter((o) => o.access !== 'public').length)
    await t.close()
  })

  it('401 without a valid token changes nothing', async () => {
    const t = await setup({ token: 'op-secret' })
    await t.loom.announce(announcement(M, { candidates: candidates(1) }))
    const before = await t.snapshot()
    for (const authorization of [undefined, 'Bearer nope', 'Basic b3A6c2VjcmV0', 'Bearer', 'op-secret', 'Bearer op-secret extra']) {
      const headers: Record<string, string> = authorization ? { authorization } : {}
      expect((await t.call('POST', `/migrations/${M}/queue`, { candidateId: 'svc-0' }, headers)).status, authorization).toBe(401)
      expect((await t.call('POST', `/migrations/${M}/candidates`, { candidates: [] }, headers)).status, authorization).toBe(401)
      expect((await t.call('DELETE', `/migrations/${M}`, undefined, headers)).status, authorization).toBe(401)
    }
    expect(await t.snapshot()).toEqual(before)
    await t.close()
  })

  it('accepts the token as the worker token when no worker token is set, and the scheme in any case', async () => {
    const t = await setup({ token: 'op-secret' })
    expect((await t.call('POST', '/registry/announce', announcement(M), { authorization: 'Bearer op-secret' })).status).toBe(200)
    expect((await t.call('GET', `/migrations/${M}`, undefined, { authorization: 'bearer op-secret' })).status).toBe(200)
    await t.close()
  })

  it('closes the operator routes too when only a worker token is set: 401 without a token, 403 with the worker’s', async () => {
    const t = await setup({ workerToken: 'wk-secret' })
    expect((await t.call('POST', '/registry/announce', announcement(M))).status).toBe(401)
    expect((await t.call('POST', '/registry/announce', announcement(M), { authorization: 'Bearer wk-secret' })).status).toBe(200)
    expect((await t.call('GET', `/migrations/${M}`)).status).toBe(401)
    expect((await t.call('GET', `/migrations/${M}`, undefined, { authorization: 'Bearer wk-secret' })).status).toBe(403)
    await t.close()
  })

  it('leaves /health and /openapi.json open', async () => {
    const t = await setup({ token: 'op-secret' })
    expect((await t.call('GET', '/health')).status).toBe(200)
    expect((await t.call('GET', '/openapi.json')).status).toBe(200)
    await t.close()
  })
})

describe('token options', () => {
  it('refuses a token a bearer header could never carry, naming the option', () => {
    const loom = createLoom({ store: memoryStore(), engine: localEngine() })
    for (const [field, holder, options] of [
      ['token', 'operator', { token: 'has space' }],
      ['workerToken', 'worker', { token: 'fine', workerToken: 'n0t!valid' }],
      ['operators', 'alice', { operators: 'alice:has space' }],
      ['workers', 'charts', { workers: { charts: 'tab\there' } }],
    ] as const) {
      let caught: unknown
      try {
        loomApp(loom, options)
      } catch (error) {
        caught = error
      }
      expect(LoomError.is(caught) && caught.code, field).toBe('invalid')
      expect((caught as LoomError).message).toMatch(new RegExp(`^${field}: the token of ${holder} must be a bearer token`))
      expect((caught as LoomError).details).toEqual({ field })
    }
    expect(() => loomApp(loom, { token: 'abc-DEF_123.~+/==' })).not.toThrow()
    void loom.close()
  })
})
