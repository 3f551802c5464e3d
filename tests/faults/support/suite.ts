/** The per-test lifecycle of a fault test: each test's fleet is closed after it, and its processes' output shown when it failed. */
import { afterEach, onTestFailed } from 'vitest'
import { type Fleet, startFleet } from './fleet'
import type { Logged } from './log'

export function fleets() {
  const open: Fleet[] = []
  afterEach(async () => {
    await Promise.allSettled(open.splice(0).map((fleet) => fleet.close()))
  })
  return async (options: Parameters<typeof startFleet>[0]): Promise<Fleet> => {
    const fleet = await startFleet(options)
    open.push(fleet)
    onTestFailed(() => {
      console.error(`[faults] output of ${options.name}:\n${fleet.output().slice(-8_000)}`)
    })
    return fleet
  }
}

/** Waits `ms`: only for holding a fault for its stated duration, never to wait for an outcome (that is `eventually`). */
export const hold = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms))

/**
 * Waits for the next burst of reports of a worker whose steps have `reportOnTheSecond` (the
 * next whole second of the clock) and resolves as soon as Loom has accepted the first report
 * of it (1 s at most): the runs of the burst are then moving on, which is when a fault hurts most.
 */
export async function nextBurst(log: () => Logged[]): Promise<void> {
  const second = Math.ceil(Date.now() / 1000) * 1000
  await hold(second - Date.now())
  const deadline = second + 1_000
  while (Date.now() < deadline && !log().some((e) => e.kind === 'call' && e.runId && e.at >= second && (e.status ?? 0) < 300)) {
    await hold(5)
  }
}
