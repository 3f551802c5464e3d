import { fail, redirect } from '@sveltejs/kit'
import { config } from '$lib/server/instance'
import { SESSION_COOKIE, safeRedirect, sessionValue, tokenMatches } from '$lib/server/session'
import type { Actions, PageServerLoad } from './$types'

export const load: PageServerLoad = async ({ locals, url }) => {
  const redirectTo = safeRedirect(url.searchParams.get('redirectTo'))
  if (!locals.authRequired || locals.signedIn) redirect(303, redirectTo)
  return { redirectTo }
}

export const actions: Actions = {
  default: async ({ request, cookies, url }) => {
    const token = config().token
    const data = await request.formData()
    const redirectTo = safeRedirect(String(data.get('redirectTo') ?? '/'))
    if (!token) redirect(303, redirectTo)
    const given = String(data.get('token') ?? '')
    if (!given) return fail(400, { message: 'Enter the access token.' })
    if (!tokenMatches(token, given)) return fail(401, { message: 'That token is not valid for this console.' })
    cookies.set(SESSION_COOKIE, sessionValue(token), {
      path: '/',
      httpOnly: true,
      sameSite: 'strict',
      secure: url.protocol === 'https:',
      maxAge: 60 * 60 * 12,
    })
    redirect(303, redirectTo)
  },
}
