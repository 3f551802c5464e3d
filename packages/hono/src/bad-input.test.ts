import { describe, expect, it } from 'vitest'
import { M, announcement, candidates, setup } from '../test/helpers'

/**
 * Bad input of every kind gets the contract's error, and a rejected request changes
 * nothing: the whole state (migrations, candidates, runs, cancelled attempts) is compared
 * before and after each one.
 */
const RUN = `${M}__svc-0`
const LONG = 'x'.repeat(201)
const DISCOVERY = '00000000-0000-4000-8000-000000000000'
const step = { stepName: 'update-chart', candidate: { id: 'svc-0' }, success: true }

interface Case {
  name: string
  method: string
  path: string
  body?: unknown
  headers?: Record<string, string>
  status: number
  code: string
  field?: string
  /** Text the message must contain after the field. */
  says?: string
}

/** An announcement of two steps whose step `index` has `config.timeout` of `timeout`. */
const withTimeout = (timeout: string, index: number) => {
  const a = announcement('other', { steps: ['update-chart', 'open-pr'] })
  return { ...a, steps: a.steps.map((s, i) => (i === index ? { ...s, config: { ...s.config, timeout } } : s)) }
}

const cases: Case[] = [
  // Malformed JSON, on every route that takes a body.
  ...[
    '/registry/announce',
    '/migrations',
    `/migrations/${M}/candidates`,
    `/migrations/${M}/queue`,
    `/migrations/${M}/dry-run`,
    `/event/${RUN}`,
    `/event/${RUN}/pr-opened`,
    `/runs/${RUN}/execute`,
  ].map(
    (path): Case => ({
      name: `malformed JSON to ${path}`,
      method: 'POST',
      path,
      body: '{"id": "x",',
      status: 400,
      code: 'invalid',
      field: 'body',
    }),
  ),
  { name: 'an empty JSON body', method: 'POST', path: `/migrations/${M}/queue`, body: '', status: 400, code: 'invalid', field: 'body' },
  {
    name: 'a body that is not JSON at all',
    method: 'POST',
    path: '/registry/announce',
    body: 'id=x',
    headers: { 'content-type': 'application/x-www-form-urlencoded' },
    status: 400,
    code: 'invalid',
    field: 'body',
  },
  {
    name: 'JSON that is not an object',
    method: 'POST',
    path: `/migrations/${M}/candidates`,
    body: '"svc-0"',
    status: 400,
    code: 'invalid',
    field: 'body',
  },
  { name: 'JSON null', method: 'POST', path: `/event/${RUN}`, body: 'null', status: 400, code: 'invalid', field: 'body' },

  // The optional body of execute: judged whenever it is not empty; the run stays queued.
  ...(['null', '[true]', '"resume"', 'true'] as const).map(
    (body): Case => ({
      name: `execute with ${body}`,
      method: 'POST',
      path: `/runs/${RUN}/execute`,
      body,
      status: 400,
      code: 'invalid',
      field: 'body',
    }),
  ),
  ...(['yes', 1, null, {}] as const).map(
    (resume): Case => ({
      name: `execute with resume ${JSON.stringify(resume)}`,
      method: 'POST',
      path: `/runs/${RUN}/execute`,
      body: { resume },
      status: 400,
      code: 'invalid',
      field: 'resume',
      says: 'must be a boolean',
    }),
  ),
  {
    name: 'execute with resume=true as a form',
    method: 'POST',
    path: `/runs/${RUN}/execute`,
    body: 'resume=true',
    headers: { 'content-type': 'application/x-www-form-urlencoded' },
    status: 400,
    code: 'invalid',
    field: 'body',
  },

  // Step deadlines that are no duration, or too long, on announce and register, naming the step.
  ...(['soon', '0s', '1.5h', '99999h'] as const).flatMap((timeout): Case[] => [
    {
      name: `an announced step with timeout "${timeout}"`,
      method: 'POST',
      path: '/registry/announce',
      body: withTimeout(timeout, 1),
      status: 400,
      code: 'invalid',
      field: 'steps.1.config.timeout',
      says: `step "open-pr": "${timeout}"`,
    },
    {
      name: `a registered step with timeout "${timeout}"`,
      method: 'POST',
      path: '/migrations',
      body: { name: 'Other', candidates: [], steps: withTimeout(timeout, 0).steps },
      status: 400,
      code: 'invalid',
      field: 'steps.0.config.timeout',
      says: `step "update-chart": "${timeout}"`,
    },
  ]),

  // Wrong types.
  {
    name: 'a number for a name',
    method: 'POST',
    path: '/registry/announce',
    body: { ...announcement('other'), name: 5 },
    status: 400,
    code: 'invalid',
    field: 'name',
  },
  {
    name: 'a string for the candidate list',
    method: 'POST',
    path: `/migrations/${M}/candidates`,
    body: { candidates: 'svc-9' },
    status: 400,
    code: 'invalid',
    field: 'candidates',
  },
  {
    name: 'a number in metadata',
    method: 'POST',
    path: `/migrations/${M}/candidates`,
    body: { candidates: [{ id: 'svc-9', metadata: { team: 3 } }] },
    status: 400,
    code: 'invalid',
    field: 'candidates.0.metadata.team',
  },
  {
    name: 'a string for success',
    method: 'POST',
    path: `/event/${RUN}`,
    body: { ...step, success: 'yes' },
    status: 400,
    code: 'invalid',
    field: 'success',
  },
  {
    name: 'a number for candidateId',
    method: 'POST',
    path: `/migrations/${M}/queue`,
    body: { candidateId: 7 },
    status: 400,
    code: 'invalid',
    field: 'body',
  },
  {
    name: 'a workerUrl that is no URL',
    method: 'POST',
    path: '/registry/announce',
    body: { ...announcement('other'), workerUrl: 'not a url' },
    status: 400,
    code: 'invalid',
    field: 'workerUrl',
  },

  // Missing fields.
  {
    name: 'an announcement without steps',
    method: 'POST',
    path: '/registry/announce',
    body: { id: 'other', name: 'Other' },
    status: 400,
    code: 'invalid',
    field: 'steps',
  },
  {
    name: 'an announcement without id',
    method: 'POST',
    path: '/registry/announce',
    body: { name: 'Other', steps: [{ name: 's', workerApp: 'w' }] },
    status: 400,
    code: 'invalid',
    field: 'id',
  },
  {
    name: 'a registration without name',
    method: 'POST',
    path: '/migrations',
    body: { candidates: [], steps: [{ name: 's', workerApp: 'w' }] },
    status: 400,
    code: 'invalid',
    field: 'name',
  },
  {
    name: 'a submission without candidates',
    method: 'POST',
    path: `/migrations/${M}/candidates`,
    body: {},
    status: 400,
    code: 'invalid',
    field: 'candidates',
  },
  {
    name: 'a step event without stepName',
    method: 'POST',
    path: `/event/${RUN}`,
    body: { candidate: { id: 'svc-0' }, success: true },
    status: 400,
    code: 'invalid',
    field: 'stepName',
  },
  {
    name: 'a step event without candidate',
    method: 'POST',
    path: `/event/${RUN}/pr-opened`,
    body: { stepName: 'update-chart', success: true },
    status: 400,
    code: 'invalid',
    field: 'candidate',
  },

  // Ids: empty, too long, with "__" or "/", with a leading "_".
  {
    name: 'an empty migration id',
    method: 'POST',
    path: '/registry/announce',
    body: announcement(''),
    status: 400,
    code: 'invalid',
    field: 'id',
  },
  {
    name: 'an empty candidate id',
    method: 'POST',
    path: `/migrations/${M}/candidates`,
    body: { candidates: [{ id: '' }] },
    status: 400,
    code: 'invalid',
    field: 'candidates.0.id',
  },
  {
    name: 'an empty candidateId',
    method: 'POST',
    path: `/migrations/${M}/queue`,
    body: { candidateId: '' },
    status: 400,
    code: 'invalid',
    field: 'candidateId',
  },
  {
    name: 'an empty migration id in the path (no route)',
    method: 'POST',
    path: '/migrations//queue',
    body: { candidateId: 'svc-1' },
    status: 404,
    code: 'not_found',
  },
  {
    name: 'a migration id of 201 characters',
    method: 'POST',
    path: '/registry/announce',
    body: announcement(LONG),
    status: 400,
    code: 'invalid',
    field: 'id',
  },
  {
    name: 'a candidate id of 201 characters',
    method: 'POST',
    path: `/migrations/${M}/candidates`,
    body: { candidates: [{ id: LONG }] },
    status: 400,
    code: 'invalid',
    field: 'candidates.0.id',
  },
  {
    name: 'a path id of 201 characters',
    method: 'POST',
    path: `/migrations/${LONG}/queue`,
    body: { candidateId: 'svc-1' },
    status: 400,
    code: 'invalid',
    field: 'migrationId',
  },
  {
    name: 'a migration id with __',
    method: 'POST',
    path: '/registry/announce',
    body: announcement('a__b'),
    status: 400,
    code: 'invalid',
    field: 'id',
  },
  {
    name: 'a path id with __',
    method: 'POST',
    path: '/migrations/app__chart/candidates',
    body: { candidates: [] },
    status: 400,
    code: 'invalid',
    field: 'migrationId',
  },
  {
    name: 'a candidateId with __',
    method: 'POST',
    path: `/migrations/${M}/dry-run`,
    body: { candidateId: 'svc__1' },
    status: 400,
    code: 'invalid',
    field: 'candidateId',
  },
  {
    name: 'a migration id with /',
    method: 'POST',
    path: '/registry/announce',
    body: announcement('a/b'),
    status: 400,
    code: 'invalid',
    field: 'id',
  },
  {
    name: 'a candidate id with /',
    method: 'POST',
    path: `/migrations/${M}/candidates`,
    body: { candidates: [{ id: 'svc/1' }] },
    status: 400,
    code: 'invalid',
    field: 'candidates.0.id',
  },
  {
    name: 'a path id with an encoded /',
    method: 'DELETE',
    path: '/migrations/app%2Fchart',
    status: 400,
    code: 'invalid',
    field: 'migrationId',
  },
  {
    name: 'a candidate id starting with _',
    method: 'POST',
    path: `/migrations/${M}/queue`,
    body: { candidate: { id: '_svc' } },
    status: 400,
    code: 'invalid',
    field: 'candidate.id',
  },
  {
    name: 'duplicate candidate ids',
    method: 'POST',
    path: `/migrations/${M}/candidates`,
    body: { candidates: [{ id: 'a' }, { id: 'a' }] },
    status: 400,
    code: 'invalid',
    field: 'candidates',
  },

  // Run ids that do not parse name no run: 404.
  ...[
    ['DELETE', '/runs/no-separator/dequeue'],
    ['POST', `/runs/${M}__/execute`],
    ['POST', '/runs/__svc-0/cancel'],
    ['GET', `/runs/${M}__svc__0`],
    ['GET', `/status/${LONG}__svc-0`],
  ].map(
    ([method, path]): Case => ({
      name: `run id in ${method} ${path!.slice(0, 40)}`,
      method: method!,
      path: path!,
      status: 404,
      code: 'not_found',
    }),
  ),
  {
    name: 'a step event for a run id that does not parse',
    method: 'POST',
    path: '/event/garbage',
    body: step,
    status: 404,
    code: 'not_found',
  },

  // Patches and discoveries.
  ...[
    { method: 'PATCH', path: `/migrations/${M}/candidates` },
    { method: 'POST', path: `/migrations/${M}/discoveries/${DISCOVERY}/candidates` },
  ].map(
    ({ method, path }): Case => ({
      name: `malformed JSON to ${method} ${path}`,
      method,
      path,
      body: '{"upsert": [',
      status: 400,
      code: 'invalid',
      field: 'body',
    }),
  ),
  {
    name: 'a patch naming a candidate both upserted and removed',
    method: 'PATCH',
    path: `/migrations/${M}/candidates`,
    body: { upsert: [{ id: 'svc-1', kind: 'x' }], remove: ['svc-1'] },
    status: 400,
    code: 'invalid',
    field: 'remove',
    says: 'svc-1 is both upserted and removed',
  },
  {
    name: 'a patch upserting a bad id',
    method: 'PATCH',
    path: `/migrations/${M}/candidates`,
    body: { upsert: [{ id: 'a__b' }] },
    status: 400,
    code: 'invalid',
    field: 'upsert.0.id',
  },
  {
    name: 'a patch whose remove is not a list',
    method: 'PATCH',
    path: `/migrations/${M}/candidates`,
    body: { remove: 'svc-1' },
    status: 400,
    code: 'invalid',
    field: 'remove',
  },
  {
    name: 'a patch of an unknown migration',
    method: 'PATCH',
    path: '/migrations/ghost/candidates',
    body: { remove: ['svc-1'] },
    status: 404,
    code: 'not_found',
  },
  { name: 'a discovery of an unknown migration', method: 'POST', path: '/migrations/ghost/discoveries', status: 404, code: 'not_found' },
  {
    name: 'a part with a bad candidate',
    method: 'POST',
    path: `/migrations/${M}/discoveries/${DISCOVERY}/candidates`,
    body: { candidates: [{ id: 'ok' }, { id: 'a__b' }] },
    status: 400,
    code: 'invalid',
    field: 'candidates.1.id',
  },
  {
    name: 'a part to a discovery never opened',
    method: 'POST',
    path: `/migrations/${M}/discoveries/${DISCOVERY}/candidates`,
    body: { candidates: [{ id: 'svc-9' }] },
    status: 404,
    code: 'not_found',
  },
  {
    name: 'the commit of a discovery never opened',
    method: 'POST',
    path: `/migrations/${M}/discoveries/${DISCOVERY}/commit`,
    status: 404,
    code: 'not_found',
  },
  {
    name: 'the commit of a discovery id that breaks the id rules',
    method: 'POST',
    path: `/migrations/${M}/discoveries/a__b/commit`,
    status: 400,
    code: 'invalid',
    field: 'discoveryId',
  },

  // Wrong methods on known paths.
  {
    name: 'PUT on /registry/announce',
    method: 'PUT',
    path: '/registry/announce',
    body: announcement('other'),
    status: 405,
    code: 'invalid',
  },
  { name: 'PATCH on a migration', method: 'PATCH', path: `/migrations/${M}`, body: { name: 'x' }, status: 405, code: 'invalid' },
  { name: 'DELETE on the candidates', method: 'DELETE', path: `/migrations/${M}/candidates`, status: 405, code: 'invalid' },
  { name: 'GET on a step event', method: 'GET', path: `/event/${RUN}`, status: 405, code: 'invalid' },
  { name: 'POST on a queue of a run', method: 'POST', path: `/runs/${RUN}/dequeue`, status: 405, code: 'invalid' },
  { name: 'POST on /health', method: 'POST', path: '/health', body: {}, status: 405, code: 'invalid' },
]

describe('bad input changes nothing', () => {
  it.each(cases)('$name → $status $code', async (c) => {
    const t = await setup()
    try {
      await t.loom.announce(announcement(M, { steps: ['update-chart'], candidates: candidates(2) }))
      await t.loom.queue(M, 'svc-0')
      const before = await t.snapshot()
      const res = await t.call(c.method, c.path, c.body, c.headers)
      expect(res.status).toBe(c.status)
      expect(res.json?.code).toBe(c.code)
      expect(typeof res.json?.error).toBe('string')
      if (c.field) {
        expect(res.json.field).toBe(c.field)
        expect(res.json.error.startsWith(`${c.field}: `)).toBe(true)
      }
      if (c.says) expect(res.json.error.slice(`${c.field}: `.length)).toContain(c.says)
      expect(await t.snapshot()).toEqual(before)
      expect(t.worker.dispatched).toEqual([])
    } finally {
      await t.close()
    }
  })
})

/**
 * Each required field of each body removed in turn, from a body the route would take. The
 * lists are written out from the schemas in core, not read off them: a field made optional
 * there must fail here.
 */
describe('a body without a required field is refused naming it, and nothing changes', () => {
  const candidate = {
    id: 'svc-9',
    kind: 'application',
    files: [{ name: 'values', repo: 'acme/gitops', files: [{ path: 'apps/svc-9/values.yaml', url: 'https://git/values.yaml' }] }],
  }
  const candidateFields = (at: string) => [
    `${at}.id`,
    `${at}.files.0.name`,
    `${at}.files.0.repo`,
    `${at}.files.0.files`,
    `${at}.files.0.files.0.path`,
    `${at}.files.0.files.0.url`,
  ]
  const steps = [{ name: 'update-chart', workerApp: 'charts', config: { chart: 'app' } }]
  const stepFields = ['steps.0.name', 'steps.0.workerApp']
  const routes = [
    {
      path: '/registry/announce',
      body: { id: 'other', name: 'Other', candidates: [candidate], steps },
      required: ['id', 'name', 'steps', ...stepFields, ...candidateFields('candidates.0')],
    },
    {
      path: '/migrations',
      body: { name: 'Other', candidates: [candidate], steps },
      required: ['name', 'candidates', 'steps', ...stepFields, ...candidateFields('candidates.0')],
    },
    {
      path: `/migrations/${M}/candidates`,
      body: { candidates: [candidate] },
      required: ['candidates', ...candidateFields('candidates.0')],
    },
    ...[`/event/${RUN}`, `/event/${RUN}/pr-opened`].map((path) => ({
      path,
      body: { ...step, candidate },
      required: ['stepName', 'candidate', 'success', ...candidateFields('candidate')],
    })),
  ]

  /** `body` without the key at the dotted `path` (`steps.0.workerApp`). */
  const without = (body: unknown, path: string): unknown => {
    const copy = structuredClone(body)
    const keys = path.split('.')
    const last = keys.pop()!
    let parent: any = copy
    for (const key of keys) parent = parent[key]
    expect(parent, `${path} must be in the valid body`).toHaveProperty(last)
    delete parent[last]
    return copy
  }

  const missing = routes.flatMap(({ path, body, required }) => required.map((field) => [path, field, without(body, field)] as const))

  it.each(missing)('POST %s without %s → 400 naming it as required', async (path, field, body) => {
    const t = await setup()
    try {
      await t.loom.announce(announcement(M, { steps: ['update-chart'], candidates: candidates(2) }))
      await t.loom.queue(M, 'svc-0')
      const before = await t.snapshot()
      const res = await t.call('POST', path, body)
      expect(res.status).toBe(400)
      expect(res.json).toEqual({ error: `${field}: is required`, code: 'invalid', field })
      expect(await t.snapshot()).toEqual(before)
      expect(t.worker.dispatched).toEqual([])
    } finally {
      await t.close()
    }
  })

  it.each([
    ['/registry/announce', { id: 'other', name: 'Other', candidates: [candidate], steps }],
    ['/migrations', { name: 'Other', candidates: [candidate], steps }],
  ])('POST %s without steps.0.workerApp registers nothing in an empty Loom', async (path, body) => {
    const t = await setup()
    try {
      const res = await t.call('POST', path, without(body, 'steps.0.workerApp'))
      expect(res.status).toBe(400)
      expect(res.json).toEqual({ error: 'steps.0.workerApp: is required', code: 'invalid', field: 'steps.0.workerApp' })
      expect(await t.loom.listMigrations()).toEqual([])
      // The same body with the field is registered: the refusal was of the field alone.
      expect((await t.call('POST', path, body)).status).toBe(path === '/migrations' ? 201 : 200)
      expect(await t.loom.listMigrations()).toHaveLength(1)
    } finally {
      await t.close()
    }
  })

  it.each([`/migrations/${M}/queue`, `/migrations/${M}/dry-run`])(
    'POST %s without candidateId or candidate.id → 400 saying the body must have one',
    async (path) => {
      const t = await setup()
      try {
        await t.loom.announce(announcement(M, { steps: ['update-chart'], candidates: candidates(2) }))
        const before = await t.snapshot()
        for (const body of [{}, { candidate: {} }]) {
          const res = await t.call('POST', path, body)
          expect(res.status).toBe(400)
          expect(res.json).toEqual({ error: 'body: must have candidateId or candidate.id', code: 'invalid', field: 'body' })
        }
        expect(await t.snapshot()).toEqual(before)
        expect(t.worker.dispatched).toEqual([])
        expect(t.worker.dryRuns).toEqual([])
      } finally {
        await t.close()
      }
    },
  )
})

describe('a JSON body of another media type', () => {
  it('is refused for its type, so a cross-site form (text/plain, no preflight) cannot call the API; nothing changes', async () => {
    const t = await setup()
    for (const type of ['text/plain', 'application/x-www-form-urlencoded', 'multipart/form-data; boundary=x']) {
      const res = await t.app.request('/registry/announce', {
        method: 'POST',
        headers: { 'content-type': type },
        body: JSON.stringify(announcement(M, { candidates: candidates(1) })),
      })
      expect(res.status, type).toBe(400)
      expect(await res.json(), type).toEqual({ error: 'body: Content-Type must be application/json', code: 'invalid', field: 'body' })
    }
    expect(await t.loom.listMigrations()).toEqual([])
    await t.close()
  })
})

describe('oversized bodies', () => {
  const big = { candidates: candidates(100) }

  it('413 too_large with a Content-Length over the limit, and nothing changes', async () => {
    const t = await setup({ maxBodyBytes: 2048 })
    await t.loom.announce(announcement(M, { candidates: candidates(2) }))
    const before = await t.snapshot()
    const res = await t.call('POST', `/migrations/${M}/candidates`, big)
    expect(res.status).toBe(413)
    expect(res.json).toEqual({ error: 'body: larger than the limit of 2048 bytes', code: 'too_large', field: 'body' })
    expect(await t.snapshot()).toEqual(before)
    await t.close()
  })

  it('413 too_large for a streamed body without Content-Length', async () => {
    const t = await setup({ maxBodyBytes: 2048 })
    await t.loom.announce(announcement(M, { candidates: candidates(2) }))
    const before = await t.snapshot()
    const bytes = new TextEncoder().encode(JSON.stringify(big))
    const body = new ReadableStream<Uint8Array>({
      start(controller) {
        for (let i = 0; i < bytes.length; i += 512) controller.enqueue(bytes.slice(i, i + 512))
        controller.close()
      },
    })
    const request = new Request(`http://loom.test/migrations/${M}/candidates`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body,
      duplex: 'half',
    } as RequestInit)
    expect(request.headers.get('content-length')).toBeNull()
    const res = await t.app.request(request)
    expect(res.status).toBe(413)
    expect((await res.json()).code).toBe('too_large')
    expect(await t.snapshot()).toEqual(before)
    await t.close()
  })

  it('accepts a body just under the limit', async () => {
    const t = await setup({ maxBodyBytes: 2048 })
    await t.loom.announce(announcement(M))
    const body = { candidates: [{ id: 'svc-0', metadata: { note: 'n'.repeat(1900) } }] }
    expect(JSON.stringify(body).length).toBeLessThan(2048)
    expect((await t.call('POST', `/migrations/${M}/candidates`, body)).status).toBe(204)
    await t.close()
  })
})
