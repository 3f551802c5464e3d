/**
 * What the browser tests share: the built console and the example worker started as
 * `npm start` starts them (scripts/start.mjs) on free ports with a fresh data folder, a real
 * Chromium driven by playwright-core, axe-core run in the page, and screenshots saved under
 * `test-results/screenshots/`.
 */
import { spawn, type ChildProcess } from 'node:child_process'
import { existsSync } from 'node:fs'
import { mkdir, mkdtemp, readFile, rm } from 'node:fs/promises'
import { createRequire } from 'node:module'
import { createServer } from 'node:net'
import { tmpdir } from 'node:os'
import { dirname, join, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'
import { chromium, type Browser, type Page } from 'playwright-core'

export const CONSOLE_DIR = resolve(dirname(fileURLToPath(import.meta.url)), '..')
const SCREENSHOT_DIR = join(CONSOLE_DIR, 'test-results', 'screenshots')
const BUILD_ENTRY = join(CONSOLE_DIR, 'build', 'index.js')
const START_SCRIPT = join(CONSOLE_DIR, '..', 'scripts', 'start.mjs')

/** Debian's Chromium; `CHROMIUM_PATH` points elsewhere. */
const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium'
const CHROMIUM_FLAGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
]

async function freePort(): Promise<number> {
  return new Promise((resolvePort, reject) => {
    const server = createServer()
    server.once('error', reject)
    server.listen(0, '127.0.0.1', () => {
      const address = server.address()
      server.close(() => (typeof address === 'object' && address ? resolvePort(address.port) : reject(new Error('no port'))))
    })
  })
}

export interface ConsoleServer {
  url: string
  /** Where the example worker answers (unless `LOOM_EXAMPLE_WORKER=false`). */
  workerUrl: string
  dataDir: string
  process: ChildProcess
  output: () => string
  /** Sends SIGINT to its processes, as Ctrl-C does, and resolves with the exit code of `npm start` once it has ended. */
  stop(): Promise<number | null>
}

export interface StartOptions {
  /** Extra environment, e.g. `DATABASE_URL`. */
  env?: Record<string, string | undefined>
  /** Reuse a data folder (to prove data survives a restart). */
  dataDir?: string
  /** Build what is out of date first, as `npm start` does; by default what is built is started as it is. */
  build?: boolean
}

/** Starts the built console and the example worker as `npm start` does, and waits until it says both are up. */
export async function startConsole(options: StartOptions = {}): Promise<ConsoleServer> {
  if (!existsSync(BUILD_ENTRY)) throw new Error(`${BUILD_ENTRY} is missing: run \`npm run build\` first (npm test does)`)
  const [port, workerPort] = [await freePort(), await freePort()]
  const url = `http://127.0.0.1:${port}`
  const dataDir = options.dataDir ?? (await mkdtemp(join(tmpdir(), 'loom-console-test-')))
  const env: Record<string, string | undefined> = {
    ...process.env,
    PORT: String(port),
    HOST: '127.0.0.1',
    ORIGIN: url,
    WORKER_PORT: String(workerPort),
    LOOM_DATA_DIR: dataDir,
    // Pull requests merge quickly so a run goes from queued to its manual review in seconds.
    LOOM_EXAMPLE_AUTO_MERGE_MS: '200',
    ...options.env,
  }
  for (const key of Object.keys(env)) if (env[key] === undefined) delete env[key]
  const args = options.build ? [START_SCRIPT] : [START_SCRIPT, '--no-build']
  // A process group of its own, as a terminal gives `npm start`: Ctrl-C and a forced stop reach all its processes.
  const child = spawn(process.execPath, args, {
    cwd: CONSOLE_DIR,
    env: env as NodeJS.ProcessEnv,
    stdio: ['ignore', 'pipe', 'pipe'],
    detached: true,
  })
  const signalGroup = (signal: NodeJS.Signals) => {
    try {
      process.kill(-child.pid!, signal)
    } catch {
      // the group has ended already
    }
  }
  let output = ''
  child.stdout!.on('data', (chunk) => (output += chunk))
  child.stderr!.on('data', (chunk) => (output += chunk))
  let stopping = false
  const exited = new Promise<number | null>((resolveExit) =>
    child.once('exit', (code, signal) => {
      // A console that dies on its own is a failure worth reading about.
      if (!stopping) console.error(`the console at ${url} exited by itself (code ${code}, signal ${signal}):\n${output}`)
      resolveExit(code)
    }),
  )

  // The start script says so once the API answers and the example worker has announced its migration.
  const deadline = Date.now() + 90_000
  while (!output.includes(`Loom console:   ${url}`)) {
    if (child.exitCode !== null) throw new Error(`the console exited with ${child.exitCode} before it was up:\n${output}`)
    if (Date.now() > deadline) {
      signalGroup('SIGKILL')
      throw new Error(`the console was not up within 90 s:\n${output}`)
    }
    await new Promise((r) => setTimeout(r, 100))
  }

  return {
    url,
    workerUrl: `http://localhost:${workerPort}`,
    dataDir,
    process: child,
    output: () => output,
    async stop() {
      stopping = true
      // As Ctrl-C in a terminal: every process of the group gets SIGINT (and the script passes it on once more).
      if (child.exitCode === null) signalGroup('SIGINT')
      const timer = setTimeout(() => signalGroup('SIGKILL'), 20_000)
      const code = await exited
      clearTimeout(timer)
      return code
    },
  }
}

/** Drops a test's own schema from the PostgreSQL of DATABASE_URL (nothing to do without one). */
export async function dropSchema(schema: string): Promise<void> {
  if (!process.env.DATABASE_URL) return
  const { default: postgres } = await import('postgres')
  const sql = postgres(process.env.DATABASE_URL, { max: 1, onnotice: () => {} })
  try {
    await sql.unsafe(`drop schema if exists "${schema}" cascade`)
  } finally {
    await sql.end()
  }
}

export async function removeDir(dir: string): Promise<void> {
  await rm(dir, { recursive: true, force: true })
}

export async function launchBrowser(): Promise<Browser> {
  if (!existsSync(CHROMIUM)) throw new Error(`no Chromium at ${CHROMIUM}: install it (apt-get install -y chromium) or set CHROMIUM_PATH`)
  return chromium.launch({ executablePath: CHROMIUM, args: CHROMIUM_FLAGS })
}

/** Waits until the console's JavaScript has taken over the page (its root layout has mounted). */
export async function hydrated(page: Page): Promise<void> {
  await page.waitForSelector('[data-hydrated="true"]', { timeout: 30_000 })
}

/** Saves a full-page screenshot and returns its path. */
export async function screenshot(page: Page, name: string): Promise<string> {
  await mkdir(SCREENSHOT_DIR, { recursive: true })
  const path = join(SCREENSHOT_DIR, `${name}.png`)
  await page.screenshot({ path, fullPage: true })
  console.log(`screenshot: ${path}`)
  return path
}

let axeSource: string | undefined

export interface AxeViolation {
  id: string
  impact: string | null
  help: string
  nodes: string[]
}

/** Runs axe-core in the page; returns the serious and critical violations. */
export async function seriousViolations(page: Page): Promise<AxeViolation[]> {
  axeSource ??= await readFile(createRequire(import.meta.url).resolve('axe-core/axe.min.js'), 'utf8')
  // Evaluated through the DevTools protocol rather than added as a <script>: the console's
  // Content-Security-Policy refuses inline scripts, which is what it is for.
  await page.evaluate(`${axeSource}\n;undefined`)
  return page.evaluate(async () => {
    const axe = (
      window as unknown as {
        axe: {
          run: (
            context: Document,
            options: object,
          ) => Promise<{ violations: Array<{ id: string; impact: string | null; help: string; nodes: Array<{ target: unknown[] }> }> }>
        }
      }
    ).axe
    const result = await axe.run(document, { resultTypes: ['violations'] })
    return result.violations
      .filter((v) => v.impact === 'serious' || v.impact === 'critical')
      .map((v) => ({ id: v.id, impact: v.impact, help: v.help, nodes: v.nodes.slice(0, 5).map((n) => JSON.stringify(n.target)) }))
  })
}
