import {
  createLoom,
  httpDispatcher,
  httpDryRunner,
  localEngine,
  memoryStore,
  tokenIdentities,
  type Actor,
  type LoomInstance,
} from '@loom/core'
import { eventually, expectLoomError } from '@loom/core/testing'
import { loomApp } from '@loom/hono'
import { mqttAnnouncements, mqttDispatcher, mqttDryRunner } from '@loom/mqtt'
import { describe, expect, it } from 'vitest'
import { defineMigration, pending } from '../src/define-migration'
import { createWorker, type Worker } from '../src/worker'
import { testBroker } from './support/broker'

// A worker holding a named token (`LOOM_WORKERS="team-a:<token>"`): it announces with that
// token, over MQTT and over HTTP, the migration becomes team-a's, and Loom presents that same
// token on every dispatch and dry run it sends, so the SDK's default (`dispatchToken` =
// `token`) accepts them. Another worker's token can neither take the migration over nor
// reach this worker.

const OPERATOR = 'op-token'
const TOKEN_A = 'team-a-token'
const TOKEN_B = 'team-b-token'
const TEAM_A: Actor = { kind: 'worker', name: 'team-a' }
const TEAM_B: Actor = { kind: 'worker', name: 'team-b' }
const identities = tokenIdentities({ token: OPERATOR, workers: { 'team-a': TOKEN_A, 'team-b': TOKEN_B } })
/** What Loom presents to the worker a migration belongs to. */
const ownersToken = (target: { owner?: string }) => identities.workerToken(target.owner)

const { connect, cleanups } = testBroker('loom-named')

const appChart = (calls: string[]) =>
  defineMigration({
    id: 'app-chart',
    name: 'App chart',
    steps: [
      {
        name: 'create-chart',
        run: ({ candidate }) => {
          calls.push(`create-chart:${candidate.id}`)
        },
        dryRun: ({ candidate }) => [{ path: `charts/${candidate.id}/Chart.yaml`, content: `name: ${candidate.id}\n` }],
      },
      {
        name: 'open-pr',
        run: ({ candidate }) => {
          calls.push(`open-pr:${candidate.id}`)
          return pending({ prUrl: `https://git/pr/${candidate.id}` })
        },
      },
    ],
    discover: () => [{ id: 'billing-api', metadata: { repoName: 'acme/gitops' } }],
  })

const statusOf = async (loom: LoomInstance) => (await loom.listCandidates('app-chart'))[0]?.status

/** Queues, dry-runs and executes billing-api; the worker completes the open-pr step as its pull request would. */
async function walkThrough(loom: LoomInstance, worker: Worker) {
  const runId = await loom.queue('app-chart', 'billing-api')
  const preview = await loom.dryRun('app-chart', 'billing-api')
  expect(preview.steps[0]).toMatchObject({ stepName: 'create-chart', skipped: false, files: [{ path: 'charts/billing-api/Chart.yaml' }] })
  await loom.execute(runId)
  await eventually(async () => expect((await loom.getRun(runId)).steps?.[1]?.metadata?.prUrl).toBe('https://git/pr/billing-api'))
  await worker.complete(runId, 'open-pr', { success: true })
  await eventually(async () => expect(await statusOf(loom)).toBe('completed'))
}

describe('a worker with a named token, over MQTT', () => {
  async function setup() {
    const prefix = `loom-named-${crypto.randomUUID().slice(0, 8)}`
    const [serverClient, workerClient, spy] = [await connect(), await connect(), await connect()]
    // What the broker carries to the worker: the token of each dispatch and dry-run request.
    const presented: string[] = []
    await spy.subscribeAsync(`${prefix}/workers/+/+`, { qos: 0 })
    spy.on('message', (topic, payload) => presented.push(`${topic.slice(prefix.length + 1)} ${JSON.parse(payload.toString()).token}`))
    const dispatcher = mqttDispatcher(serverClient, { topicPrefix: prefix, token: ownersToken, timeoutMs: 2_000 })
    const dryRunner = mqttDryRunner(serverClient, { topicPrefix: prefix, token: ownersToken, timeoutMs: 5_000 })
    const loom = createLoom({
      store: memoryStore(),
      engine: localEngine({ dispatchAttempts: 2, retryDelayMs: 10 }),
      dispatcher,
      dryRunner,
      onError: () => {},
    })
    const announcements = mqttAnnouncements(serverClient, loom, {
      topicPrefix: prefix,
      identities,
      logger: { warn: () => {}, error: () => {} },
    })
    await announcements.ready
    const make = (app: string, token: string, actor: Actor, calls: string[]) => {
      const worker = createWorker({
        app,
        // The worker's own calls (submit, reports) act as its actor, as they would over HTTP.
        loom: loom.as(actor),
        token,
        announce: { mqtt: workerClient, topicPrefix: prefix },
        dispatch: { mqtt: workerClient, topicPrefix: prefix },
        retry: { attempts: 3, initialDelayMs: 10 },
        onError: () => {},
        migrations: [appChart(calls)],
      })
      cleanups.push(() => worker.stop())
      return worker
    }
    cleanups.push(
      () => serverClient.publishAsync(`${prefix}/announce/app-chart`, '', { qos: 1, retain: true }),
      () => loom.close(),
      () => Promise.all([dispatcher.close(), dryRunner.close(), announcements.stop()]),
    )
    return { loom, make, presented }
  }

  it('announces with its own token, owns the migration, and accepts the dispatches and dry runs Loom sends with it', async () => {
    const { loom, make, presented } = await setup()
    const calls: string[] = []
    const worker = make('charts', TOKEN_A, TEAM_A, calls)
    await worker.start()
    expect(await loom.getMigration('app-chart')).toMatchObject({ owner: 'team-a', candidates: [{ id: 'billing-api' }] })
    await walkThrough(loom, worker)
    expect(calls).toEqual(['create-chart:billing-api', 'open-pr:billing-api'])
    expect(presented).toEqual([
      `workers/charts/dry-run ${TOKEN_A}`,
      `workers/charts/dispatch ${TOKEN_A}`,
      `workers/charts/dispatch ${TOKEN_A}`,
    ])
  })

  it('refuses another worker announcing the migration as forbidden: start fails and the migration stays team A’s', async () => {
    const { loom, make } = await setup()
    await make('charts', TOKEN_A, TEAM_A, []).start()
    const intruder = make('charts-b', TOKEN_B, TEAM_B, [])
    const error = await expectLoomError(intruder.start(), 'forbidden')
    expect(error.message).toBe(
      'announcement of app-chart refused: worker team-b may not announce migration app-chart: it belongs to worker team-a',
    )
    expect(await loom.getMigration('app-chart')).toMatchObject({
      owner: 'team-a',
      steps: [{ workerApp: 'charts' }, { workerApp: 'charts' }],
    })
  })
})

describe('a worker with a named token, over HTTP', () => {
  function setup() {
    const workers = new Map<string, Worker>()
    // Loom's calls to the workers, with the Authorization each carried.
    const presented: string[] = []
    const fetchWorker = (async (input: string | URL | Request, init?: RequestInit) => {
      const url = new URL(String(input))
      presented.push(`${url.host}${url.pathname} ${new Headers(init?.headers).get('authorization')}`)
      return workers.get(url.host)!.app.request(url.pathname, init)
    }) as typeof fetch
    const loom = createLoom({
      store: memoryStore(),
      engine: localEngine({ retryDelayMs: 5 }),
      dispatcher: httpDispatcher({ token: ownersToken, fetch: fetchWorker }),
      dryRunner: httpDryRunner({ token: ownersToken, fetch: fetchWorker }),
      onError: () => {},
    })
    const api = loomApp(loom, { token: OPERATOR, workers: { 'team-a': TOKEN_A, 'team-b': TOKEN_B } })
    const make = (app: string, token: string, calls: string[]) => {
      const worker = createWorker({
        app,
        loomUrl: 'http://loom.test/api',
        token,
        url: `http://${app}.test`,
        fetch: async (input, init) => api.request(new Request(String(input).replace('/api', ''), init)),
        migrations: [appChart(calls)],
        retry: { attempts: 2, initialDelayMs: 1 },
        onError: () => {},
      })
      workers.set(`${app}.test`, worker)
      cleanups.push(() => worker.stop())
      return worker
    }
    cleanups.push(() => loom.close())
    return { loom, make, presented }
  }

  it('announces with its own token, owns the migration, and accepts the dispatches and dry runs Loom sends with it', async () => {
    const { loom, make, presented } = setup()
    const calls: string[] = []
    const worker = make('charts', TOKEN_A, calls)
    await worker.start()
    expect(await loom.getMigration('app-chart')).toMatchObject({ owner: 'team-a', workerUrl: 'http://charts.test' })
    await walkThrough(loom, worker)
    expect(calls).toEqual(['create-chart:billing-api', 'open-pr:billing-api'])
    expect(presented).toEqual([
      `charts.test/dry-run Bearer ${TOKEN_A}`,
      `charts.test/steps/dispatch Bearer ${TOKEN_A}`,
      `charts.test/steps/dispatch Bearer ${TOKEN_A}`,
    ])
  })

  it('refuses another worker announcing the migration (403 forbidden) and keeps it team A’s', async () => {
    const { loom, make } = setup()
    await make('charts', TOKEN_A, []).start()
    const error = await expectLoomError(make('charts-b', TOKEN_B, []).start(), 'forbidden')
    expect(error.message).toMatch(/worker team-b may not announce migration app-chart: it belongs to worker team-a/)
    expect(await loom.getMigration('app-chart')).toMatchObject({ owner: 'team-a', workerUrl: 'http://charts.test' })
  })

  it('refuses a dispatch that carries another worker’s token: worker A expects its own', async () => {
    const { make } = setup()
    const calls: string[] = []
    const worker = make('charts', TOKEN_A, calls)
    await worker.start()
    const step = {
      migrationId: 'app-chart',
      runId: 'app-chart__billing-api',
      stepName: 'create-chart',
      candidate: { id: 'billing-api' },
      callbackId: 'app-chart__billing-api',
      eventName: 'step-completed:create-chart',
    }
    // A dispatcher presenting team B's token (or the operator's) to team A's worker: 401, nothing run.
    for (const token of [TOKEN_B, OPERATOR]) {
      const dispatcher = httpDispatcher({ token, fetch: async (input, init) => worker.app.request(new URL(String(input)).pathname, init) })
      const error = await expectLoomError(
        dispatcher.dispatch({ workerApp: 'charts', workerUrl: 'http://charts.test' }, step),
        'unauthorized',
      )
      expect(error.message).toMatch(/answered 401/)
    }
    expect(calls).toEqual([])
  })
})
