/**
 * Who does what. Every call into Loom is made by an actor: an operator (a person, through the
 * console or the API), a worker (a service that announces migrations and reports steps) or
 * Loom itself (`system`: the reconciler failing a step past its deadline, say). The rules of
 * who may call what live here, once; `createLoom` applies them to every caller (HTTP, MQTT
 * and in-process alike) and the transports use them to refuse early.
 */
import * as v from 'valibot'
import { LoomError } from './errors'
import { tokensMatch } from './tokens'

export const ACTOR_KINDS = ['operator', 'worker', 'system'] as const

export type ActorKind = (typeof ACTOR_KINDS)[number]

/** Longest actor name accepted (a token's name, a user name from an embedding service). */
const MAX_ACTOR_NAME_LENGTH = 200

export const ActorSchema = v.object({
  kind: v.picklist(ACTOR_KINDS, `must be one of ${ACTOR_KINDS.join(', ')}`),
  name: v.pipe(
    v.string('must be a string'),
    v.minLength(1, 'must not be empty'),
    v.maxLength(MAX_ACTOR_NAME_LENGTH, `must be at most ${MAX_ACTOR_NAME_LENGTH} characters`),
    v.regex(/^\S(.*\S)?$/s, 'must not be blank or start or end with white space'),
  ),
})

/** Who made a call: `{kind: "operator" | "worker" | "system", name}`. */
export type Actor = v.InferOutput<typeof ActorSchema>

/** Loom itself: what `createLoom`'s own methods act as, and what its reconciler records. */
export const SYSTEM_ACTOR: Actor = Object.freeze({ kind: 'system', name: 'loom' })

/** The caller of a Loom that has no token configured: anyone, with an operator's rights. */
export const ANONYMOUS_OPERATOR: Actor = Object.freeze({ kind: 'operator', name: 'anonymous' })

/** The methods of `Loom` a worker may call: announce, submit candidates, report steps (and ask for health). */
const WORKER_METHODS: ReadonlySet<string> = new Set([
  'announce',
  'submitCandidates',
  'patchCandidates',
  'openDiscovery',
  'addToDiscovery',
  'commitDiscovery',
  'complete',
  'prOpened',
  'health',
])

/** What each kind of actor may call: everything, or the listed methods. An actor of any other kind may call nothing. */
const RIGHTS: Record<ActorKind, 'all' | ReadonlySet<string>> = { operator: 'all', system: 'all', worker: WORKER_METHODS }

/** Whether `actor` may call `method` at all; what it may then do to a given migration is {@link checkOwner}'s. */
export function mayCall(actor: Actor, method: string): boolean {
  const rights = Object.hasOwn(RIGHTS, actor.kind) ? RIGHTS[actor.kind] : undefined
  return rights === 'all' || (rights?.has(method) ?? false)
}

/** Throws `forbidden` unless `actor` may call `method`. */
export function authorize(actor: Actor, method: string): void {
  if (!mayCall(actor, method)) {
    throw new LoomError(
      'forbidden',
      `${actor.kind} ${actor.name} may not call ${method}: a worker announces migrations, submits their candidates and reports steps; everything else is an operator's`,
      { details: { actor, method } },
    )
  }
}

/**
 * Throws `forbidden` when `actor` is a worker and the migration is not its own. A migration
 * belongs to the worker that first announced it; one no worker announced yet (an operator
 * registered it) is claimed by the first worker that announces it, and until then no worker
 * may submit its candidates or report on its runs.
 */
export function checkOwner(actor: Actor, migration: { id: string; owner?: string | undefined }, what: string): void {
  if (actor.kind !== 'worker' || migration.owner === actor.name) return
  const whose =
    migration.owner === undefined ? 'it belongs to no worker yet; announce it to claim it' : `it belongs to worker ${migration.owner}`
  throw new LoomError('forbidden', `worker ${actor.name} may not ${what} migration ${migration.id}: ${whose}`, {
    details: { actor, migrationId: migration.id, ...(migration.owner === undefined ? {} : { owner: migration.owner }) },
  })
}

/** Named tokens: name → token. */
export type NamedTokens = Record<string, string>

/** What {@link tokenIdentities} is built from. Each token may be given bare (one shared name) or named. */
export interface TokenOptions {
  /** The single operator token of API 0.2; its holder is operator `operator`. */
  token?: string | undefined
  /** The single worker token; its holder is worker `worker`. */
  workerToken?: string | undefined
  /** Operators by name: `{ alice: '<token>' }`, or the text `alice:<token>,bob:<token>` of `LOOM_OPERATORS`. */
  operators?: NamedTokens | string | undefined
  /** Workers by name: `{ 'app-charts': '<token>' }`, or the text of `LOOM_WORKERS`. */
  workers?: NamedTokens | string | undefined
}

/** Who holds which token, and how a presented token is recognised. */
export interface Identities {
  /** True when no token is configured at all: every caller is {@link ANONYMOUS_OPERATOR}. */
  readonly open: boolean
  /** True when at least one operator token is configured. */
  readonly hasOperators: boolean
  /** True when at least one worker token is configured. */
  readonly hasWorkers: boolean
  /**
   * The actor a presented token names, or null when it names none (or none was presented
   * while tokens are configured). Every configured token is compared in constant time.
   */
  authenticate(presented: string | undefined): Actor | null
  /**
   * What Loom presents when it calls the worker that owns a migration: that worker's own token
   * (none when it has none); for a migration no worker owns, the single worker token. With no
   * worker token configured at all (API 0.2), the operator token.
   */
  workerToken(name?: string | undefined): string | undefined
}

/** RFC 6750's token syntax, which every transport can carry (an HTTP header, an MQTT field). */
const TOKEN = /^[A-Za-z0-9._~+/-]+=*$/

const NAME = /^[A-Za-z0-9._-]{1,200}$/

/**
 * Parses `alice:<token>,bob:<token>` (the form of `LOOM_OPERATORS` and `LOOM_WORKERS`); `field`
 * names the setting in errors. Names are 1–200 of `A–Z a–z 0–9 . _ -`; tokens RFC 6750 bearer
 * tokens; each name and each token once.
 */
export function parseNamedTokens(text: string, field: string): NamedTokens {
  const out: NamedTokens = {}
  for (const part of text.split(',')) {
    const entry = part.trim()
    if (!entry) continue
    const colon = entry.indexOf(':')
    const name = colon < 0 ? '' : entry.slice(0, colon).trim()
    const token = colon < 0 ? '' : entry.slice(colon + 1).trim()
    if (!NAME.test(name) || !token) {
      throw new LoomError(
        'invalid',
        `${field}: each entry must be name:token, the name 1–200 of A–Z a–z 0–9 . _ - (got "${name || '…'}:…")`,
        {
          details: { field },
        },
      )
    }
    if (name in out) throw new LoomError('invalid', `${field}: ${name} is named twice`, { details: { field } })
    out[name] = token
  }
  return out
}

/**
 * The identities of a deployment that authenticates by token: the single operator and worker
 * tokens of API 0.2 (as operator `operator` and worker `worker`) and named ones. Throws
 * `invalid`, naming the option, for a token a transport could not carry or one given twice.
 *
 * @example
 * const ids = tokenIdentities({ operators: process.env.LOOM_OPERATORS, workers: process.env.LOOM_WORKERS })
 * ids.authenticate(bearer) // { kind: 'worker', name: 'app-charts' } or null
 */
export function tokenIdentities(options: TokenOptions): Identities {
  const entries: Array<{ actor: Actor; token: string; field: string }> = []
  const add = (kind: 'operator' | 'worker', field: string, tokens: NamedTokens) => {
    for (const [name, token] of Object.entries(tokens)) entries.push({ actor: { kind, name }, token, field })
  }
  const named = (value: NamedTokens | string | undefined, field: string) =>
    typeof value === 'string' ? parseNamedTokens(value, field) : (value ?? {})
  if (options.token) add('operator', 'token', { operator: options.token })
  add('operator', 'operators', named(options.operators, 'operators'))
  if (options.workerToken) add('worker', 'workerToken', { worker: options.workerToken })
  add('worker', 'workers', named(options.workers, 'workers'))

  const seen = new Map<string, Actor>()
  for (const { actor, token, field } of entries) {
    if (!TOKEN.test(token)) {
      throw new LoomError(
        'invalid',
        `${field}: the token of ${actor.name} must be a bearer token: A–Z a–z 0–9 . _ ~ + / - then optional "=" padding`,
        {
          details: { field },
        },
      )
    }
    const other = seen.get(token)
    // One token, one actor: the single worker token may equal the operator's (API 0.2 used one for both); its holder is the operator.
    if (other && !(other.kind === 'operator' && field === 'workerToken')) {
      throw new LoomError('invalid', `${field}: the token of ${actor.kind} ${actor.name} is also ${other.kind} ${other.name}'s`, {
        details: { field },
      })
    }
    if (!other) seen.set(token, actor)
  }
  const accepted = [...seen.entries()]
  const workerTokens = new Map(entries.filter((e) => e.actor.kind === 'worker').map((e) => [e.actor.name, e.token]))

  return {
    open: accepted.length === 0,
    hasOperators: entries.some((e) => e.actor.kind === 'operator'),
    hasWorkers: workerTokens.size > 0,
    authenticate(presented) {
      if (accepted.length === 0) return ANONYMOUS_OPERATOR
      // Every token is compared, so the time taken says nothing about which one nearly matched.
      let found: Actor | null = null
      for (const [token, actor] of accepted) if (tokensMatch(presented, token) && !found) found = actor
      return found
    },
    workerToken(name) {
      // API 0.2: with no worker token at all, workers hold the operator's, and Loom shows them that.
      if (workerTokens.size === 0) return options.token || undefined
      // A named owner gets its own token or none: never another worker's, never the operator's
      // (a worker removed from the list must not be handed a token it no longer has).
      if (name !== undefined) return workerTokens.get(name)
      return workerTokens.get('worker')
    },
  }
}
