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
 * nested deeper than `depth`, and text that is not JSON are each refused with `invalid` naming
 * `field`, before anything is built from them. The depth is measured on the text in one pass,
 * so a hostile body costs one scan, never a parse.
 */
export function readJson(input: Uint8Array | string, depth: number, field = 'body'): unknown {
  let text: string
  if (typeof input === 'string') text = input
  else {
    try {
      text = fatalUtf8.decode(input)
    } catch {
      throw new LoomError('invalid', `${field}: is not valid UTF-8`, { details: { field } })
    }
  }
  const deepest = nestingOf(text, depth)
  if (deepest > depth) {
    throw new LoomError('invalid', `${field}: nested deeper than the limit of ${depth} (limits.depth)`, { details: { field } })
  }
  try {
    return JSON.parse(text)
  } catch (error) {
    throw new LoomError('invalid', `${field}: malformed JSON (${(error as Error).message})`, { details: { field } })
  }
}

/** How deep objects and arrays nest in JSON text, stopping once past `stopAt`. Brackets inside strings do not count. */
function nestingOf(text: string, stopAt: number): number {
  let level = 0
  let deepest = 0
  let inString = false
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i)
    if (inString) {
      if (c === 92 /* \ */) i++
      else if (c === 34 /* " */) inString = false
    } else if (c === 34) inString = true
    else if (c === 123 /* { */ || c === 91 /* [ */) {
      level++
      if (level > deepest) {
        deepest = level
        if (deepest > stopAt) return deepest
      }
    } else if (c === 125 /* } */ || c === 93 /* ] */) level--
  }
  return deepest
}
