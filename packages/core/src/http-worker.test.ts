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
    expect(calls[0]!.init.redirect).toBe('manual')
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
    expect(error.message).toBe('worker app charts at http://w/steps/dispatch answered 500')

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
    expect(error.message).toBe('worker app charts answered an invalid dry run: steps.0.skipped does not have the shape of a dry-run result')
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
    expect(error.message).toBe(`worker app charts at http://w/dry-run answered ${status}`)
  })

  it('is unavailable naming the app when a worker app has no URL', async () => {
    const error = await httpDryRunner()
      .dryRun({ workerApps: ['charts'] }, dryRunRequest)
      .catch((e) => e)
    expect(LoomError.is(error, 'unavailable')).toBe(true)
    expect(error.message).toContain('no URL for worker app charts')
  })
})

describe('what a worker call never repeats or follows', () => {
  const secret = 'INTERNAL-SECRET: db_password=hunter2'

  it.each([400, 403, 404, 409, 500, 502])('names the status, app and URL of a %i, never the body the worker sent', async (status) => {
    const { fetch } = fakeFetch(() => new Response(secret, { status }))
    const dispatched = await httpDispatcher({ fetch })
      .dispatch({ workerApp: 'charts', workerUrl: 'http://127.0.0.1:4309/admin' }, request)
      .catch((e) => e)
    expect(dispatched.message).toBe(`worker app charts at http://127.0.0.1:4309/admin/steps/dispatch answered ${status}`)
    const dryRun = await httpDryRunner({ fetch })
      .dryRun({ workerApps: ['charts'], workerUrl: 'http://127.0.0.1:4309/admin' }, dryRunRequest)
      .catch((e) => e)
    expect(LoomError.is(dryRun, 'unavailable')).toBe(true)
    expect(dryRun.message).toBe(`worker app charts at http://127.0.0.1:4309/admin/dry-run answered ${status}`)
    for (const error of [dispatched, dryRun]) expect(JSON.stringify({ m: error.message, d: error.details })).not.toMatch(/SECRET|hunter2/)
  })

  it.each([
    ['a JSON string', JSON.stringify(secret)],
    ['a list of strings', JSON.stringify({ steps: [secret] })],
    ['a field of the wrong type', JSON.stringify({ steps: [{ stepName: secret, skipped: secret }] })],
    ['text that is not JSON', `<html>${secret}</html>`],
  ])('never quotes a 2xx dry-run answer of the wrong shape: %s', async (_what, body) => {
    const { fetch } = fakeFetch(() => new Response(body, { status: 200 }))
    const error = await httpDryRunner({ fetch })
      .dryRun({ workerApps: ['charts'], workerUrl: 'http://127.0.0.1:4309/admin' }, dryRunRequest)
      .catch((e) => e)
    expect(LoomError.is(error, 'unavailable')).toBe(true)
    expect(error.message).toMatch(/^worker app charts (at http:\/\/127\.0\.0\.1:4309\/admin\/dry-run )?answered /)
    expect(JSON.stringify({ m: error.message, d: error.details })).not.toMatch(/SECRET|hunter2/)
  })

  it('stops reading a dry-run answer past maxResponseBytes, and fails that app', async () => {
    let pulled = 0
    const endless = new ReadableStream<Uint8Array>({
      pull(controller) {
        pulled++
        controller.enqueue(new Uint8Array(64 * 1024).fill(0x20))
      },
    })
    const { fetch } = fakeFetch(() => new Response(endless, { status: 200 }))
    const error = await httpDryRunner({ fetch, maxResponseBytes: 1024 * 1024 })
      .dryRun({ workerApps: ['charts'], workerUrl: 'http://127.0.0.1:4309/w' }, dryRunRequest)
      .catch((e) => e)
    expect(LoomError.is(error, 'unavailable')).toBe(true)
    expect(error.message).toBe(
      'worker app charts at http://127.0.0.1:4309/w/dry-run answered more than 1048576 bytes (maxResponseBytes); the answer was not read',
    )
    expect(pulled).toBeLessThan(40)
  })

  it.each([301, 302, 303, 307, 308])('refuses a %i redirect as invalid without following it or quoting where it points', async (status) => {
    const { fetch, calls } = fakeFetch(
      () => new Response(secret, { status, headers: { location: 'http://admin:pw@10.0.0.1/delete-everything?token=abc' } }),
    )
    const error = await httpDispatcher({ fetch, token: 't' })
      .dispatch({ workerApp: 'charts', workerUrl: 'http://w' }, request)
      .catch((e) => e)
    expect(calls).toHaveLength(1)
    expect(calls[0]!.init.redirect).toBe('manual')
    expect(LoomError.is(error, 'invalid')).toBe(true)
    expect(error.message).toBe(
      `worker app charts at http://w/steps/dispatch answered ${status}, a redirect, which Loom does not follow: announce the worker's final URL`,
    )
    expect(error.message).not.toMatch(/admin|10\.0\.0\.1|token=|SECRET/)
    expect(error.details).toEqual({ workerStatus: status })
  })

  it('takes an opaque redirect (a runtime that hides the 3xx) for a redirect too', async () => {
    const opaque = { type: 'opaqueredirect', status: 0, ok: false, body: null } as unknown as Response
    const { fetch } = fakeFetch(() => opaque)
    const error = await httpDispatcher({ fetch })
      .dispatch({ workerApp: 'charts', workerUrl: 'http://w' }, request)
      .catch((e) => e)
    expect(LoomError.is(error, 'invalid')).toBe(true)
    expect(error.message).toBe(
      "worker app charts at http://w/steps/dispatch answered a redirect, which Loom does not follow: announce the worker's final URL",
    )
  })

  it('removes credentials from the URL and the fetch error of a worker it cannot reach', async () => {
    const down = fakeFetch((call) => Promise.reject(new TypeError(`connect ECONNREFUSED for ${call.url}`)))
    const error = await httpDispatcher({ fetch: down.fetch, workerUrls: { charts: 'http://user:pw@charts.internal:4000' } })
      .dispatch({ workerApp: 'charts' }, request)
      .catch((e) => e)
    expect(down.calls[0]!.url).toBe('http://user:pw@charts.internal:4000/steps/dispatch')
    expect(LoomError.is(error, 'unavailable')).toBe(true)
    expect(error.message).toBe(
      'worker app charts at http://charts.internal:4000/steps/dispatch could not be reached: connect ECONNREFUSED for http://charts.internal:4000/steps/dispatch',
    )
    const refused = fakeFetch(() => new Response(null, { status: 503 }))
    const dryRun = await httpDryRunner({ fetch: refused.fetch, workerUrls: { charts: 'https://user:pw@charts.internal' } })
      .dryRun({ workerApps: ['charts'] }, dryRunRequest)
      .catch((e) => e)
    expect(dryRun.message).toBe('worker app charts at https://charts.internal/dry-run answered 503')
  })

  it('says how long it waited for a worker that does not answer, not the abort message', async () => {
    const hanging = fakeFetch(
      (call) => new Promise<Response>((_, reject) => call.init.signal!.addEventListener('abort', () => reject(call.init.signal!.reason))),
    )
    const error = await httpDispatcher({ fetch: hanging.fetch, timeoutMs: 20 })
      .dispatch({ workerApp: 'charts', workerUrl: 'http://w' }, request)
      .catch((e) => e)
    expect(LoomError.is(error, 'unavailable')).toBe(true)
    expect(error.message).toBe('worker app charts at http://w/steps/dispatch could not be reached: no answer within 20 ms')
  })
})

describe('the token each worker is shown', () => {
  const tokens: Record<string, string> = { alice: 'tok-alice', bob: 'tok-bob' }
  const pick = (target: { owner?: string }) => (target.owner ? tokens[target.owner] : undefined)
  /** `pick`, recording each target it was asked about in `seen`. */
  const recording = (seen: unknown[]) => (target: { owner?: string }) => {
    seen.push(target)
    return pick(target)
  }

  it('asks a token function with the target, so each owner gets its own token', async () => {
    const { fetch, calls } = fakeFetch(() => new Response(null, { status: 202 }))
    const seen: unknown[] = []
    const dispatcher = httpDispatcher({ fetch, token: recording(seen) })
    await dispatcher.dispatch({ workerApp: 'charts', workerUrl: 'http://a', owner: 'alice' }, request)
    await dispatcher.dispatch({ workerApp: 'charts', workerUrl: 'http://b', owner: 'bob' }, request)
    expect(seen).toEqual([
      { workerApp: 'charts', workerUrl: 'http://a', owner: 'alice' },
      { workerApp: 'charts', workerUrl: 'http://b', owner: 'bob' },
    ])
    expect(calls.map((c) => (c.init.headers as Record<string, string>).authorization)).toEqual(['Bearer tok-alice', 'Bearer tok-bob'])
  })

  it('passes a dry run the app, URL and owner, once per URL', async () => {
    const { fetch, calls } = fakeFetch((call) => {
      const asked = JSON.parse(String(call.init.body)) as DryRunRequest
      return Response.json({ steps: asked.steps.map((s) => ({ stepName: s.name, skipped: true })) })
    })
    const seen: unknown[] = []
    await httpDryRunner({ fetch, token: recording(seen) }).dryRun(
      { workerApps: ['charts', 'linters'], workerUrl: 'http://w', owner: 'bob' },
      { ...dryRunRequest, steps: [dryRunRequest.steps[0]!, { name: 'lint', workerApp: 'linters' }] },
    )
    expect(seen).toEqual([{ workerApp: 'charts', workerUrl: 'http://w', owner: 'bob' }])
    expect(calls).toHaveLength(1)
    expect((calls[0]!.init.headers as Record<string, string>).authorization).toBe('Bearer tok-bob')
  })

  it.each([
    ['no token', {}],
    ['an empty token', { token: '' }],
    ['a function answering undefined', { token: pick }],
  ])('sends no Authorization header with %s', async (_, tokenOption) => {
    const { fetch, calls } = fakeFetch(() => new Response(null, { status: 202 }))
    await httpDispatcher({ fetch, ...tokenOption }).dispatch({ workerApp: 'charts', workerUrl: 'http://w', owner: 'carol' }, request)
    expect(Object.keys(calls[0]!.init.headers as Record<string, string>)).toEqual(['content-type'])
  })
})
