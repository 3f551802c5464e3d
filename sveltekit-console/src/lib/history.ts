/**
 * Words for what happened: a run's attempts and a migration's activity log as the console
 * shows them. Pure functions, the same on server and browser, so the pages only lay them out.
 */
import { LAST_OUTCOMES, type ActivityPage, type Actor, type AttemptHistory, type LastAttempt, type LastOutcome } from '@loom/core'

type ActivityEntry = ActivityPage['entries'][number]

/** How an attempt stands or ended, as a word for a person. */
export const OUTCOME_LABEL: Record<AttemptHistory['outcome'], string> = {
  queued: 'Queued',
  running: 'Running',
  completed: 'Completed',
  failed: 'Failed',
  rejected: 'Rejected',
  cancelled: 'Cancelled',
  dequeued: 'Removed from queue',
}

/** What the console's Failed count is: not a status, a part of Not started. */
export const FAILED_HINT = 'Not started after a failed attempt'

export function isLastOutcome(value: string | null | undefined): value is LastOutcome {
  return value != null && (LAST_OUTCOMES as readonly string[]).includes(value)
}

/** The name an actor goes by; Loom itself shows as "Loom". */
export function actorName(actor: Actor | undefined): string {
  if (!actor) return 'unknown'
  return actor.kind === 'system' ? 'Loom' : actor.name
}

/** Who did something, saying so when it was a worker: "worker app-charts", "alice", "Loom". */
export function actorPhrase(actor: Actor): string {
  return actor.kind === 'worker' ? `worker ${actor.name}` : actorName(actor)
}

/** Why a last attempt ended, when someone said: the step's error, else the reviewer's or canceller's reason. */
function whyOf(last: LastAttempt): string | undefined {
  return last.error ?? last.reason
}

/** What a last attempt ended on, for a list: "bump: lint failed", "bump", "wrong team"; undefined when nothing is known. */
export function lastAttemptDetail(last: LastAttempt): string | undefined {
  const why = whyOf(last)
  if (!last.step) return why
  return why ? `${last.step}: ${why}` : last.step
}

const ENDED: Record<LastOutcome, string> = {
  failed: 'failed',
  rejected: 'was rejected',
  cancelled: 'was cancelled',
  dequeued: 'was removed from the queue',
}

/**
 * A last attempt as the run page says it, in parts so the page can shorten the reason and
 * add the time: "Last attempt failed at step bump" · "lint failed" · "worker app-charts".
 */
export function describeLastAttempt(last: LastAttempt): { what: string; why?: string; by: string } {
  const what = `Last attempt ${ENDED[last.outcome]}${last.step ? ` at step ${last.step}` : ''}`
  const why = whyOf(last)
  return why ? { what, why, by: actorPhrase(last.by) } : { what, by: actorPhrase(last.by) }
}

/** `text` cut to at most `max` characters, ending in "…" when cut; for a cell that holds the whole text in its title. */
export function truncate(text: string, max: number): string {
  // By code point, so a cut never splits an emoji or another character outside the BMP in two.
  const chars = Array.from(text)
  if (chars.length <= max) return text
  return `${chars
    .slice(0, Math.max(0, max - 1))
    .join('')
    .trimEnd()}…`
}

/** "850 ms", "4.2 s", "3 min 5 s", "2 h 10 min", "3 d 4 h"; a missing or negative duration is "—". */
export function formatDuration(ms: number | undefined): string {
  if (ms === undefined || !Number.isFinite(ms) || ms < 0) return '—'
  if (ms < 1000) return `${Math.round(ms)} ms`
  const seconds = ms / 1000
  if (seconds < 60) return `${seconds < 10 ? seconds.toFixed(1) : Math.round(seconds)} s`
  const whole = Math.floor(seconds)
  const [d, h, m, s] = [Math.floor(whole / 86_400), Math.floor(whole / 3600) % 24, Math.floor(whole / 60) % 60, whole % 60]
  if (d > 0) return h > 0 ? `${d} d ${h} h` : `${d} d`
  if (h > 0) return m > 0 ? `${h} h ${m} min` : `${h} h`
  return s > 0 ? `${m} min ${s} s` : `${m} min`
}

/** A step's error, when its report carried one as text. */
export function errorOf(detail: Record<string, unknown>): string | undefined {
  const error = detail.error
  return typeof error === 'string' && error.trim() !== '' ? error : undefined
}

/** The attempts, newest first, without changing the list given. */
export function newestFirst<T extends { attempt: number }>(attempts: readonly T[]): T[] {
  return [...attempts].sort((a, b) => b.attempt - a.attempt)
}

/** What a transition did, to candidate `c`. */
const TRANSITIONS: Record<string, (c: string) => string> = {
  'run.queue': (c) => `queued ${c}`,
  'run.dequeue': (c) => `removed ${c} from the queue`,
  'run.execute': (c) => `executed ${c}`,
  'run.unexecute': (c) => `put ${c} back in the queue`,
  'run.cancel': (c) => `cancelled ${c}`,
  'run.complete': (c) => `${c} completed`,
  'run.fail': (c) => `${c} failed`,
}

/**
 * What an entry of the log says happened, after the actor's name: "cancelled checkout
 * (reason: wrong team)", "reported step verify-sync of search-api: failed".
 */
export function describeActivity(entry: Pick<ActivityEntry, 'type' | 'candidateId' | 'detail'>): string {
  const { type, candidateId, detail } = entry
  const who = candidateId ?? 'a candidate'
  const text = (key: string) => (typeof detail[key] === 'string' && detail[key] !== '' ? (detail[key] as string) : undefined)
  switch (type) {
    case 'migration.announced':
      return 'announced the migration'
    case 'migration.deleted':
      return 'deleted the migration'
    case 'candidates.submitted': {
      const count = typeof detail.count === 'number' ? detail.count : undefined
      return count === undefined ? 'submitted candidates' : `submitted ${count} candidate${count === 1 ? '' : 's'}`
    }
    case 'step.dispatched':
      return `dispatched step ${typeof detail.step === 'number' ? detail.step + 1 : '?'} of ${who}`
    case 'step.reported': {
      const step = text('stepName') ?? 'a step'
      const outcome =
        detail.success === false ? 'failed' : text('phase') ? text('phase')!.replaceAll('_', ' ') : detail.done ? 'done' : 'in progress'
      const error = text('error')
      return `reported step ${step} of ${who}: ${outcome}${error ? ` (${error})` : ''}`
    }
  }
  const transition = TRANSITIONS[type]
  if (!transition) return `${type.replaceAll('.', ' ')} ${who}`
  const said = transition(who)
  const why = type === 'run.fail' ? text('error') : text('reason')
  if (!why) return said
  return type === 'run.fail' ? `${said}: ${why}` : `${said} (reason: ${why})`
}
