import { createLoom, LoomError, localEngine, memoryStore, type Candidate, type Loom } from '@loom/core'
import { expectLoomError } from '@loom/core/testing'
import { loomApp } from '@loom/hono'
import { describe, expect, it } from 'vitest'
import { partsOf } from './announcing'
import { defineMigration } from './define-migration'
import { createWorker, type Worker } from './worker'

const WORKER_TOKEN = 'worker-secret'
const found = (n: number): Candidate[] =>
  Array.from({ length: n }, (_, i) => ({ id: `svc-${i}`, kind: 'application', metadata: { repoName: `acme/svc-${i}`, team: 'payments' } }))

const migrationOf = (candidates: Candidate[]) =>
  defineMigration({ id: 'app-chart', name: 'App chart', steps: [{ name: 'edit', run: () => {} }], discover: () => candidates })

/** Loom in this process, with the calls the worker makes to it counted by method. */
function counted(wrap: (loom: Loom, calls: string[]) => Partial<Loom> = () => ({})) {
  const loom = createLoom({ store: memoryStore(), engine: localEngine(), reconcile: false })
  const calls: string[] = []
  const seen = {} as Record<string, unknown>
  for (const [name, method] of Object.entries(loom.as({ kind: 'worker', name: 'charts' }))) {
    seen[name] = (...args: unknown[]) => {
      calls.push(name)
      return (method as (...a: unknown[]) => unknown)(...args)
    }
  }
  const target = { ...(seen as unknown as Loom), ...wrap(seen as unknown as Loom, calls) }
  return { loom, target, calls }
}

const ids = async (loom: Loom) => (await loom.listCandidates('app-chart')).map((c) => c.id)

describe('partsOf', () => {
  it('cuts a list in order by candidates and by bytes, a candidate larger than a part on its own', () => {
    const list = found(7)
    expect(partsOf(list, { candidates: 3, bytes: 1_000_000 }).map((p) => p.length)).toEqual([3, 3, 1])
    expect(partsOf(list, { candidates: 3, bytes: 1_000_000 }).flat()).toEqual(list)
    const one = JSON.stringify(list[0]).length
    // Two candidates and the body around them fit; a third does not.
    expect(partsOf(list, { candidates: 100, bytes: 16 + 2 * (one + 1) }).map((p) => p.length)).toEqual([2, 2, 2, 1])
    expect(partsOf([{ id: 'big', metadata: { blob: 'x'.repeat(500) } }, { id: 'small' }], { candidates: 10, bytes: 100 })).toEqual([
      [{ id: 'big', metadata: { blob: 'x'.repeat(500) } }],
      [{ id: 'small' }],
    ])
    // Bytes, not characters: é is two.
    expect(partsOf([{ id: 'a', kind: 'é'.repeat(30) }, { id: 'b' }], { candidates: 10, bytes: 16 + 70 })).toHaveLength(2)
    expect(partsOf([], { candidates: 3, bytes: 100 })).toEqual([])
  })
})

describe('a worker discovering a large list', () => {
  it('sends the list whole to a Loom that has no discoveries (it answers their route 404)', async () => {
    const { loom, target, calls } = counted(() => ({
      openDiscovery: async () => {
        throw new LoomError('not_found', 'no route POST /migrations/app-chart/discoveries')
      },
    }))
    const worker = createWorker({ app: 'charts', loom: target, migrations: [migrationOf(found(10))], discoveryParts: { candidates: 3 } })
    await worker.start()
    expect(calls).toEqual(['announce', 'submitCandidates'])
    expect(await ids(loom)).toEqual(found(10).map((c) => c.id))
    await worker.stop()
    await loom.close()
  })

  it('sends it through a discovery in parts, and a list that fits in one part in one submission', async () => {
    const { loom, target, calls } = counted()
    const big: Worker = createWorker({
      app: 'charts',
      loom: target,
      migrations: [migrationOf(found(10))],
      discoveryParts: { candidates: 3 },
    })
    await big.start()
    expect(calls.filter((c) => c !== 'announce')).toEqual([
      'openDiscovery',
      'addToDiscovery',
      'addToDiscovery',
      'addToDiscovery',
      'addToDiscovery',
      'commitDiscovery',
    ])
    expect(await ids(loom)).toEqual(found(10).map((c) => c.id))
    await big.stop()

    calls.length = 0
    const small = createWorker({ app: 'charts', loom: target, migrations: [migrationOf(found(3))], discoveryParts: { candidates: 3 } })
    await small.start()
    expect(calls).toEqual(['announce', 'submitCandidates'])
    expect(await ids(loom)).toEqual(['svc-0', 'svc-1', 'svc-2'])
    await small.stop()
    await loom.close()
  })

  it('starts again with a new discovery when a part cannot reach Loom', async () => {
    let failures = 1
    const { loom, target, calls } = counted((inner) => ({
      addToDiscovery: async (migrationId, discoveryId, part) => {
        // The second part of the first attempt is lost.
        if (calls.filter((c) => c === 'addToDiscovery').length === 2 && failures-- > 0) throw new LoomError('unavailable', 'down')
        return inner.addToDiscovery(migrationId, discoveryId, part)
      },
    }))
    const worker = createWorker({
      app: 'charts',
      loom: target,
      migrations: [migrationOf(found(5))],
      discoveryParts: { candidates: 2 },
      retry: { attempts: 3, initialDelayMs: 1 },
    })
    await worker.start()
    expect(calls.filter((c) => c === 'openDiscovery')).toHaveLength(2)
    expect(await ids(loom)).toEqual(found(5).map((c) => c.id))
    await worker.stop()
    await loom.close()
  })

  it('refuses a part size that is not a positive integer, naming it', () => {
    const { target } = counted()
    const error = (() => {
      try {
        createWorker({ app: 'charts', loom: target, migrations: [], discoveryParts: { bytes: 0 } })
      } catch (e) {
        return e
      }
    })()
    expect(LoomError.is(error, 'invalid')).toBe(true)
    expect((error as LoomError).details).toEqual({ field: 'discoveryParts.bytes' })
  })

  it('sends a list larger than Loom’s body limit over HTTP, in parts under it', async () => {
    const loom = createLoom({ store: memoryStore(), engine: localEngine(), reconcile: false })
    const api = loomApp(loom, { token: 'operator', workerToken: WORKER_TOKEN, maxBodyBytes: 1024 * 1024 })
    const fetch = async (input: Request | string | URL, init?: RequestInit) =>
      api.request(new Request(String(input).replace('/api', ''), init))
    const list = found(12_000)
    // One request could not carry it.
    expect(JSON.stringify({ candidates: list }).length).toBeGreaterThan(1024 * 1024)
    const tooLarge = createWorker({
      app: 'charts',
      loomUrl: 'http://loom.test/api',
      token: WORKER_TOKEN,
      fetch,
      migrations: [migrationOf(list)],
      discoveryParts: { candidates: 100_000, bytes: 10 * 1024 * 1024 },
      retry: { attempts: 1 },
    })
    await expectLoomError(tooLarge.start(), 'too_large')
    await tooLarge.stop()
    const worker = createWorker({
      app: 'charts',
      loomUrl: 'http://loom.test/api',
      token: WORKER_TOKEN,
      fetch,
      migrations: [migrationOf(list)],
      discoveryParts: { bytes: 512 * 1024 },
    })
    await worker.start()
    expect(await ids(loom)).toEqual(list.map((c) => c.id))
    await worker.stop()
    await loom.close()
  })
})
