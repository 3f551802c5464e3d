import { describe, expect, it } from 'vitest'
import { ANONYMOUS_OPERATOR, type Actor, authorize, mayCall, parseNamedTokens, SYSTEM_ACTOR, tokenIdentities } from '../actors'
import { LoomError } from '../errors'
import { localEngine } from '../local-engine'
import { memoryStore } from '../memory-store'
import { announcement, eventually, expectLoomError, fakeWorker } from '../testing/fakes'
import { createLoom } from './index'

const teamA: Actor = { kind: 'worker', name: 'team-a' }
const teamB: Actor = { kind: 'worker', name: 'team-b' }
const alice: Actor = { kind: 'operator', name: 'alice' }
const candidate = { id: 'billing-api' }
const RUN = 'app-chart__billing-api'

function setup() {
  const worker = fakeWorker()
  const store = memoryStore()
  const loom = createLoom({ store, engine: localEngine(), dispatcher: worker.dispatcher, dryRunner: worker.dryRunner, reconcile: false })
  return { loom, store, worker }
}

describe('roles', () => {
  it('lets a worker announce, submit candidates and report, and nothing else', async () => {
    const { loom } = setup()
    const a = loom.as(teamA)
    await a.announce(announcement('app-chart', { candidates: [candidate] }))
    await a.submitCandidates('app-chart', [candidate, { id: 'search-api' }])
    await a.health()
    const refusals: Array<[string, Promise<unknown>]> = [
      ['listMigrations', a.listMigrations()],
      ['getMigration', a.getMigration('app-chart')],
      ['register', a.register({ name: 'x', steps: [{ name: 's', workerApp: 'w' }], candidates: [] })],
      ['deleteMigration', a.deleteMigration('app-chart')],
      ['listCandidates', a.listCandidates('app-chart')],
      ['searchCandidates', a.searchCandidates('app-chart', {})],
      ['getCandidate', a.getCandidate('app-chart', 'billing-api')],
      ['queue', a.queue('app-chart', 'billing-api')],
      ['dequeue', a.dequeue(RUN)],
      ['execute', a.execute(RUN)],
      ['cancel', a.cancel(RUN)],
      ['getRun', a.getRun(RUN)],
      ['runStatus', a.runStatus(RUN)],
      ['dryRun', a.dryRun('app-chart', 'billing-api')],
    ]
    for (const [method, call] of refusals) {
      const error = await expectLoomError(call, 'forbidden')
      expect(error.message).toContain(method)
    }
    expect(() => a.subscribe(() => {})).toThrow(LoomError)
    // Nothing the refused calls named happened: the migration is there, nothing queued.
    expect((await loom.getCandidate('app-chart', 'billing-api')).status).toBe('not_started')
  })

  it('gives operators and Loom itself every method', () => {
    for (const method of ['queue', 'execute', 'cancel', 'deleteMigration', 'complete', 'announce']) {
      expect(mayCall(alice, method)).toBe(true)
      expect(mayCall(SYSTEM_ACTOR, method)).toBe(true)
      expect(mayCall(ANONYMOUS_OPERATOR, method)).toBe(true)
    }
    expect(() => authorize(teamA, 'queue')).toThrow(/worker team-a may not call queue/)
  })
})

describe('ownership', () => {
  it('belongs to the worker that first announced it; another worker changes nothing', async () => {
    const { loom } = setup()
    await loom.as(teamA).announce(announcement('app-chart', { candidates: [candidate, { id: 'search-api' }] }))
    expect((await loom.getMigration('app-chart')).owner).toBe('team-a')

    const b = loom.as(teamB)
    const takeover = { ...announcement('app-chart', { workerUrl: 'http://127.0.0.1:9/evil' }), name: 'Taken over', candidates: [] }
    const refused = await expectLoomError(b.announce(takeover), 'forbidden')
    expect(refused.message).toBe('worker team-b may not announce migration app-chart: it belongs to worker team-a')
    await expectLoomError(b.submitCandidates('app-chart', []), 'forbidden')

    const after = await loom.getMigration('app-chart')
    expect(after.name).toBe('Migration app-chart')
    expect(after.workerUrl).toBe('http://127.0.0.1:9/worker')
    expect(after.candidates.map((c) => c.id)).toEqual(['billing-api', 'search-api'])
    expect(after.owner).toBe('team-a')

    // The owner and operators may change it; the owner stays.
    await loom.as(teamA).announce({ ...announcement('app-chart'), name: 'Renamed by A' })
    await loom.as(alice).announce({ ...announcement('app-chart'), name: 'Renamed by alice' })
    expect(await loom.getMigration('app-chart')).toMatchObject({ name: 'Renamed by alice', owner: 'team-a' })
  })

  it('lets the first worker claim a migration an operator registered', async () => {
    const { loom } = setup()
    await loom.as(alice).announce(announcement('app-chart'))
    expect((await loom.getMigration('app-chart')).owner).toBeUndefined()
    await loom.as(teamB).announce(announcement('app-chart'))
    expect((await loom.getMigration('app-chart')).owner).toBe('team-b')
    await expectLoomError(loom.as(teamA).announce(announcement('app-chart')), 'forbidden')
  })

  it('takes reports from the owner only, and leaves approving a manual review to operators', async () => {
    const { loom, worker } = setup()
    await loom
      .as(teamA)
      .announce(announcement('app-chart', { steps: ['update-chart', 'review'], manual: ['review'], candidates: [candidate] }))
    const runId = await loom.queue('app-chart', 'billing-api')
    await loom.execute(runId)
    await eventually(() => expect(worker.stepsOf(runId)).toEqual(['update-chart']))

    const report = (stepName: string, success = true) => ({ stepName, candidate, success })
    await expectLoomError(loom.as(teamB).complete(runId, report('update-chart')), 'forbidden')
    expect((await loom.getRun(runId)).steps).toEqual([])
    await loom.as(teamA).complete(runId, report('update-chart'))
    await eventually(async () => expect((await loom.getRun(runId)).steps?.map((s) => s.stepName)).toEqual(['update-chart']))

    const approval = await expectLoomError(loom.as(teamA).complete(runId, report('review')), 'forbidden')
    expect(approval.message).toContain("approving or rejecting a manual review is an operator's action")
    await expectLoomError(loom.as(teamA).prOpened(runId, report('review')), 'forbidden')
    expect((await loom.getRun(runId)).status).toBe('running')

    await loom.as(alice).complete(runId, report('review'))
    await eventually(async () => expect((await loom.getRun(runId)).status).toBe('completed'))
  })

  it('passes the owner to the dispatcher and the dry runner', async () => {
    const { loom, worker } = setup()
    await loom.as(teamA).announce(announcement('app-chart', { candidates: [candidate] }))
    await loom.dryRun('app-chart', 'billing-api')
    const runId = await loom.queue('app-chart', 'billing-api')
    await loom.execute(runId)
    await eventually(() =>
      expect(worker.dispatched[0]?.target).toEqual({ workerApp: 'charts', workerUrl: 'http://127.0.0.1:9/worker', owner: 'team-a' }),
    )
  })
})

describe('token identities', () => {
  it('names each token holder, and is open with none', () => {
    const ids = tokenIdentities({
      token: 'op-token',
      workerToken: 'w-token',
      operators: 'alice:alice-token,bob:bob-token',
      workers: { 'team-a': 'a-token' },
    })
    expect(ids.open).toBe(false)
    expect(ids.authenticate('op-token')).toEqual({ kind: 'operator', name: 'operator' })
    expect(ids.authenticate('alice-token')).toEqual(alice)
    expect(ids.authenticate('w-token')).toEqual({ kind: 'worker', name: 'worker' })
    expect(ids.authenticate('a-token')).toEqual(teamA)
    expect(ids.authenticate('nope')).toBeNull()
    expect(ids.authenticate(undefined)).toBeNull()
    expect(ids.workerToken('team-a')).toBe('a-token')
    expect(ids.workerToken('worker')).toBe('w-token')
    // A migration no worker owns gets the single worker token; an owner without a token of its own (one
    // removed from the list, say) gets none: never another worker's, never the operator's.
    expect(ids.workerToken(undefined)).toBe('w-token')
    expect(ids.workerToken('someone-else')).toBeUndefined()
    expect(tokenIdentities({ token: 'op-token', workers: { b: 'b-token' } }).workerToken('a')).toBeUndefined()
    expect(tokenIdentities({}).authenticate(undefined)).toEqual(ANONYMOUS_OPERATOR)
    expect(tokenIdentities({ workerToken: 'w-token' }).authenticate(undefined)).toBeNull()
  })

  it('keeps API 0.2 single-token setups: the one token is the operator, and what Loom presents to workers', () => {
    const ids = tokenIdentities({ token: 'shared', workerToken: 'shared' })
    expect(ids.authenticate('shared')).toEqual({ kind: 'operator', name: 'operator' })
    expect(ids.workerToken(undefined)).toBe('shared')
    // With the operator token alone, workers hold it, and Loom shows it to every worker.
    expect(tokenIdentities({ token: 'only' }).workerToken(undefined)).toBe('only')
    expect(tokenIdentities({ token: 'only' }).workerToken('anyone')).toBe('only')
  })

  it('refuses malformed or ambiguous settings, naming them', () => {
    expect(() => parseNamedTokens('alice', 'LOOM_OPERATORS')).toThrow(/LOOM_OPERATORS: each entry must be name:token/)
    expect(() => parseNamedTokens('alice:x,alice:y', 'LOOM_OPERATORS')).toThrow(/LOOM_OPERATORS: alice is named twice/)
    expect(() => tokenIdentities({ operators: 'alice:same', workers: 'team-a:same' })).toThrow(
      /workers: the token of worker team-a is also operator alice's/,
    )
    expect(() => tokenIdentities({ workers: { 'team-a': 'has space' } })).toThrow(/workers: the token of team-a must be a bearer token/)
  })
})

describe('what the review of issue 13 found', () => {
  it('keeps a worker from removing or retyping the manual review it waits on, so it cannot approve it', async () => {
    const { loom, worker } = setup()
    const reviewed = announcement('app-chart', { steps: ['update-chart', 'review'], manual: ['review'], candidates: [candidate] })
    await loom.as(teamA).announce(reviewed)
    const runId = await loom.queue('app-chart', 'billing-api')
    await loom.execute(runId)
    await eventually(() => expect(worker.stepsOf(runId)).toEqual(['update-chart']))
    await loom.as(teamA).complete(runId, { stepName: 'update-chart', candidate, success: true })

    const retyped = { ...reviewed, steps: reviewed.steps.map((s) => ({ ...s, config: { chart: 'app' } })) }
    const refused = await expectLoomError(loom.as(teamA).announce(retyped), 'forbidden')
    expect(refused.message).toBe(
      'worker team-a may not remove or change the manual-review step "review" of migration app-chart: only an operator may',
    )
    const removed = { ...reviewed, steps: reviewed.steps.filter((s) => s.name !== 'review') }
    await expectLoomError(loom.as(teamA).announce(removed), 'forbidden')
    expect((await loom.getMigration('app-chart')).steps.find((s) => s.name === 'review')?.config?.type).toBe('manual-review')
    await expectLoomError(loom.as(teamA).complete(runId, { stepName: 'review', candidate, success: true }), 'forbidden')
    expect((await loom.getRun(runId)).status).toBe('running')

    // Adding a review is fine; an operator may change them.
    await loom
      .as(teamA)
      .announce({ ...reviewed, steps: [...reviewed.steps, { name: 'sign-off', workerApp: 'charts', config: { type: 'manual-review' } }] })
    await loom.as(alice).announce(retyped)
  })

  it('lets no worker submit candidates to, or report on, a migration no worker owns', async () => {
    const { loom, worker } = setup()
    await loom.as(alice).announce(announcement('app-chart', { candidates: [candidate] }))
    const refused = await expectLoomError(loom.as(teamB).submitCandidates('app-chart', [{ id: 'evil' }]), 'forbidden')
    expect(refused.message).toBe(
      'worker team-b may not submit candidates to migration app-chart: it belongs to no worker yet; announce it to claim it',
    )
    expect((await loom.listCandidates('app-chart')).map((c) => c.id)).toEqual(['billing-api'])
    const runId = await loom.queue('app-chart', 'billing-api')
    await loom.execute(runId)
    await eventually(() => expect(worker.stepsOf(runId)).toEqual(['update-chart']))
    await expectLoomError(loom.as(teamB).complete(runId, { stepName: 'update-chart', candidate, success: false }), 'forbidden')
    expect((await loom.getRun(runId)).status).toBe('running')
  })

  it('acts for no one of an unknown kind or a blank name', () => {
    const { loom } = setup()
    for (const actor of [
      { kind: 'Worker', name: 'x' },
      { kind: 'worker ', name: 'x' },
      { kind: 'operator', name: ' ' },
      { kind: 'operator', name: '' },
    ]) {
      expect(() => loom.as(actor as Actor)).toThrow(LoomError)
    }
    expect(mayCall({ kind: 'Operator' } as unknown as Actor, 'listMigrations')).toBe(false)
  })
})
