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
  {
    version: 4,
    name: 'activity log, who cancelled and why',
    sql: `
      -- Who cancelled an attempt, and why. Nullable, so the table is not rewritten: an attempt
      -- cancelled before version 4 has its run, candidate, attempt and time, and no actor.
      alter table {schema}.cancelled_attempts
        add column cancelled_by_kind text,
        add column cancelled_by_name text,
        add column reason text;

      -- The activity log's ids: (the writing transaction's id, xid8, + shift) * 100,000 + the
      -- entry's rank among that transaction's entries (at most 100,000, counted in a
      -- transaction-local setting). PostgreSQL hands out transaction ids in order, and every
      -- transaction still running holds one at least as large as a snapshot's xmin, while any
      -- that starts writing later gets a larger one. So a reader that takes only ids below
      -- (xmin + shift) * 100,000 of its own snapshot never passes an entry that commits after it
      -- read: whatever it has not seen yet has, or will get, a greater id. And a write that
      -- starts after another committed has a greater id, so a run's entries follow its changes.
      -- shift stays 0 unless the database is restored into a new cluster, whose transaction
      -- ids start over: migrate then raises it so that new ids stay above the log's.
      create table {schema}.activity_clock (shift bigint not null);
      insert into {schema}.activity_clock (shift) values (0);

      create function {schema}.activity_id() returns bigint language plpgsql volatile as $$
      declare
        v_rank bigint := coalesce(nullif(current_setting('loom.activity_rank', true), ''), '0')::bigint;
      begin
        if v_rank >= 100000 then
          raise exception 'one transaction may write at most 100000 activity entries';
        end if;
        perform set_config('loom.activity_rank', (v_rank + 1)::text, true);
        return (pg_current_xact_id()::text::bigint + (select shift from {schema}.activity_clock)) * 100000 + v_rank;
      end
      $$;

      -- Every id a transaction still running (or yet to start) can write is at least this.
      -- Stable, so it reads the snapshot of the statement that calls it: the snapshot whose
      -- committed entries that statement reads.
      create function {schema}.activity_horizon() returns bigint language sql stable as $$
        select (pg_snapshot_xmin(pg_current_snapshot())::text::bigint + (select shift from {schema}.activity_clock)) * 100000
      $$;

      -- No foreign key to migrations: a deleted migration's log is kept. Fixed-width columns
      -- first, so no padding sits between them. Ids are unique by how they are made; the two
      -- indexes are the two ways the log is read, a migration's and a candidate's, each from a
      -- cursor on. There is no index on id alone: it follows the table's physical order, which
      -- makes it look cheap to a generic plan that does not know the candidate it reads, and
      -- that plan would then filter its way through every other candidate's entries.
      create table {schema}.activity (
        id bigint not null default {schema}.activity_id(),
        at timestamptz not null,
        attempt bigint,
        migration_id text not null,
        candidate_id text,
        run_id text,
        type text not null,
        actor_kind text not null,
        actor_name text not null,
        detail json not null,
        primary key (migration_id, id)
      );
      create index activity_by_candidate on {schema}.activity (migration_id, candidate_id, id) where candidate_id is not null;

      -- A draft as core builds it (ActivityDraft as JSON); p_attempt, when set, overrides its attempt.
      create function {schema}.log_activity(p_draft json, p_attempt bigint) returns void language sql as $$
        insert into {schema}.activity (at, attempt, migration_id, candidate_id, run_id, type, actor_kind, actor_name, detail)
        select (p_draft->>'at')::timestamptz, coalesce(p_attempt, (p_draft->>'attempt')::bigint), p_draft->>'migrationId',
          p_draft->>'candidateId', p_draft->>'runId', p_draft->>'type', p_draft->'actor'->>'kind', p_draft->'actor'->>'name',
          coalesce(p_draft->'detail', '{}'::json)
        where p_draft is not null
      $$;

      -- The rewrites with their log entry, written in the same call when the rewrite applied. The
      -- functions of earlier versions stay as they were, for a process not yet upgraded: it
      -- writes no entries.
      create function {schema}.replace_candidates(p_migration text, p_candidates json, p_activity json)
      returns boolean language plpgsql as $$
      begin
        if not {schema}.replace_candidates(p_migration, p_candidates) then
          return false;
        end if;
        perform {schema}.log_activity(p_activity, null);
        return true;
      end
      $$;

      create function {schema}.upsert_migration(
        p_id text, p_name text, p_description text, p_worker_url text, p_now timestamptz,
        p_steps json, p_candidates json, p_claimant text, p_activity json,
        out o_applied boolean, out o_created timestamptz, out o_owner text,
        out o_name text, out o_description text, out o_worker_url text, out o_steps json
      ) language plpgsql as $$
      begin
        select u.o_applied, u.o_created, u.o_owner, u.o_name, u.o_description, u.o_worker_url, u.o_steps
          into o_applied, o_created, o_owner, o_name, o_description, o_worker_url, o_steps
          from {schema}.upsert_migration(p_id, p_name, p_description, p_worker_url, p_now, p_steps, p_candidates, p_claimant) u;
        if o_applied then
          perform {schema}.log_activity(p_activity, null);
        end if;
      end
      $$;

      create function {schema}.delete_migration(p_id text, p_activity json) returns text language plpgsql as $$
      declare
        v_outcome text := {schema}.delete_migration(p_id);
      begin
        if v_outcome = 'deleted' then
          perform {schema}.log_activity(p_activity, null);
        end if;
        return v_outcome;
      end
      $$;
    `,
  },
  {
    version: 5,
    name: 'last attempts, step reporters, the log in order',
    sql: `
      -- How an attempt that did not complete ended (LastAttempt as JSON), and its outcome on its
      -- own for the lastOutcome filter and counts.failed. Who reported each step. All nullable
      -- without defaults, so no table is rewritten: a run ended before version 5 has no last
      -- attempt, and a step reported before it no reporter.
      alter table {schema}.runs
        add column last_attempt json,
        add column last_outcome text;
      alter table {schema}.run_steps
        add column by_kind text,
        add column by_name text;

      -- The whole log in id order, what a subscriber to every change reads from its cursor. On
      -- (id + 0), not id: only a query that asks for that expression can use it, so the reads of
      -- one migration or candidate keep their own indexes whatever a generic plan guesses (see
      -- version 4: an index on id alone looks cheap to them and is not).
      create index activity_in_order on {schema}.activity ((id + 0));

    `,
  },
  {
    version: 6,
    name: 'kept counts and versions, standings on candidates, indexes for every filter, linear rewrites',
    sql: `
      -- Every change a migration's reads show draws a new version from this sequence (a
      -- migration deleted and made again never repeats one): what ETags are made of.
      create sequence {schema}.versions as bigint;
      -- From a random place: a schema dropped and made again must not repeat the versions, and so
      -- the ETags, that clients may still hold from the one before.
      select setval('{schema}.versions', 1 + floor(random() * 4503599627370496)::bigint);

      -- The counts overviews and totals read, kept by the triggers below in the statement that
      -- changes a candidate, so that no read counts candidates. n_<outcome>: of the not_started
      -- candidates, those whose last attempt ended so.
      alter table {schema}.migrations
        add column version bigint not null default nextval('{schema}.versions'),
        add column n_candidates integer not null default 0,
        add column n_queued integer not null default 0,
        add column n_running integer not null default 0,
        add column n_completed integer not null default 0,
        add column n_failed integer not null default 0,
        add column n_rejected integer not null default 0,
        add column n_cancelled integer not null default 0,
        add column n_dequeued integer not null default 0;

      -- Each candidate's standing (core's standingOf: its status, and its last attempt's outcome
      -- while not_started), kept from its run by the trigger on runs, so that the status and
      -- last-outcome filters are index ranges in listing order. search_text: the search terms as
      -- one text, for the trigram index; the terms themselves still decide what matches.
      create function {schema}.search_text(p_terms text[]) returns text language sql immutable parallel safe as
        $$ select array_to_string(p_terms, chr(31)) $$;
      alter table {schema}.candidates
        add column status text not null default 'not_started',
        add column last_outcome text,
        add column search_text text generated always as ({schema}.search_text(search)) stored;

      update {schema}.candidates c set
        status = case when r.state in ('queued', 'running', 'completed') then r.state else 'not_started' end,
        last_outcome = case when r.state in ('queued', 'running', 'completed') then null else r.last_outcome end
        from {schema}.runs r
        where r.migration_id = c.migration_id and r.candidate_id = c.id;
      update {schema}.migrations m set
        n_candidates = k.total, n_queued = k.queued, n_running = k.running, n_completed = k.completed,
        n_failed = k.failed, n_rejected = k.rejected, n_cancelled = k.cancelled, n_dequeued = k.dequeued
        from (
          select migration_id, count(*) as total,
            count(*) filter (where status = 'queued') as queued,
            count(*) filter (where status = 'running') as running,
            count(*) filter (where status = 'completed') as completed,
            count(*) filter (where last_outcome = 'failed') as failed,
            count(*) filter (where last_outcome = 'rejected') as rejected,
            count(*) filter (where last_outcome = 'cancelled') as cancelled,
            count(*) filter (where last_outcome = 'dequeued') as dequeued
          from {schema}.candidates group by migration_id
        ) k
        where k.migration_id = m.id;

      create index candidates_by_status on {schema}.candidates (migration_id, status, position);
      create index candidates_by_outcome on {schema}.candidates (migration_id, last_outcome, position)
        where last_outcome is not null;

      -- The trigram index makes a q= search cost in proportion to what it matches. pg_trgm ships
      -- with PostgreSQL and is trusted (a database owner may create it); where it cannot be had,
      -- searches still answer, reading the migration's candidates.
      do $trgm$
      declare
        v_schema text;
      begin
        begin
          create extension if not exists pg_trgm;
        exception when others then
          raise warning 'loom: pg_trgm is not available (%), so q= searches read every candidate', sqlerrm;
        end;
        select n.nspname into v_schema
          from pg_opclass o join pg_namespace n on n.oid = o.opcnamespace
          where o.opcname = 'gin_trgm_ops' limit 1;
        if v_schema is not null then
          execute format('create index candidates_search on {schema}.candidates using gin (search_text %I.gin_trgm_ops)', v_schema);
        end if;
      end
      $trgm$;

      -- A migration row that changes (its definition, its counts) takes a new version.
      create function {schema}.next_version() returns trigger language plpgsql as $$
      begin
        new.version := nextval('{schema}.versions');
        return new;
      end
      $$;
      create trigger next_version before update on {schema}.migrations
        for each row execute function {schema}.next_version();

      -- A run's state becomes its candidate's standing, once per statement for all its rows. A
      -- statement that leaves every standing as it was (a step report, a claim) writes nothing
      -- here, so it takes no lock on a candidate or a migration.
      --
      -- Locks: a transition locks its migration's row first (see the store's runs.ts), then the
      -- run, the candidate and, through the next trigger, the migration again. The rewrites
      -- (replace_candidates, delete_migration, upsert_migration) lock the migration's row first
      -- too, so the two never wait for each other in opposite orders.
      create function {schema}.runs_standing() returns trigger language plpgsql as $$
      begin
        update {schema}.candidates c set status = s.status, last_outcome = s.outcome
          from (
            select n.migration_id, n.candidate_id,
              case when n.state in ('queued', 'running', 'completed') then n.state else 'not_started' end as status,
              case when n.state in ('queued', 'running', 'completed') then null else n.last_outcome end as outcome
            from new_runs n
          ) s
          where c.migration_id = s.migration_id and c.id = s.candidate_id
            and (c.status, c.last_outcome) is distinct from (s.status, s.outcome);
        return null;
      end
      $$;
      create trigger runs_inserted after insert on {schema}.runs
        referencing new table as new_runs for each statement execute function {schema}.runs_standing();
      create trigger runs_updated after update on {schema}.runs
        referencing new table as new_runs for each statement execute function {schema}.runs_standing();

      -- Candidates added, changed or removed move their migration's counts (and so its version),
      -- once per statement: a rewrite of 100,000 candidates is one update of one row. A change is
      -- the candidate's new standing counted in (+1) and its old one counted out (-1).
      create type {schema}.standing as (migration_id text, sign integer, status text, last_outcome text);
      create function {schema}.candidates_counted() returns trigger language plpgsql as $$
      declare
        v_changed {schema}.standing[];
      begin
        if tg_op = 'INSERT' then
          v_changed := array(select (migration_id, 1, status, last_outcome)::{schema}.standing from new_candidates);
        elsif tg_op = 'DELETE' then
          v_changed := array(select (migration_id, -1, status, last_outcome)::{schema}.standing from old_candidates);
        else
          v_changed := array(
            select (migration_id, 1, status, last_outcome)::{schema}.standing from new_candidates
            union all
            select (migration_id, -1, status, last_outcome)::{schema}.standing from old_candidates
          );
        end if;
        update {schema}.migrations m set
          n_candidates = m.n_candidates + d.total, n_queued = m.n_queued + d.queued, n_running = m.n_running + d.running,
          n_completed = m.n_completed + d.completed, n_failed = m.n_failed + d.failed, n_rejected = m.n_rejected + d.rejected,
          n_cancelled = m.n_cancelled + d.cancelled, n_dequeued = m.n_dequeued + d.dequeued
          from (
            select migration_id, sum(sign) as total,
              coalesce(sum(sign) filter (where status = 'queued'), 0) as queued,
              coalesce(sum(sign) filter (where status = 'running'), 0) as running,
              coalesce(sum(sign) filter (where status = 'completed'), 0) as completed,
              coalesce(sum(sign) filter (where last_outcome = 'failed'), 0) as failed,
              coalesce(sum(sign) filter (where last_outcome = 'rejected'), 0) as rejected,
              coalesce(sum(sign) filter (where last_outcome = 'cancelled'), 0) as cancelled,
              coalesce(sum(sign) filter (where last_outcome = 'dequeued'), 0) as dequeued
            from unnest(v_changed) group by migration_id
          ) d
          where m.id = d.migration_id;
        return null;
      end
      $$;
      create trigger candidates_inserted after insert on {schema}.candidates
        referencing new table as new_candidates for each statement execute function {schema}.candidates_counted();
      create trigger candidates_updated after update on {schema}.candidates
        referencing old table as old_candidates new table as new_candidates
        for each statement execute function {schema}.candidates_counted();
      create trigger candidates_deleted after delete on {schema}.candidates
        referencing old table as old_candidates for each statement execute function {schema}.candidates_counted();

      -- The trigram index takes a big insert into its pending list, which every search then reads
      -- whole until a vacuum merges it: the rewrites merge it at once instead, at a cost in
      -- proportion to what they wrote, so the first searches after a submission cost what later
      -- ones do. (Only the index's owner may: a store connecting as another role leaves it to vacuum.)
      create function {schema}.merge_search_index() returns void language plpgsql as $$
      begin
        if to_regclass('{schema}.candidates_search') is not null then
          begin
            perform gin_clean_pending_list(to_regclass('{schema}.candidates_search'));
          exception when insufficient_privilege then
            null;
          end;
        end if;
      end
      $$;

      -- The rewrite of version 1, linear: the new list's ids are matched by a hash of them (not
      -- by "<> all", which compares every candidate with every id), the kept candidates are
      -- known by their standing, and a candidate that arrives as it is stored is not written
      -- again, so submitting the same list twice reads it and changes nothing. Every caller,
      -- this version's and older ones, runs this body. The planner cannot know how many ids the
      -- array holds and guesses a few: it would then look each candidate up in the array (a
      -- nested loop, quadratic), so nested loops are off while the function runs, leaving hash
      -- joins, linear.
      create or replace function {schema}.replace_candidates(p_migration text, p_candidates json)
      returns boolean language plpgsql set enable_nestloop = off as $$
      declare
        v_ids text[] := array(select e->>0 from json_array_elements(p_candidates) e);
      begin
        perform 1 from {schema}.migrations where id = p_migration for no key update;
        if not found then
          return false;
        end if;
        -- A process of an older version moves runs without locking the migration first: hold the
        -- runs and candidates that may be dropped or moved, so that its transitions wait.
        perform 1 from {schema}.runs r
          where r.migration_id = p_migration and not exists (select 1 from unnest(v_ids) n(id) where n.id = r.candidate_id)
          order by r.candidate_id for update;
        perform 1 from {schema}.candidates c
          where c.migration_id = p_migration and not exists (select 1 from unnest(v_ids) n(id) where n.id = c.id)
          order by c.id for update;
        delete from {schema}.candidates c
          where c.migration_id = p_migration and c.status = 'not_started'
            and not exists (select 1 from unnest(v_ids) n(id) where n.id = c.id);
        -- Candidates kept for their run go after the new list, in their previous order.
        update {schema}.candidates c set position = cardinality(v_ids) + kept.rank - 1
          from (
            select k.id, row_number() over (order by k.position) as rank
            from {schema}.candidates k
            where k.migration_id = p_migration and not exists (select 1 from unnest(v_ids) n(id) where n.id = k.id)
          ) kept
          where c.migration_id = p_migration and c.id = kept.id and c.position <> cardinality(v_ids) + kept.rank - 1;
        insert into {schema}.candidates as c (migration_id, id, position, kind, metadata, state, files, search)
          select p_migration, e.r->>0, (e.ord - 1)::integer, e.r->>1, (e.r->>2)::json, (e.r->>3)::json,
            (e.r->>4)::json, array(select json_array_elements_text((e.r->>5)::json))
          from json_array_elements(p_candidates) with ordinality as e(r, ord)
          on conflict (migration_id, id) do update set
            position = excluded.position, kind = excluded.kind, metadata = excluded.metadata,
            state = excluded.state, files = excluded.files, search = excluded.search
          where (c.position, c.kind, c.metadata::text, c.state::text, c.files::text)
            is distinct from (excluded.position, excluded.kind, excluded.metadata::text, excluded.state::text, excluded.files::text);
        perform {schema}.merge_search_index();
        return true;
      end
      $$;
    `,
  },
  {
    version: 7,
    name: 'patches of candidate lists, discoveries staged in parts',
    sql: `
      -- A discovery: a candidate list staged in parts, from any process, until its commit swaps it
      -- in or it expires. staged: how many it holds, so that each part's positions follow the last.
      create table {schema}.discoveries (
        id text primary key,
        migration_id text not null references {schema}.migrations (id) on delete cascade,
        expires_at timestamptz not null,
        staged integer not null default 0
      );
      create index discoveries_by_expiry on {schema}.discoveries (expires_at);
      create index discoveries_by_migration on {schema}.discoveries (migration_id);

      -- Rows as candidates holds them, search terms made. The key finds a part's duplicates by
      -- index, in proportion to the part; position is the order of the list to commit.
      create table {schema}.staged_candidates (
        discovery_id text not null references {schema}.discoveries (id) on delete cascade,
        id text not null,
        position integer not null,
        kind text,
        metadata json,
        state json,
        files json,
        search text[] not null,
        primary key (discovery_id, id)
      );

      -- A part, rows as replace_candidates takes them. The discovery's row is locked first, so the
      -- parts of one discovery are staged one after the other, each whole (and its duplicate check
      -- sees every part before it); those of different discoveries do not wait for each other.
      create function {schema}.stage_candidates(
        p_migration text, p_discovery text, p_candidates json, p_at timestamptz, p_expires timestamptz, p_limit integer,
        out o_outcome text, out o_total integer, out o_candidate text
      ) language plpgsql as $$
      declare
        v_staged integer;
        v_ids text[] := array(select e->>0 from json_array_elements(p_candidates) e);
        v_count integer := cardinality(v_ids);
      begin
        select d.staged into v_staged from {schema}.discoveries d
          where d.id = p_discovery and d.migration_id = p_migration and d.expires_at > p_at
          for update;
        if not found then
          o_outcome := 'not_found';
          return;
        end if;
        -- The part's ids looked up in the key with "= any": one probe each, whatever the planner
        -- thinks of a table that was empty a moment ago (a join planned from its statistics, taken
        -- before the earlier parts, rescans the part for every staged row: seconds at 10,000).
        -- Of several duplicates, the first in the part's order is named.
        select s.id into o_candidate
          from {schema}.staged_candidates s
          where s.discovery_id = p_discovery and s.id = any(v_ids)
          order by array_position(v_ids, s.id) limit 1;
        if o_candidate is not null then
          o_outcome := 'duplicate';
          return;
        end if;
        if v_staged + v_count > p_limit then
          o_outcome := 'too_many';
          o_total := v_staged;
          return;
        end if;
        insert into {schema}.staged_candidates (discovery_id, id, position, kind, metadata, state, files, search)
          select p_discovery, e.r->>0, v_staged + (e.ord - 1)::integer, e.r->>1, (e.r->>2)::json, (e.r->>3)::json,
            (e.r->>4)::json, array(select json_array_elements_text((e.r->>5)::json))
          from json_array_elements(p_candidates) with ordinality as e(r, ord);
        update {schema}.discoveries set staged = v_staged + v_count, expires_at = p_expires where id = p_discovery;
        o_outcome := 'staged';
        o_total := v_staged + v_count;
      end
      $$;

      -- The commit: version 6's replace_candidates, statement for statement, reading the new list
      -- from the staged rows instead of a JSON parameter (each lookup of a staged id is by the
      -- key), then the discovery goes. Returns how many were committed, or null (nothing changed)
      -- when the migration has no such discovery unexpired at p_at. The entry's detail gets that
      -- count (p_activity's own detail has none: json keeps duplicate keys, and the last would win).
      create function {schema}.commit_discovery(p_migration text, p_discovery text, p_at timestamptz, p_activity json)
      returns integer language plpgsql set enable_nestloop = off as $$
      declare
        v_count integer;
        v_detail json;
      begin
        perform 1 from {schema}.migrations where id = p_migration for no key update;
        if not found then
          return null;
        end if;
        select d.staged into v_count from {schema}.discoveries d
          where d.id = p_discovery and d.migration_id = p_migration and d.expires_at > p_at
          for update;
        if not found then
          return null;
        end if;
        perform 1 from {schema}.runs r
          where r.migration_id = p_migration
            and not exists (select 1 from {schema}.staged_candidates n where n.discovery_id = p_discovery and n.id = r.candidate_id)
          order by r.candidate_id for update;
        perform 1 from {schema}.candidates c
          where c.migration_id = p_migration
            and not exists (select 1 from {schema}.staged_candidates n where n.discovery_id = p_discovery and n.id = c.id)
          order by c.id for update;
        delete from {schema}.candidates c
          where c.migration_id = p_migration and c.status = 'not_started'
            and not exists (select 1 from {schema}.staged_candidates n where n.discovery_id = p_discovery and n.id = c.id);
        update {schema}.candidates c set position = v_count + kept.rank - 1
          from (
            select k.id, row_number() over (order by k.position) as rank
            from {schema}.candidates k
            where k.migration_id = p_migration
              and not exists (select 1 from {schema}.staged_candidates n where n.discovery_id = p_discovery and n.id = k.id)
          ) kept
          where c.migration_id = p_migration and c.id = kept.id and c.position <> v_count + kept.rank - 1;
        insert into {schema}.candidates as c (migration_id, id, position, kind, metadata, state, files, search)
          select p_migration, n.id, n.position, n.kind, n.metadata, n.state, n.files, n.search
          from {schema}.staged_candidates n where n.discovery_id = p_discovery
          on conflict (migration_id, id) do update set
            position = excluded.position, kind = excluded.kind, metadata = excluded.metadata,
            state = excluded.state, files = excluded.files, search = excluded.search
          where (c.position, c.kind, c.metadata::text, c.state::text, c.files::text)
            is distinct from (excluded.position, excluded.kind, excluded.metadata::text, excluded.state::text, excluded.files::text);
        delete from {schema}.discoveries where id = p_discovery;
        perform {schema}.merge_search_index();
        if p_activity is not null then
          v_detail := coalesce(p_activity->'detail', '{}'::json);
          v_detail := case
            when not exists (select 1 from json_object_keys(v_detail)) then json_build_object('count', v_count)
            else ('{"count":' || v_count || ',' || ltrim(v_detail::text, E' \t\r\n{'))::json
          end;
          insert into {schema}.activity (at, attempt, migration_id, candidate_id, run_id, type, actor_kind, actor_name, detail)
            values ((p_activity->>'at')::timestamptz, (p_activity->>'attempt')::bigint, p_activity->>'migrationId',
              p_activity->>'candidateId', p_activity->>'runId', p_activity->>'type', p_activity->'actor'->>'kind',
              p_activity->'actor'->>'name', v_detail);
        end if;
        return v_count;
      end
      $$;

      -- Part of a list: the removed candidates go (but for those kept for their run), those it has
      -- are rewritten where they stand, the new ones follow the last, in order. Each candidate of
      -- the patch is found by its key, so a patch costs in proportion to itself. The migration's
      -- row is locked first, as every rewrite locks it (see version 6).
      create function {schema}.patch_candidates(p_migration text, p_upsert json, p_remove json, p_activity json)
      returns boolean language plpgsql as $$
      declare
        v_remove text[] := array(select json_array_elements_text(p_remove));
        v_next integer;
      begin
        perform 1 from {schema}.migrations where id = p_migration for no key update;
        if not found then
          return false;
        end if;
        perform 1 from {schema}.runs r
          where r.migration_id = p_migration and r.candidate_id = any(v_remove) order by r.candidate_id for update;
        perform 1 from {schema}.candidates c
          where c.migration_id = p_migration and c.id = any(v_remove) order by c.id for update;
        delete from {schema}.candidates c
          where c.migration_id = p_migration and c.status = 'not_started' and c.id in (select unnest(v_remove));
        update {schema}.candidates c set
            kind = e.r->>1, metadata = (e.r->>2)::json, state = (e.r->>3)::json, files = (e.r->>4)::json,
            search = array(select json_array_elements_text((e.r->>5)::json))
          from json_array_elements(p_upsert) e(r)
          where c.migration_id = p_migration and c.id = e.r->>0
            and (c.kind, c.metadata::text, c.state::text, c.files::text)
              is distinct from (e.r->>1, e.r->>2, e.r->>3, e.r->>4);
        select coalesce(max(position) + 1, 0) into v_next from {schema}.candidates where migration_id = p_migration;
        insert into {schema}.candidates (migration_id, id, position, kind, metadata, state, files, search)
          select p_migration, e.r->>0, v_next + (row_number() over (order by e.ord))::integer - 1, e.r->>1, (e.r->>2)::json,
            (e.r->>3)::json, (e.r->>4)::json, array(select json_array_elements_text((e.r->>5)::json))
          from json_array_elements(p_upsert) with ordinality as e(r, ord)
          where not exists (select 1 from {schema}.candidates k where k.migration_id = p_migration and k.id = e.r->>0);
        perform {schema}.log_activity(p_activity, null);
        return true;
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
      const version = Math.max(newest, ...applied)
      if (version >= 4) await tx.unsafe(REALIGN_ACTIVITY_CLOCK.replaceAll('{schema}', quoted))
      return { applied, version }
    }),
  )
}

/**
 * Keeps new activity ids above the log's. Transaction ids only grow within a cluster, and
 * pg_upgrade keeps them, but a database dumped and restored into another cluster (or moved
 * there by logical replication) starts over at small ones: its next entries would sort before
 * every entry it already has, and readers holding a cursor would never see them. Run by every
 * `migrate`, so by every process before it serves; when the log's newest id is not below this
 * transaction's, `shift` grows by the difference, and is left alone otherwise.
 */
const REALIGN_ACTIVITY_CLOCK = `
  update {schema}.activity_clock set shift = shift + (newest.id / 100000) - (pg_current_xact_id()::text::bigint + shift) + 1
  from (select max(id) as id from {schema}.activity) newest
  where newest.id >= (pg_current_xact_id()::text::bigint + shift) * 100000
`

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
