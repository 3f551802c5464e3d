import { sveltekit } from '@sveltejs/kit/vite'
import { defineConfig } from 'vite'

export default defineConfig({
  plugins: [sveltekit()],
  ssr: {
    // Workspace packages are loaded from their own dist at run time, not copied into the
    // server bundle: one copy of @loom/core in the process, and @loom/temporal finds its
    // workflow file beside its entry as it expects.
    external: [
      '@loom/core',
      '@loom/hono',
      '@loom/client',
      '@loom/postgres',
      '@loom/mqtt',
      '@loom/temporal',
      '@loom/worker',
      '@loom/example-worker',
    ],
  },
})
