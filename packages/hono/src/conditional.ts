import { digest, LoomError } from '@loom/core'
import type { Context } from 'hono'
import * as v from 'valibot'
import { version as release } from '../package.json'
import type { ParameterFact } from './describe'

/**
 * Conditional GETs from the store's version. A route that can name the migration its answer
 * shows (or the catalog, for `GET /migrations`) answers with an `ETag` made of that version
 * and honours `If-None-Match`, and its serialized body is kept under the version: both are
 * correct across replicas, since the version comes from the store every process shares.
 */

/** How many serialized bodies `loomApp` keeps, and how many bytes they may take together. */
export interface BodyCacheOptions {
  /** Bytes of serialized JSON kept at most, all bodies together; a larger body is served but not kept. Default 32 MiB. */
  maxBytes?: number
  /** Bodies kept at most. Default 1,000. */
  maxEntries?: number
}

const DEFAULT_MAX_BYTES = 32 * 1024 * 1024
const DEFAULT_MAX_ENTRIES = 1_000

/** One serialized answer, with the headers that belong to it (`X-Total-Count`). */
interface Body {
  bytes: Uint8Array<ArrayBuffer>
  headers: Record<string, string>
}

/**
 * Serialized bodies by resource, each kept under the version it was read at, least
 * recently used dropped first. A resource holds one body: the version of a new one is
 * newer (versions never come back), so the one it replaces could never be served again.
 */
export function bodyCache(options: BodyCacheOptions = {}) {
  const maxBytes = positiveInteger(options.maxBytes ?? DEFAULT_MAX_BYTES, 'bodyCache.maxBytes')
  const maxEntries = positiveInteger(options.maxEntries ?? DEFAULT_MAX_ENTRIES, 'bodyCache.maxEntries')
  const entries = new Map<string, { version: string; body: Body }>()
  let bytes = 0

  const drop = (key: string) => {
    const entry = entries.get(key)
    if (!entry) return
    entries.delete(key)
    bytes -= entry.body.bytes.byteLength
  }

  return {
    /** The body of `key` read at `version`, if it is kept; a body of another version never is what this returns. */
    get(key: string, version: string): Body | undefined {
      const entry = entries.get(key)
      if (entry?.version !== version) return undefined
      // Most recently used last: Map keeps insertion order.
      entries.delete(key)
      entries.set(key, entry)
      return entry.body
    },
    set(key: string, version: string, body: Body) {
      drop(key)
      if (body.bytes.byteLength > maxBytes) return
      entries.set(key, { version, body })
      bytes += body.bytes.byteLength
      while (bytes > maxBytes || entries.size > maxEntries) drop(entries.keys().next().value!)
    },
    /** What is kept, for tests and for whoever sizes the cache. */
    get size() {
      return { entries: entries.size, bytes }
    },
  }
}

export type BodyCache = ReturnType<typeof bodyCache>

function positiveInteger(value: number, field: string): number {
  if (!Number.isSafeInteger(value) || value < 1) {
    throw new LoomError('invalid', `${field}: must be a positive integer`, { details: { field } })
  }
  return value
}

/** What a route's handler builds when the answer is not kept: the body, and headers that go with it. */
export interface Built {
  body: unknown
  headers?: Record<string, string>
}

/** Reads a version: of one migration, or (no id) of the catalog. `not_found` for an unknown migration. */
type VersionOf = (migrationId?: string) => Promise<string>

const encoder = new TextEncoder()

/**
 * The answer of a versioned GET. Without `versionOf` (a Loom that cannot tell versions, such
 * as a remote client) it is the built body, as before. Otherwise the version is read first,
 * then the body built or taken from `cache`: a change racing the build makes the tag older
 * than the body, never newer, so a client holding it merely revalidates once more; and a
 * body kept under a version is only served while the store is still at that version.
 *
 * `key` names the representation (route, ids, the query as validated); `migrationId` whose
 * version it shows, undefined for the catalog. The cache is shared by every caller: the
 * guard has already held the caller to the route's role, and these reads show every caller
 * who may make them the same thing.
 */
export function versionedAnswers(versionOf: VersionOf | undefined, cache: BodyCache | undefined) {
  return async (c: Context, key: string, migrationId: string | undefined, build: () => Promise<Built>): Promise<Response> => {
    if (!versionOf) {
      const { body, headers } = await build()
      return c.json(body, 200, headers)
    }
    const version = await versionOf(migrationId)
    const validators = { ETag: etagOf(version, key), 'Cache-Control': 'no-cache' }
    const condition = conditionOf(c.req.header('if-none-match'))
    // A tag names one representation at one version (see etagOf): a match means the caller
    // was answered 200 for this very request at this version, so it would be answered so again.
    if (condition !== '*' && condition?.has(opaque(validators.ETag))) return c.body(null, 304, validators)
    let body = cache?.get(key, version)
    if (!body) {
      const built = await build()
      body = { bytes: encoder.encode(JSON.stringify(built.body)), headers: built.headers ?? {} }
      cache?.set(key, version, body)
    }
    // `*` matches any current representation, but only once it is known there is one: a query core refuses has none.
    if (condition === '*') return c.body(null, 304, validators)
    return c.body(body.bytes, 200, { 'Content-Type': 'application/json', ...body.headers, ...validators })
  }
}

export type VersionedAnswer = ReturnType<typeof versionedAnswers>

/**
 * The weak `ETag` of the representation `key` at `version`. Weak: the version promises what
 * the body shows, not its bytes. The digest of the key makes a tag of one URL match no other
 * URL's, and that of this release makes a replica of another release (which may serialize
 * differently) answer 200 rather than 304. Nothing in it is secret: a store's opaque version
 * and a digest of what the request itself says.
 */
function etagOf(version: string, key: string): string {
  // Characters an entity tag may not hold (RFC 9110 §8.8.3), or a long version, are digested.
  const shown = /^[\w.:~+-]{1,64}$/.test(version) ? version : digest(version)
  return `W/"${shown}.${digest(`${release}\u0000${key}`)}"`
}

/** The opaque tag, without `W/`: If-None-Match compares weakly (RFC 9110 §13.1.2). */
const opaque = (tag: string) => tag.replace(/^W\//, '')

/** The tags an If-None-Match lists, as opaque tags, or `*`; undefined when there is no such header. Malformed members are ignored. */
function conditionOf(header: string | undefined): Set<string> | '*' | undefined {
  if (header === undefined) return undefined
  if (header.trim() === '*') return '*'
  const tags = new Set<string>()
  // Entity tags may hold commas, so the list is read tag by tag rather than split.
  for (const match of header.matchAll(/(?:W\/)?("[\x21\x23-\x7e\x80-\xff]*")/g)) tags.add(match[1]!)
  return tags
}

/** The `If-None-Match` parameter of a versioned route, for the OpenAPI document. */
export const IF_NONE_MATCH: ParameterFact = {
  name: 'If-None-Match',
  in: 'header',
  required: false,
  description: 'ETags of earlier answers of this URL, or `*`: 304 without a body while one of them is current (weak comparison)',
  schema: v.string(),
}

/** The headers of a versioned route's 200, for the OpenAPI document. */
export const VERSION_HEADERS = {
  ETag: {
    description: 'The version of what the answer shows, from the store (the same on every replica); sent when the Loom can tell versions',
    schema: { type: 'string' },
  },
  'Cache-Control': { description: '`no-cache`: keep the answer, but revalidate it with If-None-Match', schema: { type: 'string' } },
}

/** The 304 of a versioned route, for the OpenAPI document. */
export const NOT_MODIFIED = {
  description: 'Not modified: a tag of If-None-Match is current. No body; ETag and Cache-Control as with 200',
  headers: VERSION_HEADERS,
}
