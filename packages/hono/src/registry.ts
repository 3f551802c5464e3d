import { RegisteredMigrationSchema } from '@loom/core'
import { Hono } from 'hono'
import type { Served } from './app'
import type { LoomEnv } from './auth'
import { describeRoute } from './describe'
import { jsonBody } from './validation'

/** `/registry`: workers announce the migrations they run. */
export function registryRoutes({ loom, guards, schemas, limits }: Served) {
  return new Hono<LoomEnv>().post(
    '/announce',
    describeRoute({
      operationId: 'announce',
      summary: 'Registers or updates a migration by id (upsert); a worker’s first announce makes it the owner',
      responses: { 200: { description: 'Registered', body: RegisteredMigrationSchema } },
    }),
    guards.allow('announce'),
    jsonBody(schemas.AnnounceRequest, '', { limits }),
    async (c) => c.json(await loom.as(c.var.actor).announce(c.req.valid('json'))),
  )
}
