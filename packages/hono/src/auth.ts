import { LoomError, tokensMatch } from '@loom/core'
import type { Context, MiddlewareHandler } from 'hono'
import { bearerAuth } from 'hono/bearer-auth'
import { withFacts } from './describe'
import { errorResponse } from './errors'

/** RFC 6750's token syntax: the only tokens `bearerAuth` reads from the header, so the only ones that can ever match. */
const BEARER_TOKEN = /^[A-Za-z0-9._~+/-]+=*$/

const CHALLENGE = { 'WWW-Authenticate': 'Bearer realm="loom"' }

/** The guard of each access level; each carries its level and schemes for the OpenAPI document. */
export interface Guards {
  operator: MiddlewareHandler
  worker: MiddlewareHandler
}

/**
 * The operator and worker guards of `loomApp`. The operator guard takes `token`; the worker
 * guard takes `workerToken` (default `token`) and `token`. A level without a token is open.
 * Hono's `bearerAuth` reads the header and refuses before the body is read, so a refusal
 * changes nothing; every refusal is the contract's 401 `unauthorized`, a malformed header too.
 */
export function bearerGuards(options: { token?: string | undefined; workerToken?: string | undefined }): Guards {
  for (const field of ['token', 'workerToken'] as const) {
    const value = options[field]
    if (value !== undefined && !BEARER_TOKEN.test(value)) {
      throw new LoomError('invalid', `${field}: must be a bearer token: A–Z a–z 0–9 . _ ~ + / - then optional "=" padding`, {
        details: { field },
      })
    }
  }
  const workerToken = options.workerToken ?? options.token
  return {
    operator: guard('operator', [['operatorToken', options.token]]),
    worker: guard('worker', [
      ['workerToken', workerToken],
      ['operatorToken', options.token],
    ]),
  }
}

function guard(access: 'operator' | 'worker', schemes: Array<[scheme: string, token: string | undefined]>): MiddlewareHandler {
  const configured = schemes.filter((s): s is [string, string] => Boolean(s[1]))
  const security = [...new Set(configured.map(([scheme]) => scheme))].map((scheme) => ({ [scheme]: [] }))
  const tokens = [...new Set(configured.map(([, token]) => token))]
  if (tokens.length === 0) return withFacts(async (_c, next) => next(), { access: { access, security } })

  const refuse = (message: string) => (c: Context) => errorResponse(c, new LoomError('unauthorized', message), CHALLENGE)
  const missing = refuse(`unauthorized: ${access} routes need an Authorization: Bearer token`)
  const middleware = bearerAuth({
    verifyToken: (presented) => {
      // Every accepted token is compared, so the time taken says nothing about which one nearly matched.
      let ok = false
      for (const token of tokens) if (tokensMatch(presented, token)) ok = true
      return ok
    },
    noAuthenticationHeader: { message: missing },
    invalidAuthenticationHeader: { message: missing },
    invalidToken: { message: refuse(`unauthorized: the bearer token is not valid for ${access} routes`) },
  })
  return withFacts(middleware, {
    access: { access, security },
    errors: { unauthorized: `the Authorization: Bearer token is missing or not valid for ${access} routes` },
  })
}
