import { describe, expect, it } from 'vitest'
import { LoomError } from './errors'
import { httpDispatcher, httpDryRunner } from './http-worker'
import type { DispatchStepRequest, DryRunRequest } from './schemas'

interface Call {
  url: string
  init: RequestInit
}

const fakeFetch = (answer: (call: Call) => Response | Promise<Response>) => {
  const calls: Call[] = []
  const fetch = (async (url: string | URL | Request, init?: RequestInit) => {
    const call = { url: String(url), init: init ?? {} }
    calls.push(call)
    return answer(call)
  }) as typeof globalThis.fetch
  return { fetch, calls }
}

const request: DispatchStepRequest = {
  migrationId: 'app-chart',
  runId: 'app-chart__billing-api',
  stepName: 'update-chart',
  candidate: { id: 'billing-api' },
  callbackId: 'app-chart__billing-api',
  eventName: 'step-completed:update-chart',
}

const dryRunRequest: DryRunRequest = {
  migrationId: 'app-chart',
  candidate: { id: 'billing-api' },
  steps: [{ name: 'update-chart', workerApp: 'charts' }],
}

describe('httpDispatcher', () => {
  it('posts the request as JSON to {workerUrl}/steps/dispatch with the bearer token', async () => {
    const { fetch, calls } = fakeFetch(() => new Response(null, { status: 202 }))
    await httpDispatcher({ token: 's3cret', fetch }).dispatch({ workerApp: 'charts', workerUrl: 'http://worker:4000/base/' }, request)
    expect(calls).toHaveLength(1)
    expect(calls[0]!.url).toBe('http://worker:4000/base/steps/dispatch')
    expect(calls[0]!.init.method).toBe('POST')
    expect(calls[0]!.init.headers).toMatchObject({ authorization: 'Bearer s3cret', 'content-type': 'application/json' })
    expect(JSON.parse(String(calls[0]!.init.body))).toEqual(request)
  })

  it('prefers a URL configured for the worker app', async () => {
    const { fetch, calls } = fakeFetch(() => new Response(null, { status: 200 }))
    await httpDispatcher({ fetch, workerUrls: { charts: 'http://charts:1' } }).dispatch(
      { workerApp: 'charts', workerUrl: 'http://other:2' },
      request,
    )
    expect(calls[0]!.url).toBe('http://charts:1/steps/dispatch')
  })

  it('fails with unavailable when the worker answers an error, is unreachable, or has no URL', async () => {
    const refusing = fakeFetch(() => new Response('nope', { status: 500 }))
    const error = await httpDispatcher({ fetch: refusing.fetch })
      .dispatch({ workerApp: 'charts', workerUrl: 'http://w' }, request)
      .catch((e) => e)
    expect(LoomError.is(error, 'unavailable')).toBe(true)
    expect(error.message).toBe('worker at http://w/steps/dispatch answered 500: nope')

    const down = fakeFetch(() => Promise.reject(new TypeError('fetch failed')))
    const unreachable = await httpDispatcher({ fetch: down.fetch })
      .dispatch({ workerApp: 'charts', workerUrl: 'http://w' }, request)
      .catch((e) => e)
    expect(LoomError.is(unreachable, 'unavailable')).toBe(true)
    expect(unreachable.message).toContain('could not be reached: fetch failed')

    const nowhere = await httpDispatcher()
      .dispatch({ workerApp: 'charts' }, request)
      .catch((e) => e)
    expect(LoomError.is(nowhere, 'unavailable')).toBe(true)
    expect(nowhere.message).toContain('no URL for worker app charts')
  })
})

describe('httpDispatcher refusals', () => {
  it.each([
    [400, 'invalid'],
    [401, 'unauthorized'],
    [403, 'unauthorized'],
    [404, 'not_found'],
    [409, 'invalid'],
    [413, 'too_large'],
    [408, 'unavailable'],
    [429, 'unavailable'],
    [502, 'unavailable'],
    [503, 'unavailable'],
  ])('maps a worker answering %i to %s, never conflict', async (status, code) => {
    const { fetch } = fakeFetch(() => new Response('{}', { status }))
    const error = await httpDispatcher({ fetch })
      .dispatch({ workerApp: 'charts', workerUrl: 'http://w' }, request)
      .catch((e) => e)
    expect(LoomError.is(error, code as never)).toBe(true)
    expect(error.details).toEqual({ workerStatus: status })
  })
})

describe('httpDryRunner', () => {
  it('posts to {workerUrl}/dry-run and returns the checked result', async () => {
    const answer = { steps: [{ stepName: 'update-chart', skipped: false, files: [{ path: 'a.yaml', repo: 'gitops', after: 'x: 1\n' }] }] }
    const { fetch, calls } = fakeFetch(() => Response.json(answer))
    const result = await httpDryRunner({ fetch }).dryRun({ workerApps: ['charts'], workerUrl: 'http://w' }, dryRunRequest)
    expect(result).toEqual(answer)
    expect(calls[0]!.url).toBe('http://w/dry-run')
    expect(JSON.parse(String(calls[0]!.init.body))).toEqual(dryRunRequest)
  })

  it('refuses an answer of the wrong shape as unavailable, naming the field', async () => {
    const { fetch } = fakeFetch(() => Response.json({ steps: [{ stepName: 'update-chart', skipped: 'no' }] }))
    const error = await httpDryRunner({ fetch })
      .dryRun({ workerApps: ['charts'], workerUrl: 'http://w' }, dryRunRequest)
      .catch((e) => e)
    expect(LoomError.is(error, 'unavailable')).toBe(true)
    expect(error.message).toBe('worker app charts answered an invalid dry run: steps.0.skipped: must be a boolean')
  })

  it('asks each distinct worker URL once: the configured one of an app, else the announced one', async () => {
    const { fetch, calls } = fakeFetch((call) => {
      const request = JSON.parse(String(call.init.body)) as DryRunRequest
      const app = call.url.startsWith('http://values') ? 'values' : 'announced'
      return Response.json({ steps: request.steps.map((s) => ({ stepName: s.name, skipped: false, error: `from ${app}` })) })
    })
    const steps = [
      { name: 'update-chart', workerApp: 'charts' },
      { name: 'lint', workerApp: 'linters' },
      { name: 'update-values', workerApp: 'values' },
    ]
    const result = await httpDryRunner({ fetch, workerUrls: { values: 'http://values:1' } }).dryRun(
      { workerApps: ['charts', 'linters', 'values'], workerUrl: 'http://w' },
      { ...dryRunRequest, steps },
    )
    expect(calls.map((c) => c.url).sort()).toEqual(['http://values:1/dry-run', 'http://w/dry-run'])
    expect(result.steps.map((s) => s.error)).toEqual(['from announced', 'from announced', 'from values'])
  })

  it.each([401, 403])('takes a worker refusing its token (%i) for an unavailable worker, not an unauthorized operator', async (status) => {
    const { fetch } = fakeFetch(() => Response.json({ error: 'bad token', code: 'unauthorized' }, { status }))
    const error = await httpDryRunner({ fetch })
      .dryRun({ workerApps: ['charts'], workerUrl: 'http://w' }, dryRunRequest)
      .catch((e) => e)
    expect(LoomError.is(error, 'unavailable')).toBe(true)
    expect(error.details).toEqual({ dependency: 'worker app charts' })
    expect(error.message).toBe(`worker at http://w/dry-run answered ${status}: {"error":"bad token","code":"unauthorized"}`)
  })

  it('is unavailable naming the app when a worker app has no URL', async () => {
    const error = await httpDryRunner()
      .dryRun({ workerApps: ['charts'] }, dryRunRequest)
      .catch((e) => e)
    expect(LoomError.is(error, 'unavailable')).toBe(true)
    expect(error.message).toContain('no URL for worker app charts')
  })
})
