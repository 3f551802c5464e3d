import { redirect } from '@sveltejs/kit'
import { backend } from '$lib/server/instance'
import { SESSION_COOKIE } from '$lib/server/session'
import type { RequestHandler } from './$types'

/** Signs out: the session's record is deleted, so this cookie (or a copy of it) is refused from now on. */
export const POST: RequestHandler = async ({ cookies, url }) => {
  await (await backend()).sessions.revoke(cookies.get(SESSION_COOKIE))
  cookies.delete(SESSION_COOKIE, { path: '/', httpOnly: true, sameSite: 'strict', secure: url.protocol === 'https:' })
  redirect(303, '/login')
}
