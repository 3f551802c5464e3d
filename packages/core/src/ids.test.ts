import { describe, expect, it } from 'vitest'
import { LoomError } from './errors'
import { parseRunId, runId } from './ids'

const invalid = (fn: () => unknown) => {
  try {
    fn()
  } catch (error) {
    expect(LoomError.is(error, 'invalid')).toBe(true)
    return (error as LoomError).message
  }
  throw new Error('expected an invalid LoomError')
}

describe('runId', () => {
  it('joins a migration id and a candidate id with __', () => {
    expect(runId('app-chart-migration', 'billing-api')).toBe('app-chart-migration__billing-api')
    expect(runId('A.b_c-1', 'x')).toBe('A.b_c-1__x')
  })

  it('accepts ids of exactly 200 characters and refuses 201', () => {
    expect(runId('m'.repeat(200), 'c')).toHaveLength(203)
    expect(invalid(() => runId('m'.repeat(201), 'c'))).toBe('migrationId: must be at most 200 characters')
  })

  it.each([
    ['', 'must not be empty'],
    ['a__b', 'must not contain "__"'],
    ['a/b', 'may only contain A-Z a-z 0-9 . _ -'],
    ['a b', 'may only contain A-Z a-z 0-9 . _ -'],
    ['café', 'may only contain A-Z a-z 0-9 . _ -'],
    ['_a', 'must not start or end with "_"'],
    ['a_', 'must not start or end with "_"'],
    ['.', 'must not be "." or ".."'],
    ['..', 'must not be "." or ".."'],
  ])('refuses the candidate id %j, naming the field and the reason', (id, reason) => {
    expect(invalid(() => runId('app-chart', id))).toBe(`candidateId: ${reason}`)
  })

  it('refuses a non-string id', () => {
    expect(invalid(() => runId(42 as unknown as string, 'x'))).toBe('migrationId: must be a string')
  })

  it('cannot produce one run id from two different pairs', () => {
    // Without the rule on leading and trailing "_", ('a_', 'b') and ('a', '_b') would both give 'a___b'.
    expect(() => runId('a_', 'b')).toThrow()
    expect(() => runId('a', '_b')).toThrow()
  })
})

describe('parseRunId', () => {
  it('splits a run id back into its ids', () => {
    expect(parseRunId('app-chart-migration__billing-api')).toEqual({ migrationId: 'app-chart-migration', candidateId: 'billing-api' })
    expect(parseRunId(runId('a_b.c', 'd-e_f'))).toEqual({ migrationId: 'a_b.c', candidateId: 'd-e_f' })
  })

  it.each(['no-separator', '', '__x', 'x__', 'a__b__c', 'a___b', 'a/b__c', `${'m'.repeat(201)}__c`])(
    'refuses %j as an invalid runId',
    (id) => {
      expect(invalid(() => parseRunId(id))).toMatch(/^runId: /)
    },
  )
})
