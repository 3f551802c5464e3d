import {
  AnnounceRequestSchema,
  DEFAULT_LIMITS,
  LoomError,
  limitedSchemas,
  parse,
  tokenIdentities,
  type Actor,
  type Identities,
  type Limits,
  type LoomErrorCode,
  type LoomInstance,
  type RegisteredMigration,
  type TokenOptions,
} from '@loom/core'
import type { MqttClient } from 'mqtt'
import { subscription, type MqttSubscription } from './subscription'
import { topicPrefix, topics } from './topics'
import {
  answer,
  consoleLogger,
  decode,
  failure,
  peekTransport,
  maxPayloadBytesOf,
  type MqttLogger,
  type PayloadLimits,
  type ReplyBody,
  type TransportFields,
} from './wire'

/** An announcement that was skipped, and why. */
export interface InvalidAnnouncement {
  topic: string
  /**
   * Why it was skipped:
   * - `too_large`: the payload is over `maxPayloadBytes` (it was not read);
   * - `invalid`: not UTF-8 or not JSON, nested too deep, a field the schema refuses (a limit
   *   included, e.g. `steps: at most 100 steps (limits.steps)`), or an id that is not the topic's;
   * - `unauthorized`: tokens are configured and the message's `token` is missing or names no one;
   * - `forbidden`: the token is a worker's and the migration belongs to another worker.
   */
  code: LoomErrorCode
  /** The reason, naming the field, e.g. `steps: must list at least one step`. */
  reason: string
}

/**
 * What `mqttAnnouncements` needs of Loom: `as`, to act for the sender of each announcement,
 * and, when it has them, its `limits` (a `LoomInstance` has both).
 */
export interface AnnouncingLoom {
  as: LoomInstance['as']
  readonly limits?: Readonly<Limits>
}

/**
 * Who may announce. Give the same token options as `loomApp` and `tokenIdentities` take
 * (`token`, `workerToken`, `operators`, `workers`), or `identities` built elsewhere, not both.
 * With none at all announcements are open: every sender is the anonymous operator.
 */
export interface MqttAnnouncementsOptions extends TokenOptions {
  /** Identities built once for every edge (`tokenIdentities(…)`), instead of the token options. */
  identities?: Identities
  /** The first topic level(s); default `loom`, so the subscription is `loom/announce/+`. */
  topicPrefix?: string
  /** Largest payload read, in bytes; a larger one is skipped as `too_large` unread. Default 4 MiB, as the HTTP body limit. */
  maxPayloadBytes?: number
  /** Where skipped and failed announcements are logged. Default: console. */
  logger?: MqttLogger
  /** Called for each skipped announcement, after it is logged. */
  onInvalid?: (invalid: InvalidAnnouncement) => void
  /** Called for each announcement Loom accepted. */
  onAnnounced?: (migration: RegisteredMigration) => void
}

/** Payloads above this size are decoded and judged in two turns of the event loop. */
const YIELD_ABOVE_BYTES = 64 * 1024

const turn = () => new Promise<void>((resolve) => setTimeout(resolve, 0))

/** The refusals that are the message's doing: logged as a skip, reported to `onInvalid`. */
const SKIPPED: ReadonlySet<LoomErrorCode> = new Set(['invalid', 'too_large', 'unauthorized', 'forbidden'])

/**
 * The server side of announce over MQTT: subscribes `{prefix}/announce/+` and hands each
 * message to Loom, acting for its sender. The body is a `MigrationAnnouncement`, or one
 * wrapped as `{ data: … }` as `POST /registry/announce` accepts, plus the transport fields
 * `token`, `replyTo` and `correlationId`. Its `id` must be the topic's last level.
 *
 * Each message costs a bounded amount of work: one over `maxPayloadBytes` is refused unread;
 * it is then decoded as strict UTF-8 with its nesting measured before it is parsed, and
 * judged against the loom's `limits` (steps, candidates, map keys…), lists measured before
 * their items. The `token` field names the sender: a worker announces with its own token
 * (named in `workers`, or the single `workerToken`), an operator with an operator token. The
 * migration then belongs to the first worker that announced it; another worker announcing it
 * is refused `forbidden` and the migration stays as it was.
 *
 * A message that is refused is logged with the reason and skipped: the subscriber never
 * stops over one bad message. An empty retained message (how a worker withdraws its
 * announcement) is ignored. Messages for one migration are handled in arrival order. When
 * the message has a `replyTo`, the outcome is published there (see `mqttAnnouncer`'s
 * `awaitAcceptance`).
 *
 * Announcements are retained, so each one reaches a server that subscribes later, including
 * after a restart of the server or the broker; that replays each worker's last announcement,
 * which Loom upserts (runs and `createdAt` are kept).
 *
 * @example
 * import mqtt from 'mqtt'
 * import { createLoom, memoryStore, localEngine } from '@loom/core'
 * import { mqttAnnouncements } from '@loom/mqtt'
 *
 * const loom = createLoom({ store: memoryStore(), engine: localEngine() })
 * const client = await mqtt.connectAsync(process.env.MQTT_URL ?? 'mqtt://127.0.0.1:1883')
 * const announcements = mqttAnnouncements(client, loom, {
 *   token: process.env.LOOM_TOKEN,
 *   workers: process.env.LOOM_WORKERS, // "app-charts:<token>,topics:<token>"
 * })
 * await announcements.ready
 * // later: await announcements.stop(); await client.endAsync()
 */
export function mqttAnnouncements(client: MqttClient, loom: AnnouncingLoom, options: MqttAnnouncementsOptions = {}): MqttSubscription {
  const prefix = topicPrefix(options.topicPrefix)
  const identities = identitiesOf(options)
  const logger = options.logger ?? consoleLogger
  const limits = loom.limits ?? DEFAULT_LIMITS
  const payloadLimits: PayloadLimits = { maxPayloadBytes: maxPayloadBytesOf(options.maxPayloadBytes), limits }
  const schema = loom.limits ? limitedSchemas(loom.limits).AnnounceRequest : AnnounceRequestSchema
  const announcePrefix = topics.announce(prefix, '')
  // One chain per topic: two announcements of one migration must not race each other's upsert.
  const chains = new Map<string, Promise<void>>()
  if (identities.open) {
    logger.warn(`announcements on ${topics.announceAll(prefix)} are open: no token is configured, so any sender announces as an operator`)
  }

  const reply = (transport: TransportFields, body: ReplyBody) => answer(client, transport, body, logger, 'an announcement')

  const handle = async (topic: string, payload: Buffer) => {
    if (payload.length === 0) return
    const migrationId = topic.slice(announcePrefix.length)
    let transport: TransportFields = {}
    let read = false
    let migration: RegisteredMigration
    try {
      const decoded = decode(payload, payloadLimits)
      transport = decoded.transport
      read = true
      const actor = sender(identities, transport)
      // Parsing a large payload and judging it are each one uninterrupted stretch of work: let
      // the event loop turn between the two, so other callers wait for the longer, not the sum.
      if (payload.length > YIELD_ABOVE_BYTES) await turn()
      const announcement = parse(schema, decoded.body, '')
      if (announcement.id !== migrationId) {
        throw new LoomError('invalid', `id: ${JSON.stringify(announcement.id)} is not the migration id of topic ${topic}`, {
          details: { field: 'id' },
        })
      }
      migration = await loom.as(actor).announce(announcement)
    } catch (error) {
      // A message refused before it was read still names its reply topic: the sender learns why.
      if (!read) transport = peekTransport(payload, payloadLimits)
      const refusal = failure(error)
      if (SKIPPED.has(refusal.code)) {
        logger.warn(`skipped the announcement on ${topic}: ${refusal.error}`)
        try {
          options.onInvalid?.({ topic, code: refusal.code, reason: refusal.error })
        } catch (thrown) {
          logger.error('onInvalid threw', thrown)
        }
      } else {
        // Not the message's fault (the store is down, say): the worker learns it when it waits for acceptance.
        logger.error(`the announcement on ${topic} could not be applied`, error)
      }
      await reply(transport, refusal)
      return
    }
    try {
      options.onAnnounced?.(migration)
    } catch (error) {
      logger.error('onAnnounced threw', error)
    }
    await reply(transport, { ok: true, result: { id: migration.id, createdAt: migration.createdAt } })
  }

  return subscription(client, topics.announceAll(prefix), (topic, payload) => {
    const previous = chains.get(topic) ?? Promise.resolve()
    const next = previous.then(() => handle(topic, payload))
    chains.set(topic, next)
    return next.finally(() => {
      if (chains.get(topic) === next) chains.delete(topic)
    })
  })
}

/** The identities given, or built from the token options; both at once is a mistake worth saying. */
function identitiesOf(options: MqttAnnouncementsOptions): Identities {
  const { identities, token, workerToken, operators, workers } = options
  if (!identities) return tokenIdentities({ token, workerToken, operators, workers })
  if (token || workerToken || operators || workers) {
    throw new LoomError('invalid', 'identities: give identities or the token options (token, workerToken, operators, workers), not both', {
      details: { field: 'identities' },
    })
  }
  return identities
}

/** The actor the message's token names; `unauthorized` when tokens are configured and it names none. */
function sender(identities: Identities, transport: TransportFields): Actor {
  const actor = identities.authenticate(transport.token)
  if (actor) return actor
  throw new LoomError('unauthorized', transport.token === undefined ? 'token: missing' : 'token: matches no operator or worker token')
}
