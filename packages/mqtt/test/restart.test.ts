import { createLoom, localEngine, memoryStore, type LoomInstance, type MigrationAnnouncement } from '@loom/core'
import { eventually } from '@loom/core/testing'
import type { IClientOptions, MqttClient } from 'mqtt'
import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import { mqttAnnouncements, mqttAnnouncer, mqttDispatcher, onDispatch } from '../src/index'
import { aedesBroker, closeClients, connect, type TestBroker } from './helpers'

// Always the in-process broker: the machine's Mosquitto is shared and must not be restarted.
// aedes speaks MQTT 3.1.1 only.

const announcement = (id: string): MigrationAnnouncement => ({
  id,
  name: `Migration ${id}`,
  steps: [{ name: 'bump-chart', workerApp: 'charts' }],
})

const offline = (client: MqttClient) => eventually(() => expect(client.connected).toBe(false), { timeoutMs: 5_000 })
const online = (client: MqttClient) => eventually(() => expect(client.connected).toBe(true), { timeoutMs: 10_000 })

describe.each<[string, IClientOptions]>([
  ['mqtt.js resubscribing (its default)', {}],
  ['a client built with resubscribe: false', { resubscribe: false }],
])('after the broker restarts, with %s', (_name, serverOptions) => {
  let broker: TestBroker
  let loom: LoomInstance

  beforeEach(async () => {
    broker = await aedesBroker()
    loom = createLoom({ store: memoryStore(), engine: localEngine(), onError: () => {} })
  })
  afterEach(async () => {
    await closeClients()
    await loom.close()
    await broker.stop()
  })

  it('receives announcements published while it was down and after it came back', async () => {
    const server = await connect(broker.url, 4, serverOptions)
    const worker = await connect(broker.url, 4)
    const subscriber = mqttAnnouncements(server, loom)
    await subscriber.ready
    const announcer = mqttAnnouncer(worker, { timeoutMs: 15_000 })
    await announcer.announce(announcement('before'), { awaitAcceptance: true })

    await broker.stop()
    await Promise.all([offline(server), offline(worker)])
    // The worker's client keeps the QoS 1 message and sends it once it is connected again.
    const meanwhile = announcer.announce(announcement('meanwhile'))
    await broker.start()
    await Promise.all([online(server), online(worker)])
    await meanwhile
    await eventually(() => loom.getMigration('meanwhile'))

    // A fresh broker kept no retained message: this one can only arrive through a subscription made again.
    const late = await connect(broker.url, 4)
    await mqttAnnouncer(late).announce(announcement('after'))
    await eventually(() => loom.getMigration('after'))
    expect((await loom.listMigrations()).map((m) => m.id).sort()).toEqual(['after', 'before', 'meanwhile'])
    await subscriber.stop()
  })

  it('leaves no listener behind for requests that gave up while the broker was away', async () => {
    const server = await connect(broker.url, 4, serverOptions)
    const dispatcher = mqttDispatcher(server, { timeoutMs: 50 })
    const before = server.listenerCount('connect')
    await broker.stop()
    await offline(server)
    const request = { migrationId: 'm', runId: 'm__a', stepName: 'bump-chart', candidate: { id: 'a' }, callbackId: 'm__a', eventName: 'e' }
    const outcomes = await Promise.allSettled(Array.from({ length: 15 }, () => dispatcher.dispatch({ workerApp: 'charts' }, request)))
    expect(outcomes.every((o) => o.status === 'rejected' && /not connected to the broker/.test(String(o.reason)))).toBe(true)
    expect(server.listenerCount('connect')).toBe(before)
    await broker.start()
    await online(server)
  })

  it('dispatches again once the broker is back: the reply inbox and the worker subscription come back', async () => {
    const server = await connect(broker.url, 4, serverOptions)
    const worker = await connect(broker.url, 4, serverOptions)
    const received: string[] = []
    const receiver = onDispatch(worker, { workerApp: 'charts', handler: (r) => void received.push(r.runId) })
    await receiver.ready
    const dispatcher = mqttDispatcher(server, { timeoutMs: 5_000 })
    const request = {
      migrationId: 'm',
      runId: 'm__a',
      stepName: 'bump-chart',
      candidate: { id: 'a' },
      callbackId: 'm__a',
      eventName: 'step-completed:bump-chart',
    }
    await dispatcher.dispatch({ workerApp: 'charts' }, request)

    await broker.stop()
    await Promise.all([offline(server), offline(worker)])
    await broker.start()
    await Promise.all([online(server), online(worker)])
    // Resubscribing is asynchronous after the connect; a bounded retry stands in for the engine's.
    await eventually(() => dispatcher.dispatch({ workerApp: 'charts' }, { ...request, runId: 'm__b', callbackId: 'm__b' }), {
      timeoutMs: 15_000,
    })
    expect(received).toEqual(['m__a', 'm__b'])
    await dispatcher.close()
  })
})

describe('while the broker is down', () => {
  let broker: TestBroker
  beforeEach(async () => {
    broker = await aedesBroker()
  })
  afterEach(async () => {
    await closeClients()
    await broker.stop()
  })

  it('stops a subscription at once, and fails a dispatch as unavailable after its timeout rather than queueing it', async () => {
    const worker = await connect(broker.url, 4)
    const server = await connect(broker.url, 4)
    const received: string[] = []
    const receiver = onDispatch(worker, { workerApp: 'charts', handler: (r) => void received.push(r.runId) })
    await receiver.ready
    const dispatcher = mqttDispatcher(server, { timeoutMs: 300 })
    await broker.stop()
    await Promise.all([offline(server), offline(worker)])

    const request = {
      migrationId: 'm',
      runId: 'm__late',
      stepName: 'bump-chart',
      candidate: { id: 'late' },
      callbackId: 'm__late',
      eventName: 'step-completed:bump-chart',
    }
    await expect(dispatcher.dispatch({ workerApp: 'charts' }, request)).rejects.toThrow(
      'dispatch of step "bump-chart" of run m__late to worker app charts: the MQTT client is not connected to the broker within 300 ms',
    )
    await broker.start()
    await Promise.all([online(server), online(worker)])
    // Proof that the given-up request was not sent after the reconnect: a later one arrives alone.
    await eventually(() => dispatcher.dispatch({ workerApp: 'charts' }, { ...request, runId: 'm__next', callbackId: 'm__next' }), {
      timeoutMs: 15_000,
    })
    expect(received).toEqual(['m__next'])

    await broker.stop()
    await offline(worker)
    await receiver.stop()
    await dispatcher.close()
  })
})
