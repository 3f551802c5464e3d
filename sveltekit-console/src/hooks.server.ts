import { dev } from '$app/environment'
import { redirect, type Handle, type HandleServerError, type ServerInit } from '@sveltejs/kit'
import { ANONYMOUS_OPERATOR, LoomError, type Loom } from '@loom/core'
import { backend, closeBackend, config } from '$lib/server/instance'
import { SESSION_COOKIE } from '$lib/server/session'

/** Aborted when the server is asked to stop, so open event streams end and the server can close. */
const stopping = new AbortController()

if (!dev) {
  for (const signal of ['SIGINT', 'SIGTERM'] as const) process.once(signal, () => stopping.abort())
  // adapter-node emits this once the HTTP server has closed: close Loom and the database, then
  // let the process end. A handle someone else left open must not keep it alive,
  // and neither may a close that hangs.
  process.once('sveltekit:shutdown' as 'exit', () => {
    const deadline = setTimeout(() => {
      console.error('[loom console] closing took longer than 10 s; exiting anyway')
      process.exit(1)
    }, 10_000)
    deadline.unref()
    void closeBackend().finally(() => setTimeout(() => process.exit(0), 1000).unref())
  })
}

export const init: ServerInit = async () => {
  await backend()
}

const PUBLIC_PATHS = ['/login', '/theme', '/favicon.svg']

/** What a signed-out request holds in place of a Loom: every call is refused, so nothing leaks past a forgotten check. */
const SIGNED_OUT = new Proxy({} as Loom, {
  get: (_target, property) =>
    property === 'then'
      ? undefined
      : () => Promise.reject(new LoomError('unauthorized', 'sign in first: this console needs an operator token')),
})

export const handle: Handle = async ({ event, resolve }) => {
  const b = await backend()
  const path = event.url.pathname

  if (path === '/api' || path.startsWith('/api/')) {
    let request = event.request
    if (request.method === 'GET') {
      const headers = new Headers(request.headers)
      // EventSource cannot send headers. Embedded, the API itself accepts a GET with a live
      // session (backend's apiAuthenticator). Remote, the console stands in for the signed-in
      // operator with its own token, which is what the remote Loom sees.
      const token = config().token
      if (b.mode === 'remote' && token && !headers.has('authorization') && (await b.sessionActor(event.cookies.get(SESSION_COOKIE)))) {
        headers.set('authorization', `Bearer ${token}`)
      }
      request = new Request(request.url, { method: 'GET', headers, signal: AbortSignal.any([request.signal, stopping.signal]) })
    }
    return b.api(request)
  }

  const open = b.identities.open
  // Open (no token configured): everyone is the anonymous operator, as core says.
  const actor = open ? ANONYMOUS_OPERATOR : await b.sessionActor(event.cookies.get(SESSION_COOKIE))
  // Every page and action works through the Loom of the signed-in operator, so each call is theirs.
  event.locals.loom = actor ? b.loomFor(actor) : SIGNED_OUT
  event.locals.actor = actor
  event.locals.authRequired = !open
  event.locals.signedIn = actor !== null
  event.locals.theme = event.cookies.get('theme') === 'light' ? 'light' : 'dark'

  if (!actor && !PUBLIC_PATHS.some((p) => path === p || path.startsWith(`${p}/`))) {
    if (event.request.method === 'GET' || event.request.method === 'HEAD') {
      redirect(303, `/login?redirectTo=${encodeURIComponent(path + event.url.search)}`)
    }
    return new Response('Sign in first: this console needs an operator token.', { status: 401 })
  }

  return resolve(event, {
    transformPageChunk: ({ html }) => html.replace('%loom.theme%', event.locals.theme),
  })
}

export const handleError: HandleServerError = ({ error, status, message }) => {
  if (LoomError.is(error)) return { message: error.message, code: error.code }
  if (status !== 404) console.error('[loom console]', error)
  return { message: status === 404 ? message : 'Something went wrong on the server. The details are in its log.' }
}
