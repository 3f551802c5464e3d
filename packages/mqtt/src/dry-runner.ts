import type { DryRunRequest, DryRunTarget } from '@loom/core'
import { type DryRunner, dryRunAcrossApps } from '@loom/core/engine'
import type { MqttClient } from 'mqtt'
import { createRequester } from './requester'
import { topicPrefix, topics, workerAppLevel } from './topics'
import { tokenFor, type WorkerTokenOption } from './wire'

export interface MqttDryRunnerOptions {
  /** The first topic level(s); default `loom`. Servers and workers must agree on it. */
  topicPrefix?: string
  /**
   * Sent in each request's `token` field; workers configured with a token refuse other
   * requests. One token for every worker, or a function of the worker app asked
   * (`{ workerApp, workerUrl?, owner? }`, `owner` being the migration's), as `mqttDispatcher`'s.
   */
  token?: WorkerTokenOption
  /** How long to wait for each worker app's answer. Default 60 s. */
  timeoutMs?: number
}

/** A `DryRunner` over MQTT. `close()` stops listening for answers; the client stays the caller's. */
export interface MqttDryRunner extends DryRunner {
  close(): Promise<void>
}

/**
 * Asks for dry runs over MQTT: a request on `{prefix}/workers/{workerApp}/dry-run` whose body
 * is the `DryRunRequest` plus `replyTo`, `correlationId` and, when configured, `token`; the
 * worker answers on `replyTo`. This works on MQTT 3.1.1 and 5 alike, since nothing depends
 * on MQTT 5's response-topic property.
 *
 * A migration whose steps belong to several worker apps asks each of them at once and merges
 * the answers step by step, as every transport does (`dryRunAcrossApps` of
 * `@loom/core/engine`). Apps whose steps are all manual review are not asked. It throws
 * `unavailable` when no worker app answered, refusals included: a worker refusing the token
 * is a worker problem, not the operator's.
 *
 * @example
 * const loom = createLoom({ store, engine, dispatcher: mqttDispatcher(client), dryRunner: mqttDryRunner(client, { timeoutMs: 30_000 }) })
 * const preview = await loom.dryRun('app-chart', 'billing-api')
 */
export function mqttDryRunner(client: MqttClient, options: MqttDryRunnerOptions = {}): MqttDryRunner {
  const prefix = topicPrefix(options.topicPrefix)
  const timeoutMs = options.timeoutMs ?? 60_000
  const requester = createRequester(client, prefix)

  const ask = async (target: DryRunTarget, workerApp: string, request: DryRunRequest): Promise<unknown> => {
    const what = `dry run of ${request.migrationId} for ${request.candidate.id} by worker app ${workerApp}`
    const topic = topics.dryRun(prefix, workerAppLevel(workerApp))
    const token = tokenFor(options.token, {
      workerApp,
      ...(target.workerUrl === undefined ? {} : { workerUrl: target.workerUrl }),
      ...(target.owner === undefined ? {} : { owner: target.owner }),
    })
    const reply = await requester.request(topic, { ...request, ...(token ? { token } : {}) }, { timeoutMs, what })
    if (!reply.ok) throw new Error(`${what}: the worker refused (${reply.code}): ${reply.error}`)
    return reply.result
  }

  return {
    dryRun: (target, request) => dryRunAcrossApps(target, request, (workerApp) => ask(target, workerApp, request)),
    close: () => requester.close(),
  }
}
