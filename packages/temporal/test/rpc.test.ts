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

it("passes upsertMigration's claimant through, and an argument left out stays left out", async () => {
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
