#!/usr/bin/env node
/**
 * `npm start`: builds what is missing or out of date, then runs two processes on embedded
 * defaults: the console with the Loom API under /api (PGlite in `.loom-data/`, the local
 * engine), and beside it the example worker, which announces to that API over HTTP like any
 * other worker and serves its own port. Set DATABASE_URL, TEMPORAL_ADDRESS, MQTT_URL,
 * LOOM_TOKEN, PORT or WORKER_PORT to change a part, LOOM_EXAMPLE_WORKER=false to run the
 * console alone; see docs/guides/console.md. `--no-build` starts what is built as it is (the
 * console's tests do, so that no package is rebuilt under tests running beside them).
 *
 * Ctrl-C stops both: the console stops taking requests and closes the database (its data stays
 * in `.loom-data/`), the worker stops; then this process exits. A second Ctrl-C exits at once.
 */
import { fork, spawnSync } from 'node:child_process'
import { existsSync, readdirSync, statSync } from 'node:fs'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'

const root = dirname(dirname(fileURLToPath(import.meta.url)))
const env = process.env

/** An optional variable through `parse`, or a stop here with a message naming it when `parse` finds nothing. */
function variable(name, fallback, parse, expects) {
  const value = env[name]?.trim()
  if (!value) return fallback
  const parsed = parse(value.toLowerCase())
  if (parsed === undefined) {
    console.error(`${name}: "${value}" ${expects}`)
    process.exit(1)
  }
  return parsed
}
const boolean = (v) => (['1', 'true', 'yes', 'on'].includes(v) ? true : ['0', 'false', 'no', 'off'].includes(v) ? false : undefined)
const whole = (v) => (/^\d+$/.test(v) ? Number(v) : undefined)

const port = variable('PORT', 3000, whole, 'is not a port number')
// A console that talks to a Loom elsewhere (LOOM_URL) hosts no API for the example to join.
const withWorker = variable('LOOM_EXAMPLE_WORKER', !env.LOOM_URL, boolean, 'is not a boolean (use true or false)')
const workerPort = variable('WORKER_PORT', 4000, whole, 'is not a port number')
const autoMergeMs = variable('LOOM_EXAMPLE_AUTO_MERGE_MS', 5000, whole, 'is not a number of milliseconds')

/** What npm start runs, in build order, and where each puts its output. */
const WORKSPACES = [
  ['packages/core', 'dist'],
  ['packages/hono', 'dist'],
  ['packages/client', 'dist'],
  ['packages/postgres', 'dist'],
  ['packages/mqtt', 'dist'],
  ['packages/temporal', 'dist'],
  ['sveltekit-console', 'build'],
  ...(withWorker
    ? [
        ['packages/worker', 'dist'],
        ['examples/worker', 'dist'],
      ]
    : []),
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

for (const [workspace, out] of process.argv.includes('--no-build') ? [] : WORKSPACES) {
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

const url = env.ORIGIN || `http://localhost:${port}`
const dataDir = env.LOOM_DATA_DIR || join(root, '.loom-data')
// The console listens on every interface unless HOST says otherwise; the worker reaches it on loopback then.
const host = !env.HOST || env.HOST === '0.0.0.0' || env.HOST === '::' ? '127.0.0.1' : env.HOST.includes(':') ? `[${env.HOST}]` : env.HOST
const api = `http://${host}:${port}/api`

/** The processes this one runs, by what they are; each is started with an IPC channel and shares this output. */
const children = new Map()
let interrupted = 0

function start(name, script, childEnv) {
  const child = fork(script, [], { cwd: root, env: childEnv, stdio: ['ignore', 'inherit', 'inherit', 'ipc'] })
  children.set(name, child)
  return new Promise((resolve) =>
    child.once('exit', (code, signal) => {
      if (!interrupted) console.error(`\n${name} exited by itself (${signal ?? `code ${code}`})`)
      resolve(code ?? 1)
    }),
  )
}

const consoleExited = start('The console', join(root, 'sveltekit-console/build/index.js'), {
  ...env,
  PORT: String(port),
  ORIGIN: url,
  LOOM_DATA_DIR: dataDir,
  // adapter-node cuts request bodies at 512 KB by default; the API has its own limit (4 MiB,
  // answered 413), which a worker submitting thousands of candidates needs to reach.
  BODY_SIZE_LIMIT: env.BODY_SIZE_LIMIT || '8M',
  // On Ctrl-C, connections still busy after this many seconds are closed so the process can end.
  SHUTDOWN_TIMEOUT: env.SHUTDOWN_TIMEOUT || '5',
})

for (const signal of ['SIGINT', 'SIGTERM']) {
  process.on(signal, () => {
    interrupted++
    if (interrupted === 1) {
      console.log('\nStopping… (Ctrl-C again to exit at once)')
      // A Ctrl-C in a terminal reaches the children too, but a signal sent to this process alone does not.
      for (const child of children.values()) child.kill(signal)
    } else {
      for (const child of children.values()) child.kill('SIGKILL')
      process.exit(130)
    }
  })
}

// Once the console has ended, asked to or not, the worker has nothing left to talk to.
void consoleExited.then(async (code) => {
  const running = [...children.values()].filter((child) => child.exitCode === null && child.signalCode === null)
  for (const child of running) child.kill('SIGTERM')
  await Promise.all(running.map((child) => new Promise((resolve) => child.once('exit', resolve))))
  process.exit(interrupted ? code : code || 1)
})

/** Polls `check` until it is true; false when the console ends or Ctrl-C comes first. */
async function until(check) {
  while (!interrupted && children.get('The console').exitCode === null) {
    if (await check()) return true
    await new Promise((resolve) => setTimeout(resolve, 200))
  }
  return false
}

const healthy = () =>
  fetch(`${api}/health`).then(
    (r) => r.ok,
    () => false,
  )

if (await until(healthy)) {
  let workerUrl
  if (withWorker) {
    const exited = start('The example worker', join(root, 'examples/worker/dist/bin.js'), {
      ...env,
      LOOM_URL: api,
      // The worker reads the tokens as the console does and presents its own (LOOM_WORKERS' app-charts, else LOOM_WORKER_TOKEN, else LOOM_TOKEN).
      WORKER_PORT: String(workerPort),
      LOOM_DATA_DIR: join(dataDir, 'example-worker'),
      AUTO_MERGE_MS: String(autoMergeMs),
      // It announces over HTTP, whatever broker the console listens to.
      MQTT_URL: '',
    })
    const ready = new Promise((resolve) => children.get('The example worker').once('message', (m) => resolve(m?.type === 'ready' && m.url)))
    workerUrl = await Promise.race([ready, exited.then(() => undefined)])
    if (!workerUrl && !interrupted) console.error('The console runs without the example worker.')
  }
  if (!interrupted) {
    console.log(
      `\n  Loom console:   ${url}\n  Loom API:       ${url}/api   (a worker's LOOM_URL)\n` +
        (workerUrl ? `  Example worker: ${workerUrl}   (open pull requests: ${workerUrl}/prs)\n` : '') +
        `  Data:           ${dataDir}\n\n  Ctrl-C stops.\n`,
    )
  }
}
