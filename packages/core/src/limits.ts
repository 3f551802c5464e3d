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
}

export const DEFAULT_LIMITS: Readonly<Limits> = Object.freeze({
  steps: 100,
  candidates: 100_000,
  mapKeys: 100,
  valueLength: 10_000,
  files: 1_000,
  depth: 32,
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
  /** Items seen so far (lists). */
  items: number
  /** The key being read (objects). */
  key: string
  /** Where the frame is, as a dotted path. */
  path: string
  /** The most items this list may hold; Infinity for objects. */
  max: number
  /** The limit that `max` comes from. */
  limit: keyof Limits | undefined
}

/**
 * One pass over JSON text: refuses nesting deeper than `limits.depth` and lists longer than
 * their limit, naming where. Brackets, commas and colons inside strings do not count. It does
 * not judge the syntax: `JSON.parse` does, afterwards.
 */
function measure(text: string, limits: Partial<Limits> & Pick<Limits, 'depth'>, field: string): void {
  const stack: Frame[] = []
  const listed = limits.candidates !== undefined
  const largest = Math.max(limits.steps ?? 0, limits.candidates ?? 0, limits.files ?? 0)
  let lastString = ''
  const at = (path: string) => (path ? (field === 'body' ? path : `${field}.${path}`) : field)
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i)
    if (c === 32 || c === 10 || c === 13 || c === 9) continue
    const top = stack[stack.length - 1]
    // The first character of a value inside a list counts one item.
    if (top?.list && top.items === 0 && c !== 93 /* ] */) top.items = 1
    if (c === 34 /* " */) {
      const start = i + 1
      i = endOfString(text, i)
      lastString = text.slice(start, Math.min(i, start + 200))
    } else if (c === 58 /* : */) {
      if (top && !top.list) top.key = lastString
    } else if (c === 44 /* , */) {
      if (top?.list && ++top.items > top.max) {
        const what = top.limit === undefined ? 'items' : top.limit
        throw new LoomError('invalid', `${at(top.path)}: more than the limit of ${top.max} ${what} (limits.${top.limit ?? 'candidates'})`, {
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
      const limit = list && listed && Object.hasOwn(LIST_LIMITS, name) ? LIST_LIMITS[name as keyof typeof LIST_LIMITS] : undefined
      const max = !list || !listed ? Number.POSITIVE_INFINITY : limit ? (limits[limit] as number) : largest
      stack.push({ list, items: 0, key: '', path, max, limit })
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
          if (name !== undefined && keys.includes(name) && !Object.hasOwn(found, name)) {
            const parsed = safeString(value)
            if (parsed !== undefined) found[name] = parsed
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
