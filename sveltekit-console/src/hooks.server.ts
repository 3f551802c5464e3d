import { dev } from '$app/environment'
import { redirect, type Handle, type HandleServerError, type ServerInit } from '@sveltejs/kit'
import { LoomError } from '@loom/core'
import { backend, closeBackend, config } from '$lib/server/instance'
import { SESSION_COOKIE, validSession } from '$lib/server/session'

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

export const handle: Handle = async ({ event, resolve }) => {
  const cfg = config()
  const token = cfg.token
  const signedIn = token ? validSession(token, event.cookies.get(SESSION_COOKIE)) : false
  const path = event.url.pathname

  if (path === '/api' || path.startsWith('/api/')) {
    const { api } = await backend()
    let request = event.request
    if (request.method === 'GET') {
      const headers = new Headers(request.headers)
      // EventSource cannot send headers: a signed-in browser's stream is authorised by its session.
      if (token && signedIn && !headers.has('authorization')) headers.set('authorization', `Bearer ${token}`)
      request = new Request(request.url, { method: 'GET', headers, signal: AbortSignal.any([request.signal, stopping.signal]) })
    }
    return api(request)
  }

  event.locals.loom = (await backend()).loom
  event.locals.authRequired = token !== undefined
  event.locals.signedIn = signedIn
  event.locals.theme = event.cookies.get('theme') === 'light' ? 'light' : 'dark'

  if (token && !signedIn && !PUBLIC_PATHS.some((p) => path === p || path.startsWith(`${p}/`))) {
    if (event.request.method === 'GET' || event.request.method === 'HEAD') {
      redirect(303, `/login?redirectTo=${encodeURIComponent(path + event.url.search)}`)
    }
    return new Response('Sign in first: this console needs its access token.', { status: 401 })
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
