import type { Loom } from '@loom/core'

/** Migrations whose lists are kept at most; the oldest is dropped first. */
const MAX_ENTRIES = 64

/**
 * The serialized candidate list of each migration, kept until `loom` reports a change to
 * that migration. Serializing a list of thousands of candidates costs more than the rest
 * of the request together (see bench/http-candidates.ts); consoles poll it.
 *
 * A list is dropped when `loom.subscribe` delivers a change to its migration, which follows
 * the store's activity log: changes made by other processes sharing the store (replicas, a
 * Temporal worker) drop it too, but a moment after they happen, not before the request that
 * made them has its answer. A client may so read a list from just before its own change.
 * Hence opt-in.
 */
export function listCache(loom: Loom) {
  const entries = new Map<string, Uint8Array<ArrayBuffer>>()
  /** Bumped by every change, so a list read before a change is never stored after it. */
  const generations = new Map<string, number>()
  const encoder = new TextEncoder()
  loom.subscribe((event) => {
    generations.set(event.migrationId, (generations.get(event.migrationId) ?? 0) + 1)
    entries.delete(event.migrationId)
  })

  return {
    async get(migrationId: string): Promise<Uint8Array<ArrayBuffer>> {
      const hit = entries.get(migrationId)
      if (hit) return hit
      const generation = generations.get(migrationId) ?? 0
      const bytes = encoder.encode(JSON.stringify(await loom.listCandidates(migrationId)))
      if ((generations.get(migrationId) ?? 0) === generation) {
        entries.set(migrationId, bytes)
        if (entries.size > MAX_ENTRIES) entries.delete(entries.keys().next().value!)
      }
      return bytes
    },
  }
}

export type ListCache = ReturnType<typeof listCache>
