/** What the counting worker writes to its log, and how a test reads it back. */
import { existsSync, readFileSync } from 'node:fs'

/** The worker app of every step of the fault suite's migrations. */
export const WORKER_APP = 'faults-worker'

/** The three steps of every migration of the suite. */
export const STEP_NAMES = ['bump-chart', 'open-pr', 'merge-pr'] as const

type LogEntry =
  /** Loom sent a dispatch (logged before the SDK looks at it). */
  | { kind: 'dispatch'; runId?: string; step?: string; attempt?: number }
  /** The worker answered that dispatch with `status`. */
  | { kind: 'answered'; runId?: string; step?: string; attempt?: number; status: number }
  /** The SDK ran the step's handler. */
  | { kind: 'handled'; runId: string; step: string; attempt?: number }
  /** One HTTP call to Loom (a report is `/event/{runId}`): its status, or the error when no answer came. */
  | { kind: 'call'; path: string; runId?: string; step?: string; attempt?: number; status?: number; error?: string; ms: number }
  /** How `worker.complete` ended: `accepted` (Loom answered 2xx), or the code of its final refusal or error. */
  | { kind: 'report'; runId: string; step: string; attempt?: number; outcome: string; error?: string }

export type Logged = LogEntry & { generation: number; at: number }

export function readLog(path: string): Logged[] {
  if (!existsSync(path)) return []
  return readFileSync(path, 'utf8')
    .split('\n')
    .filter((line) => line.trim())
    .flatMap((line) => {
      try {
        return [JSON.parse(line) as Logged]
      } catch {
        return [] // the last line of a process killed while writing it
      }
    })
}

/** The reports Loom accepted (a 2xx answer to `POST /event/{runId}`), one per (run, attempt, step). */
export function acceptedReports(log: Logged[]): Array<Extract<Logged, { kind: 'call' }>> {
  const seen = new Map<string, Extract<Logged, { kind: 'call' }>>()
  for (const entry of log) {
    if (entry.kind !== 'call' || !entry.runId || entry.status === undefined || entry.status >= 300) continue
    const key = `${entry.runId}|${entry.attempt}|${entry.step}`
    if (!seen.has(key)) seen.set(key, entry)
  }
  return [...seen.values()]
}

/** `runId|attempt|step`: one step of one attempt of a run. */
export const keyOf = (e: { runId?: string | undefined; attempt?: number | undefined; step?: string | undefined }) =>
  `${e.runId}|${e.attempt}|${e.step}`

/** The steps a worker accepted (answered 202) and has not had a report accepted for, by generation (all when omitted). */
export function unreported(log: Logged[], generation?: number): Set<string> {
  const reported = new Set(acceptedReports(log).map(keyOf))
  const open = new Set<string>()
  for (const e of log) {
    if (e.kind !== 'answered' || e.status !== 202 || (generation !== undefined && e.generation !== generation)) continue
    if (!reported.has(keyOf(e))) open.add(keyOf(e))
  }
  return open
}
