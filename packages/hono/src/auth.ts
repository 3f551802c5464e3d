import {
  ANONYMOUS_OPERATOR,
  type Actor,
  ActorSchema,
  authorize,
  type Loom,
  LoomError,
  type LoomErrorCode,
  mayCall,
  type NamedTokens,
  tokenIdentities,
} from '@loom/core'
import type { Context, MiddlewareHandler } from 'hono'
import { bearerAuth } from 'hono/bearer-auth'
import * as v from 'valibot'
import { type RouteFacts, withFacts } from './describe'
import { errorResponse } from './errors'

/** What every guarded handler of `loomApp` finds on its context: the caller, authenticated once. */
export type LoomEnv = { Variables: { actor: Actor } }

/** A method of the `Loom` interface: what a route calls, and what its guard authorizes. */
type LoomMethod = keyof Loom & string

/** How `loomApp` learns who calls: tokens (bare or named), or the embedding service's own hook. */
export interface CallerOptions {
  token?: string | undefined
  workerToken?: string | undefined
  operators?: NamedTokens | string | undefined
  workers?: NamedTokens | string | undefined
  authenticate?: ((request: Request) => Actor | null | Promise<Actor | null>) | undefined
}

/** The guard of every route but the public ones. */
export interface Guards {
  /**
   * The middleware of a route that calls `method` of `Loom`: it authenticates the request
   * (401 `unauthorized` without a valid caller), stores the actor as `c.var.actor`, and
   * refuses with 403 `forbidden` what the actor's role may not call (core's `mayCall`), all
   * before the body is read. It carries, for the OpenAPI document, the route's access, its
   * security schemes and the 401 and 403 it can answer.
   */
  allow(method: LoomMethod): MiddlewareHandler<LoomEnv>
  /** True when no token and no `authenticate` is configured: every caller is `ANONYMOUS_OPERATOR`. */
  readonly open: boolean
}

const CHALLENGE = { 'WWW-Authenticate': 'Bearer realm="loom"' }

/** Stands for "a worker" when asking the role rule which role a route is for. */
const ANY_WORKER: Actor = { kind: 'worker', name: 'any' }

/** Why a worker may get 403 on a route it may call: the ownership and manual-review rules core enforces. */
const OWNED = 'the migration belongs to another worker (the first worker to announce a migration owns it)'
const WORKER_FORBIDDEN: Partial<Record<LoomMethod, string>> = {
  announce: OWNED,
  submitCandidates: OWNED,
  patchCandidates: OWNED,
  openDiscovery: OWNED,
  addToDiscovery: OWNED,
  commitDiscovery: OWNED,
  complete: `${OWNED}, or the step is a manual review, which only an operator approves or rejects`,
  prOpened: `${OWNED}, or the step is a manual review, which only an operator approves or rejects`,
}

/**
 * The guards of `loomApp`. Tokens are core's `tokenIdentities` (every comparison constant
 * time), read from the `Authorization: Bearer` header by hono's `bearerAuth`; or the caller
 * is whoever `authenticate` says. Throws `invalid` naming the option for a token a header
 * could not carry, and for `authenticate` given together with tokens (one way to know callers).
 * `facts` go on every guard, for the OpenAPI document.
 */
export function callerGuards(options: CallerOptions, facts: Pick<RouteFacts, 'definitions'> = {}): Guards {
  const identities = tokenIdentities(options)
  const hook = options.authenticate
  if (hook && !identities.open) {
    throw new LoomError(
      'invalid',
      'authenticate: given together with tokens; pass either authenticate or token/workerToken/operators/workers, not both',
      { details: { field: 'authenticate' } },
    )
  }
  const open = !hook && identities.open
  // Who can ever be a worker here decides whether a route can answer 403 at all.
  const workersExist = Boolean(hook) || identities.hasWorkers
  const identify: MiddlewareHandler<LoomEnv> = open
    ? async (c, next) => {
        c.set('actor', ANONYMOUS_OPERATOR)
        await next()
      }
    : hook
      ? async (c, next) => {
          const actor = actorFrom(await hook(c.req.raw))
          if (!actor) return refuse(c, 'unauthorized: the request does not say who makes it')
          c.set('actor', actor)
          await next()
        }
      : bearerAuth({
          verifyToken: (presented, c) => {
            const actor = identities.authenticate(presented)
            if (actor) c.set('actor', actor)
            return actor !== null
          },
          noAuthenticationHeader: { message: (c: Context) => refuse(c, 'unauthorized: this route needs an Authorization: Bearer token') },
          invalidAuthenticationHeader: {
            message: (c: Context) => refuse(c, 'unauthorized: this route needs an Authorization: Bearer token'),
          },
          invalidToken: { message: (c: Context) => refuse(c, 'unauthorized: the bearer token is not one this Loom knows') },
        })

  const security = (access: 'operator' | 'worker'): Array<Record<string, string[]>> => {
    // An embedding service's own scheme is not one the document can name.
    if (open || hook) return []
    if (access === 'operator') return [{ operatorToken: [] }]
    return [...(identities.hasWorkers ? [{ workerToken: [] }] : []), ...(identities.hasOperators ? [{ operatorToken: [] }] : [])]
  }

  return {
    open,
    allow(method) {
      const access = mayCall(ANY_WORKER, method) ? 'worker' : 'operator'
      const errors: Partial<Record<LoomErrorCode, string>> = {}
      if (!open) errors.unauthorized = hook ? 'the request is not authenticated' : 'the Authorization: Bearer token is missing or unknown'
      if (workersExist)
        errors.forbidden = access === 'operator' ? 'the caller is a worker; only operators call this route' : WORKER_FORBIDDEN[method]
      const guard: MiddlewareHandler<LoomEnv> = async (c, next) =>
        identify(c, async () => {
          authorize(c.var.actor, method)
          await next()
        })
      return withFacts(guard, { access: { access, security: security(access) }, errors, ...facts })
    },
  }
}

/** The contract's 401, with the challenge RFC 6750 asks for. */
function refuse(c: Context, message: string): Response {
  return errorResponse(c, new LoomError('unauthorized', message), CHALLENGE)
}

/** The actor an `authenticate` hook answered, checked: anything but an operator, a worker or null is the embedding service's bug (500). */
function actorFrom(answer: unknown): Actor | null {
  if (answer === null || answer === undefined) return null
  const result = v.safeParse(ActorSchema, answer)
  // `system` is Loom itself: no request speaks for it, so what the activity records stays true.
  if (!result.success || result.output.kind === 'system') {
    throw new Error(
      `loomApp: authenticate returned ${JSON.stringify(answer)}, which is not the actor of a request {kind: "operator" | "worker", name}`,
    )
  }
  return result.output
}
