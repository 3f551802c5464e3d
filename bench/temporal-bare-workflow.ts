/**
 * The baseline for bench/temporal-runs.ts: a bare Temporal workflow with the same
 * dispatch-and-wait pattern as `loomRun` (an activity per step, then a signal from the
 * worker), then marks the run completed the way `loomRun` does (a local activity), and
 * none of Loom's store, guards or progress.
 */
import { condition, defineSignal, proxyActivities, proxyLocalActivities, setHandler, workflowInfo } from '@temporalio/workflow'

export const bareStepDone = defineSignal<[string]>('stepDone')

const { dispatch } = proxyActivities<{ dispatch(workflowId: string, step: string): Promise<void> }>({
  startToCloseTimeout: '60 seconds',
  retry: { initialInterval: '500 milliseconds', backoffCoefficient: 2, maximumAttempts: 4 },
})

const { finish } = proxyLocalActivities<{ finish(workflowId: string): Promise<void> }>({ startToCloseTimeout: '30 seconds' })

export async function bareRun(steps: string[]): Promise<void> {
  const done = new Set<string>()
  setHandler(bareStepDone, (step) => void done.add(step))
  for (const step of steps) {
    await dispatch(workflowInfo().workflowId, step)
    await condition(() => done.has(step))
  }
  await finish(workflowInfo().workflowId)
}
