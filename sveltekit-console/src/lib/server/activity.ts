/**
 * The overview's activity feed: the latest entries of every migration's log, newest first, one
 * read per migration (`order: 'newest'`), however long its log.
 */
import type { ActivityPage, Loom } from '@loom/core'

type ActivityEntry = ActivityPage['entries'][number]

interface FeedEntry extends ActivityEntry {
  migrationName: string
  /** The run page, only when its candidate still exists. */
  href?: string
}

export interface Feed {
  entries: FeedEntry[]
}

export interface FeedOptions {
  /** Entries to show. */
  keep?: number
}

export async function latestActivity(
  loom: Loom,
  migrations: ReadonlyArray<{ id: string; name: string }>,
  { keep = 20 }: FeedOptions = {},
): Promise<Feed> {
  const latest = await Promise.all(migrations.map((m) => loom.activity(m.id, { order: 'newest', limit: keep })))
  const names = new Map(migrations.map((m) => [m.id, m.name]))
  const entries = latest
    // Each log comes newest first; the sort is stable, so entries of the same moment keep their log's order.
    .flatMap((page) => page.entries)
    .sort((a, b) => b.at.localeCompare(a.at))
    .slice(0, keep)
  // A run page exists while its candidate does; ask once per candidate.
  const exists = new Map<string, Promise<boolean>>()
  const candidateExists = (migrationId: string, candidateId: string) => {
    const key = `${migrationId}\u0000${candidateId}`
    let known = exists.get(key)
    if (!known) {
      known = loom.getCandidate(migrationId, candidateId).then(
        () => true,
        () => false,
      )
      exists.set(key, known)
    }
    return known
  }
  const feed = await Promise.all(
    entries.map(async (entry): Promise<FeedEntry> => {
      const migrationName = names.get(entry.migrationId) ?? entry.migrationId
      if (entry.runId && entry.candidateId && (await candidateExists(entry.migrationId, entry.candidateId))) {
        return { ...entry, migrationName, href: `/runs/${encodeURIComponent(entry.runId)}` }
      }
      return { ...entry, migrationName }
    }),
  )
  return { entries: feed }
}
