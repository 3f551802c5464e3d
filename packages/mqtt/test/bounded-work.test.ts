import { createLoom, localEngine, memoryStore, type LoomInstance } from '@loom/core'
import type { MqttClient } from 'mqtt'
import { afterAll, afterEach, beforeEach, describe, expect, it } from 'vitest'
import { mqttAnnouncements, mqttAnnouncer, type InvalidAnnouncement } from '../src/index'
import { closeClients, connect, recordingLogger, testBroker, uniquePrefix } from './helpers'

// The attack of issue 13 over MQTT: one announcement of 1.4 million empty steps, 4 MiB, used to
// keep the server's event loop busy for seconds (every step judged, every issue collected).
// Now the steps are counted before any is judged, and the server keeps turning meanwhile.

const broker = await testBroker()
afterAll(() => broker.close())

const MIB4 = 4 * 1024 * 1024

/** An announcement of as many `{}` steps as fit in `bytes`. */
function hostilePayload(id: string, bytes: number): { payload: Buffer; steps: number } {
  const head = `{"id":"${id}","name":"Hostile","steps":[`
  const tail = ']}'
  const steps = Math.floor((bytes - head.length - tail.length + 1) / 3)
  const payload = Buffer.from(`${head}${new Array(steps).fill('{}').join(',')}${tail}`)
  return { payload, steps }
}

/**
 * Watches the event loop while `work` runs: how late a 20 ms timer fired at worst, and how
 * `loom.health()`, asked every 25 ms, was answered (a call asked during a stretch of blocking
 * is asked late: the timer's lag is what such a caller waits).
 */
async function watchLoop<T>(loom: LoomInstance, work: () => Promise<T>) {
  let last = performance.now()
  let maxLagMs = 0
  const ticker = setInterval(() => {
    const now = performance.now()
    maxLagMs = Math.max(maxLagMs, now - last - 20)
    last = now
  }, 20)
  const healthMs: number[] = []
  const asking = setInterval(() => {
    const started = performance.now()
    void loom.health().then(() => healthMs.push(performance.now() - started))
  }, 25)
  try {
    const result = await work()
    // A block ends with every due timer at once: let the ticker and the health calls see it.
    await new Promise((r) => setTimeout(r, 100))
    return { result, maxLagMs, health: healthMs }
  } finally {
    clearInterval(ticker)
    clearInterval(asking)
  }
}

describe('bounded work per announcement', () => {
  let loom: LoomInstance
  let server: MqttClient
  let worker: MqttClient
  let prefix: string

  beforeEach(async () => {
    loom = createLoom({ store: memoryStore(), engine: localEngine(), onError: () => {} })
    const version = broker.versions.includes(5) ? 5 : 4
    server = await connect(broker.url, version)
    worker = await connect(broker.url, version)
    prefix = uniquePrefix()
  })
  afterEach(async () => {
    await loom.close()
    await closeClients()
  })

  it('skips a 4 MiB announcement of 1.4 M empty steps quickly, naming steps and the limit, while the event loop keeps turning', async () => {
    const invalid: Array<InvalidAnnouncement & { atMs: number }> = []
    let sentAt = 0
    const subscriber = mqttAnnouncements(server, loom, {
      topicPrefix: prefix,
      logger: recordingLogger(),
      onInvalid: (i) => invalid.push({ ...i, atMs: performance.now() - sentAt }),
    })
    await subscriber.ready
    const { payload, steps } = hostilePayload('hostile', MIB4)
    expect(payload.length).toBeLessThanOrEqual(MIB4)
    expect(steps).toBeGreaterThan(1_390_000)
    const watched = await watchLoop(loom, async () => {
      sentAt = performance.now()
      // Not retained: the hostile message must not outlive the test on a real broker.
      await worker.publishAsync(`${prefix}/announce/hostile`, payload, { qos: 1 })
      const deadline = Date.now() + 10_000
      while (invalid.length === 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 5))
    })
    const [skipped] = invalid
    expect(skipped).toMatchObject({
      topic: `${prefix}/announce/hostile`,
      code: 'invalid',
      reason: 'steps: more than the limit of 100 steps (limits.steps)',
    })
    const healthMax = Math.max(...watched.health)
    console.log(
      `[bounded-work] ${(payload.length / 1024 / 1024).toFixed(2)} MiB, ${steps} steps, ${broker.real ? 'Mosquitto' : 'aedes'}: ` +
        `skipped ${skipped!.atMs.toFixed(0)} ms after publishing; event loop max lag ${watched.maxLagMs.toFixed(0)} ms ` +
        `; ${watched.health.length} health calls answered, slowest ${healthMax.toFixed(0)} ms`,
    )
    // Before, the loop was blocked for seconds (a 5 s health check timed out). Now the list is
    // counted while the payload is scanned, before anything is parsed: tens of milliseconds,
    // bounded generously for a shared 2-core machine.
    expect(skipped!.atMs).toBeLessThan(1_000)
    expect(watched.maxLagMs).toBeLessThan(500)
    // Health was asked and answered while the hostile message was being handled.
    expect(watched.health.length).toBeGreaterThan(0)
    await expect(loom.listMigrations()).resolves.toEqual([])

    // The subscriber carries on: the next announcement is registered.
    const announcer = mqttAnnouncer(worker, { topicPrefix: prefix })
    await announcer.announce({ id: 'fine', name: 'Fine', steps: [{ name: 's', workerApp: 'charts' }] }, { awaitAcceptance: true })
    await announcer.withdraw('fine')
    await announcer.close()
    expect((await loom.listMigrations()).map((m) => m.id)).toEqual(['fine'])
    await subscriber.stop()
  })

  it('refuses a payload over the default 4 MiB unread, as too_large naming the limit', async () => {
    const invalid: Array<InvalidAnnouncement & { atMs: number }> = []
    let sentAt = 0
    const subscriber = mqttAnnouncements(server, loom, {
      topicPrefix: prefix,
      logger: recordingLogger(),
      onInvalid: (i) => invalid.push({ ...i, atMs: performance.now() - sentAt }),
    })
    await subscriber.ready
    const { payload } = hostilePayload('oversized', MIB4 + 3)
    expect(payload.length).toBeGreaterThan(MIB4)
    const watched = await watchLoop(loom, async () => {
      sentAt = performance.now()
      await worker.publishAsync(`${prefix}/announce/oversized`, payload, { qos: 1 })
      const deadline = Date.now() + 10_000
      while (invalid.length === 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 5))
    })
    expect(invalid).toEqual([
      {
        topic: `${prefix}/announce/oversized`,
        code: 'too_large',
        reason: `body: ${payload.length} bytes, larger than the limit of ${MIB4} bytes (maxPayloadBytes)`,
        atMs: expect.any(Number),
      },
    ])
    console.log(
      `[bounded-work] ${payload.length} bytes: refused ${invalid[0]!.atMs.toFixed(0)} ms after publishing; event loop max lag ${watched.maxLagMs.toFixed(0)} ms`,
    )
    // Unread, so nothing long happens on the loop: no parse, no schema.
    expect(invalid[0]!.atMs).toBeLessThan(3_000)
    expect(watched.maxLagMs).toBeLessThan(300)
    await subscriber.stop()
  })
})
