import { LoomError } from '@loom/core'
import { describe, expect, it } from 'vitest'
import { defineMigration, isPending, pending, type MigrationSpec } from './define-migration'

const base = (): MigrationSpec => ({
  id: 'app-chart',
  name: 'App chart',
  steps: [
    { name: 'edit', run: () => ({ metadata: { prUrl: 'u' } }) },
    { name: 'review', config: { type: 'manual-review', instructions: 'look' } },
  ],
  discover: () => [],
})

function invalidField(spec: unknown): string | undefined {
  try {
    defineMigration(spec as MigrationSpec)
  } catch (error) {
    if (LoomError.is(error, 'invalid')) return error.details?.field as string
    throw error
  }
  return undefined
}

describe('defineMigration', () => {
  it('returns the migration, frozen, with its steps in order', () => {
    const migration = defineMigration(base())
    expect(migration.defined).toBe(true)
    expect(migration.steps.map((s) => s.name)).toEqual(['edit', 'review'])
    expect(Object.isFrozen(migration)).toBe(true)
  })

  it('refuses a definition that breaks a rule, naming the field', () => {
    expect(invalidField({ ...base(), id: 'a__b' })).toBe('id')
    expect(invalidField({ ...base(), name: '' })).toBe('name')
    expect(invalidField({ ...base(), discover: undefined })).toBe('discover')
    expect(invalidField({ ...base(), steps: [] })).toBe('steps')
    expect(
      invalidField({
        ...base(),
        steps: [
          { name: 'a', run: () => {} },
          { name: 'a', run: () => {} },
        ],
      }),
    ).toBe('steps.1.name')
    expect(invalidField({ ...base(), steps: [{ name: 'a' }] })).toBe('steps.0.run')
    expect(invalidField({ ...base(), steps: [{ name: 'a', run: () => {}, workerApp: 'x y' }] })).toBe('steps.0.workerApp')
    expect(invalidField({ ...base(), steps: [{ name: 'a', config: { type: 'manual-review' }, run: () => {} }] })).toBe('steps.0.run')
    expect(invalidField({ ...base(), steps: [{ name: 'a', run: () => {}, dryRun: 'no' }] })).toBe('steps.0.dryRun')
  })
})

describe('pending', () => {
  it('marks an outcome reported later, with or without progress metadata', () => {
    expect(pending()).toEqual({ pending: true })
    expect(pending({ prUrl: 'u' })).toEqual({ pending: true, metadata: { prUrl: 'u' } })
    expect(isPending(pending())).toBe(true)
    expect(isPending({ metadata: { a: 'b' } })).toBe(false)
    expect(isPending(undefined)).toBe(false)
  })
})
