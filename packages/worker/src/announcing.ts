import { LoomError, type Candidate, type MigrationAnnouncement } from '@loom/core'
import type { WorkerContext } from './context'
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
    // Over MQTT a submit can overtake the announcement it follows on another server: not_found is worth a retry then.
    await withRetry(
      () => target.submitCandidates(migration.id, candidates),
      retry,
      signal,
      announcedOverMqtt ? notFoundWhileAnnouncing : retryUnavailable,
    )
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
