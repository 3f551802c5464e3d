import { createServer, type AddressInfo, type Server } from 'node:net'
import { Aedes } from 'aedes'
import mqtt, { type IClientOptions, type MqttClient } from 'mqtt'
import type { MqttLogger } from '../src/index'

/** An in-process aedes broker on 127.0.0.1; `stop` closes it, `start` listens again on the same port. */
export interface TestBroker {
  url: string
  port: number
  start(): Promise<void>
  stop(): Promise<void>
}

export async function aedesBroker(port = 0): Promise<TestBroker> {
  let broker: Aedes | undefined
  let server: Server | undefined
  const handle: TestBroker = {
    url: '',
    port,
    async start() {
      broker = await Aedes.createBroker()
      server = createServer(broker.handle)
      await new Promise<void>((resolve, reject) => {
        server!.once('error', reject)
        server!.listen(handle.port, '127.0.0.1', () => resolve())
      })
      handle.port = (server.address() as AddressInfo).port
      handle.url = `mqtt://127.0.0.1:${handle.port}`
    },
    async stop() {
      const [b, s] = [broker, server]
      broker = server = undefined
      if (b) await new Promise<void>((resolve) => b.close(() => resolve()))
      if (s) await new Promise<void>((resolve) => s.close(() => resolve()))
    },
  }
  await handle.start()
  return handle
}

/**
 * The broker the tests use: the real one when `MQTT_URL` is set (Mosquitto in CI, with MQTT
 * 3.1.1 and 5), otherwise an in-process aedes broker (MQTT 3.1.1 only).
 */
export async function testBroker(): Promise<{ url: string; real: boolean; versions: Array<4 | 5>; close(): Promise<void> }> {
  const url = process.env.MQTT_URL
  if (url) return { url, real: true, versions: [4, 5], close: async () => {} }
  const broker = await aedesBroker()
  return { url: broker.url, real: false, versions: [4], close: () => broker.stop() }
}

/** The protocol pairings to run (server side, worker side): both versions and a mix on a broker that speaks 5. */
export const pairings = (versions: Array<4 | 5>): Array<[4 | 5, 4 | 5]> =>
  versions.includes(5)
    ? [
        [4, 4],
        [5, 5],
        [5, 4],
      ]
    : [[4, 4]]

const opened = new Set<MqttClient>()

/** A connected client; `closeClients` ends every client a test opened. */
export async function connect(url: string, protocolVersion: 4 | 5, options: IClientOptions = {}): Promise<MqttClient> {
  const client = await mqtt.connectAsync(url, {
    protocolVersion,
    clientId: `loom-test-${crypto.randomUUID().slice(0, 12)}`,
    reconnectPeriod: 100,
    connectTimeout: 5_000,
    ...options,
  })
  // A broker going away is part of some tests; the client reports it as an error event.
  client.on('error', () => {})
  opened.add(client)
  return client
}

export async function closeClients(): Promise<void> {
  const clients = [...opened]
  opened.clear()
  await Promise.all(clients.map((c) => c.endAsync(true).catch(() => {})))
}

/** A topic prefix of its own for each test, so retained messages and subscriptions never cross tests. */
export const uniquePrefix = () => `loom-test-${crypto.randomUUID().slice(0, 8)}`

/** A logger that keeps what it is told, for assertions. */
export function recordingLogger(): MqttLogger & { warnings: string[]; errors: string[] } {
  const warnings: string[] = []
  const errors: string[] = []
  return { warnings, errors, warn: (m) => warnings.push(m), error: (m) => errors.push(m) }
}

/** Resolves with the next message on `topic` (retained ones included), bounded by `timeoutMs`. */
export async function nextMessage(client: MqttClient, topic: string, timeoutMs = 5_000): Promise<{ payload: string; retain: boolean }> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      client.off('message', onMessage)
      reject(new Error(`no message on ${topic} within ${timeoutMs} ms`))
    }, timeoutMs)
    const onMessage = (t: string, payload: Buffer, packet: { retain?: boolean }) => {
      if (t !== topic) return
      clearTimeout(timer)
      client.off('message', onMessage)
      resolve({ payload: payload.toString(), retain: packet.retain === true })
    }
    client.on('message', onMessage)
    client.subscribeAsync(topic, { qos: 1 }).catch(reject)
  })
}
