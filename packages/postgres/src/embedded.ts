/**
 * Marks a client of the embedded database (`pglite()`). PGlite has one session for all its
 * connections, so a notification would reach whichever connection happens to be reading, not
 * the listening one; and no other process shares it. The store wakes its log's watchers in
 * process instead of listening (see `watchActivity`).
 */
const EMBEDDED = Symbol.for('@loom/postgres.embedded')

export function markEmbedded(sql: object): void {
  Object.defineProperty(sql, EMBEDDED, { value: true })
}

export function isEmbedded(sql: object): boolean {
  return (sql as { [EMBEDDED]?: boolean })[EMBEDDED] === true
}
