import { createLoom, localEngine, memoryStore, type DispatchStepRequest, type LoomInstance } from '@loom/core'
import { eventually } from '@loom/core/testing'
import type { MqttClient } from 'mqtt'
import { afterAll, afterEach, beforeEach, describe, expect, it } from 'vitest'
import {
  mqttAnnouncements,
  mqttAnnouncer,
  mqttDispatcher,
  mqttDryRunner,
  onDispatch,
  serveDryRun,
  type MqttAnnouncer,
  type MqttDryRunner,
  type MqttStepDispatcher,
  type MqttSubscription,
} from '../src/index'
import { closeClients, connect, pairings, testBroker, uniquePrefix } from './helpers'

const broker = await testBroker()
afterAll(() => broker.close())

const TOKEN = 'worker-s3cret'
const STEPS = ['bump-chart', 'update-values']

describe.each(pairings(broker.versions))(
  'a Loom run over MQTT end to end (server protocol %i, worker protocol %i)',
  (serverVersion, workerVersion) => {
    let server: MqttClient
    let worker: MqttClient
    let loom: LoomInstance
    let dispatcher: MqttStepDispatcher
    let dryRunner: MqttDryRunner
    let announcer: MqttAnnouncer
    const subscriptions: MqttSubscription[] = []
    const dispatched: DispatchStepRequest[] = []
    /** How the worker ends each step: true (success), false (failure), or undefined to leave it running. */
    let outcome: (request: DispatchStepRequest) => boolean | undefined

    beforeEach(async () => {
      const topicPrefix = uniquePrefix()
      server = await connect(broker.url, serverVersion)
      worker = await connect(broker.url, workerVersion)
      dispatcher = mqttDispatcher(server, { topicPrefix, token: TOKEN, timeoutMs: 2_000 })
      dryRunner = mqttDryRunner(server, { topicPrefix, token: TOKEN, timeoutMs: 5_000 })
      loom = createLoom({
        store: memoryStore(),
        engine: localEngine({ dispatchAttempts: 2, retryDelayMs: 50 }),
        dispatcher,
        dryRunner,
        onError: () => {},
      })
      subscriptions.push(mqttAnnouncements(server, loom, { topicPrefix, token: TOKEN }))

      // The worker: accepts each step at once, and reports it through Complete a moment later, as a real worker would.
      dispatched.length = 0
      outcome = () => true
      subscriptions.push(
        onDispatch(worker, {
          workerApp: 'charts',
          topicPrefix,
          token: TOKEN,
          handler: (request) => {
            dispatched.push(request)
            const success = outcome(request)
            if (success === undefined) return
            setTimeout(() => {
              void loom.complete(request.callbackId, {
                stepName: request.stepName,
                candidate: { id: request.candidate.id },
                success,
                metadata: { prUrl: `https://git.example/${request.candidate.id}/${request.stepName}` },
              })
            }, 10)
          },
        }),
        serveDryRun(worker, {
          workerApp: 'charts',
          topicPrefix,
          token: TOKEN,
          handler: ({ candidate, steps }) => ({
            steps: steps.map((s, i) => ({
              stepName: s.name,
              skipped: false,
              files: [{ path: `apps/${candidate.id}/values.yaml`, repo: 'gitops', before: `step: ${i}\n`, after: `step: ${i + 1}\n` }],
            })),
          }),
        }),
      )
      await Promise.all(subscriptions.map((s) => s.ready))
      announcer = mqttAnnouncer(worker, { topicPrefix, token: TOKEN })
      await announcer.announce(
        { id: 'app-chart', name: 'App chart', steps: STEPS.map((name) => ({ name, workerApp: 'charts' })) },
        { awaitAcceptance: true },
      )
      await loom.submitCandidates('app-chart', [{ id: 'billing-api', kind: 'application' }, { id: 'ledger' }])
    })
    afterEach(async () => {
      await announcer.withdraw('app-chart')
      await Promise.all(subscriptions.splice(0).map((s) => s.stop()))
      await loom.close()
      await Promise.all([dispatcher.close(), dryRunner.close(), announcer.close()])
      await closeClients()
    })

    const statusOf = async (candidateId: string) => (await loom.listCandidates('app-chart')).find((c) => c.id === candidateId)?.status

    it('announces, previews, executes every step on the worker and completes', async () => {
      const preview = await loom.dryRun('app-chart', 'billing-api')
      expect(preview.steps).toEqual([
        {
          stepName: 'bump-chart',
          skipped: false,
          files: [{ path: 'apps/billing-api/values.yaml', repo: 'gitops', before: 'step: 0\n', after: 'step: 1\n' }],
        },
        {
          stepName: 'update-values',
          skipped: false,
          files: [{ path: 'apps/billing-api/values.yaml', repo: 'gitops', before: 'step: 1\n', after: 'step: 2\n' }],
        },
      ])

      const runId = await loom.queue('app-chart', 'billing-api')
      await loom.execute(runId)
      await eventually(async () => expect(await statusOf('billing-api')).toBe('completed'))
      expect(dispatched.map((d) => [d.runId, d.stepName, d.eventName])).toEqual([
        [runId, 'bump-chart', 'step-completed:bump-chart'],
        [runId, 'update-values', 'step-completed:update-values'],
      ])
      expect(dispatched[0]?.candidate).toEqual({ id: 'billing-api', kind: 'application' })
      const run = await loom.getRun(runId)
      expect(run.steps?.map((s) => [s.stepName, s.success, s.metadata?.prUrl])).toEqual([
        ['bump-chart', true, 'https://git.example/billing-api/bump-chart'],
        ['update-values', true, 'https://git.example/billing-api/update-values'],
      ])
      expect(await statusOf('ledger')).toBe('not_started')
    })

    it('resets the candidate to not_started when the worker reports a failed step', async () => {
      outcome = (r) => r.stepName !== 'update-values'
      const runId = await loom.queue('app-chart', 'ledger')
      await loom.execute(runId)
      await eventually(async () => expect(await statusOf('ledger')).toBe('not_started'))
      expect((await loom.runStatus(runId)).result.results.map((r) => [r.stepName, r.success])).toEqual([
        ['bump-chart', true],
        ['update-values', false],
      ])
    })

    it('fails the step instead of hanging when no worker takes the dispatch', async () => {
      await Promise.all(subscriptions.splice(1).map((s) => s.stop()))
      const runId = await loom.queue('app-chart', 'billing-api')
      await loom.execute(runId)
      await eventually(async () => expect(await statusOf('billing-api')).toBe('not_started'))
      const [result] = (await loom.runStatus(runId)).result.results
      expect(result?.success).toBe(false)
      expect(result?.metadata?.error).toBe(
        `dispatch to worker app charts failed: dispatch of step "bump-chart" of run ${runId} to worker app charts: no answer within 2000 ms`,
      )
    })

    it('cancels a run whose step is in flight; the worker’s late report is refused', async () => {
      outcome = () => undefined
      const runId = await loom.queue('app-chart', 'billing-api')
      await loom.execute(runId)
      await eventually(() => expect(dispatched.map((d) => d.stepName)).toEqual(['bump-chart']))
      await loom.cancel(runId)
      expect(await statusOf('billing-api')).toBe('not_started')
      await expect(loom.complete(runId, { stepName: 'bump-chart', candidate: { id: 'billing-api' }, success: true })).rejects.toMatchObject(
        { code: 'conflict' },
      )
      expect((await loom.getMigration('app-chart')).cancelledAttempts?.map((a) => a.runId)).toEqual([runId])
    })
  },
)
