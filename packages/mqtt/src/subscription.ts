import type { MqttClient } from 'mqtt'
import { routerOf, type MessageHandler } from './router'

/** A running subscription of this package: messages are handled until `stop()`. */
export interface MqttSubscription {
  /**
   * Resolves once the broker has granted the subscription, so messages published from then on
   * are received. Rejects when it could not be made now (the client is offline or ended); it
   * is made again when the client reconnects.
   */
  readonly ready: Promise<void>
  /** Unsubscribes (unless another subscription of this package uses the topic) and waits for messages being handled. Idempotent. */
  stop(): Promise<void>
}

/**
 * Subscribes `filter` through the client's router, handling each message with `handle` and
 * tracking the handling so `stop()` can wait for it.
 */
export function subscription(
  client: MqttClient,
  filter: string,
  handle: (topic: string, payload: Buffer) => Promise<void>,
): MqttSubscription {
  const router = routerOf(client)
  const inFlight = new Set<Promise<void>>()
  let stopped = false
  const onMessage: MessageHandler = (topic, payload) => {
    if (stopped) return
    const work = handle(topic, payload).finally(() => inFlight.delete(work))
    inFlight.add(work)
  }
  const ready = router.add(filter, onMessage)
  // `ready` is for callers who want to wait; a failure is theirs to see, not an unhandled rejection.
  ready.catch(() => {})
  let stopping: Promise<void> | undefined
  return {
    ready,
    stop() {
      stopping ??= (async () => {
        stopped = true
        await router.remove(filter, onMessage)
        await Promise.allSettled([...inFlight])
      })()
      return stopping
    },
  }
}
