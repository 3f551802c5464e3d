/**
 * Every published entry point, imported the way a consumer's ESM project imports it, on the Node
 * running this file. Prints one JSON object: entry → sorted runtime export names, so the test can
 * compare them with the workspace's own build. `@loom/core/testing` is left out: it is for adapter
 * authors and needs vitest, an optional peer this project does not install.
 */
import * as client from '@loom/client'
import * as core from '@loom/core'
import * as coreEngine from '@loom/core/engine'
import * as coreStore from '@loom/core/store'
import * as hono from '@loom/hono'
import * as mqtt from '@loom/mqtt'
import * as postgres from '@loom/postgres'
import * as temporal from '@loom/temporal'
import * as workflows from '@loom/temporal/workflows'
import * as worker from '@loom/worker'

// Types only: a consumer's code that names the adapters' option types must compile.
import type { TemporalEngineOptions } from '@loom/temporal'
import type { Engine } from '@loom/core'
type EngineFactory = (options: TemporalEngineOptions) => Engine
const engineFactory: EngineFactory = temporal.temporalEngine

const entries = {
  '@loom/client': client,
  '@loom/core': core,
  '@loom/core/engine': coreEngine,
  '@loom/core/store': coreStore,
  '@loom/hono': hono,
  '@loom/mqtt': mqtt,
  '@loom/postgres': postgres,
  '@loom/temporal': temporal,
  '@loom/temporal/workflows': workflows,
  '@loom/worker': worker,
}
if (typeof engineFactory !== 'function') throw new Error('temporalEngine is not a function')
console.log(JSON.stringify(Object.fromEntries(Object.entries(entries).map(([name, module]) => [name, Object.keys(module).sort()]))))
