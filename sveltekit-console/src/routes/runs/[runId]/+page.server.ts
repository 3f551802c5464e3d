import { error } from '@sveltejs/kit'
import {
  LoomError,
  parseRunId,
  type Candidate,
  type CandidateStatus,
  type LastAttempt,
  type Loom,
  type RunHistory,
  type RunInfo,
  type RunStatusResponse,
} from '@loom/core'
import { loadFrom, runActions } from '$lib/server/actions'
import { previewOf } from '$lib/server/diff'
import { newestFirst } from '$lib/history'
import type { Preview } from '$lib/types'
import type { Actions, PageServerLoad } from './$types'

/** The dry run as the page shows it; never rejects, so a worker that fails shows as an error box. */
async function preview(loom: Loom, migrationId: string, candidateId: string): Promise<Preview> {
  try {
    return { steps: previewOf(await loom.dryRun(migrationId, candidateId)) }
  } catch (e) {
    if (LoomError.is(e)) return { error: e.message, code: e.code }
    console.error('[loom console] dry run failed:', e)
    return { error: 'The dry run failed unexpectedly; the server log has the details.', code: 'unavailable' }
  }
}

/**
 * A not-started candidate has no run to read it from: Loom has it on its own, with how its
 * last attempt ended when it had one, or `not_found`.
 */
async function candidateOf(
  loom: Loom,
  migrationId: string,
  candidateId: string,
): Promise<{ candidate: Candidate; lastAttempt?: LastAttempt } | undefined> {
  try {
    const { status: _status, runId: _runId, lastAttempt, ...candidate } = await loom.getCandidate(migrationId, candidateId)
    return lastAttempt ? { candidate, lastAttempt } : { candidate }
  } catch (e) {
    if (LoomError.is(e, 'not_found')) return undefined
    return loadFrom(Promise.reject(e))
  }
}

export const load: PageServerLoad = async ({ params, locals, parent, depends, url }) => {
  depends('loom:migrations')
  const runId = params.runId
  let ids: { migrationId: string; candidateId: string }
  try {
    ids = parseRunId(runId)
  } catch {
    error(404, { message: `${runId} is not a run id: a run id is {migrationId}__{candidateId}.`, code: 'not_found' })
  }
  const { migrations } = await parent()
  const migration = migrations.find((m) => m.id === ids.migrationId)
  if (!migration) error(404, { message: `There is no migration with id ${ids.migrationId}.`, code: 'not_found' })

  let run: RunInfo | undefined
  try {
    run = await locals.loom.getRun(runId)
  } catch (e) {
    if (!LoomError.is(e, 'not_found')) await loadFrom(Promise.reject(e))
  }
  const found = run ? { candidate: run.candidate } : await candidateOf(locals.loom, ids.migrationId, ids.candidateId)
  if (!found) {
    error(404, { message: `Migration ${migration.name} has no candidate ${ids.candidateId}.`, code: 'not_found' })
  }
  const { candidate } = found
  const status: CandidateStatus = run?.status ?? 'not_started'

  // A not-started candidate may have run before: the steps of its last execution (failed, rejected or cancelled) are still worth showing.
  let lastRun: RunStatusResponse | undefined
  if (status === 'not_started') {
    try {
      lastRun = await locals.loom.runStatus(runId)
    } catch (e) {
      if (!LoomError.is(e, 'not_found')) throw e
    }
  }

  // Every attempt with its steps, from the activity log. A store that cannot answer costs the section, not the page.
  let history: RunHistory['attempts'] = []
  try {
    history = (await locals.loom.history(runId)).attempts
  } catch (e) {
    if (!LoomError.is(e, 'not_found')) console.error('[loom console] run history failed:', e)
  }

  const dryRun = status === 'queued' ? preview(locals.loom, ids.migrationId, ids.candidateId) : undefined
  return {
    runId,
    migration,
    candidate,
    status,
    steps: run?.steps ?? [],
    // How the candidate's last attempt ended, who ended it and why: the banner at the top.
    lastAttempt: found.lastAttempt ?? null,
    lastRun: lastRun ?? null,
    attempts: newestFirst(history),
    // Streamed: the page shows a skeleton until the worker answers. `?preview` waits for it,
    // for browsers without JavaScript, which cannot receive streamed data.
    preview: dryRun && url.searchParams.has('preview') ? await dryRun : dryRun,
  }
}

export const actions: Actions = runActions
