/**
 * `npm start` (scripts/start.mjs) as a newcomer runs it: the console with the API, and the
 * example worker in a process of its own, on embedded defaults; Ctrl-C stopping both
 * cleanly, and the data still there when it starts again.
 */
import { spawn } from 'node:child_process'
import { join } from 'node:path'
import { afterAll, describe, expect, it } from 'vitest'
import { CONSOLE_DIR, removeDir, startConsole, type ConsoleServer } from './harness'

// Embedded defaults, whatever services the environment points at.
const EMBEDDED = { DATABASE_URL: undefined, TEMPORAL_ADDRESS: undefined, MQTT_URL: undefined, LOOM_TOKEN: undefined }

let dataDir: string | undefined
afterAll(async () => {
  if (dataDir) await removeDir(dataDir)
})

async function json(server: ConsoleServer, path: string, init?: RequestInit) {
  const response = await fetch(`${server.url}${path}`, init)
  return { status: response.status, body: (await response.json()) as unknown }
}

describe('npm start', () => {
  it('serves the console, the API and the example worker; stops on Ctrl-C; keeps its data across a restart', async () => {
    const first = await startConsole({ build: true, env: EMBEDDED })
    dataDir = first.dataDir
    let stopped = false
    try {
      expect(first.output()).toContain(`Loom console:   ${first.url}`)
      expect(first.output()).toContain(`Loom API:       ${first.url}/api`)
      expect(first.output()).toContain(`Example worker: ${first.workerUrl}`)
      // The example worker is a process of its own, on its own port, announced to the console's API as any worker is.
      expect(await (await fetch(`${first.workerUrl}/health`)).json()).toEqual({ status: 'ok', app: 'app-charts' })
      expect(((await json(first, '/api/migrations/app-chart')).body as { workerUrl?: string }).workerUrl).toBe(first.workerUrl)
      const page = await fetch(first.url)
      expect(page.status).toBe(200)
      expect(await page.text()).toContain('Applications: generic chart → own chart')

      const candidates = (await json(first, '/api/migrations/app-chart/candidates')).body as Array<{ id: string; status: string }>
      expect(candidates.length).toBeGreaterThan(0)
      expect(candidates.every((c) => c.status === 'not_started')).toBe(true)
      const queued = await json(first, '/api/migrations/app-chart/queue', {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ candidateId: candidates[0]!.id }),
      })
      expect(queued.status).toBe(202)
      // The example worker answers the dry run, over HTTP.
      const preview = await json(first, '/api/migrations/app-chart/dry-run', {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ candidateId: candidates[0]!.id }),
      })
      expect(preview.status).toBe(200)
      expect((preview.body as { steps: Array<{ files?: unknown[] }> }).steps[0]!.files!.length).toBeGreaterThan(0)

      // An open event stream must not hold the shutdown up.
      const events = await fetch(`${first.url}/api/events`)
      expect(events.headers.get('content-type')).toContain('text/event-stream')
      const started = Date.now()
      const code = await first.stop()
      stopped = true
      expect(code).toBe(0)
      expect(Date.now() - started).toBeLessThan(15_000)
      expect(first.output()).toContain('Stopping…')
      expect(first.output()).not.toContain('exited by itself')
      // Both processes are gone: neither port answers any more.
      for (const url of [first.url, first.workerUrl])
        expect(
          await fetch(`${url}/health`).then(
            () => 'answered',
            () => 'closed',
          ),
        ).toBe('closed')
      await events.body?.cancel().catch(() => {})

      const second = await startConsole({ env: EMBEDDED, dataDir })
      try {
        const again = (await json(second, '/api/migrations/app-chart/candidates')).body as Array<{ id: string; status: string }>
        expect(again.map((c) => [c.id, c.status])).toEqual(candidates.map((c, i) => [c.id, i === 0 ? 'queued' : 'not_started']))
      } finally {
        expect(await second.stop()).toBe(0)
      }
    } finally {
      if (!stopped) await first.stop()
    }
  })
})

describe('npm start with a malformed variable', () => {
  it.each([
    ['LOOM_EXAMPLE_WORKER', 'maybe', 'LOOM_EXAMPLE_WORKER: "maybe" is not a boolean (use true or false)'],
    ['LOOM_EXAMPLE_AUTO_MERGE_MS', '5s', 'LOOM_EXAMPLE_AUTO_MERGE_MS: "5s" is not a number of milliseconds'],
    ['WORKER_PORT', 'eighty', 'WORKER_PORT: "eighty" is not a port number'],
  ])('stops at once on %s=%s, naming it', async (name, value, message) => {
    const child = spawn(process.execPath, [join(CONSOLE_DIR, '..', 'scripts', 'start.mjs'), '--no-build'], {
      env: { ...process.env, [name]: value },
      stdio: ['ignore', 'pipe', 'pipe'],
    })
    let stderr = ''
    child.stderr.on('data', (chunk) => (stderr += chunk))
    const code = await new Promise((resolve) => child.once('exit', resolve))
    expect(code).toBe(1)
    expect(stderr.trim()).toBe(message)
  })
})
