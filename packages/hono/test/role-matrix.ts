/**
 * The role matrix: every route of Loom's HTTP API × every kind of caller → the status it
 * must answer. A table and a runner that speaks to the API through a `fetch` alone, so it
 * proves `loomApp` (role-matrix.test.ts) and anything that serves the API in front of it
 * (the console's `/api`) alike.
 *
 * The runner seeds what each row needs through the API itself: worker A announces `m-a`
 * (so A owns it) with a worker step and a manual-review step; the operator queues and
 * executes runs. Each cell gets state of its own (a fresh candidate, run or migration), so
 * the expectation of a cell never depends on the cells before it. Steps and dry runs go to a
 * stub worker this runner listens with on 127.0.0.1: the Loom behind `fetch` must be allowed
 * to call it (its default dispatcher and dry runner over HTTP, no allow-list that excludes it).
 */
import { createServer, type IncomingMessage, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import { eventually } from '@loom/core/testing'

/** Who calls: no token, a token nobody holds, worker A (owner of `m-a`), worker B, an operator. */
type Caller = 'none' | 'wrong' | 'workerA' | 'workerB' | 'operator'
const CALLERS: readonly Caller[] = ['none', 'wrong', 'workerA', 'workerB', 'operator']

export interface RoleMatrixOptions {
  /** Sends one request to the API and answers it (`app.request`, a server's `fetch`, the console's handler). */
  fetch: (request: Request) => Promise<Response>
  /** The bearer tokens of an operator, worker A and worker B. */
  tokens: { operator: string; workerA: string; workerB: string }
  /** Where the API is mounted: `/api` under the console. Default: the root. */
  prefix?: string
  /** The origin requests are addressed to. Default `http://loom.test`. */
  origin?: string
}

/** One cell: the route (as the OpenAPI document names it), what the row does, who called, and the statuses. */
export interface RoleMatrixCell {
  route: string
  row: string
  caller: Caller
  expected: number
  actual: number
}

export interface RoleMatrixResult {
  cells: RoleMatrixCell[]
  /** Operations of the served `/openapi.json` that no row covers (should be none). */
  uncovered: string[]
}

type Expected = Record<Caller, number>
type Call = { method: string; path: string; body?: unknown }

/** A route open to anyone. */
const open = (status: number): Expected => ({ none: status, wrong: status, workerA: status, workerB: status, operator: status })
/** An operator's route: workers are known but refused for their role. */
const operatorsOnly = (status: number): Expected => ({ none: 401, wrong: 401, workerA: 403, workerB: 403, operator: status })
/** A worker's route: worker A and worker B as given, operators always let through. */
const workers = (a: number, b: number, operator: number): Expected => ({ none: 401, wrong: 401, workerA: a, workerB: b, operator })

interface Row {
  /** Method and path as the OpenAPI document has them. */
  route: string
  /** What the row does, in a few words. */
  row: string
  expect: Expected
  /** The request of one cell, with the state it needs made first. */
  request: (seed: Seed, caller: Caller) => Promise<Call>
}

const M = 'm-a'
const REVIEW = 'review'
const UPDATE = 'update'

/** The table. Read a row as: "this request, made by each caller, answers this". */
const ROWS: Row[] = [
  { route: 'GET /health', row: 'health', expect: open(200), request: async () => ({ method: 'GET', path: '/health' }) },
  { route: 'GET /openapi.json', row: 'the document', expect: open(200), request: async () => ({ method: 'GET', path: '/openapi.json' }) },
  {
    route: 'GET /migrations',
    row: 'list migrations',
    expect: operatorsOnly(200),
    request: async () => ({ method: 'GET', path: '/migrations' }),
  },
  {
    route: 'POST /migrations',
    row: 'register a migration',
    expect: operatorsOnly(201),
    request: async () => ({ method: 'POST', path: '/migrations', body: registration() }),
  },
  {
    route: 'GET /migrations/{id}',
    row: 'read m-a',
    expect: operatorsOnly(200),
    request: async () => ({ method: 'GET', path: `/migrations/${M}` }),
  },
  {
    route: 'DELETE /migrations/{id}',
    row: 'delete a migration',
    expect: operatorsOnly(204),
    request: async (seed) => ({ method: 'DELETE', path: `/migrations/${await seed.registered()}` }),
  },
  {
    route: 'POST /registry/announce',
    row: 'announce m-a again',
    expect: workers(200, 403, 200),
    request: async (seed) => ({ method: 'POST', path: '/registry/announce', body: seed.announcementOfA() }),
  },
  {
    route: 'POST /registry/announce',
    row: 'announce a new migration',
    expect: workers(200, 200, 200),
    request: async (seed) => ({ method: 'POST', path: '/registry/announce', body: seed.announcement(seed.newId()) }),
  },
  {
    route: 'POST /migrations/{id}/candidates',
    row: 'submit m-a’s candidates',
    expect: workers(204, 403, 204),
    request: async (seed) => ({ method: 'POST', path: `/migrations/${M}/candidates`, body: { candidates: seed.candidatesOfA() } }),
  },
  {
    route: 'POST /migrations/{id}/candidates',
    row: 'submit to the caller’s own migration',
    expect: workers(204, 204, 204),
    request: async (seed, caller) => ({
      method: 'POST',
      path: `/migrations/${await seed.ownMigration(caller)}/candidates`,
      body: { candidates: [{ id: 'own-1' }] },
    }),
  },
  {
    route: 'PATCH /migrations/{id}/candidates',
    row: 'patch m-a’s candidates',
    expect: workers(204, 403, 204),
    request: async (seed) => ({
      method: 'PATCH',
      path: `/migrations/${M}/candidates`,
      body: { upsert: [{ id: `patched-${seed.newId()}` }], remove: ['not-a-candidate'] },
    }),
  },
  {
    route: 'PATCH /migrations/{id}/candidates',
    row: 'patch the caller’s own migration',
    expect: workers(204, 204, 204),
    request: async (seed, caller) => ({
      method: 'PATCH',
      path: `/migrations/${await seed.ownMigration(caller)}/candidates`,
      body: { upsert: [{ id: 'own-1' }], remove: ['own-0'] },
    }),
  },
  {
    route: 'POST /migrations/{id}/discoveries',
    row: 'open a discovery of m-a',
    expect: workers(201, 403, 201),
    request: async () => ({ method: 'POST', path: `/migrations/${M}/discoveries` }),
  },
  {
    route: 'POST /migrations/{id}/discoveries/{discoveryId}/candidates',
    row: 'add a part to a discovery of m-a',
    expect: workers(204, 403, 204),
    request: async (seed) => ({
      method: 'POST',
      path: `/migrations/${M}/discoveries/${await seed.discoveryOf(M, [])}/candidates`,
      body: { candidates: [{ id: 'found-0' }] },
    }),
  },
  {
    route: 'POST /migrations/{id}/discoveries/{discoveryId}/commit',
    row: 'commit m-a’s own list again through a discovery',
    expect: workers(204, 403, 204),
    request: async (seed) => ({
      method: 'POST',
      path: `/migrations/${M}/discoveries/${await seed.discoveryOf(M, seed.candidatesOfA())}/commit`,
    }),
  },
  {
    route: 'POST /migrations/{id}/discoveries/{discoveryId}/commit',
    row: 'commit a discovery of the caller’s own migration',
    expect: workers(204, 204, 204),
    request: async (seed, caller) => {
      const id = await seed.ownMigration(caller)
      return { method: 'POST', path: `/migrations/${id}/discoveries/${await seed.discoveryOf(id, [{ id: 'own-1' }])}/commit` }
    },
  },
  {
    route: 'GET /migrations/{id}/candidates',
    row: 'list m-a’s candidates',
    expect: operatorsOnly(200),
    request: async () => ({ method: 'GET', path: `/migrations/${M}/candidates` }),
  },
  {
    route: 'GET /migrations/{id}/candidates/{candidateId}',
    row: 'read a candidate',
    expect: operatorsOnly(200),
    request: async (seed) => ({ method: 'GET', path: `/migrations/${M}/candidates/${seed.fresh()}` }),
  },
  {
    route: 'GET /migrations/{id}/activity',
    row: 'read m-a’s activity log',
    expect: operatorsOnly(200),
    request: async () => ({ method: 'GET', path: `/migrations/${M}/activity?limit=10` }),
  },
  {
    route: 'POST /migrations/{id}/queue',
    row: 'queue a candidate',
    expect: operatorsOnly(202),
    request: async (seed) => ({ method: 'POST', path: `/migrations/${M}/queue`, body: { candidateId: seed.fresh() } }),
  },
  {
    route: 'POST /migrations/{id}/dry-run',
    row: 'dry-run a candidate',
    expect: operatorsOnly(200),
    request: async (seed) => ({ method: 'POST', path: `/migrations/${M}/dry-run`, body: { candidateId: seed.fresh() } }),
  },
  {
    route: 'GET /runs/{runId}',
    row: 'read a queued run',
    expect: operatorsOnly(200),
    request: async (seed) => ({ method: 'GET', path: `/runs/${await seed.queued()}` }),
  },
  {
    route: 'GET /runs/{runId}/history',
    row: 'read a queued run’s history',
    expect: operatorsOnly(200),
    request: async (seed) => ({ method: 'GET', path: `/runs/${await seed.queued()}/history` }),
  },
  {
    route: 'DELETE /runs/{runId}/dequeue',
    row: 'dequeue',
    expect: operatorsOnly(204),
    request: async (seed) => ({ method: 'DELETE', path: `/runs/${await seed.queued()}/dequeue` }),
  },
  {
    route: 'POST /runs/{runId}/execute',
    row: 'execute',
    expect: operatorsOnly(202),
    request: async (seed) => ({ method: 'POST', path: `/runs/${await seed.queued()}/execute` }),
  },
  {
    route: 'POST /runs/{runId}/cancel',
    row: 'cancel a running run',
    expect: operatorsOnly(204),
    request: async (seed) => ({ method: 'POST', path: `/runs/${await seed.running()}/cancel` }),
  },
  {
    route: 'POST /runs/{runId}/cancel',
    row: 'cancel a queued run with a reason',
    expect: operatorsOnly(204),
    request: async (seed) => ({ method: 'POST', path: `/runs/${await seed.queued()}/cancel`, body: { reason: 'wrong chart version' } }),
  },
  {
    route: 'POST /event/{runId}',
    row: 'report m-a’s worker step',
    expect: workers(202, 403, 202),
    request: async (seed) => {
      const { runId, candidateId } = await seed.runningOf(M)
      return { method: 'POST', path: `/event/${runId}`, body: { stepName: UPDATE, candidate: { id: candidateId }, success: true } }
    },
  },
  {
    route: 'POST /event/{runId}',
    row: 'report a step of the caller’s own migration',
    expect: workers(202, 202, 202),
    request: async (seed, caller) => {
      const { runId, candidateId } = await seed.runningOf(await seed.ownMigration(caller))
      return { method: 'POST', path: `/event/${runId}`, body: { stepName: UPDATE, candidate: { id: candidateId }, success: true } }
    },
  },
  {
    route: 'POST /event/{runId}',
    row: 'approve m-a’s manual review',
    expect: workers(403, 403, 202),
    request: async (seed) => {
      const { runId, candidateId } = await seed.atReview()
      return { method: 'POST', path: `/event/${runId}`, body: { stepName: REVIEW, candidate: { id: candidateId }, success: true } }
    },
  },
  {
    route: 'POST /event/{runId}/pr-opened',
    row: 'report a pull request on m-a',
    expect: workers(202, 403, 202),
    request: async (seed) => {
      const { runId, candidateId } = await seed.runningOf(M)
      return {
        method: 'POST',
        path: `/event/${runId}/pr-opened`,
        body: { stepName: UPDATE, candidate: { id: candidateId }, success: true, metadata: { prUrl: 'https://git.example/pr/1' } },
      }
    },
  },
  {
    route: 'GET /status/{runId}',
    row: 'read an executed run’s status',
    expect: operatorsOnly(200),
    request: async (seed) => ({ method: 'GET', path: `/status/${await seed.running()}` }),
  },
  { route: 'GET /events', row: 'stream events', expect: operatorsOnly(200), request: async () => ({ method: 'GET', path: '/events' }) },
]

/**
 * Runs every cell of the table against the API behind `options.fetch` and answers what each
 * got, with the operations of its `/openapi.json` that no row covers. It asserts nothing
 * itself: the caller compares `actual` with `expected` (a table diff reads best).
 *
 * @example
 * const { cells, uncovered } = await runRoleMatrix({ fetch: (r) => app.fetch(r), tokens })
 * expect(cells.map(line)).toEqual(cells.map((c) => line({ ...c, actual: c.expected })))
 */
export async function runRoleMatrix(options: RoleMatrixOptions): Promise<RoleMatrixResult> {
  const worker = await stubWorker()
  try {
    const seed = await seeded(options, worker)
    const cells: RoleMatrixCell[] = []
    for (const row of ROWS) {
      for (const caller of CALLERS) {
        const call = await row.request(seed, caller)
        const response = await seed.send(caller, call)
        await response.body?.cancel()
        cells.push({ route: row.route, row: row.row, caller, expected: row.expect[caller], actual: response.status })
      }
    }
    const document = (await (await seed.send('none', { method: 'GET', path: '/openapi.json' })).json()) as {
      paths: Record<string, Record<string, unknown>>
    }
    const covered = new Set(ROWS.map((r) => r.route))
    const uncovered = Object.entries(document.paths)
      .flatMap(([path, item]) => Object.keys(item).map((method) => `${method.toUpperCase()} ${path}`))
      .filter((route) => !covered.has(route))
    return { cells, uncovered }
  } finally {
    await worker.close()
  }
}

/** One cell as a line of the table: `POST /event/{runId} — approve m-a’s manual review — workerA → 403`. */
export function cellLine(cell: Pick<RoleMatrixCell, 'route' | 'row' | 'caller'>, status: number): string {
  return `${cell.route} — ${cell.row} — ${cell.caller} → ${status}`
}

type Seed = Awaited<ReturnType<typeof seeded>>

/** Worker A's `m-a`, and the makers of the state each cell needs, all through the API. */
async function seeded(options: RoleMatrixOptions, worker: StubWorker) {
  const origin = options.origin ?? 'http://loom.test'
  const prefix = (options.prefix ?? '').replace(/\/+$/, '')
  const tokenOf: Record<Caller, string | undefined> = {
    none: undefined,
    wrong: `not-a-token-${crypto.randomUUID()}`,
    workerA: options.tokens.workerA,
    workerB: options.tokens.workerB,
    operator: options.tokens.operator,
  }
  const run = `${crypto.randomUUID().slice(0, 8)}`
  let counter = 0

  const send = (caller: Caller, { method, path, body }: Call): Promise<Response> => {
    const headers = new Headers()
    const token = tokenOf[caller]
    if (token) headers.set('authorization', `Bearer ${token}`)
    if (body !== undefined) headers.set('content-type', 'application/json')
    return options.fetch(
      new Request(`${origin}${prefix}${path}`, { method, headers, ...(body === undefined ? {} : { body: JSON.stringify(body) }) }),
    )
  }
  /** A request the seed needs answered with `status`; anything else is a broken setup, said as such. */
  const must = async (caller: Caller, call: Call, status: number): Promise<any> => {
    const response = await send(caller, call)
    const text = await response.text()
    if (response.status !== status) {
      throw new Error(`role matrix setup: ${call.method} ${call.path} as ${caller} answered ${response.status}, not ${status}: ${text}`)
    }
    return text ? JSON.parse(text) : undefined
  }

  const candidates = Array.from({ length: 80 }, (_, i) => ({ id: `c-${String(i).padStart(2, '0')}` }))
  const announcement = (id: string) => ({
    id,
    name: `Migration ${id}`,
    workerUrl: worker.url,
    steps: [
      { name: UPDATE, workerApp: 'charts' },
      { name: REVIEW, workerApp: 'charts', config: { type: 'manual-review', instructions: 'Check the pull request' } },
    ],
  })
  await must('workerA', { method: 'POST', path: '/registry/announce', body: { ...announcement(M), candidates } }, 200)

  let next = 0
  const fresh = (): string => {
    const candidate = candidates[next++]
    if (!candidate) throw new Error('role matrix setup: out of fresh candidates; raise their number')
    return candidate.id
  }
  const newId = () => `m-${run}-${++counter}`
  /** A migration of `caller`'s own (announced by that worker; by the operator for callers who cannot). */
  const ownMigration = async (caller: Caller): Promise<string> => {
    const id = newId()
    const by: Caller = caller === 'workerA' || caller === 'workerB' ? caller : 'operator'
    await must(by, { method: 'POST', path: '/registry/announce', body: { ...announcement(id), candidates: [{ id: 'own-0' }] } }, 200)
    return id
  }
  const queuedOf = async (migrationId: string, candidateId: string): Promise<string> =>
    (await must('operator', { method: 'POST', path: `/migrations/${migrationId}/queue`, body: { candidateId } }, 202)).runId
  /** A run of `migrationId` whose worker step has been dispatched, so a report on it is due. */
  const runningOf = async (migrationId: string): Promise<{ runId: string; candidateId: string }> => {
    const candidateId = migrationId === M ? fresh() : 'own-0'
    const runId = await queuedOf(migrationId, candidateId)
    await must('operator', { method: 'POST', path: `/runs/${runId}/execute` }, 202)
    await eventually(() => {
      if (!worker.dispatched.some((d) => d.runId === runId && d.stepName === UPDATE)) throw new Error(`${runId}: not dispatched yet`)
    })
    return { runId, candidateId }
  }

  /** A discovery of `migrationId` opened by the operator, holding `staged` (m-a's own list keeps m-a as it is when committed). */
  const discoveryOf = async (migrationId: string, staged: { id: string }[]): Promise<string> => {
    const { discoveryId } = await must('operator', { method: 'POST', path: `/migrations/${migrationId}/discoveries` }, 201)
    const part = { method: 'POST', path: `/migrations/${migrationId}/discoveries/${discoveryId}/candidates`, body: { candidates: staged } }
    await must('operator', part, 204)
    return discoveryId as string
  }

  return {
    send,
    fresh,
    discoveryOf,
    newId,
    ownMigration,
    runningOf,
    announcement,
    announcementOfA: () => announcement(M),
    candidatesOfA: () => candidates,
    async registered(): Promise<string> {
      return (await must('operator', { method: 'POST', path: '/migrations', body: registration() }, 201)).id
    },
    queued: () => queuedOf(M, fresh()),
    running: async () => (await runningOf(M)).runId,
    /** A run of `m-a` waiting at its manual review: worker A reported the worker step. */
    async atReview(): Promise<{ runId: string; candidateId: string }> {
      const { runId, candidateId } = await runningOf(M)
      const report = { stepName: UPDATE, candidate: { id: candidateId }, success: true }
      await must('workerA', { method: 'POST', path: `/event/${runId}`, body: report }, 202)
      await eventually(async () => {
        const info = await must('operator', { method: 'GET', path: `/runs/${runId}` }, 200)
        if (!info.steps?.some((s: { stepName: string }) => s.stepName === REVIEW)) throw new Error(`${runId}: not at the review yet`)
      })
      return { runId, candidateId }
    },
  }
}

function registration() {
  return { name: 'Registered by the matrix', candidates: [{ id: 'r-0' }], steps: [{ name: UPDATE, workerApp: 'charts' }] }
}

interface StubWorker {
  url: string
  dispatched: Array<{ runId: string; stepName: string }>
  close(): Promise<void>
}

/** A worker on 127.0.0.1 that accepts every dispatch (and reports nothing) and answers every dry run with no changes. */
async function stubWorker(): Promise<StubWorker> {
  const dispatched: StubWorker['dispatched'] = []
  const server: Server = createServer(async (request, response) => {
    const body = JSON.parse((await textOf(request)) || '{}')
    if (request.url?.endsWith('/steps/dispatch')) {
      dispatched.push({ runId: body.runId, stepName: body.stepName })
      response.writeHead(202).end()
    } else if (request.url?.endsWith('/dry-run')) {
      const steps = (body.steps ?? []).map((s: { name: string }) => ({ stepName: s.name, skipped: false, files: [] }))
      response.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ steps }))
    } else response.writeHead(404).end()
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const { port } = server.address() as AddressInfo
  return {
    url: `http://127.0.0.1:${port}/worker`,
    dispatched,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve())
        server.closeAllConnections()
      }),
  }
}

async function textOf(request: IncomingMessage): Promise<string> {
  const chunks: Buffer[] = []
  for await (const chunk of request) chunks.push(chunk as Buffer)
  return Buffer.concat(chunks).toString('utf8')
}
