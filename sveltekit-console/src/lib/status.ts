/** Candidate statuses in lifecycle order (core's `CANDIDATE_STATUSES`), with the words the console shows for them. */
import { CANDIDATE_STATUSES, type CandidateStatus, type StatusCounts } from '@loom/core'

export const STATUSES: readonly CandidateStatus[] = CANDIDATE_STATUSES

export const STATUS_LABEL: Record<CandidateStatus, string> = {
  not_started: 'Not started',
  queued: 'Queued',
  running: 'Running',
  completed: 'Completed',
}

export function isStatus(value: string | null | undefined): value is CandidateStatus {
  return value != null && (STATUSES as readonly string[]).includes(value)
}

export function totalOf(counts: StatusCounts): number {
  return STATUSES.reduce((sum, s) => sum + counts[s], 0)
}

/**
 * Counts from one number per status, in lifecycle order, and the failed ones among the not
 * started; zero for each when none are given.
 */
export function countsOf(numbers: (status: CandidateStatus) => number = () => 0, failed = 0): StatusCounts {
  return { ...(Object.fromEntries(STATUSES.map((s) => [s, numbers(s)])) as Omit<StatusCounts, 'failed'>), failed }
}

/** Formats a count with thousands separators, the same on server and browser. */
export function formatCount(n: number): string {
  return n.toLocaleString('en-US')
}

/** "3 minutes ago", from an ISO timestamp; `now` is passed so server and browser agree. */
export function relativeTime(iso: string, now: number = Date.now()): string {
  const then = Date.parse(iso)
  if (Number.isNaN(then)) return iso
  const seconds = Math.round((now - then) / 1000)
  const abs = Math.abs(seconds)
  const units: Array<[number, Intl.RelativeTimeFormatUnit]> = [
    [60, 'second'],
    [60, 'minute'],
    [24, 'hour'],
    [30, 'day'],
    [12, 'month'],
    [Number.POSITIVE_INFINITY, 'year'],
  ]
  let value = abs
  for (const [size, unit] of units) {
    if (value < size) return new Intl.RelativeTimeFormat('en', { numeric: 'auto' }).format(seconds < 0 ? value : -value, unit)
    value = Math.floor(value / size)
  }
  return iso
}
