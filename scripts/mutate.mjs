/**
 * The mutation audit of the test suite (issue 19): plants each bug of a listed set, one at a
 * time, in a temporary copy of the repository, runs the fast test projects that should catch
 * it, and prints which were killed (some test failed) and which survived, with the score. Run
 * it again when the rules change; it is not part of `npm test`.
 *
 *   node scripts/mutate.mjs                   # every mutation (about 11 minutes on 2 cores)
 *   node scripts/mutate.mjs --list            # the list, each `find` checked against the tree
 *   node scripts/mutate.mjs --only rules-dequeue-from-running,pg-transition-cas
 *   node scripts/mutate.mjs --server          # postgres also on the PostgreSQL of DATABASE_URL
 *   node scripts/mutate.mjs --keep            # keep the copy (its path is printed) to debug
 *
 * The copy is the working tree as it is (uncommitted edits included, `.git` and `.loom-data`
 * left out), `node_modules` with it: the workspace packages are relative links
 * (`node_modules/@loom/core -> ../../packages/core`), so in the copy they resolve to the copy's
 * packages. There the packages the tests import are built once (JavaScript only: Vitest does
 * not read declarations), their `dist/` put aside, and the projects the list names run once
 * unmutated: a test that fails then is ignored afterwards, so only what a mutation breaks
 * counts. Then, for each mutation: its `find` (which must occur exactly once in its file, or
 * the audit stops, naming it) is replaced, the package is rebuilt, its projects run with
 * Vitest's JSON reporter, and the file and the package's `dist/` are put back. Without
 * `--server` DATABASE_URL is removed, so postgres runs on PGlite only.
 *
 * Exit code: 0 when every mutation is killed, 1 when one survived, 2 when the audit could not
 * be run as listed (a `find` that rotted, a build that failed, a project with no report).
 */
import { spawn } from 'node:child_process'
import { cpSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, realpathSync, rmSync, writeFileSync } from 'node:fs'
import { availableParallelism, tmpdir } from 'node:os'
import { join, relative } from 'node:path'
import { fileURLToPath } from 'node:url'
import { parseArgs } from 'node:util'

const ROOT = fileURLToPath(new URL('..', import.meta.url))

/** The fast projects, by the `name` of their Vitest config, and where their tests are. */
const PROJECTS = {
  core: 'packages/core',
  hono: 'packages/hono',
  client: 'packages/client',
  worker: 'packages/worker',
  postgres: 'packages/postgres',
}

/** What the fast projects import from `dist/`, in build order (each after what it depends on). */
const BUILT = ['core', 'mqtt', 'client', 'hono', 'worker', 'postgres']

/** The postgres files that test the store's writes; the server-only ones are skipped without DATABASE_URL. */
const POSTGRES_STORE_TESTS = [
  'packages/postgres/test/contract.test.ts',
  'packages/postgres/test/compare-and-set.test.ts',
  'packages/postgres/src/postgres-store.test.ts',
]

// biome-ignore-start lint/suspicious/noTemplateCurlyInString: the finds quote source code, placeholders included
/**
 * The bugs to plant. `find` must occur exactly once in `file` (a path from the repository's
 * root); `replace` takes its place. `projects` are the fast projects run against it, and
 * `tests`, when given, narrows them to those test files (Vitest filters: parts of a path).
 */
const MUTATIONS = [
  // What issue 19's audit found.
  {
    id: 'rules-dequeue-from-running',
    file: 'packages/core/src/rules.ts',
    find: "dequeue: { from: ['queued'], to: 'dequeued' },",
    replace: "dequeue: { from: ['queued', 'running'], to: 'dequeued' },",
    projects: ['core'],
    why: 'a running candidate dequeued behind its engine: only a literal table of outcomes catches a wrong rule',
  },
  {
    id: 'rules-execute-from-not-started',
    file: 'packages/core/src/rules.ts',
    find: "execute: { from: ['queued'], to: 'running' },",
    replace: "execute: { from: ['not_started', 'queued'], to: 'running' },",
    projects: ['core'],
    why: 'Execute skipping Queue, where the operator previews the change',
  },
  {
    id: 'rules-queue-from-completed',
    file: 'packages/core/src/rules.ts',
    find: "queue: { from: ['not_started'], to: 'queued' },",
    replace: "queue: { from: ['not_started', 'completed'], to: 'queued' },",
    projects: ['core'],
    why: 'a completed candidate migrated a second time',
  },
  {
    id: 'schema-step-worker-app-optional',
    file: 'packages/core/src/schemas.ts',
    find: '      workerApp: SlugSchema,',
    replace: '      workerApp: v.optional(SlugSchema),',
    projects: ['core', 'hono'],
    why: 'a step no worker app can be asked to run is registered',
  },
  {
    id: 'worker-complete-not-retried',
    file: 'packages/worker/src/step-runner.ts',
    find: 'await withRetry(() => target.complete(runId, event), retry, signal)',
    replace: 'await target.complete(runId, event)',
    projects: ['worker'],
    why: 'a final report lost to one unavailable answer leaves the run waiting for its deadline',
  },
  {
    id: 'memory-created-at-renewed',
    file: 'packages/core/src/memory-store.ts',
    find: 'createdAt: existing?.record.createdAt ?? new Date().toISOString(),',
    replace: 'createdAt: new Date().toISOString(),',
    projects: ['core'],
    why: 'a re-announce moves the migration to the end of the list: passed when both announces fell in one millisecond',
  },
  {
    id: 'pg-transition-cas',
    file: 'packages/postgres/src/store/runs.ts',
    find: 'candidate_id = ${candidateId} and version = ${found.version}::bigint\n                returning attempt',
    replace: 'candidate_id = ${candidateId}\n                returning attempt',
    projects: ['postgres'],
    tests: POSTGRES_STORE_TESTS,
    why: 'two processes that read the same run both write it: an execute and a dequeue both succeed',
  },
  {
    id: 'execute-refused-stays-running',
    file: 'packages/core/src/loom/runs.ts',
    find: "        await move('unexecute', migrationId, candidateId, { attempt: run.attempt }).catch(() => {})\n",
    replace: '',
    projects: ['core', 'hono'],
    why: 'an engine that refuses to start leaves the candidate running with no run to finish it',
  },
  // The status rules and the reports.
  {
    id: 'transition-attempt-unfenced',
    file: 'packages/core/src/rules.ts',
    find: 'if (!allowed || (request.attempt !== undefined && run?.attempt !== request.attempt)) {',
    replace: 'if (!allowed) {',
    projects: ['core'],
    why: 'the unexecute of an old attempt puts a newer run back to queued',
  },
  {
    id: 'report-attempt-unfenced',
    file: 'packages/core/src/rules.ts',
    find: "if (run?.state !== 'running' || (request.attempt !== undefined && run.attempt !== request.attempt)) {",
    replace: "if (run?.state !== 'running') {",
    projects: ['core'],
    why: 'a late report of a cancelled attempt is recorded on the next one',
  },
  {
    id: 'report-duplicate-any-outcome',
    file: 'packages/core/src/rules.ts',
    find: 'const same = request.done && existing.result.success === request.result.success',
    replace: 'const same = request.done',
    projects: ['core'],
    why: 'a failure reported after a success is taken as a repeat instead of refused',
  },
  {
    id: 'last-attempt-never-rejected',
    file: 'packages/core/src/rules.ts',
    find: "outcome: rejected ? 'rejected' : 'failed',",
    replace: "outcome: 'failed',",
    projects: ['core'],
    why: 'a rejected review shows as a failed step',
  },
  {
    id: 'last-attempt-dequeue-as-cancel',
    file: 'packages/core/src/rules.ts',
    find: "const outcome = to === 'cancelled' ? 'cancelled' : 'dequeued'",
    replace: "const outcome = 'cancelled'",
    projects: ['core'],
    why: 'a dequeue is shown (and filtered) as a cancel',
  },
  {
    id: 'resume-carries-failed-steps',
    file: 'packages/core/src/rules.ts',
    find: 'if (!step.done || !step.result.success) break',
    replace: 'if (!step.done) break',
    projects: ['core'],
    why: 'a resume goes past the step that failed',
  },
  {
    id: 'cancel-audited-as-system',
    file: 'packages/core/src/rules.ts',
    find: 'cancelledBy: request.by ?? SYSTEM_ACTOR,',
    replace: 'cancelledBy: SYSTEM_ACTOR,',
    projects: ['core'],
    why: 'the audit of a cancel forgets who cancelled',
  },
  {
    id: 'step-begun-resets-deadline',
    file: 'packages/core/src/rules.ts',
    find: '  if (run.currentStep === request.index && run.stepStartedAt) return { run: next }\n',
    replace: '',
    projects: ['core'],
    why: 'a run resumed after a restart gets a fresh deadline for a step already in flight',
  },
  // Who may do what.
  {
    id: 'owner-unowned-open-to-workers',
    file: 'packages/core/src/actors.ts',
    find: "if (actor.kind !== 'worker' || migration.owner === actor.name) return",
    replace: "if (actor.kind !== 'worker' || migration.owner === undefined || migration.owner === actor.name) return",
    projects: ['core', 'hono'],
    why: 'any worker submits candidates to, or reports on, a migration an operator registered',
  },
  {
    id: 'worker-may-dequeue',
    file: 'packages/core/src/actors.ts',
    find: "'prOpened', 'health'])",
    replace: "'prOpened', 'health', 'dequeue'])",
    projects: ['core', 'hono'],
    why: "a worker takes an operator's action",
  },
  {
    id: 'submit-candidates-any-worker',
    file: 'packages/core/src/loom/migrations.ts',
    find: "      if (actor.kind === 'worker') checkOwner(actor, await requireMigration(migrationId), 'submit candidates to')\n",
    replace: '',
    projects: ['core'],
    why: "a worker replaces another worker's candidates",
  },
  {
    id: 'reannounce-retypes-review',
    file: 'packages/core/src/loom/migrations.ts',
    find: 'if (steps.some((step) => step.name === review.name && isManualReview(step))) continue',
    replace: 'if (steps.some((step) => step.name === review.name)) continue',
    projects: ['core'],
    why: 'a worker turns the manual review it waits on into a step it reports itself',
  },
  {
    id: 'worker-approves-review',
    file: 'packages/core/src/loom/runs.ts',
    find: "if (actor.kind === 'worker' && isManualReview(step)) {",
    replace: "if (actor.kind === 'worker' && isManualReview(step) && !event.success) {",
    projects: ['core', 'hono'],
    why: "a worker approves a manual review, an operator's decision",
  },
  {
    id: 'report-other-candidate',
    file: 'packages/core/src/loom/runs.ts',
    find: 'if (event.candidate.id !== candidateId) {',
    replace: 'if (!event.candidate.id) {',
    projects: ['core'],
    why: 'a report naming another candidate is recorded on this run',
  },
  // Ids, schemas and limits.
  {
    id: 'run-id-candidate-unchecked',
    file: 'packages/core/src/ids.ts',
    find: "    parse(SlugSchema, candidateId, 'candidateId')\n  } catch (error) {",
    replace: '  } catch (error) {',
    projects: ['core', 'hono'],
    why: 'a run id whose candidate part breaks the id rules is looked up instead of refused',
  },
  {
    id: 'slug-edge-underscore',
    file: 'packages/core/src/schemas.ts',
    find: "  v.check((s) => !s.startsWith('_') && !s.endsWith('_'), 'must not start or end with \"_\"'),\n",
    replace: '',
    projects: ['core'],
    why: 'ids ending in "_" make run ids ambiguous (a_ + __ + b reads as a + __ + _b)',
  },
  {
    id: 'limits-depth-off-by-one',
    file: 'packages/core/src/limits.ts',
    find: 'if (stack.length >= limits.depth) {',
    replace: 'if (stack.length > limits.depth) {',
    projects: ['core', 'hono'],
    why: 'a body one level deeper than limits.depth is parsed',
  },
  // The engine and the reconciler.
  {
    id: 'engine-takes-stale-report',
    file: 'packages/core/src/local-engine.ts',
    find: '      if (event.attempt !== undefined && event.attempt !== loop.run.attempt) return\n',
    replace: '',
    projects: ['core'],
    why: "a report of an earlier attempt moves the current attempt's run on",
  },
  {
    id: 'reconciler-times-out-reviews',
    file: 'packages/core/src/loom/reconciler.ts',
    find: '} else if (step && !isManualReview(step) && run.stepStartedAt) {',
    replace: '} else if (step && run.stepStartedAt) {',
    projects: ['core'],
    why: 'a manual review waiting on an operator fails at the step deadline',
  },
  // HTTP: hono and the client.
  {
    id: 'http-conflict-as-400',
    file: 'packages/core/src/errors.ts',
    find: 'conflict: 409,',
    replace: 'conflict: 400,',
    projects: ['hono', 'client'],
    why: 'a conflict answered as bad input',
  },
  {
    id: 'hono-guard-no-authorize',
    file: 'packages/hono/src/auth.ts',
    find: '          authorize(c.var.actor, method)\n',
    replace: '',
    projects: ['hono'],
    why: "the guard leaves the role check to core, after the body of a worker's request to an operator route was read",
  },
  {
    id: 'hono-hook-system-actor',
    file: 'packages/hono/src/auth.ts',
    find: "if (!result.success || result.output.kind === 'system') {",
    replace: 'if (!result.success) {',
    projects: ['hono'],
    why: 'a request speaks for Loom itself, and the activity log records system for it',
  },
  {
    id: 'hono-execute-200',
    file: 'packages/hono/src/runs.ts',
    find: "c.req.valid('json')) }, 202),",
    replace: "c.req.valid('json')) }),",
    projects: ['hono', 'client'],
    why: 'Execute answers 200 instead of the contract’s 202',
  },
  {
    id: 'hono-wrong-method-404',
    file: 'packages/hono/src/app.ts',
    find: '            405,\n',
    replace: '            404,\n',
    projects: ['hono'],
    why: 'a wrong method on a known path is answered as a path that does not exist',
  },
  {
    id: 'hono-json-type-unchecked',
    file: 'packages/hono/src/validation.ts',
    find: "    requireJsonType(c.req.header('content-type'))\n    const value = readJson(await bytesOf(c), limits, 'body')",
    replace: "    const value = readJson(await bytesOf(c), limits, 'body')",
    projects: ['hono'],
    why: 'a JSON body sent as text/plain, which a cross-site form can send without a preflight, is read',
  },
  {
    id: 'client-drops-conflict-status',
    file: 'packages/client/src/client.ts',
    find: "for (const key of ['field', 'status', 'dependency'])",
    replace: "for (const key of ['field', 'dependency'])",
    projects: ['client'],
    why: "the client's conflict no longer says the candidate's status",
  },
  {
    id: 'client-trusts-any-code',
    file: 'packages/client/src/client.ts',
    find: "if (typeof error === 'string' && LoomError.isCode(code)) {",
    replace: "if (typeof error === 'string' && typeof code === 'string') {",
    projects: ['client'],
    why: 'a proxy’s error body becomes a LoomError with a code outside the closed set',
  },
  // The worker SDK.
  {
    id: 'worker-progress-not-retried',
    file: 'packages/worker/src/step-runner.ts',
    find: 'await withRetry(() => target.prOpened(runId, event), retry, signal)',
    replace: 'await target.prOpened(runId, event)',
    projects: ['worker'],
    why: 'a pull request opened while Loom restarts is never shown',
  },
  // PostgreSQL.
  {
    id: 'pg-step-report-cas',
    file: 'packages/postgres/src/store/runs.ts',
    find: 'candidate_id = ${candidateId} and version = ${found.version}::bigint\n              returning 1\n            ),\n            step as (',
    replace: 'candidate_id = ${candidateId}\n              returning 1\n            ),\n            step as (',
    projects: ['postgres'],
    tests: POSTGRES_STORE_TESTS,
    why: 'a report written over a run that was cancelled since it was read',
  },
  {
    id: 'pg-last-outcome-unwritten',
    file: 'packages/postgres/src/store/runs.ts',
    find: 'lastOutcome: sql`${next.lastAttempt?.outcome ?? null}::text`,',
    replace: 'lastOutcome: sql`${null}::text`,',
    projects: ['postgres'],
    tests: POSTGRES_STORE_TESTS,
    why: 'the lastOutcome filter of the candidate list finds nothing on PostgreSQL',
  },
]
// biome-ignore-end lint/suspicious/noTemplateCurlyInString: the finds quote source code, placeholders included

const USAGE = `node scripts/mutate.mjs [--list] [--only id,id] [--server] [--keep] [--timeout seconds] [--workers n]`

let options
try {
  options = parseArgs({
    options: {
      list: { type: 'boolean', default: false },
      only: { type: 'string' },
      server: { type: 'boolean', default: false },
      keep: { type: 'boolean', default: false },
      timeout: { type: 'string', default: '300' },
      // The tests mostly wait (timers, PGlite, sockets), so more workers than cores pays.
      workers: { type: 'string', default: String(Math.max(2, availableParallelism() * 2)) },
      help: { type: 'boolean', short: 'h', default: false },
    },
  }).values
} catch (error) {
  console.error(`${error.message}\n${USAGE}`)
  process.exit(2)
}
if (options.help) {
  console.log(USAGE)
  process.exit(0)
}

/** Stops the audit: a list or a setup that does not hold. */
class SetupError extends Error {}

const mutations = select(MUTATIONS, options.only)
const timeoutMs = Number(options.timeout) * 1000
if (!(timeoutMs > 0)) fail(`--timeout: ${options.timeout} is not a number of seconds`)
if (!/^[1-9]\d*$/.test(options.workers)) fail(`--workers: ${options.workers} is not a positive integer`)
if (options.server && !process.env.DATABASE_URL) fail('--server needs DATABASE_URL (postgres://postgres@127.0.0.1:5432/test in CI)')

if (options.list) {
  const problems = mutations.flatMap((m) => problemsOf(m, ROOT))
  for (const m of mutations) console.log(`${m.id.padEnd(34)} ${m.file}  [${m.projects.join(', ')}]\n${' '.repeat(35)}${m.why}`)
  for (const problem of problems) console.error(problem)
  console.log(`\n${mutations.length} mutations${problems.length ? `, ${problems.length} not plantable` : ', each find found once'}`)
  process.exit(problems.length ? 2 : 0)
}

const started = Date.now()
const work = mkdtempSync(join(tmpdir(), 'loom-mutate-'))
const copy = join(work, 'repo')
let child
let restore
/** The titles of failing tests (what the table shows), by `file > full name`. */
const labels = new Map()

const cleanup = () => {
  if (options.keep) console.error(`kept ${copy}`)
  else rmSync(work, { recursive: true, force: true })
}
for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP']) {
  process.on(signal, () => {
    if (child?.pid) killGroup(child.pid)
    console.error(`\n${signal}: stopped`)
    restore?.()
    cleanup()
    process.exit(130)
  })
}

try {
  process.exitCode = await audit()
} catch (error) {
  console.error(error instanceof SetupError ? `setup: ${error.message}` : error)
  process.exitCode = 2
} finally {
  restore?.()
  cleanup()
}

async function audit() {
  step(`copying the working tree to ${copy}`)
  copyTree(ROOT, copy)
  mkdirSync(join(work, 'reports'))
  for (const name of BUILT) {
    const link = join(copy, 'node_modules/@loom', name)
    const real = existsSync(link) ? realpathSync(link) : undefined
    if (real !== realpathSync(join(copy, 'packages', name))) {
      throw new SetupError(`node_modules/@loom/${name} in the copy resolves to ${real ?? 'nothing'}, not the copy's packages/${name}`)
    }
  }
  const problems = mutations.flatMap((m) => problemsOf(m, copy))
  if (problems.length) throw new SetupError(`${problems.join('\n')}\n(fix the list in scripts/mutate.mjs)`)

  step(`building ${BUILT.join(', ')}`)
  for (const name of BUILT) {
    await build(name)
    cpSync(join(copy, 'packages', name, 'dist'), join(work, 'pristine', name), { recursive: true })
  }

  const projects = [...new Set(mutations.flatMap((m) => m.projects))]
  step(`baseline: ${projects.join(', ')}, unmutated`)
  const baseline = await runTests('baseline', projects, baselineFilters(mutations, projects))
  if (baseline.error) throw new SetupError(`the unmutated run failed: ${baseline.error}`)
  const known = new Set(baseline.failed)
  if (known.size) {
    console.log(`  ${known.size} tests fail without any mutation; they are ignored below:`)
    for (const name of known) console.log(`    ${name}`)
  }

  step(`planting ${mutations.length} mutations, one at a time`)
  const results = []
  for (const [i, m] of mutations.entries()) {
    const t0 = Date.now()
    const path = join(copy, m.file)
    const original = readFileSync(path, 'utf8')
    const pkg = packageOf(m.file)
    restore = () => {
      writeFileSync(path, original)
      if (pkg) {
        rmSync(join(copy, 'packages', pkg, 'dist'), { recursive: true, force: true })
        cpSync(join(work, 'pristine', pkg), join(copy, 'packages', pkg, 'dist'), { recursive: true })
      }
    }
    let result
    try {
      writeFileSync(
        path,
        original.replace(m.find, () => m.replace),
      )
      if (pkg) await build(pkg)
      const run = await runTests(m.id, m.projects, m.tests ?? [])
      const failed = run.failed.filter((name) => !known.has(name))
      if (run.timedOut) result = { status: 'timeout', failed }
      else if (run.error) result = { status: 'error', failed, note: run.error }
      else result = { status: failed.length ? 'killed' : 'survived', failed }
    } catch (error) {
      result = { status: 'error', failed: [], note: error.message }
    } finally {
      restore()
      restore = undefined
    }
    results.push({ ...m, ...result, seconds: (Date.now() - t0) / 1000 })
    const r = results.at(-1)
    console.log(
      `  [${i + 1}/${mutations.length}] ${m.id}: ${r.status}${r.failed.length ? `, ${r.failed.length} failing` : ''} (${r.seconds.toFixed(0)} s)`,
    )
  }
  return report(results)
}

/** Prints the table and the score; the exit code. */
function report(results) {
  const detected = (r) => r.status === 'killed' || r.status === 'timeout'
  const rows = results.map((r) => [
    r.id,
    r.status,
    String(r.failed.length),
    r.note ??
      (r.failed.length
        ? r.failed
            .slice(0, 3)
            .map((name) => clip(labels.get(name) ?? name, 60))
            .join(' · ')
        : r.why),
  ])
  const head = ['mutation', 'result', 'failing', 'first failing tests (or why it matters)']
  const widths = head.slice(0, 3).map((h, i) => Math.max(h.length, ...rows.map((row) => row[i].length)))
  const line = (cells) => cells.map((c, i) => (i < 3 ? c.padEnd(widths[i]) : c)).join('  ')
  console.log(`\n${line(head)}\n${line(widths.map((w) => '-'.repeat(w)).concat('-'.repeat(40)))}`)
  for (const row of rows) console.log(line(row))
  const killed = results.filter(detected).length
  const minutes = ((Date.now() - started) / 60_000).toFixed(1)
  console.log(
    `\nscore: ${killed}/${results.length} killed (${((100 * killed) / Math.max(1, results.length)).toFixed(0)} %)` +
      `${options.server ? ', postgres also on DATABASE_URL' : ', postgres on PGlite'}, in ${minutes} min`,
  )
  const errors = results.filter((r) => r.status === 'error')
  if (errors.length) {
    console.log(`${errors.length} could not be judged (see above): fix the list or the build`)
    return 2
  }
  return killed === results.length ? 0 : 1
}

/** The mutations `only` names (all without it); fails on an unknown id or a duplicate in the list. */
function select(all, only) {
  const ids = new Set()
  for (const m of all) {
    if (ids.has(m.id)) fail(`mutation ${m.id} is listed twice`)
    ids.add(m.id)
    const unknown = m.projects.filter((p) => !Object.hasOwn(PROJECTS, p))
    if (unknown.length) fail(`mutation ${m.id}: ${unknown.join(', ')} is not a fast project (${Object.keys(PROJECTS).join(', ')})`)
  }
  if (!only) return all
  const wanted = only
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean)
  const missing = wanted.filter((id) => !ids.has(id))
  if (missing.length) fail(`--only: no mutation ${missing.join(', ')} (see --list)`)
  return all.filter((m) => wanted.includes(m.id))
}

/** Why `m` cannot be planted in the tree at `root`: its file is missing, or its `find` is not there exactly once. */
function problemsOf(m, root) {
  const path = join(root, m.file)
  if (!existsSync(path)) return [`mutation ${m.id}: ${m.file} does not exist`]
  const count = readFileSync(path, 'utf8').split(m.find).length - 1
  if (count === 1) return []
  return [`mutation ${m.id}: its find occurs ${count} times in ${m.file}, not once: ${JSON.stringify(clip(m.find, 120))}`]
}

/** The package whose `dist/` the tests import, when `file` is in its sources. */
function packageOf(file) {
  const match = /^packages\/([^/]+)\/src\//.exec(file)
  return match && BUILT.includes(match[1]) ? match[1] : undefined
}

/** Filters that run, in one Vitest call, every test any selected mutation runs in each project. */
function baselineFilters(list, projects) {
  const filters = []
  for (const project of projects) {
    const using = list.filter((m) => m.projects.includes(project))
    if (using.some((m) => !m.tests)) filters.push(`${PROJECTS[project]}/`)
    else filters.push(...using.flatMap((m) => m.tests))
  }
  return [...new Set(filters)]
}

function copyTree(from, to) {
  mkdirSync(to)
  for (const entry of readdirSync(from)) {
    if (entry === '.git' || entry === '.loom-data') continue
    cpSync(join(from, entry), join(to, entry), { recursive: true, verbatimSymlinks: true })
  }
}

/** Builds one package in the copy, without declarations (Vitest runs the JavaScript). */
async function build(name) {
  const { code, output } = await exec('npm', ['run', 'build', '-w', `@loom/${name}`, '--', '--no-dts'], timeoutMs)
  if (code !== 0) throw new SetupError(`npm run build -w @loom/${name} failed:\n${output.slice(-2000)}`)
}

/**
 * Runs `projects` (narrowed by `filters`) in the copy with Vitest's JSON reporter. `failed`
 * names each failing test as `file > full name`, or `file: error` for a file that could not run.
 */
async function runTests(label, projects, filters) {
  const out = join(work, 'reports', `${label}.json`)
  rmSync(out, { force: true })
  const args = [join(copy, 'node_modules/vitest/vitest.mjs'), 'run', ...projects.flatMap((p) => ['--project', p])]
  args.push('--reporter=json', `--outputFile=${out}`, `--maxWorkers=${options.workers}`, ...filters)
  const { code, output, timedOut } = await exec(process.execPath, args, timeoutMs)
  writeFileSync(join(work, 'reports', `${label}.log`), output)
  if (timedOut) return { failed: [], timedOut: true }
  if (!existsSync(out))
    return { failed: [], error: `vitest exited ${code} without a report: ${clip(output.trim().split('\n').at(-1) ?? '', 200)}` }
  const json = JSON.parse(readFileSync(out, 'utf8'))
  const failed = []
  for (const file of json.testResults) {
    const name = relative(copy, file.name)
    const tests = file.assertionResults.filter((a) => a.status === 'failed')
    for (const test of tests) {
      const key = `${name} > ${test.fullName}`
      failed.push(key)
      labels.set(key, test.title)
    }
    if (file.status === 'failed' && tests.length === 0) failed.push(`${name}: ${clip((file.message || 'failed').split('\n')[0], 160)}`)
  }
  if (json.numTotalTests === 0) return { failed, error: 'no tests ran (check the project names and test filters)' }
  // An error outside any test (an unhandled rejection, say) fails the run without failing a test.
  if (code !== 0 && failed.length === 0) failed.push(`(vitest exited ${code} with every test passing: an error outside the tests)`)
  return { failed }
}

/** Runs a command in the copy, in its own process group (so a timeout or Ctrl-C stops its workers too). */
function exec(command, args, limitMs) {
  const env = { ...process.env, FORCE_COLOR: '0' }
  if (!options.server) delete env.DATABASE_URL
  return new Promise((resolve, reject) => {
    const output = []
    child = spawn(command, args, { cwd: copy, env, detached: true, stdio: ['ignore', 'pipe', 'pipe'] })
    child.stdout.on('data', (chunk) => output.push(chunk))
    child.stderr.on('data', (chunk) => output.push(chunk))
    let timedOut = false
    const timer = setTimeout(() => {
      timedOut = true
      killGroup(child.pid)
    }, limitMs)
    child.on('error', reject)
    child.on('close', (code) => {
      clearTimeout(timer)
      child = undefined
      resolve({ code, output: Buffer.concat(output).toString('utf8'), timedOut })
    })
  })
}

function killGroup(pid) {
  try {
    process.kill(-pid, 'SIGKILL')
  } catch {
    // Already gone.
  }
}

function step(message) {
  console.log(`${((Date.now() - started) / 1000).toFixed(0).padStart(4)} s  ${message}`)
}

function clip(s, n) {
  return s.length > n ? `${s.slice(0, n - 1)}…` : s
}

function fail(message) {
  console.error(message)
  process.exit(2)
}
