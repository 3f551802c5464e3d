import { execFile, spawn } from 'node:child_process'
import { createInterface } from 'node:readline'
import { promisify } from 'node:util'
import { createLoom, localEngine, memoryStore, type LoomInstance } from '@loom/core'
import { eventually } from '@loom/core/testing'
import { afterAll, afterEach, beforeEach, describe, expect, it } from 'vitest'
import { mqttAnnouncements, mqttAnnouncer, mqttDispatcher } from '../src/index'
import { closeClients, connect, testBroker, uniquePrefix } from './helpers'

// Clients we did not write: Mosquitto's own command-line tools (Debian package
// mosquitto-clients). They speak to the same broker as the tests, aedes or Mosquitto.

const run = promisify(execFile)
const broker = await testBroker()
afterAll(() => broker.close())
const { hostname, port } = new URL(broker.url)
const address = ['-h', hostname, '-p', port || '1883']
const versions = broker.versions.map((v) => (v === 5 ? 'mqttv5' : 'mqttv311'))

/** Starts mosquitto_sub and resolves with an iterator over its output lines. */
function subscribe(args: string[]) {
  const child = spawn('mosquitto_sub', [...address, ...args], { stdio: ['ignore', 'pipe', 'pipe'] })
  const lines = createInterface({ input: child.stdout })[Symbol.asyncIterator]()
  const next = async () => {
    const line = await Promise.race([
      lines.next(),
      new Promise<never>((_, reject) => setTimeout(() => reject(new Error('mosquitto_sub printed nothing within 10 s')), 10_000)),
    ])
    if (line.done) throw new Error('mosquitto_sub exited')
    return line.value
  }
  return { next, stop: () => child.kill() }
}

describe.each(versions)('Mosquitto command-line clients (%s)', (version) => {
  let loom: LoomInstance
  let prefix: string
  const cleanups: Array<() => unknown> = []

  beforeEach(() => {
    loom = createLoom({ store: memoryStore(), engine: localEngine(), onError: () => {} })
    prefix = uniquePrefix()
  })
  afterEach(async () => {
    for (const cleanup of cleanups.splice(0).reverse()) await cleanup()
    await loom.close()
    await closeClients()
  })

  it('announces with mosquitto_pub: Loom registers the migration', async () => {
    const server = await connect(broker.url, broker.versions.at(-1)!)
    const subscriber = mqttAnnouncements(server, loom, { topicPrefix: prefix, token: 't0ken' })
    cleanups.push(() => subscriber.stop())
    await subscriber.ready
    const topic = `${prefix}/announce/app-chart`
    const body = { id: 'app-chart', name: 'App chart', steps: [{ name: 'bump-chart', workerApp: 'charts' }], token: 't0ken' }
    await run('mosquitto_pub', [...address, '-V', version, '-q', '1', '-r', '-t', topic, '-m', JSON.stringify(body)], { timeout: 10_000 })
    cleanups.push(() => run('mosquitto_pub', [...address, '-r', '-n', '-t', topic], { timeout: 10_000 }))
    const migration = await eventually(() => loom.getMigration('app-chart'))
    expect(migration).toMatchObject({ id: 'app-chart', name: 'App chart', steps: [{ name: 'bump-chart', workerApp: 'charts' }] })
  })

  it('reads the retained announcement of mqttAnnouncer with mosquitto_sub: plain JSON on loom/announce/{id}', async () => {
    const worker = await connect(broker.url, 4)
    const announcer = mqttAnnouncer(worker, { topicPrefix: prefix })
    const announcement = { id: 'kafka-topics', name: 'Kafka topics', steps: [{ name: 'compact', workerApp: 'kafka' }] }
    await announcer.announce(announcement)
    cleanups.push(() => announcer.withdraw('kafka-topics'))
    const sub = subscribe(['-V', version, '-q', '1', '-v', '-C', '1', '-t', `${prefix}/announce/+`])
    cleanups.push(sub.stop)
    expect(await sub.next()).toBe(`${prefix}/announce/kafka-topics ${JSON.stringify(announcement)}`)
  })

  it('serves a dispatch by hand with mosquitto_sub and mosquitto_pub: the reply topic and correlation id are in the body', async () => {
    // A retained marker tells us when mosquitto_sub is subscribed: it arrives first.
    const ready = `${prefix}/workers/charts/ready`
    await run('mosquitto_pub', [...address, '-q', '1', '-r', '-t', ready, '-m', 'ready'], { timeout: 10_000 })
    cleanups.push(() => run('mosquitto_pub', [...address, '-r', '-n', '-t', ready], { timeout: 10_000 }))
    const sub = subscribe(['-V', version, '-q', '1', '-C', '2', '-t', `${prefix}/workers/charts/#`])
    cleanups.push(sub.stop)
    expect(await sub.next()).toBe('ready')

    const server = await connect(broker.url, broker.versions.at(-1)!)
    const dispatcher = mqttDispatcher(server, { topicPrefix: prefix, token: 'w0rker', timeoutMs: 10_000 })
    cleanups.push(() => dispatcher.close())
    const request = {
      migrationId: 'app-chart',
      runId: 'app-chart__billing-api',
      stepName: 'bump-chart',
      candidate: { id: 'billing-api' },
      callbackId: 'app-chart__billing-api',
      eventName: 'step-completed:bump-chart',
    }
    const dispatched = dispatcher.dispatch({ workerApp: 'charts' }, request)

    const message = JSON.parse(await sub.next())
    expect(message).toMatchObject({ ...request, token: 'w0rker', replyTo: expect.stringMatching(new RegExp(`^${prefix}/replies/`)) })
    expect(typeof message.correlationId).toBe('string')
    await run(
      'mosquitto_pub',
      [
        ...address,
        '-V',
        version,
        '-q',
        '1',
        '-t',
        message.replyTo,
        '-m',
        JSON.stringify({ correlationId: message.correlationId, ok: true }),
      ],
      { timeout: 10_000 },
    )
    await expect(dispatched).resolves.toBeUndefined()
  })
})
