/**
 * Child processes the fault tests own (a Temporal dev server, a Mosquitto): spawned in a process
 * group of their own so they can be stopped by PID, with the start of their output kept for errors.
 */
import { spawn, type ChildProcess } from 'node:child_process'
import { createServer, Socket } from 'node:net'

interface OwnedProcess {
  readonly child: ChildProcess
  readonly pid: number
  /** The first few KB the process printed (a crash puts its reason first). */
  output(): string
  exited(): boolean
  /** Resolves once the process has exited. */
  readonly exit: Promise<void>
}

function spawnOwned(command: string, args: string[], options: { cwd?: string } = {}): OwnedProcess {
  // detached: the pid is a process group holding the process and anything it spawns.
  const child = spawn(command, args, { stdio: ['ignore', 'pipe', 'pipe'], detached: true, ...(options.cwd ? { cwd: options.cwd } : {}) })
  if (child.pid === undefined) throw new Error(`could not spawn ${command}`)
  let output = ''
  const keep = (chunk: Buffer) => {
    if (output.length < 6000) output = (output + chunk.toString()).slice(0, 6000)
  }
  child.stdout?.on('data', keep)
  child.stderr?.on('data', keep)
  let gone = false
  const exit = new Promise<void>((resolve) => {
    child.once('exit', () => {
      gone = true
      resolve()
    })
  })
  return { child, pid: child.pid, output: () => output, exited: () => gone, exit }
}

/**
 * Stops the process by its PID: SIGTERM to its group, SIGKILL after `graceMs`. Resolves with the
 * signal that ended it, so a test can say whether the process shut down or had to be killed.
 */
async function stopByPid(owned: OwnedProcess, graceMs = 5_000): Promise<'exited' | 'SIGTERM' | 'SIGKILL'> {
  if (owned.exited()) return 'exited'
  signalGroup(owned.pid, 'SIGTERM')
  let timer: NodeJS.Timeout | undefined
  const killed = new Promise<'SIGKILL'>((resolve) => {
    timer = setTimeout(() => {
      signalGroup(owned.pid, 'SIGKILL')
      resolve('SIGKILL')
    }, graceMs)
  })
  const how = await Promise.race([owned.exit.then(() => 'SIGTERM' as const), killed])
  clearTimeout(timer)
  // After a SIGKILL, exit follows at once; wait for it so the port is free before a restart.
  await owned.exit
  return how
}

function signalGroup(pid: number, signal: NodeJS.Signals) {
  try {
    process.kill(-pid, signal)
  } catch {
    // the group is gone already
  }
}

/** A TCP port on 127.0.0.1 that nothing listens on right now. */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer()
    server.once('error', reject)
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as { port: number }
      server.close(() => resolve(port))
    })
  })
}

/** Whether something accepts TCP connections on 127.0.0.1:`port`. */
export function listening(port: number, timeoutMs = 1_000): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = new Socket()
    const done = (ok: boolean) => {
      socket.destroy()
      resolve(ok)
    }
    socket.setTimeout(timeoutMs, () => done(false))
    socket.once('error', () => done(false))
    socket.connect(port, '127.0.0.1', () => done(true))
  })
}

/** Polls `probe` until it returns true, for at most `ms`; false when the time ran out or `gaveUp` says so. */
export async function pollUntil(
  probe: () => Promise<boolean> | boolean,
  ms: number,
  gaveUp: () => boolean = () => false,
): Promise<boolean> {
  const deadline = Date.now() + ms
  for (let delay = 20; ; delay = Math.min(delay * 2, 250)) {
    if (await probe()) return true
    if (Date.now() >= deadline || gaveUp()) return false
    await new Promise((resolve) => setTimeout(resolve, delay))
  }
}

/** A server process the test stops by PID and starts again with the same command. */
export interface Restartable {
  pid(): number | undefined
  stop(graceMs?: number): Promise<'exited' | 'SIGTERM' | 'SIGKILL'>
  /** Starts it; resolves once `ready` answers true, and throws with its output if it exits or is not ready in time. */
  start(): Promise<void>
}

export function restartable(options: {
  name: string
  command: string
  args: string[]
  cwd: string
  ready: () => Promise<boolean>
  readyWithinMs: number
}): Restartable {
  const { name, command, args, cwd, ready, readyWithinMs } = options
  let current: OwnedProcess | undefined
  return {
    pid: () => (current && !current.exited() ? current.pid : undefined),
    async stop(graceMs = 5_000) {
      if (!current) return 'exited'
      const how = await stopByPid(current, graceMs)
      current = undefined
      return how
    },
    async start() {
      if (current && !current.exited()) throw new Error(`${name} is still running (pid ${current.pid})`)
      const owned = spawnOwned(command, args, { cwd })
      current = owned
      if (!(await pollUntil(ready, readyWithinMs, () => owned.exited()))) {
        const why = owned.exited() ? 'exited while starting' : `was not ready within ${readyWithinMs / 1000} s`
        throw new Error(`${name} ${why}: ${owned.output()}`)
      }
    },
  }
}
