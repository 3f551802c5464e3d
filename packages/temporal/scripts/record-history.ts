/**
 * Records the history of one full `loomRun` into test/fixtures/<name>.json, for the
 * determinism test (replay.test.ts). After a deliberate, versioned (`patched`) change to the
 * workflow, record a new fixture under a new name and keep the old ones: each is what a
 * running workflow of its release holds, and must still replay.
 *   npx tsx packages/temporal/scripts/record-history.ts loom-run-history-dispatch-race
 *
 * The run covers every path of the loop: a worker that reports during its dispatch (the outcome
 * before the dispatch's answer: the run goes on without it, patch `loom-dispatch-race`), a pull
 * request opened, a manual-review step approved, and completion.
 */
import { writeFileSync } from 'node:fs'
import { fileURLToPath } from 'node:url'
import { historyToJSON } from '@temporalio/common/lib/proto-utils'
import { createLoom, memoryStore } from '@loom/core'
import { recordingDispatcher, until } from '../test/support/fakes'
import { createHarness } from '../test/support/harness'
import { startTemporal } from '../test/support/server'

const name = process.argv[2]
if (!name || !/^[a-z0-9-]+$/.test(name)) throw new Error('usage: record-history.ts <fixture name, e.g. loom-run-history-dispatch-race>')
const fixture = fileURLToPath(new URL(`../test/fixtures/${name}.json`, import.meta.url))
const M = 'app-chart'

const server = await startTemporal()
try {
  const store = memoryStore()
  const dispatcher = recordingDispatcher()
  const harness = await createHarness({ address: server.address, store, dispatcher })
  // No reconciler: its re-deliveries would add signals the script did not make.
  const loom = createLoom({ store, engine: harness.engine, dispatcher, reconcile: false })
  await loom.announce({
    id: M,
    name: 'App chart',
    steps: [
      { name: 'bump-chart', workerApp: 'charts' },
      { name: 'open-pr', workerApp: 'github' },
      { name: 'review', workerApp: 'console', config: { type: 'manual-review', instructions: 'Check the diff' } },
    ],
    candidates: [{ id: 'billing-api' }],
  })
  const runId = await loom.queue(M, 'billing-api')
  const report = (stepName: string, metadata?: Record<string, string>) =>
    loom.complete(runId, { stepName, candidate: { id: 'billing-api' }, success: true, ...(metadata ? { metadata } : {}) })
  // bump-chart's dispatch answers only once open-pr was dispatched: the workflow went on on the outcome alone.
  dispatcher.behaviour = async (request) => {
    if (request.stepName !== 'bump-chart') return
    await report('bump-chart')
    await dispatcher.nth(1)
  }

  await loom.execute(runId)
  await dispatcher.nth(1)
  await loom.prOpened(runId, {
    stepName: 'open-pr',
    candidate: { id: 'billing-api' },
    success: true,
    metadata: { prUrl: 'https://git.example/pr/1' },
  })
  await report('open-pr', { prUrl: 'https://git.example/pr/1', phase: 'merged' })
  await until(async () => (await harness.engine.progress(runId))?.waitingFor === 'review', 20_000, 'review')
  await report('review', { approvedBy: 'operator' })

  const handle = harness.client.workflow.getHandle(runId)
  const result = await handle.result()
  if (result.state !== 'completed') throw new Error(`the recorded run ended ${result.state}`)
  writeFileSync(fixture, `${JSON.stringify(JSON.parse(historyToJSON(await handle.fetchHistory())), null, 2)}\n`)
  console.log(`recorded ${runId} into ${fixture}`)
  await loom.close()
  await harness.close()
} finally {
  await server.stop()
}
