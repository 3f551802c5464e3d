import { afterEach, describe, expect, it } from 'vitest'
import { type Actor, SYSTEM_ACTOR } from '../actors'
import { LoomError, type LoomErrorCode } from '../errors'
import { localEngine } from '../local-engine'
import { memoryStore } from '../memory-store'
import type { Engine, MigrationStore } from '../ports'
import { announcement, candidates, eventually, expectLoomError, fakeWorker, type FakeWorker } from '../testing/fakes'
import { createLoom, type LoomInstance } from './index'

const M = 'app-chart'
const RUN = 'app-chart__svc-0'
const alice: Actor = { kind: 'operator', name: 'alice' }

/**
 * An Execute whose engine refuses to start puts the candidate back to `queued` (the
 * `unexecute` transition), in the attempt it was in, so that the operator can simply try
 * again. Refusals come as a `LoomError` (the engine's own code is kept) or as anything else
 * thrown (a driver's error: Loom answers `unavailable`).
 */
describe('Execute when the engine refuses to start', () => {
  let loom: LoomInstance | undefined
  afterEach(async () => {
    await loom?.close()
    loom = undefined
  })

  /** A Loom acting as alice, whose engine runs `meanwhile` in each start, then refuses it while `refusal` is set. */
  const setup = async () => {
    const store = memoryStore()
    const worker: FakeWorker = fakeWorker()
    const engine = localEngine()
    const refusing: { refusal: unknown; starts: number; meanwhile?: () => Promise<void> } = { refusal: undefined, starts: 0 }
    const flaky: Engine = {
      ...engine,
      start: async (run) => {
        refusing.starts++
        await refusing.meanwhile?.()
        if (refusing.refusal !== undefined) throw refusing.refusal
        await engine.start(run)
      },
    }
    loom = createLoom({ store, engine: flaky, dispatcher: worker.dispatcher, reconcile: false })
    await loom.announce(announcement(M, { steps: ['update-chart'], candidates: candidates(1) }))
    const operator = loom.as(alice)
    await operator.queue(M, 'svc-0')
    return { loom: operator, store, worker, refusing }
  }

  const runOf = async (store: MigrationStore) => (await store.getCandidate(M, 'svc-0'))!.run!
  const log = async (store: MigrationStore) =>
    (await store.listActivity({ migrationId: M, candidateId: 'svc-0', limit: 100 })).map((e) => [e.type, e.attempt, e.actor])

  const refusals: Array<{ name: string; refusal: unknown; code: LoomErrorCode; message: string }> = [
    {
      name: 'unavailable (a LoomError)',
      refusal: new LoomError('unavailable', 'temporal: connection refused'),
      code: 'unavailable',
      message: 'temporal: connection refused',
    },
    {
      name: 'conflict (a LoomError: a run with this id is still open)',
      refusal: new LoomError('conflict', 'temporal: workflow app-chart__svc-0 is still open'),
      code: 'conflict',
      message: 'workflow app-chart__svc-0 is still open',
    },
    {
      name: 'a plain Error',
      refusal: new Error('socket hang up'),
      code: 'unavailable',
      message: `engine: could not start run ${RUN}: socket hang up`,
    },
  ]

  for (const { name, refusal, code, message } of refusals) {
    it(`refused with ${name}: answers ${code}, the candidate is queued again in the same attempt, and a later Execute runs it`, async () => {
      const t = await setup()
      const queued = await runOf(t.store)
      t.refusing.refusal = refusal

      const error = await expectLoomError(t.loom.execute(RUN), code)
      expect(error.message).toContain(message)
      expect(t.refusing.starts).toBe(1)
      expect((await t.loom.getCandidate(M, 'svc-0')).status).toBe('queued')
      const undone = await runOf(t.store)
      expect(undone).toMatchObject({ state: 'queued', attempt: queued.attempt, steps: [], currentStep: 0 })
      expect(undone.startedAt).toBeUndefined()
      expect(undone.owner).toBeUndefined()
      // The operator's Execute is logged, then Loom's own undoing of it, both in the attempt.
      expect(await log(t.store)).toEqual([
        ['run.queue', queued.attempt, alice],
        ['run.execute', queued.attempt, alice],
        ['run.unexecute', queued.attempt, SYSTEM_ACTOR],
      ])
      expect(t.worker.dispatched).toEqual([])

      // The engine is back: the same candidate executes, in the same attempt, and its step goes out.
      t.refusing.refusal = undefined
      expect(await t.loom.execute(RUN)).toBe(RUN)
      expect((await t.loom.getCandidate(M, 'svc-0')).status).toBe('running')
      expect((await runOf(t.store)).attempt).toBe(queued.attempt)
      // The dispatch's entry is written once the worker accepted it, so it may trail the dispatch.
      await eventually(async () =>
        expect((await log(t.store)).map(([type]) => type)).toEqual([
          'run.queue',
          'run.execute',
          'run.unexecute',
          'run.execute',
          'step.dispatched',
        ]),
      )
      expect(t.worker.dispatched.map((d) => [d.request.stepName, d.request.attempt])).toEqual([['update-chart', queued.attempt]])
    })
  }

  it('leaves a candidate that was cancelled while the engine was answering cancelled, not queued', async () => {
    const t = await setup()
    const { attempt } = await runOf(t.store)
    // The cancel lands between Execute's transition and the engine's refusal: the undo, guarded
    // by the attempt and allowed only from running, must not bring the candidate back.
    t.refusing.meanwhile = () => t.loom.cancel(RUN, { reason: 'freeze' })
    t.refusing.refusal = new LoomError('unavailable', 'temporal: connection refused')
    await expectLoomError(t.loom.execute(RUN), 'unavailable')
    expect((await t.loom.getCandidate(M, 'svc-0')).status).toBe('not_started')
    expect(await runOf(t.store)).toMatchObject({ state: 'cancelled', attempt })
    expect((await log(t.store)).map(([type]) => type)).toEqual(['run.queue', 'run.execute', 'run.cancel'])
    expect((await t.loom.getMigration(M)).cancelledAttempts?.map((a) => [a.candidateId, a.attempt, a.reason])).toEqual([
      ['svc-0', attempt, 'freeze'],
    ])
  })
})
