import {
  LoomError,
  createLoom,
  httpDispatcher,
  httpDryRunner,
  localEngine,
  memoryStore,
  type DispatchStepRequest,
  type Loom,
  type LoomInstance,
} from '@loom/core'
import { eventually, expectLoomError } from '@loom/core/testing'
import { loomApp } from '@loom/hono'
import { afterEach, describe, expect, it } from 'vitest'
import { defineMigration, pending, type StepSpec } from './define-migration'
import type { WorkerOptions } from './context'
import { createWorker, type Worker } from './worker'

const WORKER_TOKEN = 'worker-secret'
const candidates = [
  { id: 'billing', metadata: { repoName: 'acme/gitops' } },
  { id: 'search', metadata: { repoName: 'acme/gitops' } },
]

function deferred<T = void>() {
  let resolve!: (value: T) => void
  const promise = new Promise<T>((r) => (resolve = r))
  return { promise, resolve }
}

const migrationOf = (steps: StepSpec[], id = 'app-chart') =>
  defineMigration({ id, name: 'App chart', description: 'Per-app charts', steps, discover: () => candidates })

interface Setup {
  loom: LoomInstance
  worker: Worker
  errors: unknown[]
  /** Wraps the Loom the worker talks to (to make it fail); defaults to Loom itself. */
}

const opened: Array<{ loom: LoomInstance; worker: Worker }> = []
afterEach(async () => {
  for (const { loom, worker } of opened.splice(0)) {
    await worker.stop()
    await loom.close()
  }
})

/**
 * Loom in this process, dispatching over core's HTTP transport into `worker.app` (no socket:
 * the worker app's `request`), so the bearer token and the wire shapes are the real ones.
 */
function setup(steps: StepSpec[], options: { wrap?: (loom: Loom) => Loom; worker?: Partial<WorkerOptions> } = {}): Setup {
  let worker: Worker | undefined
  const fetchWorker = ((input: string | URL | Request, init?: RequestInit) => worker!.app.request(String(input), init)) as typeof fetch
  const loom = createLoom({
    store: memoryStore(),
    engine: localEngine({ retryDelayMs: 5 }),
    dispatcher: httpDispatcher({ token: WORKER_TOKEN, fetch: fetchWorker }),
    dryRunner: httpDryRunner({ token: WORKER_TOKEN, fetch: fetchWorker }),
    onError: () => {},
  })
  const errors: unknown[] = []
  worker = createWorker({
    app: 'charts',
    loom: options.wrap ? options.wrap(loom) : loom,
    token: WORKER_TOKEN,
    url: 'http://worker.test',
    migrations: [migrationOf(steps)],
    retry: { attempts: 4, initialDelayMs: 1, maxDelayMs: 5 },
    onError: (error) => errors.push(error),
    ...options.worker,
  })
  opened.push({ loom, worker })
  return { loom, worker, errors }
}

/** One step `edit`, whose final outcomes Loom cannot take (unavailable) while `reports.down` is set. */
function setupWithReportsDown(run: StepSpec['run']) {
  const reports = { down: true }
  const wrap = (inner: Loom): Loom => ({
    ...inner,
    complete: async (runId, event) => {
      if (reports.down) throw new LoomError('unavailable', 'Loom is restarting')
      return inner.complete(runId, event)
    },
  })
  return { ...setup([{ name: 'edit', run }], { wrap }), reports }
}

const statusOf = async (loom: Loom, candidateId: string) =>
  (await loom.listCandidates('app-chart')).find((c) => c.id === candidateId)?.status

async function execute(loom: Loom, candidateId: string) {
  const runId = await loom.queue('app-chart', candidateId)
  await loom.execute(runId)
  return runId
}

describe('createWorker: options', () => {
  const fieldOf = (options: Partial<WorkerOptions>) => {
    try {
      createWorker({
        app: 'charts',
        loomUrl: 'http://loom.test/api',
        migrations: [migrationOf([{ name: 'edit', run: () => {} }])],
        ...options,
      })
    } catch (error) {
      if (LoomError.is(error, 'invalid')) return error.details?.field
      throw error
    }
    return undefined
  }

  it('refuses bad options with an invalid error naming the field', () => {
    const migration = migrationOf([{ name: 'edit', run: () => {} }])
    expect(fieldOf({ app: undefined as unknown as string })).toBe('app')
    expect(fieldOf({ migrations: [{ id: 'x' } as never] })).toBe('migrations.0')
    expect(fieldOf({ migrations: [migration, migration] })).toBe('migrations.1.id')
    expect(fieldOf({ loomUrl: undefined })).toBe('loomUrl')
    // An Authorization header cannot carry these: every dispatch over HTTP would be refused.
    expect(fieldOf({ token: 'pass word' })).toBe('token')
    expect(fieldOf({ token: 'ok', dispatchToken: 'p@ss' })).toBe('dispatchToken')
    expect(fieldOf({ token: 'abc-DEF_1.2~3+4/5==' })).toBeUndefined()
  })
})

describe('createWorker: announce and discover', () => {
  it('announces each migration with its steps under the worker app, then submits the discovered candidates', async () => {
    const { loom, worker } = setup([
      { name: 'edit', description: 'Edit values', config: { chart: 'app' }, files: ['apps/*/values.yaml'], run: () => {} },
      { name: 'deploy', workerApp: 'deployer', run: () => {} },
      { name: 'review', config: { type: 'manual-review', instructions: 'Look' } },
    ])
    await worker.start()
    const migration = await loom.getMigration('app-chart')
    expect(migration).toMatchObject({ id: 'app-chart', name: 'App chart', description: 'Per-app charts', workerUrl: 'http://worker.test' })
    expect(migration.steps).toEqual([
      { name: 'edit', workerApp: 'charts', description: 'Edit values', config: { chart: 'app' }, files: ['apps/*/values.yaml'] },
      { name: 'deploy', workerApp: 'deployer' },
      { name: 'review', workerApp: 'charts', config: { type: 'manual-review', instructions: 'Look' } },
    ])
    expect(migration.candidates).toEqual(candidates)
  })

  it('retries the announce while Loom is unavailable, then discovers', async () => {
    let announces = 0
    const { loom, worker } = setup([{ name: 'edit', run: () => {} }], {
      wrap: (inner) => ({
        ...inner,
        announce: async (a) => {
          if (++announces < 3) throw new LoomError('unavailable', 'store: connection refused')
          return inner.announce(a)
        },
      }),
    })
    await worker.start()
    expect(announces).toBe(3)
    expect((await loom.listCandidates('app-chart')).map((c) => c.id)).toEqual(['billing', 'search'])
  })

  it('gives up at once when Loom refuses the announcement, and after the retries when it stays unreachable', async () => {
    let calls = 0
    const refused = setup([{ name: 'edit', run: () => {} }], {
      wrap: (inner) => ({
        ...inner,
        announce: async () => {
          calls++
          throw new LoomError('unauthorized', 'bad token')
        },
      }),
    })
    await expectLoomError(refused.worker.start(), 'unauthorized')
    expect(calls).toBe(1)

    calls = 0
    const down = setup([{ name: 'edit', run: () => {} }], {
      wrap: (inner) => ({
        ...inner,
        submitCandidates: async () => {
          calls++
          throw new LoomError('unavailable', 'down')
        },
      }),
    })
    await expectLoomError(down.worker.start(), 'unavailable')
    expect(calls).toBe(4)
  })

  it('stop cancels the retries of a start that cannot reach Loom', async () => {
    const { worker } = setup([{ name: 'edit', run: () => {} }], {
      wrap: (inner) => ({
        ...inner,
        announce: async () => {
          throw new TypeError('fetch failed')
        },
      }),
      worker: { retry: { attempts: 1000, initialDelayMs: 50, maxDelayMs: 50 } },
    })
    const start = worker.start()
    await new Promise((resolve) => setTimeout(resolve, 20))
    await worker.stop()
    const error = await start.then(
      () => undefined,
      (e: unknown) => e,
    )
    expect(LoomError.is(error, 'unavailable')).toBe(true)
    expect((error as Error).message).toBe('worker app charts stopped')
  })

  it('talks to Loom over HTTP with its token when given loomUrl', async () => {
    const loom = createLoom({ store: memoryStore(), engine: localEngine() })
    const api = loomApp(loom, { token: 'operator', workerToken: WORKER_TOKEN })
    const make = (token: string) =>
      createWorker({
        app: 'charts',
        loomUrl: 'http://loom.test/api',
        token,
        fetch: async (input, init) => api.request(new Request(String(input).replace('/api', ''), init)),
        migrations: [migrationOf([{ name: 'edit', run: () => {} }])],
        retry: { attempts: 2, initialDelayMs: 1 },
      })
    await expectLoomError(make('wrong').start(), 'unauthorized')
    await expectLoomError(loom.getMigration('app-chart'), 'not_found')
    const worker = make(WORKER_TOKEN)
    await worker.start()
    expect((await loom.listCandidates('app-chart')).map((c) => c.id)).toEqual(['billing', 'search'])
    await worker.stop()
    await loom.close()
  })
})

describe('createWorker: running steps', () => {
  it('runs the dispatched steps in order and completes the run, reporting each handler’s metadata', async () => {
    const seen: Array<{ step: string; candidate: string; config: Record<string, string> }> = []
    const { loom, worker } = setup([
      {
        name: 'edit',
        config: { chart: 'app' },
        run: ({ stepName, candidate, config }) => {
          seen.push({ step: stepName, candidate: candidate.id, config })
          return { metadata: { prUrl: 'https://git/1' } }
        },
      },
      {
        name: 'merge',
        run: ({ stepName, candidate, config }) => {
          seen.push({ step: stepName, candidate: candidate.id, config })
        },
      },
    ])
    await worker.start()
    const runId = await execute(loom, 'billing')
    await eventually(async () => expect(await statusOf(loom, 'billing')).toBe('completed'))
    expect(seen).toEqual([
      { step: 'edit', candidate: 'billing', config: { chart: 'app' } },
      { step: 'merge', candidate: 'billing', config: {} },
    ])
    const run = await loom.getRun(runId)
    expect(run.steps?.map((s) => [s.stepName, s.success, s.metadata])).toEqual([
      ['edit', true, { prUrl: 'https://git/1' }],
      ['merge', true, undefined],
    ])
  })

  it('reports a handler that throws as a failed step with its message; the candidate goes back to not_started', async () => {
    const { loom, worker } = setup([
      {
        name: 'edit',
        run: () => {
          throw new Error('values.yaml: no chart key')
        },
      },
      { name: 'merge', run: () => {} },
    ])
    await worker.start()
    const runId = await execute(loom, 'billing')
    await eventually(async () => expect(await statusOf(loom, 'billing')).toBe('not_started'))
    const status = await loom.runStatus(runId)
    expect(status.runtimeStatus).toBe('FAILED')
    // The worker reports the candidate's id; Loom records the candidate as it was dispatched (API 0.2).
    expect(status.result.results).toEqual([
      { stepName: 'edit', candidate: candidates[0], success: false, metadata: { error: 'values.yaml: no chart key' } },
    ])
  })

  it('waits for worker.complete when a handler returns pending, reporting its metadata as progress first', async () => {
    const dispatched = deferred<string>()
    const { loom, worker } = setup([
      {
        name: 'open-pr',
        run: ({ runId }) => {
          dispatched.resolve(runId)
          return pending({ prUrl: 'https://git/pr/7' })
        },
      },
    ])
    await worker.start()
    const runId = await execute(loom, 'billing')
    expect(await dispatched.promise).toBe(runId)
    await eventually(async () =>
      expect((await loom.getRun(runId)).steps).toEqual([
        { stepName: 'open-pr', candidate: candidates[0], success: true, metadata: { phase: 'open', prUrl: 'https://git/pr/7' } },
      ]),
    )
    expect(await statusOf(loom, 'billing')).toBe('running')
    await worker.complete(runId, 'open-pr', { success: true, metadata: { phase: 'merged', prUrl: 'https://git/pr/7' } })
    await eventually(async () => expect(await statusOf(loom, 'billing')).toBe('completed'))
    expect((await loom.getRun(runId)).steps?.[0]?.metadata).toEqual({ phase: 'merged', prUrl: 'https://git/pr/7' })
    // Loom answers a different outcome for an ended step with conflict, and the worker passes it on.
    await expectLoomError(worker.complete(runId, 'open-pr', { success: false }), 'conflict')
  })

  it('handles a step dispatched twice while its handler runs once, and reports once', async () => {
    const release = deferred()
    let calls = 0
    let completes = 0
    const { loom, worker } = setup(
      [
        {
          name: 'edit',
          run: async () => {
            calls++
            await release.promise
            return { metadata: { n: String(calls) } }
          },
        },
      ],
      {
        wrap: (inner) => ({
          ...inner,
          complete: (runId, event) => {
            completes++
            return inner.complete(runId, event)
          },
        }),
      },
    )
    await worker.start()
    const runId = await execute(loom, 'billing')
    await eventually(() => expect(calls).toBe(1))
    const request: DispatchStepRequest = {
      migrationId: 'app-chart',
      runId,
      stepName: 'edit',
      candidate: { id: 'billing' },
      callbackId: runId,
      eventName: 'step-completed:edit',
    }
    const response = await worker.app.request('/steps/dispatch', {
      method: 'POST',
      headers: { authorization: `Bearer ${WORKER_TOKEN}`, 'content-type': 'application/json' },
      body: JSON.stringify(request),
    })
    expect(response.status).toBe(202)
    await worker.dispatchStep(request)
    release.resolve()
    await eventually(async () => expect(await statusOf(loom, 'billing')).toBe('completed'))
    expect(calls).toBe(1)
    expect(completes).toBe(1)
    expect((await loom.getRun(runId)).steps?.map((s) => s.metadata)).toEqual([{ n: '1' }])
  })

  it('sends an outcome Loom could not take again when the step is dispatched again, without running the handler again', async () => {
    let calls = 0
    const { loom, worker, errors, reports } = setupWithReportsDown(() => {
      calls++
      return { metadata: { done: 'yes' } }
    })
    await worker.start()
    const runId = await execute(loom, 'billing')
    await eventually(() => expect(errors).toHaveLength(1))
    expect(String(errors[0])).toContain('Loom is restarting')
    reports.down = false
    await worker.dispatchStep({
      migrationId: 'app-chart',
      runId,
      stepName: 'edit',
      candidate: { id: 'billing' },
      callbackId: runId,
      eventName: 'step-completed:edit',
    })
    await eventually(async () => expect(await statusOf(loom, 'billing')).toBe('completed'))
    expect(calls).toBe(1)
  })

  it('runs the step again for a new attempt after the run failed and was queued again', async () => {
    let calls = 0
    const { loom, worker } = setup([
      {
        name: 'edit',
        run: () => {
          if (++calls === 1) throw new Error('flaky')
        },
      },
    ])
    await worker.start()
    await execute(loom, 'billing')
    await eventually(async () => expect(await statusOf(loom, 'billing')).toBe('not_started'))
    await execute(loom, 'billing')
    await eventually(async () => expect(await statusOf(loom, 'billing')).toBe('completed'))
    expect(calls).toBe(2)
  })

  it('echoes the dispatch’s attempt in every report it sends over HTTP: progress, pending and final outcomes', async () => {
    const loom = createLoom({
      store: memoryStore(),
      engine: localEngine({ retryDelayMs: 5 }),
      dispatcher: httpDispatcher({
        token: WORKER_TOKEN,
        fetch: ((input, init) => worker.app.request(String(input), init)) as typeof fetch,
      }),
    })
    const api = loomApp(loom, { token: 'operator', workerToken: WORKER_TOKEN })
    const reports: Array<{ path: string; body: Record<string, unknown> }> = []
    const attempts: number[] = []
    const worker: Worker = createWorker({
      app: 'charts',
      loomUrl: 'http://loom.test/api',
      token: WORKER_TOKEN,
      url: 'http://worker.test',
      fetch: async (input, init) => {
        const url = new URL(String(input))
        if (url.pathname.startsWith('/api/event/')) reports.push({ path: url.pathname, body: JSON.parse(String(init?.body)) })
        return api.request(new Request(String(input).replace('/api', ''), init))
      },
      migrations: [
        migrationOf([
          {
            name: 'edit',
            run: async ({ request, prOpened }) => {
              attempts.push(request.attempt!)
              await prOpened({ prUrl: 'https://git/pr/1' })
              return { metadata: { prUrl: 'https://git/pr/1' } }
            },
          },
          {
            name: 'merge',
            run: ({ request }) => {
              attempts.push(request.attempt!)
              return pending({ prUrl: 'https://git/pr/1' })
            },
          },
        ]),
      ],
      retry: { attempts: 2, initialDelayMs: 1 },
    })
    opened.push({ loom, worker })
    await worker.start()
    const runId = await execute(loom, 'billing')
    await eventually(() => expect(reports).toHaveLength(3))
    await worker.complete(runId, 'merge', { success: true })
    await eventually(async () => expect(await statusOf(loom, 'billing')).toBe('completed'))
    const [attempt] = attempts
    expect(attempt).toBeGreaterThan(0)
    expect(attempts).toEqual([attempt, attempt])
    expect(reports.map((r) => [r.path, r.body.stepName, r.body.attempt])).toEqual([
      [`/api/event/${runId}/pr-opened`, 'edit', attempt],
      [`/api/event/${runId}`, 'edit', attempt],
      [`/api/event/${runId}/pr-opened`, 'merge', attempt],
      [`/api/event/${runId}`, 'merge', attempt],
    ])
  })

  it('runs a new attempt afresh instead of sending it the outcome of a cancelled attempt that Loom could not take', async () => {
    let calls = 0
    const { loom, worker, errors, reports } = setupWithReportsDown(() => {
      calls++
    })
    await worker.start()
    const runId = await execute(loom, 'billing')
    await eventually(() => expect(errors).toHaveLength(1))
    await loom.cancel(runId)
    reports.down = false
    await execute(loom, 'billing')
    await eventually(async () => expect(await statusOf(loom, 'billing')).toBe('completed'))
    expect(calls).toBe(2)
  })

  it('does not report a handler that gives up because the worker stops', async () => {
    let completes = 0
    const started = deferred()
    const { loom, worker } = setup(
      [
        {
          name: 'edit',
          run: ({ signal }) =>
            new Promise((_, reject) => {
              started.resolve()
              signal.addEventListener('abort', () => reject(signal.reason))
            }),
        },
      ],
      {
        wrap: (inner) => ({
          ...inner,
          complete: (r, e) => {
            completes++
            return inner.complete(r, e)
          },
        }),
      },
    )
    await worker.start()
    await execute(loom, 'billing')
    await started.promise
    await worker.stop()
    expect(completes).toBe(0)
    expect(await statusOf(loom, 'billing')).toBe('running')
  })

  it('answers a dry run with the stacked diffs of its steps', async () => {
    const { loom, worker } = setup([
      {
        name: 'create-chart',
        run: () => {},
        dryRun: ({ candidate }) => [{ path: `charts/${candidate.id}/Chart.yaml`, content: `name: ${candidate.id}\n` }],
      },
      {
        name: 'bump',
        run: () => {},
        dryRun: async ({ candidate, files }) => [
          {
            path: `charts/${candidate.id}/Chart.yaml`,
            content: `${await files.read(`charts/${candidate.id}/Chart.yaml`)}version: 1.0.0\n`,
          },
        ],
      },
      { name: 'review', config: { type: 'manual-review' } },
    ])
    await worker.start()
    expect(await loom.dryRun('app-chart', 'search')).toEqual({
      steps: [
        {
          stepName: 'create-chart',
          skipped: false,
          files: [{ path: 'charts/search/Chart.yaml', repo: 'acme/gitops', after: 'name: search\n' }],
        },
        {
          stepName: 'bump',
          skipped: false,
          files: [
            { path: 'charts/search/Chart.yaml', repo: 'acme/gitops', before: 'name: search\n', after: 'name: search\nversion: 1.0.0\n' },
          ],
        },
        { stepName: 'review', skipped: true },
      ],
    })
  })
})

/**
 * Loom refusing a final outcome with `unavailable` once (a restart, a store failover) must
 * cost one retry, not the step: the report is sent again and the run moves on, with the
 * handler run once.
 */
describe('createWorker: a report Loom refuses as unavailable once', () => {
  /** `steps` under a Loom whose first `complete` is refused with `unavailable`; `completes` counts every call. */
  function setupWithFirstReportRefused(steps: StepSpec[]) {
    const counts = { completes: 0 }
    const wrap = (inner: Loom): Loom => ({
      ...inner,
      complete: async (runId, event) => {
        if (++counts.completes === 1) throw new LoomError('unavailable', 'store: connection refused')
        return inner.complete(runId, event)
      },
    })
    return { ...setup(steps, { wrap }), counts }
  }

  it('sends a handler’s outcome again: the run completes, the handler ran once, complete was called twice', async () => {
    let calls = 0
    const { loom, worker, errors, counts } = setupWithFirstReportRefused([
      {
        name: 'edit',
        run: () => {
          calls++
          return { metadata: { prUrl: 'https://git/pr/1' } }
        },
      },
    ])
    await worker.start()
    const runId = await execute(loom, 'billing')
    await eventually(async () => expect(await statusOf(loom, 'billing')).toBe('completed'))
    expect(calls).toBe(1)
    expect(counts.completes).toBe(2)
    expect((await loom.getRun(runId)).steps?.map((s) => [s.stepName, s.success, s.metadata])).toEqual([
      ['edit', true, { prUrl: 'https://git/pr/1' }],
    ])
    expect(errors).toEqual([])
  })

  it('sends worker.complete again: it resolves, the run completes, the handler ran once, complete was called twice', async () => {
    let calls = 0
    const dispatched = deferred<string>()
    const { loom, worker, errors, counts } = setupWithFirstReportRefused([
      {
        name: 'open-pr',
        run: ({ runId }) => {
          calls++
          dispatched.resolve(runId)
          return pending()
        },
      },
    ])
    await worker.start()
    const runId = await execute(loom, 'billing')
    expect(await dispatched.promise).toBe(runId)
    await worker.complete(runId, 'open-pr', { success: true, metadata: { phase: 'merged' } })
    await eventually(async () => expect(await statusOf(loom, 'billing')).toBe('completed'))
    expect(calls).toBe(1)
    expect(counts.completes).toBe(2)
    expect((await loom.getRun(runId)).steps?.[0]?.metadata).toEqual({ phase: 'merged' })
    expect(errors).toEqual([])
  })

  it('sends a pull request opened again: the progress shows, the handler ran once, prOpened was called twice', async () => {
    let calls = 0
    let opened = 0
    const dispatched = deferred<string>()
    const { loom, worker, errors } = setup(
      [
        {
          name: 'open-pr',
          run: ({ runId }) => {
            calls++
            dispatched.resolve(runId)
            return pending({ prUrl: 'https://git/pr/9' })
          },
        },
      ],
      {
        wrap: (inner: Loom): Loom => ({
          ...inner,
          prOpened: async (runId, event) => {
            if (++opened === 1) throw new LoomError('unavailable', 'store: connection refused')
            return inner.prOpened(runId, event)
          },
        }),
      },
    )
    await worker.start()
    const runId = await execute(loom, 'billing')
    expect(await dispatched.promise).toBe(runId)
    await eventually(async () =>
      expect((await loom.getRun(runId)).steps?.[0]?.metadata).toEqual({ phase: 'open', prUrl: 'https://git/pr/9' }),
    )
    expect(calls).toBe(1)
    expect(opened).toBe(2)
    expect(errors).toEqual([])
  })

  it('over HTTP, sends the outcome again after a 503: the run completes, the handler ran once, two reports were posted', async () => {
    const loom = createLoom({
      store: memoryStore(),
      engine: localEngine({ retryDelayMs: 5 }),
      dispatcher: httpDispatcher({
        token: WORKER_TOKEN,
        fetch: ((input, init) => worker.app.request(String(input), init)) as typeof fetch,
      }),
    })
    const api = loomApp(loom, { token: 'operator', workerToken: WORKER_TOKEN })
    let calls = 0
    let reports = 0
    const worker: Worker = createWorker({
      app: 'charts',
      loomUrl: 'http://loom.test/api',
      token: WORKER_TOKEN,
      url: 'http://worker.test',
      fetch: async (input, init) => {
        const { pathname } = new URL(String(input))
        // The contract's answer of a Loom whose store is down, for the first final report only.
        if (/^\/api\/event\/[^/]+$/.test(pathname) && ++reports === 1) {
          return Response.json({ error: 'store: connection refused', code: 'unavailable', dependency: 'store' }, { status: 503 })
        }
        return api.request(new Request(String(input).replace('/api', ''), init))
      },
      migrations: [
        migrationOf([
          {
            name: 'edit',
            run: () => {
              calls++
            },
          },
        ]),
      ],
      retry: { attempts: 4, initialDelayMs: 1, maxDelayMs: 5 },
    })
    opened.push({ loom, worker })
    await worker.start()
    await execute(loom, 'billing')
    await eventually(async () => expect(await statusOf(loom, 'billing')).toBe('completed'))
    expect(calls).toBe(1)
    expect(reports).toBe(2)
  })
})

describe('createWorker: the HTTP app', () => {
  const post = (worker: Worker, path: string, body: unknown, token?: string) =>
    worker.app.request(path, {
      method: 'POST',
      headers: { 'content-type': 'application/json', ...(token ? { authorization: `Bearer ${token}` } : {}) },
      body: typeof body === 'string' ? body : JSON.stringify(body),
    })
  const request = {
    migrationId: 'app-chart',
    runId: 'app-chart__billing',
    stepName: 'edit',
    candidate: { id: 'billing' },
    callbackId: 'app-chart__billing',
    eventName: 'step-completed:edit',
  }

  it('refuses a dispatch or dry run without the bearer token, before running anything', async () => {
    let calls = 0
    const { worker } = setup([
      {
        name: 'edit',
        run: () => {
          calls++
        },
      },
    ])
    for (const token of [undefined, 'wrong']) {
      for (const path of ['/steps/dispatch', '/dry-run']) {
        const response = await post(worker, path, request, token)
        expect(response.status).toBe(401)
        expect(response.headers.get('www-authenticate')).toBe('Bearer realm="loom-worker"')
        expect(await response.json()).toEqual({
          code: 'unauthorized',
          error: token ? 'unauthorized: the bearer token is not valid' : 'unauthorized: an Authorization: Bearer token is required',
        })
      }
    }
    // A malformed header is refused like a missing one (hono's bearerAuth alone would answer 400), and the body is never read.
    for (const authorization of ['Basic d29ya2VyLXNlY3JldA==', `Bearer ${WORKER_TOKEN} extra`, 'Bearer']) {
      const response = await worker.app.request('/steps/dispatch', { method: 'POST', headers: { authorization }, body: '{not json' })
      expect(response.status).toBe(401)
      expect(response.headers.get('www-authenticate')).toBe('Bearer realm="loom-worker"')
      expect(await response.json()).toEqual({ code: 'unauthorized', error: 'unauthorized: an Authorization: Bearer token is required' })
    }
    expect(calls).toBe(0)
  })

  it('accepts the token however the scheme is cased, and a worker without a token accepts any dispatch', async () => {
    const { worker } = setup([{ name: 'edit', run: () => {} }])
    const accepted = await worker.app.request('/steps/dispatch', {
      method: 'POST',
      headers: { authorization: `bearer ${WORKER_TOKEN}`, 'content-type': 'application/json' },
      body: JSON.stringify(request),
    })
    expect(accepted.status).toBe(202)
    const open = setup([{ name: 'edit', run: () => {} }], { worker: { token: undefined } })
    expect(
      (await post(open.worker, '/steps/dispatch', { ...request, runId: 'app-chart__search', callbackId: 'app-chart__search' })).status,
    ).toBe(202)
  })

  it('answers 400 naming the field, 404 for an unknown migration or step, and 200 on /health', async () => {
    const { worker } = setup([
      { name: 'edit', run: () => {} },
      { name: 'review', config: { type: 'manual-review' } },
    ])
    const missing = await post(worker, '/steps/dispatch', { ...request, runId: undefined }, WORKER_TOKEN)
    expect(missing.status).toBe(400)
    expect(await missing.json()).toEqual({ code: 'invalid', error: expect.stringMatching(/^runId: /) })
    expect((await post(worker, '/steps/dispatch', '{not json', WORKER_TOKEN)).status).toBe(400)
    expect((await post(worker, '/steps/dispatch', { ...request, migrationId: 'other' }, WORKER_TOKEN)).status).toBe(404)
    expect((await post(worker, '/steps/dispatch', { ...request, stepName: 'nope' }, WORKER_TOKEN)).status).toBe(404)
    expect((await post(worker, '/steps/dispatch', { ...request, stepName: 'review' }, WORKER_TOKEN)).status).toBe(400)
    const dryRun = await post(worker, '/dry-run', { migrationId: 'other', candidate: { id: 'x' }, steps: [] }, WORKER_TOKEN)
    expect(dryRun.status).toBe(404)
    const health = await worker.app.request('/health')
    expect(await health.json()).toEqual({ status: 'ok', app: 'charts' })
  })
})
