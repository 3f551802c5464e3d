import type { IConnackPacket, IPublishPacket, MqttClient } from 'mqtt'
import { topicMatches } from './topics'

export type MessageHandler = (topic: string, payload: Buffer, packet: IPublishPacket) => void

interface Route {
  filter: string
  handlers: Set<MessageHandler>
  /** Resolves once the broker has granted the subscription. */
  granted: Promise<void>
  /** The last subscribe failed (the connection dropped before the grant, say). */
  failed: boolean
}

/**
 * One per client: every factory of this package subscribes through it. It listens for
 * messages once and hands each to the handlers whose filter matches, counts handlers per
 * filter so that stopping one factory never unsubscribes another's topic, and subscribes
 * again when the broker lost the session — mqtt.js does that itself unless the caller's
 * client was built with `resubscribe: false` or without reconnecting.
 */
export class Router {
  private readonly routes = new Map<string, Route>()
  private connectedOnce: boolean

  constructor(private readonly client: MqttClient) {
    this.connectedOnce = client.connected
    client.on('message', (topic, payload, packet) => {
      for (const route of this.routes.values()) {
        if (!topicMatches(route.filter, topic)) continue
        for (const handler of route.handlers) handler(topic, payload, packet)
      }
    })
    client.on('connect', (connack: IConnackPacket) => {
      const reconnect = this.connectedOnce
      this.connectedOnce = true
      if (!reconnect || connack.sessionPresent) return
      if (client.options.resubscribe !== false && (client.options.reconnectPeriod ?? 1000) > 0) return
      for (const route of this.routes.values()) this.subscribe(route)
    })
  }

  /** Routes messages matching `filter` to `handler`; resolves once the broker granted the subscription. */
  async add(filter: string, handler: MessageHandler): Promise<void> {
    let route = this.routes.get(filter)
    if (!route) {
      route = { filter, handlers: new Set(), granted: Promise.resolve(), failed: false }
      this.routes.set(filter, route)
      this.subscribe(route)
    } else if (route.failed) {
      this.subscribe(route)
    }
    route.handlers.add(handler)
    await route.granted
  }

  /** Stops routing to `handler`; the last handler of a filter unsubscribes it. */
  async remove(filter: string, handler: MessageHandler): Promise<void> {
    const route = this.routes.get(filter)
    if (!route?.handlers.delete(handler) || route.handlers.size > 0) return
    this.routes.delete(filter)
    // An ended client has no subscriptions left to remove.
    if (this.client.disconnecting || this.client.disconnected) return
    const unsubscribed = this.client.unsubscribeAsync(filter).catch(() => {})
    // Offline, the UNSUBSCRIBE waits for a reconnect that may never come: don't make stop() wait
    // for it. mqtt.js has already dropped the filter from the ones it resubscribes.
    if (this.client.connected) await unsubscribed
  }

  private subscribe(route: Route): void {
    const { filter } = route
    route.failed = false
    route.granted = this.client.subscribeAsync(filter, { qos: 1 }).then((grants) => {
      // 128 (3.1.1) and reason codes >= 0x80 (5) mean the broker refused, e.g. by its ACL.
      const refused = grants.find((g) => g.qos >= 0x80)
      if (refused) throw new Error(`the broker refused the subscription to ${filter} (code ${refused.qos})`)
    })
    // A subscription lost with its connection is made again on reconnect; callers awaiting
    // this one see the failure, and the next `add` for the filter tries again.
    route.granted.catch(() => {
      route.failed = true
    })
  }
}

const routers = new WeakMap<MqttClient, Router>()

/** The router of `client`, created on first use. */
export function routerOf(client: MqttClient): Router {
  let router = routers.get(client)
  if (!router) {
    router = new Router(client)
    routers.set(client, router)
  }
  return router
}
