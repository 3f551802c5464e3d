import {
  ActivityPageSchema,
  ActivityQuerySchema,
  CandidateQuerySchema,
  CandidateRefSchema,
  CandidateWithStatusSchema,
  DryRunResultSchema,
  type Actor,
  type Loom,
  RegisteredMigrationSchema,
} from '@loom/core'
import { Hono } from 'hono'
import * as v from 'valibot'
import type { Served } from './app'
import type { LoomEnv } from './auth'
import { IF_NONE_MATCH, NOT_MODIFIED, VERSION_HEADERS, type VersionedAnswer } from './conditional'
import { describeRoute } from './describe'
import { RunIdBodySchema } from './runs'
import { jsonBody, queryOf, type SlugParam, slugParams } from './validation'

const SummaryQuerySchema = v.object({ summary: v.optional(v.picklist(['true', 'false'], 'must be true or false')) })

const MIGRATION: Record<'id', SlugParam> = {
  id: { label: 'migrationId', description: 'The migration id', missing: 'no migration has this id' },
}
const CANDIDATE: Record<'id' | 'candidateId', SlugParam> = {
  ...MIGRATION,
  candidateId: { label: 'candidateId', description: 'The candidate id', missing: 'the migration has no candidate with this id' },
}

/** `limit` and `offset` arrive as text; numbers in, so core's schema judges them. */
const numbersIn = (query: Record<string, string>) => {
  const out: Record<string, unknown> = { ...query }
  for (const key of ['limit', 'offset']) {
    const value = query[key]
    if (value !== undefined && /^-?\d+$/.test(value)) out[key] = Number(value)
  }
  return out
}

function candidateIdOf(ref: v.InferOutput<typeof CandidateRefSchema>): string {
  return 'candidateId' in ref ? ref.candidateId : ref.candidate.id
}

/** `/migrations`: register, read and delete migrations; submit, list and read candidates; queue and dry-run one. */
export function migrationRoutes({ loom, guards, schemas, limits }: Served, answer: VersionedAnswer) {
  const migrationId = slugParams(MIGRATION)
  const as = (actor: Actor): Loom => loom.as(actor)
  return new Hono<LoomEnv>()
    .get(
      '/',
      describeRoute({
        operationId: 'listMigrations',
        summary: 'Every migration, oldest first; with summary=true without candidates (counts are kept)',
        parameters: [IF_NONE_MATCH],
        responses: {
          200: {
            description: 'The migrations',
            body: v.object({ migrations: v.array(RegisteredMigrationSchema) }),
            headers: VERSION_HEADERS,
          },
          304: NOT_MODIFIED,
        },
      }),
      guards.allow('listMigrations'),
      queryOf(SummaryQuerySchema),
      async (c) => {
        const summary = c.req.valid('query').summary === 'true'
        return answer(c, summary ? 'migrations?summary' : 'migrations', undefined, async () => ({
          body: { migrations: await as(c.var.actor).listMigrations({ summary }) },
        }))
      },
    )
    .post(
      '/',
      describeRoute({
        operationId: 'registerMigration',
        summary: 'Registers a migration under a generated id',
        responses: { 201: { description: 'Registered', body: RegisteredMigrationSchema } },
      }),
      guards.allow('register'),
      jsonBody(schemas.RegisterMigrationRequest, '', { limits }),
      async (c) => c.json(await as(c.var.actor).register(c.req.valid('json')), 201),
    )
    .get(
      '/:id',
      describeRoute({
        operationId: 'getMigration',
        summary: 'One migration with its candidates and their runs',
        parameters: [IF_NONE_MATCH],
        responses: {
          200: { description: 'The migration', body: RegisteredMigrationSchema, headers: VERSION_HEADERS },
          304: NOT_MODIFIED,
        },
      }),
      guards.allow('getMigration'),
      migrationId,
      async (c) => {
        const id = c.req.valid('param').id
        return answer(c, `migration/${id}`, id, async () => ({ body: await as(c.var.actor).getMigration(id) }))
      },
    )
    .delete(
      '/:id',
      describeRoute({
        operationId: 'deleteMigration',
        summary: 'Deletes a migration; refused while any candidate is running',
        responses: { 204: { description: 'Deleted' } },
        errors: { conflict: 'a candidate of the migration is running' },
      }),
      guards.allow('deleteMigration'),
      migrationId,
      async (c) => {
        await as(c.var.actor).deleteMigration(c.req.valid('param').id)
        return c.body(null, 204)
      },
    )
    .post(
      '/:id/candidates',
      describeRoute({
        operationId: 'submitCandidates',
        summary: 'Replaces the candidate list; candidates with a queued, running or completed run are kept',
        responses: { 204: { description: 'Replaced' } },
      }),
      guards.allow('submitCandidates'),
      migrationId,
      jsonBody(schemas.SubmitCandidatesRequest, '', { limits }),
      async (c) => {
        await as(c.var.actor).submitCandidates(c.req.valid('param').id, c.req.valid('json').candidates)
        return c.body(null, 204)
      },
    )
    .patch(
      '/:id/candidates',
      describeRoute({
        operationId: 'patchCandidates',
        summary: 'Changes part of the candidate list: upserts some, removes others',
        description:
          'A candidate of `upsert` the migration has is replaced where it stands (its place and run kept); a new one is appended ' +
          'after the last, in the order given. A candidate of `remove` is dropped, unless its run is queued, running or completed ' +
          '(kept, as a submission keeps it); ids the migration does not have are ignored. An id in both lists is refused. ' +
          'The two lists together are held to the limit of candidates of one request.',
        responses: { 204: { description: 'Patched' } },
      }),
      guards.allow('patchCandidates'),
      migrationId,
      jsonBody(schemas.PatchCandidatesRequest, '', { limits }),
      async (c) => {
        await as(c.var.actor).patchCandidates(c.req.valid('param').id, c.req.valid('json'))
        return c.body(null, 204)
      },
    )
    .get(
      '/:id/candidates',
      describeRoute({
        operationId: 'listCandidates',
        summary: 'Candidates with their status, in submission order; all of them without a query',
        description:
          'Page by cursor: pass the id of the last candidate of a page as `after` (with the same filters and `limit`) to read ' +
          'the next; a page shorter than `limit` is the last. Or by `offset`, not both. `X-Total-Count` counts every match either way.',
        params: {
          q: 'Case-insensitive substring of the id or a metadata value',
          lastOutcome: 'Only not_started candidates whose last attempt ended so (`failed` is what `counts.failed` counts)',
          limit: 'Most candidates in the page (1–10000); default all',
          offset: 'How many matches to skip before the page; not with `after`',
          after:
            'A cursor: the id of the last candidate of the previous page; the page starts after it, in submission order ' +
            '(it need not match the filters). Not with `offset`; an id the migration does not have is 400',
        },
        parameters: [IF_NONE_MATCH],
        responses: {
          200: {
            description: 'The matching candidates',
            body: v.array(CandidateWithStatusSchema),
            headers: {
              'X-Total-Count': {
                description: 'How many match, without limit, offset and after (sent with a query)',
                schema: { type: 'integer' },
              },
              ...VERSION_HEADERS,
            },
          },
          304: NOT_MODIFIED,
        },
        errors: { invalid: '`after` with `offset`, or an `after` the migration does not have' },
      }),
      guards.allow('listCandidates'),
      migrationId,
      queryOf(CandidateQuerySchema, numbersIn),
      async (c) => {
        const id = c.req.valid('param').id
        // `as(…)` only where a body is built: it assembles every method, which costs more than a whole 304.
        // API 0.2 clients expect the bare list of every candidate; a query pages it and counts.
        if (Object.keys(c.req.query()).length === 0) {
          return answer(c, `candidates/${id}`, id, async () => ({ body: await as(c.var.actor).listCandidates(id) }))
        }
        const query = c.req.valid('query')
        // The query as validated names the page: the order of the URL's parameters, or one no schema reads, does not.
        const search = new URLSearchParams(Object.entries(query).flatMap(([k, value]) => (value === undefined ? [] : [[k, String(value)]])))
        return answer(c, `candidates/${id}?${search}`, id, async () => {
          const { candidates, total } = await as(c.var.actor).searchCandidates(id, query)
          return { body: candidates, headers: { 'X-Total-Count': String(total) } }
        })
      },
    )
    .get(
      '/:id/activity',
      describeRoute({
        operationId: 'activity',
        summary: 'The migration’s activity log, oldest first, one page after a cursor',
        description:
          'Each entry is one change (an announce, a submission, a status transition, a step dispatched or reported), ' +
          'with who made it, when, and the attempt it belongs to. Without `after` the page starts at the oldest entry; ' +
          'pass the page’s `next` as `after` to read on. A page without `next` is the last one so far. ' +
          'With `order=newest` the page holds the latest entries, newest first.',
        params: {
          after: 'The `next` of the previous page (the id of the last entry read)',
          limit: 'Most entries in the page (1–1000, default 100)',
          order: '`newest` for the latest entries, newest first (no `next`); default `oldest`',
        },
        responses: { 200: { description: 'A page of the log', body: ActivityPageSchema } },
      }),
      guards.allow('activity'),
      migrationId,
      queryOf(ActivityQuerySchema, numbersIn),
      async (c) => c.json(await as(c.var.actor).activity(c.req.valid('param').id, c.req.valid('query'))),
    )
    .get(
      '/:id/candidates/:candidateId',
      describeRoute({
        operationId: 'getCandidate',
        summary: 'One candidate with its status and run',
        responses: { 200: { description: 'The candidate', body: CandidateWithStatusSchema } },
      }),
      guards.allow('getCandidate'),
      slugParams(CANDIDATE),
      async (c) => {
        const { id, candidateId } = c.req.valid('param')
        return c.json(await as(c.var.actor).getCandidate(id, candidateId))
      },
    )
    .post(
      '/:id/queue',
      describeRoute({
        operationId: 'queue',
        summary: 'Queue: not_started → queued',
        responses: { 202: { description: 'Queued', body: RunIdBodySchema } },
        errors: { not_found: 'the migration has no such candidate', conflict: 'the candidate is not not_started' },
      }),
      guards.allow('queue'),
      migrationId,
      jsonBody(CandidateRefSchema, '', { limits }),
      async (c) => c.json({ runId: await as(c.var.actor).queue(c.req.valid('param').id, candidateIdOf(c.req.valid('json'))) }, 202),
    )
    .post(
      '/:id/dry-run',
      describeRoute({
        operationId: 'dryRun',
        summary: 'Asks the worker for the file changes a run would make',
        responses: { 200: { description: 'The per-step diffs', body: DryRunResultSchema } },
        errors: { not_found: 'the migration has no such candidate', unavailable: 'the worker could not be reached or failed' },
      }),
      guards.allow('dryRun'),
      migrationId,
      jsonBody(CandidateRefSchema, '', { limits }),
      async (c) => c.json(await as(c.var.actor).dryRun(c.req.valid('param').id, candidateIdOf(c.req.valid('json')))),
    )
}
