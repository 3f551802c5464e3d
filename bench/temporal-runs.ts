/**
 * Loom on Temporal against a bare Temporal workflow, on the local dev server:
 * 100 runs of a 3-step migration, all executed at once, with a worker that reports each
 * step as soon as it is dispatched. Prints runs per second and the median time from
 * execute to completed for both, and Loom's ratio to the bare workflow.
 *
 *   npx tsx bench/temporal-runs.ts          (RUNS=100 ROUNDS=5; TEMPORAL_ADDRESS to use a running server)
 */
import { randomUUID } from 'node:crypto'
import { fileURLToPath } from 'node:url'
import { Client, Connection } from '@temporalio/client'
import { DefaultLogger, NativeConnection, Runtime, Worker, bundleWorkflowCode } from '@temporalio/worker'
import { createLoom, memoryStore, type LoomInstance, type StepDispatcher } from '@loom/core'
import { bundleLoomWorkflows, createLoomWorker, temporalEngine } from '../packages/temporal/src/index'
import { startTemporal } from '../packages/temporal/test/support/server'
import { bareRun, bareStepDone } from './temporal-bare-workflow'

const RUNS = Number(process.env.RUNS ?? 100)
const ROUNDS = Number(process.env.ROUNDS ?? 5)
const STEPS = ['bump-chart', 'open-pr', 'verify']

Runtime.install({ logger: new DefaultLogger('ERROR'), telemetryOptions: { logging: { filter: { core: 'ERROR', other: 'ERROR' } } } })

interface Result {
  runsPerSecond: number
  medianMs: number
  p95Ms: number
}

const quantile = (values: number[], q: number) => {
  const sorted = [...values].sort((a, b) => a - b)
  return sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))]!
}

const summarise = (startedAt: number, durations: number[], endedAt: number): Result => ({
  runsPerSecond: durations.length / ((endedAt - startedAt) / 1000),
  medianMs: quantile(durations, 0.5),
  p95Ms: quantile(durations, 0.95),
})

async function benchLoom(address: string, connection: NativeConnection, client: Client, runs: number): Promise<Result> {
  const taskQueue = `bench-loom-${randomUUID()}`
  const store = memoryStore()
  const completedAt = new Map<string, number>()
  let loom!: LoomInstance
  // The worker app: accepts the dispatch, then reports the step at once, as a separate call.
  const dispatcher: StepDispatcher = {
    async dispatch(_target, request) {
      setImmediate(() => {
        loom
          .complete(request.runId, { stepName: request.stepName, candidate: { id: request.candidate.id }, success: true })
          .catch((error) => {
            console.error('report failed', error)
          })
      })
    },
  }
  let onCompleted: (() => void) | undefined
  const worker = await createLoomWorker({
    connection,
    taskQueue,
    store,
    dispatcher,
    workflowBundle: await loomBundle,
    onEvent: (event) => {
      if (event.type === 'run.status' && event.status === 'completed') {
        completedAt.set(event.runId, performance.now())
        if (completedAt.size === runs) onCompleted?.()
      }
    },
  })
  const running = worker.run()
  loom = createLoom({ store, engine: temporalEngine({ client, taskQueue }), dispatcher })
  const migration = `bench-${randomUUID().slice(0, 8)}`
  const candidates = Array.from({ length: runs }, (_, i) => ({ id: `svc-${i}` }))
  await loom.announce({ id: migration, name: 'Bench', steps: STEPS.map((name) => ({ name, workerApp: 'bench' })), candidates })
  const runIds = await Promise.all(candidates.map((c) => loom.queue(migration, c.id)))

  const done = new Promise<void>((resolve) => (onCompleted = resolve))
  const executedAt = new Map<string, number>()
  const startedAt = performance.now()
  await Promise.all(
    runIds.map(async (runId) => {
      executedAt.set(runId, performance.now())
      await loom.execute(runId)
    }),
  )
  await done
  const endedAt = performance.now()
  worker.shutdown()
  await running
  void address
  return summarise(
    startedAt,
    runIds.map((id) => completedAt.get(id)! - executedAt.get(id)!),
    endedAt,
  )
}

async function benchBare(connection: NativeConnection, client: Client, runs: number): Promise<Result> {
  const taskQueue = `bench-bare-${randomUUID()}`
  const completedAt = new Map<string, number>()
  let onCompleted: (() => void) | undefined
  const worker = await Worker.create({
    connection,
    taskQueue,
    workflowBundle: await bareBundle,
    activities: {
      // The worker app: accepts the dispatch, then signals the step done at once, as a separate call.
      async dispatch(workflowId: string, step: string) {
        setImmediate(() => {
          client.workflow
            .getHandle(workflowId)
            .signal(bareStepDone, step)
            .catch((error) => console.error('signal failed', error))
        })
      },
      // Where Loom's last store write happens: the same point of the run for both.
      async finish(workflowId: string) {
        completedAt.set(workflowId, performance.now())
        if (completedAt.size === runs) onCompleted?.()
      },
    },
  })
  const running = worker.run()
  const ids = Array.from({ length: runs }, (_, i) => `bench-bare-${i}-${randomUUID().slice(0, 8)}`)
  const done = new Promise<void>((resolve) => (onCompleted = resolve))
  const executedAt = new Map<string, number>()
  const startedAt = performance.now()
  await Promise.all(
    ids.map(async (workflowId) => {
      executedAt.set(workflowId, performance.now())
      await client.workflow.start(bareRun, { workflowId, taskQueue, args: [STEPS] })
    }),
  )
  await done
  const endedAt = performance.now()
  worker.shutdown()
  await running
  return summarise(
    startedAt,
    ids.map((id) => completedAt.get(id)! - executedAt.get(id)!),
    endedAt,
  )
}

const quiet = new DefaultLogger('ERROR')
const loomBundle = bundleLoomWorkflows({ logger: quiet })
const bareBundle = bundleWorkflowCode({
  workflowsPath: fileURLToPath(new URL('./temporal-bare-workflow.ts', import.meta.url)),
  logger: quiet,
})

const server = await startTemporal()
try {
  const connection = await NativeConnection.connect({ address: server.address })
  const clientConnection = await Connection.connect({ address: server.address })
  const client = new Client({ connection: clientConnection })
  console.log(
    `Temporal: ${server.source} at ${server.address}; ${RUNS} runs of ${STEPS.length} steps, ${ROUNDS} round(s), Node ${process.version}`,
  )

  // Warm-up: bundles loaded, connections and task queues live.
  await benchBare(connection, client, 10)
  await benchLoom(server.address, connection, client, 10)

  const fmt = (r: Result) =>
    `${r.runsPerSecond.toFixed(1).padStart(5)} runs/s, median ${r.medianMs.toFixed(0).padStart(5)} ms, p95 ${r.p95Ms.toFixed(0).padStart(5)} ms`
  const bares: Result[] = []
  const looms: Result[] = []
  // The machine is shared and noisy: alternate the order round by round, then take medians.
  for (let round = 1; round <= ROUNDS; round++) {
    const loomFirst = round % 2 === 0
    if (loomFirst) looms.push(await benchLoom(server.address, connection, client, RUNS))
    bares.push(await benchBare(connection, client, RUNS))
    if (!loomFirst) looms.push(await benchLoom(server.address, connection, client, RUNS))
    console.log(`round ${round}: bare ${fmt(bares.at(-1)!)} | Loom ${fmt(looms.at(-1)!)}`)
  }
  const mid = (rs: Result[], key: keyof Result) =>
    quantile(
      rs.map((r) => r[key]),
      0.5,
    )
  const bare = { runsPerSecond: mid(bares, 'runsPerSecond'), medianMs: mid(bares, 'medianMs'), p95Ms: mid(bares, 'p95Ms') }
  const loom = { runsPerSecond: mid(looms, 'runsPerSecond'), medianMs: mid(looms, 'medianMs'), p95Ms: mid(looms, 'p95Ms') }

  // One run at a time: the time a run takes with no queueing, i.e. Loom's own overhead per run.
  const single = async (fn: () => Promise<Result>) => {
    const times: number[] = []
    for (let i = 0; i < 10; i++) times.push((await fn()).medianMs)
    return quantile(times, 0.5)
  }
  const bareAlone = await single(() => benchBare(connection, client, 1))
  const loomAlone = await single(() => benchLoom(server.address, connection, client, 1))

  console.log(`\nmedians over ${ROUNDS} rounds of ${RUNS} concurrent runs`)
  console.log(`  bare Temporal workflow: ${fmt(bare)}`)
  console.log(`  Loom (loomRun):         ${fmt(loom)}`)
  console.log(
    `  Loom/bare: median execute->completed ${(loom.medianMs / bare.medianMs).toFixed(2)}x, runs/s ${(loom.runsPerSecond / bare.runsPerSecond).toFixed(2)}x`,
  )
  console.log(
    `one run at a time (median of 10): bare ${bareAlone.toFixed(0)} ms, Loom ${loomAlone.toFixed(0)} ms, ${(loomAlone / bareAlone).toFixed(2)}x`,
  )
  await connection.close()
  await clientConnection.close()
} finally {
  await server.stop()
}
