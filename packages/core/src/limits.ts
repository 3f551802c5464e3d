/**
 * How much one request may ask of Loom. Each limit bounds the work a request costs before that
 * work is done: lists and maps are measured before their items are judged, JSON is measured
 * before it is parsed. A request over a limit is refused with `invalid`, naming the field and
 * the limit, and changes nothing. `createLoom({ limits })` raises or lowers them.
 */
import { LoomError } from './errors'

export interface Limits {
  /** Steps of one migration. Default 100. */
  steps: number
  /** Candidates in one request (an announce, a submit, a registration). Default 100,000. */
  candidates: number
  /** Keys of one map: a candidate's metadata or state, a step's config, a report's metadata. Default 100. */
  mapKeys: number
  /** Characters of one value of such a map. Default 10,000. */
  valueLength: number
  /** File groups of a candidate, files of a group, files of a step. Default 1,000. */
  files: number
  /** Nesting of a JSON body or message: objects and arrays within each other. Default 32. */
  depth: number
  /** Candidates one discovery may stage in all, over its parts (each part held to `candidates`). Default 200,000. */
  discoveryCandidates: number
}

export const DEFAULT_LIMITS: Readonly<Limits> = Object.freeze({
  steps: 100,
  candidates: 100_000,
  mapKeys: 100,
  valueLength: 10_000,
  files: 1_000,
  depth: 32,
  discoveryCandidates: 200_000,
})

/** Keys a map cannot hold as plain data in JavaScript: refused rather than silently dropped. */
export const RESERVED_KEYS = ['__proto__', 'constructor', 'prototype'] as const

/** `DEFAULT_LIMITS` with `overrides` applied; throws `invalid` naming `limits.<field>` for a value that is not a positive integer. */
export function resolveLimits(overrides: Partial<Limits> = {}): Readonly<Limits> {
  const limits = { ...DEFAULT_LIMITS, ...overrides }
  for (const [field, value] of Object.entries(limits)) {
    if (!Number.isSafeInteger(value) || value < 1) {
      throw new LoomError('invalid', `limits.${field}: must be a positive integer (got ${String(value)})`, {
        details: { field: `limits.${field}` },
      })
    }
  }
  return Object.freeze(limits)
}

const fatalUtf8 = new TextDecoder('utf-8', { fatal: true })

/**
 * Reads a JSON body or message the way every transport must: bytes that are not UTF-8, text
 * nested deeper than `limits.depth`, a list longer than its limit, and text that is not JSON
 * are each refused with `invalid` naming the field, before anything is built from them.
 * Depth and list lengths are measured on the text in one pass, so a hostile body costs one
 * scan, never a parse: `steps`, `candidates` and `files` lists are held to their own limits,
 * any other list to the largest of them. `limits` may be a bare depth (lists then unchecked).
 */
export function readJson(input: Uint8Array | string, limits: number | Readonly<Limits>, field = 'body'): unknown {
  let text: string
  if (typeof input === 'string') text = input
  else {
    try {
      text = fatalUtf8.decode(input)
    } catch {
      throw new LoomError('invalid', `${field}: is not valid UTF-8`, { details: { field } })
    }
  }
  measure(text, typeof limits === 'number' ? { depth: limits } : limits, field)
  try {
    return JSON.parse(text)
  } catch (error) {
    throw new LoomError('invalid', `${field}: malformed JSON (${(error as Error).message})`, { details: { field } })
  }
}

/** The lists whose length has a limit of its own, by the key that holds them. */
const LIST_LIMITS = { steps: 'steps', candidates: 'candidates', files: 'files' } as const satisfies Record<string, keyof Limits>

interface Frame {
  list: boolean
  /** Items (lists) or keys (objects) seen so far. */
  items: number
  /** The key being read (objects). */
  key: string
  /** Where the frame is, as a dotted path. */
  path: string
  /** The most items or keys it may hold. */
  max: number
  /** The limit that `max` comes from, and what it counts. */
  limit: keyof Limits | undefined
  what: string
}

/**
 * One pass over JSON text: refuses nesting deeper than `limits.depth` and lists longer than
 * their limit, naming where. Brackets, commas and colons inside strings do not count. It does
 * not judge the syntax: `JSON.parse` does, afterwards.
 */
function measure(text: string, limits: Partial<Limits> & Pick<Limits, 'depth'>, field: string): void {
  const stack: Frame[] = []
  const listed = limits.candidates !== undefined
  // Any other list is held to the largest list limit, and any object to the most keys a map may have plus the fields of a shape.
  const lists = (['steps', 'candidates', 'files'] as const).filter((key) => limits[key] !== undefined)
  const largest = lists.reduce<keyof Limits | undefined>((a, b) => (a === undefined || limits[b]! > limits[a]! ? b : a), undefined)
  const maxKeys = (limits.mapKeys ?? 0) + 16
  let lastString = ''
  const at = (path: string) => (path ? (field === 'body' ? path : `${field}.${path}`) : field)
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i)
    if (c === 32 || c === 10 || c === 13 || c === 9) continue
    const top = stack[stack.length - 1]
    // The first character of a value inside a list, or of a key inside an object, counts one.
    if (top && top.items === 0 && c !== 93 /* ] */ && c !== 125 /* } */) top.items = 1
    if (c === 34 /* " */) {
      const start = i
      i = endOfString(text, i)
      const raw = text.slice(start + 1, Math.min(i, start + 201))
      // A key written with escapes (`"st\u0065ps"`) is judged by what it says.
      lastString = raw.includes('\\') ? (safeString(text.slice(start, i + 1)) ?? raw) : raw
    } else if (c === 58 /* : */) {
      if (top && !top.list) top.key = lastString
    } else if (c === 44 /* , */) {
      if (top && ++top.items > top.max) {
        throw new LoomError('invalid', `${at(top.path)}: more than the limit of ${top.max} ${top.what} (limits.${top.limit})`, {
          details: { field: at(top.path) },
        })
      }
    } else if (c === 123 /* { */ || c === 91 /* [ */) {
      if (stack.length >= limits.depth) {
        throw new LoomError('invalid', `${field}: nested deeper than the limit of ${limits.depth} (limits.depth)`, {
          details: { field },
        })
      }
      const name = top === undefined ? '' : top.list ? String(top.items - 1) : top.key
      const path = top?.path ? `${top.path}.${name}` : name
      const list = c === 91
      const own = list && Object.hasOwn(LIST_LIMITS, name) ? LIST_LIMITS[name as keyof typeof LIST_LIMITS] : undefined
      let frame: Frame = { list, items: 0, key: '', path, max: Number.POSITIVE_INFINITY, limit: undefined, what: '' }
      if (listed && list) {
        const limit = own && limits[own] !== undefined ? own : largest
        frame = { ...frame, max: limit ? limits[limit]! : frame.max, limit, what: own ? own : 'items' }
      } else if (listed && limits.mapKeys !== undefined) {
        frame = { ...frame, max: maxKeys, limit: 'mapKeys', what: 'keys' }
      }
      stack.push(frame)
    } else if (c === 125 /* } */ || c === 93 /* ] */) {
      stack.pop()
    }
  }
}

/** The index of the quote that closes the string opening at `open`, or the text's length when none does. */
function endOfString(text: string, open: number): number {
  for (let i = open + 1; i < text.length; i++) {
    const c = text.charCodeAt(i)
    if (c === 92 /* \ */) i++
    else if (c === 34 /* " */) return i
  }
  return text.length
}

/**
 * The string values of `keys` among the top-level fields of a JSON object, found by one scan
 * that builds nothing else: what a receiver needs to answer a message it refuses to read in
 * full (an MQTT request carries its reply topic in its body). Keys that are absent, or whose
 * value is not a string, are left out; so is everything when the text is not valid UTF-8.
 */
export function topLevelStrings(input: Uint8Array | string, keys: readonly string[]): Record<string, string> {
  let text: string
  try {
    text = typeof input === 'string' ? input : fatalUtf8.decode(input)
  } catch {
    return {}
  }
  const found: Record<string, string> = {}
  let level = 0
  let key: string | undefined
  let expectKey = false
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i)
    if (c === 34 /* " */) {
      const end = endOfString(text, i)
      if (level === 1) {
        const value = text.slice(i, end + 1)
        if (expectKey) key = value
        else if (key !== undefined) {
          const name = safeString(key)
          if (name !== undefined && keys.includes(name)) {
            // The last of duplicate keys counts, as for JSON.parse.
            const parsed = safeString(value)
            if (parsed !== undefined) found[name] = parsed
            else delete found[name]
          }
          key = undefined
        }
      }
      i = end
    } else if (c === 123 /* { */ || c === 91 /* [ */) {
      level++
      if (level === 1) expectKey = c === 123
      else if (level === 2) key = undefined
    } else if (c === 125 /* } */ || c === 93 /* ] */) level--
    else if (level === 1 && c === 58 /* : */) expectKey = false
    else if (level === 1 && c === 44 /* , */) {
      expectKey = true
      key = undefined
    }
  }
  return found
}

/** A JSON string literal's value, or undefined when it is not one. */
function safeString(literal: string): string | undefined {
  try {
    const value: unknown = JSON.parse(literal)
    return typeof value === 'string' ? value : undefined
  } catch {
    return undefined
  }
}
