import { eventually } from '@loom/core/testing'
import { afterEach, describe, expect, it } from 'vitest'
import { announcement, candidates, M, setup } from './helpers'

/**
 * What happened, over HTTP: the activity log page by page, a run's history attempt by
 * attempt with who did each thing, and a cancel that says why. Two named operators and a
 * named worker, so every actor in the answers is a name a token stands for.
 */

const ALICE = { authorization: 'Bearer op-alice' }
const BOB = { authorization: 'Bearer op-bob' }
const WORKER = { authorization: 'Bearer wk-charts' }
const TOKENS = { operators: 'alice:op-alice,bob:op-bob', workers: 'charts:wk-charts' }
const alice = { kind: 'operator', name: 'alice' }
const bob = { kind: 'operator', name: 'bob' }
const charts = { kind: 'worker', name: 'charts' }

let t: Awaited<ReturnType<typeof setup>> | undefined
afterEach(async () => {
  await t?.close()
  t = undefined
})

/** The app with the named tokens, and the migration announced by worker `charts` (its owner). */
async function announced() {
  t = await setup(TOKENS)
  expect((await t.call('POST', '/registry/announce', announcement(M, { candidates: candidates(3) }), WORKER)).status).toBe(200)
  return t
}

async function queue(candidateId: string, by: Record<string, string>): Promise<string> {
  const res = await t!.call('POST', `/migrations/${M}/queue`, { candidateId }, by)
  expect(res.status).toBe(202)
  return res.json.runId
}

describe('GET /migrations/{id}/activity', () => {
  it('pages the log by cursor, oldest first: each next continues the last, and the last page has no next', async () => {
    await announced()
    for (const candidateId of ['svc-0', 'svc-1', 'svc-2']) {
      const runId = await queue(candidateId, ALICE)
      expect((await t!.call('DELETE', `/runs/${runId}/dequeue`, undefined, BOB)).status).toBe(204)
    }
    // One announce and six transitions: pages of 3, 3 and 1.
    const whole = await t!.call('GET', `/migrations/${M}/activity`, undefined, ALICE)
    expect(whole.status).toBe(200)
    expect(whole.json.next).toBeUndefined()
    expect(whole.json.entries.map((e: any) => [e.type, e.candidateId, e.actor])).toEqual([
      ['migration.announced', undefined, charts],
      ['run.queue', 'svc-0', alice],
      ['run.dequeue', 'svc-0', bob],
      ['run.queue', 'svc-1', alice],
      ['run.dequeue', 'svc-1', bob],
      ['run.queue', 'svc-2', alice],
      ['run.dequeue', 'svc-2', bob],
    ])

    const pages: any[] = []
    let after: string | undefined
    do {
      const res = await t!.call('GET', `/migrations/${M}/activity?limit=3${after ? `&after=${after}` : ''}`, undefined, ALICE)
      expect(res.status).toBe(200)
      pages.push(res.json)
      after = res.json.next
      if (after !== undefined) expect(after).toBe(res.json.entries.at(-1).id)
    } while (after !== undefined && pages.length < 10)
    expect(pages.map((p) => p.entries.length)).toEqual([3, 3, 1])
    expect(pages.at(-1)).not.toHaveProperty('next')
    expect(pages.flatMap((p) => p.entries)).toEqual(whole.json.entries)
    // Ids grow: a cursor is a position in the log.
    const ids = whole.json.entries.map((e: any) => BigInt(e.id))
    expect(ids).toEqual([...ids].sort((a: bigint, b: bigint) => (a < b ? -1 : 1)))
    expect(new Set(ids).size).toBe(ids.length)

    // After the last entry there is nothing yet, and no next.
    const beyond = await t!.call('GET', `/migrations/${M}/activity?after=${whole.json.entries.at(-1).id}`, undefined, ALICE)
    expect(beyond.json).toEqual({ entries: [] })
  })

  it.each([
    ['after=abc', 'query.after', 'must be a cursor from an earlier page (digits)'],
    ['after=', 'query.after', 'must be a cursor from an earlier page (digits)'],
    ['after=-1', 'query.after', 'must be a cursor from an earlier page (digits)'],
    ['limit=0', 'query.limit', 'must be at least 1'],
    ['limit=1001', 'query.limit', 'must be at most 1000'],
    ['limit=ten', 'query.limit', 'must be a number'],
  ])('400 for ?%s, naming %s', async (query, field, reason) => {
    await announced()
    const res = await t!.call('GET', `/migrations/${M}/activity?${query}`, undefined, ALICE)
    expect(res.status).toBe(400)
    expect(res.json).toEqual({ code: 'invalid', field, error: `${field}: ${reason}` })
  })

  it('answers the largest page, 1000, and 404 for a migration that does not exist', async () => {
    await announced()
    const page = await t!.call('GET', `/migrations/${M}/activity?limit=1000`, undefined, ALICE)
    expect(page.status).toBe(200)
    expect(page.json.entries.map((e: any) => e.type)).toEqual(['migration.announced'])
    const missing = await t!.call('GET', '/migrations/nope/activity', undefined, ALICE)
    expect(missing.status).toBe(404)
    expect(missing.json.code).toBe('not_found')
    expect((await t!.call('GET', '/migrations/no__pe/activity', undefined, ALICE)).json.field).toBe('migrationId')
  })

  it('403 for a worker, even the migration’s owner; 401 without a token', async () => {
    await announced()
    const runId = await queue('svc-0', ALICE)
    for (const path of [`/migrations/${M}/activity`, `/runs/${runId}/history`]) {
      const refused = await t!.call('GET', path, undefined, WORKER)
      expect(refused.status, path).toBe(403)
      expect(refused.json.code, path).toBe('forbidden')
      expect((await t!.call('GET', path)).status, path).toBe(401)
    }
  })
})

describe('GET /runs/{runId}/history', () => {
  it('shows a run cancelled with a reason and executed again: both attempts, who did what, and why', async () => {
    await announced()
    const runId = await queue('svc-0', ALICE)
    expect((await t!.call('POST', `/runs/${runId}/execute`, undefined, ALICE)).status).toBe(202)
    await eventually(() => expect(t!.worker.stepsOf(runId)).toEqual(['update-chart']))
    expect((await t!.call('POST', `/runs/${runId}/cancel`, { reason: 'wrong chart version' }, BOB)).status).toBe(204)

    await queue('svc-0', ALICE)
    expect((await t!.call('POST', `/runs/${runId}/execute`, undefined, BOB)).status).toBe(202)
    for (const stepName of ['update-chart', 'open-pr']) {
      await eventually(() =>
        expect(t!.worker.stepsOf(runId).filter((s) => s === stepName)).toHaveLength(stepName === 'update-chart' ? 2 : 1),
      )
      const report = { stepName, candidate: { id: 'svc-0' }, success: true }
      expect((await t!.call('POST', `/event/${runId}`, report, WORKER)).status).toBe(202)
    }
    await eventually(async () => expect((await t!.call('GET', `/runs/${runId}`, undefined, ALICE)).json.status).toBe('completed'))

    const res = await t!.call('GET', `/runs/${runId}/history`, undefined, ALICE)
    expect(res.status).toBe(200)
    const { attempts, ...run } = res.json
    expect(run).toEqual({ runId, migrationId: M, candidateId: 'svc-0' })
    expect(attempts).toHaveLength(2)
    const [first, second] = attempts
    expect(first).toMatchObject({
      attempt: 1,
      outcome: 'cancelled',
      queuedBy: alice,
      startedBy: alice,
      endedBy: bob,
      reason: 'wrong chart version',
    })
    // The cancelled attempt's step was dispatched and never reported.
    expect(first.steps).toEqual([{ stepName: 'update-chart', done: false, detail: {}, dispatchedAt: expect.any(String) }])
    expect(second).toMatchObject({ attempt: 2, outcome: 'completed', queuedBy: alice, startedBy: bob })
    expect(second).not.toHaveProperty('reason')
    expect(second.steps.map((s: any) => [s.stepName, s.success, s.done, s.reportedBy])).toEqual([
      ['update-chart', true, true, charts],
      ['open-pr', true, true, charts],
    ])
    // Times in order: queued ≤ started ≤ each step's dispatch ≤ its report ≤ ended, and durations that match them.
    for (const attempt of attempts) {
      const times = [
        attempt.queuedAt,
        attempt.startedAt,
        ...attempt.steps.flatMap((s: any) => [s.dispatchedAt, s.reportedAt]),
        attempt.endedAt,
      ]
        .filter((x) => x !== undefined)
        .map((x: string) => Date.parse(x))
      expect(times.every((time: number) => Number.isFinite(time))).toBe(true)
      expect(times).toEqual([...times].sort((a, b) => a - b))
      expect(attempt.durationMs).toBe(Date.parse(attempt.endedAt) - Date.parse(attempt.startedAt))
    }
    expect(Date.parse(first.endedAt)).toBeLessThanOrEqual(Date.parse(second.queuedAt))

    // The migration's cancelled attempts say the same: which attempt, who and why.
    const migration = await t!.call('GET', `/migrations/${M}`, undefined, ALICE)
    expect(migration.json.cancelledAttempts).toEqual([
      { runId, candidateId: 'svc-0', cancelledAt: first.endedAt, attempt: 1, cancelledBy: bob, reason: 'wrong chart version' },
    ])
  })

  it('answers a candidate never queued with no attempts, and 404 for one that does not exist', async () => {
    await announced()
    const never = await t!.call('GET', `/runs/${M}__svc-1/history`, undefined, ALICE)
    expect(never.status).toBe(200)
    expect(never.json).toEqual({ runId: `${M}__svc-1`, migrationId: M, candidateId: 'svc-1', attempts: [] })
    for (const runId of [`${M}__ghost`, 'nope__svc-0', 'not-a-run-id']) {
      const res = await t!.call('GET', `/runs/${runId}/history`, undefined, ALICE)
      expect(res.status, runId).toBe(404)
      expect(res.json.code, runId).toBe('not_found')
    }
  })
})

describe('POST /runs/{runId}/cancel with a body', () => {
  it.each([
    ['{"reason": 5}', { reason: 5 }, 'reason', 'reason: must be a string'],
    ['a reason of 2001 characters', { reason: 'x'.repeat(2001) }, 'reason', 'reason: must be at most 2000 characters'],
    ['[]', [], 'body', 'body: must be a JSON object'],
    ['"stop"', '"stop"', 'body', 'body: must be a JSON object'],
  ])('400 for %s naming %s; the run stays queued and nothing is logged', async (_label, body, field, message) => {
    await announced()
    const runId = await queue('svc-0', ALICE)
    const before = await t!.call('GET', `/migrations/${M}/activity`, undefined, ALICE)
    const res = await t!.call('POST', `/runs/${runId}/cancel`, body, ALICE)
    expect(res.status).toBe(400)
    expect(res.json).toEqual({ code: 'invalid', field, error: message })
    expect((await t!.call('GET', `/runs/${runId}`, undefined, ALICE)).json.status).toBe('queued')
    expect((await t!.call('GET', `/migrations/${M}/activity`, undefined, ALICE)).json).toEqual(before.json)
  })

  it('takes a reason of exactly 2000 characters', async () => {
    await announced()
    const runId = await queue('svc-0', ALICE)
    const reason = 'r'.repeat(2000)
    expect((await t!.call('POST', `/runs/${runId}/cancel`, { reason }, ALICE)).status).toBe(204)
    const history = await t!.call('GET', `/runs/${runId}/history`, undefined, ALICE)
    expect(history.json.attempts.map((a: any) => [a.outcome, a.reason])).toEqual([['cancelled', reason]])
  })

  it('refuses a worker with 403 before reading the body', async () => {
    await announced()
    const runId = await queue('svc-0', ALICE)
    const res = await t!.call('POST', `/runs/${runId}/cancel`, { reason: 5 }, WORKER)
    expect(res.status).toBe(403)
    expect(res.json.code).toBe('forbidden')
    expect((await t!.call('GET', `/runs/${runId}`, undefined, ALICE)).json.status).toBe('queued')
  })

  it('API 0.2: a cancel without a body (and without a Content-Type) is 204, recorded with who and no reason', async () => {
    await announced()
    const runId = await queue('svc-0', ALICE)
    const res = await t!.app.request(`/runs/${runId}/cancel`, { method: 'POST', headers: BOB })
    expect(res.status).toBe(204)
    expect(await res.text()).toBe('')
    const migration = await t!.call('GET', `/migrations/${M}`, undefined, ALICE)
    expect(migration.json.cancelledAttempts).toEqual([
      { runId, candidateId: 'svc-0', cancelledAt: expect.any(String), attempt: 1, cancelledBy: bob },
    ])
    const [attempt] = (await t!.call('GET', `/runs/${runId}/history`, undefined, ALICE)).json.attempts
    expect(attempt).toMatchObject({ outcome: 'cancelled', endedBy: bob })
    expect(attempt).not.toHaveProperty('reason')
    // An empty JSON object is the same as none.
    await queue('svc-0', ALICE)
    expect((await t!.call('POST', `/runs/${runId}/cancel`, {}, ALICE)).status).toBe(204)
  })
})
