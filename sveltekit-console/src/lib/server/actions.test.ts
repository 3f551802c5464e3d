import { describe, expect, it } from 'vitest'
import type { RequestEvent } from '@sveltejs/kit'
import { createLoom, localEngine, memoryStore, type DispatchStepRequest, type Loom } from '@loom/core'
import { runActions } from './actions'

const MIGRATION = 'app-chart'

async function setup() {
  const dispatched: DispatchStepRequest[] = []
  const loom = createLoom({
    store: memoryStore(),
    engine: localEngine(),
    dispatcher: { dispatch: async (_target, request) => void dispatched.push(request) },
    onError: () => {},
  })
  await loom.announce({
    id: MIGRATION,
    name: 'App chart',
    steps: [
      { name: 'bump', workerApp: 'charts' },
      { name: 'verify', workerApp: 'charts', config: { type: 'manual-review' } },
    ],
    candidates: [{ id: 'billing-api' }, { id: 'checkout' }],
  })
  return { loom, dispatched }
}

function event(loom: Loom, fields: Record<string, string>, params: Record<string, string> = { id: MIGRATION }): RequestEvent {
  const request = new Request('http://console.test/migrations/app-chart?/action', { method: 'POST', body: new URLSearchParams(fields) })
  return { request, locals: { loom }, params } as unknown as RequestEvent
}

const statusOf = async (loom: Loom, candidateId: string) => (await loom.listCandidates(MIGRATION)).find((c) => c.id === candidateId)?.status

async function until(check: () => Promise<boolean>) {
  for (let i = 0; i < 200; i++) {
    if (await check()) return
    await new Promise((r) => setTimeout(r, 10))
  }
  throw new Error('condition not reached')
}

describe('run actions', () => {
  it('queues a candidate and answers the run id with a message for the toast', async () => {
    const { loom } = await setup()
    const result = await runActions.queue(event(loom, { candidateId: 'billing-api' }))
    expect(result).toEqual({
      ok: true,
      action: 'queue',
      message: 'Queued billing-api. Its dry run is ready to preview.',
      runId: 'app-chart__billing-api',
      candidateId: 'billing-api',
    })
    expect(await statusOf(loom, 'billing-api')).toBe('queued')
  })

  it('answers 409 with Loom’s message when the candidate is no longer in the status the page showed', async () => {
    const { loom } = await setup()
    await loom.queue(MIGRATION, 'billing-api')
    const result = await runActions.queue(event(loom, { candidateId: 'billing-api' }))
    expect(result).toMatchObject({ status: 409, data: { ok: false, action: 'queue', code: 'conflict', candidateId: 'billing-api' } })
    expect((result as { data: { message: string } }).data.message).toContain('the candidate is queued')
  })

  it('lets exactly one of two concurrent queues win', async () => {
    const { loom } = await setup()
    const results = await Promise.all([
      runActions.queue(event(loom, { candidateId: 'checkout' })),
      runActions.queue(event(loom, { candidateId: 'checkout' })),
    ])
    const wins = results.filter((r) => 'ok' in r && r.ok === true)
    const losses = results.filter((r) => 'status' in r && r.status === 409)
    expect([wins.length, losses.length]).toEqual([1, 1])
  })

  it('refuses a form without its field, naming it, and changes nothing', async () => {
    const { loom } = await setup()
    const result = await runActions.queue(event(loom, {}))
    expect(result).toMatchObject({ status: 400, data: { ok: false, code: 'invalid', message: 'candidateId: is required' } })
    expect(await statusOf(loom, 'billing-api')).toBe('not_started')
    expect(await runActions.execute(event(loom, {}))).toMatchObject({ status: 400, data: { message: 'runId: is required' } })
  })

  it('answers 404 for a run id that names no run', async () => {
    const { loom } = await setup()
    expect(await runActions.dequeue(event(loom, { runId: 'not-a-run-id' }))).toMatchObject({ status: 404, data: { code: 'not_found' } })
    expect(await runActions.cancel(event(loom, { runId: 'app-chart__nobody' }))).toMatchObject({ status: 404, data: { code: 'not_found' } })
  })

  it('removes from the queue, executes and cancels', async () => {
    const { loom, dispatched } = await setup()
    await loom.queue(MIGRATION, 'billing-api')
    expect(await runActions.dequeue(event(loom, { runId: 'app-chart__billing-api' }))).toMatchObject({
      ok: true,
      message: 'Removed billing-api from the queue.',
    })
    expect(await statusOf(loom, 'billing-api')).toBe('not_started')

    await loom.queue(MIGRATION, 'billing-api')
    expect(await runActions.execute(event(loom, { runId: 'app-chart__billing-api' }))).toMatchObject({
      ok: true,
      message: 'Executing billing-api.',
    })
    expect(await statusOf(loom, 'billing-api')).toBe('running')
    await until(async () => dispatched.length === 1)
    expect(dispatched[0]).toMatchObject({ runId: 'app-chart__billing-api', stepName: 'bump' })

    expect(await runActions.cancel(event(loom, { runId: 'app-chart__billing-api' }))).toMatchObject({ ok: true })
    expect(await statusOf(loom, 'billing-api')).toBe('not_started')
    const [migration] = await loom.listMigrations({ summary: true })
    expect(migration!.cancelledAttempts?.map((a) => a.runId)).toEqual(['app-chart__billing-api'])
    await (loom as Loom & { close(): Promise<void> }).close()
  })

  it('approves and rejects a manual-review step on the operator’s behalf', async () => {
    const { loom } = await setup()
    const reviewAwaited = (candidateId: string) =>
      until(async () => {
        const run = await loom.getRun(`${MIGRATION}__${candidateId}`)
        return run.steps?.some((s) => s.stepName === 'verify' && s.metadata?.phase === 'awaiting_review') ?? false
      })
    for (const candidateId of ['billing-api', 'checkout']) {
      const runId = await loom.queue(MIGRATION, candidateId)
      await loom.execute(runId)
      await loom.complete(runId, { stepName: 'bump', candidate: { id: candidateId }, success: true })
      await reviewAwaited(candidateId)
    }

    const approved = await runActions.approve(event(loom, { runId: 'app-chart__billing-api', stepName: 'verify', note: 'all Synced' }))
    expect(approved).toMatchObject({ ok: true, message: 'Approved "verify" for billing-api.' })
    await until(async () => (await statusOf(loom, 'billing-api')) === 'completed')
    const run = await loom.getRun('app-chart__billing-api')
    expect(run.steps?.find((s) => s.stepName === 'verify')?.metadata).toEqual({ review: 'approved', note: 'all Synced' })

    const rejected = await runActions.reject(event(loom, { runId: 'app-chart__checkout', stepName: 'verify' }))
    expect(rejected).toMatchObject({ ok: true, message: 'Rejected "verify": checkout is back to not started.' })
    await until(async () => (await statusOf(loom, 'checkout')) === 'not_started')

    // Reviewing a run that is no longer running is refused with Loom's message.
    const late = await runActions.reject(event(loom, { runId: 'app-chart__checkout', stepName: 'verify' }))
    expect(late).toMatchObject({ status: 409, data: { code: 'conflict' } })
    await (loom as Loom & { close(): Promise<void> }).close()
  })

  it('cancels with the reason given, as the operator whose Loom the page holds', async () => {
    const { loom } = await setup()
    const alice = loom.as({ kind: 'operator', name: 'alice' })
    await loom.queue(MIGRATION, 'billing-api')
    await loom.queue(MIGRATION, 'checkout')
    const result = await runActions.cancel(event(alice, { runId: 'app-chart__billing-api', reason: '  wrong chart version  ' }))
    expect(result).toMatchObject({ ok: true, message: 'Cancelled the run of billing-api; it is back to not started.' })
    // An empty reason is no reason.
    expect(await runActions.cancel(event(alice, { runId: 'app-chart__checkout', reason: ' ' }))).toMatchObject({ ok: true })
    const [billing] = (await loom.history('app-chart__billing-api')).attempts
    expect(billing).toMatchObject({ outcome: 'cancelled', endedBy: { kind: 'operator', name: 'alice' }, reason: 'wrong chart version' })
    const [checkout] = (await loom.history('app-chart__checkout')).attempts
    expect(checkout).toMatchObject({ outcome: 'cancelled', endedBy: { name: 'alice' } })
    expect(checkout).not.toHaveProperty('reason')

    // Too long a reason is refused by Loom, naming the field, and cancels nothing.
    await loom.queue(MIGRATION, 'billing-api')
    const refused = await runActions.cancel(event(alice, { runId: 'app-chart__billing-api', reason: 'x'.repeat(2001) }))
    expect(refused).toMatchObject({ status: 400, data: { ok: false, code: 'invalid' } })
    expect((refused as { data: { message: string } }).data.message).toContain('reason')
    expect(await statusOf(loom, 'billing-api')).toBe('queued')
    await (loom as Loom & { close(): Promise<void> }).close()
  })

  it('says so when the run fails as it starts, and says "Executing" only while it runs', async () => {
    const loom = createLoom({
      store: memoryStore(),
      engine: localEngine({ dispatchAttempts: 1 }),
      dispatcher: {
        dispatch: async () => {
          throw new Error('connect ECONNREFUSED 127.0.0.1:9')
        },
      },
      onError: () => {},
    })
    await loom.announce({
      id: MIGRATION,
      name: 'App chart',
      steps: [{ name: 'bump', workerApp: 'charts' }],
      candidates: [{ id: 'billing-api' }],
    })
    await loom.queue(MIGRATION, 'billing-api')
    const result = await runActions.execute(event(loom, { runId: 'app-chart__billing-api' }))
    expect(result).toMatchObject({ ok: true, failed: true, runId: 'app-chart__billing-api' })
    const message = (result as { message: string }).message
    expect(message).toMatch(/^The run of billing-api failed as it started: bump: dispatch to worker app charts failed/)
    expect(message).toContain('ECONNREFUSED')
    expect(await statusOf(loom, 'billing-api')).toBe('not_started')
    await (loom as Loom & { close(): Promise<void> }).close()
  })
})
