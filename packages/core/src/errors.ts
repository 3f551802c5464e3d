/**
 * The one error type of Loom. Every failure a caller can act on is a `LoomError` with a code
 * from a closed set; the HTTP layer maps codes to status codes and the client maps them back.
 */

/** The closed set of failure codes shared by the library, the HTTP API and the client. */
export const LOOM_ERROR_CODES = ['invalid', 'not_found', 'conflict', 'unauthorized', 'forbidden', 'too_large', 'unavailable'] as const

export type LoomErrorCode = (typeof LOOM_ERROR_CODES)[number]

/**
 * The one table from `LoomError` codes to HTTP status codes, for every HTTP surface (the
 * API, a worker's endpoints, the console's form actions). No reverse table is needed:
 * every error body carries its code.
 */
export const HTTP_STATUS_OF_CODE = {
  invalid: 400,
  unauthorized: 401,
  forbidden: 403,
  not_found: 404,
  conflict: 409,
  too_large: 413,
  unavailable: 503,
} as const satisfies Record<LoomErrorCode, number>

const brand: unique symbol = Symbol.for('@loom/core/LoomError')

export interface LoomErrorOptions {
  /** The underlying error, kept for logs; never sent over the wire. */
  cause?: unknown
  /** Structured detail, e.g. the failing field for `invalid`, the current status for `conflict`. */
  details?: Record<string, unknown>
}

/**
 * A failure with a code from {@link LOOM_ERROR_CODES}.
 *
 * Recognise it with {@link LoomError.is} rather than `instanceof`: two copies of
 * `@loom/core` in one process (a common npm outcome) still agree through the brand.
 *
 * @example
 * try {
 *   await loom.queue('app-chart', 'billing-api')
 * } catch (error) {
 *   if (LoomError.is(error, 'conflict')) console.log(error.message) // "candidate billing-api is queued"
 *   else throw error
 * }
 */
export class LoomError extends Error {
  readonly [brand] = true
  readonly code: LoomErrorCode
  readonly details: Record<string, unknown> | undefined

  constructor(code: LoomErrorCode, message: string, options: LoomErrorOptions = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause })
    this.name = 'LoomError'
    this.code = code
    this.details = options.details
  }

  /** True when `value` is a `LoomError` (from any copy of this package), optionally with `code`. */
  static is(value: unknown, code?: LoomErrorCode): value is LoomError {
    return (
      typeof value === 'object' &&
      value !== null &&
      (value as Record<symbol, unknown>)[brand] === true &&
      (code === undefined || (value as LoomError).code === code)
    )
  }

  /** True when `value` is one of the closed set of codes. */
  static isCode(value: unknown): value is LoomErrorCode {
    return typeof value === 'string' && (LOOM_ERROR_CODES as readonly string[]).includes(value)
  }

  /** The wire body of the HTTP API: `{ error, code }`. */
  toJSON(): { error: string; code: LoomErrorCode } {
    return { error: this.message, code: this.code }
  }
}
