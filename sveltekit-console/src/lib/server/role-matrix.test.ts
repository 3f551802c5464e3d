/**
 * The role matrix of `@loom/hono` (every route × no token, wrong token, worker A, worker B,
 * operator), run against the console's own `/api`: the console tells loomApp who calls from
 * the named tokens of its configuration, and must come out with the same table as loomApp
 * given those tokens itself.
 */
import { afterEach, describe, expect, it } from 'vitest'
import { memoryStore } from '@loom/core'
import { cellLine, runRoleMatrix } from '../../../../packages/hono/test/role-matrix'
import { startBackend, type Backend } from './backend'
import { readConfig } from './config'

const TOKENS = { operator: 'op-alice-secret', workerA: 'wk-team-a-secret', workerB: 'wk-team-b-secret' }

let backend: Backend | undefined
afterEach(async () => {
  await backend?.close()
  backend = undefined
})

describe("role matrix through the console's /api", () => {
  it('answers every route × caller with the status of the table', async () => {
    const config = readConfig({
      LOOM_OPERATORS: `alice:${TOKENS.operator}`,
      LOOM_WORKERS: `team-a:${TOKENS.workerA},team-b:${TOKENS.workerB}`,
    })
    backend = await startBackend(config, { store: memoryStore(), log: () => {} })
    const api = backend.api

    const { cells, uncovered } = await runRoleMatrix({ fetch: (request) => api(request), tokens: TOKENS, prefix: '/api' })

    expect(uncovered).toEqual([])
    expect(cells.map((cell) => cellLine(cell, cell.actual))).toEqual(cells.map((cell) => cellLine(cell, cell.expected)))
    expect(cells.length).toBeGreaterThan(100)
    expect((await backend.loom.getMigration('m-a')).owner).toBe('team-a')
  })
})
