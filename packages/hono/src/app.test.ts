import { localEngine, memoryStore } from '@loom/core'
import { eventually } from '@loom/core/testing'
import { afterEach, describe, expect, it } from 'vitest'
import { M, announcement, candidates, setup } from '../test/helpers'

/** Every route of http-api.md with each of its answers, through `app.request()`. */
type Setup = Awaited<ReturnType<typeof setup>>
let t: Setup
afterEach(async () => {
  await t?.close()
})

const announce = async (n = 2, steps = ['update-chart']) => {
  const res = await t.call('POST', '/registry/announce', announcement(M, { steps, candidates: candidates(n) }))
  expect(res.status).toBe(200)
  return res.json
}
const event = (stepName: string, success = true, candidateId = 'svc-0') => ({ stepName, candidate: { id: candidateId }, success })
/** Queues svc-0 and, optionally, executes it and waits until its first step is dispatched. */
const bring = async (status: 'queued' | 'running') => {
  const runId = (await t.call('POST', `/migrations/${M}/queue`, { candidateId: 'svc-0' })).json.runId as string
  if (status === 'running') {
    expect((await t.call('POST', `/runs/${runId}/execute`)).status).toBe(202)
    await eventually(() => expect(t.worker.stepsOf(runId)).toEqual(['update-chart']))
  }
  return runId
}
/** Executes svc-0 through HTTP: its first step succeeds (with a result), its second fails; it ends not_started. */
const failAtSecondStep = async () => {
  const runId = await bring('running')
  expect((await t.call('POST', `/event/${runId}`, { ...event('update-chart'), metadata: { chart: 'billing' } })).status).toBe(202)
  await eventually(() => expect(t.worker.stepsOf(runId)).toEqual(['update-chart', 'open-pr']))
  expect((await t.call('POST', `/event/${runId}`, event('open-pr', false))).status).toBe(202)
  await eventually(async () => expect(await statusOf('svc-0')).toBe('not_started'))
  return runId
}
const statusOf = async (candidateId: string) => (await t.loom.listCandidates(M)).find((c) => c.id === candidateId)?.status

describe('GET /migrations', () => {
  it('200 with every migration and its candidates', async () => {
    t = await setup()
    await announce(2)
    const res = await t.call('GET', '/migrations')
    expect(res.status).toBe(200)
    expect(res.json.migrations.map((m: { id: string }) => m.id)).toEqual([M])
    expect(res.json.migrations[0].candidates.map((c: { id: string }) => c.id)).toEqual(['svc-0', 'svc-1'])
  })

  it('200 with summary=true: no candidates, counts kept', async () => {
    t = await setup()
    await announce(2)
    await bring('queued')
    const res = await t.call('GET', '/migrations?summary=true')
    expect(res.status).toBe(200)
    expect(res.json.migrations[0]).not.toHaveProperty('candidates')
    expect(res.json.migrations[0].counts).toEqual({ not_started: 1, queued: 1, running: 0, completed: 0, failed: 0 })
  })

  it('400 naming query.summary when it is not true or false', async () => {
    t = await setup()
    const res = await t.call('GET', '/migrations?summary=yes')
    expect(res.status).toBe(400)
    expect(res.json).toEqual({ error: 'query.summary: must be true or false', code: 'invalid', field: 'query.summary' })
  })
})

describe('POST /migrations', () => {
  it('201 with the migration under a generated id', async () => {
    t = await setup()
    const res = await t.call('POST', '/migrations', {
      name: 'Kafka topics',
      candidates: candidates(1),
      steps: [{ name: 's', workerApp: 'kafka' }],
    })
    expect(res.status).toBe(201)
    expect(res.json.id).toMatch(/^kafka-topics-[a-z0-9]+$/)
    expect((await t.loom.getMigration(res.json.id)).candidates.map((c) => c.id)).toEqual(['svc-0'])
  })

  it('201 with step deadlines of seconds, minutes and hours', async () => {
    t = await setup()
    const steps = ['90s', '30m', '2h'].map((timeout, i) => ({ name: `s${i}`, workerApp: 'kafka', config: { timeout } }))
    const res = await t.call('POST', '/migrations', { name: 'Kafka topics', candidates: [], steps })
    expect(res.status).toBe(201)
    expect((await t.loom.getMigration(res.json.id)).steps.map((s) => s.config?.timeout)).toEqual(['90s', '30m', '2h'])
  })

  it('400 naming the missing field, and registers nothing', async () => {
    t = await setup()
    const res = await t.call('POST', '/migrations', { name: 'No steps', candidates: [] })
    expect(res.status).toBe(400)
    expect(res.json.code).toBe('invalid')
    expect(res.json.error).toMatch(/^steps: /)
    expect(await t.loom.listMigrations()).toEqual([])
  })
})

describe('GET /migrations/{id}', () => {
  it('200 with the migration, its candidates and their runs', async () => {
    t = await setup()
    await announce(2)
    await bring('queued')
    const res = await t.call('GET', `/migrations/${M}`)
    expect(res.status).toBe(200)
    expect(res.json).toMatchObject({ id: M, candidateRuns: { 'svc-0': { status: 'queued' } } })
  })

  it('404 for an unknown migration', async () => {
    t = await setup()
    const res = await t.call('GET', '/migrations/nope')
    expect(res.status).toBe(404)
    expect(res.json).toEqual({ error: 'migration nope not found', code: 'not_found' })
  })
})

describe('DELETE /migrations/{id}', () => {
  it('204, and the migration is gone', async () => {
    t = await setup()
    await announce()
    const res = await t.call('DELETE', `/migrations/${M}`)
    expect(res.status).toBe(204)
    expect(res.text).toBe('')
    expect(await t.loom.listMigrations()).toEqual([])
  })

  it('404 for an unknown migration', async () => {
    t = await setup()
    expect((await t.call('DELETE', '/migrations/nope')).json.code).toBe('not_found')
  })

  it('409 while a candidate is running, and the migration stays', async () => {
    t = await setup()
    await announce()
    await bring('running')
    const res = await t.call('DELETE', `/migrations/${M}`)
    expect(res.status).toBe(409)
    expect(res.json).toMatchObject({ code: 'conflict', status: 'running' })
    expect(res.json.error).toContain('running')
    expect((await t.loom.getMigration(M)).id).toBe(M)
  })
})

describe('POST /registry/announce', () => {
  it('200 with the registered migration; a second announce upserts by id', async () => {
    t = await setup()
    const first = await announce(1)
    expect(first).toMatchObject({ id: M, counts: { not_started: 1, queued: 0, running: 0, completed: 0, failed: 0 } })
    const res = await t.call('POST', '/registry/announce', { ...announcement(M, { steps: ['only'] }), name: 'Renamed' })
    expect(res.status).toBe(200)
    expect(res.json).toMatchObject({ id: M, name: 'Renamed', createdAt: first.createdAt })
    expect(res.json.candidates.map((c: { id: string }) => c.id)).toEqual(['svc-0'])
  })

  it('200 for an announcement wrapped as {data: …}, as API 0.2 workers send it', async () => {
    t = await setup()
    const res = await t.call('POST', '/registry/announce', { data: announcement(M, { candidates: candidates(1) }) })
    expect(res.status).toBe(200)
    expect(res.json.id).toBe(M)
  })

  it('400 naming the field, and registers nothing', async () => {
    t = await setup()
    const res = await t.call('POST', '/registry/announce', { ...announcement(M), steps: [{ name: 'x', workerApp: 'bad__app' }] })
    expect(res.status).toBe(400)
    expect(res.json).toEqual({ error: 'steps.0.workerApp: must not contain "__"', code: 'invalid', field: 'steps.0.workerApp' })
    expect(await t.loom.listMigrations()).toEqual([])
  })
  it('200 with step deadlines of seconds, minutes and hours, kept as written', async () => {
    t = await setup()
    const a = announcement(M, { steps: ['a', 'b', 'c'] })
    const timeouts = ['90s', '30m', '2h']
    const res = await t.call('POST', '/registry/announce', {
      ...a,
      steps: a.steps.map((s, i) => ({ ...s, config: { timeout: timeouts[i]! } })),
    })
    expect(res.status).toBe(200)
    expect(res.json.steps.map((s: { config: { timeout: string } }) => s.config.timeout)).toEqual(timeouts)
  })
})

describe('POST /migrations/{id}/candidates', () => {
  it('204, and the list is replaced', async () => {
    t = await setup()
    await announce(2)
    const res = await t.call('POST', `/migrations/${M}/candidates`, { candidates: [{ id: 'new-svc' }] })
    expect(res.status).toBe(204)
    expect((await t.loom.listCandidates(M)).map((c) => c.id)).toEqual(['new-svc'])
  })

  it('400 naming the candidate, and the list stays', async () => {
    t = await setup()
    await announce(2)
    const res = await t.call('POST', `/migrations/${M}/candidates`, { candidates: [{ id: 'ok' }, { id: 'a__b' }] })
    expect(res.status).toBe(400)
    expect(res.json.field).toBe('candidates.1.id')
    expect((await t.loom.listCandidates(M)).map((c) => c.id)).toEqual(['svc-0', 'svc-1'])
  })

  it('404 for an unknown migration', async () => {
    t = await setup()
    const res = await t.call('POST', '/migrations/nope/candidates', { candidates: [] })
    expect(res.status).toBe(404)
    expect(res.json.code).toBe('not_found')
  })
})

describe('GET /migrations/{id}/candidates', () => {
  it('200 with every candidate and its status, without paging headers', async () => {
    t = await setup()
    await announce(3)
    await bring('queued')
    const res = await t.call('GET', `/migrations/${M}/candidates`)
    expect(res.status).toBe(200)
    expect(res.json.map((c: { id: string; status: string; runId?: string }) => [c.id, c.status, c.runId])).toEqual([
      ['svc-0', 'queued', `${M}__svc-0`],
      ['svc-1', 'not_started', undefined],
      ['svc-2', 'not_started', undefined],
    ])
    expect(res.headers.get('x-total-count')).toBeNull()
  })

  it('200 with a query: filtered by status and text, paged, the total in X-Total-Count', async () => {
    t = await setup()
    await announce(5)
    const res = await t.call('GET', `/migrations/${M}/candidates?q=PAYMENTS&limit=2&offset=1`)
    expect(res.status).toBe(200)
    expect(res.json.map((c: { id: string }) => c.id)).toEqual(['svc-2', 'svc-4'])
    expect(res.headers.get('x-total-count')).toBe('3')
    await bring('queued')
    const queued = await t.call('GET', `/migrations/${M}/candidates?status=queued`)
    expect(queued.json.map((c: { id: string }) => c.id)).toEqual(['svc-0'])
    expect(queued.headers.get('x-total-count')).toBe('1')
  })

  it('200 with lastOutcome: the failed candidate, with how its attempt ended, counted in counts.failed', async () => {
    t = await setup()
    await announce(3, ['update-chart', 'open-pr'])
    const runId = await failAtSecondStep()
    const failed = await t.call('GET', `/migrations/${M}/candidates?lastOutcome=failed`)
    expect(failed.status).toBe(200)
    expect(failed.headers.get('x-total-count')).toBe('1')
    expect(failed.json).toEqual([
      expect.objectContaining({
        id: 'svc-0',
        status: 'not_started',
        lastAttempt: expect.objectContaining({ outcome: 'failed', step: 'open-pr', by: { kind: 'operator', name: 'anonymous' } }),
      }),
    ])
    expect(failed.json[0].runId).toBeUndefined()
    expect((await t.call('GET', `/migrations/${M}/candidates?lastOutcome=cancelled`)).json).toEqual([])
    const summary = await t.call('GET', '/migrations?summary=true')
    expect(summary.json.migrations[0].counts).toEqual({ not_started: 3, queued: 0, running: 0, completed: 0, failed: 1 })
    expect((await t.call('GET', `/runs/${runId}`)).status).toBe(404)
    // A registered migration's candidates stay as registered (API 0.2's shape): the lists tell how attempts ended.
    const migration = (await t.call('GET', `/migrations/${M}`)).json
    expect(migration.candidates[0]).not.toHaveProperty('lastAttempt')
  })

  it('400 naming the query parameter', async () => {
    t = await setup()
    await announce()
    for (const [query, field] of [
      ['status=done', 'query.status'],
      ['limit=0', 'query.limit'],
      ['limit=ten', 'query.limit'],
      ['offset=-1', 'query.offset'],
      ['limit=10001', 'query.limit'],
      ['lastOutcome=broken', 'query.lastOutcome'],
    ]) {
      const res = await t.call('GET', `/migrations/${M}/candidates?${query}`)
      expect(res.status, query).toBe(400)
      expect(res.json.field, query).toBe(field)
    }
  })

  it('404 for an unknown migration', async () => {
    t = await setup()
    expect((await t.call('GET', '/migrations/nope/candidates')).status).toBe(404)
    expect((await t.call('GET', '/migrations/nope/candidates?limit=1')).status).toBe(404)
  })
})

describe('GET /migrations/{id}/candidates/{candidateId}', () => {
  it('200 with the candidate, its status and its run id', async () => {
    t = await setup()
    await announce(2)
    const runId = await bring('queued')
    const res = await t.call('GET', `/migrations/${M}/candidates/svc-0`)
    expect(res.status).toBe(200)
    expect(res.json).toEqual({ ...candidates(1)[0], status: 'queued', runId })
    expect((await t.call('GET', `/migrations/${M}/candidates/svc-1`)).json).toEqual({ ...candidates(2)[1], status: 'not_started' })
  })

  it('400 naming the id that breaks the rules', async () => {
    t = await setup()
    await announce(1)
    const bad = await t.call('GET', `/migrations/${M}/candidates/a__b`)
    expect(bad.status).toBe(400)
    expect(bad.json).toMatchObject({ code: 'invalid', field: 'candidateId' })
    expect((await t.call('GET', '/migrations/a__b/candidates/svc-0')).json).toMatchObject({ code: 'invalid', field: 'migrationId' })
  })

  it('404 for an unknown migration or candidate', async () => {
    t = await setup()
    await announce(1)
    for (const path of [`/migrations/ghost/candidates/svc-0`, `/migrations/${M}/candidates/ghost`]) {
      const res = await t.call('GET', path)
      expect(res.status, path).toBe(404)
      expect(res.json.code, path).toBe('not_found')
    }
  })
})

describe('POST /migrations/{id}/queue', () => {
  it('202 with the run id, by candidateId or by candidate', async () => {
    t = await setup()
    await announce(2)
    const byId = await t.call('POST', `/migrations/${M}/queue`, { candidateId: 'svc-0' })
    expect(byId.status).toBe(202)
    expect(byId.json).toEqual({ runId: `${M}__svc-0` })
    const byCandidate = await t.call('POST', `/migrations/${M}/queue`, { candidate: { id: 'svc-1', kind: 'application' } })
    expect(byCandidate.json).toEqual({ runId: `${M}__svc-1` })
    expect(await statusOf('svc-1')).toBe('queued')
  })

  it('400 when the body names no candidate', async () => {
    t = await setup()
    await announce()
    const res = await t.call('POST', `/migrations/${M}/queue`, { id: 'svc-0' })
    expect(res.status).toBe(400)
    expect(res.json).toEqual({ error: 'body: must have candidateId or candidate.id', code: 'invalid', field: 'body' })
  })

  it('404 for an unknown migration or candidate', async () => {
    t = await setup()
    await announce()
    expect((await t.call('POST', '/migrations/nope/queue', { candidateId: 'svc-0' })).json).toEqual({
      error: 'migration nope not found',
      code: 'not_found',
    })
    const ghost = await t.call('POST', `/migrations/${M}/queue`, { candidateId: 'ghost' })
    expect(ghost.status).toBe(404)
    expect(ghost.json.error).toContain('ghost')
  })

  it('409 naming the status when the candidate is already queued', async () => {
    t = await setup()
    await announce()
    await bring('queued')
    const res = await t.call('POST', `/migrations/${M}/queue`, { candidateId: 'svc-0' })
    expect(res.status).toBe(409)
    expect(res.json).toMatchObject({ code: 'conflict', status: 'queued' })
    expect(res.json.error).toContain('queued')
  })
})

describe('POST /migrations/{id}/dry-run', () => {
  it('200 with the worker’s per-step diffs', async () => {
    t = await setup()
    await announce(2, ['update-chart', 'open-pr'])
    const res = await t.call('POST', `/migrations/${M}/dry-run`, { candidateId: 'svc-1' })
    expect(res.status).toBe(200)
    expect(res.json.steps.map((s: { stepName: string }) => s.stepName)).toEqual(['update-chart', 'open-pr'])
    expect(t.worker.dryRuns[0]).toMatchObject({ migrationId: M, candidate: { id: 'svc-1' } })
  })

  it('404 for an unknown candidate', async () => {
    t = await setup()
    await announce()
    expect((await t.call('POST', `/migrations/${M}/dry-run`, { candidateId: 'ghost' })).status).toBe(404)
  })

  it('503 when the worker cannot be reached', async () => {
    t = await setup({ deps: { dryRunner: { dryRun: async () => Promise.reject(new Error('connect ECONNREFUSED 127.0.0.1:9')) } } })
    await announce()
    const res = await t.call('POST', `/migrations/${M}/dry-run`, { candidateId: 'svc-0' })
    expect(res.status).toBe(503)
    expect(res.json.code).toBe('unavailable')
    expect(res.json.error).toContain('ECONNREFUSED')
  })
})

describe('GET /runs/{runId}', () => {
  it('200 with the run', async () => {
    t = await setup()
    await announce()
    const runId = await bring('queued')
    const res = await t.call('GET', `/runs/${runId}`)
    expect(res.status).toBe(200)
    expect(res.json).toEqual({
      runId,
      migrationId: M,
      candidate: { id: 'svc-0', kind: 'application', metadata: expect.any(Object) },
      status: 'queued',
      steps: [],
    })
  })

  it('404 for a not_started candidate, an unknown one, and a run id that does not parse', async () => {
    t = await setup()
    await announce()
    for (const runId of [`${M}__svc-1`, `${M}__ghost`, 'no-separator', `${M}__a__b`]) {
      const res = await t.call('GET', `/runs/${runId}`)
      expect(res.status, runId).toBe(404)
      expect(res.json.code, runId).toBe('not_found')
    }
  })
})

describe('DELETE /runs/{runId}/dequeue', () => {
  it('204, and the candidate is not_started', async () => {
    t = await setup()
    await announce()
    const runId = await bring('queued')
    expect((await t.call('DELETE', `/runs/${runId}/dequeue`)).status).toBe(204)
    expect(await statusOf('svc-0')).toBe('not_started')
  })

  it('404 for an unknown run, 409 when nothing is queued', async () => {
    t = await setup()
    await announce()
    expect((await t.call('DELETE', `/runs/${M}__ghost/dequeue`)).status).toBe(404)
    const res = await t.call('DELETE', `/runs/${M}__svc-0/dequeue`)
    expect(res.status).toBe(409)
    expect(res.json).toMatchObject({ code: 'conflict', status: 'not_started' })
  })
})

describe('POST /runs/{runId}/execute', () => {
  it('202 with the run id; the first step is dispatched', async () => {
    t = await setup()
    await announce()
    const runId = await bring('queued')
    const res = await t.call('POST', `/runs/${runId}/execute`)
    expect(res.status).toBe(202)
    expect(res.json).toEqual({ runId })
    await eventually(() => expect(t.worker.stepsOf(runId)).toEqual(['update-chart']))
    expect(await statusOf('svc-0')).toBe('running')
  })

  it('404 for an unknown run, 409 unless queued', async () => {
    t = await setup()
    await announce()
    expect((await t.call('POST', `/runs/${M}__ghost/execute`)).status).toBe(404)
    const res = await t.call('POST', `/runs/${M}__svc-0/execute`)
    expect(res.status).toBe(409)
    expect(res.json.status).toBe('not_started')
  })

  it.each<{ as: string; body: unknown; headers: Record<string, string> }>([
    { as: 'no body', body: undefined, headers: {} },
    { as: 'an empty body', body: '', headers: {} },
    { as: 'an empty text/plain body', body: '', headers: { 'content-type': 'text/plain' } },
    { as: '{}', body: {}, headers: {} },
    { as: '{resume: false} and an unknown key', body: { resume: false, other: 'ignored' }, headers: {} },
  ])('202 as in API 0.2 with $as: after a failed attempt the run starts at the first step again', async ({ body, headers }) => {
    t = await setup()
    await announce(1, ['update-chart', 'open-pr'])
    const runId = await failAtSecondStep()
    await t.call('POST', `/migrations/${M}/queue`, { candidateId: 'svc-0' })
    const res = await t.call('POST', `/runs/${runId}/execute`, body, headers)
    expect(res.status).toBe(202)
    expect(res.json).toEqual({ runId })
    await eventually(() => expect(t.worker.stepsOf(runId)).toEqual(['update-chart', 'open-pr', 'update-chart']))
    expect((await t.call('GET', `/runs/${runId}`)).json.steps).toEqual([])
  })

  it('202 with {resume: true}: the step that succeeded is carried over with its result, and the run starts at the failed one', async () => {
    t = await setup()
    await announce(1, ['update-chart', 'open-pr'])
    const runId = await failAtSecondStep()
    const failed = t.worker.dispatched.at(-1)!.request
    expect((await t.call('POST', `/migrations/${M}/queue`, { candidateId: 'svc-0' })).status).toBe(202)
    const res = await t.call('POST', `/runs/${runId}/execute`, { resume: true })
    expect(res.status).toBe(202)
    expect(res.json).toEqual({ runId })
    await eventually(() => expect(t.worker.stepsOf(runId)).toEqual(['update-chart', 'open-pr', 'open-pr']))
    const resumed = t.worker.dispatched.at(-1)!.request
    expect(resumed.attempt).toBeGreaterThan(failed.attempt!)
    expect((await t.call('GET', `/runs/${runId}`)).json.steps).toEqual([
      expect.objectContaining({ stepName: 'update-chart', success: true, metadata: { chart: 'billing' } }),
    ])
    // The carried-over step counts: the second one's success completes the candidate.
    expect((await t.call('POST', `/event/${runId}`, event('open-pr'))).status).toBe(202)
    await eventually(async () => expect(await statusOf('svc-0')).toBe('completed'))
    expect(t.worker.stepsOf(runId)).toEqual(['update-chart', 'open-pr', 'open-pr'])
  })

  it('503 when the engine refuses, and the candidate stays queued', async () => {
    const engine = localEngine()
    t = await setup({ engine: { ...engine, start: () => Promise.reject(new Error('engine is down')) } })
    await announce()
    const runId = await bring('queued')
    const res = await t.call('POST', `/runs/${runId}/execute`)
    expect(res.status).toBe(503)
    expect(res.json.code).toBe('unavailable')
    expect(await statusOf('svc-0')).toBe('queued')
  })
})

describe('POST /runs/{runId}/cancel', () => {
  it('204, recording a cancelled attempt', async () => {
    t = await setup()
    await announce()
    const runId = await bring('running')
    expect((await t.call('POST', `/runs/${runId}/cancel`)).status).toBe(204)
    expect(await statusOf('svc-0')).toBe('not_started')
    // Without a body (API 0.2), the attempt is recorded with who cancelled it and no reason.
    expect((await t.loom.getMigration(M)).cancelledAttempts).toEqual([
      { runId, candidateId: 'svc-0', cancelledAt: expect.any(String), attempt: 1, cancelledBy: { kind: 'operator', name: 'anonymous' } },
    ])
  })

  it('404 for an unknown run, 409 when not queued or running', async () => {
    t = await setup()
    await announce()
    expect((await t.call('POST', '/runs/nope__svc-0/cancel')).status).toBe(404)
    const res = await t.call('POST', `/runs/${M}__svc-0/cancel`)
    expect(res.status).toBe(409)
    expect(res.json.error).toContain('not_started')
  })
})

describe('POST /event/{runId}', () => {
  it('202 accepted; the last step’s success completes the candidate', async () => {
    t = await setup()
    await announce()
    const runId = await bring('running')
    const res = await t.call('POST', `/event/${runId}`, event('update-chart'))
    expect(res.status).toBe(202)
    expect(res.json).toEqual({ status: 'accepted' })
    await eventually(async () => expect(await statusOf('svc-0')).toBe('completed'))
  })

  it('400 for an unknown step, 404 for an unknown run, 409 when the run is not running', async () => {
    t = await setup()
    await announce()
    const runId = await bring('queued')
    const unknownStep = await t.call('POST', `/event/${runId}`, event('nope'))
    expect(unknownStep.status).toBe(400)
    expect(unknownStep.json.field).toBe('stepName')
    expect((await t.call('POST', `/event/${M}__ghost`, event('update-chart', true, 'ghost'))).status).toBe(404)
    const notRunning = await t.call('POST', `/event/${runId}`, event('update-chart'))
    expect(notRunning.status).toBe(409)
    expect(notRunning.json).toMatchObject({ code: 'conflict', status: 'queued' })
  })
})

describe('POST /event/{runId}/pr-opened', () => {
  it('202 accepted; the step shows phase open and is still awaited', async () => {
    t = await setup()
    await announce()
    const runId = await bring('running')
    const res = await t.call('POST', `/event/${runId}/pr-opened`, {
      ...event('update-chart'),
      metadata: { prUrl: 'https://git.example/pr/1' },
    })
    expect(res.status).toBe(202)
    expect(res.json).toEqual({ status: 'accepted' })
    expect((await t.loom.getRun(runId)).steps?.[0]?.metadata).toEqual({ phase: 'open', prUrl: 'https://git.example/pr/1' })
    expect(await statusOf('svc-0')).toBe('running')
  })

  it('400 for a wrongly typed field, 404 for an unknown run, 409 when the run is not running', async () => {
    t = await setup()
    await announce()
    const runId = await bring('queued')
    const bad = await t.call('POST', `/event/${runId}/pr-opened`, { ...event('update-chart'), metadata: { prUrl: 7 } })
    expect(bad.status).toBe(400)
    expect(bad.json.field).toBe('metadata.prUrl')
    expect((await t.call('POST', '/event/garbage/pr-opened', event('update-chart'))).status).toBe(404)
    expect((await t.call('POST', `/event/${runId}/pr-opened`, event('update-chart'))).status).toBe(409)
  })
})

describe('GET /status/{runId}', () => {
  it('200 with the runtime status and one result per reported step', async () => {
    t = await setup()
    await announce()
    const runId = await bring('running')
    await t.call('POST', `/event/${runId}`, event('update-chart'))
    await eventually(async () => expect((await t.call('GET', `/status/${runId}`)).json.runtimeStatus).toBe('COMPLETED'))
    const res = await t.call('GET', `/status/${runId}`)
    expect(res.status).toBe(200)
    expect(res.json).toEqual({
      instanceId: runId,
      runtimeStatus: 'COMPLETED',
      // The candidate as it was dispatched, not the `{id}` the worker reported (API 0.2).
      result: { migrationId: M, status: 'completed', results: [{ ...event('update-chart'), candidate: candidates(1)[0] }] },
    })
  })

  it('404 while the run is only queued, or never ran', async () => {
    t = await setup()
    await announce(2)
    const runId = await bring('queued')
    expect((await t.call('GET', `/status/${runId}`)).status).toBe(404)
    expect((await t.call('GET', `/status/${M}__svc-1`)).status).toBe(404)
  })
})

describe('GET /health', () => {
  it('200 ok', async () => {
    t = await setup()
    const res = await t.call('GET', '/health')
    expect(res.status).toBe(200)
    expect(res.json).toEqual({ status: 'ok' })
  })

  it('503 naming the dependency that fails', async () => {
    const store = memoryStore()
    t = await setup({ store: { ...store, ping: () => Promise.reject(new Error('connection refused')) } })
    const res = await t.call('GET', '/health')
    expect(res.status).toBe(503)
    expect(res.json).toEqual({ error: 'store: connection refused', code: 'unavailable', dependency: 'store' })
  })
})

describe('unknown routes and wrong methods', () => {
  it('404 JSON for an unknown route', async () => {
    t = await setup()
    for (const [method, path] of [
      ['GET', '/nope'],
      ['POST', '/migrations/x/y/z'],
      ['GET', '/migrations/'],
    ]) {
      const res = await t.call(method!, path!)
      expect(res.status, path).toBe(404)
      expect(res.json, path).toEqual({ error: `no route for ${method} ${path}`, code: 'not_found' })
    }
  })

  it('405 JSON with an Allow header for a known path and a wrong method', async () => {
    t = await setup()
    await announce()
    const res = await t.call('PUT', `/migrations/${M}`, { name: 'x' })
    expect(res.status).toBe(405)
    expect(res.headers.get('allow')).toBe('GET, HEAD, DELETE')
    expect(res.json).toEqual({ error: `method PUT is not allowed on /migrations/${M}; allowed: GET, HEAD, DELETE`, code: 'invalid' })
    expect((await t.call('GET', `/runs/${M}__svc-0/execute`)).status).toBe(405)
    expect((await t.call('GET', '/registry/announce')).headers.get('allow')).toBe('POST')
    expect((await t.loom.getMigration(M)).name).toBe(`Migration ${M}`)
  })

  it('answers a bug with 500 and a body that reveals nothing, and reports it', async () => {
    t = await setup()
    // loomApp calls the interface as the caller at request time, so replacing what `as` hands out simulates a bug behind it.
    const as = t.loom.as
    t.loom.as = (actor) => ({ ...as(actor), listMigrations: () => Promise.reject(new TypeError('secret internals')) }) as never
    const res = await t.call('GET', '/migrations')
    expect(res.status).toBe(500)
    expect(res.json).toEqual({ error: 'internal error', code: 'unavailable' })
    expect(res.text).not.toContain('secret')
    expect(t.errors).toEqual([new TypeError('secret internals')])
  })
})
