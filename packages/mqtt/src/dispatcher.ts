import { LoomError, type LoomErrorCode } from '@loom/core'
import type { StepDispatcher } from '@loom/core/engine'
import type { MqttClient } from 'mqtt'
import { createRequester } from './requester'
import { topicPrefix, topics, workerAppLevel } from './topics'
import { tokenFor, type WorkerTokenOption } from './wire'

export interface MqttDispatcherOptions {
  /** The first topic level(s); default `loom`. Servers and workers must agree on it. */
  topicPrefix?: string
  /**
   * Sent in each message's `token` field; workers configured with a token refuse other
   * messages. One token for every worker, or a function of the target
   * (`{ workerApp, workerUrl?, owner? }`), so each worker receives its own:
   * `token: (target) => identities.workerToken(target.owner)`.
   */
  token?: WorkerTokenOption
  /** How long to wait for the worker to accept a step. Default 10 s. */
  timeoutMs?: number
}

/** A `StepDispatcher` over MQTT. `close()` stops listening for answers; the client stays the caller's. */
export interface MqttStepDispatcher extends StepDispatcher {
  close(): Promise<void>
}

/**
 * Dispatches steps over MQTT: a message on `{prefix}/workers/{workerApp}/dispatch` whose
 * body is the `DispatchStepRequest` plus `replyTo`, `correlationId` and, when configured,
 * `token` (the one token, or the one the `token` function chooses for the target). It resolves once a worker answers that it accepted the step, so a step no worker
 * picked up fails its dispatch (and the engine retries, then fails the step) instead of
 * leaving the run waiting forever. A worker's refusal keeps its code (`invalid`,
 * `unauthorized`, `not_found`, `too_large`), so the engine fails the step at once instead of
 * retrying what will be refused again. The worker reports the outcome later, through Complete,
 * as over HTTP. That answer is the acknowledgement, so requests and answers travel at QoS 0:
 * a lost one is a timeout, and a request is never delivered late, after its dispatch failed.
 *
 * @example
 * import mqtt from 'mqtt'
 * import { createLoom, memoryStore, localEngine, tokenIdentities } from '@loom/core'
 * import { mqttDispatcher } from '@loom/mqtt'
 *
 * const client = await mqtt.connectAsync(process.env.MQTT_URL ?? 'mqtt://127.0.0.1:1883')
 * const identities = tokenIdentities({ workers: process.env.LOOM_WORKERS })
 * const dispatcher = mqttDispatcher(client, { token: (target) => identities.workerToken(target.owner) })
 * const loom = createLoom({ store: memoryStore(), engine: localEngine(), dispatcher })
 */
export function mqttDispatcher(client: MqttClient, options: MqttDispatcherOptions = {}): MqttStepDispatcher {
  const prefix = topicPrefix(options.topicPrefix)
  const timeoutMs = options.timeoutMs ?? 10_000
  const requester = createRequester(client, prefix)
  return {
    async dispatch(target, request) {
      const what = `dispatch of step "${request.stepName}" of run ${request.runId} to worker app ${target.workerApp}`
      const topic = topics.dispatch(prefix, workerAppLevel(target.workerApp))
      const token = tokenFor(options.token, target)
      const reply = await requester.request(topic, { ...request, ...(token ? { token } : {}) }, { timeoutMs, what })
      if (!reply.ok) {
        throw new LoomError(refusalCode(reply.code), `${what}: the worker refused (${reply.code}): ${reply.error}`, {
          details: { workerCode: reply.code },
        })
      }
    },
    close: () => requester.close(),
  }
}

/**
 * The one reading of a worker's refusal over MQTT: the code it answered, except `conflict`,
 * which is `invalid` — for the engine `conflict` means "the run went stale", and a worker's
 * answer is never news about the run.
 */
function refusalCode(code: LoomErrorCode): LoomErrorCode {
  return code === 'conflict' ? 'invalid' : code
}
