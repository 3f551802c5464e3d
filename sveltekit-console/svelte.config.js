import adapter from '@sveltejs/adapter-node'
import { vitePreprocess } from '@sveltejs/vite-plugin-svelte'

/** @type {import('@sveltejs/kit').Config} */
export default {
  preprocess: vitePreprocess(),
  kit: {
    adapter: adapter({ out: 'build' }),
    // Content-Security-Policy on every page: scripts only from this origin plus the inline
    // start-up script SvelteKit writes into each page, which it marks with a fresh nonce
    // (`auto`: nonces for pages rendered per request, hashes for prerendered ones). A
    // script injected into the markup carries no nonce, so the browser does not run it.
    csp: {
      mode: 'auto',
      directives: {
        'default-src': ['self'],
        'script-src': ['self'],
        // Stylesheets and <style> elements only from here (SvelteKit adds a nonce to any it inlines).
        'style-src': ['self'],
        // Style attributes are allowed: Svelte renders some on the server (the progress bar's
        // segment widths, the skeleton boxes, app.html's wrapper) and a nonce cannot be put on
        // an attribute. An attribute sets how an element looks; it runs no script.
        'style-src-attr': ['unsafe-inline'],
        'img-src': ['self', 'data:'],
        'font-src': ['self'],
        // The pages fetch their data and `/api/events` from this origin only.
        'connect-src': ['self'],
        'object-src': ['none'],
        'base-uri': ['self'],
        'form-action': ['self'],
        'frame-ancestors': ['none'],
      },
    },
  },
}
