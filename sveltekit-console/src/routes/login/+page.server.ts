import { fail, redirect } from '@sveltejs/kit'
import { backend } from '$lib/server/instance'
import { SESSION_COOKIE, safeRedirect } from '$lib/server/session'
import type { Actions, PageServerLoad } from './$types'

export const load: PageServerLoad = async ({ locals, url }) => {
  const redirectTo = safeRedirect(url.searchParams.get('redirectTo'))
  if (!locals.authRequired || locals.signedIn) redirect(303, redirectTo)
  return { redirectTo, operatorsConfigured: (await backend()).identities.hasOperators }
}

export const actions: Actions = {
  default: async ({ request, cookies, url }) => {
    const b = await backend()
    const data = await request.formData()
    const redirectTo = safeRedirect(String(data.get('redirectTo') ?? '/'))
    if (b.identities.open) redirect(303, redirectTo)
    const given = String(data.get('token') ?? '').trim()
    if (!given) return fail(400, { message: 'Enter your access token.' })
    const actor = b.identities.authenticate(given)
    if (!actor) return fail(401, { message: 'That token is not valid for this console.' })
    if (actor.kind !== 'operator') {
      return fail(403, {
        message: `That is the token of worker ${actor.name}: the console is for operators. Sign in with an operator token.`,
      })
    }
    // A new sign-in ends the session the browser had before, if any: one cookie, one live session.
    await b.sessions.revoke(cookies.get(SESSION_COOKIE))
    const session = await b.sessions.create(actor)
    cookies.set(SESSION_COOKIE, session.id, {
      path: '/',
      httpOnly: true,
      // Strict: the cookie never rides along on a request another site starts, not even a link.
      sameSite: 'strict',
      secure: url.protocol === 'https:',
      maxAge: Math.floor(b.sessions.ttlMs / 1000),
    })
    redirect(303, redirectTo)
  },
}
