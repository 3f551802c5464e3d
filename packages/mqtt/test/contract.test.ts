import { createLoom, type DryRunResult, localEngine, memoryStore } from '@loom/core'
import { dispatcherContract, dryRunnerContract, loomContract, type TransportFixture } from '@loom/core/testing'
import type { MqttClient } from 'mqtt'
import { afterAll, describe } from 'vitest'
import { mqttDispatcher, mqttDryRunner, onDispatch, serveDryRun } from '../src/index'
import { closeClients, connect, pairings, recordingLogger, testBroker, uniquePrefix } from './helpers'

const broker = await testBroker()
afterAll(() => broker.close())

// The whole Loom contract, with every dispatch and dry run crossing the broker: the contract's
// fake worker sits behind `onDispatch` and `serveDryRun`, Loom talks to it through
// `mqttDispatcher` and `mqttDryRunner`. Passing proves the MQTT transport transparent to Loom.
describe('mqtt', () => {
  const [serverVersion, workerVersion] = broker.versions.includes(5) ? ([5, 4] as const) : ([4, 4] as const)

  loomContract(
    `createLoom(memoryStore, localEngine) over MQTT ${serverVersion}/${workerVersion}`,
    async ({ dispatcher: fake, dryRunner: fakeDryRun, reconcile }) => {
      const topicPrefix = uniquePrefix()
      const server = await connect(broker.url, serverVersion)
      const worker = await connect(broker.url, workerVersion)
      const receivers = [
        onDispatch(worker, { workerApp: 'charts', topicPrefix, handler: (request) => fake.dispatch({ workerApp: 'charts' }, request) }),
        serveDryRun(worker, {
          workerApp: 'charts',
          topicPrefix,
          handler: (request) => fakeDryRun.dryRun({ workerApps: ['charts'] }, request),
        }),
      ]
      await Promise.all(receivers.map((r) => r.ready))
      const dispatcher = mqttDispatcher(server, { topicPrefix, timeoutMs: 5_000 })
      const dryRunner = mqttDryRunner(server, { topicPrefix, timeoutMs: 5_000 })
      const loom = createLoom({
        store: memoryStore(),
        engine: localEngine({ dispatchAttempts: 2, retryDelayMs: 10 }),
        dispatcher,
        dryRunner,
        reconcile,
        onError: () => {},
      })
      await loom.ready
      return {
        loom,
        close: async () => {
          await loom.close()
          await Promise.all([...receivers.map((r) => r.stop()), dispatcher.close(), dryRunner.close()])
          await closeClients()
        },
      }
    },
  )
})

/**
 * The transport's two halves on one broker: `make` builds the server side on its client, and
 * a worker's client answers through the contract's scripted worker as `@loom/worker` does (it
 * serves its apps with `onDispatch` and `serveDryRun`).
 */
async function onBroker<T extends { close(): Promise<void> }>(
  fixture: TransportFixture,
  [serverVersion, workerVersion]: [4 | 5, 4 | 5],
  make: (server: MqttClient, options: { topicPrefix: string; timeoutMs: number; token?: string }) => T,
) {
  const topicPrefix = uniquePrefix()
  const [server, client] = await Promise.all([connect(broker.url, serverVersion), connect(broker.url, workerVersion)])
  const common = { topicPrefix, logger: recordingLogger(), ...(fixture.workerToken ? { token: fixture.workerToken } : {}) }
  const receivers = fixture.workerApps.flatMap((workerApp) => [
    onDispatch(client, { ...common, workerApp, handler: (request) => fixture.worker.dispatch(workerApp, request) }),
    serveDryRun(client, { ...common, workerApp, handler: (request) => fixture.worker.dryRun(workerApp, request) as Promise<DryRunResult> }),
  ])
  await Promise.all(receivers.map((r) => r.ready))
  const transport = make(server, { topicPrefix, timeoutMs: fixture.timeoutMs, ...(fixture.token ? { token: fixture.token } : {}) })
  const close = async () => {
    await transport.close()
    await Promise.all(receivers.map((r) => r.stop()))
    await Promise.all([server, client].map((c) => c.endAsync(true)))
  }
  return { transport, close }
}

describe.each(pairings(broker.versions))('mqtt transports (server protocol %i, worker protocol %i)', (serverVersion, workerVersion) => {
  const versions: [4 | 5, 4 | 5] = [serverVersion, workerVersion]
  dispatcherContract(`mqttDispatcher ${serverVersion}/${workerVersion}`, async (fixture) => {
    const { transport, close } = await onBroker(fixture, versions, mqttDispatcher)
    return { dispatcher: transport, close }
  })
  dryRunnerContract(`mqttDryRunner ${serverVersion}/${workerVersion}`, async (fixture) => {
    const { transport, close } = await onBroker(fixture, versions, mqttDryRunner)
    return { dryRunner: transport, close }
  })
})
