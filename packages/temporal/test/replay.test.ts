/**
 * Determinism: the recorded histories of full runs (scripts/record-history.ts) replay against
 * the current `loomRun`. A change that alters the order of the workflow's commands fails here.
 * Each fixture is the history a workflow of its release holds: `loom-run-history.json` from
 * 0.3, where the workflow waited for a dispatch after the step's outcome had come, and
 * `loom-run-history-dispatch-race.json` with the patch `loom-dispatch-race`, where that outcome
 * ends the wait and the dispatch is cancelled.
 */
import { readFileSync } from 'node:fs'
import { Worker } from '@temporalio/worker'
import { DeterminismViolationError } from '@temporalio/workflow'
import { beforeAll, describe, expect, it } from 'vitest'
import { DISPATCH_RACE_PATCH } from '../src/workflows'
import { loomBundle } from './support/harness'

const RUN = 'app-chart__billing-api'

interface HistoryJSON {
  events: {
    eventType: string
    activityTaskScheduledEventAttributes?: { activityType: { name: string } }
    activityTaskCancelRequestedEventAttributes?: unknown
    markerRecordedEventAttributes?: { markerName: string; details: Record<string, { payloads: { data: string }[] } | undefined> }
  }[]
}

/**
 * The activities of the history in order: regular ones as scheduled, local ones from their
 * markers; patches as `patch:<id>`, a cancel requested as `cancel`.
 */
const activitiesOf = (history: HistoryJSON) =>
  history.events.flatMap((e) => {
    if (e.activityTaskScheduledEventAttributes) return [e.activityTaskScheduledEventAttributes.activityType.name]
    if (e.activityTaskCancelRequestedEventAttributes) return ['cancel']
    const marker = e.markerRecordedEventAttributes
    if (marker?.markerName === 'core_patch') {
      const patch = JSON.parse(Buffer.from(marker.details['patch-data']!.payloads[0]!.data, 'base64').toString()) as { id: string }
      return [`patch:${patch.id}`]
    }
    if (marker?.markerName !== 'core_local_activity') return []
    const data = JSON.parse(Buffer.from(marker.details.data!.payloads[0]!.data, 'base64').toString()) as { activity_type: string }
    return [`local:${data.activity_type}`]
  })

const read = (name: string) => JSON.parse(readFileSync(new URL(`./fixtures/${name}.json`, import.meta.url), 'utf8')) as HistoryJSON

const FIXTURES = {
  // 0.3: store operations are local activities; dispatch is a regular one; the review step is not dispatched.
  // bump-chart's outcome came while its dispatch was pending: the workflow waited for the dispatch all the same.
  'loom-run-history': [
    'local:load',
    ...['local:beginStep', 'dispatch'],
    ...['local:beginStep', 'dispatch'],
    'local:beginStep',
    'local:finish',
  ],
  // bump-chart's outcome came while its dispatch was pending: behind the patch, the dispatch is cancelled and open-pr begins at once.
  'loom-run-history-dispatch-race': [
    'local:load',
    ...['local:beginStep', 'dispatch', `patch:${DISPATCH_RACE_PATCH}`, 'cancel'],
    ...['local:beginStep', 'dispatch'],
    'local:beginStep',
    'local:finish',
  ],
}

for (const [name, activities] of Object.entries(FIXTURES)) {
  describe(name, () => {
    let history: HistoryJSON
    beforeAll(() => {
      history = read(name)
    })

    it('is a completed run with signals, dispatches and a review', () => {
      const types = history.events.map((e) => e.eventType)
      expect(types.at(-1)).toBe('EVENT_TYPE_WORKFLOW_EXECUTION_COMPLETED')
      expect(types.filter((t) => t === 'EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED')).toHaveLength(4)
      expect(activitiesOf(history)).toEqual(activities)
    })

    it("has bump-chart's outcome reach the workflow while its dispatch was pending", () => {
      const types = history.events.map((e) => e.eventType)
      const signalled = types.indexOf('EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED')
      const dispatched = types.indexOf('EVENT_TYPE_ACTIVITY_TASK_COMPLETED')
      // A workflow task of its own ran between them: the code saw the outcome first, the path the patch is about.
      expect(signalled).toBeLessThan(dispatched)
      expect(types.slice(signalled, dispatched)).toContain('EVENT_TYPE_WORKFLOW_TASK_COMPLETED')
    })

    it('replays against the current loomRun with Worker.runReplayHistory', async () => {
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
  })
}
