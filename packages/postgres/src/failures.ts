import { LoomError } from '@loom/core'

/** Errors of the `postgres` driver and of Node's sockets that mean "the database cannot be reached". */
const CONNECTION_CODES = new Set([
  'CONNECTION_CLOSED',
  'CONNECTION_ENDED',
  'CONNECTION_DESTROYED',
  'CONNECT_TIMEOUT',
  'ECONNREFUSED',
  'ECONNRESET',
  'EPIPE',
  'ETIMEDOUT',
  'ENOTFOUND',
  'EAI_AGAIN',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'ENOENT', // a Unix socket that is gone (the embedded server stopped)
])

/**
 * SQLSTATEs that mean the server is going away or refusing work, not that the request is
 * wrong: connection exceptions (class 08), operator intervention (57P01 terminated by
 * `pg_terminate_backend`, 57P02 crash, 57P03 starting up), too many connections, and
 * an unknown database.
 */
function isUnavailableState(state: string): boolean {
  return state.startsWith('08') || state.startsWith('57P') || state === '53300' || state === '3D000'
}

/** The schema or one of its tables is missing: `migrate` was not run. */
function isMissingSchema(state: string): boolean {
  return state === '42P01' || state === '3F000'
}

/**
 * Runs `work`, turning a failure to reach the database into an `unavailable` LoomError.
 * Every other error (a bug, a constraint this package should have prevented) is rethrown
 * as it is, so it is not mistaken for an outage. With `timeoutMs`, a call that has no
 * answer by then fails `unavailable` too: the `postgres` driver (3.4.9) can strand a query
 * in its pool when connections are killed under it, and a caller must not wait forever.
 * Like a lost commit acknowledgement, such a call's write may still land later.
 */
export async function guard<T>(work: () => Promise<T>, timeoutMs = 0): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined
  try {
    const running = retryingDeadlocks(work)
    if (timeoutMs <= 0) return await running
    running.catch(() => {}) // a late failure after the deadline has nobody left to tell
    const deadline = new Promise<never>((_, reject) => {
      timer = setTimeout(
        () =>
          reject(
            new LoomError('unavailable', `postgres: no answer within ${timeoutMs} ms`, {
              details: { dependency: 'postgres', code: 'TIMEOUT' },
            }),
          ),
        timeoutMs,
      )
    })
    return await Promise.race([running, deadline])
  } catch (error) {
    throw translate(error)
  } finally {
    clearTimeout(timer)
  }
}

/** Deadlock detected: PostgreSQL aborted one statement of a lock cycle, which so changed nothing. */
const DEADLOCK = '40P01'
const DEADLOCK_TRIES = 3

/**
 * `work`, run again when PostgreSQL broke a deadlock by aborting its statement. The store's
 * calls are made of single statements (no transaction spans round trips), so the aborted one
 * changed nothing and trying again is safe. Processes of this version take their locks in one
 * order; a cycle can still form with a process of an older version during a rolling upgrade.
 */
async function retryingDeadlocks<T>(work: () => Promise<T>): Promise<T> {
  for (let tries = 1; ; tries++) {
    try {
      return await work()
    } catch (error) {
      if ((error as { code?: unknown } | null)?.code !== DEADLOCK || tries >= DEADLOCK_TRIES) throw error
    }
  }
}

function translate(error: unknown): unknown {
  if (LoomError.is(error) || typeof error !== 'object' || error === null) return error
  const code = (error as { code?: unknown }).code
  if (typeof code !== 'string') return error
  const message = (error as Error).message
  if (CONNECTION_CODES.has(code) || (/^[0-9A-Z]{5}$/.test(code) && isUnavailableState(code))) {
    return new LoomError('unavailable', `postgres: ${message}`, { cause: error, details: { dependency: 'postgres', code } })
  }
  if (isMissingSchema(code)) {
    return new LoomError('unavailable', `postgres: ${message}; run migrate() before using the store`, {
      cause: error,
      details: { dependency: 'postgres', code },
    })
  }
  if (code === '22P05' || code === '22021') {
    // Text that PostgreSQL cannot hold (a NUL character in an id or kind).
    return new LoomError('invalid', `postgres: ${message}`, { cause: error, details: { code } })
  }
  return error
}
