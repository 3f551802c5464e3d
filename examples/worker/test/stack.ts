import { createServer, type AddressInfo, type Server } from 'node:net'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { serve, type ServerType } from '@hono/node-server'
import {
  createLoom,
  httpDispatcher,
  httpDryRunner,
  localEngine,
  memoryStore,
  type DispatchStepRequest,
  type LoomInstance,
  type MigrationStore,
} from '@loom/core'
import { loomApp } from '@loom/hono'
import { mqttAnnouncements, type InvalidAnnouncement, type MqttSubscription } from '@loom/mqtt'
import { Aedes } from 'aedes'
import mqtt, { type MqttClient } from 'mqtt'
import { createExampleWorker, type ExampleWorker } from '../src/index'

export const OPERATOR_TOKEN = 'operator-token'
export const WORKER_TOKEN = 'worker-token'

/**
 * The broker: the real one when `MQTT_URL` is set (Mosquitto in CI), otherwise an
 * in-process aedes broker, which speaks MQTT 3.1.1 only, so every client here uses 3.1.1.
 */
export async function testBroker(): Promise<{ url: string; host: string; port: number; close(): Promise<void> }> {
  if (process.env.MQTT_URL) {
    const url = new URL(process.env.MQTT_URL)
    return { url: process.env.MQTT_URL, host: url.hostname, port: Number(url.port || 1883), close: async () => {} }
  }
  const broker = await Aedes.createBroker()
  const server: Server = createServer(broker.handle)
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject)
    server.listen(0, '127.0.0.1', () => resolve())
  })
  const { port } = server.address() as AddressInfo
  return {
    url: `mqtt://127.0.0.1:${port}`,
    host: '127.0.0.1',
    port,
    async close() {
      await new Promise<void>((resolve) => broker.close(() => resolve()))
      await new Promise<void>((resolve) => server.close(() => resolve()))
    },
  }
}

async function connect(url: string): Promise<MqttClient> {
  const client = await mqtt.connectAsync(url, {
    protocolVersion: 4,
    clientId: `loom-example-test-${crypto.randomUUID().slice(0, 12)}`,
    reconnectPeriod: 100,
    connectTimeout: 5_000,
  })
  client.on('error', () => {})
  return client
}

/** A topic prefix of its own per test, so retained announcements never reach another test (or run). */
const uniquePrefix = () => `loom-example-test-${crypto.randomUUID().slice(0, 8)}`

/** Serves `fetch` on 127.0.0.1 on a free port; the handler is looked up per request, so what it serves can be swapped. */
async function listen(fetch: () => (request: Request) => Response | Promise<Response>): Promise<{ url: string; close(): Promise<void> }> {
  let server: ServerType | undefined
  const port = await new Promise<number>((resolve) => {
    server = serve({ fetch: (request) => fetch()(request), port: 0, hostname: '127.0.0.1' }, (info) => resolve(info.port))
  })
  return {
    url: `http://127.0.0.1:${port}`,
    close: () => new Promise<void>((resolve) => server!.close(() => resolve())),
  }
}

/**
 * The whole of issue 6 in one process, over real sockets: Loom (`createLoom` with the local
 * engine) serving its HTTP API, subscribed to announcements on the broker; the example
 * worker announcing over MQTT, talking to Loom over HTTP with its token, and receiving steps
 * over HTTP on a port of its own. Loom and the worker can each be restarted behind the same
 * addresses, keeping Loom's store and the worker's data folder.
 */
export interface Stack {
  loom: LoomInstance
  example: ExampleWorker
  apiUrl: string
  workerUrl: string
  prefix: string
  /** Every dispatch Loom sent, in order. */
  dispatched: DispatchStepRequest[]
  /** Announcements the server skipped, with the reason. */
  invalid: InvalidAnnouncement[]
  restartLoom(): Promise<void>
  restartWorker(): Promise<void>
  close(): Promise<void>
}

export async function startStack(brokerUrl: string): Promise<Stack> {
  const prefix = uniquePrefix()
  const dataDir = await mkdtemp(join(tmpdir(), 'loom-example-worker-'))
  const store: MigrationStore = memoryStore()
  const dispatched: DispatchStepRequest[] = []
  const invalid: InvalidAnnouncement[] = []
  const dispatcher = httpDispatcher({ token: WORKER_TOKEN })

  const makeLoom = () =>
    createLoom({
      store,
      engine: localEngine({ retryDelayMs: 100 }),
      dispatcher: {
        dispatch: async (target, request) => {
          dispatched.push(structuredClone(request))
          await dispatcher.dispatch(target, request)
        },
      },
      dryRunner: httpDryRunner({ token: WORKER_TOKEN }),
      onError: () => {},
    })

  let loom = makeLoom()
  let api = loomApp(loom, { token: OPERATOR_TOKEN, workerToken: WORKER_TOKEN })
  const apiServer = await listen(() => api.fetch)

  const serverClient = await connect(brokerUrl)
  const workerClient = await connect(brokerUrl)
  // Loom is swapped on restart: hand announcements to whichever is current, as its sender.
  const announcements: MqttSubscription = mqttAnnouncements(
    serverClient,
    { as: (actor) => loom.as(actor) },
    {
      // The same identities as the API: the worker announces with its own token, not the operator's.
      token: OPERATOR_TOKEN,
      workerToken: WORKER_TOKEN,
      topicPrefix: prefix,
      logger: { warn: () => {}, error: () => {} },
      onInvalid: (skipped) => invalid.push(skipped),
    },
  )
  await announcements.ready

  let example: ExampleWorker | undefined
  const workerServer = await listen(() => example!.fetch)
  const makeWorker = () =>
    createExampleWorker({
      dataDir,
      loomUrl: apiServer.url,
      token: WORKER_TOKEN,
      url: workerServer.url,
      announce: { mqtt: workerClient, topicPrefix: prefix },
      pollMs: 50,
      retry: { attempts: 6, initialDelayMs: 50, maxDelayMs: 500 },
      onError: () => {},
    })
  example = await makeWorker()

  const stack: Stack = {
    get loom() {
      return loom
    },
    get example() {
      return example!
    },
    apiUrl: apiServer.url,
    workerUrl: workerServer.url,
    prefix,
    dispatched,
    invalid,
    async restartLoom() {
      await loom.close()
      loom = makeLoom()
      api = loomApp(loom, { token: OPERATOR_TOKEN, workerToken: WORKER_TOKEN })
      await loom.ready
    },
    async restartWorker() {
      await example!.stop()
      example = await makeWorker()
      await example.start()
    },
    async close() {
      await example!.stop()
      await announcements.stop()
      await loom.close()
      // Clear the retained announcement so a real broker does not keep it after the test.
      await workerClient.publishAsync(`${prefix}/announce/app-chart`, '', { qos: 1, retain: true })
      await Promise.all([serverClient.endAsync(), workerClient.endAsync()])
      await Promise.all([apiServer.close(), workerServer.close()])
      await rm(dataDir, { recursive: true, force: true })
    },
  }
  return stack
}
