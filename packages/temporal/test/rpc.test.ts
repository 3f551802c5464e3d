/**
 * The restart test's worker process reaches the test's store and dispatcher over rpc: what it
 * calls must arrive as it was called, optional arguments left out included.
 */
import { memoryStore, type WorkerTarget } from '@loom/core'
import { afterEach, expect, it } from 'vitest'
import { rpcDispatcher, rpcStore, serveRpc } from './support/rpc'

let close: () => Promise<void> = async () => {}
afterEach(async () => close())

const definition = (name: string) => ({ id: 'app-chart', name, steps: [{ name: 'bump-chart', workerApp: 'charts' }] })

it("passes upsertMigration's claimant and the activity drafts through, and an argument left out stays left out", async () => {
  const store = memoryStore()
  const targets: WorkerTarget[] = []
  const rpc = await serveRpc({ store, dispatcher: { dispatch: async (target) => void targets.push(target) } })
  close = rpc.close
  const remote = rpcStore(rpc.url)

  expect((await remote.upsertMigration(definition('App chart'), [{ id: 'billing-api' }], 'team-a')).owner).toBe('team-a')
  // Candidates left out (not null) keep the list; another worker's claim changes nothing.
  expect(await remote.upsertMigration(definition('Taken over'), undefined, 'team-b')).toMatchObject({ name: 'App chart', owner: 'team-a' })
  // No claimant (not a null one): an operator's upsert writes the definition and keeps the owner.
  expect(await remote.upsertMigration(definition('By operator'), undefined, undefined)).toMatchObject({
    name: 'By operator',
    owner: 'team-a',
  })
  expect((await store.listCandidates('app-chart'))!.candidates.map((c) => c.id)).toEqual(['billing-api'])

  // The activity drafts travel as the last argument, and the log reads back through the rpc.
  const alice = { kind: 'operator' as const, name: 'alice' }
  const submitted = {
    at: '2026-01-01T00:00:00.000Z',
    actor: alice,
    type: 'candidates.submitted' as const,
    migrationId: 'app-chart',
    detail: { count: 1 },
  }
  expect(await remote.replaceCandidates('app-chart', [{ id: 'billing-api' }], submitted)).toBe(true)
  expect(
    await remote.transition({
      migrationId: 'app-chart',
      candidateId: 'billing-api',
      action: 'queue',
      at: '2026-01-01T00:01:00.000Z',
      by: alice,
    }),
  ).toMatchObject({ ok: true })
  const entries = await remote.listActivity({ migrationId: 'app-chart', limit: 10 })
  expect(entries.map(({ id: _id, ...entry }) => entry)).toEqual([
    submitted,
    {
      at: '2026-01-01T00:01:00.000Z',
      actor: alice,
      type: 'run.queue',
      migrationId: 'app-chart',
      runId: 'app-chart__billing-api',
      candidateId: 'billing-api',
      attempt: 1,
      detail: {},
    },
  ])
  expect(await remote.listActivity({ migrationId: 'app-chart', after: entries[0]!.id, limit: 10 })).toEqual([entries[1]])

  await rpcDispatcher(rpc.url).dispatch(
    { workerApp: 'charts', owner: 'team-a' },
    {
      migrationId: 'app-chart',
      runId: 'app-chart__billing-api',
      stepName: 'bump-chart',
      candidate: { id: 'billing-api' },
      callbackId: 'app-chart__billing-api',
      eventName: 'step-completed:bump-chart',
      attempt: 1,
    },
  )
  expect(targets).toEqual([{ workerApp: 'charts', owner: 'team-a' }])
})
