import { describe, expect, it } from 'vitest'
import type { Actor } from '../actors'
import { LoomError } from '../errors'
import { localEngine } from '../local-engine'
import { memoryStore } from '../memory-store'
import type { ActivityPage } from '../schemas'
import { candidateStatusOf, STATUS_RULES, type StatusAction } from '../rules'
import type { CandidateStatus } from '../schemas'
import { announcement, candidates, eventually, fakeWorker } from '../testing/fakes'
import { createLoom } from './index'

const M = 'app-chart'
const operators: Actor[] = ['alice', 'bob', 'carol'].map((name) => ({ kind: 'operator', name }))

describe('the activity log through Loom', () => {
  it('holds exactly one entry per change of 1,000 random concurrent actions by three operators, and none for a refusal', async () => {
    const worker = fakeWorker()
    const loom = createLoom({ store: memoryStore(), engine: localEngine(), dispatcher: worker.dispatcher, reconcile: false })
    await loom.announce(announcement(M, { candidates: candidates(50) }))
    // A fixed sequence of pseudo-random draws, so a failure can be replayed.
    let seed = 13
    const draw = (n: number) => {
      // mulberry32
      seed = (seed + 0x6d2b79f5) | 0
      let t = Math.imul(seed ^ (seed >>> 15), 1 | seed)
      t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t
      return ((t ^ (t >>> 14)) >>> 0) % n
    }
    const actions = ['queue', 'dequeue', 'execute', 'cancel'] as const
    const tries = Array.from({ length: 1_000 }, () => ({
      candidateId: `svc-${draw(50)}`,
      action: actions[draw(4)]!,
      by: operators[draw(3)]!,
    }))
    const call = (t: (typeof tries)[number]) => {
      const as = loom.as(t.by)
      const runId = `${M}__${t.candidateId}`
      if (t.action === 'queue') return as.queue(M, t.candidateId)
      if (t.action === 'dequeue') return as.dequeue(runId)
      if (t.action === 'execute') return as.execute(runId)
      return as.cancel(runId, { reason: `${t.by.name} said so` })
    }
    // Ten waves of 100 at once: concurrent within a wave, and later waves find candidates in every status.
    const outcomes: PromiseSettledResult<unknown>[] = []
    for (let wave = 0; wave < 10; wave++) outcomes.push(...(await Promise.allSettled(tries.slice(wave * 100, wave * 100 + 100).map(call))))
    for (const outcome of outcomes) if (outcome.status === 'rejected') expect(LoomError.is(outcome.reason, 'conflict')).toBe(true)
    const wins = tries.filter((_, i) => outcomes[i]!.status === 'fulfilled')
    expect(wins.length).toBeGreaterThan(100)
    expect(wins.length).toBeLessThan(1_000)

    const entries: ActivityPage['entries'] = []
    for (let after: string | undefined; ; ) {
      const page = await loom.activity(M, { limit: 1000, ...(after ? { after } : {}) })
      entries.push(...page.entries)
      if (!page.next) break
      after = page.next
    }
    const runs = entries.filter((e) => e.type.startsWith('run.') && e.actor.kind === 'operator')
    expect(runs).toHaveLength(wins.length)
    const key = (candidateId: string, type: string, name: string) => `${candidateId} ${type} ${name}`
    expect(runs.map((e) => key(e.candidateId!, e.type, e.actor.name)).sort()).toEqual(
      wins.map((w) => key(w.candidateId, `run.${w.action}`, w.by.name)).sort(),
    )
    for (const entry of runs.filter((e) => e.type === 'run.cancel')) expect(entry.detail.reason).toBe(`${entry.actor.name} said so`)
    // Per candidate, the run entries replay the status rules from not_started to where it is now.
    for (let i = 0; i < 50; i++) {
      let status: CandidateStatus = 'not_started'
      for (const entry of entries.filter((e) => e.candidateId === `svc-${i}` && e.type.startsWith('run.'))) {
        const rule = STATUS_RULES[entry.type.slice(4) as StatusAction]
        expect(rule.from as readonly CandidateStatus[]).toContain(status)
        status = candidateStatusOf(rule.to)
      }
      expect(status).toBe((await loom.getCandidate(M, `svc-${i}`)).status)
    }
    await loom.close()
  })
})

describe('activityRetention', () => {
  it('has the reconciler delete the entries older than the retention, and keep the newer ones', async () => {
    const store = memoryStore()
    let clock = Date.parse('2026-03-01T00:00:00.000Z')
    const loom = createLoom({
      store,
      engine: localEngine(),
      now: () => new Date(clock),
      activityRetention: '7d',
      reconcile: { intervalMs: 20 },
    })
    try {
      await loom.announce(announcement(M, { candidates: candidates(2) }))
      await loom.queue(M, 'svc-0')
      clock += 10 * 24 * 3600_000
      await loom.queue(M, 'svc-1')
      // The first pass ran at the start, when nothing was old; the next one an hour on.
      clock += 3600_000
      await eventually(async () =>
        expect((await loom.activity(M)).entries.map((e) => [e.type, e.candidateId])).toEqual([['run.queue', 'svc-1']]),
      )
    } finally {
      await loom.close()
    }
  })

  it('refuses a retention it cannot read, naming the option', () => {
    let thrown: unknown
    try {
      createLoom({ store: memoryStore(), engine: localEngine(), activityRetention: 'a month' })
    } catch (error) {
      thrown = error
    }
    expect(LoomError.is(thrown, 'invalid')).toBe(true)
    expect((thrown as LoomError).details).toEqual({ field: 'activityRetention' })
  })
})
