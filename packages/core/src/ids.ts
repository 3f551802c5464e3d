import { LoomError } from './errors'
import { SlugSchema } from './schemas'
import { parse } from './validate'

/** Joins a migration id and a candidate id; the ids themselves never contain it. */
const RUN_ID_SEPARATOR = '__'

/**
 * The run id of a candidate in a migration: `{migrationId}__{candidateId}`. It is the
 * engine's workflow id, so one candidate never has two runs of one migration at once.
 * Throws an `invalid` LoomError naming the id that breaks the id rules.
 *
 * @example
 * runId('app-chart-migration', 'billing-api') // 'app-chart-migration__billing-api'
 */
export function runId(migrationId: string, candidateId: string): string {
  parse(SlugSchema, migrationId, 'migrationId')
  parse(SlugSchema, candidateId, 'candidateId')
  return joinRunId(migrationId, candidateId)
}

/** `runId` without the checks, for ids that were validated when they were stored. */
export function joinRunId(migrationId: string, candidateId: string): string {
  return `${migrationId}${RUN_ID_SEPARATOR}${candidateId}`
}

/**
 * Splits a run id back into its migration id and candidate id. Throws an `invalid`
 * LoomError (field `runId`) when the id does not parse; the HTTP API answers that with 404.
 *
 * @example
 * parseRunId('app-chart-migration__billing-api') // { migrationId: 'app-chart-migration', candidateId: 'billing-api' }
 */
export function parseRunId(id: string): { migrationId: string; candidateId: string } {
  if (typeof id !== 'string') throw new LoomError('invalid', 'runId: must be a string', { details: { field: 'runId' } })
  const at = id.indexOf(RUN_ID_SEPARATOR)
  if (at < 0) {
    throw new LoomError('invalid', `runId: "${clip(id)}" is not {migrationId}__{candidateId}`, {
      details: { field: 'runId' },
    })
  }
  const migrationId = id.slice(0, at)
  const candidateId = id.slice(at + RUN_ID_SEPARATOR.length)
  try {
    parse(SlugSchema, migrationId, 'migrationId')
    parse(SlugSchema, candidateId, 'candidateId')
  } catch (error) {
    const reason = error instanceof Error ? error.message : String(error)
    throw new LoomError('invalid', `runId: "${clip(id)}" does not parse (${reason})`, {
      details: { field: 'runId' },
    })
  }
  return { migrationId, candidateId }
}

function clip(s: string): string {
  return s.length > 80 ? `${s.slice(0, 80)}…` : s
}
