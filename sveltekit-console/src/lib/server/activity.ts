/**
 * The overview's activity feed: the latest entries of every migration's log, newest first.
 * The log is read oldest first, page by page; the work is capped, so a migration with a long
 * log shows the latest entries of the pages read (the feed says when it stopped early).
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
  /** Some migration's log was longer than the pages read: the feed may miss its newest entries. */
  truncated: boolean
}

export interface FeedOptions {
  /** Entries to show. */
  keep?: number
  /** Pages to read per migration, at most. */
  pages?: number
  pageSize?: number
}

async function tailOf(loom: Loom, migrationId: string, keep: number, pages: number, pageSize: number) {
  let tail: ActivityEntry[] = []
  let after: string | undefined
  for (let read = 0; read < pages; read++) {
    const page = await loom.activity(migrationId, { limit: pageSize, ...(after ? { after } : {}) })
    tail = [...tail, ...page.entries].slice(-keep)
    if (!page.next) return { tail, truncated: false }
    after = page.next
  }
  return { tail, truncated: true }
}

export async function latestActivity(
  loom: Loom,
  migrations: ReadonlyArray<{ id: string; name: string }>,
  { keep = 20, pages = 5, pageSize = 100 }: FeedOptions = {},
): Promise<Feed> {
  const tails = await Promise.all(migrations.map((m) => tailOf(loom, m.id, keep, pages, pageSize)))
  const names = new Map(migrations.map((m) => [m.id, m.name]))
  const entries = tails
    // Each log newest first; the sort is stable, so entries of the same moment keep their log's order.
    .flatMap((t) => [...t.tail].reverse())
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
  return { entries: feed, truncated: tails.some((t) => t.truncated) }
}
