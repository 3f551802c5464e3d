/**
 * Bundles `src/worker.ts` with esbuild and runs it in workerd through Miniflare.
 * `npx tsx serve.ts` serves it on `PORT` (default 8787) of 127.0.0.1 until interrupted;
 * the test imports `startWorkerd`.
 */
import { build } from 'esbuild'
import { Miniflare } from 'miniflare'
import { mkdir } from 'node:fs/promises'
import { fileURLToPath } from 'node:url'

const root = fileURLToPath(new URL('.', import.meta.url))

/** Bundles the Worker for the browser platform (no Node built-ins can slip in); returns its path. */
export async function bundleWorker(): Promise<string> {
  const outfile = `${root}dist/worker.js`
  await mkdir(`${root}dist`, { recursive: true })
  await build({
    entryPoints: [`${root}src/worker.ts`],
    outfile,
    bundle: true,
    format: 'esm',
    platform: 'browser',
    target: 'es2022',
    conditions: ['workerd', 'worker', 'browser'],
    logLevel: 'warning',
  })
  return outfile
}

export interface RunningWorkerd {
  url: string
  dispose(): Promise<void>
}

export async function startWorkerd(options: { port?: number; token?: string } = {}): Promise<RunningWorkerd> {
  const scriptPath = await bundleWorker()
  const mf = new Miniflare({
    modules: true,
    scriptPath,
    compatibilityDate: '2025-07-01',
    durableObjects: { LOOM: 'LoomObject' },
    host: '127.0.0.1',
    port: options.port ?? 0,
    bindings: options.token ? { LOOM_TOKEN: options.token } : {},
  })
  const url = (await mf.ready).toString().replace(/\/$/, '')
  return { url, dispose: () => mf.dispose() }
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  const running = await startWorkerd({
    port: Number(process.env.PORT ?? 8787),
    ...(process.env.LOOM_TOKEN ? { token: process.env.LOOM_TOKEN } : {}),
  })
  console.log(`listening on ${running.url}`)
  process.on('SIGINT', () => void running.dispose().then(() => process.exit(0)))
}
