/**
 * Round trips of the MQTT transport: a step dispatch (request → worker accepts → answer), a
 * dry run, and an announcement awaited until Loom accepted it; then dispatch throughput with
 * many requests in flight. Runs against MQTT_URL (default: the machine's Mosquitto at
 * 127.0.0.1:1883) and an in-process aedes broker.
 *
 *   npx tsx bench/round-trip.ts            (from packages/mqtt)
 */
import { createServer, type AddressInfo } from 'node:net'
import { Aedes } from 'aedes'
import mqtt, { type MqttClient } from 'mqtt'
import { createLoom, localEngine, memoryStore, type DispatchStepRequest } from '@loom/core'
import { mqttAnnouncements, mqttAnnouncer, mqttDispatcher, mqttDryRunner, onDispatch, serveDryRun } from '../src/index'

const ROUND_TRIPS = 200
const THROUGHPUT = 2_000
const IN_FLIGHT = 50

const request = (i: number): DispatchStepRequest => ({
  migrationId: 'app-chart',
  runId: `app-chart__svc-${i}`,
  stepName: 'bump-chart',
  candidate: { id: `svc-${i}` },
  callbackId: `app-chart__svc-${i}`,
  eventName: 'step-completed:bump-chart',
})

const percentile = (sorted: number[], p: number) => sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!
const summary = (samples: number[]) => {
  const s = [...samples].sort((a, b) => a - b)
  return `p50 ${percentile(s, 50).toFixed(1)} ms, p95 ${percentile(s, 95).toFixed(1)} ms, max ${s.at(-1)!.toFixed(1)} ms`
}

async function time(n: number, once: (i: number) => Promise<unknown>): Promise<number[]> {
  const samples: number[] = []
  for (let i = 0; i < n; i++) {
    const started = performance.now()
    await once(i)
    samples.push(performance.now() - started)
  }
  return samples
}

async function bench(label: string, url: string, version: 4 | 5, noDelay: boolean) {
  const connect = async () => {
    const client = await mqtt.connectAsync(url, { protocolVersion: version, clientId: `loom-bench-${crypto.randomUUID().slice(0, 8)}` })
    if (noDelay) {
      const stream = client.stream as { setNoDelay?: (on: boolean) => void }
      stream.setNoDelay?.(true)
    }
    return client
  }
  const server: MqttClient = await connect()
  const worker: MqttClient = await connect()
  const topicPrefix = `loom-bench-${crypto.randomUUID().slice(0, 8)}`
  const loom = createLoom({ store: memoryStore(), engine: localEngine() })
  const subs = [
    mqttAnnouncements(server, loom, { topicPrefix }),
    onDispatch(worker, { workerApp: 'charts', topicPrefix, handler: () => {} }),
    serveDryRun(worker, {
      workerApp: 'charts',
      topicPrefix,
      handler: ({ steps }) => ({
        steps: steps.map((s) => ({
          stepName: s.name,
          skipped: false,
          files: [{ path: 'values.yaml', repo: 'gitops', before: 'a\n', after: 'b\n' }],
        })),
      }),
    }),
  ]
  await Promise.all(subs.map((s) => s.ready))
  const dispatcher = mqttDispatcher(server, { topicPrefix })
  const dryRunner = mqttDryRunner(server, { topicPrefix })
  const announcer = mqttAnnouncer(worker, { topicPrefix })

  await time(20, (i) => dispatcher.dispatch({ workerApp: 'charts' }, request(i))) // warm-up
  const dispatch = await time(ROUND_TRIPS, (i) => dispatcher.dispatch({ workerApp: 'charts' }, request(i)))
  const dryRun = await time(ROUND_TRIPS, (i) =>
    dryRunner.dryRun(
      { workerApps: ['charts'] },
      { migrationId: 'app-chart', candidate: { id: `svc-${i}` }, steps: [{ name: 'bump-chart', workerApp: 'charts' }] },
    ),
  )
  const announce = await time(ROUND_TRIPS / 4, (i) =>
    announcer.announce(
      { id: `bench-${i}`, name: 'Bench', steps: [{ name: 'bump-chart', workerApp: 'charts' }] },
      { awaitAcceptance: true },
    ),
  )

  const started = performance.now()
  let next = 0
  await Promise.all(
    Array.from({ length: IN_FLIGHT }, async () => {
      while (next < THROUGHPUT) await dispatcher.dispatch({ workerApp: 'charts' }, request(next++))
    }),
  )
  const perSecond = THROUGHPUT / ((performance.now() - started) / 1000)

  console.log(`${label}, MQTT ${version === 5 ? '5' : '3.1.1'}${noDelay ? ', TCP_NODELAY' : ''}`)
  console.log(`  dispatch round trip   ${summary(dispatch)}  (${ROUND_TRIPS} sequential)`)
  console.log(`  dry-run round trip    ${summary(dryRun)}`)
  console.log(`  announce, accepted    ${summary(announce)}  (${ROUND_TRIPS / 4} sequential)`)
  console.log(`  dispatch throughput   ${perSecond.toFixed(0)} dispatches/s  (${THROUGHPUT}, ${IN_FLIGHT} in flight)`)

  await Promise.all(Array.from({ length: ROUND_TRIPS / 4 }, (_, i) => announcer.withdraw(`bench-${i}`)))
  await Promise.all([...subs.map((s) => s.stop()), dispatcher.close(), dryRunner.close(), announcer.close()])
  await loom.close()
  await Promise.all([server.endAsync(), worker.endAsync()])
}

const mosquitto = process.env.MQTT_URL ?? 'mqtt://127.0.0.1:1883'
await bench(`Mosquitto at ${mosquitto}`, mosquitto, 4, false)
await bench(`Mosquitto at ${mosquitto}`, mosquitto, 5, false)
await bench(`Mosquitto at ${mosquitto}`, mosquitto, 4, true)

const broker = await Aedes.createBroker()
const tcp = createServer(broker.handle)
await new Promise<void>((resolve) => tcp.listen(0, '127.0.0.1', resolve))
const aedesUrl = `mqtt://127.0.0.1:${(tcp.address() as AddressInfo).port}`
await bench('aedes in process', aedesUrl, 4, false)
await new Promise<void>((resolve) => broker.close(() => resolve()))
await new Promise<void>((resolve) => tcp.close(() => resolve()))
