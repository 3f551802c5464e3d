import {
  createLoom,
  localEngine,
  memoryStore,
  type DispatchStepRequest,
  type DryRunRequest,
  type DryRunResult,
  type LoomInstance,
  type MigrationAnnouncement,
} from '@loom/core'
import { expectLoomError } from '@loom/core/testing'
import type { MqttClient } from 'mqtt'
import { afterAll, afterEach, beforeEach, describe, expect, it } from 'vitest'
import { mqttAnnouncements, onDispatch, serveDryRun, type MqttAnnouncementsOptions } from '../src/index'
import { closeClients, connect, recordingLogger, testBroker, uniquePrefix } from './helpers'

// Every topic Loom uses, asked by each kind of caller, at the wire: a raw message with (or
// without) a token, its reply read off the reply topic. Loom's side: `announce/{id}`, held to
// the sender's role and ownership. A worker's side: `workers/{app}/dispatch` and `/dry-run`,
// which the worker (here worker A) guards with the one token it expects Loom to present: its own.
// (`replies/{id}` carries answers only; nothing there is acted on but by the requester that owns it.)

const broker = await testBroker()
afterAll(() => broker.close())

const TOKENS = { operator: 'op-token', workerA: 'tok-a', workerB: 'tok-b' }
const SECURED: MqttAnnouncementsOptions = { token: TOKENS.operator, workers: { 'worker-a': TOKENS.workerA, 'worker-b': TOKENS.workerB } }

type Caller = 'no token' | 'wrong token' | 'worker A' | 'worker B' | 'operator'
const tokenOf: Record<Caller, string | undefined> = {
  'no token': undefined,
  'wrong token': 'guess',
  'worker A': TOKENS.workerA,
  'worker B': TOKENS.workerB,
  operator: TOKENS.operator,
}

type Reply = { ok: true; result?: unknown } | { ok: false; code: string; error: string }
const refused = (code: string, error: string): Reply => ({ ok: false, code, error })
const MISSING = refused('unauthorized', 'token: missing')
const UNKNOWN = refused('unauthorized', 'token: matches no operator or worker token')
const NOT_A = refused('unauthorized', 'token: does not match')

const announcement = (id: string, name: string): MigrationAnnouncement => ({
  id,
  name,
  steps: [{ name: 'bump-chart', workerApp: 'charts' }],
})

/** Publishes `body` on `topic` as a request (with `token` when given) and resolves with the answer, without its correlation id. */
async function ask(client: MqttClient, prefix: string, topic: string, body: object, token: string | undefined): Promise<Reply> {
  const replyTo = `${prefix}/replies/${crypto.randomUUID()}`
  const correlationId = crypto.randomUUID()
  const answered = new Promise<Reply>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no answer on ${replyTo}`)), 5_000)
    client.on('message', function onMessage(t, payload) {
      if (t !== replyTo) return
      clearTimeout(timer)
      client.off('message', onMessage)
      const { correlationId: echoed, ...reply } = JSON.parse(payload.toString()) as Reply & { correlationId: string }
      expect(echoed).toBe(correlationId)
      resolve(reply)
    })
  })
  await client.subscribeAsync(replyTo, { qos: 1 })
  await client.publishAsync(topic, JSON.stringify({ ...body, ...(token === undefined ? {} : { token }), replyTo, correlationId }), {
    qos: 1,
  })
  return answered
}

describe.each(broker.versions)('role matrix over MQTT topics (protocol version %i)', (version) => {
  let loom: LoomInstance
  let server: MqttClient
  let caller: MqttClient
  let prefix: string

  beforeEach(async () => {
    loom = createLoom({ store: memoryStore(), engine: localEngine(), onError: () => {} })
    server = await connect(broker.url, version)
    caller = await connect(broker.url, version)
    prefix = uniquePrefix()
  })
  afterEach(async () => {
    await loom.close()
    await closeClients()
  })

  const accepted = (id: string) => ({ ok: true, result: { id, createdAt: expect.any(String) } })

  describe('announce/{id} of a migration worker A owns', () => {
    it.each<[Caller, Reply | ReturnType<typeof accepted>, { name: string; owner: string }]>([
      ['no token', MISSING, { name: 'Original', owner: 'worker-a' }],
      ['wrong token', UNKNOWN, { name: 'Original', owner: 'worker-a' }],
      ['worker A', accepted('app-chart'), { name: 'Renamed', owner: 'worker-a' }],
      [
        'worker B',
        refused('forbidden', 'worker worker-b may not announce migration app-chart: it belongs to worker worker-a'),
        { name: 'Original', owner: 'worker-a' },
      ],
      ['operator', accepted('app-chart'), { name: 'Renamed', owner: 'worker-a' }],
    ])('%s → %o, then the store holds %o', async (who, reply, stored) => {
      const original = await loom.as({ kind: 'worker', name: 'worker-a' }).announce(announcement('app-chart', 'Original'))
      const subscriber = mqttAnnouncements(server, loom, { ...SECURED, topicPrefix: prefix, logger: recordingLogger() })
      await subscriber.ready
      const answer = await ask(caller, prefix, `${prefix}/announce/app-chart`, announcement('app-chart', 'Renamed'), tokenOf[who])
      expect(answer).toEqual(reply)
      const after = await loom.getMigration('app-chart')
      expect({ name: after.name, owner: after.owner }).toEqual(stored)
      expect(after.createdAt).toBe(original.createdAt)
      await subscriber.stop()
    })
  })

  describe('announce/{id} of a new migration', () => {
    it.each<[Caller, Reply | ReturnType<typeof accepted>, { owner: string | undefined } | 'not stored']>([
      ['no token', MISSING, 'not stored'],
      ['wrong token', UNKNOWN, 'not stored'],
      ['worker A', accepted('fresh'), { owner: 'worker-a' }],
      ['worker B', accepted('fresh'), { owner: 'worker-b' }],
      ['operator', accepted('fresh'), { owner: undefined }],
    ])('%s → %o, then the store holds %o', async (who, reply, stored) => {
      const subscriber = mqttAnnouncements(server, loom, { ...SECURED, topicPrefix: prefix, logger: recordingLogger() })
      await subscriber.ready
      expect(await ask(caller, prefix, `${prefix}/announce/fresh`, announcement('fresh', 'Fresh'), tokenOf[who])).toEqual(reply)
      if (stored === 'not stored') {
        await expectLoomError(loom.getMigration('fresh'), 'not_found')
      } else {
        const after = await loom.getMigration('fresh')
        expect({ name: after.name, owner: after.owner }).toEqual({ name: 'Fresh', ...stored })
      }
      expect((await loom.listMigrations()).length).toBe(stored === 'not stored' ? 0 : 1)
      await subscriber.stop()
    })
  })

  describe('announce/{id} with no token configured (open)', () => {
    it.each<[Caller]>([['no token'], ['wrong token'], ['worker A'], ['worker B'], ['operator']])(
      '%s → accepted as the anonymous operator: the migration changes and no worker owns it',
      async (who) => {
        await loom.as({ kind: 'worker', name: 'worker-a' }).announce(announcement('app-chart', 'Original'))
        await loom.announce(announcement('unowned', 'Original'))
        const subscriber = mqttAnnouncements(server, loom, { topicPrefix: prefix, logger: recordingLogger() })
        await subscriber.ready
        expect(await ask(caller, prefix, `${prefix}/announce/app-chart`, announcement('app-chart', 'Renamed'), tokenOf[who])).toEqual(
          accepted('app-chart'),
        )
        expect(await ask(caller, prefix, `${prefix}/announce/unowned`, announcement('unowned', 'Renamed'), tokenOf[who])).toEqual(
          accepted('unowned'),
        )
        expect((await loom.listMigrations()).map((m) => [m.id, m.name, m.owner])).toEqual([
          ['app-chart', 'Renamed', 'worker-a'],
          ['unowned', 'Renamed', undefined],
        ])
        await subscriber.stop()
      },
    )
  })

  const dispatch: DispatchStepRequest = {
    migrationId: 'app-chart',
    runId: 'app-chart__billing-api',
    stepName: 'bump-chart',
    candidate: { id: 'billing-api' },
    callbackId: 'app-chart__billing-api',
    eventName: 'step-completed:bump-chart',
  }
  const dryRun: DryRunRequest = {
    migrationId: 'app-chart',
    candidate: { id: 'billing-api' },
    steps: [{ name: 'bump-chart', workerApp: 'charts' }],
  }
  const preview: DryRunResult = {
    steps: [{ stepName: 'bump-chart', skipped: false, files: [{ path: 'Chart.yaml', repo: 'gitops', after: 'v2\n' }] }],
  }

  // Worker A guards its topics with its own token; Loom presents each worker its own (see the dispatcher's token function).
  const rows: Array<[Caller, 'accepted' | Reply]> = [
    ['no token', MISSING],
    ['wrong token', NOT_A],
    ['worker A', 'accepted'],
    ['worker B', NOT_A],
    ['operator', NOT_A],
  ]

  describe('workers/{app}/dispatch, received by worker A', () => {
    it.each(rows)('%s → %o', async (who, outcome) => {
      const received: DispatchStepRequest[] = []
      const receiver = onDispatch(caller, {
        workerApp: 'charts',
        token: TOKENS.workerA,
        topicPrefix: prefix,
        logger: recordingLogger(),
        handler: (request) => void received.push(request),
      })
      await receiver.ready
      const answer = await ask(server, prefix, `${prefix}/workers/charts/dispatch`, dispatch, tokenOf[who])
      if (outcome === 'accepted') {
        expect(answer).toEqual({ ok: true })
        // The handler saw the request without the transport fields.
        expect(received).toEqual([dispatch])
      } else {
        expect(answer).toEqual(outcome)
        expect(received).toEqual([])
      }
      await receiver.stop()
    })
  })

  describe('workers/{app}/dry-run, served by worker A', () => {
    it.each(rows)('%s → %o', async (who, outcome) => {
      const asked: DryRunRequest[] = []
      const receiver = serveDryRun(caller, {
        workerApp: 'charts',
        token: TOKENS.workerA,
        topicPrefix: prefix,
        logger: recordingLogger(),
        handler: (request) => {
          asked.push(request)
          return preview
        },
      })
      await receiver.ready
      const answer = await ask(server, prefix, `${prefix}/workers/charts/dry-run`, dryRun, tokenOf[who])
      if (outcome === 'accepted') {
        expect(answer).toEqual({ ok: true, result: preview })
        expect(asked).toEqual([dryRun])
      } else {
        expect(answer).toEqual(outcome)
        expect(asked).toEqual([])
      }
      await receiver.stop()
    })
  })
})
