/**
 * Where the console lets a link or a redirect point. Data from workers (a step's `prUrl`, a
 * candidate file's `url`) becomes a link only when it is an absolute `http:` or `https:`
 * URL; anything else (`javascript:`, `data:`, a relative path) is shown as text. A redirect
 * after signing in goes only to a path of this console, judged after decoding.
 */

/** `url` as a link target when it is an absolute http(s) URL, else undefined (render it as text). */
export function safeHref(url: unknown): string | undefined {
  if (typeof url !== 'string' || url.trim() === '') return undefined
  let parsed: URL
  try {
    // The URL parser drops tabs and newlines and lower-cases the scheme, as a browser does,
    // so "java\tscript:" and "JAVASCRIPT:" are judged by what the browser would run.
    parsed = new URL(url.trim())
  } catch {
    return undefined
  }
  return parsed.protocol === 'http:' || parsed.protocol === 'https:' ? parsed.href : undefined
}

/** How many rounds of percent-decoding a redirect target gets before it is judged. */
const DECODE_ROUNDS = 4

/** Control characters (C0, DEL, C1) and backslashes: browsers drop or reinterpret them in a Location. */
const UNSAFE = /[\u0000-\u001f\u007f-\u009f\\]/

const BASE = 'http://console.invalid'

/**
 * A path of this console to return to (after signing in, after switching the theme);
 * anything else becomes `/`. The target is percent-decoded until it stops changing (a
 * malformed escape, or more than a few rounds, is refused), and
 * refused if any form of it holds a control character or a backslash, does not start with
 * exactly one `/`, or resolves to another origin; so `//host`, `/\host`, `/%09/host`,
 * `/%2F/host` and `/%5Chost` all go to `/`. What it answers is the target resolved against
 * this console: a path, its query and its fragment.
 *
 * @example
 * safeRedirect('/migrations/app-chart?status=queued') // '/migrations/app-chart?status=queued'
 * safeRedirect('/%2F/evil.example') // '/'
 */
export function safeRedirect(target: string | null | undefined): string {
  if (typeof target !== 'string' || target === '' || target.length > 4096) return '/'
  const forms = [target]
  for (let settled = false; !settled; ) {
    // Still changing after this many rounds: nothing a console link needs, so refused.
    if (forms.length > DECODE_ROUNDS) return '/'
    const last = forms[forms.length - 1]!
    let next: string
    try {
      next = decodeURIComponent(last)
    } catch {
      return '/'
    }
    if (next === last) settled = true
    else forms.push(next)
  }
  for (const form of forms) {
    if (UNSAFE.test(form) || !form.startsWith('/') || form.startsWith('//')) return '/'
    let resolved: URL
    try {
      resolved = new URL(form, BASE)
    } catch {
      return '/'
    }
    if (resolved.origin !== BASE) return '/'
  }
  const resolved = new URL(target, BASE)
  return `${resolved.pathname}${resolved.search}${resolved.hash}`
}
