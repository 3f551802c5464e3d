/**
 * The worker app of the events test, served by the test process: it accepts each step that
 * `httpDispatcher` sends (`POST /steps/dispatch`, answered 202) and records when it answered and
 * with which bearer token the dispatch came, so the test knows the dispatching process. It
 * reports a step (`POST {api}/event/{runId}`, echoing the attempt) when the test says so, or by
 * itself a moment after the dispatch once `autoReport` is on.
 */
import type { AddressInfo } from 'node:net'
import { serve, type ServerType } from '@hono/node-server'
import { Hono } from 'hono'
import { call } from '../support/api'
import { pollUntil } from '../support-temporal/processes'

interface Dispatch {
  runId: string
  stepName: string
  candidateId: string
  attempt?: number
  /** The `Authorization` header it came with. */
  authorization?: string
  /** When the worker app answered it 202 (`Date.now()`): the acceptance the dispatcher waits for. */
  answeredAt: number
}

interface Report {
  runId: string
  stepName: string
  /** When the report was sent, and when Loom's answer came back. */
  sentAt: number
  answeredAt: number
  status: number
}

/** How long after its dispatch a step is reported when `autoReport` is on. */
const AUTO_REPORT_MS = 50

export interface WorkerApp {
  /** Its base URL, the migration's `workerUrl`. */
  readonly url: string
  readonly dispatches: readonly Dispatch[]
  readonly reports: readonly Report[]
  /** Report every step a moment after its dispatch (the ones dispatched before are the test's to report). */
  autoReport: boolean
  /** The dispatch of `stepName` for `runId`, waiting up to `ms`; undefined when none came. */
  dispatched(runId: string, stepName: string, ms: number): Promise<Dispatch | undefined>
  /** Reports the dispatched step as succeeded. */
  report(dispatch: Dispatch): Promise<Report>
  close(): Promise<void>
}

/** Starts the worker app on a free port; it reports to the Loom API at `api` (…/api). */
export async function startWorkerApp(options: { api: string }): Promise<WorkerApp> {
  const dispatches: Dispatch[] = []
  const reports: Report[] = []
  const timers = new Set<NodeJS.Timeout>()

  const report = async (dispatch: Dispatch): Promise<Report> => {
    const sentAt = Date.now()
    const answer = await call(options.api, 'POST', `/event/${dispatch.runId}`, {
      stepName: dispatch.stepName,
      candidate: { id: dispatch.candidateId },
      success: true,
      attempt: dispatch.attempt,
    })
    const sent: Report = { runId: dispatch.runId, stepName: dispatch.stepName, sentAt, answeredAt: Date.now(), status: answer.status }
    reports.push(sent)
    return sent
  }

  const routes = new Hono().post('/steps/dispatch', async (c) => {
    const body = (await c.req.json()) as { runId: string; stepName: string; candidate: { id: string }; attempt?: number }
    const authorization = c.req.header('authorization')
    const dispatch: Dispatch = {
      runId: body.runId,
      stepName: body.stepName,
      candidateId: body.candidate.id,
      ...(body.attempt === undefined ? {} : { attempt: body.attempt }),
      ...(authorization ? { authorization } : {}),
      answeredAt: Date.now(),
    }
    dispatches.push(dispatch)
    if (app.autoReport) {
      const timer = setTimeout(() => {
        timers.delete(timer)
        void report(dispatch)
      }, AUTO_REPORT_MS)
      timers.add(timer)
    }
    return c.body(null, 202)
  })

  const server: ServerType = await new Promise((resolve) => {
    const started = serve({ fetch: routes.fetch, port: 0, hostname: '127.0.0.1' }, () => resolve(started))
  })
  const app: WorkerApp = {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    dispatches,
    reports,
    autoReport: false,
    async dispatched(runId, stepName, ms) {
      const find = () => dispatches.find((d) => d.runId === runId && d.stepName === stepName)
      await pollUntil(() => find() !== undefined, ms)
      return find()
    },
    report,
    async close() {
      for (const timer of timers) clearTimeout(timer)
      await new Promise((resolve) => server.close(resolve))
    },
  }
  return app
}
