import { describe, expect, it } from 'vitest'
import { LAST_OUTCOMES, type LastAttempt } from '@loom/core'
import {
  actorName,
  actorPhrase,
  describeActivity,
  describeLastAttempt,
  errorOf,
  formatDuration,
  isLastOutcome,
  lastAttemptDetail,
  newestFirst,
  OUTCOME_LABEL,
  truncate,
} from './history'

describe('formatDuration', () => {
  it('says short durations in ms or seconds, longer ones in the two largest units', () => {
    expect(formatDuration(0)).toBe('0 ms')
    expect(formatDuration(850.4)).toBe('850 ms')
    expect(formatDuration(4_200)).toBe('4.2 s')
    expect(formatDuration(42_000)).toBe('42 s')
    expect(formatDuration(60_000)).toBe('1 min')
    expect(formatDuration(185_000)).toBe('3 min 5 s')
    expect(formatDuration(2 * 3_600_000 + 10 * 60_000 + 59_000)).toBe('2 h 10 min')
    expect(formatDuration(3 * 86_400_000)).toBe('3 d')
    expect(formatDuration(3 * 86_400_000 + 4 * 3_600_000)).toBe('3 d 4 h')
  })

  it('shows a dash for what cannot be a duration', () => {
    expect([undefined, -1, Number.NaN, Number.POSITIVE_INFINITY].map(formatDuration)).toEqual(['—', '—', '—', '—'])
  })
})

describe('actorName', () => {
  it('names operators and workers by name and Loom itself as Loom', () => {
    expect(actorName({ kind: 'operator', name: 'alice' })).toBe('alice')
    expect(actorName({ kind: 'operator', name: 'anonymous' })).toBe('anonymous')
    expect(actorName({ kind: 'worker', name: 'charts' })).toBe('charts')
    expect(actorName({ kind: 'system', name: 'loom' })).toBe('Loom')
    expect(actorName(undefined)).toBe('unknown')
  })
})

describe('errorOf and newestFirst', () => {
  it('reads only a non-empty text error', () => {
    expect(errorOf({ error: 'helm lint failed' })).toBe('helm lint failed')
    expect(errorOf({ error: '  ' })).toBeUndefined()
    expect(errorOf({ error: { nested: true } })).toBeUndefined()
    expect(errorOf({})).toBeUndefined()
  })

  it('orders attempts newest first without changing the list given', () => {
    const attempts = [{ attempt: 1 }, { attempt: 3 }, { attempt: 2 }]
    expect(newestFirst(attempts).map((a) => a.attempt)).toEqual([3, 2, 1])
    expect(attempts.map((a) => a.attempt)).toEqual([1, 3, 2])
  })

  it('has a label for every outcome', () => {
    expect(OUTCOME_LABEL.dequeued).toBe('Removed from queue')
    expect(Object.keys(OUTCOME_LABEL).sort()).toEqual(['cancelled', 'completed', 'dequeued', 'failed', 'queued', 'rejected', 'running'])
  })
})

describe('describeActivity', () => {
  const entry = (type: string, detail: Record<string, unknown> = {}, candidateId: string | null = 'checkout') => ({
    type,
    detail,
    ...(candidateId ? { candidateId } : {}),
  })

  it('says what a transition did to which candidate, with the reason of a cancel', () => {
    expect(describeActivity(entry('run.queue'))).toBe('queued checkout')
    expect(describeActivity(entry('run.execute'))).toBe('executed checkout')
    expect(describeActivity(entry('run.dequeue'))).toBe('removed checkout from the queue')
    expect(describeActivity(entry('run.cancel', { reason: 'wrong team' }))).toBe('cancelled checkout (reason: wrong team)')
    expect(describeActivity(entry('run.cancel'))).toBe('cancelled checkout')
    expect(describeActivity(entry('run.unexecute'))).toBe('put checkout back in the queue')
    expect(describeActivity(entry('run.complete'))).toBe('checkout completed')
    expect(describeActivity(entry('run.fail'))).toBe('checkout failed')
    expect(describeActivity(entry('run.fail', { error: 'timed out' }))).toBe('checkout failed: timed out')
  })

  it('says which step was dispatched or reported, and how it went', () => {
    expect(describeActivity(entry('step.dispatched', { step: 0 }))).toBe('dispatched step 1 of checkout')
    expect(describeActivity(entry('step.reported', { stepName: 'bump', success: true, done: true }))).toBe(
      'reported step bump of checkout: done',
    )
    expect(describeActivity(entry('step.reported', { stepName: 'bump', success: true, done: false, phase: 'pr_open' }))).toBe(
      'reported step bump of checkout: pr open',
    )
    expect(describeActivity(entry('step.reported', { stepName: 'bump', success: false, done: true, error: 'lint failed' }))).toBe(
      'reported step bump of checkout: failed (lint failed)',
    )
  })

  it('says what happened to the migration, and something for a type it does not know', () => {
    expect(describeActivity(entry('migration.announced', {}, null))).toBe('announced the migration')
    expect(describeActivity(entry('candidates.submitted', { count: 1 }, null))).toBe('submitted 1 candidate')
    expect(describeActivity(entry('candidates.submitted', { count: 12 }, null))).toBe('submitted 12 candidates')
    expect(describeActivity(entry('rollout.paused', {}, null))).toBe('rollout paused a candidate')
  })
})

describe('last attempts', () => {
  const worker = { kind: 'worker', name: 'app-charts' } as const
  const alice = { kind: 'operator', name: 'alice' } as const
  const at = '2026-11-30T10:00:00.000Z'
  const failed: LastAttempt = { attempt: 2, outcome: 'failed', at, by: worker, step: 'create-app-chart', error: 'helm lint failed' }
  const rejected: LastAttempt = { attempt: 1, outcome: 'rejected', at, by: alice, step: 'verify-sync', reason: 'prod is Degraded' }
  const cancelled: LastAttempt = { attempt: 3, outcome: 'cancelled', at, by: alice, reason: 'wrong team' }
  const dequeued: LastAttempt = { attempt: 1, outcome: 'dequeued', at, by: alice }

  it('names every outcome in plain words, in core order, and knows only those', () => {
    expect(LAST_OUTCOMES).toEqual(['failed', 'rejected', 'cancelled', 'dequeued'])
    expect(LAST_OUTCOMES.map((o) => OUTCOME_LABEL[o])).toEqual(['Failed', 'Rejected', 'Cancelled', 'Removed from queue'])
    expect(LAST_OUTCOMES.every(isLastOutcome)).toBe(true)
    expect(['completed', 'not_started', '', 'toString', null, undefined].some((v) => isLastOutcome(v))).toBe(false)
  })

  it('says who, with the kind when it was a worker', () => {
    expect(actorPhrase(worker)).toBe('worker app-charts')
    expect(actorPhrase(alice)).toBe('alice')
    expect(actorPhrase({ kind: 'system', name: 'loom' })).toBe('Loom')
  })

  it('gives a list the step and its error, or the reason', () => {
    expect(lastAttemptDetail(failed)).toBe('create-app-chart: helm lint failed')
    expect(lastAttemptDetail(rejected)).toBe('verify-sync: prod is Degraded')
    expect(lastAttemptDetail(cancelled)).toBe('wrong team')
    expect(lastAttemptDetail({ ...failed, error: undefined })).toBe('create-app-chart')
    expect(lastAttemptDetail(dequeued)).toBeUndefined()
  })

  it('tells the run page what ended the attempt, why and by whom', () => {
    expect(describeLastAttempt(failed)).toEqual({
      what: 'Last attempt failed at step create-app-chart',
      why: 'helm lint failed',
      by: 'worker app-charts',
    })
    expect(describeLastAttempt(rejected)).toEqual({
      what: 'Last attempt was rejected at step verify-sync',
      why: 'prod is Degraded',
      by: 'alice',
    })
    expect(describeLastAttempt(cancelled)).toEqual({ what: 'Last attempt was cancelled', why: 'wrong team', by: 'alice' })
    expect(describeLastAttempt(dequeued)).toEqual({ what: 'Last attempt was removed from the queue', by: 'alice' })
    expect(describeLastAttempt({ attempt: 1, outcome: 'failed', at, by: { kind: 'system', name: 'loom' } })).toEqual({
      what: 'Last attempt failed',
      by: 'Loom',
    })
  })
})

describe('truncate', () => {
  it('keeps text that fits and cuts the rest to the limit, ending in an ellipsis', () => {
    expect(truncate('helm lint failed', 16)).toBe('helm lint failed')
    expect(truncate('helm lint failed', 10)).toBe('helm lint…')
    expect(truncate('helm lint failed', 10)).toHaveLength(10)
    // No space is left before the ellipsis.
    expect(truncate('helm lint failed', 6)).toBe('helm…')
  })

  it('counts and cuts by character, never inside a surrogate pair', () => {
    expect(truncate('🔥🔥🔥', 3)).toBe('🔥🔥🔥')
    expect(truncate('🔥🔥🔥🔥', 3)).toBe('🔥🔥…')
  })
})
