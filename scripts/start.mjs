#!/usr/bin/env node
/**
 * `npm start`: builds what is missing or out of date, then runs the console with the Loom
 * API (under /api) and the example worker (under /worker) in this one process, on embedded
 * defaults: PGlite in `.loom-data/`, the local engine. Set DATABASE_URL, TEMPORAL_ADDRESS,
 * MQTT_URL, LOOM_TOKEN or PORT to change a part; see docs/guides/console.md.
 *
 * Ctrl-C stops the server, closes the database (its data stays in `.loom-data/`) and exits;
 * a second Ctrl-C exits at once.
 */
import { spawnSync } from 'node:child_process'
import { existsSync, readdirSync, statSync } from 'node:fs'
import { dirname, join } from 'node:path'
import { fileURLToPath, pathToFileURL } from 'node:url'

const root = dirname(dirname(fileURLToPath(import.meta.url)))

/** What the console needs, in build order, and where each puts its output. */
const WORKSPACES = [
  ['packages/core', 'dist'],
  ['packages/hono', 'dist'],
  ['packages/client', 'dist'],
  ['packages/postgres', 'dist'],
  ['packages/mqtt', 'dist'],
  ['packages/temporal', 'dist'],
  ['packages/worker', 'dist'],
  ['examples/worker', 'dist'],
  ['sveltekit-console', 'build'],
]
const INPUTS = ['src', 'static', 'package.json', 'tsup.config.ts', 'vite.config.ts', 'svelte.config.js', 'tsconfig.json']

/** Newest (or, with `oldest`, oldest) modification time of the files under `path`. */
function mtime(path, oldest = false) {
  if (!existsSync(path)) return oldest ? 0 : -1
  const stat = statSync(path)
  if (!stat.isDirectory()) return stat.mtimeMs
  let found = oldest ? Number.POSITIVE_INFINITY : -1
  for (const entry of readdirSync(path)) {
    const t = mtime(join(path, entry), oldest)
    found = oldest ? Math.min(found, t) : Math.max(found, t)
  }
  return found === Number.POSITIVE_INFINITY ? 0 : found
}

for (const [workspace, out] of WORKSPACES) {
  const dir = join(root, workspace)
  const output = join(dir, out)
  const newestInput = Math.max(...INPUTS.map((p) => mtime(join(dir, p))))
  // Packages are loaded from their dist at run time (the console does not bundle them), so
  // each is rebuilt only when its own output is missing or older than its sources.
  if (existsSync(output) && mtime(output, true) >= newestInput) continue
  process.stdout.write(`Building ${workspace}… `)
  const started = Date.now()
  const result = spawnSync('npm', ['run', 'build', '-w', workspace], { cwd: root, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] })
  if (result.status !== 0) {
    console.error(`failed:\n${result.stdout}${result.stderr}`)
    process.exit(result.status ?? 1)
  }
  console.log(`done in ${((Date.now() - started) / 1000).toFixed(1)} s`)
}

const port = process.env.PORT || '3000'
process.env.PORT = port
process.env.ORIGIN ||= `http://localhost:${port}`
process.env.LOOM_PUBLIC_URL ||= process.env.ORIGIN
process.env.LOOM_DATA_DIR ||= join(root, '.loom-data')
// adapter-node cuts request bodies at 512 KB by default; the API has its own limit (4 MiB,
// answered 413), which a worker submitting thousands of candidates needs to reach.
process.env.BODY_SIZE_LIMIT ||= '8M'
// On Ctrl-C, connections still busy after this many seconds are closed so the process can end.
process.env.SHUTDOWN_TIMEOUT ||= '5'
const url = process.env.ORIGIN

let interrupted = 0
for (const signal of ['SIGINT', 'SIGTERM']) {
  process.on(signal, () => {
    interrupted++
    if (interrupted === 1) console.log('\nStopping… (Ctrl-C again to exit at once)')
    else process.exit(130)
  })
}

// The adapter-node server: it listens on PORT and stops gracefully on SIGINT and SIGTERM.
await import(pathToFileURL(join(root, 'sveltekit-console/build/index.js')).href)

for (let i = 0; i < 600 && !interrupted; i++) {
  const ok = await fetch(`http://127.0.0.1:${port}/api/health`).then(
    (r) => r.ok,
    () => false,
  )
  if (ok) {
    console.log(
      `\n  Loom console: ${url}\n  Loom API:     ${url}/api   (a worker's LOOM_URL)\n  Data:         ${process.env.LOOM_DATA_DIR}\n\n  Ctrl-C stops.\n`,
    )
    break
  }
  await new Promise((resolve) => setTimeout(resolve, 200))
}
