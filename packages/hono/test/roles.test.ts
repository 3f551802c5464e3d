import { type Actor, createLoom, LoomError, localEngine, memoryStore, type MigrationAnnouncement } from '@loom/core'
import { eventually } from '@loom/core/testing'
import { afterEach, describe, expect, it, vi } from 'vitest'
import { loomApp } from '../src/index'
import { M, setup } from './helpers'

/**
 * The attacks of issue 13 on the roles, each made as an attacker would make it, and what
 * `loomApp` now answers: the worker token approving a manual review, a worker taking over
 * another team's migration, operator routes left open by a worker token alone. Then the
 * `authenticate` hook, the open warning, and the loom's limits on the routes.
 */

const OP = { authorization: 'Bearer op-secret' }
const WK = { authorization: 'Bearer wk-secret' }

/** A migration of two steps: a worker step, then a manual review an operator decides. */
const reviewed = (id: string, workerUrl = 'http://127.0.0.1:9/team-a'): MigrationAnnouncement => ({
  id,
  name: 'Move to the app chart',
  workerUrl,
  steps: [
    { name: 'update', workerApp: 'charts', config: { chart: 'app' } },
    { name: 'review', workerApp: 'charts', config: { type: 'manual-review', instructions: 'Check the pull request' } },
  ],
  candidates: [{ id: 'billing-api' }, { id: 'search-api' }],
})

let t: Awaited<ReturnType<typeof setup>> | undefined
afterEach(async () => {
  await t?.close()
  t = undefined
})

describe('attack: the worker token decides a manual review', () => {
  async function atReview(options: Parameters<typeof setup>[0], worker: Record<string, string>) {
    t = await setup(options)
    expect((await t.call('POST', '/registry/announce', reviewed(M), worker)).status).toBe(200)
    const runId = (await t.call('POST', `/migrations/${M}/queue`, { candidateId: 'billing-api' }, OP)).json.runId as string
    expect((await t.call('POST', `/runs/${runId}/execute`, undefined, OP)).status).toBe(202)
    await eventually(() => expect(t!.worker.stepsOf(runId)).toEqual(['update']))
    const update = { stepName: 'update', candidate: { id: 'billing-api' }, success: true }
    expect((await t.call('POST', `/event/${runId}`, update, worker)).status).toBe(202)
    await eventually(async () => expect((await t!.call('GET', `/runs/${runId}`, undefined, OP)).json.steps).toHaveLength(2))
    return runId
  }

  it('is refused with 403 for the single worker token of API 0.2 setups; the run still waits, the decision is not recorded', async () => {
    const runId = await atReview({ token: 'op-secret', workerToken: 'wk-secret' }, WK)
    const before = await t!.snapshot()
    for (const [path, success] of [
      [`/event/${runId}`, true],
      [`/event/${runId}`, false],
      [`/event/${runId}/pr-opened`, true],
    ] as const) {
      const res = await t!.call('POST', path, { stepName: 'review', candidate: { id: 'billing-api' }, success }, WK)
      expect(res.status, `${path} ${success}`).toBe(403)
      expect(res.json).toEqual({
        code: 'forbidden',
        error: `worker worker may not decide step "review" of run ${runId}: approving or rejecting a manual review is an operator's action`,
      })
    }
    expect(await t!.snapshot()).toEqual(before)
    const run = await t!.call('GET', `/runs/${runId}`, undefined, OP)
    expect(run.json.status).toBe('running')
    expect(run.json.steps.map((s: { stepName: string; metadata?: Record<string, string> }) => [s.stepName, s.metadata?.phase])).toEqual([
      ['update', undefined],
      ['review', 'awaiting_review'],
    ])
    expect((await t!.call('GET', `/status/${runId}`, undefined, OP)).json.runtimeStatus).toBe('RUNNING')

    // The operator's approval is what moves it.
    expect(
      (await t!.call('POST', `/event/${runId}`, { stepName: 'review', candidate: { id: 'billing-api' }, success: true }, OP)).status,
    ).toBe(202)
    await eventually(async () => expect((await t!.call('GET', `/runs/${runId}`, undefined, OP)).json.status).toBe('completed'))
  })

  it('is refused for a named worker too, even the migration’s owner', async () => {
    const runId = await atReview({ operators: 'alice:op-secret', workers: 'team-a:wk-secret' }, WK)
    const res = await t!.call('POST', `/event/${runId}`, { stepName: 'review', candidate: { id: 'billing-api' }, success: true }, WK)
    expect(res.status).toBe(403)
    expect((await t!.loom.getRun(runId)).status).toBe('running')
  })
})

describe('attack: another team’s worker takes over a migration', () => {
  it('refuses worker B’s re-announce (name, steps, workerUrl) and its empty candidate list with 403; nothing of A’s changes', async () => {
    t = await setup({ operators: { alice: 'op-secret' }, workers: { 'team-a': 'wk-secret', 'team-b': 'wk-b-secret' } })
    const B = { authorization: 'Bearer wk-b-secret' }
    expect((await t.call('POST', '/registry/announce', reviewed(M), WK)).status).toBe(200)
    const before = (await t.call('GET', `/migrations/${M}`, undefined, OP)).json
    expect(before.owner).toBe('team-a')

    const takeover = {
      id: M,
      name: 'Taken over',
      workerUrl: 'http://127.0.0.1:4309/admin/delete-everything',
      steps: [{ name: 'wipe', workerApp: 'evil' }],
      candidates: [],
    }
    for (const body of [takeover, { data: takeover }]) {
      const res = await t.call('POST', '/registry/announce', body, B)
      expect(res.status).toBe(403)
      expect(res.json).toEqual({ code: 'forbidden', error: `worker team-b may not announce migration ${M}: it belongs to worker team-a` })
    }
    const emptied = await t.call('POST', `/migrations/${M}/candidates`, { candidates: [] }, B)
    expect(emptied.status).toBe(403)
    expect(emptied.json.code).toBe('forbidden')

    const after = (await t.call('GET', `/migrations/${M}`, undefined, OP)).json
    expect(after).toEqual(before)
    expect(after).toMatchObject({ name: 'Move to the app chart', workerUrl: 'http://127.0.0.1:9/team-a', owner: 'team-a' })
    expect(after.steps.map((s: { name: string }) => s.name)).toEqual(['update', 'review'])
    expect(after.candidates.map((c: { id: string }) => c.id)).toEqual(['billing-api', 'search-api'])

    // B's own migration is B's to announce and fill.
    expect((await t.call('POST', '/registry/announce', reviewed('team-b-migration'), B)).json.owner).toBe('team-b')
    expect((await t.call('POST', '/migrations/team-b-migration/candidates', { candidates: [] }, B)).status).toBe(204)
  })
})

describe('attack: with only a worker token set, the operator routes were open', () => {
  it('answers 401 to GET and POST /migrations without a token, and registers nothing', async () => {
    t = await setup({ workerToken: 'wk-secret' })
    const list = await t.call('GET', '/migrations')
    expect(list.status).toBe(401)
    expect(list.headers.get('www-authenticate')).toBe('Bearer realm="loom"')
    const register = await t.call('POST', '/migrations', { name: 'x', candidates: [], steps: [{ name: 's', workerApp: 'w' }] })
    expect(register.status).toBe(401)
    expect(register.json.code).toBe('unauthorized')
    expect(await t.loom.listMigrations()).toEqual([])
    // The worker's token is known and refused for its role; it still announces.
    expect((await t.call('GET', '/migrations', undefined, WK)).status).toBe(403)
    expect((await t.call('POST', '/registry/announce', reviewed(M), WK)).status).toBe(200)
  })
})

describe('refusing a role before the body is read', () => {
  it('answers a worker’s operator request 403 without reading its body, however malformed or large', async () => {
    t = await setup({ token: 'op-secret', workerToken: 'wk-secret' })
    const huge = JSON.stringify({ name: 'x', candidates: [], steps: Array.from({ length: 200_000 }, () => ({})) })
    for (const body of ['{not json', huge]) {
      const request = new Request('http://loom.test/migrations', {
        method: 'POST',
        headers: { ...WK, 'content-type': 'application/json', 'content-length': String(new TextEncoder().encode(body).length) },
        body,
      })
      const res = await t.app.request(request)
      expect(res.status).toBe(403)
      expect(request.bodyUsed).toBe(false)
    }
    // An operator's malformed body is read and judged: 400.
    expect((await t.call('POST', '/migrations', '{not json', OP)).status).toBe(400)
  })
})

describe('authenticate: the embedding service says who calls', () => {
  const people: Record<string, Actor> = { alice: { kind: 'operator', name: 'alice' }, charts: { kind: 'worker', name: 'charts' } }

  it('takes the actor it answers, once per request, and holds it to its role; null is 401', async () => {
    const seen: string[] = []
    t = await setup({
      authenticate: (request) => {
        seen.push(new URL(request.url).pathname)
        return people[request.headers.get('x-user') ?? ''] ?? null
      },
    })
    const as = (user: string) => ({ 'x-user': user })
    expect((await t.call('GET', '/migrations', undefined, as('mallory'))).status).toBe(401)
    expect((await t.call('GET', '/migrations', undefined, as('charts'))).status).toBe(403)
    expect((await t.call('POST', '/registry/announce', reviewed(M), as('charts'))).json.owner).toBe('charts')
    expect((await t.call('GET', `/migrations/${M}`, undefined, as('alice'))).status).toBe(200)
    expect((await t.call('GET', '/health')).status).toBe(200)
    expect((await t.call('GET', '/openapi.json')).status).toBe(200)
    expect(seen).toEqual(['/migrations', '/migrations', '/registry/announce', `/migrations/${M}`])
  })

  it('may be async; its LoomError is answered with its code, anything but an actor is a bug (500)', async () => {
    const errors: unknown[] = []
    t = await setup({
      onError: (error) => errors.push(error),
      authenticate: async (request) => {
        const user = request.headers.get('x-user')
        if (user === 'expired') throw new LoomError('unauthorized', 'unauthorized: the session has expired')
        if (user === 'odd') return { kind: 'admin', name: 'root' } as unknown as Actor
        if (user === 'loom') return { kind: 'system', name: 'loom' }
        return user ? { kind: 'operator', name: user } : null
      },
    })
    expect((await t.call('GET', '/migrations', undefined, { 'x-user': 'bob' })).status).toBe(200)
    const expired = await t.call('GET', '/migrations', undefined, { 'x-user': 'expired' })
    expect([expired.status, expired.json]).toEqual([401, { code: 'unauthorized', error: 'unauthorized: the session has expired' }])
    const odd = await t.app.request('/migrations', { headers: { 'x-user': 'odd' } })
    expect(odd.status).toBe(500)
    expect(String(errors[0])).toMatch(/authenticate returned .*"admin".*, which is not the actor of a request/)
    // No request speaks for Loom itself.
    expect((await t.app.request('/migrations', { headers: { 'x-user': 'loom' } })).status).toBe(500)
    expect(String(errors[1])).toMatch(/authenticate returned .*"system".*, which is not the actor of a request/)
  })

  it('is refused together with tokens, naming the option', () => {
    const loom = createLoom({ store: memoryStore(), engine: localEngine(), reconcile: false })
    for (const tokens of [{ token: 'op' }, { workerToken: 'wk' }, { operators: 'alice:op' }, { workers: { charts: 'wk' } }]) {
      let caught: unknown
      try {
        loomApp(loom, { ...tokens, authenticate: () => null })
      } catch (error) {
        caught = error
      }
      expect(LoomError.is(caught, 'invalid'), JSON.stringify(tokens)).toBe(true)
      expect((caught as LoomError).details).toEqual({ field: 'authenticate' })
    }
    // Empty named lists (an unset LOOM_OPERATORS) are no tokens.
    expect(() => loomApp(loom, { operators: '', workers: '', authenticate: () => null })).not.toThrow()
    void loom.close()
  })
})

describe('an open Loom', () => {
  it('says so once per process on console.warn, naming how to close it', async () => {
    const warn = vi.spyOn(console, 'warn').mockImplementation(() => {})
    try {
      vi.resetModules()
      const fresh = await import('../src/app')
      const loom = createLoom({ store: memoryStore(), engine: localEngine(), reconcile: false })
      fresh.loomApp(loom, { token: 'op' })
      expect(warn).not.toHaveBeenCalled()
      const open = fresh.loomApp(loom)
      fresh.loomApp(loom)
      expect(warn).toHaveBeenCalledTimes(1)
      expect(String(warn.mock.calls[0]![0])).toMatch(/open to anyone.*token.*LOOM_OPERATORS.*authenticate/)
      // Open means every caller is the anonymous operator: everything answers.
      expect(
        (await open.request('/migrations', { method: 'POST', body: '{}', headers: { 'content-type': 'application/json' } })).status,
      ).toBe(400)
      expect((await open.request('/migrations')).status).toBe(200)
      await loom.close()
    } finally {
      warn.mockRestore()
    }
  })
})

describe('the loom’s limits', () => {
  it('judges bodies at the limits of the loom it serves, naming the field and the limit', async () => {
    t = await setup({ deps: { limits: { steps: 2, candidates: 3, depth: 4 } } })
    const tooMany = await t.call('POST', '/registry/announce', {
      ...reviewed(M),
      steps: [...reviewed(M).steps, { name: 'third', workerApp: 'charts' }],
    })
    expect(tooMany.status).toBe(400)
    expect(tooMany.json).toMatchObject({ code: 'invalid', field: 'steps' })
    expect(tooMany.json.error).toContain('limits.steps')
    const candidates = await t.call('POST', '/registry/announce', {
      ...reviewed(M),
      candidates: [{ id: 'a' }, { id: 'b' }, { id: 'c' }, { id: 'd' }],
    })
    expect(candidates.status).toBe(400)
    expect(candidates.json.error).toContain('limits.candidates')
    const deep = await t.call('POST', '/registry/announce', { ...reviewed(M), candidates: [{ id: 'a', metadata: { k: { x: [1] } } }] })
    expect(deep.status).toBe(400)
    expect(deep.json.error).toContain('limits.depth')
    expect(await t.loom.listMigrations()).toEqual([])
    expect((await t.call('POST', '/registry/announce', reviewed(M))).status).toBe(200)
  })

  it('takes bodies up to limits raised above the defaults', async () => {
    t = await setup({ deps: { limits: { steps: 500, mapKeys: 300 } } })
    const steps = Array.from({ length: 150 }, (_, i) => ({ name: `step-${i}`, workerApp: 'charts' }))
    const metadata = Object.fromEntries(Array.from({ length: 250 }, (_, i) => [`key-${i}`, 'v']))
    const announced = await t.call('POST', '/registry/announce', { ...reviewed(M), steps, candidates: [{ id: 'a', metadata }] })
    expect(announced.status).toBe(200)
    expect((await t.loom.getMigration(M)).steps).toHaveLength(150)
    const beyond = await t.call('POST', '/registry/announce', {
      ...reviewed(M),
      steps: [
        ...steps,
        ...steps.map((s) => ({ ...s, name: `${s.name}-b` })),
        ...steps.map((s) => ({ ...s, name: `${s.name}-c` })),
        ...steps.map((s) => ({ ...s, name: `${s.name}-d` })),
      ],
    })
    expect(beyond.json).toMatchObject({ code: 'invalid', field: 'steps', error: 'steps: more than the limit of 500 steps (limits.steps)' })
  })
})
