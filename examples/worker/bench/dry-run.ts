/**
 * What a dry run of the example costs: Loom asks the worker over HTTP, the worker reads each
 * file from the git repository (`git cat-file`) and edits the YAML, for every step.
 *
 *   npx tsx examples/worker/bench/dry-run.ts [calls=40]
 */
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { serve, type ServerType } from '@hono/node-server'
import { createLoom, httpDispatcher, httpDryRunner, localEngine, memoryStore } from '@loom/core'
import { createExampleWorker, MIGRATION_ID } from '../src/index'

const calls = Number(process.argv[2] ?? 40)
const dataDir = await mkdtemp(join(tmpdir(), 'loom-example-bench-'))
const loom = createLoom({
  store: memoryStore(),
  engine: localEngine(),
  dispatcher: httpDispatcher(),
  dryRunner: httpDryRunner(),
  onError: () => {},
})
let fetchWorker: (r: Request) => Response | Promise<Response> = () => new Response(null, { status: 503 })
const { server, url } = await new Promise<{ server: ServerType; url: string }>((resolve) => {
  const s = serve({ fetch: (r) => fetchWorker(r), port: 0, hostname: '127.0.0.1' }, (info) =>
    resolve({ server: s, url: `http://127.0.0.1:${info.port}` }),
  )
})
const t0 = performance.now()
const example = await createExampleWorker({ dataDir, loom, url, onError: () => {} })
fetchWorker = example.fetch
await example.start()
const startup = performance.now() - t0

const times: number[] = []
for (let i = 0; i < calls; i++) {
  const candidate = ['billing-api', 'search-api', 'checkout'][i % 3]!
  const t = performance.now()
  await loom.dryRun(MIGRATION_ID, candidate)
  times.push(performance.now() - t)
}
times.sort((a, b) => a - b)
console.log(
  `first start (git repository created from fixtures, announce, discovery): ${startup.toFixed(0)} ms; ` +
    `dry run over HTTP with git reads, p50 ${times[Math.floor(calls / 2)]!.toFixed(1)} ms, p95 ${times[Math.floor(calls * 0.95)]!.toFixed(1)} ms (${calls} calls)`,
)
await example.stop()
await loom.close()
await new Promise((r) => server.close(r))
await rm(dataDir, { recursive: true, force: true })
