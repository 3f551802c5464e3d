import { LoomError } from './errors'
import type { DryRunTarget } from './ports'
import type { DryRunRequest, DryRunResult, DryRunStep } from './schemas'
import { DryRunResultSchema } from './schemas'
import { isManualReview } from './steps'
import { parse } from './validate'

/** One worker app's answer to a dry run, or why there is none. */
export type DryRunAnswer = { workerApp: string; result: DryRunResult } | { workerApp: string; error: string }

/**
 * The dry run of every transport: asks each worker app of `target` that has a dispatched
 * step (an app whose steps are all manual review is not asked), at once, through `ask`,
 * checks each answer's shape, and merges the answers with {@link mergeDryRuns}. A worker
 * app that fails (unreachable, no answer, a refusal of any code, an answer of the wrong
 * shape) leaves its failure in its steps' `error`; when every app asked failed, it throws
 * `unavailable` with `details.dependency` naming them, never the code a worker answered
 * (a worker refusing Loom's token is not the operator's token being wrong).
 *
 * @example
 * const dryRunner: DryRunner = {
 *   dryRun: (target, request) => dryRunAcrossApps(target, request, (workerApp) => askOverMyTransport(workerApp, request)),
 * }
 */
export async function dryRunAcrossApps(
  target: DryRunTarget,
  request: DryRunRequest,
  ask: (workerApp: string) => Promise<unknown>,
): Promise<DryRunResult> {
  const dispatched = new Set(request.steps.filter((step) => !isManualReview(step)).map((step) => step.workerApp))
  const workerApps = [...new Set(target.workerApps)].filter((app) => dispatched.has(app))
  const answers = await Promise.all(
    workerApps.map(async (workerApp): Promise<DryRunAnswer> => {
      let body: unknown
      try {
        body = await ask(workerApp)
      } catch (error) {
        return { workerApp, error: error instanceof Error ? error.message : String(error) }
      }
      try {
        return { workerApp, result: parse(DryRunResultSchema, body, '') }
      } catch (error) {
        // The field only: the schema's own message may quote what the worker sent, and a worker
        // URL can be turned against a service that answers with secrets.
        const field = LoomError.is(error) ? String(error.details?.field ?? 'body') : 'body'
        return {
          workerApp,
          error: `worker app ${workerApp} answered an invalid dry run: ${field} does not have the shape of a dry-run result`,
        }
      }
    }),
  )
  const failed = answers.filter((answer) => 'error' in answer)
  if (workerApps.length > 0 && failed.length === workerApps.length) {
    const dependency = `worker ${workerApps.length === 1 ? 'app' : 'apps'} ${workerApps.join(', ')}`
    throw new LoomError('unavailable', failed.map((answer) => answer.error).join('; '), { details: { dependency } })
  }
  return mergeDryRuns(request, answers)
}

/**
 * Merges the answers of several worker apps into one entry per step of the request, in
 * order. A step takes the answer of its own worker app unless that one skipped it, then the
 * first other app that did not skip it; an app that answers `skipped` never hides a real
 * diff. Manual-review steps are skipped. A step whose app did not answer, with no other app
 * covering it, carries that app's failure in `error`.
 */
export function mergeDryRuns(request: DryRunRequest, answers: DryRunAnswer[]): DryRunResult {
  const steps = request.steps.map((step): DryRunStep => {
    if (isManualReview(step)) return { stepName: step.name, skipped: true }
    const entries = answers.flatMap((answer) => {
      if (!('result' in answer)) return []
      const entry = answer.result.steps.find((s) => s.stepName === step.name)
      return entry ? [{ workerApp: answer.workerApp, entry }] : []
    })
    const real = entries.find((e) => e.workerApp === step.workerApp && !e.entry.skipped) ?? entries.find((e) => !e.entry.skipped)
    if (real) return real.entry
    const own = answers.find((a) => a.workerApp === step.workerApp)
    if (own && 'error' in own) return { stepName: step.name, skipped: false, error: own.error }
    return { stepName: step.name, skipped: true }
  })
  return { steps }
}
