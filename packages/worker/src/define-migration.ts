import { LoomError, MANUAL_REVIEW, SlugSchema, parse, type Candidate, type DispatchStepRequest, type StringMap } from '@loom/core'

/** What a step handler is given: the dispatched step, and a way to report progress. */
export interface StepContext {
  runId: string
  migrationId: string
  stepName: string
  candidate: Candidate
  /** The step's config as Loom sent it (the one announced, unless the migration changed since). */
  config: StringMap
  /** The request as received, for handlers that need a field the context does not lift. */
  request: DispatchStepRequest
  /** Aborted when the worker stops: long handlers should give up then. */
  signal: AbortSignal
  /** Reports progress without ending the step: a pull request opened (`phase: 'open'`, `prUrl`). */
  prOpened(metadata: StringMap): Promise<void>
}

/**
 * What a handler returns to say the step is not over yet: its outcome comes later through
 * `worker.complete(runId, stepName, …)` (a pull request merged hours later). `metadata`, when
 * given, is reported at once as progress (`prOpened`).
 */
export interface Pending {
  readonly pending: true
  readonly metadata?: StringMap
}

/**
 * A handler's answer: nothing or `{ metadata }` for success (reported at once),
 * {@link Pending} to report later. Throwing reports a failure with `metadata.error`.
 */
// biome-ignore lint/suspicious/noConfusingVoidType: a handler that returns nothing reports success
export type StepOutcome = void | undefined | { metadata?: StringMap; pending?: false } | Pending

export type StepHandler = (context: StepContext) => Promise<StepOutcome> | StepOutcome

/** The files of a dry run, as the steps before this one left them. */
export interface DryRunFiles {
  /**
   * The file's content after the previous steps' changes, or else as the migration's
   * `readFile` finds it; undefined for a file that does not exist yet. `repo` defaults to
   * the candidate's `metadata.repoName` (or `''`).
   */
  read(path: string, repo?: string): Promise<string | undefined>
}

/** A file as a step would leave it. */
export interface FileChange {
  path: string
  /** Default: the candidate's `metadata.repoName`, or `''`. */
  repo?: string
  content: string
}

export interface DryRunContext {
  migrationId: string
  stepName: string
  candidate: Candidate
  config: StringMap
  files: DryRunFiles
  signal: AbortSignal
}

/** Returns the files the step would write, with their new content; the SDK works out the diffs. */
export type DryRunHandler = (context: DryRunContext) => Promise<FileChange[]> | FileChange[]

export interface StepSpec {
  name: string
  description?: string
  /** Passed to the handler with each dispatch. `{ type: 'manual-review', instructions }` makes a step an operator's. */
  config?: StringMap
  /** The files (or URL patterns) the step touches, shown in the console. */
  files?: string[]
  /** The worker app that runs the step. Default: the `app` of the worker that announces it. */
  workerApp?: string
  /** Runs the step. Required, except for manual-review steps, which Loom never dispatches. */
  run?: StepHandler
  /** Computes the step's changes without making them. Without it, the step's dry run lists no files. */
  dryRun?: DryRunHandler
}

export interface MigrationSpec {
  /** A slug: `A–Z a–z 0–9 . _ -`, never `__`. */
  id: string
  name: string
  description?: string
  steps: StepSpec[]
  /** Scans the source of truth and returns every candidate; run after each accepted announce. */
  discover: (context: { signal: AbortSignal }) => Promise<Candidate[]> | Candidate[]
  /** Reads a file as it is now, for dry runs. Without it, every file a dry run reads starts out absent. */
  readFile?: (file: { candidate: Candidate; repo: string; path: string }) => Promise<string | undefined> | string | undefined
}

/** A migration checked by {@link defineMigration}. */
export interface Migration extends MigrationSpec {
  readonly defined: true
}

/** True for a step that waits for an operator instead of a worker. */
export function isManualReviewStep(step: Pick<StepSpec, 'config'>): boolean {
  return step.config?.type === MANUAL_REVIEW
}

/**
 * Declares a migration: its id, its steps with their handlers, and how its candidates are
 * discovered. Checks the definition at once, so a mistake fails at startup rather than at
 * the first dispatch: an `invalid` LoomError naming the field.
 *
 * @example
 * import { defineMigration } from '@loom/worker'
 *
 * export const bumpChart = defineMigration({
 *   id: 'bump-chart',
 *   name: 'Bump the shared chart to v2',
 *   steps: [
 *     {
 *       name: 'bump',
 *       description: 'Set chart version 2.0.0',
 *       run: async ({ candidate }) => ({ metadata: { prUrl: await openPr(candidate) } }),
 *     },
 *     { name: 'review', config: { type: 'manual-review', instructions: 'Check the rollout' } },
 *   ],
 *   discover: async () => [{ id: 'billing-api', metadata: { repoName: 'acme/gitops' } }],
 * })
 */
export function defineMigration(spec: MigrationSpec): Migration {
  const invalid = (field: string, message: string) => new LoomError('invalid', `${field}: ${message}`, { details: { field } })
  if (typeof spec !== 'object' || spec === null) throw invalid('migration', 'must be an object')
  parse(SlugSchema, spec.id, 'id')
  if (typeof spec.name !== 'string' || !spec.name) throw invalid('name', 'must be a non-empty string')
  if (typeof spec.discover !== 'function') throw invalid('discover', 'must be a function returning the candidates')
  if (!Array.isArray(spec.steps) || spec.steps.length === 0) throw invalid('steps', 'must list at least one step')
  const names = new Set<string>()
  spec.steps.forEach((step, i) => {
    const at = `steps.${i}`
    if (typeof step?.name !== 'string' || !step.name) throw invalid(`${at}.name`, 'must be a non-empty string')
    if (names.has(step.name)) throw invalid(`${at}.name`, `"${step.name}" is used by an earlier step; step names must be unique`)
    names.add(step.name)
    if (step.workerApp !== undefined) parse(SlugSchema, step.workerApp, `${at}.workerApp`)
    if (isManualReviewStep(step)) {
      if (step.run) throw invalid(`${at}.run`, 'a manual-review step is decided by an operator and never dispatched; remove run')
    } else if (typeof step.run !== 'function') {
      throw invalid(`${at}.run`, 'must be a function (only manual-review steps go without one)')
    }
    if (step.dryRun !== undefined && typeof step.dryRun !== 'function') throw invalid(`${at}.dryRun`, 'must be a function')
  })
  return Object.freeze({ ...spec, steps: spec.steps.map((s) => Object.freeze({ ...s })), defined: true as const })
}

/** The marker a handler returns when it reports the step's outcome later. */
export function pending(metadata?: StringMap): Pending {
  return metadata ? { pending: true, metadata } : { pending: true }
}

export function isPending(outcome: StepOutcome): outcome is Pending {
  return typeof outcome === 'object' && outcome !== null && (outcome as { pending?: unknown }).pending === true
}
