import {
  DEFAULT_LIMITS,
  DispatchStepRequestSchema,
  DryRunRequestSchema,
  LoomError,
  parse,
  type DispatchStepRequest,
  type DryRunRequest,
  type DryRunResult,
} from '@loom/core'
import type { MqttClient } from 'mqtt'
import { subscription, type MqttSubscription } from './subscription'
import { topicPrefix, topics, workerAppLevel } from './topics'
import {
  answer,
  checkToken,
  consoleLogger,
  decode,
  failure,
  peekTransport,
  maxPayloadBytesOf,
  type MqttLogger,
  type PayloadLimits,
  type TransportFields,
} from './wire'

export interface ReceiverOptions {
  /** The worker app whose messages to receive. */
  workerApp: string
  /**
   * When set, messages whose `token` field differs are refused (answered `unauthorized`) and
   * not handled. With named worker tokens Loom sends each worker its own (see
   * `mqttDispatcher`'s `token`), so this is the worker's own token.
   */
  token?: string
  /**
   * Largest message read, in bytes. A larger one is refused `too_large` unread, and logged; it
   * gets no answer, its reply topic being inside it. Default 4 MiB, as the HTTP body limit.
   */
  maxPayloadBytes?: number
  /** The first topic level(s); default `loom`. Servers and workers must agree on it. */
  topicPrefix?: string
  /** Where refused and failed messages are reported. Default: console. */
  logger?: MqttLogger
}

export interface OnDispatchOptions extends ReceiverOptions {
  /**
   * Accepts a dispatched step. Resolve once the step is accepted (start it, don't finish it):
   * the server waits for the answer. Report the step's outcome later through Complete. Throw
   * to refuse it; a `LoomError` keeps its code in the answer. A step can arrive more than
   * once (a retried dispatch, an engine resuming after a restart): handle it idempotently.
   */
  handler: (request: DispatchStepRequest) => void | Promise<void>
}

export interface ServeDryRunOptions extends ReceiverOptions {
  /** Computes the dry run: one entry per step of `request.steps`, `skipped` for steps this worker app does not handle. */
  handler: (request: DryRunRequest) => DryRunResult | Promise<DryRunResult>
}

/**
 * Receives steps dispatched to a worker app over MQTT (by `mqttDispatcher`), on
 * `{prefix}/workers/{workerApp}/dispatch`. Each message is checked (its size, UTF-8 and
 * nesting, the token, then the `DispatchStepRequest` shape) before `handler` sees it, and
 * answered on its `replyTo` topic: accepted once `handler` resolves, refused with the reason
 * otherwise.
 *
 * @example
 * const receiver = onDispatch(client, {
 *   workerApp: 'charts',
 *   token: process.env.LOOM_WORKER_TOKEN,
 *   handler: (request) => {
 *     void runStep(request) // reports through Complete when done
 *   },
 * })
 * await receiver.ready
 */
export function onDispatch(client: MqttClient, options: OnDispatchOptions): MqttSubscription {
  return serve(client, options, 'dispatch', async (body) => {
    await options.handler(parse(DispatchStepRequestSchema, body, ''))
    return undefined
  })
}

/**
 * Answers dry-run requests for a worker app over MQTT (from `mqttDryRunner`), on
 * `{prefix}/workers/{workerApp}/dry-run`: checks the token and the `DryRunRequest` shape,
 * calls `handler`, and publishes its `DryRunResult` (or the failure) on the request's
 * `replyTo` topic.
 *
 * @example
 * serveDryRun(client, {
 *   workerApp: 'charts',
 *   handler: async ({ candidate, steps }) => ({ steps: await previewSteps(candidate, steps) }),
 * })
 */
export function serveDryRun(client: MqttClient, options: ServeDryRunOptions): MqttSubscription {
  return serve(client, options, 'dry-run', (body) => Promise.resolve(options.handler(parse(DryRunRequestSchema, body, ''))))
}

function serve(
  client: MqttClient,
  options: ReceiverOptions,
  kind: 'dispatch' | 'dry-run',
  handle: (body: Record<string, unknown>) => Promise<unknown>,
): MqttSubscription {
  const prefix = topicPrefix(options.topicPrefix)
  const app = workerAppLevel(options.workerApp)
  const token = options.token || undefined
  const logger = options.logger ?? consoleLogger
  const limits: PayloadLimits = { maxPayloadBytes: maxPayloadBytesOf(options.maxPayloadBytes), limits: DEFAULT_LIMITS }
  const filter = kind === 'dispatch' ? topics.dispatch(prefix, app) : topics.dryRun(prefix, app)

  return subscription(client, filter, async (topic, payload) => {
    let transport: TransportFields = {}
    let read = false
    try {
      const decoded = decode(payload, limits)
      transport = decoded.transport
      read = true
      checkToken(transport, token)
      const result = await handle(decoded.body)
      await answer(client, transport, result === undefined ? { ok: true } : { ok: true, result }, logger, `a ${kind} request`)
    } catch (error) {
      // A message refused before it was read still names its reply topic: the sender learns why.
      if (!read) transport = peekTransport(payload, limits)
      const refusal = failure(error)
      if (LoomError.is(error)) logger.warn(`${kind} message on ${topic} refused: ${refusal.error}`)
      else logger.error(`${kind} message on ${topic} failed: ${refusal.error}`, error)
      await answer(client, transport, refusal, logger, `a ${kind} request`)
    }
  })
}
