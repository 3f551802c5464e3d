import { createServer, type AddressInfo } from 'node:net'
import { Aedes } from 'aedes'
import mqtt, { type MqttClient } from 'mqtt'
import { afterAll, afterEach, beforeAll } from 'vitest'

/**
 * The broker of a test file: the real Mosquitto when MQTT_URL is set, an in-process aedes
 * broker otherwise (MQTT 3.1.1, which every client here speaks). Registers the file's hooks;
 * `connect` opens a client that is ended after each test, and `cleanups` takes more such work.
 */
export function testBroker(clientPrefix: string) {
  let url: string
  let closeBroker = async () => {}
  const cleanups: Array<() => Promise<unknown>> = []

  beforeAll(async () => {
    if (process.env.MQTT_URL) {
      url = process.env.MQTT_URL
      return
    }
    const broker = await Aedes.createBroker()
    const server = createServer(broker.handle)
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', () => resolve()))
    url = `mqtt://127.0.0.1:${(server.address() as AddressInfo).port}`
    closeBroker = async () => {
      await new Promise<void>((resolve) => broker.close(() => resolve()))
      await new Promise<void>((resolve) => server.close(() => resolve()))
    }
  })
  afterAll(() => closeBroker())
  afterEach(async () => {
    for (const cleanup of cleanups.splice(0).reverse()) await cleanup()
  })

  return {
    cleanups,
    async connect(): Promise<MqttClient> {
      const client = await mqtt.connectAsync(url, { protocolVersion: 4, clientId: `${clientPrefix}-${crypto.randomUUID().slice(0, 12)}` })
      client.on('error', () => {})
      cleanups.push(() => client.endAsync())
      return client
    },
  }
}
