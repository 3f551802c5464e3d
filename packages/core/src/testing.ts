/**
 * @loom/core/testing — the contract suites every implementation must pass, plus the small
 * fakes they use. Each adapter's `test/contract.test.ts` builds its implementation and
 * hands it to a suite:
 *
 * @example
 * import { storeContract } from '@loom/core/testing'
 * import { memoryStore } from '@loom/core'
 *
 * storeContract('memoryStore', async () => ({ store: memoryStore() }))
 *
 * The suites use Vitest (an optional peer dependency of `@loom/core`).
 */
export { storeContract, type StoreFactory } from './testing/store-contract'
export { engineContract, type EngineFactory, type EngineContractOptions } from './testing/engine-contract'
export { loomContract, type LoomFactory } from './testing/loom-contract'
export type { ContractOptions } from './testing/contract-test'
export { dispatcherContract, type DispatcherFactory, type DispatcherContractOptions } from './testing/dispatcher-contract'
export { dryRunnerContract, type DryRunnerFactory, type DryRunnerContractOptions } from './testing/dry-runner-contract'
export type { ScriptedWorker, TransportFixture, WorkerAnswer } from './testing/fakes'
export {
  fakeWorker,
  eventually,
  announcement,
  candidates,
  expectLoomError,
  type FakeWorker,
} from './testing/fakes'
