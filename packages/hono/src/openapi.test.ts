import { Validator } from '@seriousme/openapi-schema-validator'
import { Hono } from 'hono'
import { readFileSync } from 'node:fs'
import * as v from 'valibot'
import { describe, expect, it } from 'vitest'
import { setup } from '../test/helpers'
import { describeRoute } from './describe'
import { openApiDocument } from './openapi'
import { jsonBody, optionalJsonBody, slugParams } from './validation'

const ok = describeRoute({ operationId: 'ok', summary: 'ok', responses: { 200: { description: 'ok' } } })

/** The document as the app serves it, checked by a real OpenAPI 3.1 validator. */
describe('GET /openapi.json', () => {
  it('is a valid OpenAPI 3.1 document', async () => {
    const t = await setup({ token: 'op', workerToken: 'wk' })
    const res = await t.call('GET', '/openapi.json')
    expect(res.status).toBe(200)
    expect(res.json.openapi).toBe('3.1.0')
    const validator = new Validator()
    const result = await validator.validate(res.json)
    expect(result.errors ?? []).toEqual([])
    expect(result.valid).toBe(true)
    expect(validator.version).toBe('3.1')
    await t.close()
  })

  it('describes exactly the routes the app serves', async () => {
    const t = await setup()
    const doc = (await t.call('GET', '/openapi.json')).json
    const documented = Object.entries(doc.paths as Record<string, Record<string, unknown>>)
      .flatMap(([path, methods]) => Object.keys(methods).map((m) => `${m.toUpperCase()} ${path}`))
      .sort()
    const served = [
      ...new Set(t.app.routes.filter((r) => r.method !== 'ALL').map((r) => `${r.method} ${r.path.replace(/:(\w+)/g, '{$1}')}`)),
    ].sort()
    expect(documented).toEqual(served)
    expect(documented).toHaveLength(26)
    await t.close()
  })

  it('refuses a route without a description, and a description of a parameter no validator reads', () => {
    const undescribed = new Hono().get('/a', ok, (c) => c.text('a')).post('/b', (c) => c.text('b'))
    expect(() => openApiDocument(undescribed)).toThrow('POST /b has no describeRoute(…)')
    const stray = new Hono().get(
      '/a',
      describeRoute({ operationId: 'a', summary: 'a', params: { q: 'a query' }, responses: { 200: { description: 'ok' } } }),
      (c) => c.text('a'),
    )
    expect(() => openApiDocument(stray)).toThrow('a: describes a parameter q that no validator reads')
  })

  it('takes parameters, body and their errors from the validators of the route', () => {
    const app = new Hono().post(
      '/things/:id',
      ok,
      slugParams({ id: { label: 'thingId', description: 'The thing', missing: 'no such thing' } }),
      jsonBody(v.object({ n: v.number() })),
      (c) => c.text('ok'),
    )
    const op = (openApiDocument(app).paths as any)['/things/{id}'].post
    expect(op.parameters).toEqual([
      { name: 'id', in: 'path', required: true, description: 'The thing', schema: { $ref: '#/components/schemas/Slug' } },
    ])
    expect(op.requestBody.content['application/json'].schema).toEqual({
      type: 'object',
      properties: { n: { type: 'number' } },
      required: ['n'],
    })
    expect(Object.keys(op.responses)).toEqual(['200', '400', '404', '413'])
    expect(op.responses['404'].description).toBe('not_found: no such thing')
    expect(op.responses['400'].description).toBe(
      'invalid: `id` breaks the id rules; the body is not JSON, or a field breaks its rules (`field` names the field)',
    )
    expect(op.tags).toEqual(['public'])
    expect(op.security).toEqual([])
  })

  it('marks a body the route also serves without as not required: execute’s {resume}', async () => {
    const app = new Hono().post('/a', ok, optionalJsonBody(v.object({ n: v.optional(v.number()) })), (c) => c.text('ok'))
    expect((openApiDocument(app).paths as any)['/a'].post.requestBody).toEqual({
      required: false,
      content: { 'application/json': { schema: { type: 'object', properties: { n: { type: 'number' } }, required: [] } } },
    })
    const t = await setup()
    const doc = (await t.call('GET', '/openapi.json')).json
    const execute = doc.paths['/runs/{runId}/execute'].post
    expect(execute.requestBody).toEqual({
      required: false,
      content: { 'application/json': { schema: { $ref: '#/components/schemas/ExecuteOptions' } } },
    })
    expect(doc.components.schemas.ExecuteOptions).toEqual({ type: 'object', properties: { resume: { type: 'boolean' } }, required: [] })
    expect(Object.keys(execute.responses)).toEqual(['202', '400', '404', '409', '413', '503'])
    expect(doc.paths['/migrations'].post.requestBody.required).toBe(true)
    await t.close()
  })

  it('describes what happened: the activity page and its query, a run’s history, and cancel’s optional {reason}', async () => {
    const t = await setup({ operators: 'alice:op', workers: 'charts:wk' })
    const { paths, components } = (await t.call('GET', '/openapi.json')).json
    const activity = paths['/migrations/{id}/activity'].get
    expect(activity.operationId).toBe('activity')
    expect(activity.tags).toEqual(['operator'])
    expect(activity.parameters.map((p: any) => [p.name, p.in, p.required])).toEqual([
      ['id', 'path', true],
      ['after', 'query', false],
      ['limit', 'query', false],
      ['order', 'query', false],
    ])
    expect(activity.parameters[2].schema).toMatchObject({ type: 'integer', minimum: 1, maximum: 1000 })
    expect(activity.parameters[3].schema).toMatchObject({ enum: ['oldest', 'newest'] })
    expect(activity.parameters[1].schema).toMatchObject({ type: 'string', pattern: '^[0-9]{1,20}$' })
    expect(activity.responses['200'].content['application/json'].schema).toEqual({ $ref: '#/components/schemas/ActivityPage' })
    expect(Object.keys(activity.responses)).toEqual(['200', '400', '401', '403', '404'])
    expect(components.schemas.ActivityPage.properties.entries).toEqual({
      type: 'array',
      items: { $ref: '#/components/schemas/ActivityEntry' },
    })

    const history = paths['/runs/{runId}/history'].get
    expect(history.responses['200'].content['application/json'].schema).toEqual({ $ref: '#/components/schemas/RunHistory' })
    expect(Object.keys(history.responses)).toEqual(['200', '401', '403', '404'])
    expect(components.schemas.RunHistory.required).toEqual(['runId', 'migrationId', 'candidateId', 'attempts'])

    const cancel = paths['/runs/{runId}/cancel'].post
    expect(cancel.requestBody).toEqual({
      required: false,
      content: { 'application/json': { schema: { $ref: '#/components/schemas/CancelOptions' } } },
    })
    expect(components.schemas.CancelOptions).toEqual({
      type: 'object',
      properties: { reason: expect.objectContaining({ type: 'string', maxLength: 2000 }) },
      required: [],
    })
    expect(Object.keys(cancel.responses)).toEqual(['204', '400', '401', '403', '404', '409', '413'])
    await t.close()
  })

  it('carries the version of the package', async () => {
    const t = await setup()
    const { version } = JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8'))
    expect((await t.call('GET', '/openapi.json')).json.info.version).toBe(version)
    await t.close()
  })

  it('generates its schemas from core: the id rules and the shapes', async () => {
    const t = await setup()
    const { components } = (await t.call('GET', '/openapi.json')).json
    expect(components.schemas.Slug).toMatchObject({ type: 'string', minLength: 1, maxLength: 200, pattern: '^[A-Za-z0-9._-]+$' })
    expect(components.schemas.MigrationAnnouncement.required).toEqual(['id', 'name', 'steps'])
    expect(components.schemas.MigrationAnnouncement.properties.id).toEqual({ $ref: '#/components/schemas/Slug' })
    expect(components.schemas.Error.required).toEqual(['error', 'code'])
    expect(components.schemas.Error.properties.code.enum).toEqual([
      'invalid',
      'not_found',
      'conflict',
      'unauthorized',
      'forbidden',
      'too_large',
      'unavailable',
    ])
    expect(components.schemas.CandidateWithStatus.properties.status).toEqual({ $ref: '#/components/schemas/CandidateStatus' })
    await t.close()
  })

  it('marks operator and worker routes with their bearer scheme only when tokens are set', async () => {
    const open = await setup()
    const guarded = await setup({ token: 'op', workerToken: 'wk' })
    const openDoc = (await open.call('GET', '/openapi.json')).json
    const guardedDoc = (await guarded.call('GET', '/openapi.json')).json
    expect(openDoc.paths['/migrations/{id}/queue'].post.security).toEqual([])
    expect(openDoc.paths['/migrations/{id}/queue'].post.responses).not.toHaveProperty('401')
    expect(guardedDoc.paths['/migrations/{id}/queue'].post.security).toEqual([{ operatorToken: [] }])
    expect(guardedDoc.paths['/event/{runId}'].post.security).toEqual([{ workerToken: [] }, { operatorToken: [] }])
    expect(guardedDoc.paths['/health'].get.security).toEqual([])
    expect(Object.keys(guardedDoc.paths['/migrations/{id}/queue'].post.responses)).toEqual([
      '202',
      '400',
      '401',
      '403',
      '404',
      '409',
      '413',
    ])
    await open.close()
    await guarded.close()
  })

  it('lists 403 forbidden wherever a worker can be refused, and only where workers exist', async () => {
    const docOf = async (options: Parameters<typeof setup>[0]) => {
      const t = await setup(options)
      const doc = (await t.call('GET', '/openapi.json')).json
      await t.close()
      return doc
    }
    const forbidden = (doc: any) =>
      Object.entries(doc.paths as Record<string, Record<string, any>>).flatMap(([path, item]) =>
        Object.entries(item)
          .filter(([, op]) => '403' in op.responses)
          .map(([method]) => `${method.toUpperCase()} ${path}`),
      )
    const withWorkers = await docOf({ operators: 'alice:op', workers: 'charts:wk' })
    // Every guarded route: operator routes refuse a worker's role, worker routes another worker's migration.
    expect(forbidden(withWorkers)).toHaveLength(24)
    expect(forbidden(withWorkers)).not.toContain('GET /health')
    expect(withWorkers.paths['/event/{runId}'].post.responses['403'].description).toBe(
      'forbidden: the migration belongs to another worker (the first worker to announce a migration owns it), or the step is a manual review, which only an operator approves or rejects',
    )
    expect(withWorkers.paths['/migrations'].get.responses['403'].description).toBe(
      'forbidden: the caller is a worker; only operators call this route',
    )
    // No worker can authenticate: nobody is ever refused for a role.
    expect(forbidden(await docOf({ token: 'op' }))).toEqual([])
    expect(forbidden(await docOf({}))).toEqual([])
    const hooked = await docOf({ authenticate: () => null })
    expect(forbidden(hooked)).toHaveLength(24)
    expect(Object.keys(hooked.paths['/migrations'].get.responses)).toEqual(['200', '304', '400', '401', '403'])
    expect(hooked.paths['/migrations'].get.security).toEqual([])
  })

  it('names the schemes each route takes, for bare and named tokens alike', async () => {
    const schemesOf = async (options: Parameters<typeof setup>[0]) => {
      const t = await setup(options)
      const doc = (await t.call('GET', '/openapi.json')).json
      await t.close()
      return { operator: doc.paths['/migrations/{id}/queue'].post.security, worker: doc.paths['/registry/announce'].post.security }
    }
    const both = { operator: [{ operatorToken: [] }], worker: [{ workerToken: [] }, { operatorToken: [] }] }
    expect(await schemesOf({ operators: 'alice:op', workers: { charts: 'wk' } })).toEqual(both)
    expect(await schemesOf({ token: 'op', workers: { charts: 'wk' } })).toEqual(both)
    // API 0.2's single token works on the worker routes too.
    expect(await schemesOf({ token: 'op' })).toEqual({ operator: [{ operatorToken: [] }], worker: [{ operatorToken: [] }] })
    // Only workers: the operator routes still need an operator's token, which nobody holds.
    expect(await schemesOf({ workerToken: 'wk' })).toEqual({ operator: [{ operatorToken: [] }], worker: [{ workerToken: [] }] })
  })

  it('shows who owns a migration, and names the request schemas at the loom’s own limits', async () => {
    const t = await setup({ token: 'op', deps: { limits: { steps: 5 } } })
    const doc = (await t.call('GET', '/openapi.json')).json
    expect(doc.components.schemas.RegisteredMigration.properties.owner).toEqual({ type: 'string' })
    expect(doc.paths['/registry/announce'].post.requestBody.content['application/json'].schema).toEqual({
      $ref: '#/components/schemas/AnnounceRequest',
    })
    expect(doc.paths['/event/{runId}'].post.requestBody.content['application/json'].schema).toEqual({
      $ref: '#/components/schemas/StepCompletedEvent',
    })
    expect(doc.components.schemas.MigrationAnnouncement.required).toEqual(['id', 'name', 'steps'])
    await t.close()
  })
})
