#!/usr/bin/env node
/**
 * Runs the example worker as a process of its own.
 *
 * With `LOOM_URL` it joins that Loom (for instance the console's, `http://localhost:3000/api`).
 * Without it, it starts a Loom of its own in this process (memory store, local engine, the
 * HTTP API on `LOOM_PORT`, default 3000) and walks one candidate through the migration, so a
 * newcomer sees announce, discovery, queue, dry run, execute, pull requests merging and the
 * manual review in the log; the API stays up to try the other candidates.
 *
 * Environment: LOOM_URL, LOOM_PORT (3000), WORKER_PORT (4000), HOST (where both listen;
 * default every interface), MQTT_URL (announce over MQTT), LOOM_DATA_DIR
 * (.loom-data/example-worker), AUTO_MERGE_MS (3000; 0 = never), DEMO (1 without LOOM_URL; 0 to
 * skip the walk-through), and the tokens, read as the console reads them: LOOM_TOKEN and
 * LOOM_OPERATORS (`name:<token>,…`) for operators, LOOM_WORKER_TOKEN and LOOM_WORKERS for
 * workers. The worker presents its own token: the one LOOM_WORKERS names for `app-charts`, else
 * LOOM_WORKER_TOKEN, else LOOM_TOKEN. Its own Loom (without LOOM_URL) accepts all of them, and
 * presents each worker its own token on dispatches and dry runs.
 *
 * Started by another process with an IPC channel (`npm start` runs it beside the console this
 * way), it sends `{ type: 'ready', url }` once its migration is announced, and stops when that
 * process goes away.
 */
import { serve } from '@hono/node-server'
import {
  createLoom,
  httpDispatcher,
  httpDryRunner,
  localEngine,
  memoryStore,
  parseNamedTokens,
  tokenIdentities,
  type Loom,
  type LoomEvent,
  type WorkerTarget,
} from '@loom/core'
import { loomApp } from '@loom/hono'
import { mqttAnnouncements } from '@loom/mqtt'
import { Hono } from 'hono'
import mqtt from 'mqtt'
import { MIGRATION_ID } from './app-chart'
import { createExampleWorker } from './example-worker'

const env = process.env
const WORKER_APP = 'app-charts'
// Loom's tokens, under the names the console and loomApp give them; blank variables count as unset.
const tokens = {
  token: env.LOOM_TOKEN || undefined,
  workerToken: env.LOOM_WORKER_TOKEN || undefined,
  operators: env.LOOM_OPERATORS || undefined,
  workers: env.LOOM_WORKERS || undefined,
}
const identities = tokenIdentities(tokens)
// What this worker presents to Loom and expects on dispatches: its own token (see above).
const token = parseNamedTokens(tokens.workers ?? '', 'LOOM_WORKERS')[WORKER_APP] ?? tokens.workerToken ?? tokens.token
// What the printed curl commands use: an operator's token.
const operatorToken = tokens.token ?? Object.values(parseNamedTokens(tokens.operators ?? '', 'LOOM_OPERATORS'))[0]
// Loom presents each worker its own token: the migration's owner's.
const ownersToken = (target: Pick<WorkerTarget, 'owner'>) => identities.workerToken(target.owner)
const workerPort = Number(env.WORKER_PORT ?? 4000)
const loomPort = Number(env.LOOM_PORT ?? 3000)
const autoMergeMs = Number(env.AUTO_MERGE_MS ?? 3000)
// HOST narrows where both servers listen (127.0.0.1, say); unset, every interface, as Node's default.
const listenOn = env.HOST ? { hostname: env.HOST } : {}
const log = (message: string) => console.log(`${new Date().toISOString().slice(11, 19)}  ${message}`)

const client = env.MQTT_URL ? await mqtt.connectAsync(env.MQTT_URL, { protocolVersion: 4 }) : undefined
const closers: Array<() => Promise<unknown> | unknown> = []
let loomUrl = env.LOOM_URL
let ownLoom: Loom | undefined

if (!loomUrl) {
  const loom = createLoom({
    store: memoryStore(),
    engine: localEngine(),
    dispatcher: httpDispatcher({ token: ownersToken }),
    dryRunner: httpDryRunner({ token: ownersToken }),
  })
  ownLoom = loom
  const server = serve({ fetch: new Hono().route('/api', loomApp(loom, tokens)).fetch, port: loomPort, ...listenOn })
  closers.push(
    () => new Promise((resolve) => server.close(resolve)),
    () => loom.close(),
  )
  if (client) {
    const announcements = mqttAnnouncements(client, loom, tokens)
    await announcements.ready
    closers.unshift(() => announcements.stop())
  }
  loom.subscribe(describe)
  loomUrl = `http://localhost:${loomPort}/api`
  log(`Loom API on ${loomUrl} (memory store, local engine)`)
}

const example = await createExampleWorker({
  dataDir: env.LOOM_DATA_DIR ?? '.loom-data/example-worker',
  loomUrl,
  ...(token ? { token } : {}),
  url: `http://localhost:${workerPort}`,
  ...(autoMergeMs > 0 ? { autoMergeMs } : {}),
  ...(client ? { announce: { mqtt: client } } : {}),
})
const workerServer = serve({ fetch: example.fetch, port: workerPort, ...listenOn })
closers.unshift(
  () => example.stop(),
  () => new Promise((resolve) => workerServer.close(resolve)),
)

// Stops once, however many signals arrive: a Ctrl-C reaches this process both from the
// terminal and from a parent that passes it on.
let stopping: Promise<void> | undefined
const stop = () =>
  (stopping ??= (async () => {
    for (const close of closers) await close()
    await client?.endAsync()
    process.exit(0)
  })())
for (const signal of ['SIGINT', 'SIGTERM'] as const) process.on(signal, stop)
process.on('disconnect', stop)

log(`worker "${example.worker.workerApp}" on http://localhost:${workerPort}; GitOps repository in ${example.repo.dir}`)
await example.start()
log(`announced ${MIGRATION_ID}${client ? ' over MQTT' : ''} and submitted its candidates`)
process.send?.({ type: 'ready', url: `http://localhost:${workerPort}` })

if (ownLoom && env.DEMO !== '0') await demo(ownLoom)
// A parent process prints its own summary.
if (!process.send) printHelp()

function describe(event: LoomEvent) {
  switch (event.type) {
    case 'run.status':
      return log(`${event.candidateId}: ${event.previous} → ${event.status}`)
    case 'step.reported': {
      const { stepName, success, metadata } = event.result
      const phase = metadata?.phase ?? (success ? 'succeeded' : 'failed')
      return log(
        `${event.candidateId}: step ${stepName} ${event.done ? (success ? 'succeeded' : 'failed') : phase}${metadata?.prUrl ? `  ${metadata.prUrl}` : ''}${metadata?.error ? `: ${metadata.error}` : ''}`,
      )
    }
    case 'candidates.submitted':
      return log(`${event.migrationId}: ${event.count} candidates submitted`)
  }
}

async function demo(loom: Loom) {
  const candidates = await loom.listCandidates(MIGRATION_ID)
  log(`candidates: ${candidates.map((c) => `${c.id} (${c.files?.map((g) => g.name).join(', ')})`).join('; ')}`)
  const candidate = candidates.find((c) => c.status === 'not_started')
  if (!candidate) return
  const runId = await loom.queue(MIGRATION_ID, candidate.id)
  const preview = await loom.dryRun(MIGRATION_ID, candidate.id)
  for (const step of preview.steps) {
    log(
      `dry run, ${step.stepName}: ${step.skipped ? 'skipped (an operator’s step)' : step.files?.map((f) => `${f.before ? 'edit' : 'new '} ${f.path}`).join(', ')}`,
    )
  }
  await loom.execute(runId)
  // The manual review is an operator's: this demo approves it once the pull requests are merged.
  await new Promise<void>((resolve) => {
    const stop = loom.subscribe((event) => {
      if (event.type === 'step.reported' && event.runId === runId && event.result.metadata?.phase === 'awaiting_review') {
        log(`${candidate.id}: approving ${event.result.stepName} as an operator would in the console`)
        void loom.complete(runId, { stepName: event.result.stepName, candidate: { id: candidate.id }, success: true })
      }
      if (event.type === 'run.status' && event.runId === runId && event.status !== 'running') {
        stop()
        resolve()
      }
    })
  })
  const chart = await example.repo.read(`charts/${candidate.id}/Chart.yaml`)
  log(`main now has charts/${candidate.id}/Chart.yaml:\n${chart}`)
}

function printHelp() {
  const api = loomUrl
  const auth = operatorToken ? ` -H 'authorization: Bearer ${operatorToken}'` : ''
  console.log(`
Try the other candidates (pull requests ${autoMergeMs > 0 ? `merge after ${autoMergeMs / 1000} s` : `wait for POST http://localhost:${workerPort}/prs/merge?branch=…`}):
  curl -s${auth} ${api}/migrations/${MIGRATION_ID}/candidates
  curl -s${auth} -XPOST ${api}/migrations/${MIGRATION_ID}/queue -H 'content-type: application/json' -d '{"candidateId":"search-api"}'
  curl -s${auth} -XPOST ${api}/migrations/${MIGRATION_ID}/dry-run -H 'content-type: application/json' -d '{"candidateId":"search-api"}'
  curl -s${auth} -XPOST ${api}/runs/${MIGRATION_ID}__search-api/execute
  curl -s http://localhost:${workerPort}/prs
  curl -s${auth} -XPOST ${api}/event/${MIGRATION_ID}__search-api -H 'content-type: application/json' \\
       -d '{"stepName":"verify-sync","candidate":{"id":"search-api"},"success":true}'
Ctrl-C stops.`)
}
