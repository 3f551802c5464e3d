import { DryRunRequestSchema, parse, type DryRunFile, type DryRunRequest, type DryRunResult, type DryRunStep } from '@loom/core'
import { isManualReview } from '@loom/core/engine'
import type { WorkerContext } from './context'
import { isManualReviewStep, type DryRunFiles, type Migration } from './define-migration'

const keyOf = (repo: string, path: string) => `${repo}\u0000${path}`

/**
 * Runs the `dryRun` handler of each step of `request` in order, each one on top of the
 * files as the steps before it left them, and returns per step what changed: `before` is
 * the content the step found (absent for a new file), `after` what it would write. Files a
 * step returns unchanged are left out. Steps of other worker apps, and manual-review steps,
 * are `skipped`. A handler that throws gives its step an `error`; the steps after it are
 * not previewed, since their diffs would stack on changes that cannot be shown.
 */
export async function stackedDryRun(options: {
  migration: Migration
  request: DryRunRequest
  /** The worker app of steps that do not name one. */
  app: string
  signal: AbortSignal
}): Promise<DryRunResult> {
  const { migration, request, app, signal } = options
  const { candidate } = request
  const defaultRepo = candidate.metadata?.repoName ?? ''
  /** Contents after the steps so far; `undefined` is a file known to be absent. */
  const current = new Map<string, string | undefined>()

  const read = async (path: string, repo = defaultRepo): Promise<string | undefined> => {
    const key = keyOf(repo, path)
    if (!current.has(key)) current.set(key, (await migration.readFile?.({ candidate, repo, path })) ?? undefined)
    return current.get(key)
  }
  const files: DryRunFiles = { read }

  const steps: DryRunStep[] = []
  let failedStep: string | undefined
  for (const requested of request.steps) {
    const spec = migration.steps.find((s) => s.name === requested.name)
    const ours = spec !== undefined && (spec.workerApp ?? app) === requested.workerApp
    if (!ours || isManualReview(requested) || isManualReviewStep(spec)) {
      steps.push({ stepName: requested.name, skipped: true })
      continue
    }
    if (failedStep !== undefined) {
      steps.push({ stepName: requested.name, skipped: false, error: `not previewed: step "${failedStep}" failed its dry run` })
      continue
    }
    if (!spec.dryRun) {
      steps.push({ stepName: requested.name, skipped: false, files: [] })
      continue
    }
    try {
      const changes = await spec.dryRun({
        migrationId: request.migrationId,
        stepName: requested.name,
        candidate,
        config: requested.config ?? spec.config ?? {},
        files,
        signal,
      })
      if (!Array.isArray(changes)) throw new TypeError('dryRun must return an array of { path, repo?, content }')
      changes.forEach((change, i) => {
        if (typeof change?.path !== 'string' || typeof change.content !== 'string') {
          throw new TypeError(`dryRun returned an invalid change at ${i}: needs a string path and content`)
        }
      })
      const diffs: DryRunFile[] = []
      // Befores are read for the whole step first: a step's changes all stack on the previous step, not on each other.
      const befores = await Promise.all(changes.map((c) => read(c.path, c.repo ?? defaultRepo)))
      changes.forEach((change, i) => {
        const repo = change.repo ?? defaultRepo
        const before = befores[i]
        current.set(keyOf(repo, change.path), change.content)
        if (before === change.content) return
        diffs.push(
          before === undefined
            ? { path: change.path, repo, after: change.content }
            : { path: change.path, repo, before, after: change.content },
        )
      })
      steps.push({ stepName: requested.name, skipped: false, files: diffs })
    } catch (error) {
      failedStep = requested.name
      steps.push({ stepName: requested.name, skipped: false, error: error instanceof Error ? error.message : String(error) })
    }
  }
  return { steps }
}

/** The worker's answer to a dry run (validated as `DryRunRequest`): the stacked diffs of its steps of the migration asked for. */
export function workerDryRun(ctx: WorkerContext) {
  return async (input: unknown): Promise<DryRunResult> => {
    const request = parse(DryRunRequestSchema, input, '')
    return stackedDryRun({ migration: ctx.requireMigration(request.migrationId), request, app: ctx.app, signal: ctx.signal })
  }
}
