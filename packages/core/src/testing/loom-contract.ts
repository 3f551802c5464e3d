import { afterEach, beforeEach, describe, expect } from 'vitest'
import type { Loom, ReconcileOptions } from '../loom/index'
import type { DryRunner, StepDispatcher } from '../ports'
import type { CandidateStatus, LoomEvent } from '../schemas'
import { announcement, candidates, eventually, expectLoomError, fakeWorker, type FakeWorker } from './fakes'
import { contractTests, type ContractOptions } from './contract-test'

export type LoomFactory = (deps: {
  dispatcher: StepDispatcher
  dryRunner: DryRunner
  /**
   * The reconciler's timings for `createLoom` (pass them on): short, so that the tests of
   * step deadlines end in a second or two.
   */
  reconcile: ReconcileOptions
}) => Promise<{ loom: Loom; close?: () => Promise<void> }>

/** The reconciler timings the contract asks its factories for. */
const RECONCILE: ReconcileOptions = { intervalMs: 100, leaseMs: 2_000, stallMs: 1_000 }

const STATUSES: CandidateStatus[] = ['not_started', 'queued', 'running', 'completed']

/**
 * The `Loom` contract: the whole interface, its status rules cell by cell, its errors and
 * its events. It runs against `createLoom` and against `createClient` talking to
 * `loomApp`, which proves the two interchangeable. The factory must build Loom over a
 * fresh, empty store, with an engine that dispatches through the dispatcher it is given.
 * `options.skip` excuses the implementation from tests by name, each with its reason.
 */
export function loomContract(name: string, factory: LoomFactory, options: ContractOptions = {}): void {
  describe(`Loom contract: ${name}`, () => {
    const { test, done } = contractTests(name, options)
    let loom: Loom
    let worker: FakeWorker
    let close: (() => Promise<void>) | undefined
    const M = 'app-chart'

    beforeEach(async () => {
      worker = fakeWorker()
      ;({ loom, close } = await factory({ dispatcher: worker.dispatcher, dryRunner: worker.dryRunner, reconcile: RECONCILE }))
    })
    afterEach(async () => {
      await close?.()
    })

    const statusOf = async (candidateId: string) => (await loom.listCandidates(M)).find((c) => c.id === candidateId)?.status
    const finishSteps = async (runId: string, steps: string[]) => {
      for (const stepName of steps) {
        await eventually(() => expect(worker.stepsOf(runId)).toContain(stepName))
        await loom.complete(runId, { stepName, candidate: { id: runId.split('__')[1]! }, success: true })
      }
    }
    /** Brings a candidate of a one-step migration to `status`. */
    const bring = async (candidateId: string, status: CandidateStatus) => {
      if (status === 'not_started') return
      const runId = await loom.queue(M, candidateId)
      if (status === 'queued') return
      await loom.execute(runId)
      if (status === 'running') return
      await finishSteps(runId, ['update-chart'])
      await eventually(async () => expect(await statusOf(candidateId)).toBe('completed'))
    }

    describe('migrations', () => {
      test('announces a migration and returns it registered', async () => {
        const registered = await loom.announce(announcement(M, { candidates: candidates(2) }))
        expect(registered).toMatchObject({ id: M, name: `Migration ${M}`, workerUrl: 'http://127.0.0.1:9/worker' })
        expect(registered.steps.map((s) => s.name)).toEqual(['update-chart', 'open-pr'])
        expect(registered.candidates.map((c) => c.id)).toEqual(['svc-0', 'svc-1'])
        expect(Number.isNaN(Date.parse(registered.createdAt))).toBe(false)
        expect(registered.counts).toEqual({ not_started: 2, queued: 0, running: 0, completed: 0, failed: 0 })
      })

      test('upserts by id on a second announce, keeping createdAt, runs and cancelled attempts', async () => {
        const first = await loom.announce(announcement(M, { candidates: candidates(3) }))
        await loom.queue(M, 'svc-0')
        await loom.cancel(await loom.queue(M, 'svc-1'))
        await loom.queue(M, 'svc-2')
        // Both announces could land in one millisecond, where a fresh createdAt equals the kept one:
        // let the clock move on, and prove it has with a migration announced now.
        await eventually(() => expect(Date.now()).toBeGreaterThan(Date.parse(first.createdAt) + 1), { timeoutMs: 1_000, intervalMs: 2 })
        const fresh = await loom.announce(announcement('clock-probe'))
        expect(Date.parse(fresh.createdAt)).toBeGreaterThan(Date.parse(first.createdAt))
        const second = await loom.announce({ ...announcement(M, { steps: ['only-step'] }), name: 'Renamed' })
        expect(second.name).toBe('Renamed')
        expect(second.steps.map((s) => s.name)).toEqual(['only-step'])
        expect(second.createdAt).toBe(first.createdAt)
        expect(second.candidateRuns).toEqual({ 'svc-0': { status: 'queued' }, 'svc-2': { status: 'queued' } })
        expect(second.cancelledAttempts?.map((a) => a.candidateId)).toEqual(['svc-1'])
        expect(second.candidates.map((c) => c.id)).toEqual(['svc-0', 'svc-1', 'svc-2'])
      })

      test('registers a migration under a generated slug id', async () => {
        const registered = await loom.register({
          name: 'Kafka topics: compaction',
          candidates: candidates(1),
          steps: [{ name: 's', workerApp: 'kafka' }],
        })
        expect(registered.id).toMatch(/^kafka-topics-compaction-[a-z0-9]+$/)
        expect((await loom.getMigration(registered.id)).candidates.map((c) => c.id)).toEqual(['svc-0'])
      })

      test('lists migrations, with candidates or as a summary with counts only', async () => {
        await loom.announce(announcement(M, { candidates: candidates(2) }))
        await loom.queue(M, 'svc-1')
        const full = await loom.listMigrations()
        expect(full.map((m) => m.id)).toEqual([M])
        expect(full[0]?.candidates).toHaveLength(2)
        expect(full[0]?.candidateRuns).toEqual({ 'svc-1': { status: 'queued' } })
        const summary = await loom.listMigrations({ summary: true })
        expect(summary[0]).not.toHaveProperty('candidates')
        expect(summary[0]?.counts).toEqual({ not_started: 1, queued: 1, running: 0, completed: 0, failed: 0 })
      })

      test('answers not_found for an unknown migration', async () => {
        await expectLoomError(loom.getMigration('nope'), 'not_found')
        await expectLoomError(loom.listCandidates('nope'), 'not_found')
        await expectLoomError(loom.submitCandidates('nope', candidates(1)), 'not_found')
        await expectLoomError(loom.queue('nope', 'svc-0'), 'not_found')
        await expectLoomError(loom.deleteMigration('nope'), 'not_found')
        await expectLoomError(loom.dryRun('nope', 'svc-0'), 'not_found')
      })

      test('deletes a migration, but not while a candidate is running', async () => {
        await loom.announce(announcement(M, { steps: ['update-chart'], candidates: candidates(1) }))
        await bring('svc-0', 'running')
        const refused = await expectLoomError(loom.deleteMigration(M), 'conflict')
        expect(refused.message).toContain('running')
        expect((await loom.getMigration(M)).id).toBe(M)
        await loom.cancel('app-chart__svc-0')
        await loom.deleteMigration(M)
        await expectLoomError(loom.getMigration(M), 'not_found')
      })

      test('rejects an invalid announcement, naming the field, and changes nothing', async () => {
        const bad = { ...announcement(M), steps: [{ name: 'x', workerApp: 'bad__app' }] }
        const error = await expectLoomError(loom.announce(bad), 'invalid')
        expect(error.message).toContain('steps.0.workerApp')
        await expectLoomError(loom.announce({ ...announcement(M), id: 'has/slash' }), 'invalid')
        await expectLoomError(loom.announce({ ...announcement(M), steps: [] }), 'invalid')
        expect(await loom.listMigrations()).toEqual([])
      })
    })

    describe('candidates', () => {
      beforeEach(async () => {
        await loom.announce(announcement(M, { steps: ['update-chart'], candidates: candidates(4) }))
      })

      test('lists candidates with their status and run id', async () => {
        await bring('svc-1', 'queued')
        await bring('svc-2', 'running')
        const list = await loom.listCandidates(M)
        expect(list.map((c) => [c.id, c.status, c.runId])).toEqual([
          ['svc-0', 'not_started', undefined],
          ['svc-1', 'queued', 'app-chart__svc-1'],
          ['svc-2', 'running', 'app-chart__svc-2'],
          ['svc-3', 'not_started', undefined],
        ])
      })

      test('gets one candidate with its status and run id, not_found for an unknown one', async () => {
        await bring('svc-1', 'running')
        expect(await loom.getCandidate(M, 'svc-1')).toEqual({ ...candidates(4)[1], status: 'running', runId: 'app-chart__svc-1' })
        expect(await loom.getCandidate(M, 'svc-0')).toEqual({ ...candidates(4)[0], status: 'not_started' })
        expect((await expectLoomError(loom.getCandidate(M, 'ghost'), 'not_found')).message).toContain('ghost')
        expect((await expectLoomError(loom.getCandidate('nope', 'svc-0'), 'not_found')).message).toContain('nope')
        await expectLoomError(loom.getCandidate(M, 'a__b'), 'invalid')
      })

      test('searches by status and text, paged, with the total', async () => {
        await bring('svc-2', 'queued')
        const page = await loom.searchCandidates(M, { q: 'payments', limit: 1, offset: 1 })
        expect(page.total).toBe(2)
        expect(page.candidates.map((c) => c.id)).toEqual(['svc-2'])
        expect((await loom.searchCandidates(M, { status: 'queued' })).candidates.map((c) => c.id)).toEqual(['svc-2'])
      })

      test('replaces candidates but keeps those with a queued, running or completed run', async () => {
        await bring('svc-0', 'queued')
        await bring('svc-1', 'completed')
        await loom.submitCandidates(M, [{ id: 'svc-3' }, { id: 'new-svc' }])
        expect((await loom.listCandidates(M)).map((c) => [c.id, c.status])).toEqual([
          ['svc-3', 'not_started'],
          ['new-svc', 'not_started'],
          ['svc-0', 'queued'],
          ['svc-1', 'completed'],
        ])
      })

      test('rejects an invalid candidate list, naming the field, and changes nothing', async () => {
        const error = await expectLoomError(loom.submitCandidates(M, [{ id: 'ok' }, { id: 'a__b' }]), 'invalid')
        expect(error.message).toContain('1.id')
        await expectLoomError(loom.submitCandidates(M, [{ id: 'dup' }, { id: 'dup' }]), 'invalid')
        await expectLoomError(loom.submitCandidates(M, [{ id: '' }]), 'invalid')
        expect((await loom.listCandidates(M)).map((c) => c.id)).toEqual(['svc-0', 'svc-1', 'svc-2', 'svc-3'])
      })
    })

    describe('patches and discoveries', () => {
      beforeEach(async () => {
        await loom.announce(announcement(M, { steps: ['update-chart'], candidates: candidates(4) }))
      })
      const listed = async () => (await loom.listCandidates(M)).map((c) => [c.id, c.status])

      test('patches part of the list: upserts in place and appended, removes all but candidates with a run to keep', async () => {
        await bring('svc-1', 'queued')
        await loom.patchCandidates(M, {
          upsert: [{ id: 'new-b' }, { id: 'svc-3', kind: 'changed' }, { id: 'new-a' }],
          remove: ['svc-0', 'svc-1', 'ghost'],
        })
        expect(await listed()).toEqual([
          ['svc-1', 'queued'],
          ['svc-2', 'not_started'],
          ['svc-3', 'not_started'],
          ['new-b', 'not_started'],
          ['new-a', 'not_started'],
        ])
        expect(await loom.getCandidate(M, 'svc-3')).toEqual({ id: 'svc-3', kind: 'changed', status: 'not_started' })
        await loom.patchCandidates(M, { remove: ['new-b'] })
        await loom.patchCandidates(M, { upsert: [{ id: 'last' }] })
        expect((await loom.listCandidates(M)).map((c) => c.id)).toEqual(['svc-1', 'svc-2', 'svc-3', 'new-a', 'last'])
      })

      test('refuses a patch naming a candidate in both lists, or a bad one, naming the field, and changes nothing', async () => {
        const both = await expectLoomError(loom.patchCandidates(M, { upsert: [{ id: 'svc-0' }], remove: ['svc-0'] }), 'invalid')
        expect(both.details?.field).toBe('remove')
        expect(both.message).toContain('svc-0')
        expect((await expectLoomError(loom.patchCandidates(M, { upsert: [{ id: 'a__b' }] }), 'invalid')).details?.field).toBe('upsert.0.id')
        expect((await expectLoomError(loom.patchCandidates(M, { remove: ['ok', 'a__b'] }), 'invalid')).details?.field).toBe('remove.1')
        await expectLoomError(loom.patchCandidates(M, { remove: ['dup', 'dup'] }), 'invalid')
        expect((await expectLoomError(loom.patchCandidates('nope', { upsert: [{ id: 'x' }] }), 'not_found')).message).toContain('nope')
        expect((await loom.listCandidates(M)).map((c) => c.id)).toEqual(['svc-0', 'svc-1', 'svc-2', 'svc-3'])
      })

      test('discovers a list in parts and commits it as a submission would; then the discovery is gone', async () => {
        await bring('svc-0', 'queued')
        const { discoveryId, expiresAt } = await loom.openDiscovery(M)
        expect(Date.parse(expiresAt)).toBeGreaterThan(Date.now())
        await loom.addToDiscovery(M, discoveryId, [{ id: 'found-0' }, { id: 'svc-2', kind: 'changed' }])
        await loom.addToDiscovery(M, discoveryId, [])
        await loom.addToDiscovery(M, discoveryId, [{ id: 'found-1' }])
        // Nothing shows before the commit.
        expect((await loom.listCandidates(M)).map((c) => c.id)).toEqual(['svc-0', 'svc-1', 'svc-2', 'svc-3'])
        await loom.commitDiscovery(M, discoveryId)
        expect(await listed()).toEqual([
          ['found-0', 'not_started'],
          ['svc-2', 'not_started'],
          ['found-1', 'not_started'],
          ['svc-0', 'queued'],
        ])
        expect((await loom.getCandidate(M, 'svc-2')).kind).toBe('changed')
        await expectLoomError(loom.commitDiscovery(M, discoveryId), 'not_found')
        await expectLoomError(loom.addToDiscovery(M, discoveryId, [{ id: 'late' }]), 'not_found')
      })

      test('refuses a part with a candidate an earlier part sent, naming it; a discovery unknown or of another migration is not found', async () => {
        await loom.announce(announcement('other', { steps: ['update-chart'], candidates: candidates(1) }))
        const { discoveryId } = await loom.openDiscovery(M)
        await loom.addToDiscovery(M, discoveryId, [{ id: 'a' }, { id: 'b' }])
        const again = await expectLoomError(loom.addToDiscovery(M, discoveryId, [{ id: 'c' }, { id: 'a' }]), 'invalid')
        expect(again.details?.field).toBe('candidates.1.id')
        expect(again.message).toContain('a')
        expect((await expectLoomError(loom.addToDiscovery(M, discoveryId, [{ id: 'a__b' }]), 'invalid')).details?.field).toBe(
          'candidates.0.id',
        )
        await expectLoomError(loom.addToDiscovery('other', discoveryId, [{ id: 'x' }]), 'not_found')
        await expectLoomError(loom.commitDiscovery('other', discoveryId), 'not_found')
        await expectLoomError(loom.commitDiscovery(M, crypto.randomUUID()), 'not_found')
        await expectLoomError(loom.commitDiscovery(M, 'not-a-discovery'), 'not_found')
        expect((await expectLoomError(loom.openDiscovery('nope'), 'not_found')).message).toContain('nope')
        await expectLoomError(loom.commitDiscovery('nope', discoveryId), 'not_found')
        expect((await loom.listCandidates('other')).map((c) => c.id)).toEqual(['svc-0'])
        await loom.commitDiscovery(M, discoveryId)
        expect((await loom.listCandidates(M)).map((c) => c.id)).toEqual(['a', 'b'])
      })
    })

    describe('status rules', () => {
      beforeEach(async () => {
        await loom.announce(announcement(M, { steps: ['update-chart'], candidates: candidates(1) }))
      })

      const actions = {
        queue: { from: ['not_started'], to: 'queued', run: (l: Loom) => l.queue(M, 'svc-0') },
        dequeue: { from: ['queued'], to: 'not_started', run: (l: Loom) => l.dequeue('app-chart__svc-0') },
        execute: { from: ['queued'], to: 'running', run: (l: Loom) => l.execute('app-chart__svc-0') },
        cancel: { from: ['queued', 'running'], to: 'not_started', run: (l: Loom) => l.cancel('app-chart__svc-0') },
        'complete (success)': {
          from: ['running'],
          to: 'completed',
          run: (l: Loom) => l.complete('app-chart__svc-0', { stepName: 'update-chart', candidate: { id: 'svc-0' }, success: true }),
        },
        'complete (failure)': {
          from: ['running'],
          to: 'not_started',
          run: (l: Loom) => l.complete('app-chart__svc-0', { stepName: 'update-chart', candidate: { id: 'svc-0' }, success: false }),
        },
      } as const

      for (const [action, rule] of Object.entries(actions)) {
        for (const from of STATUSES) {
          const allowed = (rule.from as readonly string[]).includes(from)
          test(`${action} from ${from} ${allowed ? `moves the candidate to ${rule.to}` : 'is a conflict naming the status'}`, async () => {
            await bring('svc-0', from)
            if (from === 'running') await eventually(() => expect(worker.stepsOf('app-chart__svc-0')).toEqual(['update-chart']))
            const attemptsBefore = (await loom.getMigration(M)).cancelledAttempts?.length ?? 0
            if (allowed) {
              await rule.run(loom)
              await eventually(async () => expect(await statusOf('svc-0')).toBe(rule.to))
              const attempts = (await loom.getMigration(M)).cancelledAttempts?.length ?? 0
              expect(attempts - attemptsBefore).toBe(action === 'cancel' ? 1 : 0)
            } else {
              const error = await expectLoomError(rule.run(loom), 'conflict')
              expect(error.message).toContain(from)
              expect(await statusOf('svc-0')).toBe(from)
              expect((await loom.getMigration(M)).cancelledAttempts?.length ?? 0).toBe(attemptsBefore)
            }
          })
        }
      }

      test('gives exactly one run id and 99 conflicts for 100 concurrent queue calls', async () => {
        const results = await Promise.allSettled(Array.from({ length: 100 }, () => loom.queue(M, 'svc-0')))
        const won = results.filter((r) => r.status === 'fulfilled')
        expect(won).toHaveLength(1)
        expect((won[0] as PromiseFulfilledResult<string>).value).toBe('app-chart__svc-0')
        const lost = results.filter((r): r is PromiseRejectedResult => r.status === 'rejected')
        expect(lost.map((r) => (r.reason as { code?: string }).code)).toEqual(Array(99).fill('conflict'))
      })

      test('answers not_found for an unknown candidate and for run ids that do not parse', async () => {
        await expectLoomError(loom.queue(M, 'ghost'), 'not_found')
        for (const runId of ['no-separator', 'app-chart__', '__svc-0', 'app-chart__ghost', 'nope__svc-0']) {
          await expectLoomError(loom.execute(runId), 'not_found')
          await expectLoomError(loom.getRun(runId), 'not_found')
        }
      })

      test('rejects ids that break the id rules as invalid, naming them', async () => {
        const error = await expectLoomError(loom.queue(M, 'a__b'), 'invalid')
        expect(error.message).toContain('candidateId')
        await expectLoomError(loom.queue(M, 'x'.repeat(201)), 'invalid')
        await expectLoomError(loom.queue('', 'svc-0'), 'invalid')
        for (const bad of ['a__b', '_x', 'x'.repeat(201)]) {
          const error = await expectLoomError(loom.getMigration(bad), 'invalid')
          expect(error.message).toMatch(/^migrationId: /)
          await expectLoomError(loom.deleteMigration(bad), 'invalid')
          await expectLoomError(loom.listCandidates(bad), 'invalid')
          await expectLoomError(loom.submitCandidates(bad, candidates(1)), 'invalid')
          await expectLoomError(loom.dryRun(bad, 'svc-0'), 'invalid')
        }
      })

      test('names a missing field as required', async () => {
        const error = await expectLoomError(loom.submitCandidates(M, [{ kind: 'application' } as never]), 'invalid')
        expect(error.message).toBe('candidates.0.id: is required')
      })
    })

    describe('runs', () => {
      beforeEach(async () => {
        await loom.announce(announcement(M, { candidates: candidates(2) }))
      })

      test('runs a candidate through every step to completed', async () => {
        const runId = await loom.queue(M, 'svc-0')
        expect(await loom.execute(runId)).toBe(runId)
        await finishSteps(runId, ['update-chart', 'open-pr'])
        await eventually(async () => expect(await statusOf('svc-0')).toBe('completed'))
        const run = await loom.getRun(runId)
        expect(run).toMatchObject({ runId, migrationId: M, status: 'completed', candidate: { id: 'svc-0' } })
        expect(run.steps?.map((s) => s.stepName)).toEqual(['update-chart', 'open-pr'])
        const status = await loom.runStatus(runId)
        expect(status).toMatchObject({ instanceId: runId, runtimeStatus: 'COMPLETED', result: { migrationId: M, status: 'completed' } })
        expect(status.result.results).toHaveLength(2)
      })

      test('shows a queued run, but no runtime status until it is executed', async () => {
        const runId = await loom.queue(M, 'svc-0')
        expect(await loom.getRun(runId)).toMatchObject({ runId, status: 'queued', steps: [] })
        await expectLoomError(loom.runStatus(runId), 'not_found')
        await expectLoomError(loom.getRun('app-chart__svc-1'), 'not_found')
        await loom.execute(runId)
        expect((await loom.runStatus(runId)).runtimeStatus).toBe('RUNNING')
      })

      test('validates step events: the step must exist and belong to the run candidate', async () => {
        const runId = await loom.queue(M, 'svc-0')
        await loom.execute(runId)
        const unknown = await expectLoomError(
          loom.complete(runId, { stepName: 'nope', candidate: { id: 'svc-0' }, success: true }),
          'invalid',
        )
        expect(unknown.message).toContain('stepName')
        const other = await expectLoomError(
          loom.complete(runId, { stepName: 'update-chart', candidate: { id: 'svc-1' }, success: true }),
          'invalid',
        )
        expect(other.message).toContain('candidate.id')
        await expectLoomError(
          loom.complete(runId, { stepName: 'update-chart', candidate: { id: 'svc-0' }, success: 'yes' } as never),
          'invalid',
        )
        expect((await loom.getRun(runId)).steps).toEqual([])
      })

      test('accepts a repeated step event once', async () => {
        const runId = await loom.queue(M, 'svc-0')
        await loom.execute(runId)
        await eventually(() => expect(worker.stepsOf(runId)).toEqual(['update-chart']))
        const event = { stepName: 'update-chart', candidate: { id: 'svc-0' }, success: true }
        await loom.complete(runId, event)
        await loom.complete(runId, event)
        await eventually(() => expect(worker.stepsOf(runId)).toEqual(['update-chart', 'open-pr']))
        expect((await loom.getRun(runId)).steps).toHaveLength(1)
      })

      /** The attempt of the latest dispatch of `stepName` in `runId`, once there are `count` of them. */
      const dispatchedAttempt = async (runId: string, stepName: string, count = 1) => {
        const ofStep = () => worker.dispatched.filter((d) => d.request.runId === runId && d.request.stepName === stepName)
        await eventually(() => expect(ofStep()).toHaveLength(count))
        return ofStep().at(-1)!.request.attempt!
      }

      test('refuses a late report of a cancelled attempt, changing nothing of the current one', async () => {
        const runId = await loom.queue(M, 'svc-0')
        await loom.execute(runId)
        const cancelled = await dispatchedAttempt(runId, 'update-chart')
        await loom.cancel(runId)
        await loom.queue(M, 'svc-0')
        await loom.execute(runId)
        const current = await dispatchedAttempt(runId, 'update-chart', 2)
        expect(current).toBeGreaterThan(cancelled)

        const late = { stepName: 'update-chart', candidate: { id: 'svc-0' }, success: true, attempt: cancelled }
        const refused = await expectLoomError(loom.complete(runId, late), 'conflict')
        expect(refused.message).toBe(
          `run ${runId}: the report is for attempt ${cancelled}, but the current attempt is ${current} (running); a report of another attempt changes nothing`,
        )
        await expectLoomError(loom.prOpened(runId, { ...late, metadata: { prUrl: 'https://git.example/pr/1' } }), 'conflict')
        expect(await loom.getRun(runId)).toMatchObject({ status: 'running', steps: [] })
        expect(worker.stepsOf(runId)).toEqual(['update-chart', 'update-chart'])
      })

      test('accepts a report of the current attempt, and one without an attempt (an API 0.2 worker) for the step in flight', async () => {
        const runId = await loom.queue(M, 'svc-0')
        await loom.execute(runId)
        const attempt = await dispatchedAttempt(runId, 'update-chart')
        await loom.complete(runId, { stepName: 'update-chart', candidate: { id: 'svc-0' }, success: true, attempt })
        await dispatchedAttempt(runId, 'open-pr')
        await loom.complete(runId, { stepName: 'open-pr', candidate: { id: 'svc-0' }, success: true })
        await eventually(async () => expect(await statusOf('svc-0')).toBe('completed'))
        // The results keep the API 0.2 shape: the run's steps are all of its current attempt.
        expect((await loom.getRun(runId)).steps).toEqual([
          { stepName: 'update-chart', candidate: candidates(1)[0], success: true },
          { stepName: 'open-pr', candidate: candidates(1)[0], success: true },
        ])
      })

      test('refuses a report whose attempt is not a positive integer, naming attempt', async () => {
        const runId = await loom.queue(M, 'svc-0')
        await loom.execute(runId)
        for (const attempt of [0, 1.5, '1']) {
          const event = { stepName: 'update-chart', candidate: { id: 'svc-0' }, success: true, attempt } as never
          const refused = await expectLoomError(loom.complete(runId, event), 'invalid')
          expect(refused.message).toMatch(/^attempt: /)
        }
        expect((await loom.getRun(runId)).steps).toEqual([])
      })

      test('records a pull request opened as progress on the step', async () => {
        const runId = await loom.queue(M, 'svc-0')
        await loom.execute(runId)
        await loom.prOpened(runId, {
          stepName: 'update-chart',
          candidate: { id: 'svc-0' },
          success: true,
          metadata: { prUrl: 'https://git.example/pr/1' },
        })
        expect((await loom.getRun(runId)).steps).toEqual([
          // The candidate as dispatched, not the `{ id }` the worker reported.
          {
            stepName: 'update-chart',
            candidate: candidates(1)[0],
            success: true,
            metadata: { phase: 'open', prUrl: 'https://git.example/pr/1' },
          },
        ])
        expect(await statusOf('svc-0')).toBe('running')
      })

      test('resumes a failed run at the step that failed, carrying over the steps that succeeded', async () => {
        const runId = await loom.queue(M, 'svc-0')
        await loom.execute(runId)
        await finishSteps(runId, ['update-chart'])
        await eventually(() => expect(worker.stepsOf(runId)).toEqual(['update-chart', 'open-pr']))
        await loom.complete(runId, {
          stepName: 'open-pr',
          candidate: { id: 'svc-0' },
          success: false,
          metadata: { error: 'conflict in values.yaml' },
        })
        await eventually(async () => expect(await statusOf('svc-0')).toBe('not_started'))
        const failedAttempt = worker.dispatched.at(-1)!.request.attempt!

        await loom.execute(await loom.queue(M, 'svc-0'), { resume: true })
        await eventually(() => expect(worker.stepsOf(runId)).toEqual(['update-chart', 'open-pr', 'open-pr']))
        const resumed = worker.dispatched.at(-1)!.request
        expect(resumed.attempt).toBeGreaterThan(failedAttempt)
        const carried = await loom.getRun(runId)
        expect(carried.steps?.map((s) => [s.stepName, s.success])).toEqual([['update-chart', true]])
        await loom.complete(runId, { stepName: 'open-pr', candidate: { id: 'svc-0' }, success: true, attempt: resumed.attempt! })
        await eventually(async () => expect(await statusOf('svc-0')).toBe('completed'))
        expect((await loom.getRun(runId)).steps?.map((s) => [s.stepName, s.success])).toEqual([
          ['update-chart', true],
          ['open-pr', true],
        ])
      })

      test('resumes by step name when the migration was re-announced with a step added before the one that failed', async () => {
        const runId = await loom.queue(M, 'svc-0')
        await loom.execute(runId)
        await finishSteps(runId, ['update-chart'])
        await eventually(() => expect(worker.stepsOf(runId)).toEqual(['update-chart', 'open-pr']))
        await loom.complete(runId, { stepName: 'open-pr', candidate: { id: 'svc-0' }, success: false })
        await eventually(async () => expect(await statusOf('svc-0')).toBe('not_started'))
        await loom.announce(announcement(M, { steps: ['lint', 'update-chart', 'open-pr'] }))
        await loom.execute(await loom.queue(M, 'svc-0'), { resume: true })
        // The new step runs, the carried one does not, and the failed one runs again.
        await finishSteps(runId, ['lint'])
        await eventually(() => expect(worker.stepsOf(runId)).toEqual(['update-chart', 'open-pr', 'lint', 'open-pr']))
        await loom.complete(runId, { stepName: 'open-pr', candidate: { id: 'svc-0' }, success: true })
        await eventually(async () => expect(await statusOf('svc-0')).toBe('completed'))
        expect(worker.stepsOf(runId)).toEqual(['update-chart', 'open-pr', 'lint', 'open-pr'])
      })

      test('executes from step 1 without resume, and with resume when nothing succeeded before', async () => {
        const runId = await loom.queue(M, 'svc-0')
        await loom.execute(runId, { resume: true })
        await eventually(() => expect(worker.stepsOf(runId)).toEqual(['update-chart']))
        await loom.complete(runId, { stepName: 'update-chart', candidate: { id: 'svc-0' }, success: true })
        await eventually(() => expect(worker.stepsOf(runId)).toEqual(['update-chart', 'open-pr']))
        await loom.complete(runId, { stepName: 'open-pr', candidate: { id: 'svc-0' }, success: false })
        await eventually(async () => expect(await statusOf('svc-0')).toBe('not_started'))
        await loom.execute(await loom.queue(M, 'svc-0'))
        await eventually(() => expect(worker.stepsOf(runId)).toEqual(['update-chart', 'open-pr', 'update-chart']))
        expect((await loom.getRun(runId)).steps).toEqual([])
      })

      test('fails a dispatched step with no report by its deadline, naming step, worker app and deadline', async () => {
        const timed = announcement('timed', { candidates: candidates(1) })
        timed.steps[0]!.config = { timeout: '1s' }
        await loom.announce(timed)
        const runId = await loom.queue('timed', 'svc-0')
        const started = Date.now()
        await loom.execute(runId)
        await eventually(() => expect(worker.stepsOf(runId)).toEqual(['update-chart']))
        // The worker accepted the step and went quiet.
        await eventually(
          async () => expect((await loom.listCandidates('timed')).find((c) => c.id === 'svc-0')?.status).toBe('not_started'),
          { timeoutMs: 10_000 },
        )
        expect(Date.now() - started).toBeGreaterThanOrEqual(1_000)
        const status = await loom.runStatus(runId)
        expect(status.runtimeStatus).toBe('FAILED')
        const error = status.result.results.find((r) => r.stepName === 'update-chart')?.metadata?.error
        expect(error).toMatch(/step "update-chart" \(worker app charts\) had no final report within its deadline of 1s/)
        // The worker's report, once it comes, changes nothing.
        await expectLoomError(loom.complete(runId, { stepName: 'update-chart', candidate: { id: 'svc-0' }, success: true }), 'conflict')
        expect(worker.stepsOf(runId)).toEqual(['update-chart'])
      })

      test('refuses a step deadline that is not a whole number of s, m or h up to 90 days, naming the step', async () => {
        for (const timeout of ['soon', '0s', '1.5h', '90', '2161h']) {
          const bad = announcement('timed')
          bad.steps[1]!.config = { timeout }
          const error = await expectLoomError(loom.announce(bad), 'invalid')
          expect(error.details?.field).toBe('steps.1.config.timeout')
          expect(error.message).toContain('step "open-pr"')
        }
        await expectLoomError(loom.getMigration('timed'), 'not_found')
        const good = announcement('timed')
        good.steps[0]!.config = { timeout: '90s' }
        good.steps[1]!.config = { timeout: '2160h' }
        await expect(loom.announce(good)).resolves.toMatchObject({ id: 'timed' })
      })

      test('asks the worker for a dry run of the candidate with the migration steps', async () => {
        const result = await loom.dryRun(M, 'svc-1')
        expect(result.steps.map((s) => s.stepName)).toEqual(['update-chart', 'open-pr'])
        expect(result.steps[0]?.files?.[0]).toEqual({
          path: 'apps/svc-1/values.yaml',
          repo: 'gitops',
          before: 'chart: generic\n',
          after: 'chart: svc-1\n',
        })
        expect(worker.dryRuns).toHaveLength(1)
        expect(worker.dryRuns[0]).toMatchObject({ migrationId: M, candidate: { id: 'svc-1', kind: 'application' } })
        await expectLoomError(loom.dryRun(M, 'ghost'), 'not_found')
      })
    })

    describe('activity and history', () => {
      beforeEach(async () => {
        await loom.announce(announcement(M, { candidates: candidates(2) }))
      })

      test('logs every change, oldest first, paged by cursor', async () => {
        const runId = await loom.queue(M, 'svc-0')
        await loom.dequeue(runId)
        await loom.queue(M, 'svc-1')
        const page = await loom.activity(M, { limit: 2 })
        expect(page.entries.map((e) => e.type)).toEqual(['migration.announced', 'run.queue'])
        expect(page.next).toBe(page.entries[1]!.id)
        const rest = await loom.activity(M, { after: page.next!, limit: 2 })
        expect(rest.entries.map((e) => [e.type, e.candidateId])).toEqual([
          ['run.dequeue', 'svc-0'],
          ['run.queue', 'svc-1'],
        ])
        const end = await loom.activity(M, { after: rest.next! })
        expect(end).toEqual({ entries: [] })
        const latest = await loom.activity(M, { order: 'newest', limit: 2 })
        expect(latest).toEqual({ entries: [rest.entries[1], rest.entries[0]] })
        expect(page.entries[1]).toMatchObject({ runId, candidateId: 'svc-0', attempt: expect.any(Number), actor: expect.any(Object) })
      })

      test('refuses a cursor or limit it cannot read, and an unknown migration', async () => {
        await expectLoomError(loom.activity(M, { after: 'abc' }), 'invalid')
        await expectLoomError(loom.activity(M, { limit: 0 }), 'invalid')
        await expectLoomError(loom.activity(M, { limit: 1001 }), 'invalid')
        await expectLoomError(loom.activity(M, { order: 'latest' as 'newest' }), 'invalid')
        await expectLoomError(loom.activity('nope'), 'not_found')
      })

      test('shows every attempt of a run, with the cancel’s reason and each step’s times', async () => {
        const runId = await loom.queue(M, 'svc-0')
        await loom.execute(runId)
        await loom.cancel(runId, { reason: 'wrong chart version' })
        await loom.queue(M, 'svc-0')
        await loom.execute(runId)
        await finishSteps(runId, ['update-chart', 'open-pr'])
        await eventually(async () => expect(await statusOf('svc-0')).toBe('completed'))
        const history = await loom.history(runId)
        expect(history).toMatchObject({ runId, migrationId: M, candidateId: 'svc-0' })
        expect(history.attempts.map((a) => a.outcome)).toEqual(['cancelled', 'completed'])
        const [first, second] = history.attempts
        expect(first!.reason).toBe('wrong chart version')
        expect(first!.endedAt).toBeDefined()
        expect(second!.attempt).toBeGreaterThan(first!.attempt)
        expect(second!.steps.map((s) => [s.stepName, s.done, s.success])).toEqual([
          ['update-chart', true, true],
          ['open-pr', true, true],
        ])
        for (const step of second!.steps) expect(Date.parse(step.reportedAt!)).toBeGreaterThanOrEqual(Date.parse(second!.startedAt!))
        expect(second!.durationMs).toBeGreaterThanOrEqual(0)
        const cancelled = (await loom.getMigration(M)).cancelledAttempts ?? []
        expect(cancelled).toHaveLength(1)
        expect(cancelled[0]).toMatchObject({
          runId,
          attempt: first!.attempt,
          reason: 'wrong chart version',
          cancelledBy: expect.any(Object),
        })
      })

      test('shows how a rejected review and a cancel ended, and finds them by last outcome', async () => {
        await loom.announce(announcement(M, { steps: ['review', 'update-chart'], manual: ['review'], candidates: candidates(3) }))
        const reviewed = await loom.queue(M, 'svc-0')
        await loom.execute(reviewed)
        await eventually(async () => expect((await loom.getRun(reviewed)).steps?.[0]?.metadata?.phase).toBe('awaiting_review'))
        // The caller's own review value does not decide: the outcome does.
        await loom.complete(reviewed, {
          stepName: 'review',
          candidate: { id: 'svc-0' },
          success: false,
          metadata: { review: 'approved', note: 'wrong team' },
        })
        await eventually(async () => expect(await statusOf('svc-0')).toBe('not_started'))
        const cancelled = await loom.queue(M, 'svc-1')
        await loom.cancel(cancelled, { reason: 'freeze' })
        const rejected = await loom.searchCandidates(M, { lastOutcome: 'rejected' })
        expect(rejected.total).toBe(1)
        expect(rejected.candidates[0]).toMatchObject({
          id: 'svc-0',
          status: 'not_started',
          lastAttempt: {
            outcome: 'rejected',
            step: 'review',
            reason: 'wrong team',
            by: { kind: expect.stringMatching(/^(operator|system)$/) },
          },
        })
        expect((await loom.getCandidate(M, 'svc-1')).lastAttempt).toMatchObject({
          outcome: 'cancelled',
          reason: 'freeze',
          by: { kind: expect.stringMatching(/^(operator|system)$/) },
        })
        expect((await loom.getMigration(M)).counts).toMatchObject({ not_started: 3, failed: 0 })
        // The history tells the same: who rejected it and why, not Loom ending the run.
        const [attempt] = (await loom.history(reviewed)).attempts
        expect(attempt).toMatchObject({ outcome: 'rejected', reason: 'wrong team', endedBy: rejected.candidates[0]!.lastAttempt!.by })
        await expectLoomError(loom.searchCandidates(M, { lastOutcome: 'lost' as 'failed' }), 'invalid')
      })

      test('answers a run with no attempt with none, and an unknown candidate with not_found', async () => {
        expect(await loom.history('app-chart__svc-1')).toEqual({
          runId: 'app-chart__svc-1',
          migrationId: M,
          candidateId: 'svc-1',
          attempts: [],
        })
        await expectLoomError(loom.history('app-chart__nope'), 'not_found')
        await expectLoomError(loom.cancel('app-chart__svc-0', { reason: 5 as unknown as string }), 'invalid')
      })
    })

    describe('events and health', () => {
      test('tells subscribers about announcements, submissions, status changes and step reports', async () => {
        const events: LoomEvent[] = []
        const unsubscribe = loom.subscribe((e) => events.push(e))
        try {
          // A subscription over a network may need a moment to be established.
          await new Promise((r) => setTimeout(r, 200))
          await loom.announce(announcement(M, { steps: ['update-chart'], candidates: candidates(1) }))
          await loom.submitCandidates(M, candidates(2))
          await loom.patchCandidates(M, { upsert: [{ id: 'svc-9' }], remove: ['svc-1'] })
          const runId = await loom.queue(M, 'svc-0')
          await loom.execute(runId)
          await finishSteps(runId, ['update-chart'])
          await eventually(() =>
            expect(events.filter((e) => e.type === 'run.status').map((e) => (e as { status: string }).status)).toEqual([
              'queued',
              'running',
              'completed',
            ]),
          )
          expect(events.map((e) => e.type)).toContain('migration.updated')
          expect(events.find((e) => e.type === 'candidates.submitted' && e.count === 2)).toBeDefined()
          expect(events.find((e) => e.type === 'candidates.patched')).toMatchObject({ migrationId: M, upserted: 1, removed: 1 })
          const reported = events.find((e) => e.type === 'step.reported')
          expect(reported).toMatchObject({
            runId,
            migrationId: M,
            candidateId: 'svc-0',
            done: true,
            result: { stepName: 'update-chart', success: true },
          })
        } finally {
          unsubscribe()
        }
      })

      test('reports health', async () => {
        expect(await loom.health()).toEqual({ status: 'ok' })
      })
    })

    done()
  })
}
