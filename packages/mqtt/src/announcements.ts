import { AnnounceRequestSchema, LoomError, parse, type Loom, type LoomErrorCode, type RegisteredMigration } from '@loom/core'
import type { MqttClient } from 'mqtt'
import { subscription, type MqttSubscription } from './subscription'
import { topicPrefix, topics } from './topics'
import { answer, checkToken, consoleLogger, decode, failure, type MqttLogger, type ReplyBody, type TransportFields } from './wire'

/** An announcement that was skipped, and why. */
export interface InvalidAnnouncement {
  topic: string
  /** `invalid` (not JSON, a field the schema refuses, an id that is not the topic's) or `unauthorized` (token). */
  code: LoomErrorCode
  /** The reason, naming the field, e.g. `steps: must list at least one step`. */
  reason: string
}

export interface MqttAnnouncementsOptions {
  /** The first topic level(s); default `loom`, so the subscription is `loom/announce/+`. */
  topicPrefix?: string
  /** When set, announcements whose `token` field differs are skipped as `unauthorized`. */
  token?: string
  /** Where skipped and failed announcements are logged. Default: console. */
  logger?: MqttLogger
  /** Called for each skipped announcement, after it is logged. */
  onInvalid?: (invalid: InvalidAnnouncement) => void
  /** Called for each announcement Loom accepted. */
  onAnnounced?: (migration: RegisteredMigration) => void
}

/**
 * The server side of announce over MQTT: subscribes `{prefix}/announce/+` and hands each
 * message to `loom.announce`. The body is a `MigrationAnnouncement`, or one wrapped as
 * `{ data: … }` as `POST /registry/announce` accepts, plus the transport fields `token`,
 * `replyTo` and `correlationId`. Its `id` must be the topic's last level.
 *
 * A message that is not valid is logged with the reason and skipped: the subscriber never
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
 * const announcements = mqttAnnouncements(client, loom, { token: process.env.LOOM_TOKEN })
 * await announcements.ready
 * // later: await announcements.stop(); await client.endAsync()
 */
export function mqttAnnouncements(
  client: MqttClient,
  loom: Pick<Loom, 'announce'>,
  options: MqttAnnouncementsOptions = {},
): MqttSubscription {
  const prefix = topicPrefix(options.topicPrefix)
  const token = options.token || undefined
  const logger = options.logger ?? consoleLogger
  const announcePrefix = topics.announce(prefix, '')
  // One chain per topic: two announcements of one migration must not race each other's upsert.
  const chains = new Map<string, Promise<void>>()

  const reply = (transport: TransportFields, body: ReplyBody) => answer(client, transport, body, logger, 'an announcement')

  const handle = async (topic: string, payload: Buffer) => {
    if (payload.length === 0) return
    const migrationId = topic.slice(announcePrefix.length)
    let transport: TransportFields = {}
    let migration: RegisteredMigration
    try {
      const decoded = decode(payload)
      transport = decoded.transport
      checkToken(transport, token)
      const announcement = parse(AnnounceRequestSchema, decoded.body, '')
      if (announcement.id !== migrationId) {
        throw new LoomError('invalid', `id: ${JSON.stringify(announcement.id)} is not the migration id of topic ${topic}`, {
          details: { field: 'id' },
        })
      }
      migration = await loom.announce(announcement)
    } catch (error) {
      const refusal = failure(error)
      if (refusal.code === 'invalid' || refusal.code === 'unauthorized') {
        logger.warn(`skipped the announcement on ${topic}: ${refusal.error}`)
        options.onInvalid?.({ topic, code: refusal.code, reason: refusal.error })
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
