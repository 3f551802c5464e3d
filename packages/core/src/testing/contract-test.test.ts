import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { beforeAll, describe, expect, it } from 'vitest'
import { startVitest, type TestCase } from 'vitest/node'

/** The store contract on the memory store, once with a skip that names a test and once with one that names none. */
const SUITES = `
import { storeContract } from ${JSON.stringify(fileURLToPath(new URL('../testing.ts', import.meta.url)))}
import { memoryStore } from ${JSON.stringify(fileURLToPath(new URL('../memory-store.ts', import.meta.url)))}

storeContract('excused', async () => ({ store: memoryStore() }), { skip: { 'answers ping': 'no network here' } })
storeContract('stale', async () => ({ store: memoryStore() }), { skip: { 'answers pings': 'renamed since' } })
`

// The suites are run by a Vitest of their own: a failing check must fail that run, not this one.
describe('contractTests (a suite run by a nested Vitest)', () => {
  let tests: TestCase[]

  beforeAll(async () => {
    const dir = await mkdtemp(join(tmpdir(), 'loom-contract-skip-'))
    const exitCode = process.exitCode
    try {
      await writeFile(join(dir, 'suites.test.ts'), SUITES)
      const vitest = await startVitest('test', [], { watch: false, config: false, root: dir, reporters: [{}] })
      tests = vitest.state.getTestModules().flatMap((m) => [...m.children.allTests()])
      await vitest.close()
    } finally {
      process.exitCode = exitCode // the nested run failed on purpose
      await rm(dir, { recursive: true, force: true })
    }
  }, 60_000)

  const outcomes = (suite: string) =>
    tests
      .filter((t) => t.fullName.startsWith(`MigrationStore contract: ${suite} > `))
      .map((t) => ({ name: t.name, state: t.result().state, errors: t.result().errors?.map((e) => e.message) ?? [] }))

  it('skips the test a skip names, with the reason in its title, and runs every other test', () => {
    const excused = outcomes('excused')
    expect(excused.length).toBeGreaterThan(50)
    expect(excused.filter((t) => t.state !== 'passed')).toEqual([
      { name: 'answers ping — skipped for excused: no network here', state: 'skipped', errors: [] },
    ])
    expect(excused.at(-1)).toEqual({ name: 'skips only tests the suite has', state: 'passed', errors: [] })
  })

  it('fails the suite when a skip names no test of it, naming the skip', () => {
    const stale = outcomes('stale')
    expect(stale.filter((t) => t.state !== 'passed')).toEqual([
      { name: 'skips only tests the suite has', state: 'failed', errors: ['skip names no test of this suite: answers pings'] },
    ])
    expect(stale.find((t) => t.name === 'answers ping')?.state).toBe('passed')
  })
})
