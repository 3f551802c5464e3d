import { createLoom, localEngine, memoryStore, type LoomInstance } from '@loom/core'
import { eventually } from '@loom/core/testing'
import { mqttAnnouncements, mqttDispatcher, mqttDryRunner, type MqttSubscription } from '@loom/mqtt'
import { describe, expect, it } from 'vitest'
import { defineMigration, pending } from '../src/define-migration'
import { createWorker, type Worker } from '../src/worker'
import { testBroker } from './support/broker'

// The worker over MQTT both ways: it announces (waiting for Loom's acceptance) and receives
// dispatches and dry runs on its worker app's topics. The real Mosquitto when MQTT_URL is
// set, an in-process aedes broker otherwise (MQTT 3.1.1, which every client here speaks).

const TOKEN = 'worker-token'
const { connect, cleanups } = testBroker('loom-worker-test')

async function setup(options: { dispatcherToken: string }) {
  const prefix = `loom-worker-test-${crypto.randomUUID().slice(0, 8)}`
  const [serverClient, workerClient] = [await connect(), await connect()]
  const calls: string[] = []
  const dispatcher = mqttDispatcher(serverClient, { topicPrefix: prefix, token: options.dispatcherToken, timeoutMs: 2_000 })
  const dryRunner = mqttDryRunner(serverClient, { topicPrefix: prefix, token: TOKEN, timeoutMs: 5_000 })
  const loom: LoomInstance = createLoom({
    store: memoryStore(),
    engine: localEngine({ dispatchAttempts: 2, retryDelayMs: 10 }),
    dispatcher,
    dryRunner,
    onError: () => {},
  })
  const announcements: MqttSubscription = mqttAnnouncements(serverClient, loom, {
    topicPrefix: prefix,
    token: TOKEN,
    logger: { warn: () => {}, error: () => {} },
  })
  await announcements.ready
  const worker: Worker = createWorker({
    app: 'charts',
    loom,
    token: TOKEN,
    announce: { mqtt: workerClient, topicPrefix: prefix },
    dispatch: { mqtt: workerClient, topicPrefix: prefix },
    retry: { attempts: 3, initialDelayMs: 10 },
    onError: () => {},
    migrations: [
      defineMigration({
        id: 'app-chart',
        name: 'App chart',
        steps: [
          {
            name: 'create-chart',
            run: ({ candidate }) => {
              calls.push(`create-chart:${candidate.id}`)
              return { metadata: { chart: `charts/${candidate.id}` } }
            },
            dryRun: ({ candidate }) => [{ path: `charts/${candidate.id}/Chart.yaml`, content: `name: ${candidate.id}\n` }],
          },
          {
            name: 'open-pr',
            run: ({ candidate }) => {
              calls.push(`open-pr:${candidate.id}`)
              return pending({ prUrl: `https://git/pr/${candidate.id}` })
            },
            dryRun: async ({ candidate, files }) => [
              {
                path: `charts/${candidate.id}/Chart.yaml`,
                content: `${await files.read(`charts/${candidate.id}/Chart.yaml`)}version: 0.1.0\n`,
              },
            ],
          },
        ],
        discover: () => [{ id: 'billing-api', metadata: { repoName: 'acme/gitops' } }],
      }),
    ],
  })
  cleanups.push(
    () => serverClient.publishAsync(`${prefix}/announce/app-chart`, '', { qos: 1, retain: true }),
    () => loom.close(),
    () => Promise.all([dispatcher.close(), dryRunner.close(), announcements.stop()]),
    () => worker.stop(),
  )
  return { loom, worker, calls }
}

const statusOf = async (loom: LoomInstance) => (await loom.listCandidates('app-chart'))[0]?.status

describe('createWorker over MQTT', () => {
  it('announces, discovers, answers a stacked dry run and runs its steps, all over the broker', async () => {
    const { loom, worker, calls } = await setup({ dispatcherToken: TOKEN })
    await worker.start()
    expect((await loom.getMigration('app-chart')).candidates.map((c) => c.id)).toEqual(['billing-api'])

    const runId = await loom.queue('app-chart', 'billing-api')
    expect(await loom.dryRun('app-chart', 'billing-api')).toEqual({
      steps: [
        {
          stepName: 'create-chart',
          skipped: false,
          files: [{ path: 'charts/billing-api/Chart.yaml', repo: 'acme/gitops', after: 'name: billing-api\n' }],
        },
        {
          stepName: 'open-pr',
          skipped: false,
          files: [
            {
              path: 'charts/billing-api/Chart.yaml',
              repo: 'acme/gitops',
              before: 'name: billing-api\n',
              after: 'name: billing-api\nversion: 0.1.0\n',
            },
          ],
        },
      ],
    })

    await loom.execute(runId)
    await eventually(async () =>
      expect((await loom.getRun(runId)).steps?.[1]?.metadata).toEqual({ phase: 'open', prUrl: 'https://git/pr/billing-api' }),
    )
    await worker.complete(runId, 'open-pr', { success: true, metadata: { phase: 'merged' } })
    await eventually(async () => expect(await statusOf(loom)).toBe('completed'))
    expect(calls).toEqual(['create-chart:billing-api', 'open-pr:billing-api'])
  })

  it('refuses a dispatch that carries the wrong token: the handler never runs and the step fails', async () => {
    const { loom, worker, calls } = await setup({ dispatcherToken: 'stolen' })
    await worker.start()
    const runId = await loom.queue('app-chart', 'billing-api')
    await loom.execute(runId)
    await eventually(async () => expect(await statusOf(loom)).toBe('not_started'))
    const [step] = (await loom.runStatus(runId)).result.results
    expect(step?.success).toBe(false)
    expect(step?.metadata?.error).toMatch(/unauthorized|token/)
    expect(calls).toEqual([])
  })
})
