import { execFile } from 'node:child_process'
import { promisify } from 'node:util'
import { createClient } from '@loom/client'
import { eventually, expectLoomError } from '@loom/core/testing'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { OPERATOR_TOKEN, WORKER_TOKEN, startStack, testBroker, type Stack } from './stack'

const run = promisify(execFile)

// A client we did not write: Mosquitto's own mosquitto_pub (Debian package mosquitto-clients),
// speaking MQTT 3.1.1 to the same broker as the rest of the tests.

let broker: Awaited<ReturnType<typeof testBroker>>
let stack: Stack

beforeAll(async () => {
  broker = await testBroker()
  stack = await startStack(broker.url)
})
afterAll(async () => {
  await stack.close()
  await broker.close()
})

const publish = (topic: string, message: string, retain = false) =>
  run('mosquitto_pub', [
    '-h',
    broker.host,
    '-p',
    String(broker.port),
    '-V',
    'mqttv311',
    '-q',
    '1',
    ...(retain ? ['-r'] : []),
    '-t',
    topic,
    '-m',
    message,
  ])

describe('announce with mosquitto_pub', () => {
  it('registers a migration that a foreign MQTT client announced, and Loom serves it over HTTP', async () => {
    const id = 'kafka-compaction'
    const topic = `${stack.prefix}/announce/${id}`
    const client = createClient({ baseUrl: stack.apiUrl, token: OPERATOR_TOKEN })
    try {
      await publish(
        topic,
        JSON.stringify({
          id,
          name: 'Kafka topics: enable compaction',
          token: WORKER_TOKEN,
          steps: [{ name: 'compact', workerApp: 'kafka', description: 'Set cleanup.policy=compact' }],
          candidates: [{ id: 'orders', kind: 'kafka-topic', metadata: { cluster: 'main' } }],
        }),
        true,
      )
      const migration = await eventually(() => client.getMigration(id))
      expect(migration).toMatchObject({ id, name: 'Kafka topics: enable compaction' })
      expect(migration.steps).toEqual([{ name: 'compact', workerApp: 'kafka', description: 'Set cleanup.policy=compact' }])
      expect(migration.candidates).toEqual([{ id: 'orders', kind: 'kafka-topic', metadata: { cluster: 'main' } }])
      // The token travels in the body over MQTT; it is not stored with the migration.
      expect(JSON.stringify(migration)).not.toContain(WORKER_TOKEN)
    } finally {
      await publish(topic, '', true)
    }
  })

  it('skips what it cannot accept, with the reason, and registers nothing', async () => {
    const broken = `${stack.prefix}/announce/broken`
    const anonymous = `${stack.prefix}/announce/anonymous`
    await publish(broken, '{"id": "broken", "name": ')
    await publish(anonymous, JSON.stringify({ id: 'anonymous', name: 'No token', steps: [{ name: 's', workerApp: 'w' }] }))
    await eventually(() =>
      expect(stack.invalid.map((i) => [i.topic, i.code]).sort()).toEqual([
        [anonymous, 'unauthorized'],
        [broken, 'invalid'],
      ]),
    )
    expect(stack.invalid.find((i) => i.topic === broken)?.reason).toMatch(/JSON/)
    const client = createClient({ baseUrl: stack.apiUrl, token: OPERATOR_TOKEN })
    await expectLoomError(client.getMigration('broken'), 'not_found')
    await expectLoomError(client.getMigration('anonymous'), 'not_found')
  })
})
