import type { StepDefinition } from './schemas'

/** The longest step deadline accepted: 90 days. */
export const MAX_STEP_TIMEOUT_MS = 90 * 24 * 3600_000

const UNIT_MS = { s: 1000, m: 60_000, h: 3600_000, d: 24 * 3600_000 } as const

/**
 * A duration as written in `config.timeout` ("90s", "30m", "2h", "7d") in milliseconds, or
 * undefined when `text` is not a positive whole number of seconds, minutes, hours or days.
 */
export function parseDuration(text: string): number | undefined {
  const match = /^([1-9][0-9]{0,7})(s|m|h|d)$/.exec(text)
  if (!match) return undefined
  return Number(match[1]) * UNIT_MS[match[2] as keyof typeof UNIT_MS]
}

/** How long step `step` may go without its final report: its `config.timeout`, or `defaultMs`. */
export function stepTimeoutMs(step: StepDefinition, defaultMs: number): number {
  const own = step.config?.timeout
  return (own !== undefined && parseDuration(own)) || defaultMs
}

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
