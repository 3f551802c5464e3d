import { describe, expect, it } from 'vitest'
import type { StepDefinition, StepResult } from '@loom/core'
import { isFinal, runStats, timeline } from './timeline'

const steps: StepDefinition[] = [
  { name: 'create-chart', workerApp: 'charts' },
  { name: 'switch', workerApp: 'charts' },
  { name: 'verify', workerApp: 'charts', config: { type: 'manual-review', instructions: 'Check Argo CD' } },
]
const result = (stepName: string, success: boolean, metadata?: Record<string, string>): StepResult => ({
  stepName,
  candidate: { id: 'billing-api' },
  success,
  ...(metadata ? { metadata } : {}),
})

describe('timeline', () => {
  it('marks the first unfinished step of a running run as active, waiting for its worker', () => {
    const t = timeline(steps, [result('create-chart', true, { phase: 'merged', prUrl: 'https://pr/1' })], 'running')
    expect(t.map((s) => [s.definition.name, s.state, s.active])).toEqual([
      ['create-chart', 'merged', false],
      ['switch', 'waiting', true],
      ['verify', 'pending', false],
    ])
    expect(t[0]!.prUrl).toBe('https://pr/1')
  })

  it('shows progress phases: a pull request open, a review awaited with its instructions', () => {
    const t = timeline(
      steps,
      [
        result('create-chart', true, { phase: 'merged' }),
        result('switch', true, { phase: 'merged' }),
        // As API 0.2 records a review that waits: success true, the phase saying it is not over.
        result('verify', true, { phase: 'awaiting_review', instructions: 'Check Argo CD' }),
      ],
      'running',
    )
    expect(t[2]).toMatchObject({ state: 'awaiting_review', active: true, manualReview: true, instructions: 'Check Argo CD' })
    expect(runStats(t)).toMatchObject({ completed: 2, failed: 0 })
    const open = timeline(steps, [result('create-chart', false, { phase: 'open', prUrl: 'https://pr/2' })], 'running')
    expect(open[0]).toMatchObject({ state: 'pr_open', active: true, prUrl: 'https://pr/2' })
  })

  it('shows a failed step as failed, with its other metadata as details', () => {
    const t = timeline(steps, [result('create-chart', false, { error: 'dispatch to worker app charts failed' })], 'failed')
    expect(t[0]).toMatchObject({ state: 'failed', active: false, details: [['error', 'dispatch to worker app charts failed']] })
    expect(t.slice(1).map((s) => s.state)).toEqual(['pending', 'pending'])
  })

  it('marks no step active once the run is completed, and counts the run figures', () => {
    const t = timeline(
      steps,
      [
        result('create-chart', true, { phase: 'merged', prUrl: 'https://pr/1' }),
        result('switch', true, { phase: 'merged', prUrl: 'https://pr/2' }),
        result('verify', true, { review: 'approved' }),
      ],
      'completed',
    )
    expect(t.some((s) => s.active)).toBe(false)
    expect(runStats(t)).toEqual({ total: 3, completed: 3, failed: 0, pullRequests: 2, merged: 2 })
  })

  it('tells progress from outcomes by the conventional phase', () => {
    expect(isFinal(result('a', false, { phase: 'open' }))).toBe(false)
    expect(isFinal(result('a', true, { phase: 'awaiting_review' }))).toBe(false)
    expect(isFinal(result('a', false, { phase: 'awaiting_review' }))).toBe(false)
    expect(isFinal(result('a', true, { phase: 'in_progress' }))).toBe(false)
    expect(isFinal(result('a', true, { phase: 'merged' }))).toBe(true)
    expect(isFinal(result('a', false))).toBe(true)
  })
})
