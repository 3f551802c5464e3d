import { LoomError } from '@loom/core'
import { describe, expect, it } from 'vitest'
import { DATABASE_URL, NEEDS_SERVER, freshSchema, onEachDatabase, serverPool } from '../test/databases'
import { postgresStore } from './postgres-store'
import { SCHEMA_VERSION, migrate, migrateTo } from './schema'

const TABLES = [
  'activity',
  'activity_clock',
  'cancelled_attempts',
  'candidates',
  'discoveries',
  'leases',
  'migrations',
  'run_steps',
  'runs',
  'schema_migrations',
  'staged_candidates',
  'steps',
]
const ALL_VERSIONS = [1, 2, 3, 4, 5, 6, 7]

onEachDatabase((db) => {
  it('creates the tables once; a second call applies nothing', async () => {
    const sql = await db.sql()
    const schema = freshSchema()
    try {
      expect(SCHEMA_VERSION).toBe(7)
      expect(await migrate(sql, { schema })).toEqual({ applied: ALL_VERSIONS, version: SCHEMA_VERSION })
      expect(await migrate(sql, { schema })).toEqual({ applied: [], version: SCHEMA_VERSION })
      const tables = await sql`select table_name from information_schema.tables where table_schema = ${schema} order by table_name`
      expect(tables.map((t) => t.table_name)).toEqual(TABLES)
    } finally {
      await sql.unsafe(`drop schema if exists "${schema}" cascade`)
    }
  })

  it('upgrades a version 1 schema in place: its runs keep their state and steps, a running one is claimable at once', async () => {
    const sql = await db.sql()
    const schema = freshSchema()
    const q = (text: string) => sql.unsafe(text.replaceAll('{s}', `"${schema}"`))
    try {
      expect(await migrateTo(sql, schema, 1)).toEqual({ applied: [1], version: 1 })
      // Rows as @loom/postgres 0.3 (schema version 1) wrote them: one running run with a reported step, one failed.
      await q(`select {s}.upsert_migration('app-chart', 'App chart', null, null, '2026-01-01T00:00:00Z',
        '[["update-chart","charts",null,null,null],["open-pr","charts",null,null,null]]',
        '[["svc-0",null,null,null,null,"[\\"svc-0\\"]"],["svc-1",null,null,null,null,"[\\"svc-1\\"]"]]')`)
      await q(`insert into {s}.runs (migration_id, candidate_id, attempt, state, current_step, started_at, updated_at)
        values ('app-chart', 'svc-0', nextval('{s}.attempts'), 'running', 1, '2026-01-01T00:01:00Z', '2026-01-01T00:02:00Z'),
               ('app-chart', 'svc-1', nextval('{s}.attempts'), 'failed', 0, '2026-01-01T00:01:00Z', '2026-01-01T00:03:00Z')`)
      await q(`insert into {s}.run_steps (migration_id, candidate_id, position, step_name, success, done, result, at)
        values ('app-chart', 'svc-0', 0, 'update-chart', true, true,
          '{"stepName":"update-chart","candidate":{"id":"svc-0"},"success":true}', '2026-01-01T00:01:30Z')`)

      expect(await migrate(sql, { schema })).toEqual({ applied: [2, 3, 4, 5, 6, 7], version: SCHEMA_VERSION })
      const store = postgresStore(sql, { schema })
      const step = {
        result: { stepName: 'update-chart', candidate: { id: 'svc-0' }, success: true },
        done: true,
        at: '2026-01-01T00:01:30.000Z',
      }
      expect((await store.getCandidate('app-chart', 'svc-0'))!.run).toEqual({
        runId: 'app-chart__svc-0',
        migrationId: 'app-chart',
        candidateId: 'svc-0',
        attempt: 1,
        state: 'running',
        currentStep: 1,
        steps: [step],
        startedAt: '2026-01-01T00:01:00.000Z',
        updatedAt: '2026-01-01T00:02:00.000Z',
      })
      // A run left running by the old package has no owner: the first reconciler to claim takes it.
      const claimed = await store.claimRuns({ owner: 'loom-a', at: new Date().toISOString(), limit: 10 })
      expect(claimed.map((r) => [r.runId, r.owner, r.steps])).toEqual([['app-chart__svc-0', 'loom-a', [step]]])
      // And the new columns are written: the step in flight moves on with its timing.
      const at = '2026-01-01T00:04:00.000Z'
      expect(await store.markStep({ migrationId: 'app-chart', candidateId: 'svc-0', attempt: 1, index: 1, phase: 'dispatched', at })).toBe(
        true,
      )
      expect((await store.getCandidate('app-chart', 'svc-0'))!.run!.stepDispatchedAt).toBe(at)
      expect((await store.transition({ migrationId: 'app-chart', candidateId: 'svc-1', action: 'queue', at })).ok).toBe(true)
    } finally {
      await sql.unsafe(`drop schema if exists "${schema}" cascade`)
    }
  })

  it('upgrades a version 2 schema in place: its migrations keep everything, have no owner, and the first worker to announce claims one', async () => {
    const sql = await db.sql()
    const schema = freshSchema()
    const q = (text: string) => sql.unsafe(text.replaceAll('{s}', `"${schema}"`))
    try {
      expect(await migrateTo(sql, schema, 2)).toEqual({ applied: [1, 2], version: 2 })
      // Rows as @loom/postgres 0.4 (schema version 2) wrote them: two migrations, one with every optional field, and a queued run.
      await q(`select {s}.upsert_migration('app-chart', 'App chart', 'Bump the chart', 'http://127.0.0.1:9/loom', '2026-01-01T00:00:00Z',
        '[["update-chart","charts","Edits values.yaml","{\\"chart\\":\\"app\\"}",null]]',
        '[["svc-0","service","{\\"team\\":\\"core\\"}",null,null,"[\\"svc-0\\",\\"core\\"]"],["svc-1",null,null,null,null,"[\\"svc-1\\"]"]]')`)
      await q(`select {s}.upsert_migration('other', 'Other', null, null, '2026-01-02T00:00:00Z', '[["s","w",null,null,null]]', null)`)
      await q(`insert into {s}.runs (migration_id, candidate_id, attempt, state, started_at, updated_at)
        values ('app-chart', 'svc-1', nextval('{s}.attempts'), 'queued', '2026-01-01T00:01:00Z', '2026-01-01T00:01:00Z')`)

      expect(await migrate(sql, { schema })).toEqual({ applied: [3, 4, 5, 6, 7], version: SCHEMA_VERSION })
      const store = postgresStore(sql, { schema })
      const before = {
        id: 'app-chart',
        name: 'App chart',
        description: 'Bump the chart',
        steps: [{ name: 'update-chart', workerApp: 'charts', description: 'Edits values.yaml', config: { chart: 'app' } }],
        workerUrl: 'http://127.0.0.1:9/loom',
        createdAt: '2026-01-01T00:00:00.000Z',
      }
      const kept = (await store.getMigration('app-chart'))!
      // Version 6 counted what was stored before it, and gave the migration its first version.
      expect(kept).toEqual({
        ...before,
        counts: { not_started: 1, queued: 1, running: 0, completed: 0, failed: 0 },
        cancelledAttempts: [],
        version: expect.stringMatching(/^\d+$/),
      })
      expect((await store.listCandidates('app-chart', { status: 'queued', limit: 5 }))!).toMatchObject({
        total: 1,
        candidates: [{ id: 'svc-1' }],
      })
      expect('owner' in kept).toBe(false)
      expect((await store.listMigrations()).map((m) => [m.id, 'owner' in m])).toEqual([
        ['app-chart', false],
        ['other', false],
      ])
      expect((await store.listCandidates('app-chart'))!.candidates).toEqual([
        { id: 'svc-0', kind: 'service', metadata: { team: 'core' }, status: 'not_started' },
        { id: 'svc-1', status: 'queued', runId: 'app-chart__svc-1' },
      ])

      // The first worker to announce a migration stored before version 3 owns it from then on.
      const { steps, id, name, description, workerUrl } = before
      expect(await store.upsertMigration({ id, name, description, steps, workerUrl }, undefined, 'team-a')).toEqual({
        ...before,
        owner: 'team-a',
      })
      const refused = await store.upsertMigration({ id, name: 'Taken over', steps: [] }, [], 'team-b')
      expect(refused).toEqual({ ...before, owner: 'team-a' })
      expect((await store.listCandidates('app-chart'))!.total).toBe(2)
      // Version 2's function stays for a process not yet upgraded: it writes the definition and keeps the owner.
      await q(`select {s}.upsert_migration('app-chart', 'From 0.4', null, null, now(), '[["s","w",null,null,null]]', null)`)
      expect(await store.getMigration('app-chart')).toMatchObject({ name: 'From 0.4', owner: 'team-a', createdAt: before.createdAt })
      expect((await store.getMigration('other'))!.owner).toBeUndefined()
    } finally {
      await sql.unsafe(`drop schema if exists "${schema}" cascade`)
    }
  })

  it('upgrades a version 3 schema in place: old cancelled attempts keep their attempt and have no actor, new changes are logged, and the old functions still work', async () => {
    const sql = await db.sql()
    const schema = freshSchema()
    const q = (text: string) => sql.unsafe(text.replaceAll('{s}', `"${schema}"`))
    try {
      expect(await migrateTo(sql, schema, 3)).toEqual({ applied: [1, 2, 3], version: 3 })
      // Rows as @loom/postgres 0.5 (schema version 3) wrote them: an owned migration and a cancelled attempt.
      await q(`select * from {s}.upsert_migration('app-chart', 'App chart', null, null, '2026-01-01T00:00:00Z',
        '[["update-chart","charts",null,null,null]]',
        '[["svc-0",null,null,null,null,"[\\"svc-0\\"]"],["svc-1",null,null,null,null,"[\\"svc-1\\"]"]]', 'team-a')`)
      await q(`insert into {s}.runs (migration_id, candidate_id, attempt, state, started_at, updated_at)
        values ('app-chart', 'svc-0', nextval('{s}.attempts'), 'cancelled', '2026-01-01T00:01:00Z', '2026-01-01T00:02:00Z')`)
      await q(`insert into {s}.cancelled_attempts (migration_id, candidate_id, run_id, attempt, cancelled_at)
        values ('app-chart', 'svc-0', 'app-chart__svc-0', 1, '2026-01-01T00:02:00Z')`)

      expect(await migrate(sql, { schema })).toEqual({ applied: [4, 5, 6, 7], version: SCHEMA_VERSION })
      const store = postgresStore(sql, { schema })
      const old = { runId: 'app-chart__svc-0', candidateId: 'svc-0', cancelledAt: '2026-01-01T00:02:00.000Z', attempt: 1 }
      const before = (await store.getMigration('app-chart'))!
      expect(before).toMatchObject({ owner: 'team-a', counts: { not_started: 2, queued: 0, running: 0, completed: 0, failed: 0 } })
      expect(before.cancelledAttempts).toEqual([old])
      expect(Object.keys(before.cancelledAttempts[0]!).sort()).toEqual(['attempt', 'cancelledAt', 'candidateId', 'runId'])
      // Nothing was logged before version 4, and the upgrade logs nothing.
      expect(await store.listActivity({ migrationId: 'app-chart', limit: 10 })).toEqual([])

      const alice = { kind: 'operator' as const, name: 'alice' }
      const move = (candidateId: string, action: 'queue' | 'execute' | 'cancel', at: string) =>
        store.transition({ migrationId: 'app-chart', candidateId, action, at, by: alice, owner: 'p1', reason: 'wrong chart' })
      for (const [action, at] of [
        ['queue', '2026-01-02T00:00:00.000Z'],
        ['execute', '2026-01-02T00:01:00.000Z'],
        ['cancel', '2026-01-02T00:02:00.000Z'],
      ] as const) {
        expect((await move('svc-1', action, at)).ok).toBe(true)
      }
      const attempt = (await store.getCandidate('app-chart', 'svc-1'))!.run!.attempt
      expect(attempt).toBe(2) // the attempts sequence goes on from the old rows'
      expect((await store.getMigration('app-chart'))!.cancelledAttempts).toEqual([
        old,
        {
          runId: 'app-chart__svc-1',
          candidateId: 'svc-1',
          cancelledAt: '2026-01-02T00:02:00.000Z',
          attempt,
          cancelledBy: alice,
          reason: 'wrong chart',
        },
      ])
      const entries = await store.listActivity({ migrationId: 'app-chart', limit: 10 })
      expect(entries.map(({ id: _id, ...entry }) => entry)).toEqual(
        (['queue', 'execute', 'cancel'] as const).map((action, i) => ({
          at: `2026-01-02T00:0${i}:00.000Z`,
          actor: alice,
          type: `run.${action}`,
          migrationId: 'app-chart',
          runId: 'app-chart__svc-1',
          candidateId: 'svc-1',
          attempt,
          detail: action === 'cancel' ? { reason: 'wrong chart', previous: 'running' } : { reason: 'wrong chart' },
        })),
      )

      // A process still on the older package calls the functions of version 3: they work as before and log nothing.
      await q(
        `select * from {s}.upsert_migration('app-chart', 'From 0.5', null, null, now(), '[["s","w",null,null,null]]', null, 'team-a')`,
      )
      await q(`select {s}.replace_candidates('app-chart', '[["svc-1",null,null,null,null,"[\\"svc-1\\"]"]]')`)
      await q(`select {s}.upsert_migration('gone', 'Gone', null, null, now(), '[]', null)`)
      expect((await q(`select {s}.delete_migration('gone') as outcome`))[0]!.outcome).toBe('deleted')
      expect(await store.getMigration('app-chart')).toMatchObject({ name: 'From 0.5', owner: 'team-a' })
      expect((await store.listCandidates('app-chart'))!.candidates.map((c) => c.id)).toEqual(['svc-1'])
      expect(await store.listActivity({ migrationId: 'app-chart', limit: 10 })).toHaveLength(3)
      expect(await store.listActivity({ migrationId: 'gone', limit: 10 })).toEqual([])
    } finally {
      await sql.unsafe(`drop schema if exists "${schema}" cascade`)
    }
  })

  it('keeps new activity ids above a log restored from another cluster, whose transaction ids were further on', async () => {
    const sql = await db.sql()
    const schema = freshSchema()
    try {
      await migrate(sql, { schema })
      const store = postgresStore(sql, { schema })
      await store.upsertMigration({ id: 'app-chart', name: 'App chart', steps: [{ name: 's', workerApp: 'w' }] }, [{ id: 'svc-0' }])
      const queue = async () => {
        expect(
          (await store.transition({ migrationId: 'app-chart', candidateId: 'svc-0', action: 'queue', at: new Date().toISOString() })).ok,
        ).toBe(true)
        expect(
          (await store.transition({ migrationId: 'app-chart', candidateId: 'svc-0', action: 'dequeue', at: new Date().toISOString() })).ok,
        ).toBe(true)
      }
      // An entry as a cluster a million transactions ahead of this one wrote it, restored here.
      await sql.unsafe(
        `insert into "${schema}".activity (id, at, migration_id, type, actor_kind, actor_name, detail)
         values ((pg_current_xact_id()::text::bigint + 1000000) * 100000, now(), 'app-chart', 'migration.announced', 'system', 'loom', '{}')`,
      )
      await queue()
      // Without realigning, the entries written since sort before the restored one, which reads as
      // not yet committed (above the horizon of every snapshot) until the clock catches up.
      const types = async () => (await store.listActivity({ migrationId: 'app-chart', limit: 100 })).map((e) => e.type)
      expect(await types()).toEqual(['run.queue', 'run.dequeue'])
      const held = await sql.unsafe(`select count(*)::int as n from "${schema}".activity where id >= "${schema}".activity_horizon()`)
      expect(held[0]!.n).toBe(1)
      // Every process migrates as it starts: that moves the clock past the log.
      expect(await migrate(sql, { schema })).toEqual({ applied: [], version: SCHEMA_VERSION })
      const [restored] = (await store.listActivity({ migrationId: 'app-chart', limit: 100 })).slice(-1)
      await queue()
      expect(await types()).toEqual(['run.queue', 'run.dequeue', 'migration.announced', 'run.queue', 'run.dequeue'])
      expect((await store.listActivity({ migrationId: 'app-chart', after: restored!.id, limit: 100 })).map((e) => e.type)).toEqual([
        'run.queue',
        'run.dequeue',
      ])
      // And a migrate with nothing to realign leaves the clock alone.
      const shift = async () => (await sql.unsafe(`select shift::text from "${schema}".activity_clock`))[0]!.shift
      const moved = await shift()
      expect(BigInt(moved)).toBeGreaterThan(0n)
      await migrate(sql, { schema })
      expect(await shift()).toBe(moved)
    } finally {
      await sql.unsafe(`drop schema if exists "${schema}" cascade`)
    }
  })

  it('refuses a schema that a newer version of the package migrated, changing nothing', async () => {
    const sql = await db.sql()
    const schema = freshSchema()
    try {
      await migrate(sql, { schema })
      await sql.unsafe(`insert into "${schema}".schema_migrations (version, name) values (${SCHEMA_VERSION + 1}, 'from the future')`)
      const error = await migrate(sql, { schema }).catch((e: unknown) => e)
      expect(LoomError.is(error, 'unavailable')).toBe(true)
      expect((error as Error).message).toContain('upgrade the package')
      const versions = await sql.unsafe(`select version from "${schema}".schema_migrations order by version`)
      expect(versions.map((v) => v.version)).toEqual([...ALL_VERSIONS, SCHEMA_VERSION + 1])
    } finally {
      await sql.unsafe(`drop schema if exists "${schema}" cascade`)
    }
  })
})

describe.skipIf(!DATABASE_URL)(`migrate from two processes at once ${NEEDS_SERVER}`, () => {
  const one = DATABASE_URL ? serverPool({ max: 2 }) : undefined
  const two = DATABASE_URL ? serverPool({ max: 2 }) : undefined

  it('applies each version exactly once when two pools migrate the same schema together', async () => {
    for (let round = 0; round < 5; round++) {
      const schema = freshSchema()
      try {
        const results = await Promise.all([migrate(one!, { schema }), migrate(two!, { schema }), migrate(one!, { schema })])
        expect(results.flatMap((r) => r.applied)).toEqual(ALL_VERSIONS)
        const versions = await one!.unsafe(`select version from "${schema}".schema_migrations order by version`)
        expect(versions.map((v) => v.version)).toEqual(ALL_VERSIONS)
      } finally {
        await one!.unsafe(`drop schema if exists "${schema}" cascade`)
      }
    }
  })
})
