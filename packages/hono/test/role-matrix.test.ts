import { createLoom, localEngine, memoryStore } from '@loom/core'
import { afterEach, describe, expect, it } from 'vitest'
import { loomApp } from '../src/index'
import { cellLine, runRoleMatrix } from './role-matrix'

const TOKENS = { operator: 'op-alice-secret', workerA: 'wk-team-a-secret', workerB: 'wk-team-b-secret' }

let close: (() => Promise<void>) | undefined
afterEach(async () => {
  await close?.()
  close = undefined
})

describe('role matrix on loomApp', () => {
  it('answers every route × {no token, wrong token, worker A, worker B, operator} with the status of the table', async () => {
    const loom = createLoom({ store: memoryStore(), engine: localEngine({ retryDelayMs: 5 }), onError: () => {} })
    close = () => loom.close()
    await loom.ready
    const app = loomApp(loom, {
      operators: { alice: TOKENS.operator },
      workers: `team-a:${TOKENS.workerA},team-b:${TOKENS.workerB}`,
      onError: (error) => {
        throw error
      },
    })

    const { cells, uncovered } = await runRoleMatrix({ fetch: async (request) => app.fetch(request), tokens: TOKENS })

    expect(uncovered).toEqual([])
    // One line per cell, so a failure shows exactly which route and caller got which status.
    expect(cells.map((cell) => cellLine(cell, cell.actual))).toEqual(cells.map((cell) => cellLine(cell, cell.expected)))
    expect(cells).toHaveLength(33 * 5)
    // The table is not vacuous: each caller is refused somewhere and let through somewhere.
    for (const caller of ['workerA', 'workerB', 'operator'] as const) {
      expect(cells.some((c) => c.caller === caller && c.expected < 300 && c.route !== 'GET /health')).toBe(true)
    }
    expect((await loom.getMigration('m-a')).owner).toBe('team-a')
  })

  it('runs the same table with the API mounted under a prefix', async () => {
    const { Hono } = await import('hono')
    const loom = createLoom({ store: memoryStore(), engine: localEngine({ retryDelayMs: 5 }), onError: () => {} })
    close = () => loom.close()
    await loom.ready
    const api = loomApp(loom, {
      operators: `alice:${TOKENS.operator}`,
      workers: { 'team-a': TOKENS.workerA, 'team-b': TOKENS.workerB },
    })
    const service = new Hono().route('/api', api)
    const { cells } = await runRoleMatrix({ fetch: async (request) => service.fetch(request), tokens: TOKENS, prefix: '/api' })
    expect(cells.filter((c) => c.actual !== c.expected).map((c) => cellLine(c, c.actual))).toEqual([])
  })
})
