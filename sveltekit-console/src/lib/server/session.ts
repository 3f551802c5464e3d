/**
 * Sign-in for consoles that run with `LOOM_TOKEN`: the operator types the token once, the
 * console keeps a cookie that proves it (an HMAC of the token, never the token itself), and
 * every page, action and `/api/events` stream checks that cookie on the server.
 */
import { tokensMatch } from '@loom/core'
import { createHmac } from 'node:crypto'

export const SESSION_COOKIE = 'loom_session'

/** The cookie value that proves knowledge of `token`. */
export function sessionValue(token: string): string {
  return createHmac('sha256', token).update('loom-console-session-v1').digest('base64url')
}

/** Whether `cookie` proves knowledge of `token`, compared in constant time. */
export function validSession(token: string, cookie: string | undefined): boolean {
  return tokensMatch(cookie, sessionValue(token))
}

/** Whether `candidate` is the token, compared in constant time. */
export function tokenMatches(token: string, candidate: string): boolean {
  return tokensMatch(candidate, token)
}

/** A relative path to return to after signing in; anything else (another origin, `//host`) becomes `/`. */
export function safeRedirect(target: string | null | undefined): string {
  if (!target?.startsWith('/') || target.startsWith('//') || target.startsWith('/\\')) return '/'
  return target
}
