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
  events: {
    eventType: string
    activityTaskScheduledEventAttributes?: { activityType: { name: string } }
    markerRecordedEventAttributes?: { markerName: string; details: { data: { payloads: { data: string }[] } } }
  }[]
}

/** The activities of the history in order: regular ones as scheduled, local ones from their markers. */
const activitiesOf = (history: HistoryJSON) =>
  history.events.flatMap((e) => {
    if (e.activityTaskScheduledEventAttributes) return [e.activityTaskScheduledEventAttributes.activityType.name]
    const marker = e.markerRecordedEventAttributes
    if (marker?.markerName !== 'core_local_activity') return []
    const data = JSON.parse(Buffer.from(marker.details.data.payloads[0]!.data, 'base64').toString()) as { activity_type: string }
    return [`local:${data.activity_type}`]
  })

let history: HistoryJSON
beforeAll(() => {
  history = JSON.parse(readFileSync(fixture, 'utf8')) as HistoryJSON
})

it('the fixture is a completed run with signals, dispatches and a review', () => {
  const types = history.events.map((e) => e.eventType)
  expect(types.at(-1)).toBe('EVENT_TYPE_WORKFLOW_EXECUTION_COMPLETED')
  expect(types.filter((t) => t === 'EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED')).toHaveLength(4)
  // Store operations are local activities; dispatch is a regular one; the review step is not dispatched.
  expect(activitiesOf(history)).toEqual([
    'local:load',
    ...['local:beginStep', 'dispatch'],
    ...['local:beginStep', 'dispatch'],
    'local:beginStep',
    'local:finish',
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
  await expect(Worker.runReplayHistory({ workflowBundle: await loomBundle() }, tampered, RUN)).rejects.toBeInstanceOf(
    DeterminismViolationError,
  )
})
