import { spawn, type ChildProcess } from 'node:child_process'
import { mkdtemp, rm } from 'node:fs/promises'
import { createServer, type AddressInfo } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { createClient } from '@loom/client'
import { eventually, expectLoomError } from '@loom/core/testing'
import { Aedes } from 'aedes'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { MIGRATION_ID } from '../src/index'

// The bin as a process of its own, with its own Loom and named tokens: the worker finds its
// token in LOOM_WORKERS, announces with it (so the migration is app-charts'), and the demo walks
// billing-api to completed, which needs Loom to present that token on the dry run and every dispatch.

const BIN = fileURLToPath(new URL('../src/bin.ts', import.meta.url))
const ALICE = 'alice-token'
const CHARTS = 'charts-token'

async function freePort(): Promise<number> {
  const server = createServer()
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', () => resolve()))
  const { port } = server.address() as AddressInfo
  await new Promise<void>((resolve) => server.close(() => resolve()))
  return port
}

async function aedesBroker(): Promise<{ url: string; close(): Promise<void> }> {
  const broker = await Aedes.createBroker()
  const server = createServer(broker.handle)
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', () => resolve()))
  return {
    url: `mqtt://127.0.0.1:${(server.address() as AddressInfo).port}`,
    async close() {
      await new Promise<void>((resolve) => broker.close(() => resolve()))
      await new Promise<void>((resolve) => server.close(() => resolve()))
    },
  }
}

interface Bin {
  child: ChildProcess
  api: string
  workerUrl: string
  output(): string
  stop(): Promise<void>
}

/** Starts the bin with an IPC channel, as `npm start` does, and resolves once it says it is ready. */
async function startBin(extra: Record<string, string>): Promise<Bin> {
  const dataDir = await mkdtemp(join(tmpdir(), 'loom-example-bin-'))
  const [loomPort, workerPort] = [await freePort(), await freePort()]
  let output = ''
  const child = spawn(process.execPath, ['--import', 'tsx', BIN], {
    env: {
      PATH: process.env.PATH,
      HOST: '127.0.0.1',
      LOOM_PORT: String(loomPort),
      WORKER_PORT: String(workerPort),
      LOOM_DATA_DIR: dataDir,
      AUTO_MERGE_MS: '200',
      LOOM_OPERATORS: `alice:${ALICE}`,
      LOOM_WORKERS: `app-charts:${CHARTS},other-team:other-token`,
      ...extra,
    },
    stdio: ['ignore', 'pipe', 'pipe', 'ipc'],
  })
  child.stdout!.on('data', (chunk) => (output += chunk))
  child.stderr!.on('data', (chunk) => (output += chunk))
  const workerUrl = await new Promise<string>((resolve, reject) => {
    child.once('message', (m: { type?: string; url?: string }) =>
      m.type === 'ready' ? resolve(m.url!) : reject(new Error(`unexpected ${JSON.stringify(m)}`)),
    )
    child.once('exit', (code) => reject(new Error(`the bin exited (${code}):\n${output}`)))
  })
  return {
    child,
    api: `http://127.0.0.1:${loomPort}/api`,
    workerUrl,
    output: () => output,
    async stop() {
      if (child.exitCode === null) {
        const exited = new Promise((resolve) => child.once('exit', resolve))
        // It stops when its parent goes away, as under `npm start`.
        child.disconnect()
        await exited
      }
      await rm(dataDir, { recursive: true, force: true })
    },
  }
}

// Over MQTT the bin announces on the default prefix, retained: an in-process broker keeps that off any shared one.
describe.each([
  ['over HTTP', false],
  ['over MQTT', true],
])('the bin with named tokens, announcing %s', (_how, overMqtt) => {
  let bin: Bin
  let broker: Awaited<ReturnType<typeof aedesBroker>> | undefined

  beforeAll(async () => {
    broker = overMqtt ? await aedesBroker() : undefined
    bin = await startBin(broker ? { MQTT_URL: broker.url } : {})
  }, 60_000)
  afterAll(async () => {
    await bin.stop()
    await broker?.close()
  })

  it('announces with its own named token and walks the demo candidate to completed', async () => {
    const { api } = bin
    expect(bin.output()).toContain(`announced ${MIGRATION_ID}${overMqtt ? ' over MQTT' : ''} and submitted its candidates`)
    const alice = createClient({ baseUrl: api, token: ALICE })
    expect(await alice.getMigration(MIGRATION_ID)).toMatchObject({ owner: 'app-charts' })
    await eventually(async () => expect((await alice.getCandidate(MIGRATION_ID, 'billing-api')).status).toBe('completed'), {
      timeoutMs: 30_000,
    })
    expect(bin.output()).toMatch(/billing-api: running → completed/)
  })

  it('holds the tokens to their roles: the worker’s token cannot act as an operator, another worker’s cannot announce app-chart', async () => {
    const { api } = bin
    const charts = createClient({ baseUrl: api, token: CHARTS })
    await expectLoomError(charts.listMigrations(), 'forbidden')
    const other = createClient({ baseUrl: api, token: 'other-token' })
    const announced = await createClient({ baseUrl: api, token: ALICE }).getMigration(MIGRATION_ID)
    const taken = await expectLoomError(other.announce({ id: MIGRATION_ID, name: 'Taken', steps: announced.steps }), 'forbidden')
    expect(taken.message).toMatch(/belongs to worker app-charts/)
    await expectLoomError(createClient({ baseUrl: api }).listMigrations(), 'unauthorized')
  })

  it('refuses a dispatch to the worker without its token', async () => {
    const response = await fetch(`http://127.0.0.1:${new URL(bin.workerUrl).port}/steps/dispatch`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: `Bearer ${ALICE}` },
      body: '{}',
    })
    expect(response.status).toBe(401)
  })
})
