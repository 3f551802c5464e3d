import { redirect } from '@sveltejs/kit'
import { safeRedirect } from '$lib/server/session'
import type { RequestHandler } from './$types'

/** Switches the theme with a plain form post, so it works without JavaScript too. */
export const POST: RequestHandler = async ({ request, cookies }) => {
  const data = await request.formData()
  const theme = data.get('theme') === 'light' ? 'light' : 'dark'
  cookies.set('theme', theme, { path: '/', httpOnly: false, sameSite: 'lax', maxAge: 60 * 60 * 24 * 365 })
  redirect(303, safeRedirect(String(data.get('redirectTo') ?? '/')))
}
