/**
 * One fault test's world: its own PostgreSQL schema on the real server, a TCP proxy in
 * front of it, a Loom server process behind the proxy and a counting worker process, each
 * of which the test can cut, kill and restart. `close` stops what it started and drops the schema.
 */
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import postgres from 'postgres'
import { type Child, freePort, runChild, startChild } from './children'
import { type Logged, readLog } from './log'
import { type TcpProxy, tcpProxy } from './proxy'

const DATABASE_URL = process.env.DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/test'

/** A run as the store keeps it (the fields the checks read). */
export interface StoredRun {
  runId: string
  attempt: number
  state: 'queued' | 'running' | 'completed' | 'failed' | 'cancelled' | 'dequeued'
  currentStep: number
  steps: Array<{ result: { stepName: string; success: boolean; metadata?: Record<string, string> }; done: boolean }>
  stepStartedAt?: string
  stepDispatchedAt?: string
  owner?: string
}

export interface Fleet {
  readonly schema: string
  readonly instanceId: string
  /** The PostgreSQL application_name of the Loom server's connections. */
  readonly appName: string
  readonly proxy: TcpProxy
  /** Loom's API base, `http://127.0.0.1:<port>/api` (the same across restarts). */
  readonly loomUrl: string
  /** Where Loom dispatches to the worker (the same across restarts). */
  readonly workerUrl: string
  loom(): Child
  worker(): Child
  /** Starts the Loom server again, with the same instanceId, port and schema. */
  restartLoom(): Promise<Child>
  /** Starts the worker again on the same port and log; returns its generation number. */
  restartWorker(): Promise<number>
  /** The worker's log, every generation. */
  log(): Logged[]
  /** The migration's runs, read from the store directly (Loom may be down). */
  storedRuns(migrationId: string): Promise<Map<string, StoredRun | undefined>>
  /** Terminates the Loom server's database connections (`pg_terminate_backend`); resolves with how many. */
  terminateBackends(): Promise<number>
  /** Output of the processes, for a failing test's message. */
  output(): string
  close(): Promise<void>
}

export async function startFleet(options: { name: string; migrations: string[] }): Promise<Fleet> {
  const schema = `faults_${options.name.replace(/[^a-z0-9]/g, '_')}_${Math.random().toString(36).slice(2, 8)}`
  const instanceId = `loom-${options.name}`
  const appName = `loom-faults-${schema}`
  const admin = postgres(DATABASE_URL, { max: 2, onnotice: () => {} })
  const target = new URL(DATABASE_URL)
  const proxy = await tcpProxy({ host: target.hostname, port: Number(target.port || 5432) })
  const proxied = new URL(DATABASE_URL)
  proxied.hostname = '127.0.0.1'
  proxied.port = String(proxy.port)
  const [loomPort, workerPort] = [await freePort(), await freePort()]
  const dir = mkdtempSync(join(tmpdir(), 'loom-faults-'))
  const logPath = join(dir, 'worker.jsonl')
  const loomUrl = `http://127.0.0.1:${loomPort}/api`
  const workerUrl = `http://127.0.0.1:${workerPort}`
  const outputs: string[] = []

  const startLoom = () =>
    startChild('loom-main.ts', {
      FAULTS_DATABASE_URL: proxied.href,
      FAULTS_SCHEMA: schema,
      FAULTS_PORT: String(loomPort),
      FAULTS_INSTANCE_ID: instanceId,
      FAULTS_APP_NAME: appName,
    })
  let generation = 0
  const startWorker = () => {
    generation++
    return startChild('worker-main.ts', {
      FAULTS_LOOM_URL: loomUrl,
      FAULTS_PORT: String(workerPort),
      FAULTS_LOG: logPath,
      FAULTS_MIGRATIONS: options.migrations.join(','),
      FAULTS_GENERATION: String(generation),
    })
  }

  let loom: Child | undefined
  let worker: Child | undefined
  const fleet: Fleet = {
    schema,
    instanceId,
    appName,
    proxy,
    loomUrl,
    workerUrl,
    loom: () => loom!,
    worker: () => worker!,
    async restartLoom() {
      if (loom) outputs.push(`--- loom ${loom.pid}\n${loom.output()}`)
      return (loom = await startLoom())
    },
    async restartWorker() {
      if (worker) outputs.push(`--- worker ${worker.pid}\n${worker.output()}`)
      worker = await startWorker()
      return generation
    },
    log: () => readLog(logPath),
    async storedRuns(migrationId) {
      const out = await runChild('store-main.ts', {
        FAULTS_DATABASE_URL: DATABASE_URL,
        FAULTS_SCHEMA: schema,
        FAULTS_MIGRATION: migrationId,
      })
      const { runs } = JSON.parse(out.trim().split('\n').pop()!) as { runs: Array<{ candidateId: string; run?: StoredRun }> }
      return new Map(runs.map((r) => [`${migrationId}__${r.candidateId}`, r.run]))
    },
    async terminateBackends() {
      const rows = await admin`select pg_terminate_backend(pid) as ok from pg_stat_activity where application_name = ${appName}`
      return rows.filter((r) => r.ok).length
    },
    output: () =>
      [...outputs, loom ? `--- loom ${loom.pid}\n${loom.output()}` : '', worker ? `--- worker ${worker.pid}\n${worker.output()}` : ''].join(
        '\n',
      ),
    async close() {
      await Promise.allSettled([loom?.kill(), worker?.kill()])
      await proxy.close()
      await admin.unsafe(`drop schema if exists "${schema}" cascade`)
      await admin.end({ timeout: 5 })
      rmSync(dir, { recursive: true, force: true })
    },
  }
  try {
    loom = await startLoom()
    worker = await startWorker()
  } catch (error) {
    await fleet.close().catch(() => {})
    throw error
  }
  return fleet
}
