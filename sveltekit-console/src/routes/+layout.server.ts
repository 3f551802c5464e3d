import { loadFrom } from '$lib/server/actions'
import { countsOf } from '$lib/status'
import type { LayoutServerLoad } from './$types'

export const load: LayoutServerLoad = async ({ locals, depends, url }) => {
  depends('loom:migrations')
  const showNav = !locals.authRequired || locals.signedIn
  const listed = showNav ? await loadFrom(locals.loom.listMigrations({ summary: true })) : []
  // A remote Loom may omit the optional fields (one of API 0.2 counts no failures); the pages rely on them.
  const migrations = listed.map((m) => ({
    ...m,
    counts: m.counts ? { ...m.counts, failed: m.counts.failed ?? 0 } : countsOf(),
    cancelledAttempts: m.cancelledAttempts ?? [],
  }))
  return {
    theme: locals.theme,
    authRequired: locals.authRequired,
    signedIn: locals.signedIn,
    // Who the console acts for: shown in the sidebar, and the actor of every action taken here.
    actor: locals.actor,
    path: url.pathname + url.search,
    migrations,
    // One clock for server and browser, so relative times render the same on both.
    now: Date.now(),
  }
}
