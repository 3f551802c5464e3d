import { describe, expect, it } from 'vitest'
import { createLoom, localEngine, memoryStore, type Loom } from '@loom/core'
import { latestActivity } from './activity'

async function setup(candidates = 3) {
  const loom = createLoom({
    store: memoryStore(),
    engine: localEngine(),
    dispatcher: { dispatch: async () => {} },
    onError: () => {},
  })
  const announce = (id: string) =>
    loom.announce({
      id,
      name: `Migration ${id}`,
      steps: [{ name: 'bump', workerApp: 'charts' }],
      candidates: Array.from({ length: candidates }, (_, i) => ({ id: `svc-${i}` })),
    })
  return { loom, announce }
}

const close = (loom: Loom) => (loom as Loom & { close(): Promise<void> }).close()

describe('latestActivity', () => {
  it('merges every migration’s log newest first, with the actor, and links runs whose candidate exists', async () => {
    const { loom, announce } = await setup()
    await announce('first')
    await announce('second')
    const alice = loom.as({ kind: 'operator', name: 'alice' })
    // A few ms apart: across migrations the feed orders by time.
    const tick = () => new Promise((r) => setTimeout(r, 5))
    await alice.queue('first', 'svc-0')
    await tick()
    await alice.cancel('first__svc-0', { reason: 'not yet' })
    await tick()
    await loom.queue('second', 'svc-1')

    const feed = await latestActivity(loom, [
      { id: 'first', name: 'First' },
      { id: 'second', name: 'Second' },
    ])
    const types = feed.entries.map((e) => [e.migrationId, e.type])
    expect(types.slice(0, 3)).toEqual([
      ['second', 'run.queue'],
      ['first', 'run.cancel'],
      ['first', 'run.queue'],
    ])
    const cancel = feed.entries[1]!
    expect(cancel).toMatchObject({
      actor: { kind: 'operator', name: 'alice' },
      detail: { reason: 'not yet' },
      migrationName: 'First',
      href: '/runs/first__svc-0',
    })
    // Entries without a run (the announce) link nowhere.
    expect(feed.entries.filter((e) => e.type === 'migration.announced').every((e) => e.href === undefined)).toBe(true)
    await close(loom)
  })

  it('links no run whose candidate is gone', async () => {
    const { loom, announce } = await setup()
    await announce('first')
    await loom.queue('first', 'svc-2')
    await loom.dequeue('first__svc-2')
    // Announcing again without svc-2 removes it; its entries stay in the log.
    await loom.announce({
      id: 'first',
      name: 'Migration first',
      steps: [{ name: 'bump', workerApp: 'charts' }],
      candidates: [{ id: 'svc-0' }],
    })
    const feed = await latestActivity(loom, [{ id: 'first', name: 'First' }])
    const ofGone = feed.entries.filter((e) => e.candidateId === 'svc-2')
    expect(ofGone.map((e) => e.type)).toEqual(['run.dequeue', 'run.queue'])
    expect(ofGone.every((e) => e.href === undefined)).toBe(true)
    await close(loom)
  })

  it('shows the latest entries however long the log, reading one page per migration', async () => {
    const { loom, announce } = await setup(300)
    await announce('first')
    for (let i = 0; i < 300; i++) await loom.queue('first', `svc-${i}`)
    let reads = 0
    const counting = Object.create(loom) as Loom
    counting.activity = (...args) => {
      reads++
      return loom.activity(...args)
    }
    const feed = await latestActivity(counting, [{ id: 'first', name: 'First' }], { keep: 3 })
    expect(feed.entries.map((e) => e.candidateId)).toEqual(['svc-299', 'svc-298', 'svc-297'])
    expect(reads).toBe(1)
    await close(loom)
  })
})
