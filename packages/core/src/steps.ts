import type { StepDefinition } from './schemas'

/** The `config.type` of a step that waits for an operator's approve or reject instead of a worker. */
export const MANUAL_REVIEW = 'manual-review'

/** True for a step that is not dispatched but held for an operator's decision. */
export function isManualReview(step: StepDefinition): boolean {
  return step.config?.type === MANUAL_REVIEW
}

/** The `eventName` of a step's dispatch request: the event its run waits for. */
export function stepEventName(stepName: string): string {
  return `step-completed:${stepName}`
}
