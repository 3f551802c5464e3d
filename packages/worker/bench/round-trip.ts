/**
 * How long a step takes to go round: Loom dispatches it over HTTP to a worker served on a
 * real socket, the handler returns at once, and the worker reports through Loom's HTTP API
 * with its token (`@loom/client`). Measures runs of one and of three steps, one at a time
 * (latency) and many at once (throughput), plus a stacked dry run.
 *
 *   npx tsx packages/worker/bench/round-trip.ts [runs=300]
 */
import { serve, type ServerType } from '@hono/node-server'
import { createLoom, httpDispatcher, httpDryRunner, localEngine, memoryStore, type LoomEvent } from '@loom/core'
import { loomApp } from '@loom/hono'
import { createWorker, defineMigration } from '../src/index'

const runs = Number(process.argv[2] ?? 300)
const TOKEN = 'bench-token'

const listen = (fetch: (r: Request) => Response | Promise<Response>) =>
  new Promise<{ url: string; server: ServerType }>((resolve) => {
    const server = serve({ fetch, port: 0, hostname: '127.0.0.1' }, (info) => resolve({ url: `http://127.0.0.1:${info.port}`, server }))
  })

const percentile = (values: number[], p: number) => {
  const sorted = [...values].sort((a, b) => a - b)
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!
}

async function scenario(stepCount: number) {
  const loom = createLoom({
    store: memoryStore(),
    engine: localEngine(),
    dispatcher: httpDispatcher({ token: TOKEN }),
    dryRunner: httpDryRunner({ token: TOKEN }),
    onError: () => {},
  })
  const api = await listen(loomApp(loom, { workerToken: TOKEN }).fetch)
  let workerFetch: (r: Request) => Response | Promise<Response> = () => new Response(null, { status: 503 })
  const workerServer = await listen((r) => workerFetch(r))
  const ids = Array.from({ length: runs }, (_, i) => `svc-${i}`)
  const worker = createWorker({
    app: 'bench',
    loomUrl: api.url,
    token: TOKEN,
    url: workerServer.url,
    migrations: [
      defineMigration({
        id: 'bench',
        name: 'Bench',
        steps: Array.from({ length: stepCount }, (_, i) => ({
          name: `step-${i}`,
          run: () => ({ metadata: { step: String(i) } }),
          dryRun: async ({ candidate, files }) => [
            {
              path: `apps/${candidate.id}/values.yaml`,
              content: `${(await files.read(`apps/${candidate.id}/values.yaml`)) ?? ''}step: ${i}\n`,
            },
          ],
        })),
        discover: () => ids.map((id) => ({ id })),
      }),
    ],
  })
  workerFetch = worker.fetch
  await worker.start()

  const finished = new Map<string, () => void>()
  loom.subscribe((event: LoomEvent) => {
    if (event.type === 'run.status' && event.status === 'completed') finished.get(event.runId)?.()
  })
  const completion = (runId: string) => new Promise<void>((resolve) => finished.set(runId, resolve))

  // One at a time: the latency of a whole run, execute to completed.
  const sequential = ids.slice(0, Math.min(100, runs / 2))
  const latencies: number[] = []
  for (const id of sequential) {
    const runId = await loom.queue('bench', id)
    const done = completion(runId)
    const t0 = performance.now()
    await loom.execute(runId)
    await done
    latencies.push(performance.now() - t0)
  }

  // All at once: throughput.
  const rest = ids.slice(sequential.length)
  const runIds = await Promise.all(rest.map((id) => loom.queue('bench', id)))
  const all = Promise.all(runIds.map(completion))
  const t0 = performance.now()
  await Promise.all(runIds.map((r) => loom.execute(r)))
  await all
  const seconds = (performance.now() - t0) / 1000

  const dryRuns: number[] = []
  for (const id of ids.slice(0, 50)) {
    const t = performance.now()
    await loom.dryRun('bench', id)
    dryRuns.push(performance.now() - t)
  }

  console.log(
    `${stepCount} step(s): run latency p50 ${percentile(latencies, 50).toFixed(1)} ms, p95 ${percentile(latencies, 95).toFixed(1)} ms ` +
      `(${latencies.length} runs one at a time); ${rest.length} runs at once in ${seconds.toFixed(2)} s = ` +
      `${(rest.length / seconds).toFixed(0)} runs/s, ${((rest.length * stepCount) / seconds).toFixed(0)} steps/s; ` +
      `dry run p50 ${percentile(dryRuns, 50).toFixed(1)} ms`,
  )
  await worker.stop()
  await loom.close()
  for (const s of [api.server, workerServer.server]) await new Promise((r) => s.close(r))
}

await scenario(1)
await scenario(3)
