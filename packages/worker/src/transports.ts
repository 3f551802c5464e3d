import { LoomError, type DispatchStepRequest, type DryRunResult } from '@loom/core'
import type { DryRunner, StepDispatcher } from '@loom/core/engine'
import type { MqttTransport, WorkerContext } from './context'

/** The worker's transport-neutral entry points, which every transport hands requests to. */
export interface WorkerEndpoints {
  dispatchStep(request: DispatchStepRequest): Promise<void>
  dryRun(request: unknown): Promise<DryRunResult>
}

/** Core's dispatcher and dry runner in this process, for a Loom built next to the worker. */
export function inProcess(ctx: WorkerContext, endpoints: WorkerEndpoints): { dispatcher: StepDispatcher; dryRunner: DryRunner } {
  const { app, migrations } = ctx
  const handles = (workerApp: string) =>
    workerApp === app || [...migrations.values()].some((m) => m.steps.some((s) => (s.workerApp ?? app) === workerApp))
  return {
    dispatcher: {
      async dispatch(target, request) {
        if (!handles(target.workerApp)) {
          throw new LoomError('unavailable', `worker app ${target.workerApp} is not hosted here (this is ${app})`)
        }
        await endpoints.dispatchStep(request)
      },
    },
    dryRunner: {
      dryRun: (_target, request) => endpoints.dryRun(request),
    },
  }
}

/** Subscribes to this worker app's dispatch and dry-run topics; resolves once both subscriptions are in place. */
export async function receiveOverMqtt(ctx: WorkerContext, transport: MqttTransport, endpoints: WorkerEndpoints): Promise<void> {
  const { onDispatch, serveDryRun } = await import('@loom/mqtt')
  const common = {
    workerApp: ctx.app,
    ...(ctx.dispatchToken ? { token: ctx.dispatchToken } : {}),
    ...(transport.topicPrefix ? { topicPrefix: transport.topicPrefix } : {}),
    // A refused message (wrong token, bad shape) is the worker's to report, like any other error it handles.
    logger: {
      warn: (message: string) => ctx.onError(new Error(message)),
      error: (message: string, error?: unknown) => ctx.onError(error ?? new Error(message)),
    },
  }
  const subscriptions = [
    onDispatch(transport.mqtt, { ...common, handler: (request) => endpoints.dispatchStep(request) }),
    serveDryRun(transport.mqtt, { ...common, handler: (request) => endpoints.dryRun(request) }),
  ]
  for (const s of subscriptions) ctx.onStop(() => s.stop())
  await Promise.all(subscriptions.map((s) => s.ready))
}

/** An announcer over MQTT, closed when the worker stops. */
export async function announcerOverMqtt(ctx: WorkerContext, transport: MqttTransport) {
  const { mqttAnnouncer } = await import('@loom/mqtt')
  const announcer = mqttAnnouncer(transport.mqtt, {
    ...(ctx.options.token ? { token: ctx.options.token } : {}),
    ...(transport.topicPrefix ? { topicPrefix: transport.topicPrefix } : {}),
  })
  ctx.onStop(() => announcer.close())
  return announcer
}
