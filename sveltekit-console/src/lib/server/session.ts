/**
 * Sign-in sessions of a console that needs a token. When an operator signs in with their
 * token, the console makes a random session id (256 bits from `crypto.getRandomValues`),
 * hands it to the browser as an HttpOnly cookie and keeps only its SHA-256 on the server,
 * with the operator it stands for and when it expires. Every page, action and `/api/events`
 * stream looks the cookie up; signing out deletes the record, so the old cookie is refused
 * from then on, and a stolen copy of the session table holds no usable cookie.
 *
 * Where the records live follows where the console's data is: with Loom embedded, a table
 * `console_sessions` in the console's own database and schema (PGlite or PostgreSQL, so
 * every replica sharing the database shares the sessions and a restart keeps them); with a
 * remote Loom (`LOOM_URL`, no database here), a JSON file in the data folder, written
 * atomically and readable by this user only.
 */
import { createHash } from 'node:crypto'
import { mkdir, readFile, rename, writeFile } from 'node:fs/promises'
import { dirname } from 'node:path'
import { ACTOR_KINDS, type Actor } from '@loom/core'
import type { Sql } from 'postgres'

export { safeRedirect } from '../links'

export const SESSION_COOKIE = 'loom_session'

/** How long a session lasts when `LOOM_SESSION_TTL` does not say: a working day. */
export const DEFAULT_SESSION_TTL = '12h'

/** Bytes of randomness in a session id: 256 bits, well over the 128 a guess must face. */
const ID_BYTES = 32

/** A session id as this module writes it: 32 bytes in base64url, 43 characters. */
const ID_PATTERN = /^[A-Za-z0-9_-]{43}$/

interface Session {
  /** What the cookie carries; exists in clear only in the answer to `create`. */
  id: string
  actor: Actor
  expiresAt: Date
}

/** Where a console keeps its sessions. */
export interface SessionStore {
  /** Starts a session for `actor`, lasting the store's time to live. */
  create(actor: Actor): Promise<Session>
  /** The actor of a live session with this id; null for a missing, malformed, unknown, expired or revoked one. */
  validate(id: string | undefined): Promise<Actor | null>
  /** Ends the session with this id (signing out); ending an unknown one is no error. */
  revoke(id: string | undefined): Promise<void>
  /** Deletes the records of expired sessions; answers how many. */
  sweep(): Promise<number>
  /** The time to live of new sessions, in milliseconds. */
  readonly ttlMs: number
}

export interface SessionStoreOptions {
  /** How long a session lasts, in milliseconds. */
  ttlMs: number
  /** The clock; tests replace it. */
  now?: () => Date
}

/** A new session id: 32 random bytes, base64url. */
export function newSessionId(): string {
  const bytes = crypto.getRandomValues(new Uint8Array(ID_BYTES))
  return Buffer.from(bytes).toString('base64url')
}

/** What is stored in place of the id: its SHA-256, hex. */
export function sessionHash(id: string): string {
  return createHash('sha256').update(id).digest('hex')
}

const wellFormed = (id: string | undefined): id is string => typeof id === 'string' && ID_PATTERN.test(id)

interface SessionRecord {
  kind: Actor['kind']
  name: string
  createdAt: number
  expiresAt: number
}

function actorOf(record: { kind: string; name: string }): Actor | null {
  return (ACTOR_KINDS as readonly string[]).includes(record.kind) ? { kind: record.kind as Actor['kind'], name: record.name } : null
}

/** Sessions in this process's memory: gone at restart. For tests and for a console without a data folder. */
export function memorySessions(options: SessionStoreOptions): SessionStore {
  return mapSessions(new Map(), options, async () => {})
}

/** The store behind the memory and file stores: a map from hash to record, and a hook that runs after each change. */
function mapSessions(records: Map<string, SessionRecord>, options: SessionStoreOptions, changed: () => Promise<void>): SessionStore {
  const now = options.now ?? (() => new Date())
  const expired = (at: number) => {
    let removed = 0
    for (const [hash, record] of records) {
      if (record.expiresAt <= at) {
        records.delete(hash)
        removed++
      }
    }
    return removed
  }
  return {
    ttlMs: options.ttlMs,
    async create(actor) {
      const at = now().getTime()
      expired(at)
      const id = newSessionId()
      const expiresAt = at + options.ttlMs
      records.set(sessionHash(id), { kind: actor.kind, name: actor.name, createdAt: at, expiresAt })
      await changed()
      return { id, actor, expiresAt: new Date(expiresAt) }
    },
    async validate(id) {
      if (!wellFormed(id)) return null
      const record = records.get(sessionHash(id))
      if (!record || record.expiresAt <= now().getTime()) return null
      return actorOf(record)
    },
    async revoke(id) {
      if (wellFormed(id) && records.delete(sessionHash(id))) await changed()
    },
    async sweep() {
      const removed = expired(now().getTime())
      if (removed > 0) await changed()
      return removed
    },
  }
}

/**
 * Sessions in a JSON file (`path`), for a console without a database of its own (remote
 * mode). The file holds hashes only; it is read once, rewritten after each change (to a
 * temporary file, then renamed over the old one) and made readable by this user only. One
 * console process per file: two consoles writing the same file would lose each other's sessions.
 */
export async function fileSessions(path: string, options: SessionStoreOptions): Promise<SessionStore> {
  const records = new Map<string, SessionRecord>()
  let text: string | undefined
  try {
    text = await readFile(path, 'utf8')
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw error
  }
  if (text !== undefined) {
    let parsed: unknown
    try {
      parsed = JSON.parse(text)
    } catch {
      throw new Error(`${path}: the console's session file is not JSON; delete it to sign everyone out and start afresh`)
    }
    const entries = (parsed as { sessions?: Record<string, SessionRecord> } | null)?.sessions ?? {}
    for (const [hash, record] of Object.entries(entries)) {
      if (/^[0-9a-f]{64}$/.test(hash) && record && typeof record.name === 'string' && typeof record.expiresAt === 'number') {
        records.set(hash, { kind: record.kind, name: record.name, createdAt: record.createdAt, expiresAt: record.expiresAt })
      }
    }
  }
  await mkdir(dirname(path), { recursive: true })
  let writing: Promise<void> = Promise.resolve()
  const save = () => {
    const body = `${JSON.stringify({ sessions: Object.fromEntries(records) })}\n`
    // One write at a time, each with the state of its own moment; the last one wins.
    writing = writing.then(async () => {
      const temporary = `${path}.${process.pid}.tmp`
      await writeFile(temporary, body, { mode: 0o600 })
      await rename(temporary, path)
    })
    return writing
  }
  return mapSessions(records, options, save)
}

export interface SqlSessionOptions extends SessionStoreOptions {
  /** The schema of the console's database that holds Loom's tables; the session table goes beside them. */
  schema: string
}

/**
 * Sessions in table `<schema>.console_sessions` of the console's database (postgres.js over
 * PostgreSQL or PGlite). Call `migrate` once at start; it creates the table if it is missing.
 */
export function sqlSessions(sql: Sql, options: SqlSessionOptions): SessionStore & { migrate(): Promise<void> } {
  const now = options.now ?? (() => new Date())
  // postgres.js quotes each dotted part of an identifier: "schema"."console_sessions".
  const table = sql(`${options.schema}.console_sessions`)
  return {
    ttlMs: options.ttlMs,
    async migrate() {
      try {
        await sql`create schema if not exists ${sql(options.schema)}`
        await sql`
          create table if not exists ${table} (
            id_hash text primary key,
            actor_kind text not null,
            actor_name text not null,
            created_at timestamptz not null,
            expires_at timestamptz not null
          )`
        await sql`create index if not exists console_sessions_expires_at on ${table} (expires_at)`
      } catch (error) {
        // Two replicas starting at once may race on "if not exists": the loser finds the table made.
        if (!['23505', '42P07'].includes((error as { code?: string }).code ?? '')) throw error
      }
    },
    async create(actor) {
      const at = now()
      const id = newSessionId()
      const expiresAt = new Date(at.getTime() + options.ttlMs)
      await sql`delete from ${table} where expires_at <= ${at}`
      await sql`
        insert into ${table} (id_hash, actor_kind, actor_name, created_at, expires_at)
        values (${sessionHash(id)}, ${actor.kind}, ${actor.name}, ${at}, ${expiresAt})`
      return { id, actor, expiresAt }
    },
    async validate(id) {
      if (!wellFormed(id)) return null
      const rows = await sql<Array<{ kind: string; name: string }>>`
        select actor_kind as kind, actor_name as name from ${table}
        where id_hash = ${sessionHash(id)} and expires_at > ${now()}`
      return rows[0] ? actorOf(rows[0]) : null
    },
    async revoke(id) {
      if (!wellFormed(id)) return
      await sql`delete from ${table} where id_hash = ${sessionHash(id)}`
    },
    async sweep() {
      const removed = await sql`delete from ${table} where expires_at <= ${now()}`
      return removed.count
    },
  }
}
