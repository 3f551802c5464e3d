import { LoomError, MigrationAnnouncementSchema, SlugSchema, parse, type MigrationAnnouncement } from '@loom/core'
import type { MqttClient } from 'mqtt'
import { createRequester, type Requester } from './requester'
import { topicPrefix, topics } from './topics'
import { encode } from './wire'

export interface MqttAnnouncerOptions {
  /** The first topic level(s); default `loom`. Servers and workers must agree on it. */
  topicPrefix?: string
  /**
   * Sent in each announcement's `token` field, for servers configured with tokens: this
   * worker's own token (named in the server's `workers`, or the single worker token). The
   * server announces as the worker it names, so the migration becomes that worker's.
   */
  token?: string
  /** How long `announce` waits for the broker (or, with `awaitAcceptance`, for Loom). Default 10 s. */
  timeoutMs?: number
}

export interface AnnounceOptions {
  /**
   * Wait until a Loom server has accepted the announcement, not just the broker. It then
   * throws the server's error when it refuses (`invalid` naming the field, `too_large`,
   * `unauthorized` for a token it does not know, `forbidden` for another worker's migration),
   * and `unavailable` when no server answered in time. A worker waits for this before it
   * discovers and submits candidates.
   */
  awaitAcceptance?: boolean
  /** Overrides the announcer's `timeoutMs` for this call. */
  timeoutMs?: number
}

/** The worker side of announce over MQTT. */
export interface MqttAnnouncer {
  /**
   * Validates the announcement (an `invalid` error names the field, and nothing is
   * published), then publishes it retained with QoS 1 on `{prefix}/announce/{id}`.
   */
  announce(announcement: MigrationAnnouncement, options?: AnnounceOptions): Promise<void>
  /**
   * Clears the retained announcement, so servers that subscribe later no longer receive it.
   * The migration stays registered where it already is: delete it there.
   */
  withdraw(migrationId: string): Promise<void>
  /** Stops listening for acceptances; the client stays the caller's. */
  close(): Promise<void>
}

/**
 * Announces migrations over MQTT as retained QoS 1 messages on `{prefix}/announce/{id}`, so a
 * Loom server receives them whenever it subscribes (`mqttAnnouncements`), even when it
 * starts after the worker.
 *
 * @example
 * import mqtt from 'mqtt'
 * import { mqttAnnouncer } from '@loom/mqtt'
 *
 * const client = await mqtt.connectAsync(process.env.MQTT_URL ?? 'mqtt://127.0.0.1:1883')
 * const announcer = mqttAnnouncer(client, { token: process.env.LOOM_WORKER_TOKEN })
 * await announcer.announce(
 *   { id: 'app-chart', name: 'App chart', steps: [{ name: 'bump-chart', workerApp: 'charts' }] },
 *   { awaitAcceptance: true },
 * )
 */
export function mqttAnnouncer(client: MqttClient, options: MqttAnnouncerOptions = {}): MqttAnnouncer {
  const prefix = topicPrefix(options.topicPrefix)
  const token = options.token || undefined
  const defaultTimeoutMs = options.timeoutMs ?? 10_000
  let requester: Requester | undefined

  const publish = async (topic: string, message: string, timeoutMs: number, what: string) => {
    if (client.disconnecting || client.disconnected) throw new LoomError('unavailable', `${what}: the MQTT client has been ended`)
    let timer: ReturnType<typeof setTimeout> | undefined
    const published = client.publishAsync(topic, message, { qos: 1, retain: true })
    try {
      await Promise.race([
        published,
        new Promise<never>((_, reject) => {
          timer = setTimeout(
            () =>
              reject(
                new LoomError(
                  'unavailable',
                  `${what}: the broker did not acknowledge within ${timeoutMs} ms; it is sent when the client reconnects`,
                ),
              ),
            timeoutMs,
          )
        }),
      ])
    } catch (error) {
      if (LoomError.is(error)) throw error
      throw new LoomError('unavailable', `${what}: publish failed: ${(error as Error).message}`, { cause: error })
    } finally {
      clearTimeout(timer)
      published.catch(() => {})
    }
  }

  return {
    async announce(input, announceOptions = {}) {
      const announcement = parse(MigrationAnnouncementSchema, input, '')
      const topic = topics.announce(prefix, announcement.id)
      const timeoutMs = announceOptions.timeoutMs ?? defaultTimeoutMs
      const what = `announcement of ${announcement.id}`
      const body = { ...announcement, ...(token ? { token } : {}) }
      if (!announceOptions.awaitAcceptance) return publish(topic, encode(body), timeoutMs, what)
      requester ??= createRequester(client, prefix)
      const reply = await requester.request(topic, body, { timeoutMs, what: `${what}: no Loom server accepted it`, retain: true })
      if (!reply.ok) throw new LoomError(reply.code, `${what} refused: ${reply.error}`)
    },

    async withdraw(migrationId) {
      const topic = topics.announce(prefix, parse(SlugSchema, migrationId, 'migrationId'))
      await publish(topic, '', defaultTimeoutMs, `withdrawal of ${migrationId}`)
    },

    async close() {
      await requester?.close()
    },
  }
}
