import { HTTP_STATUS_OF_CODE, LoomError, type LoomErrorCode } from '@loom/core'
import type { Context } from 'hono'
import { HTTPException } from 'hono/http-exception'

/** The error body of the contract, `{ error, code }`, plus the one detail a caller can act on. */
export interface LoomErrorBody {
  error: string
  code: LoomErrorCode
  /** `invalid`: the field that broke the rules. */
  field?: string
  /** `conflict`: the candidate's current status. */
  status?: string
  /** `unavailable`: the dependency that failed (`store`, `engine`, a worker). */
  dependency?: string
}

/** Details that travel with the error body; anything else stays in the server's logs. */
const WIRE_DETAILS = ['field', 'status', 'dependency'] as const

/** The body of `error` as the contract sends it. */
export function errorBody(error: LoomError): LoomErrorBody {
  const body: LoomErrorBody = { error: error.message, code: error.code }
  for (const key of WIRE_DETAILS) {
    const value = error.details?.[key]
    if (typeof value === 'string') body[key] = value
  }
  return body
}

/** `error` answered with its body and the status of its code (core's `HTTP_STATUS_OF_CODE`). */
export function errorResponse(c: Context, error: LoomError, headers?: Record<string, string>): Response {
  return c.json(errorBody(error), HTTP_STATUS_OF_CODE[error.code], headers)
}

/** Hono's own exceptions (a malformed JSON body, say) in the contract's terms. */
const CODE_OF_HTTP_EXCEPTION: Record<number, LoomErrorCode> = {
  400: 'invalid',
  401: 'unauthorized',
  404: 'not_found',
  413: 'too_large',
}

/**
 * Turns anything a handler threw into the contract's answer. A `LoomError` keeps its code;
 * anything else is a bug: 500, logged, with a body that reveals nothing of it.
 */
export function toErrorResponse(c: Context, error: unknown, onError: (error: unknown) => void): Response {
  if (LoomError.is(error)) return errorResponse(c, error)
  if (error instanceof HTTPException) {
    // A middleware that built its answer itself (the guard's 401, through hono's bearerAuth).
    if (error.res) return error.getResponse()
    const code = CODE_OF_HTTP_EXCEPTION[error.status]
    if (code) {
      const message = /malformed json/i.test(error.message) ? 'body: malformed JSON' : error.message || code
      return errorResponse(c, new LoomError(code, message, code === 'invalid' ? { details: { field: 'body' } } : {}))
    }
  }
  onError(error)
  // No code of the closed set fits a bug; `unavailable` tells a client to retry later, which is the best it can do.
  return c.json({ error: 'internal error', code: 'unavailable' } satisfies LoomErrorBody, 500)
}
