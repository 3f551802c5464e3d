import { createLoom, localEngine, memoryStore, tokenIdentities, type LoomInstance, type MigrationAnnouncement } from '@loom/core'
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
      { topic: `${prefix}/announce/broken`, code: 'invalid', reason: expect.stringMatching(/^body: malformed JSON/) },
      { topic: `${prefix}/announce/no-steps`, code: 'invalid', reason: 'steps: must list at least one step' },
      { topic: `${prefix}/announce/bad-id`, code: 'invalid', reason: 'id: must not contain "__"' },
      {
        topic: `${prefix}/announce/other`,
        code: 'invalid',
        reason: `id: "not-other" is not the migration id of topic ${prefix}/announce/other`,
      },
      { topic: `${prefix}/announce/list`, code: 'invalid', reason: 'body: must be a JSON object' },
    ])
    // No token is configured: the subscriber says once that announcements are open, then one line per skip.
    expect(logger.warnings).toHaveLength(6)
    expect(logger.warnings[0]).toBe(
      `announcements on ${prefix}/announce/+ are open: no token is configured, so any sender announces as an operator`,
    )
    expect(logger.warnings[2]).toBe(`skipped the announcement on ${prefix}/announce/no-steps: steps: must list at least one step`)
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
    expect(refused.message).toBe('announcement of secured refused: token: matches no operator or worker token')
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

  describe('who may announce', () => {
    /** Announces as the holder of `token`, waiting for Loom's answer; resolves with the refusal's code and message, or 'accepted'. */
    const announceWith = async (token: string | undefined, a: MigrationAnnouncement) => {
      retained.push(a.id)
      const announcer = mqttAnnouncer(worker, { topicPrefix: prefix, ...(token ? { token } : {}), timeoutMs: 5_000 })
      try {
        await announcer.announce(a, { awaitAcceptance: true })
        return 'accepted'
      } catch (error) {
        return `${(error as { code: string }).code}: ${(error as Error).message}`
      } finally {
        await announcer.close()
      }
    }

    it('accepts a worker announcing with its own token, not the operator’s, and the migration becomes that worker’s', async () => {
      const subscriber = mqttAnnouncements(server, loom, { topicPrefix: prefix, token: 'op-token', workerToken: 'worker-token' })
      await subscriber.ready
      expect(await announceWith('worker-token', announcement('by-worker'))).toBe('accepted')
      expect(await announceWith('op-token', announcement('by-operator'))).toBe('accepted')
      expect((await loom.getMigration('by-worker')).owner).toBe('worker')
      // An operator's announce claims nothing.
      expect((await loom.getMigration('by-operator')).owner).toBeUndefined()
      await subscriber.stop()
    })

    it('accepts named worker tokens, and refuses another worker’s announcement of a migration as forbidden, changing nothing', async () => {
      const logger = recordingLogger()
      const invalid: InvalidAnnouncement[] = []
      const subscriber = mqttAnnouncements(server, loom, {
        topicPrefix: prefix,
        token: 'op-token',
        workers: 'team-a:tok-a,team-b:tok-b',
        logger,
        onInvalid: (i) => invalid.push(i),
      })
      await subscriber.ready
      expect(await announceWith('tok-a', announcement('app-chart', 'Team A’s'))).toBe('accepted')
      expect(await announceWith('tok-b', announcement('app-chart', 'Team B’s'))).toBe(
        'forbidden: announcement of app-chart refused: worker team-b may not announce migration app-chart: it belongs to worker team-a',
      )
      expect(await loom.getMigration('app-chart')).toMatchObject({ name: 'Team A’s', owner: 'team-a' })
      expect(invalid).toEqual([
        {
          topic: `${prefix}/announce/app-chart`,
          code: 'forbidden',
          reason: 'worker team-b may not announce migration app-chart: it belongs to worker team-a',
        },
      ])
      expect(logger.warnings).toEqual([
        `skipped the announcement on ${prefix}/announce/app-chart: worker team-b may not announce migration app-chart: it belongs to worker team-a`,
      ])
      // The owner announces again, and an operator may change it too; the owner stays.
      expect(await announceWith('tok-a', announcement('app-chart', 'Team A’s, v2'))).toBe('accepted')
      expect(await announceWith('op-token', announcement('app-chart', 'Fixed by an operator'))).toBe('accepted')
      expect(await loom.getMigration('app-chart')).toMatchObject({ name: 'Fixed by an operator', owner: 'team-a' })
      await subscriber.stop()
    })

    it('takes identities built elsewhere, and refuses them given with token options as well', async () => {
      const identities = tokenIdentities({ workers: { 'team-a': 'tok-a' } })
      const subscriber = mqttAnnouncements(server, loom, { topicPrefix: prefix, identities, logger: recordingLogger() })
      await subscriber.ready
      expect(await announceWith('tok-a', announcement('mine'))).toBe('accepted')
      expect(await announceWith(undefined, announcement('nobody'))).toBe('unauthorized: announcement of nobody refused: token: missing')
      expect((await loom.listMigrations()).map((m) => [m.id, m.owner])).toEqual([['mine', 'team-a']])
      await subscriber.stop()
      const error = await expectLoomError(
        (async () => mqttAnnouncements(server, loom, { topicPrefix: prefix, identities, token: 'op-token' }))(),
        'invalid',
      )
      expect(error.message).toBe('identities: give identities or the token options (token, workerToken, operators, workers), not both')
    })

    it('is open with no token configured: any sender announces as the anonymous operator', async () => {
      const logger = recordingLogger()
      const subscriber = mqttAnnouncements(server, loom, { topicPrefix: prefix, logger })
      await subscriber.ready
      expect(await announceWith('whatever', announcement('open'))).toBe('accepted')
      expect((await loom.getMigration('open')).owner).toBeUndefined()
      expect(logger.warnings).toEqual([
        `announcements on ${prefix}/announce/+ are open: no token is configured, so any sender announces as an operator`,
      ])
      await subscriber.stop()
    })

    it('judges announcements against the loom’s own limits, naming the field and the limit', async () => {
      const strict = createLoom({ store: memoryStore(), engine: localEngine(), onError: () => {}, limits: { steps: 2, depth: 4 } })
      const invalid: InvalidAnnouncement[] = []
      const subscriber = mqttAnnouncements(server, strict, {
        topicPrefix: prefix,
        logger: recordingLogger(),
        onInvalid: (i) => invalid.push(i),
      })
      await subscriber.ready
      const three = { ...announcement('three'), steps: ['a', 'b', 'c'].map((name) => ({ name, workerApp: 'charts' })) }
      expect(await announceWith(undefined, three)).toBe(
        'invalid: announcement of three refused: steps: more than the limit of 2 steps (limits.steps)',
      )
      // Depth 5: message → steps → step → config → an object where a string belongs. The announcer
      // would refuse it before publishing (its own schema), so a foreign client sends it.
      retained.push('deep')
      const deep = { ...announcement('deep'), steps: [{ name: 's', workerApp: 'charts', config: { nested: { too: 'deep' } } }] }
      await worker.publishAsync(`${prefix}/announce/deep`, JSON.stringify(deep), { qos: 1 })
      await eventually(() => expect(invalid).toHaveLength(2))
      expect(await announceWith(undefined, announcement('two'))).toBe('accepted')
      expect(invalid.map((i) => [i.topic.slice(prefix.length), i.code, i.reason])).toEqual([
        ['/announce/three', 'invalid', 'steps: more than the limit of 2 steps (limits.steps)'],
        ['/announce/deep', 'invalid', 'body: nested deeper than the limit of 4 (limits.depth)'],
      ])
      expect((await strict.listMigrations()).map((m) => m.id)).toEqual(['two'])
      await subscriber.stop()
      await strict.close()
    })

    it('skips a payload over maxPayloadBytes as too_large, unread: the sender gets no answer, since its reply topic is inside', async () => {
      const logger = recordingLogger()
      const invalid: InvalidAnnouncement[] = []
      const subscriber = mqttAnnouncements(server, loom, {
        topicPrefix: prefix,
        maxPayloadBytes: 1_000,
        logger,
        onInvalid: (i) => invalid.push(i),
      })
      await subscriber.ready
      const big = { ...announcement('big'), description: 'x'.repeat(1_000) }
      const size = Buffer.byteLength(JSON.stringify(big))
      retained.push('big')
      const announcer = mqttAnnouncer(worker, { topicPrefix: prefix })
      const waited = await expectLoomError(announcer.announce(big, { awaitAcceptance: true, timeoutMs: 1_000 }), 'unavailable')
      expect(waited.message).toBe('announcement of big: no Loom server accepted it: no answer within 1000 ms')
      await announcer.close()
      expect(invalid).toEqual([
        {
          topic: `${prefix}/announce/big`,
          code: 'too_large',
          // The announcer adds replyTo and correlationId to what it publishes.
          reason: expect.stringMatching(/^body: \d+ bytes, larger than the limit of 1000 bytes \(maxPayloadBytes\)$/),
        },
      ])
      expect(Number(/body: (\d+) bytes/.exec(invalid[0]!.reason)![1])).toBeGreaterThan(size)
      expect(logger.warnings).toHaveLength(2)
      await expectLoomError(loom.getMigration('big'), 'not_found')
      // A smaller one is read and accepted.
      expect(await announceWith(undefined, { ...announcement('small'), description: 'x'.repeat(500) })).toBe('accepted')
      await subscriber.stop()
    })
  })
})
