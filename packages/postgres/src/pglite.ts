import { mkdir, mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { LoomError } from '@loom/core'
import postgres, { type Sql } from 'postgres'
import { markEmbedded } from './embedded'

export interface PgliteOptions {
  /**
   * The folder PGlite keeps its database in; created when missing. Data written there is
   * read back by the next process that opens it. Omit it for a database in memory.
   * One process at a time: PGlite does not lock the folder against a second opener.
   */
  dataDir?: string
  /**
   * Options for the `postgres` client (`debug`, `types`, `idle_timeout`…). The connection
   * settings and `max` are the embedded server's and cannot be changed.
   */
  client?: Omit<postgres.Options<{}>, 'host' | 'port' | 'path' | 'max' | 'username' | 'user' | 'database' | 'db'>
}

/** An embedded PostgreSQL reached through a `postgres` client, and how to stop it. */
export interface EmbeddedPostgres {
  /** A `postgres` client on the embedded database: pass it to `postgresStore` and `migrate`. */
  sql: Sql<{}>
  /** Ends the client, stops the socket server and closes PGlite, flushing it to `dataDir`. */
  close(): Promise<void>
}

/**
 * Starts PGlite (PostgreSQL compiled to WebAssembly, in this process) and serves it to a
 * `postgres` client through `@electric-sql/pglite-socket`, so `postgresStore` runs on it
 * unchanged — the same SQL as on a PostgreSQL server. This is the store of the standalone
 * server and the console when no `DATABASE_URL` is set.
 *
 * PGlite is single-user: the client has one connection (`max: 1`) and transactions run one
 * after another. On POSIX systems the socket is a Unix socket in a private temporary folder,
 * so no TCP port is opened. Needs the optional peer dependencies `@electric-sql/pglite`
 * (0.5.14) and `@electric-sql/pglite-socket` (0.2.17).
 *
 * @example
 * import { migrate, pglite, postgresStore } from '@loom/postgres'
 *
 * const db = await pglite({ dataDir: '.loom/data' })
 * await migrate(db.sql)
 * const store = postgresStore(db.sql)
 * // …
 * await db.close()
 */
export async function pglite(options: PgliteOptions = {}): Promise<EmbeddedPostgres> {
  if (options.dataDir !== undefined && (typeof options.dataDir !== 'string' || options.dataDir === '')) {
    throw new LoomError('invalid', 'dataDir: must be a non-empty path', { details: { field: 'dataDir' } })
  }
  const [{ PGlite }, { PGLiteSocketServer }, { pg_trgm }] = await Promise.all([
    importPeer<typeof import('@electric-sql/pglite')>('@electric-sql/pglite', () => import('@electric-sql/pglite')),
    importPeer<typeof import('@electric-sql/pglite-socket')>('@electric-sql/pglite-socket', () => import('@electric-sql/pglite-socket')),
    // The trigram index of q= searches (schema version 6), as on a PostgreSQL server.
    importPeer<typeof import('@electric-sql/pglite/contrib/pg_trgm')>(
      '@electric-sql/pglite',
      () => import('@electric-sql/pglite/contrib/pg_trgm'),
    ),
  ])

  let db: InstanceType<typeof PGlite> | undefined
  let server: InstanceType<typeof PGLiteSocketServer> | undefined
  let socketDir: string | undefined
  const stop = async () => {
    await server?.stop().catch(() => {})
    if (db && !db.closed) await db.close()
    if (socketDir) await rm(socketDir, { recursive: true, force: true })
  }

  try {
    // PGlite makes only the last folder of the path.
    if (options.dataDir !== undefined) await mkdir(options.dataDir, { recursive: true })
    db = await PGlite.create({ ...(options.dataDir === undefined ? {} : { dataDir: options.dataDir }), extensions: { pg_trgm } })
    const posix = process.platform !== 'win32'
    socketDir = posix ? await mkdtemp(join(tmpdir(), 'loom-pglite-')) : undefined
    const path = socketDir && join(socketDir, '.s.PGSQL.5432')
    // Two slots for one client connection: a reconnect may arrive before the server has
    // noticed that the previous socket closed.
    server = new PGLiteSocketServer(path ? { db, path, maxConnections: 2 } : { db, host: '127.0.0.1', port: 0, maxConnections: 2 })
    await server.start()
    const connection = path ? { path } : { host: '127.0.0.1', port: Number(server.getServerConn().split(':').pop()) }
    const sql = postgres({
      // The store needs no array types, and skipping the query that fetches them makes connecting quicker.
      fetch_types: false,
      ...options.client,
      ...connection,
      username: 'postgres',
      database: 'postgres',
      max: 1,
      // PGlite reports notices on every `if not exists`; they are not the caller's business.
      onnotice: options.client?.onnotice ?? (() => {}),
    })
    markEmbedded(sql)
    let closing: Promise<void> | undefined
    return {
      sql,
      close() {
        closing ??= (async () => {
          await sql.end({ timeout: 5 })
          await stop()
        })()
        return closing
      },
    }
  } catch (error) {
    await stop().catch(() => {})
    if (LoomError.is(error)) throw error
    throw new LoomError(
      'unavailable',
      `pglite: could not start the embedded database${options.dataDir ? ` in ${options.dataDir}` : ''}: ${(error as Error).message}`,
      {
        cause: error,
        details: { dependency: 'pglite' },
      },
    )
  }
}

async function importPeer<M>(name: string, load: () => Promise<unknown>): Promise<M> {
  try {
    return (await load()) as M
  } catch (error) {
    throw new LoomError('unavailable', `pglite: install the optional peer dependency ${name} to use the embedded database`, {
      cause: error,
      details: { dependency: name },
    })
  }
}
