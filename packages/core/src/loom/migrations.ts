import { LoomError } from '../errors'
import { joinRunId } from '../ids'
import type { MigrationSummary } from '../ports'
import { type Actor, checkOwner } from '../actors'
import {
  CandidateQuerySchema,
  SlugSchema,
  type Candidate,
  type MigrationAnnouncement,
  type RegisteredMigration,
  type StepDefinition,
} from '../schemas'
import { isManualReview } from '../steps'
import { parse } from '../validate'
import type { LoomContext } from './context'
import type { Loom } from './index'
import { candidateWithStatus, overview, registeredMigration, type MigrationOverview } from './shapes'

type MigrationMethods = Pick<
  Loom,
  | 'announce'
  | 'register'
  | 'listMigrations'
  | 'getMigration'
  | 'deleteMigration'
  | 'submitCandidates'
  | 'patchCandidates'
  | 'openDiscovery'
  | 'addToDiscovery'
  | 'commitDiscovery'
  | 'listCandidates'
  | 'searchCandidates'
  | 'getCandidate'
  | 'dryRun'
>

/** Migrations and their candidates: announce, register, list, delete, submit, search, dry run, as `actor`. */
export function migrationMethods(ctx: LoomContext, actor: Actor): MigrationMethods {
  const { store, at, requireMigration, notFound, schemas } = ctx

  /** The owner never changes once set, so checking it before the write cannot race another worker. */
  const ownOnly = async (migrationId: string, what: string) => {
    if (actor.kind === 'worker') checkOwner(actor, await ctx.requireRecord(migrationId), what)
  }

  /** `not_found` naming the discovery, or the migration when that is what is missing. */
  const discoveryNotFound = async (migrationId: string, discoveryId: string): Promise<never> => {
    await requireMigration(migrationId)
    throw new LoomError(
      'not_found',
      `discovery ${discoveryId} of migration ${migrationId} not found: it was committed, expired, or never opened; open another`,
      { details: { migrationId, discoveryId } },
    )
  }

  const assemble = async (summary: MigrationSummary): Promise<RegisteredMigration> => {
    const page = await store.listCandidates(summary.id)
    if (!page) throw new LoomError('not_found', `migration ${summary.id} not found`)
    return registeredMigration(summary, page.candidates)
  }

  const upsert = async (definition: Omit<MigrationAnnouncement, 'candidates'>, candidates: Candidate[] | undefined) => {
    const { id, name, description, steps, workerUrl } = definition
    if (workerUrl !== undefined) ctx.checkWorkerUrl(workerUrl)
    if (actor.kind === 'worker') keepsReviews(actor, await store.getMigration(id), steps)
    // A worker's announce claims the migration in the same atomic write; one owned by another worker is left as it was.
    const claimant = actor.kind === 'worker' ? actor.name : undefined
    const detail: Record<string, unknown> = { name, steps: steps.map((s) => s.name) }
    if (workerUrl !== undefined) detail.workerUrl = workerUrl
    if (candidates) detail.candidates = candidates.length
    const stored = await store.upsertMigration(
      { id, name, steps, ...(description === undefined ? {} : { description }), ...(workerUrl === undefined ? {} : { workerUrl }) },
      candidates,
      claimant,
      { at: at(), actor, type: 'migration.announced', migrationId: id, detail },
    )
    checkOwner(actor, stored, 'announce')
    return assemble(await requireMigration(id))
  }

  async function listMigrations(): Promise<RegisteredMigration[]>
  async function listMigrations(options: { summary: true }): Promise<MigrationOverview[]>
  async function listMigrations(options?: { summary?: boolean }): Promise<RegisteredMigration[] | MigrationOverview[]>
  async function listMigrations(options: { summary?: boolean } = {}) {
    const summaries = await store.listMigrations()
    if (options.summary) return summaries.map(overview)
    return Promise.all(summaries.map(assemble))
  }

  const methods: MigrationMethods = {
    async announce(input) {
      const { candidates, ...definition } = parse(schemas.MigrationAnnouncement, input, '')
      return upsert(definition, candidates)
    },

    async register(input) {
      const { candidates, ...definition } = parse(schemas.RegisterMigrationRequest, input, '')
      return upsert({ ...definition, id: generateId(definition.name) }, candidates)
    },

    listMigrations,

    async getMigration(id) {
      return assemble(await requireMigration(id))
    },

    async deleteMigration(id) {
      parse(SlugSchema, id, 'migrationId')
      const outcome = await store.deleteMigration(id, { at: at(), actor, type: 'migration.deleted', migrationId: id, detail: {} })
      if (outcome === 'not_found') throw new LoomError('not_found', `migration ${id} not found`)
      if (outcome === 'running') {
        throw new LoomError('conflict', `migration ${id} has running candidates; cancel them first`, { details: { status: 'running' } })
      }
    },

    async submitCandidates(migrationId, input) {
      parse(SlugSchema, migrationId, 'migrationId')
      const candidates = parse(schemas.CandidateList, input, 'candidates')
      // The owner never changes once set, so checking it before the write cannot race another worker.
      if (actor.kind === 'worker') checkOwner(actor, await requireMigration(migrationId), 'submit candidates to')
      const activity = { at: at(), actor, type: 'candidates.submitted' as const, migrationId, detail: { count: candidates.length } }
      if (!(await store.replaceCandidates(migrationId, candidates, activity))) await requireMigration(migrationId)
    },

    async patchCandidates(migrationId, input) {
      parse(SlugSchema, migrationId, 'migrationId')
      const { upsert = [], remove = [] } = parse(schemas.PatchCandidatesRequest, input, '')
      await ownOnly(migrationId, 'patch candidates of')
      const activity = {
        at: at(),
        actor,
        type: 'candidates.patched' as const,
        migrationId,
        detail: { upserted: upsert.length, removed: remove.length },
      }
      if (!(await store.patchCandidates(migrationId, { upsert, remove }, activity))) await requireMigration(migrationId)
    },

    async openDiscovery(migrationId) {
      parse(SlugSchema, migrationId, 'migrationId')
      await ownOnly(migrationId, 'discover candidates of')
      const discovery = {
        id: crypto.randomUUID(),
        migrationId,
        expiresAt: new Date(ctx.now().getTime() + ctx.discoveryTtlMs).toISOString(),
      }
      if (!(await store.openDiscovery(discovery))) await requireMigration(migrationId)
      return { discoveryId: discovery.id, expiresAt: discovery.expiresAt }
    },

    async addToDiscovery(migrationId, discoveryId, input) {
      parse(SlugSchema, migrationId, 'migrationId')
      const candidates = parse(schemas.CandidateList, input, 'candidates')
      if (!DISCOVERY_ID.test(discoveryId)) return discoveryNotFound(migrationId, discoveryId)
      await ownOnly(migrationId, 'discover candidates of')
      const now = ctx.now().getTime()
      const staged = await store.stageCandidates({
        migrationId,
        discoveryId,
        candidates,
        at: new Date(now).toISOString(),
        expiresAt: new Date(now + ctx.discoveryTtlMs).toISOString(),
        limit: ctx.limits.discoveryCandidates,
      })
      if (staged.outcome === 'not_found') return discoveryNotFound(migrationId, discoveryId)
      if (staged.outcome === 'duplicate') {
        const field = `candidates.${candidates.findIndex((c) => c.id === staged.candidateId)}.id`
        throw new LoomError(
          'invalid',
          `${field}: candidate ${staged.candidateId} was sent in an earlier part of discovery ${discoveryId}`,
          {
            details: { field, candidateId: staged.candidateId },
          },
        )
      }
      if (staged.outcome === 'too_many') {
        const max = ctx.limits.discoveryCandidates
        throw new LoomError(
          'invalid',
          `candidates: ${staged.total} staged and ${candidates.length} more are more than the limit of ${max} for one discovery (limits.discoveryCandidates)`,
          { details: { field: 'candidates' } },
        )
      }
    },

    async commitDiscovery(migrationId, discoveryId) {
      parse(SlugSchema, migrationId, 'migrationId')
      if (!DISCOVERY_ID.test(discoveryId)) return discoveryNotFound(migrationId, discoveryId)
      await ownOnly(migrationId, 'submit candidates to')
      const now = at()
      // The store sets the count: only it knows how many were staged.
      const activity = { at: now, actor, type: 'candidates.submitted' as const, migrationId, detail: { discoveryId, count: 0 } }
      if ((await store.commitDiscovery(migrationId, discoveryId, now, activity)) === 'not_found') {
        return discoveryNotFound(migrationId, discoveryId)
      }
    },

    async listCandidates(migrationId) {
      return (await methods.searchCandidates(migrationId, {})).candidates
    },

    async searchCandidates(migrationId, input) {
      parse(SlugSchema, migrationId, 'migrationId')
      const query = parse(CandidateQuerySchema, input, 'query')
      if (query.after !== undefined && query.offset !== undefined) {
        throw new LoomError('invalid', 'query.after: a page starts after a cursor or at an offset, not both', {
          details: { field: 'query.after' },
        })
      }
      const page = await store.listCandidates(migrationId, query)
      if (!page) throw new LoomError('not_found', `migration ${migrationId} not found`)
      // A cursor the store did not find: tell why the page is empty (the candidate may have been removed since).
      if (query.after !== undefined && page.candidates.length === 0 && !(await store.getCandidate(migrationId, query.after))) {
        throw new LoomError('invalid', `query.after: migration ${migrationId} has no candidate ${query.after}; start again without after`, {
          details: { field: 'query.after' },
        })
      }
      return page
    },

    async getCandidate(migrationId, candidateId) {
      parse(SlugSchema, migrationId, 'migrationId')
      parse(SlugSchema, candidateId, 'candidateId')
      const found = await store.getCandidate(migrationId, candidateId)
      if (!found) return notFound(migrationId, candidateId)
      return candidateWithStatus(found.candidate, found.run)
    },

    async dryRun(migrationId, candidateId) {
      parse(SlugSchema, migrationId, 'migrationId')
      parse(SlugSchema, candidateId, 'candidateId')
      const migration = await requireMigration(migrationId)
      const found = await store.getCandidate(migrationId, candidateId)
      if (!found) return notFound(migrationId, candidateId)
      const workerApps = [...new Set(migration.steps.map((s) => s.workerApp))]
      try {
        const { workerUrl, owner } = migration
        return await ctx.dryRunner.dryRun(
          { workerApps, ...(workerUrl ? { workerUrl } : {}), ...(owner ? { owner } : {}) },
          {
            migrationId,
            candidate: found.candidate,
            steps: migration.steps,
          },
        )
      } catch (error) {
        if (LoomError.is(error)) throw error
        throw new LoomError('unavailable', `dry run of ${joinRunId(migrationId, candidateId)} failed: ${(error as Error).message}`, {
          cause: error,
        })
      }
    },
  }
  return methods
}

/**
 * A manual review is the operators' gate on a migration: a worker re-announcing it may add
 * reviews but not remove or retype one (else it could turn the review it waits on into a step
 * it reports itself). An owner's own check comes first, so another worker hears whose it is.
 */
function keepsReviews(actor: Actor, existing: MigrationSummary | undefined, steps: StepDefinition[]): void {
  if (!existing) return
  if (existing.owner !== undefined) checkOwner(actor, existing, 'announce')
  for (const review of existing.steps.filter(isManualReview)) {
    if (steps.some((step) => step.name === review.name && isManualReview(step))) continue
    throw new LoomError(
      'forbidden',
      `worker ${actor.name} may not remove or change the manual-review step "${review.name}" of migration ${existing.id}: only an operator may`,
      { details: { actor, migrationId: existing.id, stepName: review.name } },
    )
  }
}

/** What `openDiscovery` hands out (a random UUID): anything else names no discovery, and is not asked of the store. */
const DISCOVERY_ID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/

/** A slug from the migration's name plus a random suffix, for migrations registered without an id. */
function generateId(name: string): string {
  const base = name
    .toLowerCase()
    .replace(/[^a-z0-9]+/g, '-')
    .replace(/^-+|-+$/g, '')
    .slice(0, 60)
  const suffix = crypto.randomUUID().slice(0, 8)
  return base ? `${base}-${suffix}` : `migration-${suffix}`
}
