import { LoomError } from '@loom/core'
import type { MqttClient } from 'mqtt'
import { routerOf, type MessageHandler } from './router'
import { topics } from './topics'
import { encode, parseReply, type Reply } from './wire'

interface RequestOptions {
  timeoutMs: number
  /** Names the request in errors, e.g. `dispatch of step "bump" … to worker app charts`. */
  what: string
  /** Publish the request as a retained message (an announcement). */
  retain?: boolean
}

interface Pending {
  resolve: (reply: Reply) => void
}

/**
 * Request/response over a broker that may speak only MQTT 3.1.1: each requester owns an
 * inbox topic, and every request carries that topic and a fresh correlation id in its body.
 */
export interface Requester {
  /**
   * Publishes `body` (with `replyTo` and `correlationId` added) on `topic` and resolves with
   * the reply. Throws `unavailable` when no reply came within `timeoutMs`, including the
   * time spent waiting for the client to connect.
   */
  request(topic: string, body: Record<string, unknown>, options: RequestOptions): Promise<Reply>
  /** Stops listening on the inbox; requests in flight fail with `unavailable`. */
  close(): Promise<void>
}

export function createRequester(client: MqttClient, prefix: string): Requester {
  const inbox = topics.inbox(prefix, crypto.randomUUID())
  const pending = new Map<string, Pending>()
  let subscribed: Promise<void> | undefined
  let closed = false

  const onReply: MessageHandler = (_topic, payload) => {
    const reply = parseReply(payload)
    if (!reply) return
    const waiter = pending.get(reply.correlationId)
    if (!waiter) return // a late or repeated reply: its request has already ended
    pending.delete(reply.correlationId)
    waiter.resolve(reply)
  }

  const listen = () => {
    if (!subscribed) {
      subscribed = routerOf(client).add(inbox, onReply)
      subscribed.catch(() => {
        subscribed = undefined
      })
    }
    return subscribed
  }

  return {
    async request(topic, body, { timeoutMs, what, retain = false }) {
      if (closed) throw new LoomError('unavailable', `${what}: the MQTT transport was closed`)
      if (client.disconnecting || client.disconnected) {
        throw new LoomError('unavailable', `${what}: the MQTT client has been ended`)
      }
      const correlationId = crypto.randomUUID()
      let timer: ReturnType<typeof setTimeout> | undefined
      const timedOut = new Promise<never>((_, reject) => {
        timer = setTimeout(() => {
          pending.delete(correlationId)
          const state = client.connected ? 'no answer' : 'the MQTT client is not connected to the broker'
          reject(new LoomError('unavailable', `${what}: ${state} within ${timeoutMs} ms`))
        }, timeoutMs)
      })
      const replied = new Promise<Reply>((resolve) => pending.set(correlationId, { resolve }))
      try {
        // An offline client would queue the request and send it after we gave up on it: wait instead.
        const online = connected(client)
        try {
          await Promise.race([online.ready, timedOut])
        } finally {
          online.cancel()
        }
        // Subscribe before publishing, or a fast receiver's answer could arrive before the inbox exists.
        await Promise.race([
          listen().catch((error: unknown) => {
            throw new LoomError('unavailable', `${what}: could not subscribe to the reply topic: ${(error as Error).message}`, {
              cause: error,
            })
          }),
          timedOut,
        ])
        const message = encode({ ...body, replyTo: inbox, correlationId })
        // QoS 0: the answer is the acknowledgement, and a lost request times out like an absent
        // worker (the engine retries). QoS 1 would add nothing but a PUBACK, and that PUBACK,
        // followed at once by another small packet on the same socket, stalls it ~40 ms in
        // Nagle's algorithm against delayed ACKs: 88 ms instead of 0.3 ms a round trip (bench/).
        // An announcement stays QoS 1: it is retained, and may be published with nobody listening.
        const published = client.publishAsync(topic, message, { qos: retain ? 1 : 0, retain })
        published.catch(() => {})
        return await Promise.race([
          replied,
          timedOut,
          published
            .then(() => replied)
            .catch((error: unknown) => {
              throw new LoomError('unavailable', `${what}: publish failed: ${(error as Error).message}`, { cause: error })
            }),
        ])
      } finally {
        clearTimeout(timer)
        pending.delete(correlationId)
      }
    },

    async close() {
      closed = true
      for (const [id, waiter] of pending) {
        pending.delete(id)
        waiter.resolve({ correlationId: id, ok: false, error: 'the MQTT transport was closed', code: 'unavailable' })
      }
      if (subscribed) await routerOf(client).remove(inbox, onReply)
    },
  }
}

/**
 * `ready` resolves when `client` is connected: at once, or on its next `connect`. `cancel`
 * removes the listener of a request that stopped waiting, so requests made while the broker is
 * away do not pile up listeners on the client.
 */
function connected(client: MqttClient): { ready: Promise<void>; cancel(): void } {
  if (client.connected) return { ready: Promise.resolve(), cancel: () => {} }
  let listener: (() => void) | undefined
  const ready = new Promise<void>((resolve) => {
    listener = () => resolve()
    client.once('connect', listener)
  })
  return { ready, cancel: () => client.removeListener('connect', listener!) }
}
