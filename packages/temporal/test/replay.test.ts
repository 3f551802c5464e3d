/**
 * Determinism: the recorded history of a full run (scripts/record-history.ts) replays against
 * the current `loomRun`. A change that alters the order of the workflow's commands fails here.
 */
import { readFileSync } from 'node:fs'
import { Worker } from '@temporalio/worker'
import { DeterminismViolationError } from '@temporalio/workflow'
import { beforeAll, expect, it } from 'vitest'
import { loomBundle } from './support/harness'

const fixture = new URL('./fixtures/loom-run-history.json', import.meta.url)
const RUN = 'app-chart__billing-api'

interface HistoryJSON {
  events: { eventType: string; activityTaskScheduledEventAttributes?: { activityType: { name: string } } }[]
}

let history: HistoryJSON
beforeAll(() => {
  history = JSON.parse(readFileSync(fixture, 'utf8')) as HistoryJSON
})

it('the fixture is a completed run with signals, dispatches and a review', () => {
  const types = history.events.map((e) => e.eventType)
  expect(types.at(-1)).toBe('EVENT_TYPE_WORKFLOW_EXECUTION_COMPLETED')
  expect(types.filter((t) => t === 'EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED')).toHaveLength(4)
  const activities = history.events.flatMap((e) => e.activityTaskScheduledEventAttributes?.activityType.name ?? [])
  expect(activities).toEqual([
    'load',
    ...['beginStep', 'reportedOutcome', 'dispatch'],
    ...['beginStep', 'reportedOutcome', 'dispatch'],
    ...['beginStep', 'reportedOutcome'],
    'finish',
  ])
})

it('replays the recorded history of a full run with Worker.runReplayHistory', async () => {
  await expect(Worker.runReplayHistory({ workflowBundle: await loomBundle() }, history, RUN)).resolves.toBeUndefined()
})

it('reports a determinism violation when the history no longer matches the code', async () => {
  // The same history with the first dispatch recorded as another activity: what a reordering of steps would look like.
  const tampered = structuredClone(history)
  const dispatch = tampered.events.find((e) => e.activityTaskScheduledEventAttributes?.activityType.name === 'dispatch')!
  dispatch.activityTaskScheduledEventAttributes!.activityType.name = 'finish'
  await expect(Worker.runReplayHistory({ workflowBundle: await loomBundle() }, tampered, RUN)).rejects.toBeInstanceOf(DeterminismViolationError)
})
