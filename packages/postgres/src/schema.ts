import { LoomError } from '@loom/core'
import type { Sql } from 'postgres'
import { guard } from './failures'

/** The schema Loom's tables live in unless the caller names another. */
export const DEFAULT_SCHEMA = 'loom'

/**
 * One versioned change of Loom's tables. `sql` is plain DDL where `{schema}` stands for the
 * quoted schema name; it runs once, inside the transaction that records its version.
 */
interface SchemaMigration {
  version: number
  name: string
  sql: string
}

/**
 * The schema, oldest change first. Never edit a released entry: add one with the next version.
 *
 * Timestamps are `timestamptz`; JSON columns are `json`, not `jsonb`, so metadata comes back
 * with its keys in the order it was written and `\u0000` survives. `candidates.search` holds
 * the lower-cased id and metadata values (lower-cased by JavaScript, like `matchesQuery`), so
 * the `q` filter gives the same answers as the memory store on any collation.
 */
const MIGRATIONS: readonly SchemaMigration[] = [
  {
    version: 1,
    name: 'migrations, steps, candidates, runs, run steps, cancelled attempts',
    sql: `
      create table {schema}.migrations (
        id text primary key,
        seq bigint generated always as identity unique,
        name text not null,
        description text,
        worker_url text,
        created_at timestamptz not null
      );

      create table {schema}.steps (
        migration_id text not null references {schema}.migrations (id) on delete cascade,
        position integer not null,
        name text not null,
        worker_app text not null,
        description text,
        config json,
        files json,
        primary key (migration_id, position)
      );

      create table {schema}.candidates (
        migration_id text not null references {schema}.migrations (id) on delete cascade,
        id text not null,
        position integer not null,
        kind text,
        metadata json,
        state json,
        files json,
        search text[] not null,
        primary key (migration_id, id)
      );
      create index candidates_by_position on {schema}.candidates (migration_id, position);

      create sequence {schema}.attempts as bigint;

      create table {schema}.runs (
        migration_id text not null,
        candidate_id text not null,
        attempt bigint not null,
        state text not null
          check (state in ('queued', 'running', 'completed', 'failed', 'cancelled', 'dequeued')),
        current_step integer not null default 0,
        started_at timestamptz,
        version bigint not null default 1,
        updated_at timestamptz not null,
        primary key (migration_id, candidate_id),
        foreign key (migration_id, candidate_id)
          references {schema}.candidates (migration_id, id) on delete cascade
      );
      create index runs_by_state on {schema}.runs (state);

      create table {schema}.run_steps (
        migration_id text not null,
        candidate_id text not null,
        position integer not null,
        step_name text not null,
        success boolean not null,
        done boolean not null,
        result json not null,
        at timestamptz not null,
        primary key (migration_id, candidate_id, step_name),
        foreign key (migration_id, candidate_id)
          references {schema}.runs (migration_id, candidate_id) on delete cascade
      );

      create table {schema}.cancelled_attempts (
        id bigint generated always as identity primary key,
        migration_id text not null references {schema}.migrations (id) on delete cascade,
        candidate_id text not null,
        run_id text not null,
        attempt bigint not null,
        cancelled_at timestamptz not null
      );
      create index cancelled_attempts_by_migration on {schema}.cancelled_attempts (migration_id, id);

      -- The operations that rewrite many rows run server-side, each in one statement: every
      -- statement inside gets a fresh snapshot, so what they check after taking their locks is
      -- current, and no client-side transaction is left open on a connection that dies.

      -- Candidate lists arrive as one JSON array of rows, each an array of strings:
      -- [id, kind, metadata, state, files, search terms], the last four themselves JSON
      -- texts. A NUL escape stays escaped inside the inner text until it lands in a json column.
      create function {schema}.replace_candidates(p_migration text, p_candidates json)
      returns boolean language plpgsql as $$
      declare
        v_ids text[] := array(select e->>0 from json_array_elements(p_candidates) e);
      begin
        perform 1 from {schema}.migrations where id = p_migration for no key update;
        if not found then
          return false;
        end if;
        -- Hold the candidates that may be dropped, and their runs: a queue (which inserts a run,
        -- checking its candidate) or any other transition (which updates the run) now waits.
        perform 1 from {schema}.candidates
          where migration_id = p_migration and id <> all(v_ids) order by id for update;
        perform 1 from {schema}.runs
          where migration_id = p_migration and candidate_id <> all(v_ids) order by candidate_id for update;
        delete from {schema}.candidates c
          where c.migration_id = p_migration and c.id <> all(v_ids)
            and not exists (
              select 1 from {schema}.runs r
              where r.migration_id = c.migration_id and r.candidate_id = c.id
                and r.state in ('queued', 'running', 'completed')
            );
        -- Candidates kept for their run go after the new list, in their previous order.
        update {schema}.candidates c set position = cardinality(v_ids) + kept.rank - 1
          from (
            select id, row_number() over (order by position) as rank
            from {schema}.candidates
            where migration_id = p_migration and id <> all(v_ids)
          ) kept
          where c.migration_id = p_migration and c.id = kept.id;
        insert into {schema}.candidates (migration_id, id, position, kind, metadata, state, files, search)
          select p_migration, e.r->>0, (e.ord - 1)::integer, e.r->>1, (e.r->>2)::json, (e.r->>3)::json,
            (e.r->>4)::json, array(select json_array_elements_text((e.r->>5)::json))
          from json_array_elements(p_candidates) with ordinality as e(r, ord)
          on conflict (migration_id, id) do update set
            position = excluded.position, kind = excluded.kind, metadata = excluded.metadata,
            state = excluded.state, files = excluded.files, search = excluded.search;
        return true;
      end
      $$;

      -- Steps arrive like candidates: [name, workerApp, description, config, files].
      -- p_candidates null keeps the candidate list as it is.
      create function {schema}.upsert_migration(
        p_id text, p_name text, p_description text, p_worker_url text, p_now timestamptz,
        p_steps json, p_candidates json
      ) returns timestamptz language plpgsql as $$
      declare
        v_created timestamptz;
      begin
        insert into {schema}.migrations (id, name, description, worker_url, created_at)
          values (p_id, p_name, p_description, p_worker_url, p_now)
          on conflict (id) do update set
            name = excluded.name, description = excluded.description, worker_url = excluded.worker_url
          returning created_at into v_created;
        delete from {schema}.steps where migration_id = p_id;
        insert into {schema}.steps (migration_id, position, name, worker_app, description, config, files)
          select p_id, (e.ord - 1)::integer, e.r->>0, e.r->>1, e.r->>2, (e.r->>3)::json, (e.r->>4)::json
          from json_array_elements(p_steps) with ordinality as e(r, ord);
        if p_candidates is not null then
          perform {schema}.replace_candidates(p_id, p_candidates);
        end if;
        return v_created;
      end
      $$;

      create function {schema}.delete_migration(p_id text) returns text language plpgsql as $$
      begin
        perform 1 from {schema}.migrations where id = p_id for update;
        if not found then
          return 'not_found';
        end if;
        -- Hold every candidate (no run can be inserted) and every run (none can change state).
        perform 1 from {schema}.candidates where migration_id = p_id order by id for update;
        perform 1 from {schema}.runs where migration_id = p_id order by candidate_id for update;
        if exists (select 1 from {schema}.runs where migration_id = p_id and state = 'running') then
          return 'running';
        end if;
        delete from {schema}.migrations where id = p_id;
        return 'deleted';
      end
      $$;
    `,
  },
  {
    version: 2,
    name: 'step timing, run owners and leases, resumable steps',
    // Nullable columns without defaults: PostgreSQL adds them without rewriting the table, and
    // runs left running by version 1 have no owner, so the first reconciler claims them.
    sql: `
      alter table {schema}.runs
        add column step_started_at timestamptz,
        add column step_dispatched_at timestamptz,
        add column owner text,
        -- json, like every JSON column here: the steps' metadata keeps its key order and NUL escapes.
        add column resumable json;
      alter table {schema}.run_steps add column carried_from bigint;

      create table {schema}.leases (
        owner text primary key,
        until timestamptz not null
      );
      -- claimRuns scans the running runs by owner; only running runs are ever claimed.
      create index runs_running_by_owner on {schema}.runs (owner) where state = 'running';
    `,
  },
  {
    version: 3,
    name: 'migration owners, claimed by the announcing worker',
    // Nullable without a default, like version 2's columns: the table is not rewritten, and a
    // migration stored before has no owner until a worker announces it.
    sql: `
      alter table {schema}.migrations add column owner text;

      -- The upsert with a claimant: version 1's function (seven arguments) is left as it was, so a
      -- process still on the older package keeps announcing while the others upgrade; it never
      -- writes the owner, which is what an upsert without a claimant does.
      --
      -- The claim is the insert itself: a migration that belongs to another worker matches
      -- no row of the update, and then nothing else is written either. ON CONFLICT has locked
      -- that row all the same, and the next statement's snapshot sees it (and the steps its
      -- owner wrote), so the stored migration is read back, for the caller to answer from.
      -- o_applied says which: true, the definition was written and o_created and o_owner are
      -- set; false, nothing was, and every o_ column holds what is stored.
      create function {schema}.upsert_migration(
        p_id text, p_name text, p_description text, p_worker_url text, p_now timestamptz,
        p_steps json, p_candidates json, p_claimant text,
        out o_applied boolean, out o_created timestamptz, out o_owner text,
        out o_name text, out o_description text, out o_worker_url text, out o_steps json
      ) language plpgsql as $$
      begin
        insert into {schema}.migrations as m (id, name, description, worker_url, created_at, owner)
          values (p_id, p_name, p_description, p_worker_url, p_now, p_claimant)
          on conflict (id) do update set
            name = excluded.name, description = excluded.description, worker_url = excluded.worker_url,
            owner = coalesce(m.owner, excluded.owner)
          where p_claimant is null or m.owner is null or m.owner = p_claimant
          returning m.created_at, m.owner into o_created, o_owner;
        o_applied := found;
        if not o_applied then
          select m.created_at, m.owner, m.name, m.description, m.worker_url,
            coalesce((
              select json_agg(json_build_object(
                'name', s.name, 'workerApp', s.worker_app, 'description', s.description,
                'config', s.config, 'files', s.files
              ) order by s.position)
              from {schema}.steps s where s.migration_id = p_id
            ), '[]'::json)
            into o_created, o_owner, o_name, o_description, o_worker_url, o_steps
            from {schema}.migrations m where m.id = p_id;
          return;
        end if;
        delete from {schema}.steps where migration_id = p_id;
        insert into {schema}.steps (migration_id, position, name, worker_app, description, config, files)
          select p_id, (e.ord - 1)::integer, e.r->>0, e.r->>1, e.r->>2, (e.r->>3)::json, (e.r->>4)::json
          from json_array_elements(p_steps) with ordinality as e(r, ord);
        if p_candidates is not null then
          perform {schema}.replace_candidates(p_id, p_candidates);
        end if;
      end
      $$;
    `,
  },
]

/** The newest schema version this package knows. */
export const SCHEMA_VERSION = MIGRATIONS[MIGRATIONS.length - 1]!.version

export interface MigrateOptions {
  /** The schema to create Loom's tables in. Default `loom`. */
  schema?: string
}

export interface MigrateResult {
  /** The versions this call applied, oldest first; empty when the schema was up to date. */
  applied: number[]
  /** The schema's version after the call. */
  version: number
}

/**
 * Brings Loom's tables in `schema` up to date. Idempotent, and safe when several processes
 * call it at once: they queue on a transaction-scoped advisory lock, and each version is
 * applied in the transaction that records it, so a failure leaves the previous version intact.
 *
 * @example
 * import postgres from 'postgres'
 * import { migrate, postgresStore } from '@loom/postgres'
 *
 * const sql = postgres(process.env.DATABASE_URL!)
 * await migrate(sql)
 * const store = postgresStore(sql)
 */
export function migrate(sql: Sql<any>, options: MigrateOptions = {}): Promise<MigrateResult> {
  return migrateTo(sql, schemaName(options.schema), SCHEMA_VERSION)
}

/** `migrate` up to `target` only: how the tests build a schema as an older package left it. */
export async function migrateTo(sql: Sql<any>, schema: string, target: number): Promise<MigrateResult> {
  const quoted = `"${schema}"`
  return guard(() =>
    sql.begin(async (tx) => {
      // `if not exists` reports "already exists, skipping" as a notice; keep the caller's log quiet.
      await tx`set local client_min_messages = warning`
      await tx`select pg_advisory_xact_lock(${LOCK_CLASS}, hashtext(${schema}))`
      await tx.unsafe(`create schema if not exists ${quoted}`)
      await tx.unsafe(
        `create table if not exists ${quoted}.schema_migrations (
           version integer primary key,
           name text not null,
           applied_at timestamptz not null default now()
         )`,
      )
      const rows = await tx.unsafe<{ version: number }[]>(`select version from ${quoted}.schema_migrations`)
      const done = new Set(rows.map((r) => Number(r.version)))
      const newest = Math.max(0, ...done)
      if (newest > SCHEMA_VERSION) {
        throw new LoomError(
          'unavailable',
          `schema "${schema}" is at version ${newest}, newer than this @loom/postgres knows (${SCHEMA_VERSION}): upgrade the package`,
          { details: { schema, version: newest } },
        )
      }
      const applied: number[] = []
      for (const m of MIGRATIONS) {
        if (done.has(m.version) || m.version > target) continue
        await tx.unsafe(m.sql.replaceAll('{schema}', quoted)).simple()
        await tx.unsafe(`insert into ${quoted}.schema_migrations (version, name) values ($1, $2)`, [m.version, m.name])
        applied.push(m.version)
      }
      return { applied, version: Math.max(newest, ...applied) }
    }),
  )
}

/** The advisory lock class of Loom's migrations ("LOOM" in ASCII); the schema's hash is the key. */
const LOCK_CLASS = 0x4c4f4f4d

const SCHEMA_NAME = /^[A-Za-z_][A-Za-z0-9_]{0,62}$/

/** The schema name, checked so that it is always a plain identifier. */
export function schemaName(schema: string | undefined): string {
  if (schema === undefined) return DEFAULT_SCHEMA
  if (typeof schema !== 'string' || !SCHEMA_NAME.test(schema)) {
    throw new LoomError('invalid', `schema: "${String(schema)}" must be 1-63 characters of A-Z a-z 0-9 _, not starting with a digit`, {
      details: { field: 'schema' },
    })
  }
  return schema
}
