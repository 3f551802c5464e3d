import { mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import type { Actor } from '@loom/core'
import type { Sql } from 'postgres'
import {
  fileSessions,
  memorySessions,
  newSessionId,
  sessionHash,
  sqlSessions,
  type SessionStore,
  type SessionStoreOptions,
} from './session'

const alice: Actor = { kind: 'operator', name: 'alice' }
const HOUR = 3600_000

/** A clock the test moves by hand. */
function clock(start = Date.parse('2026-11-02T09:00:00Z')) {
  let at = start
  return { now: () => new Date(at), advance: (ms: number) => (at += ms) }
}

const dirs: string[] = []
async function tempDir() {
  const dir = await mkdtemp(join(tmpdir(), 'loom-console-sessions-'))
  dirs.push(dir)
  return dir
}

let pglite: { sql: Sql; close(): Promise<void> } | undefined
/** The machine's PostgreSQL when DATABASE_URL names one (as in CI): the same table on the real server too. */
let server: Sql | undefined
const unique = `console_sessions_${process.pid}_${Date.now().toString(36)}`
beforeAll(async () => {
  const { pglite: start } = await import('@loom/postgres')
  pglite = await start()
  if (process.env.DATABASE_URL) {
    const { default: postgres } = await import('postgres')
    server = postgres(process.env.DATABASE_URL, { max: 2, onnotice: () => {} })
  }
}, 60_000)
afterAll(async () => {
  await pglite?.close()
  if (server) {
    for (let i = 1; i <= schemaCount; i++) await server.unsafe(`drop schema if exists "${unique}_${i}" cascade`)
    await server.end()
  }
  for (const dir of dirs) await rm(dir, { recursive: true, force: true })
})

let schemaCount = 0
const inDatabase = (sql: () => Sql) => async (options: SessionStoreOptions) => {
  const store = sqlSessions(sql(), { ...options, schema: `${unique}_${++schemaCount}` })
  await store.migrate()
  return store
}
const stores: Array<[string, (options: SessionStoreOptions) => Promise<SessionStore>]> = [
  ['memory', async (options) => memorySessions(options)],
  ['file', async (options) => fileSessions(join(await tempDir(), 'sessions.json'), options)],
  ['sql (PGlite)', inDatabase(() => pglite!.sql)],
  ...(process.env.DATABASE_URL ? [['sql (PostgreSQL)', inDatabase(() => server!)] as [string, ReturnType<typeof inDatabase>]] : []),
]

describe('session ids', () => {
  it('are 256 random bits in base64url, and only their SHA-256 is kept', () => {
    const ids = new Set(Array.from({ length: 1000 }, () => newSessionId()))
    expect(ids.size).toBe(1000)
    for (const id of ids) expect(id).toMatch(/^[A-Za-z0-9_-]{43}$/)
    const id = [...ids][0]!
    expect(sessionHash(id)).toMatch(/^[0-9a-f]{64}$/)
    expect(sessionHash(id)).not.toContain(id)
  })
})

describe.each(stores)('%s sessions', (_name, open) => {
  it('creates a session that names its operator until it expires', async () => {
    const time = clock()
    const sessions = await open({ ttlMs: 12 * HOUR, now: time.now })
    const session = await sessions.create(alice)
    expect(session.actor).toEqual(alice)
    expect(session.expiresAt.toISOString()).toBe('2026-11-02T21:00:00.000Z')
    await expect(sessions.validate(session.id)).resolves.toEqual(alice)
    time.advance(12 * HOUR - 1000)
    await expect(sessions.validate(session.id)).resolves.toEqual(alice)
    time.advance(1000)
    await expect(sessions.validate(session.id)).resolves.toBeNull()
  })

  it('refuses a revoked session, and ids it never made', async () => {
    const sessions = await open({ ttlMs: HOUR })
    const first = await sessions.create(alice)
    const second = await sessions.create({ kind: 'operator', name: 'bob' })
    await sessions.revoke(first.id)
    await expect(sessions.validate(first.id)).resolves.toBeNull()
    // The other session lives on.
    await expect(sessions.validate(second.id)).resolves.toEqual({ kind: 'operator', name: 'bob' })
    await expect(sessions.validate(newSessionId())).resolves.toBeNull()
    await expect(sessions.validate(undefined)).resolves.toBeNull()
    await expect(sessions.validate('')).resolves.toBeNull()
    await expect(sessions.validate(`${second.id}x`)).resolves.toBeNull()
    await expect(sessions.validate("' or 1=1 --")).resolves.toBeNull()
    // Revoking what does not exist is no error.
    await expect(sessions.revoke(first.id)).resolves.toBeUndefined()
    await expect(sessions.revoke('not an id')).resolves.toBeUndefined()
  })

  it('sweeps expired sessions away', async () => {
    const time = clock()
    const sessions = await open({ ttlMs: HOUR, now: time.now })
    const old = await sessions.create(alice)
    time.advance(HOUR / 2)
    const young = await sessions.create(alice)
    time.advance(HOUR / 2)
    await expect(sessions.sweep()).resolves.toBe(1)
    await expect(sessions.validate(old.id)).resolves.toBeNull()
    await expect(sessions.validate(young.id)).resolves.toEqual(alice)
  })
})

describe('sql sessions', () => {
  it('keep the hash, never the id, in table console_sessions beside the data', async () => {
    const store = sqlSessions(pglite!.sql, { ttlMs: HOUR, schema: 'sessions_table_test' })
    await store.migrate()
    // Twice is fine: every start migrates.
    await store.migrate()
    const session = await store.create(alice)
    const rows = await pglite!.sql`select * from sessions_table_test.console_sessions`
    expect(rows).toHaveLength(1)
    expect(rows[0]).toMatchObject({ id_hash: sessionHash(session.id), actor_kind: 'operator', actor_name: 'alice' })
    expect(JSON.stringify(rows)).not.toContain(session.id)
  })
})

describe('file sessions', () => {
  it('survive a restart, hold only hashes, and are readable by this user only', async () => {
    const path = join(await tempDir(), 'sessions.json')
    const first = await fileSessions(path, { ttlMs: HOUR })
    const kept = await first.create(alice)
    const revoked = await first.create(alice)
    await first.revoke(revoked.id)
    const text = await readFile(path, 'utf8')
    expect(text).not.toContain(kept.id)
    expect(text).toContain(sessionHash(kept.id))
    expect((await stat(path)).mode & 0o777).toBe(0o600)

    const second = await fileSessions(path, { ttlMs: HOUR })
    await expect(second.validate(kept.id)).resolves.toEqual(alice)
    await expect(second.validate(revoked.id)).resolves.toBeNull()
  })

  it('refuses to start on a file that is not JSON, naming it', async () => {
    const path = join(await tempDir(), 'sessions.json')
    await writeFile(path, 'not json')
    await expect(fileSessions(path, { ttlMs: HOUR })).rejects.toThrow(`${path}: the console's session file is not JSON`)
  })
})
