import { execFile } from 'node:child_process'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { promisify } from 'node:util'
import { LoomError } from '@loom/core'
import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import { migrate, pglite, postgresStore } from './index'

const run = promisify(execFile)
const fixture = fileURLToPath(new URL('../test/fixtures/write-embedded.ts', import.meta.url))

describe('pglite({ dataDir })', () => {
  let dataDir: string

  beforeEach(async () => {
    dataDir = await mkdtemp(join(tmpdir(), 'loom-pglite-test-'))
  })
  afterEach(async () => {
    await rm(dataDir, { recursive: true, force: true })
  })

  it('reads back what another process wrote to the folder, and keeps what this one adds', async () => {
    const folder = join(dataDir, 'state', 'db') // missing folders are made
    const child = await run(process.execPath, ['--import', 'tsx', fixture, folder], { timeout: 60_000 })
    expect(child.stdout).toBe('written\n')

    const first = await pglite({ dataDir: folder })
    try {
      expect((await migrate(first.sql)).applied).toEqual([])
      const store = postgresStore(first.sql)
      const migration = (await store.getMigration('from-child'))!
      expect(migration.name).toBe('Written by a child process')
      expect(migration.counts).toEqual({ not_started: 1, queued: 1, running: 0, completed: 0, failed: 0 })
      expect(migration.cancelledAttempts).toEqual([
        {
          runId: 'from-child__svc-0',
          candidateId: 'svc-0',
          cancelledAt: '2026-05-06T07:08:09.010Z',
          attempt: 1,
          cancelledBy: { kind: 'system', name: 'loom' },
        },
      ])
      expect((await store.getCandidate('from-child', 'svc-0'))!.candidate.metadata).toEqual({ written: 'by child \u0000 🚀' })
      const run = await store.transition({
        migrationId: 'from-child',
        candidateId: 'svc-1',
        action: 'execute',
        at: new Date().toISOString(),
      })
      expect(run.ok).toBe(true)
    } finally {
      await first.close()
    }

    const second = await pglite({ dataDir: folder })
    try {
      const store = postgresStore(second.sql)
      const [running] = await store.listRuns('running')
      expect(running).toMatchObject({ runId: 'from-child__svc-1', state: 'running' })
      // The log of both processes, in order: transaction ids, and so the entries' ids, go on from the folder's.
      const entries = await store.listActivity({ migrationId: 'from-child', limit: 10 })
      expect(entries.map((e) => [e.type, e.candidateId])).toEqual([
        ['run.queue', 'svc-0'],
        ['run.cancel', 'svc-0'],
        ['run.queue', 'svc-1'],
        ['run.execute', 'svc-1'],
      ])
      expect(await store.listActivity({ migrationId: 'from-child', after: entries[2]!.id, limit: 10 })).toEqual([entries[3]])
    } finally {
      await second.close()
    }
  })

  it('closes once however often close is called, and answers calls after it with unavailable', async () => {
    const db = await pglite({ dataDir })
    await migrate(db.sql)
    const store = postgresStore(db.sql)
    await store.ping()
    await Promise.all([db.close(), db.close()])
    const error = await store.ping().catch((e: unknown) => e)
    expect(LoomError.is(error, 'unavailable')).toBe(true)
  })

  it('refuses an empty dataDir, naming the field', async () => {
    const error = await pglite({ dataDir: '' }).catch((e: unknown) => e)
    expect(LoomError.is(error, 'invalid')).toBe(true)
    expect((error as LoomError).details).toEqual({ field: 'dataDir' })
  })
})
