import { CancelOptionsSchema, ExecuteOptionsSchema, RunHistorySchema, RunInfoSchema } from '@loom/core'
import { Hono } from 'hono'
import * as v from 'valibot'
import type { Served } from './app'
import type { LoomEnv } from './auth'
import { describeRoute } from './describe'
import { jsonBody, optionalJsonBody, runIdParam } from './validation'

/** The answer of queue and execute. */
export const RunIdBodySchema = v.object({ runId: v.string() })
const AcceptedSchema = v.object({ status: v.literal('accepted') })
const REPORT_ERRORS = {
  invalid: 'the migration has no step of that name, or `candidate.id` is not the candidate of the run',
  conflict: 'the run is not running, or the step has already ended',
}

/** `/runs`: an operator reads a run and its history, dequeues, executes or cancels it. */
export function runRoutes({ loom, guards, limits }: Served) {
  return new Hono<LoomEnv>()
    .get(
      '/:runId',
      describeRoute({
        operationId: 'getRun',
        summary: 'The run of a queued, running or completed candidate',
        responses: { 200: { description: 'The run', body: RunInfoSchema } },
        errors: { not_found: 'the candidate is not_started' },
      }),
      guards.allow('getRun'),
      runIdParam,
      async (c) => c.json(await loom.as(c.var.actor).getRun(c.req.valid('param').runId)),
    )
    .get(
      '/:runId/history',
      describeRoute({
        operationId: 'history',
        summary: 'Every attempt of the run’s candidate, oldest first, with who and when',
        description:
          'Each attempt says how it stands or ended, who queued, executed and ended it, when, how long it ran, the reason ' +
          'of a cancel, and each step with its dispatch and report times and result. A candidate that was never queued has no attempts.',
        responses: { 200: { description: 'The run’s history', body: RunHistorySchema } },
        errors: { not_found: 'the migration or the candidate does not exist' },
      }),
      guards.allow('history'),
      runIdParam,
      async (c) => c.json(await loom.as(c.var.actor).history(c.req.valid('param').runId)),
    )
    .delete(
      '/:runId/dequeue',
      describeRoute({
        operationId: 'dequeue',
        summary: 'Dequeue: queued → not_started',
        responses: { 204: { description: 'Dequeued' } },
        errors: { conflict: 'the candidate is not queued' },
      }),
      guards.allow('dequeue'),
      runIdParam,
      async (c) => {
        await loom.as(c.var.actor).dequeue(c.req.valid('param').runId)
        return c.body(null, 204)
      },
    )
    .post(
      '/:runId/execute',
      describeRoute({
        operationId: 'execute',
        summary: 'Execute: queued → running, and starts the engine’s run',
        description:
          'The body is optional. Without one (API 0.2 clients send none), or with `{"resume": false}`, the run starts at the first step. With ' +
          '`{"resume": true}`, the steps that succeeded in the candidate’s previous attempt are carried over, results included, ' +
          'and the run goes past them (by step name) to the first step that did not succeed.',
        responses: { 202: { description: 'Started', body: RunIdBodySchema } },
        errors: {
          conflict: 'the candidate is not queued',
          unavailable: 'the engine refused to start the run; the candidate stays queued',
        },
      }),
      guards.allow('execute'),
      runIdParam,
      optionalJsonBody(ExecuteOptionsSchema, { limits }),
      async (c) => c.json({ runId: await loom.as(c.var.actor).execute(c.req.valid('param').runId, c.req.valid('json')) }, 202),
    )
    .post(
      '/:runId/cancel',
      describeRoute({
        operationId: 'cancel',
        summary: 'Cancel: queued or running → not_started, recording a cancelled attempt',
        description:
          'The body is optional (API 0.2 clients send none). `{"reason": "…"}` (at most 2000 characters) is kept with the ' +
          'cancelled attempt and in the activity log, together with who cancelled.',
        responses: { 204: { description: 'Cancelled' } },
        errors: { conflict: 'the candidate is neither queued nor running' },
      }),
      guards.allow('cancel'),
      runIdParam,
      optionalJsonBody(CancelOptionsSchema, { limits }),
      async (c) => {
        await loom.as(c.var.actor).cancel(c.req.valid('param').runId, c.req.valid('json'))
        return c.body(null, 204)
      },
    )
}

/** `/event`: workers report the outcome of a step, or a pull request opened on the way. */
export function reportRoutes({ loom, guards, schemas, limits }: Served) {
  return new Hono<LoomEnv>()
    .post(
      '/:runId',
      describeRoute({
        operationId: 'complete',
        summary: 'Reports a step’s outcome',
        responses: { 202: { description: 'Accepted', body: AcceptedSchema } },
        errors: REPORT_ERRORS,
      }),
      guards.allow('complete'),
      runIdParam,
      jsonBody(schemas.StepCompletedEvent, '', { limits }),
      async (c) => {
        await loom.as(c.var.actor).complete(c.req.valid('param').runId, c.req.valid('json'))
        return c.json({ status: 'accepted' as const }, 202)
      },
    )
    .post(
      '/:runId/pr-opened',
      describeRoute({
        operationId: 'prOpened',
        summary: 'Reports a pull request opened: progress on the step, which is still awaited',
        responses: { 202: { description: 'Accepted', body: AcceptedSchema } },
        errors: REPORT_ERRORS,
      }),
      guards.allow('prOpened'),
      runIdParam,
      jsonBody(schemas.StepCompletedEvent, '', { limits }),
      async (c) => {
        await loom.as(c.var.actor).prOpened(c.req.valid('param').runId, c.req.valid('json'))
        return c.json({ status: 'accepted' as const }, 202)
      },
    )
}
