import { type Actor, DiscoverySchema, type Loom } from '@loom/core'
import { Hono } from 'hono'
import type { Served } from './app'
import type { LoomEnv } from './auth'
import { describeRoute } from './describe'
import { jsonBody, type SlugParam, slugParams } from './validation'

const MIGRATION: Record<'id', SlugParam> = {
  id: { label: 'migrationId', description: 'The migration id', missing: 'no migration has this id' },
}
const DISCOVERY: Record<'id' | 'discoveryId', SlugParam> = {
  ...MIGRATION,
  discoveryId: {
    label: 'discoveryId',
    description: 'The discovery id, as opening it answered',
    missing: 'the migration has no such discovery: committed, expired, or never opened',
  },
}

/**
 * `/migrations/{id}/discoveries`: a candidate list too large for one request, sent in parts
 * and swapped in whole. The parts are staged in the store, so each may reach any replica.
 */
export function discoveryRoutes({ loom, guards, schemas, limits }: Served) {
  const as = (actor: Actor): Loom => loom.as(actor)
  return new Hono<LoomEnv>()
    .post(
      '/:id/discoveries',
      describeRoute({
        operationId: 'openDiscovery',
        summary: 'Opens a discovery: a new candidate list, sent in parts, then committed',
        description:
          'Send the list in parts (`POST …/discoveries/{discoveryId}/candidates`), then commit it. A discovery expires unless ' +
          'a part or the commit comes within an hour of the last (`discoveryTtl`); `expiresAt` is when, as of now.',
        responses: { 201: { description: 'Opened', body: DiscoverySchema } },
      }),
      guards.allow('openDiscovery'),
      slugParams(MIGRATION),
      async (c) => c.json(await as(c.var.actor).openDiscovery(c.req.valid('param').id), 201),
    )
    .post(
      '/:id/discoveries/:discoveryId/candidates',
      describeRoute({
        operationId: 'addToDiscovery',
        summary: 'Adds a part to a discovery; its candidates follow those of earlier parts',
        description:
          'Each part is held to the limit of candidates of one request, and the discovery to `limits.discoveryCandidates` ' +
          '(200,000 by default). A candidate an earlier part sent is refused, naming it, and the part adds nothing.',
        responses: { 204: { description: 'Added' } },
      }),
      guards.allow('addToDiscovery'),
      slugParams(DISCOVERY),
      jsonBody(schemas.SubmitCandidatesRequest, '', { limits }),
      async (c) => {
        const { id, discoveryId } = c.req.valid('param')
        await as(c.var.actor).addToDiscovery(id, discoveryId, c.req.valid('json').candidates)
        return c.body(null, 204)
      },
    )
    .post(
      '/:id/discoveries/:discoveryId/commit',
      describeRoute({
        operationId: 'commitDiscovery',
        summary: 'Replaces the candidate list with the discovery’s parts, atomically; the discovery is then gone',
        description:
          'As `POST /migrations/{id}/candidates` with the parts in the order sent: candidates with a queued, running or completed run are kept.',
        responses: { 204: { description: 'Committed' } },
      }),
      guards.allow('commitDiscovery'),
      slugParams(DISCOVERY),
      async (c) => {
        const { id, discoveryId } = c.req.valid('param')
        await as(c.var.actor).commitDiscovery(id, discoveryId)
        return c.body(null, 204)
      },
    )
}
