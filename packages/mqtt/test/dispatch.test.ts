import { tokenIdentities, type DispatchStepRequest, type DryRunRequest, type DryRunResult, type WorkerTarget } from '@loom/core'
import { expectLoomError } from '@loom/core/testing'
import type { MqttClient } from 'mqtt'
import { afterAll, afterEach, beforeEach, describe, expect, it } from 'vitest'
import { mqttDispatcher, mqttDryRunner, onDispatch, serveDryRun } from '../src/index'
import { closeClients, connect, nextMessage, pairings, recordingLogger, testBroker, uniquePrefix } from './helpers'

const broker = await testBroker()
afterAll(() => broker.close())

const request: DispatchStepRequest = {
  migrationId: 'app-chart',
  runId: 'app-chart__billing-api',
  stepName: 'bump-chart',
  candidate: { id: 'billing-api', kind: 'application', metadata: { team: 'payments' } },
  config: { chart: 'app' },
  callbackId: 'app-chart__billing-api',
  eventName: 'step-completed:bump-chart',
}

const dryRunRequest: DryRunRequest = {
  migrationId: 'app-chart',
  candidate: { id: 'billing-api' },
  steps: [
    { name: 'bump-chart', workerApp: 'charts' },
    { name: 'update-values', workerApp: 'values' },
  ],
}

const diff = (after: string) => ({ path: 'apps/billing-api/Chart.yaml', repo: 'gitops', before: 'chart: generic\n', after })

/** A worker app's dry run that handles `handled` and skips the other steps. */
const answering =
  (handled: string, after: string) =>
  (r: DryRunRequest): DryRunResult => ({
    steps: r.steps.map((s) =>
      s.name === handled ? { stepName: s.name, skipped: false, files: [diff(after)] } : { stepName: s.name, skipped: true },
    ),
  })

describe.each(pairings(broker.versions))(
  'dispatch and dry run over MQTT (server protocol %i, worker protocol %i)',
  (serverVersion, workerVersion) => {
    let server: MqttClient
    let worker: MqttClient
    let prefix: string

    beforeEach(async () => {
      server = await connect(broker.url, serverVersion)
      worker = await connect(broker.url, workerVersion)
      prefix = uniquePrefix()
    })
    afterEach(() => closeClients())

    describe('dispatch', () => {
      it('delivers the DispatchStepRequest to the worker app and resolves once the worker accepted it', async () => {
        const received: DispatchStepRequest[] = []
        const receiver = onDispatch(worker, { workerApp: 'charts', topicPrefix: prefix, handler: (r) => void received.push(r) })
        await receiver.ready
        const dispatcher = mqttDispatcher(server, { topicPrefix: prefix, timeoutMs: 5_000 })
        await dispatcher.dispatch({ workerApp: 'charts' }, request)
        // Resolved means accepted: the handler has already run, and it sees the request without transport fields.
        expect(received).toEqual([request])
        await dispatcher.close()
        await receiver.stop()
      })

      it('fails as unavailable with the worker’s reason when its handler throws', async () => {
        const logger = recordingLogger()
        onDispatch(worker, {
          workerApp: 'charts',
          topicPrefix: prefix,
          logger,
          handler: () => Promise.reject(new Error('git clone failed: ECONNREFUSED')),
        })
        await new Promise((r) => setTimeout(r, 0))
        const dispatcher = mqttDispatcher(server, { topicPrefix: prefix })
        const error = await expectLoomError(dispatcher.dispatch({ workerApp: 'charts' }, request), 'unavailable')
        expect(error.message).toBe(
          'dispatch of step "bump-chart" of run app-chart__billing-api to worker app charts: the worker refused (unavailable): git clone failed: ECONNREFUSED',
        )
        expect(logger.errors).toEqual([`dispatch message on ${prefix}/workers/charts/dispatch failed: git clone failed: ECONNREFUSED`])
        await dispatcher.close()
      })

      it('fails as unavailable when no worker app answers in time', async () => {
        const dispatcher = mqttDispatcher(server, { topicPrefix: prefix, timeoutMs: 200 })
        const error = await expectLoomError(dispatcher.dispatch({ workerApp: 'nobody' }, request), 'unavailable')
        expect(error.message).toBe(
          'dispatch of step "bump-chart" of run app-chart__billing-api to worker app nobody: no answer within 200 ms',
        )
        await dispatcher.close()
      })

      it('is refused as unauthorized without the worker’s token, so the engine does not retry it, and handled with it', async () => {
        const received: string[] = []
        const logger = recordingLogger()
        const receiver = onDispatch(worker, {
          workerApp: 'charts',
          topicPrefix: prefix,
          token: 'w0rker',
          logger,
          handler: (r) => void received.push(r.runId),
        })
        await receiver.ready
        const anonymous = mqttDispatcher(server, { topicPrefix: prefix })
        const wrong = mqttDispatcher(server, { topicPrefix: prefix, token: 'guess' })
        const right = mqttDispatcher(server, { topicPrefix: prefix, token: 'w0rker' })
        expect((await expectLoomError(anonymous.dispatch({ workerApp: 'charts' }, request), 'unauthorized')).message).toMatch(
          /the worker refused \(unauthorized\): token: missing$/,
        )
        expect((await expectLoomError(wrong.dispatch({ workerApp: 'charts' }, request), 'unauthorized')).message).toMatch(
          /the worker refused \(unauthorized\): token: does not match$/,
        )
        expect(received).toEqual([])
        await right.dispatch({ workerApp: 'charts' }, request)
        expect(received).toEqual(['app-chart__billing-api'])
        expect(logger.warnings).toHaveLength(2)
        await Promise.all([anonymous.close(), wrong.close(), right.close()])
      })

      it('sends each worker its own token when the token is a function of the target', async () => {
        const identities = tokenIdentities({ workers: { 'team-a': 'tok-a', 'team-b': 'tok-b' } })
        const received: string[] = []
        const logger = recordingLogger()
        const receivers = [
          onDispatch(worker, {
            workerApp: 'charts',
            topicPrefix: prefix,
            token: 'tok-a',
            logger,
            handler: (r) => void received.push(`charts:${r.runId}`),
          }),
          onDispatch(worker, {
            workerApp: 'topics',
            topicPrefix: prefix,
            token: 'tok-b',
            logger,
            handler: (r) => void received.push(`topics:${r.runId}`),
          }),
        ]
        await Promise.all(receivers.map((r) => r.ready))
        const targets: WorkerTarget[] = []
        const dispatcher = mqttDispatcher(server, {
          topicPrefix: prefix,
          timeoutMs: 5_000,
          token: (target) => {
            targets.push(target)
            return identities.workerToken(target.owner)
          },
        })
        await dispatcher.dispatch({ workerApp: 'charts', owner: 'team-a', workerUrl: 'http://charts.internal' }, request)
        await dispatcher.dispatch({ workerApp: 'topics', owner: 'team-b' }, request)
        expect(received).toEqual(['charts:app-chart__billing-api', 'topics:app-chart__billing-api'])
        expect(targets).toEqual([
          { workerApp: 'charts', owner: 'team-a', workerUrl: 'http://charts.internal' },
          { workerApp: 'topics', owner: 'team-b' },
        ])
        // Team B's token does not open team A's worker.
        const crossed = await expectLoomError(dispatcher.dispatch({ workerApp: 'charts', owner: 'team-b' }, request), 'unauthorized')
        expect(crossed.message).toMatch(/the worker refused \(unauthorized\): token: does not match$/)
        expect(received).toHaveLength(2)
        await dispatcher.close()
        await Promise.all(receivers.map((r) => r.stop()))
      })

      it('answers an invalid dispatch message with the field, without calling the handler', async () => {
        const received: unknown[] = []
        const receiver = onDispatch(worker, {
          workerApp: 'charts',
          topicPrefix: prefix,
          logger: recordingLogger(),
          handler: (r) => void received.push(r),
        })
        await receiver.ready
        const replies = `${prefix}/replies/by-hand`
        const answered = nextMessage(server, replies)
        await new Promise((r) => setTimeout(r, 50))
        const { candidate: _omitted, ...withoutCandidate } = request
        await server.publishAsync(
          `${prefix}/workers/charts/dispatch`,
          JSON.stringify({ ...withoutCandidate, replyTo: replies, correlationId: 'c-1' }),
          { qos: 1 },
        )
        expect(JSON.parse((await answered).payload)).toEqual({
          correlationId: 'c-1',
          ok: false,
          code: 'invalid',
          error: 'candidate: is required',
        })
        expect(received).toEqual([])
      })

      it('reads no dispatch over maxPayloadBytes: the handler never sees it and the refusal is logged', async () => {
        const received: unknown[] = []
        const logger = recordingLogger()
        const receiver = onDispatch(worker, {
          workerApp: 'charts',
          topicPrefix: prefix,
          maxPayloadBytes: 200,
          logger,
          handler: (r) => void received.push(r),
        })
        await receiver.ready
        const dispatcher = mqttDispatcher(server, { topicPrefix: prefix, timeoutMs: 500 })
        // Its reply topic is inside the unread payload: the dispatcher hears nothing and gives up.
        await expectLoomError(dispatcher.dispatch({ workerApp: 'charts' }, request), 'unavailable')
        expect(received).toEqual([])
        expect(logger.warnings).toEqual([
          expect.stringMatching(
            new RegExp(
              `^dispatch message on ${prefix}/workers/charts/dispatch refused: body: \\d+ bytes, larger than the limit of 200 bytes \\(maxPayloadBytes\\)$`,
            ),
          ),
        ])
        await dispatcher.close()
      })

      it('handles a dispatch published without a reply topic (fire and forget)', async () => {
        const received: string[] = []
        const receiver = onDispatch(worker, { workerApp: 'charts', topicPrefix: prefix, handler: (r) => void received.push(r.stepName) })
        await receiver.ready
        await server.publishAsync(`${prefix}/workers/charts/dispatch`, JSON.stringify(request), { qos: 1 })
        await expect.poll(() => received, { timeout: 5_000 }).toEqual(['bump-chart'])
      })
    })

    describe('dry run', () => {
      it('asks the worker app and returns its DryRunResult', async () => {
        const asked: DryRunRequest[] = []
        const responder = serveDryRun(worker, {
          workerApp: 'charts',
          topicPrefix: prefix,
          handler: (r) => {
            asked.push(r)
            return { steps: r.steps.map((s) => ({ stepName: s.name, skipped: false, files: [diff(`chart: ${r.candidate.id}\n`)] })) }
          },
        })
        await responder.ready
        const dryRunner = mqttDryRunner(server, { topicPrefix: prefix, timeoutMs: 5_000 })
        const oneApp = { ...dryRunRequest, steps: [dryRunRequest.steps[0]!] }
        const result = await dryRunner.dryRun({ workerApps: ['charts'] }, oneApp)
        expect(result).toEqual({ steps: [{ stepName: 'bump-chart', skipped: false, files: [diff('chart: billing-api\n')] }] })
        expect(asked).toEqual([oneApp])
        await dryRunner.close()
      })

      it('returns what answered and names the worker app that did not', async () => {
        const charts = serveDryRun(worker, { workerApp: 'charts', topicPrefix: prefix, handler: answering('bump-chart', 'from charts') })
        await charts.ready
        const dryRunner = mqttDryRunner(server, { topicPrefix: prefix, timeoutMs: 300 })
        const result = await dryRunner.dryRun({ workerApps: ['charts', 'values'] }, dryRunRequest)
        expect(result.steps[0]).toEqual({ stepName: 'bump-chart', skipped: false, files: [diff('from charts')] })
        expect(result.steps[1]).toEqual({
          stepName: 'update-values',
          skipped: false,
          error: 'dry run of app-chart for billing-api by worker app values: no answer within 300 ms',
        })
        await dryRunner.close()
      })

      it('throws unavailable when no worker app answers, or answers something that is not a DryRunResult', async () => {
        const dryRunner = mqttDryRunner(server, { topicPrefix: prefix, timeoutMs: 200 })
        const silent = await expectLoomError(dryRunner.dryRun({ workerApps: ['charts'] }, dryRunRequest), 'unavailable')
        expect(silent.message).toBe('dry run of app-chart for billing-api by worker app charts: no answer within 200 ms')
        const broken = serveDryRun(worker, {
          workerApp: 'charts',
          topicPrefix: prefix,
          handler: () => ({ steps: [{ stepName: 'bump-chart' }] }) as never,
        })
        await broken.ready
        const invalid = await expectLoomError(dryRunner.dryRun({ workerApps: ['charts'] }, dryRunRequest), 'unavailable')
        expect(invalid.message).toBe(
          'worker app charts answered an invalid dry run: steps.0.skipped does not have the shape of a dry-run result',
        )
        await dryRunner.close()
      })

      it('passes a worker’s failure on as unavailable with its reason', async () => {
        const failing = serveDryRun(worker, {
          workerApp: 'charts',
          topicPrefix: prefix,
          logger: recordingLogger(),
          handler: () => {
            throw new Error('repository not found')
          },
        })
        await failing.ready
        const dryRunner = mqttDryRunner(server, { topicPrefix: prefix })
        const error = await expectLoomError(
          dryRunner.dryRun({ workerApps: ['charts'] }, { ...dryRunRequest, steps: [dryRunRequest.steps[0]!] }),
          'unavailable',
        )
        expect(error.message).toBe(
          'dry run of app-chart for billing-api by worker app charts: the worker refused (unavailable): repository not found',
        )
        await dryRunner.close()
      })

      it('asks each worker app with the token the function chooses for it and the migration’s owner', async () => {
        const tokens: Record<string, string> = { charts: 'tok-charts', values: 'tok-values' }
        const responders = Object.entries(tokens).map(([workerApp, token]) =>
          serveDryRun(worker, {
            workerApp,
            topicPrefix: prefix,
            token,
            logger: recordingLogger(),
            handler: answering(workerApp === 'charts' ? 'bump-chart' : 'update-values', `from ${workerApp}`),
          }),
        )
        await Promise.all(responders.map((r) => r.ready))
        const asked: WorkerTarget[] = []
        const dryRunner = mqttDryRunner(server, {
          topicPrefix: prefix,
          timeoutMs: 5_000,
          token: (target) => {
            asked.push(target)
            return tokens[target.workerApp]
          },
        })
        const result = await dryRunner.dryRun({ workerApps: ['charts', 'values'], owner: 'team-a' }, dryRunRequest)
        expect(result.steps.map((s) => s.files?.[0]?.after)).toEqual(['from charts', 'from values'])
        expect(asked.sort((a, b) => a.workerApp.localeCompare(b.workerApp))).toEqual([
          { workerApp: 'charts', owner: 'team-a' },
          { workerApp: 'values', owner: 'team-a' },
        ])
        await dryRunner.close()
        await Promise.all(responders.map((r) => r.stop()))
      })

      it('takes a worker refusing the token for an unavailable worker, naming it, never an unauthorized operator', async () => {
        const responder = serveDryRun(worker, {
          workerApp: 'charts',
          topicPrefix: prefix,
          token: 'w0rker',
          logger: recordingLogger(),
          handler: answering('bump-chart', 'x'),
        })
        await responder.ready
        const anonymous = mqttDryRunner(server, { topicPrefix: prefix })
        const error = await expectLoomError(anonymous.dryRun({ workerApps: ['charts'] }, dryRunRequest), 'unavailable')
        expect(error.message).toMatch(/the worker refused \(unauthorized\): token: missing$/)
        expect(error.details).toEqual({ dependency: 'worker app charts' })
        const right = mqttDryRunner(server, { topicPrefix: prefix, token: 'w0rker' })
        expect((await right.dryRun({ workerApps: ['charts'] }, dryRunRequest)).steps[0]?.skipped).toBe(false)
        await Promise.all([anonymous.close(), right.close()])
      })
    })
  },
)
