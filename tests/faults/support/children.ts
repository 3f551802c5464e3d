/** Child processes of the fault suite: started with the Loom packages from source, killed by their own pid. */
import { spawn, type ChildProcess } from 'node:child_process'
import { createServer } from 'node:net'
import { fileURLToPath } from 'node:url'

const SOURCES = fileURLToPath(new URL('./sources.mjs', import.meta.url))

export interface Child {
  readonly pid: number
  /** Everything it wrote to stdout and stderr so far (the last 20 000 characters). */
  output(): string
  /** True once it has exited. */
  exited(): boolean
  /** Sends `signal` and resolves once the process has exited (SIGKILL after 5 s of SIGTERM). */
  kill(signal?: NodeJS.Signals): Promise<void>
}

/** A free TCP port on 127.0.0.1 (free when asked: the caller listens on it next). */
export async function freePort(): Promise<number> {
  const server = createServer()
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', () => resolve()))
  const address = server.address()
  await new Promise<void>((resolve) => server.close(() => resolve()))
  if (!address || typeof address === 'string') throw new Error('no port')
  return address.port
}

/**
 * Starts `support/<script>` under tsx and resolves once it prints `ready`, within `timeoutMs`;
 * rejects with its output when it exits or stays silent.
 */
export async function startChild(script: string, env: Record<string, string>, timeoutMs = 30_000): Promise<Child> {
  const path = fileURLToPath(new URL(`./${script}`, import.meta.url))
  const child: ChildProcess = spawn(process.execPath, ['--import', 'tsx', '--import', SOURCES, path], {
    env: { ...process.env, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  })
  let output = ''
  const keep = (chunk: Buffer) => {
    output = (output + chunk.toString()).slice(-20_000)
  }
  child.stdout!.on('data', keep)
  child.stderr!.on('data', keep)
  const exit = new Promise<void>((resolve) => child.once('exit', () => resolve()))
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`${script} not ready in ${timeoutMs} ms:\n${output}`)), timeoutMs)
    const onData = () => {
      if (/^ready\b/m.test(output)) {
        clearTimeout(timer)
        child.stdout!.off('data', onData)
        resolve()
      }
    }
    child.stdout!.on('data', onData)
    child.once('exit', (code, signal) => {
      clearTimeout(timer)
      reject(new Error(`${script} exited (${code ?? signal}) before it was ready:\n${output}`))
    })
  })
  const handle: Child = {
    pid: child.pid!,
    output: () => output,
    exited: () => child.exitCode !== null || child.signalCode !== null,
    async kill(signal = 'SIGKILL') {
      if (handle.exited()) return
      child.kill(signal)
      const hard = signal === 'SIGKILL' ? undefined : setTimeout(() => child.kill('SIGKILL'), 5_000)
      await exit
      clearTimeout(hard)
    },
  }
  return handle
}

/** Runs `support/<script>` to its end and returns its stdout; rejects with its output when it fails or takes over `timeoutMs`. */
export async function runChild(script: string, env: Record<string, string>, timeoutMs = 30_000): Promise<string> {
  const path = fileURLToPath(new URL(`./${script}`, import.meta.url))
  const child = spawn(process.execPath, ['--import', 'tsx', '--import', SOURCES, path], {
    env: { ...process.env, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  })
  let stdout = ''
  let stderr = ''
  child.stdout.on('data', (chunk: Buffer) => (stdout += chunk))
  child.stderr.on('data', (chunk: Buffer) => (stderr += chunk))
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      child.kill('SIGKILL')
      reject(new Error(`${script} did not end in ${timeoutMs} ms:\n${stderr}`))
    }, timeoutMs)
    child.once('exit', (code) => {
      clearTimeout(timer)
      if (code === 0) resolve(stdout)
      else reject(new Error(`${script} exited with ${code}:\n${stderr}`))
    })
  })
}
