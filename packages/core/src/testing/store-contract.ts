import { afterEach, beforeEach, describe, expect } from 'vitest'
import { joinRunId } from '../ids'
import { compareActivityIds } from '../loom/events'
import { type Actor, SYSTEM_ACTOR } from '../actors'
import type { ActivityDraft, MigrationDefinition, MigrationStore, RunRecord, RunState, TransitionRequest } from '../ports'
import type { CandidateStatus, StepResult } from '../schemas'
import type { StatusAction } from '../rules'
import { candidates, eventually } from './fakes'
import { contractTests, type ContractOptions } from './contract-test'

export type StoreFactory = () => Promise<{ store: MigrationStore; close?: () => Promise<void> }>

const STATUSES: CandidateStatus[] = ['not_started', 'queued', 'running', 'completed']
const at = () => new Date().toISOString()

/** A transition the store must refuse, changing nothing. */
const REFUSED = 'refused'

/** The status a transition leaves the candidate in, and the run state behind it. */
interface Applied {
  status: CandidateStatus
  state: RunState
}

/**
 * What each action does from each status, cell by cell, as the HTTP contract states it.
 * Written out rather than read from core's `STATUS_RULES`: a table derived from the rules
 * under test agrees with any mistake in them.
 */
const TRANSITIONS: Record<StatusAction, Record<CandidateStatus, Applied | typeof REFUSED>> = {
  queue: {
    not_started: { status: 'queued', state: 'queued' },
    queued: REFUSED,
    running: REFUSED,
    completed: REFUSED,
  },
  dequeue: {
    not_started: REFUSED,
    queued: { status: 'not_started', state: 'dequeued' },
    running: REFUSED,
    completed: REFUSED,
  },
  execute: {
    not_started: REFUSED,
    queued: { status: 'running', state: 'running' },
    running: REFUSED,
    completed: REFUSED,
  },
  cancel: {
    not_started: REFUSED,
    queued: { status: 'not_started', state: 'cancelled' },
    running: { status: 'not_started', state: 'cancelled' },
    completed: REFUSED,
  },
  complete: {
    not_started: REFUSED,
    queued: REFUSED,
    running: { status: 'completed', state: 'completed' },
    completed: REFUSED,
  },
  fail: {
    not_started: REFUSED,
    queued: REFUSED,
    running: { status: 'not_started', state: 'failed' },
    completed: REFUSED,
  },
  unexecute: {
    not_started: REFUSED,
    queued: REFUSED,
    running: { status: 'queued', state: 'queued' },
    completed: REFUSED,
  },
}

const definition = (id = 'app-chart', name = 'App chart'): MigrationDefinition => ({
  id,
  name,
  description: 'Move to per-app charts',
  workerUrl: 'http://127.0.0.1:9/worker',
  steps: [
    { name: 'update-chart', workerApp: 'charts', config: { chart: 'app' } },
    { name: 'open-pr', workerApp: 'charts' },
  ],
})

const result = (stepName: string, success: boolean, metadata?: Record<string, string>): StepResult => ({
  stepName,
  candidate: { id: 'svc-0' },
  success,
  ...(metadata ? { metadata } : {}),
})

/**
 * The `MigrationStore` contract: every guarantee documented on the port, as named tests.
 * Run it against each store: `storeContract('postgresStore', async () => ({ store, close }))`.
 * `options.skip` excuses the store from tests by name, each with its reason.
 */
export function storeContract(name: string, factory: StoreFactory, options: ContractOptions = {}): void {
  describe(`MigrationStore contract: ${name}`, () => {
    const { test, done } = contractTests(name, options)
    let store: MigrationStore
    let close: (() => Promise<void>) | undefined

    beforeEach(async () => {
      ;({ store, close } = await factory())
    })
    afterEach(async () => {
      await close?.()
    })

    const move = (candidateId: string, action: StatusAction, extra: Partial<TransitionRequest> = {}) =>
      store.transition({
        migrationId: 'app-chart',
        candidateId,
        action,
        at: at(),
        ...extra,
      })

    /** Brings a fresh candidate to `status` through the allowed transitions. */
    const bring = async (candidateId: string, status: CandidateStatus) => {
      const path: Record<CandidateStatus, StatusAction[]> = {
        not_started: [],
        queued: ['queue'],
        running: ['queue', 'execute'],
        completed: ['queue', 'execute', 'complete'],
      }
      for (const action of path[status]) expect((await move(candidateId, action)).ok).toBe(true)
    }

    const statusOf = async (candidateId: string) =>
      (await store.listCandidates('app-chart'))!.candidates.find((c) => c.id === candidateId)?.status

    const seed = async (n = 3) => {
      await store.upsertMigration(definition(), candidates(n))
    }

    describe('migrations', () => {
      test('creates a migration with a createdAt timestamp and zero counts', async () => {
        const before = Date.now()
        const record = await store.upsertMigration(definition())
        expect(record.id).toBe('app-chart')
        expect(Date.parse(record.createdAt)).toBeGreaterThanOrEqual(before - 1000)
        const got = await store.getMigration('app-chart')
        expect(got).toMatchObject({
          id: 'app-chart',
          name: 'App chart',
          description: 'Move to per-app charts',
          workerUrl: 'http://127.0.0.1:9/worker',
        })
        expect(got?.steps.map((s) => s.name)).toEqual(['update-chart', 'open-pr'])
        expect(got?.steps[0]?.config).toEqual({ chart: 'app' })
        expect(got?.counts).toEqual({ not_started: 0, queued: 0, running: 0, completed: 0, failed: 0 })
        expect(got?.cancelledAttempts).toEqual([])
      })

      test('returns undefined for an unknown migration', async () => {
        expect(await store.getMigration('nope')).toBeUndefined()
        expect(await store.listCandidates('nope')).toBeUndefined()
        expect(await store.getCandidate('nope', 'svc-0')).toBeUndefined()
      })

      test('upsert replaces name, description, steps and workerUrl but keeps createdAt, runs and cancelled attempts', async () => {
        await seed()
        const first = (await store.getMigration('app-chart'))!
        await bring('svc-0', 'running')
        await bring('svc-1', 'queued')
        expect((await move('svc-1', 'cancel')).ok).toBe(true)
        await new Promise((r) => setTimeout(r, 5))
        const { description: _d, workerUrl: _w, ...bare } = definition('app-chart', 'Renamed')
        await store.upsertMigration({ ...bare, steps: [{ name: 'only', workerApp: 'other' }] })
        const got = (await store.getMigration('app-chart'))!
        expect(got.name).toBe('Renamed')
        expect(got.description).toBeUndefined()
        expect(got.workerUrl).toBeUndefined()
        expect(got.steps).toEqual([{ name: 'only', workerApp: 'other' }])
        expect(got.createdAt).toBe(first.createdAt)
        expect(got.counts).toEqual({ not_started: 2, queued: 0, running: 1, completed: 0, failed: 0 })
        expect(got.cancelledAttempts.map((a) => a.candidateId)).toEqual(['svc-1'])
      })

      test('upsert with candidates replaces the candidate list in the same call', async () => {
        await seed(3)
        await store.upsertMigration(definition(), [{ id: 'new-one' }])
        const page = (await store.listCandidates('app-chart'))!
        expect(page.candidates.map((c) => c.id)).toEqual(['new-one'])
      })

      test('a claimant owns a new migration; another claimant changes nothing; no claimant keeps the owner', async () => {
        const created = await store.upsertMigration(definition(), candidates(2), 'team-a')
        expect(created.owner).toBe('team-a')
        const refused = await store.upsertMigration(definition('app-chart', 'Taken over'), [], 'team-b')
        expect(refused.owner).toBe('team-a')
        const after = (await store.getMigration('app-chart'))!
        expect(after.name).toBe('App chart')
        expect(after.owner).toBe('team-a')
        expect((await store.listCandidates('app-chart'))!.total).toBe(2)
        // The owner re-announcing, and an operator (no claimant), both change it; the owner stays.
        expect((await store.upsertMigration(definition('app-chart', 'By owner'), undefined, 'team-a')).owner).toBe('team-a')
        const byOperator = await store.upsertMigration(definition('app-chart', 'By operator'))
        expect(byOperator.owner).toBe('team-a')
        expect((await store.getMigration('app-chart'))!.name).toBe('By operator')
      })

      test('a migration without an owner is claimed by the first claimant, and the claim lasts', async () => {
        expect((await store.upsertMigration(definition())).owner).toBeUndefined()
        expect((await store.getMigration('app-chart'))!.owner).toBeUndefined()
        expect((await store.upsertMigration(definition(), undefined, 'team-a')).owner).toBe('team-a')
        expect((await store.upsertMigration(definition(), undefined, 'team-b')).owner).toBe('team-a')
        expect((await store.listMigrations()).find((m) => m.id === 'app-chart')?.owner).toBe('team-a')
      })

      test('of two claimants announcing a new migration at once, exactly one owns it', async () => {
        const results = await Promise.all(
          ['team-a', 'team-b', 'team-c', 'team-d'].map((claimant) =>
            store.upsertMigration(definition('app-chart', claimant), candidates(1), claimant),
          ),
        )
        const owner = (await store.getMigration('app-chart'))!.owner
        expect(results.every((r) => r.owner === owner)).toBe(true)
        expect((await store.getMigration('app-chart'))!.name).toBe(owner)
      })

      test('lists migrations oldest first with their counts', async () => {
        await store.upsertMigration(definition('first'))
        await new Promise((r) => setTimeout(r, 5))
        await store.upsertMigration(definition('second'), candidates(2))
        const list = await store.listMigrations()
        const ours = list.filter((m) => m.id === 'first' || m.id === 'second')
        expect(ours.map((m) => m.id)).toEqual(['first', 'second'])
        expect(ours[1]?.counts).toEqual({ not_started: 2, queued: 0, running: 0, completed: 0, failed: 0 })
      })

      test('deletes a migration with its candidates and runs', async () => {
        await seed()
        await bring('svc-0', 'completed')
        expect(await store.deleteMigration('app-chart')).toBe('deleted')
        expect(await store.getMigration('app-chart')).toBeUndefined()
        expect(await store.deleteMigration('app-chart')).toBe('not_found')
        await store.upsertMigration(definition())
        expect((await store.listCandidates('app-chart'))!.total).toBe(0)
      })

      test('refuses to delete a migration while a candidate is running', async () => {
        await seed()
        await bring('svc-0', 'running')
        expect(await store.deleteMigration('app-chart')).toBe('running')
        expect(await store.getMigration('app-chart')).toBeDefined()
      })
    })

    describe('candidates', () => {
      test('returns false when replacing candidates of an unknown migration', async () => {
        expect(await store.replaceCandidates('nope', candidates(1))).toBe(false)
      })

      test('lists candidates in submission order joined with their status and run id', async () => {
        await seed(4)
        await bring('svc-1', 'queued')
        await bring('svc-2', 'running')
        await bring('svc-3', 'completed')
        const page = (await store.listCandidates('app-chart'))!
        expect(page.total).toBe(4)
        expect(page.candidates.map((c) => [c.id, c.status, c.runId])).toEqual([
          ['svc-0', 'not_started', undefined],
          ['svc-1', 'queued', 'app-chart__svc-1'],
          ['svc-2', 'running', 'app-chart__svc-2'],
          ['svc-3', 'completed', 'app-chart__svc-3'],
        ])
        expect(page.candidates[0]).toMatchObject({ kind: 'application', metadata: { team: 'payments', repoName: 'acme/svc-0' } })
        expect((await store.getMigration('app-chart'))!.counts).toEqual({ not_started: 1, queued: 1, running: 1, completed: 1, failed: 0 })
      })

      test('keeps queued, running and completed candidates that a new list omits, and drops the others', async () => {
        await seed(5)
        await bring('svc-1', 'queued')
        await bring('svc-2', 'running')
        await bring('svc-3', 'completed')
        await bring('svc-4', 'queued')
        expect((await move('svc-4', 'dequeue')).ok).toBe(true)
        expect(await store.replaceCandidates('app-chart', [{ id: 'fresh' }, { id: 'svc-2', kind: 'updated' }])).toBe(true)
        const page = (await store.listCandidates('app-chart'))!
        expect(page.candidates.map((c) => [c.id, c.status])).toEqual([
          ['fresh', 'not_started'],
          ['svc-2', 'running'],
          ['svc-1', 'queued'],
          ['svc-3', 'completed'],
        ])
        expect(page.candidates[1]?.kind).toBe('updated')
      })

      test('filters by status and by text in the id or metadata values, case-insensitively, and pages with a total', async () => {
        await store.upsertMigration(definition(), [
          { id: 'billing-api', metadata: { team: 'Payments' } },
          { id: 'search-api', metadata: { team: 'search' } },
          { id: 'ledger', metadata: { owner: 'payments-core' } },
          { id: 'frontend' },
        ])
        await bring('ledger', 'queued')
        const ids = async (query: Parameters<MigrationStore['listCandidates']>[1]) =>
          (await store.listCandidates('app-chart', query))!.candidates.map((c) => c.id)
        expect(await ids({ q: 'PAYMENTS' })).toEqual(['billing-api', 'ledger'])
        expect(await ids({ q: 'api' })).toEqual(['billing-api', 'search-api'])
        expect(await ids({ status: 'queued' })).toEqual(['ledger'])
        expect(await ids({ status: 'not_started', q: 'payments' })).toEqual(['billing-api'])
        const page = (await store.listCandidates('app-chart', { limit: 2, offset: 1 }))!
        expect(page.candidates.map((c) => c.id)).toEqual(['search-api', 'ledger'])
        expect(page.total).toBe(4)
        expect((await store.listCandidates('app-chart', { status: 'running' }))!.total).toBe(0)
      })

      test('round-trips metadata with quotes, backslashes, unicode and long values byte for byte', async () => {
        const tricky = {
          quote: `it's "quoted"`,
          backslash: 'C:\\path\\to\\file \\n not a newline',
          unicode: 'naïve café — 日本語 🚀 \u0000'.replace('\u0000', ''),
          sql: "'); DROP TABLE migrations; --",
          long: 'x'.repeat(64 * 1024),
        }
        await store.upsertMigration(definition(), [{ id: 'svc-0', metadata: tricky, state: { json: '{"a":[1,2]}' } }])
        const got = await store.getCandidate('app-chart', 'svc-0')
        expect(got?.candidate.metadata).toEqual(tricky)
        expect(got?.candidate.state).toEqual({ json: '{"a":[1,2]}' })
      })

      test('returns copies: changing a returned record does not change the store', async () => {
        await seed(1)
        const got = await store.getCandidate('app-chart', 'svc-0')
        got!.candidate.metadata!.team = 'changed'
        const page = (await store.listCandidates('app-chart'))!
        page.candidates[0]!.metadata!.team = 'changed'
        expect((await store.getCandidate('app-chart', 'svc-0'))!.candidate.metadata!.team).toBe('payments')
      })
    })

    describe('transitions', () => {
      for (const [action, row] of Object.entries(TRANSITIONS) as Array<[StatusAction, (typeof TRANSITIONS)[StatusAction]]>) {
        for (const from of STATUSES) {
          const expected = row[from]
          const outcome = expected === REFUSED ? 'is refused with the current status' : `leaves ${expected.status} (run ${expected.state})`
          test(`${action} from ${from} ${outcome}`, async () => {
            await seed(1)
            await bring('svc-0', from)
            const before = (await store.getCandidate('app-chart', 'svc-0'))!.run
            const result = await move('svc-0', action)
            const after = (await store.getCandidate('app-chart', 'svc-0'))!.run
            if (expected === REFUSED) {
              expect(result).toMatchObject({ ok: false, reason: 'conflict', status: from })
              expect(await statusOf('svc-0')).toBe(from)
              expect(after).toEqual(before)
            } else {
              expect(result.ok).toBe(true)
              if (result.ok) expect(result.previous).toBe(from)
              expect(await statusOf('svc-0')).toBe(expected.status)
              expect(after?.state).toBe(expected.state)
              // Only a queue starts a new attempt; every other change stays in the attempt it found.
              if (before) expect(after?.attempt).toBe(before.attempt)
            }
          })
        }
      }

      test('answers not_found for an unknown candidate or migration', async () => {
        await seed(1)
        expect(await move('ghost', 'queue')).toEqual({ ok: false, reason: 'not_found' })
        expect(await store.transition({ migrationId: 'nope', candidateId: 'svc-0', action: 'queue', at: at() })).toEqual({
          ok: false,
          reason: 'not_found',
        })
      })

      test('of 100 concurrent queue calls for one candidate exactly one succeeds', async () => {
        await seed(1)
        const results = await Promise.all(Array.from({ length: 100 }, () => move('svc-0', 'queue')))
        expect(results.filter((r) => r.ok)).toHaveLength(1)
        expect(results.filter((r) => !r.ok && r.reason === 'conflict')).toHaveLength(99)
        expect(await statusOf('svc-0')).toBe('queued')
      })

      test('of concurrent execute and dequeue on a queued run exactly one succeeds', async () => {
        await seed(1)
        await bring('svc-0', 'queued')
        const [execute, dequeue] = await Promise.all([move('svc-0', 'execute'), move('svc-0', 'dequeue')])
        expect([execute.ok, dequeue.ok].filter(Boolean)).toHaveLength(1)
        expect(await statusOf('svc-0')).toBe(execute.ok ? 'running' : 'not_started')
      })

      test('starts a new, larger attempt each time a candidate is queued from not_started, with no steps', async () => {
        await seed(1)
        const first = await move('svc-0', 'queue')
        expect(first.ok).toBe(true)
        if (!first.ok) return
        expect(first.run).toMatchObject({
          runId: 'app-chart__svc-0',
          migrationId: 'app-chart',
          candidateId: 'svc-0',
          state: 'queued',
          currentStep: 0,
          steps: [],
        })
        await move('svc-0', 'execute')
        await store.recordStep({
          migrationId: 'app-chart',
          candidateId: 'svc-0',
          result: result('update-chart', false),
          done: true,
          at: at(),
        })
        await move('svc-0', 'fail')
        const second = await move('svc-0', 'queue')
        expect(second.ok).toBe(true)
        if (!second.ok) return
        expect(second.run.attempt).toBeGreaterThan(first.run.attempt)
        expect(second.run.steps).toEqual([])
        expect(second.run.startedAt).toBeUndefined()
      })

      test('keeps the attempt when an execute is undone (running back to queued)', async () => {
        await seed(1)
        await bring('svc-0', 'running')
        const before = (await store.getCandidate('app-chart', 'svc-0'))!.run!
        expect(before.startedAt).toBeDefined()
        const undone = await move('svc-0', 'unexecute', { attempt: before.attempt })
        expect(undone.ok).toBe(true)
        if (undone.ok) expect(undone.run.attempt).toBe(before.attempt)
        expect(await statusOf('svc-0')).toBe('queued')
      })

      test('applies a transition guarded by an attempt only to that attempt', async () => {
        await seed(1)
        await bring('svc-0', 'running')
        const run = (await store.getCandidate('app-chart', 'svc-0'))!.run!
        expect(await move('svc-0', 'complete', { attempt: run.attempt + 1000 })).toMatchObject({
          ok: false,
          reason: 'conflict',
          status: 'running',
        })
        expect(await statusOf('svc-0')).toBe('running')
        expect((await move('svc-0', 'complete', { attempt: run.attempt })).ok).toBe(true)
      })

      test('records a cancelled attempt with the cancel, atomically', async () => {
        await seed(2)
        await bring('svc-0', 'running')
        await bring('svc-1', 'queued')
        const cancelledAt = '2026-01-02T03:04:05.000Z'
        expect((await move('svc-0', 'cancel', { at: cancelledAt })).ok).toBe(true)
        expect((await move('svc-1', 'cancel')).ok).toBe(true)
        expect((await move('svc-1', 'cancel')).ok).toBe(false)
        const attempts = (await store.getMigration('app-chart'))!.cancelledAttempts
        expect(attempts).toHaveLength(2)
        const { attempt } = (await store.getCandidate('app-chart', 'svc-0'))!.run!
        expect(attempts[0]).toEqual({
          runId: 'app-chart__svc-0',
          candidateId: 'svc-0',
          cancelledAt,
          attempt,
          cancelledBy: { kind: 'system', name: 'loom' },
        })
        expect(attempts[1]?.runId).toBe('app-chart__svc-1')
      })

      test('keeps the outcome of the last attempt after a failure or cancel (status not_started)', async () => {
        await seed(1)
        await bring('svc-0', 'running')
        await store.recordStep({
          migrationId: 'app-chart',
          candidateId: 'svc-0',
          result: result('update-chart', false),
          done: true,
          at: at(),
        })
        await move('svc-0', 'fail')
        const found = await store.getCandidate('app-chart', 'svc-0')
        expect(found?.run?.state).toBe('failed')
        expect(found?.run?.steps.map((s) => [s.result.stepName, s.result.success, s.done])).toEqual([['update-chart', false, true]])
        expect(await statusOf('svc-0')).toBe('not_started')
      })
    })

    describe('steps', () => {
      const record = (
        stepName: string,
        success: boolean,
        done: boolean,
        extra: { attempt?: number; metadata?: Record<string, string> } = {},
      ) =>
        store.recordStep({
          migrationId: 'app-chart',
          candidateId: 'svc-0',
          result: result(stepName, success, extra.metadata),
          done,
          at: at(),
          ...(extra.attempt === undefined ? {} : { attempt: extra.attempt }),
        })

      test('refuses step reports for a run that is not running', async () => {
        await seed(1)
        expect(await record('update-chart', true, true)).toEqual({ outcome: 'not_running', status: 'not_started' })
        await bring('svc-0', 'queued')
        const { attempt } = (await store.getCandidate('app-chart', 'svc-0'))!.run!
        expect(await record('update-chart', true, true)).toEqual({ outcome: 'not_running', status: 'queued', attempt })
        expect(
          await store.recordStep({ migrationId: 'app-chart', candidateId: 'ghost', result: result('x', true), done: true, at: at() }),
        ).toEqual({ outcome: 'not_found' })
      })

      test('records a final outcome once; the same outcome again is a duplicate, a different one is refused', async () => {
        await seed(1)
        await bring('svc-0', 'running')
        expect((await record('update-chart', true, true, { metadata: { prUrl: 'u1' } })).outcome).toBe('recorded')
        expect((await record('update-chart', true, true, { metadata: { prUrl: 'u2' } })).outcome).toBe('duplicate')
        expect((await record('update-chart', false, true)).outcome).toBe('step_ended')
        expect((await record('update-chart', false, false)).outcome).toBe('step_ended')
        const run = (await store.getCandidate('app-chart', 'svc-0'))!.run!
        expect(run.steps).toHaveLength(1)
        expect(run.steps[0]?.result.metadata).toEqual({ prUrl: 'u1' })
      })

      test('replaces progress with later progress and then with the final outcome, keeping report order', async () => {
        await seed(1)
        await bring('svc-0', 'running')
        expect((await record('update-chart', false, false, { metadata: { phase: 'open', prUrl: 'u' } })).outcome).toBe('recorded')
        expect((await record('open-pr', false, false, { metadata: { phase: 'in_progress' } })).outcome).toBe('recorded')
        expect((await record('update-chart', false, false, { metadata: { phase: 'open', prUrl: 'u2' } })).outcome).toBe('recorded')
        expect((await record('update-chart', true, true, { metadata: { phase: 'merged' } })).outcome).toBe('recorded')
        const run = (await store.getCandidate('app-chart', 'svc-0'))!.run!
        expect(run.steps.map((s) => [s.result.stepName, s.done, s.result.metadata?.phase])).toEqual([
          ['update-chart', true, 'merged'],
          ['open-pr', false, 'in_progress'],
        ])
      })

      test('of concurrent identical final reports exactly one is recorded', async () => {
        await seed(1)
        await bring('svc-0', 'running')
        const outcomes = await Promise.all(Array.from({ length: 20 }, () => record('update-chart', true, true)))
        expect(outcomes.filter((o) => o.outcome === 'recorded')).toHaveLength(1)
        expect(outcomes.filter((o) => o.outcome === 'duplicate')).toHaveLength(19)
      })

      test('guards step reports and the step in flight by attempt', async () => {
        await seed(1)
        await bring('svc-0', 'running')
        const run: RunRecord = (await store.getCandidate('app-chart', 'svc-0'))!.run!
        expect(await record('update-chart', true, true, { attempt: run.attempt + 1000 })).toEqual({
          outcome: 'not_running',
          status: 'running',
          attempt: run.attempt,
        })
        const mark = (attempt: number, index: number, phase: 'begun' | 'dispatched' = 'begun') =>
          store.markStep({ migrationId: 'app-chart', candidateId: 'svc-0', attempt, index, phase, at: at() })
        expect(await mark(run.attempt + 1000, 1)).toBe(false)
        expect(await mark(run.attempt, 1)).toBe(true)
        expect((await store.getCandidate('app-chart', 'svc-0'))!.run!.currentStep).toBe(1)
        await move('svc-0', 'complete')
        expect(await mark(run.attempt, 0)).toBe(false)
      })

      test('marks the step in flight begun (keeping its start when begun again) and dispatched once, at that step only', async () => {
        await seed(1)
        await bring('svc-0', 'running')
        const { attempt } = (await store.getCandidate('app-chart', 'svc-0'))!.run!
        const mark = (index: number, phase: 'begun' | 'dispatched', when: string) =>
          store.markStep({ migrationId: 'app-chart', candidateId: 'svc-0', attempt, index, phase, at: when })
        const run = async () => (await store.getCandidate('app-chart', 'svc-0'))!.run!
        expect(await mark(0, 'begun', '2026-01-01T00:00:00.000Z')).toBe(true)
        expect(await run()).toMatchObject({ currentStep: 0, stepStartedAt: '2026-01-01T00:00:00.000Z' })
        expect((await run()).stepDispatchedAt).toBeUndefined()
        // Begun again (a run resumed after a restart): its deadline still counts from the first start.
        expect(await mark(0, 'begun', '2026-01-01T00:05:00.000Z')).toBe(true)
        expect((await run()).stepStartedAt).toBe('2026-01-01T00:00:00.000Z')
        expect(await mark(1, 'dispatched', '2026-01-01T00:06:00.000Z')).toBe(false)
        expect(await mark(0, 'dispatched', '2026-01-01T00:06:00.000Z')).toBe(true)
        expect(await mark(0, 'dispatched', '2026-01-01T00:07:00.000Z')).toBe(true)
        expect((await run()).stepDispatchedAt).toBe('2026-01-01T00:06:00.000Z')
        // The next step starts afresh: its own start, not dispatched yet.
        expect(await mark(1, 'begun', '2026-01-01T00:08:00.000Z')).toBe(true)
        expect(await run()).toMatchObject({ currentStep: 1, stepStartedAt: '2026-01-01T00:08:00.000Z' })
        expect((await run()).stepDispatchedAt).toBeUndefined()
      })

      test('stores the owner Execute names, and drops it with the step bookkeeping when the run ends', async () => {
        await seed(1)
        await move('svc-0', 'queue')
        const executed = await move('svc-0', 'execute', { owner: 'api-0' })
        expect(executed.ok && executed.run.owner).toBe('api-0')
        const { attempt } = (await store.getCandidate('app-chart', 'svc-0'))!.run!
        await store.markStep({ migrationId: 'app-chart', candidateId: 'svc-0', attempt, index: 0, phase: 'begun', at: at() })
        await move('svc-0', 'complete')
        const ended = (await store.getCandidate('app-chart', 'svc-0'))!.run!
        expect([ended.owner, ended.stepStartedAt, ended.stepDispatchedAt]).toEqual([undefined, undefined, undefined])
      })

      test('carries the steps that succeeded in the previous attempt into an Execute with resume, and only then', async () => {
        await seed(2)
        const runOf = async (id: string) => (await store.getCandidate('app-chart', id))!.run!
        for (const id of ['svc-0', 'svc-1']) {
          await bring(id, 'running')
          const reportFor = (stepName: string, success: boolean) =>
            store.recordStep({
              migrationId: 'app-chart',
              candidateId: id,
              result: { ...result(stepName, success), candidate: { id } },
              done: true,
              at: at(),
            })
          await reportFor('update-chart', true)
          await reportFor('open-pr', false)
          await move(id, 'fail')
        }
        const failed = await runOf('svc-0')
        // Queued again: the new attempt has no steps, and knows what a resume would carry.
        await move('svc-0', 'queue')
        const queued = await runOf('svc-0')
        expect(queued.steps).toEqual([])
        expect(queued.resumable?.map((s) => [s.result.stepName, s.result.success, s.carriedFrom])).toEqual([
          ['update-chart', true, failed.attempt],
        ])
        const resumed = await move('svc-0', 'execute', { resume: true })
        expect(resumed.ok).toBe(true)
        const running = await runOf('svc-0')
        expect(running.currentStep).toBe(0)
        expect(running.steps.map((s) => [s.result.stepName, s.done, s.result.success, s.carriedFrom])).toEqual([
          ['update-chart', true, true, failed.attempt],
        ])
        // A report of the carried step in the new attempt is the same outcome: nothing changes.
        const again = await store.recordStep({
          migrationId: 'app-chart',
          candidateId: 'svc-0',
          result: result('update-chart', true),
          done: true,
          at: at(),
        })
        expect(again.outcome).toBe('duplicate')
        // Undoing the execute forgets what it carried.
        const undone = await move('svc-0', 'unexecute', { attempt: running.attempt })
        expect(undone.ok && [undone.run.currentStep, undone.run.steps]).toEqual([0, []])
        // Without resume, Execute starts at step 1 with nothing carried.
        await move('svc-1', 'queue')
        await move('svc-1', 'execute')
        expect(await runOf('svc-1')).toMatchObject({ currentStep: 0, steps: [] })
      })

      test('keeps what a resume would carry across a dequeue or a cancel before the run started', async () => {
        await seed(1)
        await bring('svc-0', 'running')
        await store.recordStep({
          migrationId: 'app-chart',
          candidateId: 'svc-0',
          result: result('update-chart', true),
          done: true,
          at: at(),
        })
        await move('svc-0', 'cancel')
        const cancelled = (await store.getCandidate('app-chart', 'svc-0'))!.run!
        await move('svc-0', 'queue')
        await move('svc-0', 'dequeue')
        await move('svc-0', 'queue')
        await move('svc-0', 'cancel')
        await move('svc-0', 'queue')
        const queued = (await store.getCandidate('app-chart', 'svc-0'))!.run!
        expect(queued.resumable?.map((s) => [s.result.stepName, s.carriedFrom])).toEqual([['update-chart', cancelled.attempt]])
      })

      test('lets a process claim the running runs whose owner has no live lease, each run once', async () => {
        await seed(6)
        const t0 = Date.parse('2026-01-01T00:00:00.000Z')
        const iso = (ms: number) => new Date(t0 + ms).toISOString()
        await store.renewLease('alive', iso(60_000))
        await store.renewLease('lapsed', iso(10_000))
        const owners = ['alive', 'lapsed', 'lapsed', 'never-leased', undefined]
        for (const [i, owner] of owners.entries()) {
          await move(`svc-${i}`, 'queue')
          await move(`svc-${i}`, 'execute', owner === undefined ? {} : { owner })
        }
        await bring('svc-5', 'queued') // not running: never claimed
        // Claimers renew their own lease first, as the reconciler does: a run claimed by a process without one is claimable again.
        for (const owner of ['api-1', 'api-2', 'api-3']) await store.renewLease(owner, iso(35_000))
        const claim = (owner: string, limit: number) => store.claimRuns({ owner, at: iso(30_000), limit })
        const first = await claim('api-1', 2)
        const second = await claim('api-2', 10)
        const third = await claim('api-3', 10)
        const taken = [...first, ...second].map((r) => r.candidateId).sort()
        expect(first).toHaveLength(2)
        expect(taken).toEqual(['svc-1', 'svc-2', 'svc-3', 'svc-4'])
        expect(third).toEqual([])
        for (const run of first) expect(run.owner).toBe('api-1')
        expect((await store.getCandidate('app-chart', 'svc-0'))!.run!.owner).toBe('alive')
        expect((await store.getCandidate('app-chart', second[0]!.candidateId))!.run!.owner).toBe('api-2')
        // Once the claimers' leases lapse in turn, their runs are free again.
        const later = await store.claimRuns({ owner: 'api-3', at: iso(40_000), limit: 10 })
        expect(later.map((r) => r.candidateId).sort()).toEqual(taken)
      })

      test('of concurrent claims each run goes to exactly one process', async () => {
        await seed(20)
        for (let i = 0; i < 20; i++) {
          await move(`svc-${i}`, 'queue')
          await move(`svc-${i}`, 'execute', { owner: 'gone' })
        }
        for (const owner of ['a', 'b', 'c', 'd']) await store.renewLease(owner, new Date(Date.now() + 60_000).toISOString())
        const claims = await Promise.all(['a', 'b', 'c', 'd'].map((owner) => store.claimRuns({ owner, at: at(), limit: 20 })))
        const ids = claims.flat().map((r) => r.candidateId)
        expect(ids.sort()).toEqual(Array.from({ length: 20 }, (_, i) => `svc-${i}`).sort())
        for (const [i, claimed] of claims.entries()) for (const run of claimed) expect(run.owner).toBe(['a', 'b', 'c', 'd'][i])
      })

      test('lists running runs across migrations', async () => {
        await seed(3)
        await store.upsertMigration(definition('other'), candidates(1))
        await bring('svc-0', 'running')
        await bring('svc-1', 'queued')
        await store.transition({ migrationId: 'other', candidateId: 'svc-0', action: 'queue', at: at() })
        await store.transition({ migrationId: 'other', candidateId: 'svc-0', action: 'execute', at: at() })
        const running = await store.listRuns('running')
        expect(running.map((r) => joinRunId(r.migrationId, r.candidateId)).sort()).toEqual(['app-chart__svc-0', 'other__svc-0'])
        expect((await store.listRuns('queued')).map((r) => r.runId)).toEqual(['app-chart__svc-1'])
      })
    })

    describe('last attempts', () => {
      const alice: Actor = { kind: 'operator', name: 'alice' }
      const teamA: Actor = { kind: 'worker', name: 'team-a' }
      const report = (candidateId: string, stepName: string, success: boolean, by: Actor, metadata?: Record<string, string>) =>
        store.recordStep({ migrationId: 'app-chart', candidateId, result: result(stepName, success, metadata), done: true, at: at(), by })
      const listed = async (query: Parameters<MigrationStore['listCandidates']>[1] = {}) =>
        (await store.listCandidates('app-chart', query))!
      const attemptOf = async (candidateId: string) => (await store.getCandidate('app-chart', candidateId))!.run!.attempt

      /** svc-0 failed (a worker's report), svc-1 rejected (an operator's review), svc-2 cancelled, svc-3 dequeued, svc-4 completed. */
      const endFive = async () => {
        await seed(6)
        for (const id of ['svc-0', 'svc-1', 'svc-2', 'svc-4']) await bring(id, 'running')
        await bring('svc-3', 'queued')
        expect((await report('svc-0', 'update-chart', false, teamA, { error: 'chart not found', prUrl: 'https://x/1' })).outcome).toBe(
          'recorded',
        )
        expect((await move('svc-0', 'fail')).ok).toBe(true)
        expect((await report('svc-1', 'update-chart', false, alice, { review: 'rejected', note: 'wrong team' })).outcome).toBe('recorded')
        expect((await move('svc-1', 'fail')).ok).toBe(true)
        expect((await move('svc-2', 'cancel', { by: alice, reason: 'freeze' })).ok).toBe(true)
        expect((await move('svc-3', 'dequeue', { by: teamA })).ok).toBe(true)
        expect((await move('svc-4', 'complete')).ok).toBe(true)
      }

      test('says how each attempt that did not complete ended, who ended it and why; the status stays not_started', async () => {
        await endFive()
        const { candidates: all } = await listed()
        const byId = new Map(all.map((c) => [c.id, c]))
        expect(byId.get('svc-0')).toMatchObject({ status: 'not_started' })
        expect(byId.get('svc-0')!.lastAttempt).toEqual({
          attempt: await attemptOf('svc-0'),
          outcome: 'failed',
          at: expect.any(String),
          by: teamA,
          step: 'update-chart',
          error: 'chart not found',
        })
        expect(byId.get('svc-1')!.lastAttempt).toMatchObject({ outcome: 'rejected', by: alice, step: 'update-chart', reason: 'wrong team' })
        expect(byId.get('svc-2')!.lastAttempt).toEqual({
          attempt: await attemptOf('svc-2'),
          outcome: 'cancelled',
          at: expect.any(String),
          by: alice,
          reason: 'freeze',
        })
        expect(byId.get('svc-3')!.lastAttempt).toMatchObject({ outcome: 'dequeued', by: teamA })
        for (const id of ['svc-4', 'svc-5']) expect(byId.get(id)!.lastAttempt).toBeUndefined()
        expect(byId.get('svc-4')!.status).toBe('completed')
        expect((await store.getCandidate('app-chart', 'svc-0'))!.run!.lastAttempt).toEqual(byId.get('svc-0')!.lastAttempt)
        // A failure with no report behind it is Loom's own.
        await bring('svc-5', 'running')
        expect((await move('svc-5', 'fail')).ok).toBe(true)
        expect((await store.getCandidate('app-chart', 'svc-5'))!.run!.lastAttempt).toEqual({
          attempt: await attemptOf('svc-5'),
          outcome: 'failed',
          at: expect.any(String),
          by: SYSTEM_ACTOR,
        })
      })

      test('filters by last outcome, and counts failures as a subset of not_started', async () => {
        await endFive()
        for (const [outcome, ids] of [
          ['failed', ['svc-0']],
          ['rejected', ['svc-1']],
          ['cancelled', ['svc-2']],
          ['dequeued', ['svc-3']],
        ] as const) {
          const page = await listed({ lastOutcome: outcome })
          expect(page.candidates.map((c) => c.id)).toEqual(ids)
          expect(page.total).toBe(ids.length)
        }
        expect((await listed({ lastOutcome: 'failed', status: 'queued' })).total).toBe(0)
        expect((await listed({ lastOutcome: 'cancelled', q: 'SVC-2' })).candidates.map((c) => c.id)).toEqual(['svc-2'])
        expect((await store.getMigration('app-chart'))!.counts).toEqual({ not_started: 5, queued: 0, running: 0, completed: 1, failed: 1 })
        expect((await store.listMigrations())[0]!.counts.failed).toBe(1)
      })

      test('forgets the last attempt once the candidate is queued again', async () => {
        await endFive()
        await bring('svc-0', 'queued')
        const svc0 = (await listed({ q: 'svc-0' })).candidates[0]!
        expect(svc0).toMatchObject({ status: 'queued', runId: 'app-chart__svc-0' })
        expect(svc0.lastAttempt).toBeUndefined()
        expect((await store.getCandidate('app-chart', 'svc-0'))!.run!.lastAttempt).toBeUndefined()
        expect((await listed({ lastOutcome: 'failed' })).total).toBe(0)
        expect((await store.getMigration('app-chart'))!.counts.failed).toBe(0)
      })

      test('keeps who reported each step, and a step Loom recorded has no reporter', async () => {
        await seed(1)
        await bring('svc-0', 'running')
        await report('svc-0', 'update-chart', true, teamA)
        await store.recordStep({ migrationId: 'app-chart', candidateId: 'svc-0', result: result('open-pr', true), done: false, at: at() })
        const [reported, recorded] = (await store.getCandidate('app-chart', 'svc-0'))!.run!.steps
        expect(reported!.by).toEqual(teamA)
        expect(recorded!.by).toBeUndefined()
      })
    })

    describe('kept counts, cursors and versions', () => {
      const list = async (query: Parameters<MigrationStore['listCandidates']>[1] = {}) => (await store.listCandidates('app-chart', query))!
      const report = (candidateId: string, success: boolean) =>
        store.recordStep({ migrationId: 'app-chart', candidateId, result: result('update-chart', success), done: true, at: at() })

      /** The counts and every filter's total, as the store keeps them, against counting the whole list by hand. */
      const expectCountsKept = async () => {
        const all = (await list()).candidates
        const counted = { not_started: 0, queued: 0, running: 0, completed: 0, failed: 0 }
        for (const c of all) {
          counted[c.status]++
          if (c.lastAttempt?.outcome === 'failed') counted.failed++
        }
        expect((await store.getMigration('app-chart'))!.counts).toEqual(counted)
        expect((await store.listMigrations()).find((m) => m.id === 'app-chart')!.counts).toEqual(counted)
        for (const status of STATUSES) {
          expect((await list({ status, limit: 1 })).total, status).toBe(all.filter((c) => c.status === status).length)
        }
        for (const lastOutcome of ['failed', 'rejected', 'cancelled', 'dequeued'] as const) {
          const matching = all.filter((c) => c.lastAttempt?.outcome === lastOutcome).length
          expect((await list({ lastOutcome, limit: 1 })).total, lastOutcome).toBe(matching)
          expect((await list({ lastOutcome, status: 'not_started', limit: 1 })).total).toBe(matching)
          expect((await list({ lastOutcome, status: 'queued', limit: 1 })).total).toBe(0)
        }
        expect((await list({ limit: 1 })).total).toBe(all.length)
      }

      test('keeps the counts and totals through every transition, rewrite and announce, equal to counting the list', async () => {
        await seed(8)
        await expectCountsKept()
        await bring('svc-0', 'completed')
        await bring('svc-1', 'running')
        await bring('svc-2', 'queued')
        await expectCountsKept()
        expect((await report('svc-1', false)).outcome).toBe('recorded')
        expect((await move('svc-1', 'fail')).ok).toBe(true)
        expect((await move('svc-2', 'dequeue')).ok).toBe(true)
        await bring('svc-3', 'running')
        expect((await move('svc-3', 'cancel')).ok).toBe(true)
        await bring('svc-4', 'running')
        expect((await move('svc-4', 'unexecute')).ok).toBe(true)
        await expectCountsKept()
        expect((await move('svc-0', 'queue')).ok).toBe(false)
        await expectCountsKept()
        // A new list drops svc-1 (failed) and svc-2 (dequeued), keeps the queued and completed ones, adds two.
        expect(await store.replaceCandidates('app-chart', [{ id: 'svc-3' }, { id: 'new-a' }, { id: 'new-b' }])).toBe(true)
        await expectCountsKept()
        expect((await store.getMigration('app-chart'))!.counts).toEqual({ not_started: 3, queued: 1, running: 0, completed: 1, failed: 0 })
        await bring('new-a', 'queued')
        await store.upsertMigration(definition(), [...candidates(2), { id: 'new-a' }])
        await expectCountsKept()
        await store.upsertMigration(definition('app-chart', 'Renamed'))
        await expectCountsKept()
        expect((await move('new-a', 'queue')).ok).toBe(false)
        expect((await move('new-a', 'execute')).ok).toBe(true)
        expect((await move('new-a', 'fail')).ok).toBe(true)
        await expectCountsKept()
        expect((await store.getMigration('app-chart'))!.counts.failed).toBe(1)
      })

      test('keeps the counts exact when transitions race each other and a rewrite of the list', async () => {
        await seed(30)
        for (let i = 0; i < 10; i++) await bring(`svc-${i}`, 'queued')
        const moves = [
          ...Array.from({ length: 10 }, (_, i) => move(`svc-${i}`, 'execute')),
          ...Array.from({ length: 10 }, (_, i) => move(`svc-${i + 10}`, 'queue')),
          store.replaceCandidates('app-chart', candidates(25)),
          ...Array.from({ length: 5 }, (_, i) => move(`svc-${i + 20}`, 'queue')),
        ]
        await Promise.all(moves)
        await expectCountsKept()
      })

      test('pages by cursor after a candidate, with or without filters, the cursor itself need not match', async () => {
        await seed(7)
        await bring('svc-1', 'queued')
        await bring('svc-4', 'queued')
        await bring('svc-6', 'queued')
        const ids = (page: { candidates: { id: string }[] }) => page.candidates.map((c) => c.id)
        expect(ids(await list({ after: 'svc-2', limit: 3 }))).toEqual(['svc-3', 'svc-4', 'svc-5'])
        expect(ids(await list({ after: 'svc-5' }))).toEqual(['svc-6'])
        expect(ids(await list({ after: 'svc-6', limit: 3 }))).toEqual([])
        // svc-2 is not queued: the page starts after its place all the same.
        const queued = await list({ status: 'queued', after: 'svc-2', limit: 1 })
        expect(ids(queued)).toEqual(['svc-4'])
        expect(queued.total).toBe(3)
        expect(ids(await list({ status: 'queued', offset: 1, limit: 1 }))).toEqual(['svc-4'])
        expect(ids(await list({ status: 'queued', offset: 2 }))).toEqual(['svc-6'])
        expect(ids(await list({ status: 'not_started', offset: 2, limit: 2 }))).toEqual(['svc-3', 'svc-5'])
        expect(ids(await list({ status: 'not_started', after: 'svc-0', q: 'svc', limit: 2 }))).toEqual(['svc-2', 'svc-3'])
        expect(ids(await list({ q: 'svc', offset: 5, limit: 5 }))).toEqual(['svc-5', 'svc-6'])
        expect(ids(await list({ q: 'SVC-', after: 'svc-4', limit: 10 }))).toEqual(['svc-5', 'svc-6'])
        expect((await list({ q: 'svc-', after: 'svc-4', limit: 1 })).total).toBe(7)
        // Walking the whole list by cursor gives the list.
        const walked: string[] = []
        for (let after: string | undefined; ; ) {
          const page = await list({ limit: 2, ...(after === undefined ? {} : { after }) })
          walked.push(...ids(page))
          if (page.candidates.length < 2) break
          after = page.candidates.at(-1)!.id
        }
        expect(walked).toEqual(candidates(7).map((c) => c.id))
        expect(await list({ after: 'no-such-candidate', limit: 2 })).toEqual({ candidates: [], total: 7 })
      })

      test('gives each migration a version that changes with every change its reads show, and with no read', async () => {
        await seed(3)
        await store.upsertMigration(definition('other', 'Other'), candidates(1))
        const versionOf = async () => (await store.versions(['app-chart'])).get('app-chart')!
        const seen = new Set<string>()
        const changed = async (what: string) => {
          const version = await versionOf()
          expect(seen.has(version), `${what} gave a version seen before`).toBe(false)
          seen.add(version)
          expect((await store.getMigration('app-chart'))!.version).toBe(version)
          return version
        }
        let version = await changed('the first announce')
        await list({ status: 'queued' })
        await store.getMigration('app-chart')
        await store.listMigrations()
        await store.getCandidate('app-chart', 'svc-0')
        expect(await versionOf()).toBe(version)
        expect((await move('svc-0', 'execute')).ok).toBe(false)
        expect(await versionOf()).toBe(version)
        const other = (await store.versions(['other'])).get('other')
        await bring('svc-0', 'queued')
        version = await changed('a queue')
        expect((await store.versions(['other'])).get('other')).toBe(other)
        await move('svc-0', 'dequeue', { by: { kind: 'operator', name: 'alice' } })
        version = await changed('a dequeue')
        await store.replaceCandidates('app-chart', candidates(4))
        version = await changed('a new list')
        await store.upsertMigration(definition('app-chart', 'Renamed'))
        version = await changed('an announce')
        expect(await store.versions(['app-chart', 'nope', 'other'])).toEqual(
          new Map([
            ['app-chart', version],
            ['other', other],
          ]),
        )
        expect([...(await store.versions()).keys()].sort()).toEqual(['app-chart', 'other'])
        // Deleted and announced again, it starts from a version it never had before.
        expect(await store.deleteMigration('app-chart')).toBe('deleted')
        expect((await store.versions(['app-chart'])).has('app-chart')).toBe(false)
        await seed(3)
        await changed('an announce after a delete')
      })
    })

    describe('patches and discoveries', () => {
      const list = async (migrationId = 'app-chart') => (await store.listCandidates(migrationId))!.candidates
      const ids = (listed: { id: string }[]) => listed.map((c) => c.id)
      const versionOf = async (migrationId = 'app-chart') => (await store.versions([migrationId])).get(migrationId)
      const later = (ms: number) => new Date(Date.now() + ms).toISOString()
      const open = async (migrationId = 'app-chart', expiresAt = later(3600_000)) => {
        const id = crypto.randomUUID()
        expect(await store.openDiscovery({ id, migrationId, expiresAt })).toBe(true)
        return id
      }
      const stage = (
        discoveryId: string,
        staged: Parameters<MigrationStore['replaceCandidates']>[1],
        extra: { migrationId?: string; at?: string; expiresAt?: string; limit?: number } = {},
      ) =>
        store.stageCandidates({
          migrationId: 'app-chart',
          discoveryId,
          candidates: staged,
          at: at(),
          expiresAt: later(3600_000),
          limit: 1_000,
          ...extra,
        })
      /** Brings a candidate of any migration to `status`. */
      const bringIn = async (migrationId: string, candidateId: string, status: CandidateStatus) => {
        const path: Record<CandidateStatus, StatusAction[]> = {
          not_started: [],
          queued: ['queue'],
          running: ['queue', 'execute'],
          completed: ['queue', 'execute', 'complete'],
        }
        for (const action of path[status]) expect((await store.transition({ migrationId, candidateId, action, at: at() })).ok).toBe(true)
      }
      /** The kept counts and each status's total against counting the list by hand. */
      const expectCountsKept = async (migrationId = 'app-chart') => {
        const all = await list(migrationId)
        const counted = { not_started: 0, queued: 0, running: 0, completed: 0, failed: 0 }
        for (const c of all) {
          counted[c.status]++
          if (c.lastAttempt?.outcome === 'failed') counted.failed++
        }
        expect((await store.getMigration(migrationId))!.counts).toEqual(counted)
        for (const status of STATUSES) {
          const page = (await store.listCandidates(migrationId, { status }))!
          expect(ids(page.candidates), status).toEqual(ids(all.filter((c) => c.status === status)))
          expect(page.total, status).toBe(counted[status])
        }
        expect((await store.listCandidates(migrationId, { limit: 1 }))!.total).toBe(all.length)
      }

      test('patches part of the list: replaced where they stand, new ones appended in order, kept runs kept', async () => {
        await seed(6)
        await bring('svc-1', 'queued')
        await bring('svc-2', 'completed')
        await bring('svc-3', 'running')
        await bring('svc-4', 'queued')
        expect((await move('svc-4', 'dequeue')).ok).toBe(true)
        const before = await versionOf()
        const patch = {
          upsert: [
            { id: 'svc-2', kind: 'changed', metadata: { team: 'core' } },
            { id: 'new-b' },
            { id: 'svc-0', kind: 'changed' },
            { id: 'new-a' },
          ],
          remove: ['svc-1', 'svc-3', 'svc-4', 'svc-5', 'no-such-candidate'],
        }
        expect(await store.patchCandidates('app-chart', patch)).toBe(true)
        // svc-1 (queued) and svc-3 (running) stay; svc-4 (dequeued) and svc-5 go, with svc-4's run.
        const listed = await list()
        expect(ids(listed)).toEqual(['svc-0', 'svc-1', 'svc-2', 'svc-3', 'new-b', 'new-a'])
        expect(listed.map((c) => c.status)).toEqual(['not_started', 'queued', 'completed', 'running', 'not_started', 'not_started'])
        expect(listed[2]).toMatchObject({
          id: 'svc-2',
          kind: 'changed',
          metadata: { team: 'core' },
          runId: joinRunId('app-chart', 'svc-2'),
        })
        expect(listed[0]).toEqual({ id: 'svc-0', kind: 'changed', status: 'not_started' })
        expect(await store.getCandidate('app-chart', 'svc-4')).toBeUndefined()
        expect(await versionOf()).not.toBe(before)
        await expectCountsKept()
        // Cursors follow the new places; a candidate removed and upserted again comes back last, without its old run.
        expect(ids((await store.listCandidates('app-chart', { after: 'svc-3', limit: 1 }))!.candidates)).toEqual(['new-b'])
        expect(await store.patchCandidates('app-chart', { upsert: [{ id: 'svc-4' }], remove: [] })).toBe(true)
        expect((await list()).at(-1)).toEqual({ id: 'svc-4', status: 'not_started' })
        expect(await store.patchCandidates('app-chart', { upsert: [], remove: ['svc-0', 'new-b'] })).toBe(true)
        expect(ids(await list())).toEqual(['svc-1', 'svc-2', 'svc-3', 'new-a', 'svc-4'])
        await expectCountsKept()
        expect((await move('svc-3', 'complete')).ok).toBe(true)
        await expectCountsKept()
        expect(await store.patchCandidates('nope', { upsert: [{ id: 'x' }], remove: [] })).toBe(false)
        expect(await store.getMigration('nope')).toBeUndefined()
      })

      test('writes a patch and a commit with their activity entries, and a refused one with none', async () => {
        await seed(2)
        const alice: Actor = { kind: 'operator', name: 'alice' }
        const draft = (type: ActivityDraft['type'], detail: Record<string, unknown>): ActivityDraft => ({
          at: at(),
          actor: alice,
          type,
          migrationId: 'app-chart',
          detail,
        })
        expect(
          await store.patchCandidates(
            'app-chart',
            { upsert: [{ id: 'x' }], remove: ['svc-0'] },
            draft('candidates.patched', { upserted: 1, removed: 1 }),
          ),
        ).toBe(true)
        expect(
          await store.patchCandidates('nope', { upsert: [], remove: [] }, { ...draft('candidates.patched', {}), migrationId: 'nope' }),
        ).toBe(false)
        const discovery = await open()
        expect(await stage(discovery, candidates(3, 'found'))).toEqual({ outcome: 'staged', total: 3 })
        expect(
          await store.commitDiscovery('app-chart', discovery, at(), draft('candidates.submitted', { discoveryId: discovery, count: 0 })),
        ).toBe('committed')
        expect(await store.commitDiscovery('app-chart', discovery, at(), draft('candidates.submitted', { count: 0 }))).toBe('not_found')
        const entries = await store.listActivity({ migrationId: 'app-chart', limit: 10 })
        expect(entries.map((e) => [e.type, e.detail])).toEqual([
          ['candidates.patched', { upserted: 1, removed: 1 }],
          ['candidates.submitted', { discoveryId: discovery, count: 3 }],
        ])
        expect(await store.listActivity({ migrationId: 'nope', limit: 10 })).toEqual([])
      })

      test('a discovery gathers its parts in order, and its commit replaces the list exactly as replaceCandidates does', async () => {
        // Two migrations alike: one takes the parts through a discovery, its twin the same list in one replace.
        for (const id of ['app-chart', 'twin']) {
          await store.upsertMigration(definition(id), candidates(6))
          await bringIn(id, 'svc-1', 'queued')
          await bringIn(id, 'svc-2', 'completed')
          await bringIn(id, 'svc-3', 'running')
          await bringIn(id, 'svc-4', 'queued')
          expect((await store.transition({ migrationId: id, candidateId: 'svc-4', action: 'dequeue', at: at() })).ok).toBe(true)
        }
        const parts = [
          candidates(3, 'new'),
          [
            { id: 'svc-0', kind: 'changed' },
            { id: 'svc-2', metadata: { team: 'core' } },
          ],
          [],
          [{ id: 'svc-4' }],
        ]
        const discovery = await open()
        const before = await versionOf()
        let total = 0
        for (const part of parts) {
          total += part.length
          expect(await stage(discovery, part)).toEqual({ outcome: 'staged', total })
        }
        // Staged, not shown: the list, its counts and its version are as they were until the commit.
        expect(ids(await list())).toEqual(ids(candidates(6)))
        expect(await versionOf()).toBe(before)
        expect(await store.commitDiscovery('app-chart', discovery, at())).toBe('committed')
        expect(await store.replaceCandidates('twin', parts.flat())).toBe(true)
        const shown = async (migrationId: string) =>
          (await list(migrationId)).map(({ runId: _runId, lastAttempt, ...c }) => ({ ...c, outcome: lastAttempt?.outcome }))
        expect(await shown('app-chart')).toEqual(await shown('twin'))
        expect(ids(await list())).toEqual(['new-0', 'new-1', 'new-2', 'svc-0', 'svc-2', 'svc-4', 'svc-1', 'svc-3'])
        expect(await versionOf()).not.toBe(before)
        await expectCountsKept()
        // Committed means gone.
        expect(await stage(discovery, [{ id: 'late' }])).toEqual({ outcome: 'not_found' })
        expect(await store.commitDiscovery('app-chart', discovery, at())).toBe('not_found')
        // An empty discovery committed empties the list but for the candidates kept for their runs.
        const empty = await open()
        expect(await store.commitDiscovery('app-chart', empty, at())).toBe('committed')
        expect(ids(await list())).toEqual(['svc-2', 'svc-1', 'svc-3'])
        await expectCountsKept()
      })

      test('refuses a part with a candidate an earlier part sent, or one past the limit, staging nothing of it', async () => {
        await seed(1)
        const discovery = await open()
        expect(await stage(discovery, candidates(3, 'new'))).toEqual({ outcome: 'staged', total: 3 })
        expect(await stage(discovery, [{ id: 'other' }, { id: 'new-1' }])).toEqual({ outcome: 'duplicate', candidateId: 'new-1' })
        expect(await stage(discovery, [{ id: 'a' }, { id: 'b' }], { limit: 4 })).toEqual({ outcome: 'too_many', total: 3 })
        expect(await stage(discovery, [{ id: 'a' }], { limit: 4 })).toEqual({ outcome: 'staged', total: 4 })
        expect(await store.commitDiscovery('app-chart', discovery, at())).toBe('committed')
        expect(ids(await list())).toEqual(['new-0', 'new-1', 'new-2', 'a'])
      })

      test('a discovery is not found once expired, for another migration, unknown, or after its migration was deleted', async () => {
        await seed(2)
        await store.upsertMigration(definition('other', 'Other'), candidates(1))
        expect(await store.openDiscovery({ id: crypto.randomUUID(), migrationId: 'nope', expiresAt: later(60_000) })).toBe(false)
        // Each part moves the expiry on: found at an hour and a half, an hour after the last part, not at three hours.
        const discovery = await open('app-chart', later(3600_000))
        expect(await stage(discovery, [{ id: 'a' }], { at: later(1800_000), expiresAt: later(7200_000) })).toEqual({
          outcome: 'staged',
          total: 1,
        })
        expect(await stage(discovery, [{ id: 'b' }], { at: later(5400_000), expiresAt: later(9000_000) })).toEqual({
          outcome: 'staged',
          total: 2,
        })
        expect(await stage(discovery, [{ id: 'c' }], { at: later(10_800_000) })).toEqual({ outcome: 'not_found' })
        expect(await store.commitDiscovery('app-chart', discovery, later(10_800_000))).toBe('not_found')
        // Of another migration, or never opened.
        expect(await stage(discovery, [{ id: 'c' }], { migrationId: 'other' })).toEqual({ outcome: 'not_found' })
        expect(await store.commitDiscovery('other', discovery, at())).toBe('not_found')
        expect(await stage(crypto.randomUUID(), [{ id: 'c' }])).toEqual({ outcome: 'not_found' })
        expect(await store.commitDiscovery('app-chart', crypto.randomUUID(), at())).toBe('not_found')
        expect(ids(await list('other'))).toEqual(['svc-0'])
        expect(ids(await list())).toEqual(['svc-0', 'svc-1'])
        // Found until then, and not once its migration is deleted, even made again.
        const doomed = await open()
        expect(await stage(doomed, [{ id: 'a' }])).toEqual({ outcome: 'staged', total: 1 })
        expect(await store.deleteMigration('app-chart')).toBe('deleted')
        await seed(1)
        expect(await stage(doomed, [{ id: 'b' }])).toEqual({ outcome: 'not_found' })
        expect(await store.commitDiscovery('app-chart', doomed, at())).toBe('not_found')
        expect(ids(await list())).toEqual(['svc-0'])
      })

      test('prunes the discoveries that expired before a time, at most a limit per call', async () => {
        await seed(1)
        const expired = [
          await open('app-chart', later(-3000)),
          await open('app-chart', later(-2000)),
          await open('app-chart', later(-1000)),
        ]
        await stage(expired[0]!, candidates(50), { at: later(-4000), expiresAt: later(-3000) })
        const live = await open()
        expect(await store.pruneDiscoveries(at(), 2)).toBe(2)
        expect(await store.pruneDiscoveries(at(), 2)).toBe(1)
        expect(await store.pruneDiscoveries(at(), 2)).toBe(0)
        expect(await stage(live, [{ id: 'a' }])).toEqual({ outcome: 'staged', total: 1 })
        // Not yet expired at the time given: kept.
        expect(await store.pruneDiscoveries(later(-60_000), 10)).toBe(0)
        expect(await store.commitDiscovery('app-chart', live, at())).toBe('committed')
      })

      test('parts sent at once are each staged whole, and of two with the same candidate exactly one is', async () => {
        await seed(1)
        const discovery = await open()
        const parts = Array.from({ length: 8 }, (_, i) => candidates(25, `part${i}`))
        const outcomes = await Promise.all(parts.map((part) => stage(discovery, part)))
        expect(outcomes.map((o) => o.outcome)).toEqual(parts.map(() => 'staged'))
        expect(outcomes.map((o) => (o.outcome === 'staged' ? o.total : 0)).sort((a, b) => a - b)).toEqual(parts.map((_, i) => (i + 1) * 25))
        const racing = await Promise.all([
          stage(discovery, [{ id: 'x' }, { id: 'shared' }]),
          stage(discovery, [{ id: 'shared' }, { id: 'y' }]),
        ])
        expect(racing.map((o) => o.outcome).sort()).toEqual(['duplicate', 'staged'])
        expect(await store.commitDiscovery('app-chart', discovery, at())).toBe('committed')
        const listed = ids(await list())
        expect(listed).toHaveLength(8 * 25 + 2)
        // Each part whole, in its own order, wherever it came among the others.
        for (const part of parts) {
          const start = listed.indexOf(part[0]!.id)
          expect(listed.slice(start, start + part.length)).toEqual(ids(part))
        }
        await expectCountsKept()
      })
    })

    describe('activity log', () => {
      const alice: Actor = { kind: 'operator', name: 'alice' }
      const teamA: Actor = { kind: 'worker', name: 'team-a' }
      const draft = (type: ActivityDraft['type'], extra: Partial<ActivityDraft> = {}): ActivityDraft => ({
        at: at(),
        actor: alice,
        type,
        migrationId: 'app-chart',
        detail: { note: 'ünïcode ✓', nested: { list: [1, 'two'] } },
        ...extra,
      })
      const all = (candidateId?: string) =>
        store.listActivity({ migrationId: 'app-chart', limit: 1000, ...(candidateId === undefined ? {} : { candidateId }) })

      test('writes each transition with its actor, attempt and reason, and a refused one not at all', async () => {
        await store.upsertMigration(definition(), candidates(2), undefined, draft('migration.announced'))
        expect((await move('svc-0', 'queue', { by: alice })).ok).toBe(true)
        expect((await move('svc-0', 'queue', { by: alice })).ok).toBe(false)
        expect((await move('svc-0', 'execute', { by: alice, owner: 'p1' })).ok).toBe(true)
        expect((await move('svc-0', 'cancel', { by: alice, reason: 'wrong chart' })).ok).toBe(true)
        expect((await move('svc-0', 'cancel', { by: alice })).ok).toBe(false)
        const entries = await all()
        expect(entries.map((e) => e.type)).toEqual(['migration.announced', 'run.queue', 'run.execute', 'run.cancel'])
        const [, queued, executed, cancelled] = entries
        const attempt = (await store.getCandidate('app-chart', 'svc-0'))!.run!.attempt
        for (const entry of [queued, executed, cancelled]) {
          expect(entry).toMatchObject({ actor: alice, migrationId: 'app-chart', candidateId: 'svc-0', runId: 'app-chart__svc-0', attempt })
        }
        expect(cancelled!.detail).toEqual({ reason: 'wrong chart', previous: 'running' })
        expect(entries[0]!.detail).toEqual({ note: 'ünïcode ✓', nested: { list: [1, 'two'] } })
        const ids = entries.map((e) => e.id)
        expect(new Set(ids).size).toBe(ids.length)
        // The cancelled attempt says which attempt, who and why.
        expect((await store.getMigration('app-chart'))!.cancelledAttempts).toEqual([
          {
            runId: 'app-chart__svc-0',
            candidateId: 'svc-0',
            cancelledAt: cancelled!.at,
            attempt,
            cancelledBy: alice,
            reason: 'wrong chart',
          },
        ])
      })

      test('writes step reports and the first acceptance of a dispatch, not repeats', async () => {
        await store.upsertMigration(definition(), candidates(1))
        await move('svc-0', 'queue')
        await move('svc-0', 'execute')
        const { attempt } = (await store.getCandidate('app-chart', 'svc-0'))!.run!
        const mark = (phase: 'begun' | 'dispatched') =>
          store.markStep({ migrationId: 'app-chart', candidateId: 'svc-0', attempt, index: 0, phase, at: at() })
        await mark('begun')
        await mark('dispatched')
        await mark('dispatched')
        const report = () =>
          store.recordStep({
            migrationId: 'app-chart',
            candidateId: 'svc-0',
            result: result('update-chart', false, { error: 'chart not found' }),
            done: true,
            at: at(),
            by: teamA,
          })
        expect((await report()).outcome).toBe('recorded')
        expect((await report()).outcome).toBe('duplicate')
        const entries = (await all('svc-0')).filter((e) => e.type.startsWith('step.'))
        expect(entries.map((e) => [e.type, e.actor.kind, e.attempt])).toEqual([
          ['step.dispatched', 'system', attempt],
          ['step.reported', 'worker', attempt],
        ])
        expect(entries[0]!.detail).toEqual({ step: 0 })
        expect(entries[1]!.detail).toEqual({ stepName: 'update-chart', success: false, done: true, error: 'chart not found' })
      })

      test('writes the drafts of submissions and deletes when they apply, and keeps the log of a deleted migration', async () => {
        expect(await store.replaceCandidates('app-chart', candidates(1), draft('candidates.submitted'))).toBe(false)
        await store.upsertMigration(definition(), candidates(1), 'team-a', draft('migration.announced', { actor: teamA }))
        // Refused: another worker owns it.
        await store.upsertMigration(definition(), [], 'team-b', draft('migration.announced', { actor: { kind: 'worker', name: 'team-b' } }))
        expect(await store.replaceCandidates('app-chart', candidates(3), draft('candidates.submitted', { detail: { count: 3 } }))).toBe(
          true,
        )
        await move('svc-0', 'queue')
        await move('svc-0', 'execute')
        expect(await store.deleteMigration('app-chart', draft('migration.deleted'))).toBe('running')
        await move('svc-0', 'cancel')
        expect(await store.deleteMigration('app-chart', draft('migration.deleted'))).toBe('deleted')
        const entries = await all()
        expect(entries.map((e) => [e.type, e.actor.name])).toEqual([
          ['migration.announced', 'team-a'],
          ['candidates.submitted', 'alice'],
          ['run.queue', 'loom'],
          ['run.execute', 'loom'],
          ['run.cancel', 'loom'],
          ['migration.deleted', 'alice'],
        ])
      })

      test('pages after a cursor, per migration and per candidate, oldest first', async () => {
        await store.upsertMigration(definition(), candidates(3))
        await store.upsertMigration(definition('other'), candidates(1))
        for (const id of ['svc-0', 'svc-1', 'svc-2']) await move(id, 'queue')
        await store.transition({ migrationId: 'other', candidateId: 'svc-0', action: 'queue', at: at() })
        for (const id of ['svc-0', 'svc-1', 'svc-2']) await move(id, 'dequeue')
        const first = await store.listActivity({ migrationId: 'app-chart', limit: 4 })
        expect(first.map((e) => [e.type, e.candidateId])).toEqual([
          ['run.queue', 'svc-0'],
          ['run.queue', 'svc-1'],
          ['run.queue', 'svc-2'],
          ['run.dequeue', 'svc-0'],
        ])
        const rest = await store.listActivity({ migrationId: 'app-chart', limit: 4, after: first[3]!.id })
        expect(rest.map((e) => [e.type, e.candidateId])).toEqual([
          ['run.dequeue', 'svc-1'],
          ['run.dequeue', 'svc-2'],
        ])
        expect(await store.listActivity({ migrationId: 'app-chart', limit: 4, after: rest[1]!.id })).toEqual([])
        const svc1 = await store.listActivity({ migrationId: 'app-chart', candidateId: 'svc-1', limit: 10 })
        expect(svc1.map((e) => e.type)).toEqual(['run.queue', 'run.dequeue'])
        expect((await store.listActivity({ migrationId: 'other', limit: 10 })).map((e) => e.type)).toEqual(['run.queue'])
        expect(await store.listActivity({ migrationId: 'nope', limit: 10 })).toEqual([])
      })

      test('reads the whole log across migrations in id order, and the newest entries newest first', async () => {
        await store.upsertMigration(definition(), candidates(2), undefined, draft('migration.announced'))
        await store.upsertMigration(
          definition('other', 'Other'),
          candidates(1),
          undefined,
          draft('migration.announced', { migrationId: 'other' }),
        )
        expect((await move('svc-0', 'queue', { by: alice })).ok).toBe(true)
        expect((await store.transition({ migrationId: 'other', candidateId: 'svc-0', action: 'queue', at: at(), by: teamA })).ok).toBe(true)
        const whole = await store.listActivity({ limit: 100 })
        expect(whole.map((e) => [e.migrationId, e.type])).toEqual([
          ['app-chart', 'migration.announced'],
          ['other', 'migration.announced'],
          ['app-chart', 'run.queue'],
          ['other', 'run.queue'],
        ])
        const ids = whole.map((e) => e.id)
        expect(ids.every((id) => /^[0-9]+$/.test(id))).toBe(true)
        expect([...ids].sort(compareActivityIds)).toEqual(ids)
        expect(await store.listActivity({ after: ids[1]!, limit: 1 })).toEqual([whole[2]])
        expect(await store.listActivity({ limit: 2, newest: true })).toEqual([whole[3], whole[2]])
        expect(await store.listActivity({ after: ids[2]!, limit: 5, newest: true })).toEqual([whole[3]])
        expect(await store.listActivity({ migrationId: 'app-chart', limit: 1, newest: true })).toEqual([whole[2]])
        expect(await store.listActivity({ migrationId: 'other', candidateId: 'svc-0', limit: 5, newest: true })).toEqual([whole[3]])
      })

      test('wakes its watchers after entries are written, and stops when told', async () => {
        await seed(2)
        let woken = 0
        const stop = store.watchActivity(() => woken++)
        try {
          // A listening store may need a moment before its first notification can arrive.
          await new Promise((resolve) => setTimeout(resolve, 100))
          woken = 0
          expect((await move('svc-0', 'queue', { by: alice })).ok).toBe(true)
          await eventually(() => expect(woken).toBeGreaterThan(0))
          stop()
          await new Promise((resolve) => setTimeout(resolve, 100))
          const after = woken
          expect((await move('svc-1', 'queue', { by: alice })).ok).toBe(true)
          await new Promise((resolve) => setTimeout(resolve, 200))
          expect(woken).toBe(after)
        } finally {
          stop()
        }
      })

      test('prunes the oldest entries written before a time, a batch at a time, and keeps the rest readable', async () => {
        await seed(3)
        const old = '2026-01-01T00:00:00.000Z'
        for (const id of ['svc-0', 'svc-1', 'svc-2']) expect((await move(id, 'queue', { at: old, by: alice })).ok).toBe(true)
        expect((await move('svc-0', 'dequeue', { by: alice })).ok).toBe(true)
        const before = await all()
        expect(await store.pruneActivity('2026-02-01T00:00:00.000Z', 2)).toBe(2)
        expect(await store.pruneActivity('2026-02-01T00:00:00.000Z', 2)).toBe(1)
        expect(await store.pruneActivity('2026-02-01T00:00:00.000Z', 2)).toBe(0)
        expect(await all()).toEqual(before.slice(3))
        expect(await all('svc-0')).toEqual([before[3]])
        expect(await all('svc-1')).toEqual([])
        expect(await store.listActivity({ limit: 10 })).toEqual(before.slice(3))
        // New entries still come after the kept ones.
        expect((await move('svc-1', 'dequeue', { by: alice })).ok).toBe(true)
        expect((await all()).map((e) => e.type)).toEqual(['run.dequeue', 'run.dequeue'])
      })

      test('writes exactly one entry per change of concurrent transitions, each with its actor', async () => {
        await seed(5)
        const actors: Actor[] = [alice, { kind: 'operator', name: 'bob' }, { kind: 'operator', name: 'carol' }]
        const actions: StatusAction[] = ['queue', 'dequeue', 'execute', 'cancel']
        const tries = Array.from({ length: 120 }, (_, i) => ({
          candidateId: `svc-${i % 5}`,
          action: actions[(i * 7) % 4]!,
          by: actors[i % 3]!,
        }))
        const results = await Promise.all(tries.map((t) => move(t.candidateId, t.action, { by: t.by })))
        const wins = tries.filter((_, i) => results[i]!.ok)
        const entries = (await all()).filter((e) => e.type.startsWith('run.'))
        expect(entries).toHaveLength(wins.length)
        const key = (c: string, type: string, by: string) => `${c} ${type} ${by}`
        expect(entries.map((e) => key(e.candidateId!, e.type, e.actor.name)).sort()).toEqual(
          wins.map((w) => key(w.candidateId, `run.${w.action}`, w.by.name)).sort(),
        )
        // Per candidate, the entries replay the contract's table from not_started to where it is.
        for (let i = 0; i < 5; i++) {
          let status: CandidateStatus = 'not_started'
          for (const entry of entries.filter((e) => e.candidateId === `svc-${i}`)) {
            const applied: Applied | typeof REFUSED = TRANSITIONS[entry.type.slice(4) as StatusAction][status]
            expect(applied, `svc-${i}: ${entry.type} from ${status}`).not.toBe(REFUSED)
            if (applied !== REFUSED) status = applied.status
          }
          expect(status).toBe(await statusOf(`svc-${i}`))
        }
      })
    })

    test('answers ping', async () => {
      await expect(store.ping()).resolves.toBeUndefined()
    })

    done()
  })
}
