import { LoomError } from './errors'
import { WorkerUrlSchema } from './schemas'
import { parse } from './validate'

/**
 * Which worker URLs a deployment calls: each entry an origin (`https://charts.internal:8443`)
 * or a prefix (`https://workers.internal/loom/`). A URL is allowed when it is an entry, or lies
 * under one at a path boundary: `https://a.internal` allows `https://a.internal/x` but not
 * `https://a.internal.evil.example/`. Without entries every http(s) URL is allowed.
 */
export interface WorkerUrlPolicy {
  /** The entries, normalised; empty when every URL is allowed. */
  readonly allowed: readonly string[]
  /** Whether Loom may call `url`. */
  allows(url: string): boolean
  /** Throws `invalid` naming `field` unless Loom may call `url`. */
  check(url: string, field?: string): void
}

/**
 * The policy of `createLoom`'s `allowedWorkerUrls` (`LOOM_WORKER_URLS`, comma-separated). An
 * entry that is not an http(s) URL without credentials, query or fragment is refused here,
 * naming it, so a typo fails at start rather than refusing every announce.
 */
export function workerUrlPolicy(entries: readonly string[] | string | undefined): WorkerUrlPolicy {
  const list = typeof entries === 'string' ? entries.split(',') : (entries ?? [])
  const allowed = list
    .map((entry) => entry.trim())
    .filter(Boolean)
    .map((entry, i) => new URL(parse(WorkerUrlSchema, entry, `allowedWorkerUrls.${i}`)).href)
  const allows = (url: string) => {
    if (allowed.length === 0) return true
    let href: string
    try {
      href = new URL(url).href
    } catch {
      return false
    }
    return allowed.some((entry) => href === entry || href.startsWith(entry.endsWith('/') ? entry : `${entry}/`))
  }
  return {
    allowed,
    allows,
    check(url, field = 'workerUrl') {
      if (allows(url)) return
      throw new LoomError(
        'invalid',
        `${field}: ${redactUrl(url)} is not an allowed worker URL; this deployment calls only ${allowed.join(', ')} (allowedWorkerUrls / LOOM_WORKER_URLS)`,
        { details: { field } },
      )
    },
  }
}

/** `url` with any `user:password@` removed, for messages and logs. */
export function redactUrl(url: string): string {
  return url.replace(/^([a-z][a-z0-9+.-]*:\/\/)[^/@?#]*@/i, '$1')
}
