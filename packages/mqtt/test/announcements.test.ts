import { createLoom, localEngine, memoryStore, type LoomInstance, type MigrationAnnouncement } from '@loom/core'
import { eventually, expectLoomError } from '@loom/core/testing'
import type { MqttClient } from 'mqtt'
import { afterAll, afterEach, beforeEach, describe, expect, it } from 'vitest'
import { mqttAnnouncements, mqttAnnouncer, type InvalidAnnouncement } from '../src/index'
import { closeClients, connect, recordingLogger, testBroker, uniquePrefix } from './helpers'

const broker = await testBroker()
afterAll(() => broker.close())

const announcement = (id: string, name = `Migration ${id}`): MigrationAnnouncement => ({
  id,
  name,
  steps: [{ name: 'bump-chart', workerApp: 'charts', config: { chart: 'app' } }],
})

describe.each(broker.versions)('announce over MQTT (protocol version %i)', (version) => {
  let loom: LoomInstance
  let server: MqttClient
  let worker: MqttClient
  let prefix: string
  const retained: string[] = []

  beforeEach(async () => {
    loom = createLoom({ store: memoryStore(), engine: localEngine(), onError: () => {} })
    server = await connect(broker.url, version)
    worker = await connect(broker.url, version)
    prefix = uniquePrefix()
  })
  afterEach(async () => {
    // Retained messages outlive the test on a real broker: clear them.
    const announcer = mqttAnnouncer(worker, { topicPrefix: prefix })
    await Promise.all(retained.splice(0).map((id) => announcer.withdraw(id)))
    await loom.close()
    await closeClients()
  })

  const announce = async (
    a: MigrationAnnouncement,
    options: Parameters<ReturnType<typeof mqttAnnouncer>['announce']>[1] = {},
    token?: string,
  ) => {
    retained.push(a.id)
    await mqttAnnouncer(worker, { topicPrefix: prefix, ...(token ? { token } : {}) }).announce(a, options)
  }

  it('registers an announcement published before the server subscribed (retained), with its steps', async () => {
    await announce(announcement('app-chart'))
    const subscriber = mqttAnnouncements(server, loom, { topicPrefix: prefix })
    await subscriber.ready
    const migration = await eventually(() => loom.getMigration('app-chart'))
    expect(migration).toMatchObject({
      id: 'app-chart',
      name: 'Migration app-chart',
      steps: [{ name: 'bump-chart', workerApp: 'charts', config: { chart: 'app' } }],
    })
    await subscriber.stop()
  })

  it('registers an announcement published while subscribed, and waits for Loom to accept it', async () => {
    const announced: string[] = []
    const subscriber = mqttAnnouncements(server, loom, { topicPrefix: prefix, onAnnounced: (m) => announced.push(m.id) })
    await subscriber.ready
    await announce(announcement('kafka-topics'), { awaitAcceptance: true })
    // Accepted means registered: no polling needed.
    expect((await loom.getMigration('kafka-topics')).steps.map((s) => s.name)).toEqual(['bump-chart'])
    expect(announced).toEqual(['kafka-topics'])
    await subscriber.stop()
  })

  it('accepts an announcement wrapped as { data } like POST /registry/announce', async () => {
    const subscriber = mqttAnnouncements(server, loom, { topicPrefix: prefix })
    await subscriber.ready
    retained.push('wrapped')
    await worker.publishAsync(`${prefix}/announce/wrapped`, JSON.stringify({ data: announcement('wrapped') }), { qos: 1, retain: true })
    expect((await eventually(() => loom.getMigration('wrapped'))).name).toBe('Migration wrapped')
    await subscriber.stop()
  })

  it('logs and skips invalid messages with the reason, and keeps handling the next ones', async () => {
    const logger = recordingLogger()
    const invalid: InvalidAnnouncement[] = []
    const subscriber = mqttAnnouncements(server, loom, { topicPrefix: prefix, logger, onInvalid: (i) => invalid.push(i) })
    await subscriber.ready
    const publish = (id: string, payload: string) => worker.publishAsync(`${prefix}/announce/${id}`, payload, { qos: 1 })
    await publish('broken', '{"id": "broken", ')
    await publish('no-steps', JSON.stringify({ ...announcement('no-steps'), steps: [] }))
    await publish('bad-id', JSON.stringify({ ...announcement('bad__id') }))
    await publish('other', JSON.stringify(announcement('not-other')))
    await publish('list', '[1, 2]')
    await publish('fine', JSON.stringify(announcement('fine')))
    await eventually(() => loom.getMigration('fine'))
    expect(invalid).toEqual([
      { topic: `${prefix}/announce/broken`, code: 'invalid', reason: expect.stringMatching(/^body: not JSON/) },
      { topic: `${prefix}/announce/no-steps`, code: 'invalid', reason: 'steps: must list at least one step' },
      { topic: `${prefix}/announce/bad-id`, code: 'invalid', reason: 'id: must not contain "__"' },
      {
        topic: `${prefix}/announce/other`,
        code: 'invalid',
        reason: `id: "not-other" is not the migration id of topic ${prefix}/announce/other`,
      },
      { topic: `${prefix}/announce/list`, code: 'invalid', reason: 'body: must be a JSON object' },
    ])
    expect(logger.warnings).toHaveLength(5)
    expect(logger.warnings[1]).toBe(`skipped the announcement on ${prefix}/announce/no-steps: steps: must list at least one step`)
    expect((await loom.listMigrations()).map((m) => m.id)).toEqual(['fine'])
    await subscriber.stop()
  })

  it('refuses an invalid announcement before publishing it, naming the field', async () => {
    const error = await expectLoomError(
      mqttAnnouncer(worker, { topicPrefix: prefix }).announce({ ...announcement('x'), name: '' }),
      'invalid',
    )
    expect(error.message).toBe('name: must not be empty')
  })

  it('tells a waiting worker why Loom refused its announcement', async () => {
    const subscriber = mqttAnnouncements(server, loom, { topicPrefix: prefix, logger: recordingLogger(), token: 'right' })
    await subscriber.ready
    const refused = await expectLoomError(
      (async () => {
        await announce(announcement('secured'), { awaitAcceptance: true }, 'wrong')
      })(),
      'unauthorized',
    )
    expect(refused.message).toBe('announcement of secured refused: token: does not match')
    await expectLoomError(loom.getMigration('secured'), 'not_found')
    await announce(announcement('secured'), { awaitAcceptance: true }, 'right')
    expect((await loom.getMigration('secured')).id).toBe('secured')
    await subscriber.stop()
  })

  it('skips announcements without the configured token as unauthorized', async () => {
    const invalid: InvalidAnnouncement[] = []
    const subscriber = mqttAnnouncements(server, loom, {
      topicPrefix: prefix,
      token: 's3cret',
      logger: recordingLogger(),
      onInvalid: (i) => invalid.push(i),
    })
    await subscriber.ready
    await announce(announcement('anonymous'))
    await announce(announcement('signed'), {}, 's3cret')
    await eventually(() => loom.getMigration('signed'))
    expect(invalid).toEqual([{ topic: `${prefix}/announce/anonymous`, code: 'unauthorized', reason: 'token: missing' }])
    await expectLoomError(loom.getMigration('anonymous'), 'not_found')
    await subscriber.stop()
  })

  it('applies the announcements of one migration in the order they were published', async () => {
    const subscriber = mqttAnnouncements(server, loom, { topicPrefix: prefix })
    await subscriber.ready
    const announcer = mqttAnnouncer(worker, { topicPrefix: prefix })
    retained.push('ordered')
    await Promise.all(Array.from({ length: 20 }, (_, i) => announcer.announce(announcement('ordered', `Version ${i}`))))
    await eventually(async () => expect((await loom.getMigration('ordered')).name).toBe('Version 19'))
    await subscriber.stop()
  })

  it('throws unavailable when no Loom server accepts the announcement in time', async () => {
    const error = await expectLoomError(
      (async () => {
        await announce(announcement('lonely'), { awaitAcceptance: true, timeoutMs: 300 })
      })(),
      'unavailable',
    )
    expect(error.message).toBe('announcement of lonely: no Loom server accepted it: no answer within 300 ms')
  })

  it('withdraws an announcement: a server subscribing later does not receive it', async () => {
    await announce(announcement('retired'))
    await mqttAnnouncer(worker, { topicPrefix: prefix }).withdraw('retired')
    await announce(announcement('current'))
    const subscriber = mqttAnnouncements(server, loom, { topicPrefix: prefix })
    await subscriber.ready
    await eventually(() => loom.getMigration('current'))
    expect((await loom.listMigrations()).map((m) => m.id)).toEqual(['current'])
    await subscriber.stop()
  })

  it('stops receiving after stop(), without unsubscribing another subscriber of the same topic', async () => {
    const other = createLoom({ store: memoryStore(), engine: localEngine() })
    const first = mqttAnnouncements(server, loom, { topicPrefix: prefix })
    const second = mqttAnnouncements(server, other, { topicPrefix: prefix })
    await Promise.all([first.ready, second.ready])
    await first.stop()
    await announce(announcement('after-stop'), { awaitAcceptance: true })
    expect((await other.getMigration('after-stop')).id).toBe('after-stop')
    await expectLoomError(loom.getMigration('after-stop'), 'not_found')
    await second.stop()
    await other.close()
  })
})
