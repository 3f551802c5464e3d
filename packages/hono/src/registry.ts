import { AnnounceRequestSchema, type Loom, RegisteredMigrationSchema } from '@loom/core'
import { Hono } from 'hono'
import type { Guards } from './auth'
import { describeRoute } from './describe'
import { jsonBody } from './validation'

/** `/registry`: workers announce the migrations they run. */
export function registryRoutes(loom: Loom, { worker }: Guards) {
  return new Hono().post(
    '/announce',
    describeRoute({
      operationId: 'announce',
      summary: 'Registers or updates a migration by id (upsert)',
      responses: { 200: { description: 'Registered', body: RegisteredMigrationSchema } },
    }),
    worker,
    jsonBody(AnnounceRequestSchema),
    async (c) => c.json(await loom.announce(c.req.valid('json'))),
  )
}
