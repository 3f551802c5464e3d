/**
 * The one backend of this server process. Kept on `globalThis` so that Vite's module
 * reloading in development does not start a second Loom beside the first.
 */
import { env } from '$env/dynamic/private'
import { startBackend, type Backend } from './backend'
import { describeConfig, readConfig, type ConsoleConfig } from './config'

interface Holder {
  config?: ConsoleConfig
  backend?: Promise<Backend>
}

const holder: Holder = ((globalThis as Record<symbol, Holder>)[Symbol.for('loom.console.backend')] ??= {})

/** The configuration, read once. */
export function config(): ConsoleConfig {
  return (holder.config ??= readConfig(env))
}

/** The backend, started on first use. A backend that failed to start is retried on the next call. */
export function backend(): Promise<Backend> {
  if (!holder.backend) {
    const cfg = config()
    holder.backend = startBackend(cfg).then(
      (b) => {
        console.log(`[loom console] ${describeConfig(cfg).join('; ')}`)
        return b
      },
      (error) => {
        holder.backend = undefined
        throw error
      },
    )
  }
  return holder.backend
}

/** Closes the backend, if one was started. */
export async function closeBackend(): Promise<void> {
  const started = holder.backend
  holder.backend = undefined
  if (started) await (await started.catch(() => undefined))?.close()
}
