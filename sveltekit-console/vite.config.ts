import { sveltekit } from '@sveltejs/kit/vite'
import { defineConfig } from 'vite'

/**
 * Server-only packages, loaded from node_modules at run time rather than copied into the
 * server bundle: one copy of @loom/core in the process, @loom/temporal finds its workflow
 * file beside its entry, and the optional adapters (imported only when their variable is
 * set) need not be resolvable when the console is built.
 */
const SERVER_PACKAGES = [
  '@loom/core',
  '@loom/hono',
  '@loom/client',
  '@loom/postgres',
  '@loom/mqtt',
  '@loom/temporal',
  'postgres',
  'mqtt',
  /^@temporalio\//,
  /^@electric-sql\//,
]
const OPTIONAL = ['@loom/postgres', '@loom/mqtt', '@loom/temporal', 'mqtt', 'postgres']

export default defineConfig({
  plugins: [sveltekit()],
  ssr: {
    external: SERVER_PACKAGES.filter((p): p is string => typeof p === 'string'),
  },
  build: {
    rolldownOptions: {
      external: (id) => OPTIONAL.includes(id) || /^@temporalio\//.test(id) || /^@electric-sql\//.test(id),
    },
  },
})
