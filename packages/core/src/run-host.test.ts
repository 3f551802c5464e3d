import { describe, expect, it } from 'vitest'
import { createLoom } from './loom/index'
import { localEngine } from './local-engine'
import { memoryStore } from './memory-store'
import { createRunHost } from './run-host'
import type { LoomEvent } from './schemas'
import { announcement, eventually, fakeWorker } from './testing/fakes'

describe('createRunHost', () => {
  const setup = async () => {
    const store = memoryStore()
    const worker = fakeWorker()
    // No reconciler: these tests move the run by hand, and it would take over a run with no owner.
    const loom = createLoom({ store, engine: localEngine(), dispatcher: worker.dispatcher, reconcile: false })
    await loom.announce(announcement('app-chart', { steps: ['update-chart'], candidates: [{ id: 'billing-api' }] }))
    const runId = await loom.queue('app-chart', 'billing-api')
    const found = await store.getCandidate('app-chart', 'billing-api')
    const run = { runId, migrationId: 'app-chart', candidateId: 'billing-api', attempt: found!.run!.attempt }
    return { store, worker, loom, run }
  }

  it('ends a run once, and answers true again for the same outcome without a second event', async () => {
    const { store, worker, run } = await setup()
    await store.transition({ migrationId: 'app-chart', candidateId: 'billing-api', action: 'execute', at: new Date().toISOString() })
    const host = createRunHost({ store, dispatcher: worker.dispatcher })
    expect(await host.finish(run, 'completed')).toBe(true)
    expect(await host.finish(run, 'completed')).toBe(true)
    expect(await host.finish(run, 'failed')).toBe(false)
    const log = await store.listActivity({ migrationId: 'app-chart', candidateId: 'billing-api', limit: 100 })
    expect(log.filter((e) => e.type.startsWith('run.') && e.type !== 'run.queue' && e.type !== 'run.execute').map((e) => e.type)).toEqual([
      'run.complete',
    ])
  })

  it('treats a stale attempt as stale: nothing changes and every operation says so', async () => {
    const { store, worker, run } = await setup()
    await store.transition({ migrationId: 'app-chart', candidateId: 'billing-api', action: 'execute', at: new Date().toISOString() })
    const host = createRunHost({ store, dispatcher: worker.dispatcher })
    const stale = { ...run, attempt: run.attempt + 1 }
    expect(await host.load(stale)).toBeUndefined()
    expect(await host.beginStep(stale, 0)).toBe(false)
    expect(await host.finish(stale, 'completed')).toBe(false)
    await expect(host.dispatch(stale, 0)).rejects.toMatchObject({ code: 'conflict' })
    expect(worker.dispatched).toEqual([])
    expect((await store.getCandidate('app-chart', 'billing-api'))!.run!.state).toBe('running')
  })

  it('sends a step once per attempt: not again once accepted or reported, and not for a step the run is not at', async () => {
    const { store, worker, run } = await setup()
    await store.transition({ migrationId: 'app-chart', candidateId: 'billing-api', action: 'execute', at: new Date().toISOString() })
    const host = createRunHost({ store, dispatcher: worker.dispatcher })
    expect(await host.beginStep(run, 0)).toBe(true)
    await host.dispatch(run, 0)
    expect((await store.getCandidate('app-chart', 'billing-api'))!.run!.stepDispatchedAt).toBeDefined()
    // Tried again (its answer was lost): the store says the worker has it.
    await host.dispatch(run, 0)
    expect(worker.stepsOf(run.runId)).toEqual(['update-chart'])
    await expect(host.dispatch(run, 1)).rejects.toMatchObject({ code: 'conflict' })
    expect(worker.stepsOf(run.runId)).toEqual(['update-chart'])
  })

  it('fails a step only when no report came first: a late deadline leaves a succeeded step and its run alone', async () => {
    const { store, worker, run } = await setup()
    await store.transition({ migrationId: 'app-chart', candidateId: 'billing-api', action: 'execute', at: new Date().toISOString() })
    const host = createRunHost({ store, dispatcher: worker.dispatcher })
    await host.beginStep(run, 0)
    const at = new Date().toISOString()
    const success = { stepName: 'update-chart', candidate: { id: 'billing-api' }, success: true }
    await store.recordStep({ migrationId: 'app-chart', candidateId: 'billing-api', attempt: run.attempt, result: success, done: true, at })
    expect(await host.failStep(run, 0, 'deadline passed')).toBe(false)
    const after = (await store.getCandidate('app-chart', 'billing-api'))!.run!
    expect(after.state).toBe('running')
    expect(after.steps.map((s) => s.result.success)).toEqual([true])
  })

  it('tells the loom’s subscribers what a host elsewhere changes in the store, once, in order', async () => {
    const { store, worker, loom, run } = await setup()
    const seen: LoomEvent[] = []
    const ready = new Promise<void>((resolve) => loom.subscribe((e) => seen.push(e), { onReady: resolve }))
    await ready
    // A host of its own over the same store: what a Temporal worker in another process builds.
    const elsewhere = createRunHost({ store, dispatcher: worker.dispatcher })
    await store.transition({ migrationId: 'app-chart', candidateId: 'billing-api', action: 'execute', at: new Date().toISOString() })
    expect(await elsewhere.beginStep(run, 0)).toBe(true)
    await elsewhere.dispatch(run, 0)
    expect(await elsewhere.finish(run, 'completed')).toBe(true)
    await eventually(() =>
      expect(seen.map((e) => (e.type === 'run.status' ? `${e.previous}→${e.status}` : e.type))).toEqual([
        'queued→running',
        'step.dispatched',
        'running→completed',
      ]),
    )
    const ids = seen.map((e) => BigInt(e.id!))
    expect([...ids].sort((a, b) => (a < b ? -1 : 1))).toEqual(ids)
    expect(seen[2]).toMatchObject({ runId: run.runId, attempt: run.attempt, actor: { kind: 'system' } })
  })
})
