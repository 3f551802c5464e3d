import { LoomError } from '../errors'
import { joinRunId, parseRunId } from '../ids'
import type {
  DryRunner,
  Engine,
  MigrationRecord,
  MigrationStore,
  MigrationSummary,
  RunRecord,
  StepDispatcher,
  TransitionRequest,
} from '../ports'
import { STATUS_RULES, type StatusAction } from '../rules'
import type { Limits } from '../limits'
import { type LimitedSchemas, SlugSchema } from '../schemas'
import { parse } from '../validate'

/** What every part of `createLoom` works with: the ports and the clock. */
export interface LoomContext {
  store: MigrationStore
  engine: Engine
  dispatcher: StepDispatcher
  dryRunner: DryRunner
  onError: (error: unknown) => void
  now: () => Date
  /** This process's name as the owner of the runs it executes. */
  instanceId: string
  /** The deadline of a step without its own `config.timeout`, in ms. */
  stepTimeoutMs: number
  /** How long the activity log keeps an entry, in ms; undefined keeps it for ever. */
  activityRetentionMs: number | undefined
  /** How long an uncommitted discovery lasts after it was opened or last given a part, in ms. */
  discoveryTtlMs: number
  /** How much one request may ask. */
  limits: Readonly<Limits>
  /** The schemas that judge inputs, bounded by `limits`. */
  schemas: LimitedSchemas
  /** Throws `invalid` naming `workerUrl` unless this deployment calls `url`. */
  checkWorkerUrl(url: string): void
  /** The current time as ISO 8601 UTC. */
  at(): string
  /** The migration, or `not_found`; `invalid` when the id breaks the id rules. */
  requireMigration(id: string): Promise<MigrationSummary>
  /** The migration's record alone (steps, owner), or `not_found`: what a check of its owner or steps needs. */
  requireRecord(id: string): Promise<MigrationRecord>
  /** The ids of a run id from a path; an id that does not parse names no run, so it is `not_found`. */
  runOf(runId: string): { migrationId: string; candidateId: string }
  /** Throws `not_found` for the migration when it is missing, else for the candidate. */
  notFound(migrationId: string, candidateId: string): Promise<never>
  /** Applies one action of the status rules as a compare-and-set, turning a refusal into the contract's error. */
  move(action: StatusAction, migrationId: string, candidateId: string, options?: MoveOptions): Promise<RunRecord>
}

/** What a move may add to its transition request. */
type MoveOptions = Pick<TransitionRequest, 'attempt' | 'owner' | 'resume' | 'by' | 'reason'>

export function loomContext(
  deps: Omit<LoomContext, 'at' | 'requireMigration' | 'requireRecord' | 'runOf' | 'notFound' | 'move'>,
): LoomContext {
  const { store, now } = deps
  const at = () => now().toISOString()

  const found = <M>(id: string, migration: M | undefined): M => {
    if (!migration) throw new LoomError('not_found', `migration ${id} not found`, { details: { migrationId: id } })
    return migration
  }
  const requireMigration = async (id: string): Promise<MigrationSummary> => {
    parse(SlugSchema, id, 'migrationId')
    return found(id, await store.getMigration(id))
  }
  const requireRecord = async (id: string): Promise<MigrationRecord> => {
    parse(SlugSchema, id, 'migrationId')
    return found(id, await store.getMigrationRecord(id))
  }

  const runOf = (runId: string) => {
    try {
      return parseRunId(runId)
    } catch (error) {
      throw new LoomError('not_found', `run ${runId} not found: ${(error as Error).message}`, { details: { runId } })
    }
  }

  const notFound = async (migrationId: string, candidateId: string): Promise<never> => {
    await requireMigration(migrationId)
    throw new LoomError('not_found', `candidate ${candidateId} not found in migration ${migrationId}`, {
      details: { migrationId, candidateId },
    })
  }

  const move = async (action: StatusAction, migrationId: string, candidateId: string, options: MoveOptions = {}) => {
    const result = await store.transition({ migrationId, candidateId, action, at: at(), ...options })
    if (!result.ok) {
      if (result.reason === 'not_found') return notFound(migrationId, candidateId)
      throw new LoomError(
        'conflict',
        `cannot ${action} ${joinRunId(migrationId, candidateId)}: the candidate is ${result.status}` +
          `; ${action} is allowed from ${STATUS_RULES[action].from.join(' or ')}`,
        { details: { status: result.status } },
      )
    }
    return result.run
  }

  return { ...deps, at, requireMigration, requireRecord, runOf, notFound, move }
}
