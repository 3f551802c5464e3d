import {
  DryRunResultSchema,
  LoomError,
  isManualReview,
  parse,
  type DryRunRequest,
  type DryRunResult,
  type DryRunStep,
  type DryRunner,
} from '@loom/core'
import type { MqttClient } from 'mqtt'
import { createRequester } from './requester'
import { topicPrefix, topics, workerAppLevel } from './topics'

export interface MqttDryRunnerOptions {
  /** The first topic level(s); default `loom`. Servers and workers must agree on it. */
  topicPrefix?: string
  /** Sent in each request's `token` field; workers configured with a token refuse other requests. */
  token?: string
  /** How long to wait for each worker app's answer. Default 60 s. */
  timeoutMs?: number
}

/** A `DryRunner` over MQTT. `close()` stops listening for answers; the client stays the caller's. */
export interface MqttDryRunner extends DryRunner {
  close(): Promise<void>
}

/** One worker app's answer to a dry run, or why there is none. */
export type DryRunAnswer = { workerApp: string; result: DryRunResult } | { workerApp: string; error: string }

/**
 * Asks for dry runs over MQTT: a request on `{prefix}/workers/{workerApp}/dry-run` whose body
 * is the `DryRunRequest` plus `replyTo`, `correlationId` and, when configured, `token`; the
 * worker answers on `replyTo`. This works on MQTT 3.1.1 and 5 alike, since nothing depends
 * on MQTT 5's response-topic property.
 *
 * A migration whose steps belong to several worker apps asks each of them at once and merges
 * the answers step by step (see {@link mergeDryRuns}). Apps whose steps are all manual
 * review are not asked. It throws `unavailable` when no worker app answered in time.
 *
 * @example
 * const loom = createLoom({ store, engine, dispatcher: mqttDispatcher(client), dryRunner: mqttDryRunner(client, { timeoutMs: 30_000 }) })
 * const preview = await loom.dryRun('app-chart', 'billing-api')
 */
export function mqttDryRunner(client: MqttClient, options: MqttDryRunnerOptions = {}): MqttDryRunner {
  const prefix = topicPrefix(options.topicPrefix)
  const token = options.token || undefined
  const timeoutMs = options.timeoutMs ?? 60_000
  const requester = createRequester(client, prefix)

  const ask = async (workerApp: string, request: DryRunRequest): Promise<DryRunAnswer> => {
    const what = `dry run of ${request.migrationId} for ${request.candidate.id} by worker app ${workerApp}`
    try {
      const topic = topics.dryRun(prefix, workerAppLevel(workerApp))
      const reply = await requester.request(topic, { ...request, ...(token ? { token } : {}) }, { timeoutMs, what })
      if (!reply.ok) return { workerApp, error: `${what}: the worker refused (${reply.code}): ${reply.error}` }
      try {
        return { workerApp, result: parse(DryRunResultSchema, reply.result, 'result') }
      } catch (error) {
        return { workerApp, error: `${what}: invalid answer: ${(error as Error).message}` }
      }
    } catch (error) {
      return { workerApp, error: (error as Error).message }
    }
  }

  return {
    async dryRun(target, request) {
      const dispatched = new Set(request.steps.filter((s) => !isManualReview(s)).map((s) => s.workerApp))
      const workerApps = target.workerApps.filter((app) => dispatched.has(app))
      const answers = await Promise.all(workerApps.map((app) => ask(app, request)))
      if (workerApps.length > 0 && answers.every((a) => 'error' in a)) {
        throw new LoomError('unavailable', answers.map((a) => ('error' in a ? a.error : '')).join('; '))
      }
      return mergeDryRuns(request, answers)
    },
    close: () => requester.close(),
  }
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
