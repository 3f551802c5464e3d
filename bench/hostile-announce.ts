/**
 * The hostile request: a 4 MiB announce of 1.4 M empty steps, sent to loomApp on a
 * real server (@hono/node-server in a child process, memory store, local engine), while
 * `/health` is asked every 20 ms from this process. Each ping is its own request, sent on the
 * clock whether or not the previous one has answered, so a server that stalls shows it as the
 * latency of the pings sent meanwhile. Baselines in the same run: `/health` alone, and a valid
 * announce of 100 steps. Prints one row per round and measurement.
 *
 *   npx tsx bench/hostile-announce.ts      (ROUNDS=3 STEPS=1398000)
 */
import { serve } from '@hono/node-server'
import { createLoom, localEngine, memoryStore } from '@loom/core'
import { type ChildProcess, fork } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import { loomApp } from '../packages/hono/src/index'

const ROUNDS = Number(process.env.ROUNDS ?? 3)
/** 1,398,000 `{}` fill 4 MiB less 273 bytes: the largest such body the default body limit admits. */
const STEPS = Number(process.env.STEPS ?? 1_398_000)
const PING_MS = 20

/** Child: serves loomApp and reports its port. */
async function child() {
  const loom = createLoom({ store: memoryStore(), engine: localEngine(), onError: () => {} })
  await loom.ready
  const app = loomApp(loom, { onError: () => {} })
  serve({ fetch: app.fetch, hostname: '127.0.0.1', port: 0 }, (info) => process.send!({ port: info.port }))
}

interface Row {
  what: string
  status: number | string
  announceMs?: number
  pings: number[]
}

const percentile = (values: number[], p: number) => {
  const sorted = [...values].sort((a, b) => a - b)
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))] ?? Number.NaN
}

async function parent() {
  const server: ChildProcess = fork(fileURLToPath(import.meta.url), ['--serve'], { execArgv: ['--import', 'tsx'], stdio: 'inherit' })
  const { port } = await new Promise<{ port: number }>((resolve) => server.once('message', resolve as never))
  const base = `http://127.0.0.1:${port}`
  const hostile = new TextEncoder().encode(`{"id":"x","name":"x","steps":[${'{},'.repeat(STEPS - 1)}{}]}`)
  const valid = new TextEncoder().encode(
    JSON.stringify({
      id: 'valid',
      name: 'Valid',
      workerUrl: 'http://127.0.0.1:9/worker',
      steps: Array.from({ length: 100 }, (_, i) => ({ name: `step-${i}`, workerApp: 'charts', config: { chart: 'app' } })),
    }),
  )

  const ping = async () => {
    const started = performance.now()
    const response = await fetch(`${base}/health`)
    await response.arrayBuffer()
    if (response.status !== 200) throw new Error(`/health answered ${response.status}`)
    return performance.now() - started
  }
  const announce = async (body: Uint8Array) => {
    const started = performance.now()
    const response = await fetch(`${base}/registry/announce`, { method: 'POST', headers: { 'content-type': 'application/json' }, body })
    const answer = (await response.json()) as { error?: string }
    return { status: response.status, ms: performance.now() - started, error: answer.error }
  }

  /** `/health` every 20 ms while `during` runs (and for `quietMs` alone when there is nothing to run). */
  const measure = async (during: () => Promise<{ status: number; ms: number } | undefined>) => {
    const pings: Array<Promise<number>> = []
    const timer = setInterval(() => pings.push(ping()), PING_MS)
    await new Promise((resolve) => setTimeout(resolve, 100))
    const result = await during()
    await new Promise((resolve) => setTimeout(resolve, 100))
    clearInterval(timer)
    return { result, pings: await Promise.all(pings) }
  }

  try {
    // Warm-up: connections, JIT of the routes and of the refusal.
    for (let i = 0; i < 20; i++) await ping()
    await announce(valid)
    const first = await announce(hostile)
    console.log(
      `Node ${process.version}; hostile body ${hostile.length} bytes (${STEPS} steps), answered ${first.status}: ${first.error}\n` +
        `/health every ${PING_MS} ms from another process; ${ROUNDS} rounds\n`,
    )

    const rows: Row[] = []
    for (let round = 1; round <= ROUNDS; round++) {
      const bare = await measure(async () => {
        await new Promise((resolve) => setTimeout(resolve, 1_000))
        return undefined
      })
      rows.push({ what: `round ${round}: /health alone (1.2 s)`, status: '-', pings: bare.pings })
      const ok = await measure(() => announce(valid))
      rows.push({ what: `round ${round}: valid 100-step announce`, status: ok.result!.status, announceMs: ok.result!.ms, pings: ok.pings })
      const bad = await measure(() => announce(hostile))
      rows.push({
        what: `round ${round}: hostile 1.4 M-step announce`,
        status: bad.result!.status,
        announceMs: bad.result!.ms,
        pings: bad.pings,
      })
    }

    const cell = (value: number | undefined) => (value === undefined ? '-' : value.toFixed(1)).padStart(9)
    console.log(`${'measurement'.padEnd(40)} status  announce ms  pings  /health p50   p99       max`)
    for (const row of rows) {
      console.log(
        `${row.what.padEnd(40)} ${String(row.status).padStart(6)} ${cell(row.announceMs)}   ${String(row.pings.length).padStart(5)} ` +
          `${cell(percentile(row.pings, 50))} ${cell(percentile(row.pings, 99))} ${cell(Math.max(...row.pings))}`,
      )
    }
  } finally {
    server.kill()
  }
}

if (process.argv.includes('--serve')) await child()
else await parent()
