/**
 * Big migrations (issue 15), part D: discovering --size candidates on PostgreSQL through a
 * discovery session over HTTP (`loomApp` through `app.request`, or a real socket with
 * --http node: @hono/node-server on 127.0.0.1), parts of --part candidates, into an empty
 * migration and then again with the same list (the resubmit), against a bare set-based insert of
 * the same rows (JSON.stringify, then one `insert … select … from json_array_elements($1)` into a
 * plain table with a primary key), as part B of big-migrations.ts measures it. Goals: first
 * discovery ≤ 3× bare, resubmit ≤ first. The commit alone is timed too (it runs in one call of
 * the schema's commit_discovery, and must stay well within the store's 5 s timeout). Each list is
 * read back whole and checked; rounds alternate which goes first.
 *
 *   npx tsx bench/discoveries.ts --size 100000 --part 5000 --rounds 3 [--http node] [--json]
 */
import { createServer } from 'node:http'
import type { AddressInfo } from 'node:net'
import { pathToFileURL } from 'node:url'
import { parseArgs } from 'node:util'
import { type Candidate, createLoom, localEngine } from '@loom/core'
import { loomApp } from '@loom/hono'
import postgres, { type Sql } from 'postgres'
import { clientOptions, migrate, postgresStore } from '../packages/postgres/src/index'
import { bareInsert, candidates } from './big-migrations'

const GOAL = 3

export interface DiscoveryTiming {
  size: number
  part: number
  rounds: number
  bareMs?: number
  firstMs?: number
  firstCommitMs?: number
  resubmitMs?: number
  resubmitCommitMs?: number
  error?: string
}

type Fetch = (request: Request) => Promise<Response>

/** Part D on PostgreSQL (or PGlite) over `sql`, Loom's tables in `schema`, HTTP through `fetch` of a `loomApp` over the same store. */
export async function measureDiscoveries(
  sql: Sql<any>,
  schema: string,
  fetch: Fetch,
  options: { size: number; part: number; rounds: number },
): Promise<DiscoveryTiming> {
  const { size, part, rounds } = options
  const list = candidates(size)
  const parts: string[] = []
  for (let i = 0; i < size; i += part) parts.push(JSON.stringify({ candidates: list.slice(i, i + part) }))
  const timing: DiscoveryTiming = { size, part, rounds }
  const times = {
    bare: [] as number[],
    first: [] as number[],
    firstCommit: [] as number[],
    resubmit: [] as number[],
    resubmitCommit: [] as number[],
  }
  const call = async (method: string, path: string, body?: string) => {
    const response = await fetch(
      new Request(`http://loom.test${path}`, {
        method,
        ...(body === undefined ? {} : { body, headers: { 'content-type': 'application/json' } }),
      }),
    )
    if (!response.ok) throw new Error(`${method} ${path}: ${response.status} ${await response.text()}`)
    return response.status === 204 ? undefined : response.json()
  }
  const discover = async (migrationId: string, total: number[], commit: number[]) => {
    const start = performance.now()
    const { discoveryId } = (await call('POST', `/migrations/${migrationId}/discoveries`)) as { discoveryId: string }
    for (const body of parts) await call('POST', `/migrations/${migrationId}/discoveries/${discoveryId}/candidates`, body)
    const committing = performance.now()
    await call('POST', `/migrations/${migrationId}/discoveries/${discoveryId}/commit`)
    const end = performance.now()
    total.push(end - start)
    commit.push(end - committing)
  }
  const store = postgresStore(sql, { schema })
  try {
    for (let round = 0; round < rounds; round++) {
      const migrationId = `discover-${round}`
      const table = `"${schema}".bare_discover_${round}`
      await call(
        'POST',
        '/registry/announce',
        JSON.stringify({ id: migrationId, name: migrationId, steps: [{ name: 'bump', workerApp: 'charts' }] }),
      )
      await sql.unsafe(
        `create table ${table} (migration_id text not null, position integer not null, id text not null, kind text, metadata json, state json,
          primary key (migration_id, id))`,
      )
      const bare = async () => {
        const start = performance.now()
        await bareInsert(sql, table, migrationId, list)
        times.bare.push(performance.now() - start)
      }
      if (round % 2 === 0) await bare()
      await discover(migrationId, times.first, times.firstCommit)
      await checkWholeList(store, migrationId, list, 'first discovery')
      await discover(migrationId, times.resubmit, times.resubmitCommit)
      await checkWholeList(store, migrationId, list, 'resubmit')
      if (round % 2 === 1) await bare()
    }
    timing.bareMs = median(times.bare)
    timing.firstMs = median(times.first)
    timing.firstCommitMs = median(times.firstCommit)
    timing.resubmitMs = median(times.resubmit)
    timing.resubmitCommitMs = median(times.resubmitCommit)
  } catch (error) {
    timing.error = (error as Error).message
  }
  return timing
}

async function checkWholeList(store: ReturnType<typeof postgresStore>, migrationId: string, list: Candidate[], after: string) {
  const page = await store.listCandidates(migrationId)
  const ids = page?.candidates.map((c) => c.id) ?? []
  if (ids.length !== list.length || ids.some((id, i) => id !== list[i]!.id) || page!.candidates.some((c) => c.status !== 'not_started')) {
    throw new Error(`wrong list after the ${after}: ${ids.length} candidates, expected ${list.length} in order, not started`)
  }
  if (page!.total !== list.length) throw new Error(`wrong total after the ${after}: ${page!.total}`)
}

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b)
  const mid = sorted.length >> 1
  return sorted.length % 2 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2
}

async function main() {
  const { values } = parseArgs({
    options: {
      size: { type: 'string', default: '100000' },
      part: { type: 'string', default: '5000' },
      rounds: { type: 'string', default: '3' },
      http: { type: 'string', default: 'request' },
      json: { type: 'boolean', default: false },
    },
  })
  const url = process.env.DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/test'
  const sql = postgres(url, { ...clientOptions, max: 4, onnotice: () => {} })
  const schema = `loom_bench_${crypto.randomUUID().slice(0, 8)}_discoveries`
  let failed = false
  let close = async () => {}
  try {
    await migrate(sql, { schema })
    // The store's default timeout: a commit must finish within it.
    const loom = createLoom({ store: postgresStore(sql, { schema }), engine: localEngine(), reconcile: false })
    const app = loomApp(loom, { maxBodyBytes: 4 * 1024 * 1024 })
    let fetch: Fetch = async (request) => app.request(request)
    if (values.http === 'node') {
      const { getRequestListener } = await import('@hono/node-server')
      const server = createServer(getRequestListener(app.fetch))
      await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
      const base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`
      fetch = (request) => globalThis.fetch(new Request(request.url.replace('http://loom.test', base), request))
      close = () => new Promise((resolve) => server.close(() => resolve()))
    }
    const timing = await measureDiscoveries(sql, schema, fetch, {
      size: Number(values.size),
      part: Number(values.part),
      rounds: Number(values.rounds),
    })
    if (timing.error) failed = true
    const first = timing.firstMs! / timing.bareMs!
    const resubmit = timing.resubmitMs! / timing.firstMs!
    if (values.json) console.log(JSON.stringify({ ...timing, http: values.http, goals: { first, resubmit } }, null, 2))
    else if (timing.error) console.error(`error: ${timing.error}`)
    else {
      const ms = (n: number) => `${n.toFixed(0)} ms`
      console.log(
        `discovery of ${timing.size} in parts of ${timing.part} over HTTP (${values.http}), PostgreSQL, median of ${timing.rounds}`,
      )
      console.log(`  bare insert           ${ms(timing.bareMs!)}`)
      console.log(
        `  first discovery       ${ms(timing.firstMs!)} (commit ${ms(timing.firstCommitMs!)}): ${first.toFixed(2)}× bare, goal ≤ ${GOAL}× ${first <= GOAL ? 'met' : 'missed'}`,
      )
      console.log(
        `  resubmit              ${ms(timing.resubmitMs!)} (commit ${ms(timing.resubmitCommitMs!)}): ${resubmit.toFixed(2)}× first, goal ≤ 1× ${resubmit <= 1 ? 'met' : 'missed'}`,
      )
    }
  } catch (error) {
    failed = true
    console.error(error)
  } finally {
    await close()
    await sql.unsafe(`drop schema if exists "${schema}" cascade`).catch(() => {})
    await sql.end()
  }
  process.exit(failed ? 1 : 0)
}

if (import.meta.url === pathToFileURL(process.argv[1]!).href) await main()
