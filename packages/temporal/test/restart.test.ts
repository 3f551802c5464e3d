/**
 * The process hosting the Loom worker dies in the middle of a run; another one starts on the
 * same task queue and the run completes, without dispatching again the steps already done.
 */
import { spawn, type ChildProcess } from 'node:child_process'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { afterAll, beforeAll, expect, inject, it } from 'vitest'
import { createLoom, memoryStore, type LoomInstance } from '@loom/core'
import { recordingDispatcher, until } from './support/fakes'
import { createHarness, loomBundle, type Harness } from './support/harness'
import { serveRpc } from './support/rpc'

const address = inject('temporalAddress')
const M = 'app-chart'
const workerScript = fileURLToPath(new URL('./support/worker-process.ts', import.meta.url))

let dir: string
let bundlePath: string
const children: ChildProcess[] = []

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'loom-restart-'))
  bundlePath = join(dir, 'loom-workflows.js')
  writeFileSync(bundlePath, (await loomBundle()).code)
})
afterAll(async () => {
  for (const child of children) if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL')
  rmSync(dir, { recursive: true, force: true })
})

/** Starts a worker process and resolves once it polls the task queue. */
async function startWorkerProcess(env: Record<string, string>): Promise<ChildProcess> {
  const child = spawn(process.execPath, ['--import', 'tsx', workerScript], {
    env: { ...process.env, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  })
  children.push(child)
  let output = ''
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`worker process not ready in 60 s: ${output}`)), 60_000)
    child.stdout!.on('data', (chunk: Buffer) => {
      output += chunk
      if (output.includes('ready')) {
        clearTimeout(timer)
        resolve()
      }
    })
    child.stderr!.on('data', (chunk: Buffer) => (output += chunk))
    child.once('exit', (code) => {
      clearTimeout(timer)
      reject(new Error(`worker process exited with ${code}: ${output}`))
    })
  })
  return child
}

function killHard(child: ChildProcess): Promise<void> {
  return new Promise((resolve) => {
    child.once('exit', () => resolve())
    child.kill('SIGKILL')
  })
}

it('completes a run after the worker process is killed mid-run and another one starts', { timeout: 120_000 }, async () => {
  const store = memoryStore()
  const dispatcher = recordingDispatcher()
  const rpc = await serveRpc({ store, dispatcher })
  let harness: Harness | undefined
  let loom: LoomInstance | undefined
  try {
    harness = await createHarness({ address, store, dispatcher, noWorker: true })
    const built = createLoom({ store, engine: harness.engine, dispatcher, onError: () => {} })
    loom = built
    await built.announce({
      id: M,
      name: 'App chart',
      steps: [
        { name: 'bump-chart', workerApp: 'charts' },
        { name: 'open-pr', workerApp: 'github' },
        { name: 'verify', workerApp: 'charts' },
      ],
      candidates: [{ id: 'billing-api' }],
    })
    const env = { TEMPORAL_ADDRESS: address, LOOM_TASK_QUEUE: harness.taskQueue, LOOM_RPC_URL: rpc.url, LOOM_BUNDLE_PATH: bundlePath }
    const complete = (stepName: string) => built.complete(runId, { stepName, candidate: { id: 'billing-api' }, success: true })

    const first = await startWorkerProcess(env)
    const runId = await built.queue(M, 'billing-api')
    await built.execute(runId)
    await dispatcher.nth(0)
    await complete('bump-chart')
    expect((await dispatcher.nth(1)).stepName).toBe('open-pr')
    const runBefore = (await harness.client.workflow.getHandle(runId).describe()).runId

    // The process dies while the run waits on open-pr; the worker reports meanwhile.
    await killHard(first)
    await complete('open-pr')
    expect(dispatcher.requests).toHaveLength(2)

    await startWorkerProcess(env)
    expect((await dispatcher.nth(2, 60_000)).stepName).toBe('verify')
    await complete('verify')
    await until(async () => (await store.getCandidate(M, 'billing-api'))?.run?.state === 'completed', 30_000, 'completed')

    const handle = harness.client.workflow.getHandle(runId)
    await until(async () => (await handle.describe()).status.name === 'COMPLETED', 30_000, 'workflow completed')
    // The same workflow execution went on: nothing was restarted from scratch.
    expect((await handle.describe()).runId).toBe(runBefore)
    expect(dispatcher.requests.map((r) => r.stepName)).toEqual(['bump-chart', 'open-pr', 'verify'])
  } finally {
    await loom?.close()
    await harness?.close()
    await rpc.close()
  }
})
