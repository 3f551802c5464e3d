/** Resolve hook: `@loom/<package>[/<subpath>]` → `packages/<package>/src/<subpath or index>.ts`. */
const PACKAGES = new URL('../../../packages/', import.meta.url)

export async function resolve(specifier, context, next) {
  const match = /^@loom\/(core|postgres|hono|worker|client|mqtt|temporal)(?:\/([a-z-]+))?$/.exec(specifier)
  if (!match) return next(specifier, context)
  return next(new URL(`${match[1]}/src/${match[2] ?? 'index'}.ts`, PACKAGES).href, context)
}
