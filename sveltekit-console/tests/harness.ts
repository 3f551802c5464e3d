/**
 * What the browser tests share: the built console started as its own process on a free
 * port with a fresh data folder, a real Chromium driven by playwright-core, axe-core run in
 * the page, and screenshots saved under `test-results/screenshots/`.
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
export const SCREENSHOT_DIR = join(CONSOLE_DIR, 'test-results', 'screenshots')
const BUILD_ENTRY = join(CONSOLE_DIR, 'build', 'index.js')

/** Debian's Chromium; `CHROMIUM_PATH` points elsewhere. */
export const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium'
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

export async function freePort(): Promise<number> {
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
  dataDir: string
  process: ChildProcess
  output: () => string
  /** Sends SIGINT and resolves with the exit code once the process has ended. */
  stop(): Promise<number | null>
}

export interface StartOptions {
  /** Extra environment, e.g. `DATABASE_URL`. */
  env?: Record<string, string | undefined>
  /** Reuse a data folder (to prove data survives a restart). */
  dataDir?: string
  /** Start `scripts/start.mjs` (what `npm start` runs) instead of the build directly. */
  viaStartScript?: boolean
}

/** Starts the built console and waits until its API answers. */
export async function startConsole(options: StartOptions = {}): Promise<ConsoleServer> {
  if (!existsSync(BUILD_ENTRY)) throw new Error(`${BUILD_ENTRY} is missing: run \`npm run build\` first (npm test does)`)
  const port = await freePort()
  const url = `http://127.0.0.1:${port}`
  const dataDir = options.dataDir ?? (await mkdtemp(join(tmpdir(), 'loom-console-test-')))
  const env: Record<string, string | undefined> = {
    ...process.env,
    PORT: String(port),
    HOST: '127.0.0.1',
    ORIGIN: url,
    LOOM_PUBLIC_URL: url,
    LOOM_DATA_DIR: dataDir,
    // As scripts/start.mjs sets it: the API's own body limit (4 MiB) applies, not adapter-node's 512 KB.
    BODY_SIZE_LIMIT: '8M',
    // Pull requests merge quickly so a run goes from queued to its manual review in seconds.
    LOOM_EXAMPLE_AUTO_MERGE_MS: '200',
    ...options.env,
  }
  for (const key of Object.keys(env)) if (env[key] === undefined) delete env[key]
  const script = options.viaStartScript ? join(CONSOLE_DIR, '..', 'scripts', 'start.mjs') : BUILD_ENTRY
  const child = spawn(process.execPath, [script], { cwd: CONSOLE_DIR, env: env as NodeJS.ProcessEnv, stdio: ['ignore', 'pipe', 'pipe'] })
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

  const deadline = Date.now() + 90_000
  for (;;) {
    if (child.exitCode !== null) throw new Error(`the console exited with ${child.exitCode} before answering:\n${output}`)
    const ok = await fetch(`${url}/api/health`).then(
      (r) => r.ok,
      () => false,
    )
    if (ok) break
    if (Date.now() > deadline) {
      child.kill('SIGKILL')
      throw new Error(`the console did not answer within 90 s:\n${output}`)
    }
    await new Promise((r) => setTimeout(r, 200))
  }

  return {
    url,
    dataDir,
    process: child,
    output: () => output,
    async stop() {
      stopping = true
      if (child.exitCode === null) child.kill('SIGINT')
      const timer = setTimeout(() => child.kill('SIGKILL'), 20_000)
      const code = await exited
      clearTimeout(timer)
      return code
    },
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
  await page.addScriptTag({ content: axeSource })
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
