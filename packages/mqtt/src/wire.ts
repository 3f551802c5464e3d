import {
  DEFAULT_LIMITS,
  type Limits,
  LoomError,
  readJson,
  tokensMatch,
  topLevelStrings,
  type LoomErrorCode,
  type WorkerTarget,
} from '@loom/core'
import type { MqttClient } from 'mqtt'

/**
 * The fields a message carries besides its HTTP-shaped body. MQTT 3.1.1 has neither
 * headers nor response topics, so authentication and request/response live in the body,
 * which works the same on 3.1.1 and 5.
 */
export interface TransportFields {
  /** The shared secret, when the receiver has one configured (MQTT has no Authorization header). */
  token?: string
  /** Where the answer goes; a message without it gets no answer. */
  replyTo?: string
  /** Echoed in the answer so the requester can match it to its request. */
  correlationId?: string
}

/** What an answer says: `ok` with an optional result, or the failure as a `LoomError` code and message. */
export type ReplyBody = { ok: true; result?: unknown } | { ok: false; error: string; code: LoomErrorCode }

/** The answer to a request, as published on its `replyTo` topic. */
export type Reply = ReplyBody & { correlationId: string }

/** The largest message a receiver reads by default: 4 MiB, the HTTP API's body limit. */
export const DEFAULT_MAX_PAYLOAD_BYTES = 4 * 1024 * 1024

/** How much one message may ask of its receiver before anything is built from it. */
export interface PayloadLimits {
  /** Bytes of the payload; a larger one is refused `too_large` unread. */
  maxPayloadBytes: number
  /** What the JSON is measured against while it is read: `depth`, and the lengths of `steps`, `candidates` and `files`. */
  limits: Readonly<Limits>
}

const DEFAULT_PAYLOAD_LIMITS: PayloadLimits = { maxPayloadBytes: DEFAULT_MAX_PAYLOAD_BYTES, limits: DEFAULT_LIMITS }

/** Checks a `maxPayloadBytes` option: a positive integer, else `invalid` naming it. */
export function maxPayloadBytesOf(value: number | undefined): number {
  if (value === undefined) return DEFAULT_MAX_PAYLOAD_BYTES
  if (!Number.isSafeInteger(value) || value < 1) {
    throw new LoomError('invalid', `maxPayloadBytes: must be a positive integer (got ${String(value)})`, {
      details: { field: 'maxPayloadBytes' },
    })
  }
  return value
}

/**
 * Decodes a JSON object payload and splits off the transport fields. A payload over
 * `maxPayloadBytes` is refused `too_large` before it is read; then core's `readJson` refuses
 * bytes that are not UTF-8, JSON nested deeper than `limits.depth` or with a list longer than its limit, and text that is not JSON, each
 * as `invalid` naming `body`, and so is anything but an object. The body keeps every other
 * field for schema validation.
 */
export function decode(
  payload: Uint8Array,
  limits: PayloadLimits = DEFAULT_PAYLOAD_LIMITS,
): { body: Record<string, unknown>; transport: TransportFields } {
  if (payload.length > limits.maxPayloadBytes) {
    throw new LoomError(
      'too_large',
      `body: ${payload.length} bytes, larger than the limit of ${limits.maxPayloadBytes} bytes (maxPayloadBytes)`,
      {
        details: { field: 'body', limit: limits.maxPayloadBytes },
      },
    )
  }
  const value = readJson(payload, limits.limits, 'body')
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    throw new LoomError('invalid', 'body: must be a JSON object', { details: { field: 'body' } })
  }
  const { token, replyTo, correlationId, ...body } = value as Record<string, unknown>
  return { body, transport: transportOf({ token, replyTo, correlationId }) }
}

/**
 * The transport fields of a message `decode` refused to read (too deep, a list too long),
 * found by a scan of its top level that builds nothing else: so the sender still learns why.
 * A payload over the size limit is not scanned: it gets no answer.
 */
export function peekTransport(payload: Uint8Array, limits: PayloadLimits = DEFAULT_PAYLOAD_LIMITS): TransportFields {
  if (payload.length > limits.maxPayloadBytes) return {}
  return transportOf(topLevelStrings(payload, ['token', 'replyTo', 'correlationId']))
}

function transportOf({ token, replyTo, correlationId }: Record<string, unknown>): TransportFields {
  const transport: TransportFields = {}
  // A transport field of the wrong type is dropped rather than trusted: a token that is not a
  // string fails the token check, a reply topic that is not a string gets no answer.
  if (typeof token === 'string') transport.token = token
  if (typeof replyTo === 'string' && replyTo && !/[+#]/.test(replyTo)) transport.replyTo = replyTo
  if (typeof correlationId === 'string' || typeof correlationId === 'number') transport.correlationId = String(correlationId)
  return transport
}

export function encode(value: unknown): string {
  return JSON.stringify(value)
}

/** Refuses a message whose token does not match the configured one; passes everything when none is configured. */
export function checkToken(transport: TransportFields, expected: string | undefined): void {
  if (expected === undefined) return
  if (!tokensMatch(transport.token, expected)) {
    throw new LoomError('unauthorized', transport.token === undefined ? 'token: missing' : 'token: does not match')
  }
}

/**
 * The token a request carries to a worker: one for every worker, or a function of the worker
 * it goes to, so each worker receives its own, as `tokenIdentities(…).workerToken(owner)`
 * gives it. `target.owner` is the worker the migration belongs to, when one announced it.
 */
export type WorkerTokenOption = string | ((target: WorkerTarget) => string | undefined)

/** The token for `target`: the configured one, or what the function answers; undefined when there is none. */
export function tokenFor(option: WorkerTokenOption | undefined, target: WorkerTarget): string | undefined {
  const token = typeof option === 'function' ? option(target) : option
  return token || undefined
}

/** The failure an answer carries: a `LoomError` keeps its code, anything else is `unavailable`. */
export function failure(error: unknown): ReplyBody & { ok: false } {
  if (LoomError.is(error)) return { ok: false, error: error.message, code: error.code }
  return { ok: false, error: error instanceof Error ? error.message : String(error), code: 'unavailable' }
}

/** Publishes `reply` on the request's `replyTo` topic, if it has one; a failure to answer is logged. */
export async function answer(
  client: MqttClient,
  transport: TransportFields,
  reply: ReplyBody,
  logger: MqttLogger,
  what: string,
): Promise<void> {
  if (!transport.replyTo) return
  const message: Reply = { correlationId: transport.correlationId ?? '', ...reply }
  try {
    // QoS 0 for the reason the request is (see requester.ts): a lost answer is a timeout, retried.
    await client.publishAsync(transport.replyTo, encode(message), { qos: 0 })
  } catch (error) {
    logger.error(`could not answer ${what} on ${transport.replyTo}`, error)
  }
}

const decoder = new TextDecoder()

/** Parses a reply; undefined for anything that is not one (a stray message on the inbox). */
export function parseReply(payload: Uint8Array): Reply | undefined {
  let value: unknown
  try {
    value = JSON.parse(decoder.decode(payload))
  } catch {
    return undefined
  }
  if (typeof value !== 'object' || value === null) return undefined
  const reply = value as Record<string, unknown>
  if (typeof reply.correlationId !== 'string' || typeof reply.ok !== 'boolean') return undefined
  if (reply.ok) return { correlationId: reply.correlationId, ok: true, result: reply.result }
  return {
    correlationId: reply.correlationId,
    ok: false,
    error: typeof reply.error === 'string' ? reply.error : 'the receiver refused the request',
    code: LoomError.isCode(reply.code) ? reply.code : 'unavailable',
  }
}

/** A logger for what the transport skips or cannot do; `console` by default. */
export interface MqttLogger {
  warn(message: string): void
  error(message: string, error?: unknown): void
}

export const consoleLogger: MqttLogger = {
  warn: (message) => console.warn(`[loom/mqtt] ${message}`),
  error: (message, error) => console.error(`[loom/mqtt] ${message}`, ...(error === undefined ? [] : [error])),
}
