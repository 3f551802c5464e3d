import { describe, expect, it } from 'vitest'
import { LoomError } from './errors'
import { localEngine } from './local-engine'
import { createLoom } from './loom/index'
import { memoryStore } from './memory-store'
import type { MigrationStore } from './ports'
import { announcement, eventually, expectLoomError, fakeWorker } from './testing/fakes'
import { redactUrl, workerUrlPolicy } from './worker-urls'

describe('workerUrlPolicy', () => {
  it('allows every URL when it has no entries', () => {
    for (const entries of [undefined, [], '', ' , ']) {
      const policy = workerUrlPolicy(entries)
      expect(policy.allowed).toEqual([])
      expect(policy.allows('http://127.0.0.1:4309/admin')).toBe(true)
      expect(() => policy.check('http://anything.example/')).not.toThrow()
    }
  })

  it('takes an origin to allow every path under it, and nothing beside it', () => {
    const policy = workerUrlPolicy(['https://a.internal'])
    expect(policy.allowed).toEqual(['https://a.internal/'])
    for (const url of [
      'https://a.internal',
      'https://a.internal/',
      'https://a.internal/x',
      'https://a.internal/x/y',
      'HTTPS://A.Internal/x',
    ]) {
      expect(policy.allows(url), url).toBe(true)
    }
    for (const url of [
      'https://a.internal.evil.example/',
      'https://a.internalx/',
      'https://a.internal:8443/',
      'http://a.internal/',
      'https://a.internal@evil.example/',
      'https://evil.example/https://a.internal/',
      'not a url',
    ]) {
      expect(policy.allows(url), url).toBe(false)
    }
  })

  it('takes a prefix to allow the paths under it at a segment boundary', () => {
    const policy = workerUrlPolicy('https://workers.internal/loom/, https://charts.internal:8443/api')
    expect(policy.allowed).toEqual(['https://workers.internal/loom/', 'https://charts.internal:8443/api'])
    for (const url of [
      'https://workers.internal/loom/',
      'https://workers.internal/loom/charts',
      'https://charts.internal:8443/api',
      'https://charts.internal:8443/api/v1',
    ]) {
      expect(policy.allows(url), url).toBe(true)
    }
    for (const url of [
      'https://workers.internal/',
      'https://workers.internal/loomx',
      'https://workers.internal/other/loom/',
      'https://workers.internal/loom/../admin',
      'https://workers.internal/loom/%2e%2e/admin',
      'https://charts.internal:8443/apix',
      'https://charts.internal/api',
    ]) {
      expect(policy.allows(url), url).toBe(false)
    }
  })

  it.each([
    ['ftp://a.internal', 0, 'must be an http or https URL'],
    ['https://user:pw@a.internal', 0, 'must not carry credentials'],
    ['https://a.internal/?x=1', 0, 'must not have a query or a fragment'],
    ['https://a.internal/#top', 0, 'must not have a query or a fragment'],
    ['a.internal', 0, 'must be an absolute URL'],
    ['https://a.internal/loom/..%2fadmin', 0, 'must not encode'],
    ['https://a.internal/loom%5Cadmin', 0, 'must not encode'],
    ['https://a.internal/loom/x%2Ey/admin', 0, 'must not encode'],
  ])('refuses the entry %j at once, naming it', (entry, _, says) => {
    for (const [entries, index] of [
      [[entry], 0],
      [`https://ok.internal, ${entry}`, 1],
    ] as const) {
      const error = catchOf(() => workerUrlPolicy(entries))
      expect(error.code).toBe('invalid')
      expect(error.details?.field).toBe(`allowedWorkerUrls.${index}`)
      expect(error.message).toContain(says)
      expect(error.message).not.toContain('user:pw')
    }
  })

  it('says, refusing a URL, which it refused (without credentials) and what it allows', () => {
    const error = catchOf(() => workerUrlPolicy(['https://a.internal']).check('https://user:pw@evil.example/x'))
    expect(error.code).toBe('invalid')
    expect(error.details).toEqual({ field: 'workerUrl' })
    expect(error.message).toBe(
      'workerUrl: https://evil.example/x is not an allowed worker URL; this deployment calls only https://a.internal/ (allowedWorkerUrls / LOOM_WORKER_URLS)',
    )
    expect(catchOf(() => workerUrlPolicy(['https://a.internal']).check('https://b.internal', 'target')).details?.field).toBe('target')
  })
})

describe('redactUrl', () => {
  it.each([
    ['https://user:pw@host.internal/x', 'https://host.internal/x'],
    ['http://user@host.internal:4000', 'http://host.internal:4000'],
    ['http://:pw@host.internal/', 'http://host.internal/'],
    ['https://host.internal/a@b', 'https://host.internal/a@b'],
    ['https://host.internal/x?mail=a@b', 'https://host.internal/x?mail=a@b'],
    ['https://host.internal', 'https://host.internal'],
  ])('%s → %s', (url, redacted) => {
    expect(redactUrl(url)).toBe(redacted)
  })
})

describe('createLoom({ allowedWorkerUrls })', () => {
  const ALLOWED = 'https://workers.internal/loom/'

  function setup(store: MigrationStore, allowedWorkerUrls?: string[]) {
    const worker = fakeWorker()
    const loom = createLoom({
      store,
      engine: localEngine({ retryDelayMs: 5, dispatchAttempts: 1 }),
      dispatcher: worker.dispatcher,
      dryRunner: worker.dryRunner,
      reconcile: false,
      onError: () => {},
      ...(allowedWorkerUrls ? { allowedWorkerUrls } : {}),
    })
    return { loom, worker }
  }

  it('refuses an announce with a URL off the list, naming workerUrl, and stores nothing', async () => {
    const { loom } = setup(memoryStore(), [ALLOWED])
    for (const workerUrl of [
      'http://127.0.0.1:4309/admin',
      'https://workers.internal/loomx',
      'https://workers.internal.evil.example/loom/',
    ]) {
      const error = await expectLoomError(loom.announce(announcement('app-chart', { workerUrl, candidates: [{ id: 'svc-0' }] })), 'invalid')
      expect(error.details?.field).toBe('workerUrl')
      expect(error.message).toContain(`workerUrl: ${workerUrl} is not an allowed worker URL`)
    }
    expect(await loom.listMigrations()).toEqual([])
    const allowed = await loom.announce(announcement('app-chart', { workerUrl: `${ALLOWED}charts` }))
    expect(allowed.workerUrl).toBe(`${ALLOWED}charts`)
  })

  it('refuses at the schema, before the list, a URL with credentials or a query, without echoing the credentials', async () => {
    const { loom } = setup(memoryStore())
    for (const [workerUrl, says] of [
      ['http://user:pw@127.0.0.1:4309/', 'must not carry credentials'],
      ['http://127.0.0.1:4309/admin/delete-everything?ignore=', 'must not have a query or a fragment'],
      ['file:///etc/passwd', 'must be an http or https URL'],
    ] as const) {
      const error = await expectLoomError(loom.announce(announcement('app-chart', { workerUrl })), 'invalid')
      expect(error.details?.field).toBe('workerUrl')
      expect(error.message).toContain(says)
      expect(error.message).not.toContain('user:pw')
    }
    expect(await loom.listMigrations()).toEqual([])
  })

  it('sends no step and no dry run to a URL stored before the list was set', async () => {
    const store = memoryStore()
    const before = setup(store)
    await before.loom.announce(announcement('app-chart', { workerUrl: 'http://127.0.0.1:4309/admin', candidates: [{ id: 'svc-0' }] }))
    await before.loom.close()

    const { loom, worker } = setup(store, [ALLOWED])
    const dryRun = await expectLoomError(loom.dryRun('app-chart', 'svc-0'), 'invalid')
    expect(dryRun.details?.field).toBe('workerUrl')
    expect(worker.dryRuns).toEqual([])

    const runId = await loom.queue('app-chart', 'svc-0')
    await loom.execute(runId)
    const failure = await eventually(async () => {
      const status = await loom.runStatus(runId)
      const error = status.result.results[0]?.metadata?.error
      expect(error).toBeDefined()
      return error!
    })
    expect(failure).toContain('http://127.0.0.1:4309/admin is not an allowed worker URL')
    expect(worker.dispatched).toEqual([])
    await loom.close()
  })
})

function catchOf(run: () => unknown): LoomError {
  try {
    run()
  } catch (error) {
    if (LoomError.is(error)) return error
    throw error
  }
  throw new Error('expected a LoomError')
}
