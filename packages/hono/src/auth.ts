import { LoomError } from '@loom/core'
import type { MiddlewareHandler } from 'hono'
import { errorResponse } from './errors'

const encoder = new TextEncoder()

async function digest(value: string): Promise<Uint8Array> {
  return new Uint8Array(await crypto.subtle.digest('SHA-256', encoder.encode(value)))
}

/**
 * Compares two secrets in time that depends on neither: both are hashed first, so
 * the comparison always runs over 32 bytes, and it never stops at the first difference.
 * Web Crypto only, so it runs wherever `loomApp` runs.
 */
export async function tokensEqual(a: string, b: string): Promise<boolean> {
  const [x, y] = await Promise.all([digest(a), digest(b)])
  let difference = 0
  for (let i = 0; i < x.length; i++) difference |= x[i]! ^ y[i]!
  return difference === 0
}

/**
 * Requires `Authorization: Bearer <token>` with one of `tokens`; with no token configured
 * the route is open. A refusal happens before the body is read, so it changes nothing.
 */
export function bearer(tokens: readonly (string | undefined)[], who: 'operator' | 'worker'): MiddlewareHandler {
  const accepted = [...new Set(tokens.filter((t): t is string => typeof t === 'string' && t.length > 0))]
  if (accepted.length === 0) return async (_c, next) => next()
  return async (c, next) => {
    const header = c.req.header('authorization') ?? ''
    const match = /^Bearer[ \t]+(\S+)[ \t]*$/i.exec(header)
    let ok = false
    if (match) {
      // Every accepted token is compared, so the time taken says nothing about which one nearly matched.
      for (const token of accepted) if (await tokensEqual(match[1]!, token)) ok = true
    }
    if (ok) return next()
    const message = match
      ? `unauthorized: the bearer token is not valid for ${who} routes`
      : `unauthorized: ${who} routes need an Authorization: Bearer token`
    return errorResponse(c, new LoomError('unauthorized', message), { 'WWW-Authenticate': 'Bearer realm="loom"' })
  }
}
