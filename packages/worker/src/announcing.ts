import { LoomError, type Candidate, type MigrationAnnouncement } from '@loom/core'
import type { DiscoveryParts, WorkerContext } from './context'
import type { Migration } from './define-migration'
import { retryUnavailable, withRetry } from './retry'
import { announcerOverMqtt } from './transports'

const notFoundWhileAnnouncing = (error: unknown) => retryUnavailable(error) || LoomError.is(error, 'not_found')

/** How a migration is announced: its steps under this worker app (unless a step names another), and where to reach it. */
function announcementOf(migration: Migration, app: string, url: string | undefined): MigrationAnnouncement {
  return {
    id: migration.id,
    name: migration.name,
    ...(migration.description === undefined ? {} : { description: migration.description }),
    steps: migration.steps.map((step) => ({
      name: step.name,
      workerApp: step.workerApp ?? app,
      ...(step.description === undefined ? {} : { description: step.description }),
      ...(step.config === undefined ? {} : { config: step.config }),
      ...(step.files === undefined ? {} : { files: step.files }),
    })),
    ...(url ? { workerUrl: url } : {}),
  }
}

const utf8 = new TextEncoder()

/**
 * `candidates` cut into parts of at most `size.candidates` candidates and `size.bytes` bytes of
 * JSON each, in order; a candidate larger than `size.bytes` on its own makes a part of one.
 */
export function partsOf(candidates: Candidate[], size: Required<DiscoveryParts>): Candidate[][] {
  const parts: Candidate[][] = []
  let part: Candidate[] = []
  // The body around the list ({"candidates":[…]}), then each candidate and its comma.
  const frame = 16
  let bytes = frame
  for (const candidate of candidates) {
    const length = utf8.encode(JSON.stringify(candidate)).length + 1
    if (part.length > 0 && (part.length >= size.candidates || bytes + length > size.bytes)) {
      parts.push(part)
      part = []
      bytes = frame
    }
    part.push(candidate)
    bytes += length
  }
  if (part.length > 0) parts.push(part)
  return parts
}

/** Announcing the worker's migrations and submitting what their discovery finds, each retried while Loom cannot be reached. */
export function announcing(ctx: WorkerContext) {
  const { options, app, migrations, retry, signal } = ctx

  const discoverOne = async (migration: Migration, announcedOverMqtt: boolean) => {
    const candidates: Candidate[] = await withRetry(
      async () => migration.discover({ signal }),
      retry,
      signal,
      (error) => !LoomError.is(error, 'invalid'),
    )
    const target = await ctx.loom()
    const parts = partsOf(candidates, ctx.parts)
    // A list in one part is one submission. A larger one is a discovery: each attempt opens its
    // own, so a part whose answer was lost is never sent twice to the same one (the discovery
    // left behind expires).
    const submit =
      parts.length <= 1
        ? () => target.submitCandidates(migration.id, candidates)
        : async () => {
            let discoveryId: string
            try {
              ;({ discoveryId } = await target.openDiscovery(migration.id))
            } catch (error) {
              // A Loom older than discoveries has no such route (404): send the list whole, as it
              // expects (it answers 413 if the list is over its body limit). Where the migration
              // itself is missing, the submission says not_found just the same.
              if (LoomError.is(error, 'not_found')) return target.submitCandidates(migration.id, candidates)
              throw error
            }
            for (const part of parts) await target.addToDiscovery(migration.id, discoveryId, part)
            await target.commitDiscovery(migration.id, discoveryId)
          }
    // Over MQTT a submit can overtake the announcement it follows on another server: not_found is worth a retry then.
    await withRetry(submit, retry, signal, announcedOverMqtt ? notFoundWhileAnnouncing : retryUnavailable)
  }

  return {
    /** Announces every migration and, once Loom accepted it, discovers its candidates; rejects with the first failure. */
    async announceAll(): Promise<void> {
      const announcer = options.announce && options.announce !== 'http' ? await announcerOverMqtt(ctx, options.announce) : undefined
      const results = await Promise.allSettled(
        [...migrations.values()].map(async (migration) => {
          const announcement = announcementOf(migration, app, options.url)
          if (announcer) {
            await withRetry(() => announcer.announce(announcement, { awaitAcceptance: true }), retry, signal)
          } else {
            const target = await ctx.loom()
            await withRetry(() => target.announce(announcement), retry, signal)
          }
          await discoverOne(migration, announcer !== undefined)
        }),
      )
      const failed = results.find((r): r is PromiseRejectedResult => r.status === 'rejected')
      if (failed) throw failed.reason
    },

    /** Runs discovery again and submits the candidates, for one migration or all. */
    async discover(migrationId?: string): Promise<void> {
      const chosen = migrationId === undefined ? [...migrations.values()] : [ctx.requireMigration(migrationId)]
      await Promise.all(chosen.map((m) => discoverOne(m, false)))
    },
  }
}
