import { createLoom, localEngine, memoryStore } from '@loom/core'
import { loomContract } from '@loom/core/testing'
import { afterAll, describe } from 'vitest'
import { mqttDispatcher, mqttDryRunner, onDispatch, serveDryRun } from '../src/index'
import { closeClients, connect, testBroker, uniquePrefix } from './helpers'

const broker = await testBroker()
afterAll(() => broker.close())

// The whole Loom contract, with every dispatch and dry run crossing the broker: the contract's
// fake worker sits behind `onDispatch` and `serveDryRun`, Loom talks to it through
// `mqttDispatcher` and `mqttDryRunner`. Passing proves the MQTT transport transparent to Loom.
describe('mqtt', () => {
  const [serverVersion, workerVersion] = broker.versions.includes(5) ? ([5, 4] as const) : ([4, 4] as const)

  loomContract(
    `createLoom(memoryStore, localEngine) over MQTT ${serverVersion}/${workerVersion}`,
    async ({ dispatcher: fake, dryRunner: fakeDryRun }) => {
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
