import { describe, expect, it } from 'vitest'
import { countsOf, totalOf } from './status'

describe('countsOf and totalOf', () => {
  it('counts each status and the failed among the not started, which the total does not count twice', () => {
    const counts = countsOf((s) => ({ not_started: 5, queued: 2, running: 1, completed: 7 })[s], 3)
    expect(counts).toEqual({ not_started: 5, queued: 2, running: 1, completed: 7, failed: 3 })
    expect(totalOf(counts)).toBe(15)
  })

  it('is all zeros when given nothing', () => {
    expect(countsOf()).toEqual({ not_started: 0, queued: 0, running: 0, completed: 0, failed: 0 })
  })
})
