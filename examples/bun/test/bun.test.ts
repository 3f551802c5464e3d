import { existsSync, statSync } from 'node:fs'
import { createRequire } from 'node:module'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { checkEdges, driveWholeRun, startFakeWorker, startServer, type FakeWorker, type RunningServer } from '../../node/test/whole-run'

const TOKEN = 'bun-example-token'
const main = fileURLToPath(new URL('../src/main.ts', import.meta.url))

/**
 * The Bun binary of the npm package `bun`. Its postinstall script moves the binary of the
 * platform package into `bun/bin/bun.exe`; where install scripts are blocked, that file is
 * a small placeholder and the binary is still in the platform package.
 */
function bunBinary(): string {
  const require = createRequire(import.meta.url)
  const placed = join(dirname(require.resolve('bun/package.json')), 'bin', 'bun.exe')
  if (existsSync(placed) && statSync(placed).size > 1_000_000) return placed
  for (const name of ['bun-linux-x64', 'bun-linux-x64-baseline', 'bun-linux-aarch64', 'bun-darwin-aarch64', 'bun-darwin-x64']) {
    try {
      const binary = join(dirname(require.resolve(`@oven/${name}/package.json`)), 'bin', 'bun')
      if (existsSync(binary)) return binary
    } catch {
      // not this platform's package
    }
  }
  throw new Error('no Bun binary: run npm install in the repository root')
}

describe('examples/bun: loomApp served by Bun.serve', () => {
  let server: RunningServer
  let worker: FakeWorker

  beforeAll(async () => {
    worker = await startFakeWorker()
    server = await startServer(bunBinary(), [main], { PORT: '0', HOST: '127.0.0.1', LOOM_TOKEN: TOKEN })
  })
  afterAll(async () => {
    await server?.stop()
    await worker?.close()
  })

  it('runs in Bun, not Node', async () => {
    expect(await (await fetch(server.url)).text()).toMatch(/^Loom on Bun \d+\.\d+\.\d+$/)
  })

  it('answers health, a JSON 404 and 401 without the token', async () => {
    await checkEdges(`${server.url}/api`, TOKEN)
  })

  it('drives a whole run over HTTP to completed', async () => {
    await driveWholeRun({ api: `${server.url}/api`, token: TOKEN, worker })
  })
})
