import { describe, expect, it } from 'vitest'
import { LoomError } from './errors'
import { createLoom } from './loom/index'
import { localEngine } from './local-engine'
import { memoryStore } from './memory-store'
import { announcement, eventually, fakeWorker } from './testing/fakes'

describe('localEngine', () => {
  const RUN = 'app-chart__billing-api'
  const done = (stepName: string) => ({ stepName, candidate: { id: 'billing-api' }, success: true })

  it('resumes a running run after a restart over the same store, awaiting the step its worker accepted', async () => {
    const store = memoryStore()
    const before = fakeWorker()
    const first = createLoom({ store, engine: localEngine(), dispatcher: before.dispatcher })
    await first.announce(announcement('app-chart', { steps: ['update-chart', 'open-pr', 'merge'], candidates: [{ id: 'billing-api' }] }))
    await first.execute(await first.queue('app-chart', 'billing-api'))
    await eventually(() => expect(before.stepsOf(RUN)).toEqual(['update-chart']))
    await first.complete(RUN, done('update-chart'))
    await eventually(() => expect(before.stepsOf(RUN)).toEqual(['update-chart', 'open-pr']))
    await first.close() // the process stops; the store keeps the run running

    const after = fakeWorker()
    const second = createLoom({ store, engine: localEngine(), dispatcher: after.dispatcher })
    await second.ready
    expect(await second.runStatus(RUN)).toMatchObject({ runtimeStatus: 'RUNNING' })
    // open-pr was accepted before the restart: the worker reports it, it is not sent again.
    await second.complete(RUN, done('open-pr'))
    await eventually(() => expect(after.stepsOf(RUN)).toEqual(['merge']))
    await second.complete(RUN, done('merge'))
    await eventually(async () => expect((await second.getRun(RUN)).status).toBe('completed'))
    expect(before.stepsOf(RUN)).toEqual(['update-chart', 'open-pr'])
    await second.close()
  })

  it('takes back the runs of a process killed without closing at once under its name, and under another name once its lease lapses', async () => {
    const store = memoryStore()
    const worker = fakeWorker()
    const reconcile = { intervalMs: 50, leaseMs: 400 }
    // The killed process's view of the store: once killed, nothing it asks ever comes back.
    let dead = false
    const seenByKilled = new Proxy(store, {
      get: (target, key) => {
        const method = Reflect.get(target, key) as (...args: unknown[]) => Promise<unknown>
        return (...args: unknown[]) => (dead ? new Promise(() => {}) : method.apply(target, args))
      },
    })
    const killed = createLoom({ store: seenByKilled, engine: localEngine(), dispatcher: worker.dispatcher, instanceId: 'api-0', reconcile })
    await killed.announce(
      announcement('app-chart', { steps: ['update-chart', 'merge'], candidates: [{ id: 'billing-api' }, { id: 'checkout' }] }),
    )
    await killed.execute(await killed.queue('app-chart', 'billing-api'))
    await eventually(() => expect(worker.stepsOf(RUN)).toEqual(['update-chart']))
    dead = true // no close: the process is gone with its loops, and its lease still runs
    const other = createLoom({ store, engine: localEngine(), dispatcher: worker.dispatcher, instanceId: 'api-1', reconcile })
    const again = createLoom({ store, engine: localEngine(), dispatcher: worker.dispatcher, instanceId: 'api-0', reconcile })
    await Promise.all([other.ready, again.ready])
    expect((await store.getCandidate('app-chart', 'billing-api'))!.run!.owner).toBe('api-0')
    await again.complete(RUN, done('update-chart'))
    await eventually(() => expect(worker.stepsOf(RUN)).toEqual(['update-chart', 'merge']))
    await again.close()
    // Closed: its lease ends now, and the other process takes the run over at its next tick.
    await eventually(async () => expect((await store.getCandidate('app-chart', 'billing-api'))!.run!.owner).toBe('api-1'))
    await other.complete(RUN, done('merge'))
    await eventually(async () => expect((await other.getRun(RUN)).status).toBe('completed'))
    expect(worker.stepsOf(RUN)).toEqual(['update-chart', 'merge'])
    await other.close()
  })

  it('resumes a run held on a manual-review step without dispatching it or recording the wait twice', async () => {
    const store = memoryStore()
    const worker = fakeWorker()
    const first = createLoom({ store, engine: localEngine(), dispatcher: worker.dispatcher })
    await first.announce(announcement('app-chart', { steps: ['review', 'merge'], manual: ['review'], candidates: [{ id: 'billing-api' }] }))
    await first.execute(await first.queue('app-chart', 'billing-api'))
    await eventually(async () => expect((await first.getRun(RUN)).steps).toHaveLength(1))
    await first.close()

    const second = createLoom({ store, engine: localEngine(), dispatcher: worker.dispatcher })
    await second.ready
    await eventually(async () => expect(await second.complete(RUN, done('review'))).toBeUndefined())
    await eventually(() => expect(worker.stepsOf(RUN)).toEqual(['merge']))
    const steps = (await second.getRun(RUN)).steps!
    expect(steps.map((s) => [s.stepName, s.success])).toEqual([['review', true]])
    await second.close()
  })

  it('retries a failed dispatch before failing the step', async () => {
    const worker = fakeWorker()
    let failures = 2
    const dispatch = worker.dispatcher.dispatch
    worker.dispatcher.dispatch = async (target, request) => {
      if (failures-- > 0) throw new Error('worker restarting')
      return dispatch(target, request)
    }
    const loom = createLoom({
      store: memoryStore(),
      engine: localEngine({ dispatchAttempts: 3, retryDelayMs: 5 }),
      dispatcher: worker.dispatcher,
    })
    await loom.announce(announcement('app-chart', { steps: ['update-chart'], candidates: [{ id: 'billing-api' }] }))
    await loom.execute(await loom.queue('app-chart', 'billing-api'))
    await eventually(() => expect(worker.stepsOf(RUN)).toEqual(['update-chart']))
    expect((await loom.getRun(RUN)).status).toBe('running')
    await loom.close()
  })

  it('fails the step at once, without retrying, when the worker refuses it', async () => {
    const worker = fakeWorker()
    let calls = 0
    worker.dispatcher.dispatch = async () => {
      calls++
      throw new LoomError('unauthorized', 'worker at http://w/steps/dispatch answered 401')
    }
    const loom = createLoom({
      store: memoryStore(),
      engine: localEngine({ dispatchAttempts: 4, retryDelayMs: 5 }),
      dispatcher: worker.dispatcher,
    })
    await loom.announce(announcement('app-chart', { steps: ['update-chart'], candidates: [{ id: 'billing-api' }] }))
    await loom.execute(await loom.queue('app-chart', 'billing-api'))
    await eventually(async () => expect((await loom.runStatus(RUN)).runtimeStatus).toBe('FAILED'))
    expect(calls).toBe(1)
    expect((await loom.runStatus(RUN)).result.results[0]?.metadata?.error).toContain('answered 401')
    await loom.close()
  })

  it('sends the attempt with each dispatch, a new one for each run of the same run id', async () => {
    const worker = fakeWorker()
    const loom = createLoom({ store: memoryStore(), engine: localEngine(), dispatcher: worker.dispatcher })
    await loom.announce(announcement('app-chart', { steps: ['update-chart'], candidates: [{ id: 'billing-api' }] }))
    await loom.execute(await loom.queue('app-chart', 'billing-api'))
    await eventually(() => expect(worker.dispatched).toHaveLength(1))
    await loom.cancel(RUN)
    await loom.execute(await loom.queue('app-chart', 'billing-api'))
    await eventually(() => expect(worker.dispatched).toHaveLength(2))
    const [first, second] = worker.dispatched.map((d) => d.request.attempt)
    expect(typeof first).toBe('number')
    expect(second).toBeGreaterThan(first!)
    await loom.close()
  })

  it('takes a step report that arrives while the dispatch is still being retried, and stops retrying', async () => {
    const worker = fakeWorker()
    let calls = 0
    worker.dispatcher.dispatch = async () => {
      calls++
      throw new LoomError('unavailable', 'worker at http://w/steps/dispatch answered 502')
    }
    const loom = createLoom({
      store: memoryStore(),
      engine: localEngine({ dispatchAttempts: 5, retryDelayMs: 200 }),
      dispatcher: worker.dispatcher,
    })
    await loom.announce(announcement('app-chart', { steps: ['update-chart'], candidates: [{ id: 'billing-api' }] }))
    await loom.execute(await loom.queue('app-chart', 'billing-api'))
    await eventually(() => expect(calls).toBe(1))
    await loom.complete(RUN, done('update-chart'))
    await eventually(async () => expect((await loom.getRun(RUN)).status).toBe('completed'))
    await new Promise((r) => setTimeout(r, 500))
    expect(calls).toBe(1)
    await loom.close()
  })

  it('ignores an event of another attempt, and starts a run again over a loop of an earlier attempt', async () => {
    const store = memoryStore()
    const worker = fakeWorker()
    const engine = localEngine()
    const loom = createLoom({ store, engine, dispatcher: worker.dispatcher, reconcile: false })
    await loom.announce(announcement('app-chart', { steps: ['update-chart'], candidates: [{ id: 'billing-api' }] }))
    await loom.execute(await loom.queue('app-chart', 'billing-api'))
    await eventually(() => expect(worker.stepsOf(RUN)).toEqual(['update-chart']))
    const { attempt } = (await store.getCandidate('app-chart', 'billing-api'))!.run!
    await engine.deliver(RUN, { stepName: 'update-chart', success: true, done: true, attempt: attempt + 1 })
    await new Promise((r) => setTimeout(r, 100))
    expect(await engine.progress(RUN)).toMatchObject({ attempt, state: 'running', currentStep: 'update-chart' })
    // Another process cancels and runs it again (nothing tells this loop): a start of the new attempt here is not refused.
    const at = new Date().toISOString()
    await store.transition({ migrationId: 'app-chart', candidateId: 'billing-api', action: 'cancel', at })
    await store.transition({ migrationId: 'app-chart', candidateId: 'billing-api', action: 'queue', at })
    await store.transition({ migrationId: 'app-chart', candidateId: 'billing-api', action: 'execute', at })
    const next = (await store.getCandidate('app-chart', 'billing-api'))!.run!.attempt
    await engine.start({ runId: RUN, migrationId: 'app-chart', candidateId: 'billing-api', attempt: next })
    await eventually(() => expect(worker.dispatched.map((d) => d.request.attempt)).toEqual([attempt, next]))
    await loom.complete(RUN, done('update-chart'))
    await eventually(async () => expect((await loom.getRun(RUN)).status).toBe('completed'))
    await loom.close()
  })

  it('ends a run cancelled while its step is being begun, so close does not hang', async () => {
    const store = memoryStore()
    let release!: () => void
    const gate = new Promise<void>((resolve) => (release = resolve))
    const markStep = store.markStep.bind(store)
    // The step becomes the one in flight, then the cancel lands before the engine waits for it.
    let entered!: () => void
    const inFlight = new Promise<void>((resolve) => (entered = resolve))
    store.markStep = async (request) => {
      const result = await markStep(request)
      entered()
      await gate
      return result
    }
    const worker = fakeWorker()
    const loom = createLoom({ store, engine: localEngine(), dispatcher: worker.dispatcher })
    await loom.announce(announcement('app-chart', { steps: ['update-chart'], candidates: [{ id: 'billing-api' }] }))
    await loom.execute(await loom.queue('app-chart', 'billing-api'))
    await inFlight
    await loom.cancel(RUN)
    release()
    const closed = await Promise.race([loom.close().then(() => 'closed'), new Promise((r) => setTimeout(() => r('hung'), 2000))])
    expect(closed).toBe('closed')
    expect(worker.dispatched).toEqual([])
  })
})
