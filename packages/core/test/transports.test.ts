import { describe } from 'vitest'
import { HTTP_STATUS_OF_CODE, httpDispatcher, httpDryRunner, LoomError } from '../src/index'
import { dispatcherContract, dryRunnerContract, type TransportFixture } from '../src/testing'

// Every worker app the suites name gets its own host; an app without an endpoint in the
// fixture is a host nobody listens on, so its fetch fails as a refused connection does.
const APPS = ['charts', 'values', 'reviewers', 'nobody']
const workerUrls = Object.fromEntries(APPS.map((app) => [app, `http://${app}.workers.test/base/`]))

/** Fake worker endpoints behind `fetch`, answering as `@loom/worker`'s HTTP app does: bearer check, then the scripted answer. */
function workerFetch({ worker, workerApps, workerToken }: TransportFixture): typeof fetch {
  const respond = async (workerApp: string, request: Request): Promise<Response> => {
    if (workerToken && request.headers.get('authorization') !== `Bearer ${workerToken}`) {
      return Response.json({ error: 'unauthorized: the bearer token is not valid', code: 'unauthorized' }, { status: 401 })
    }
    const path = new URL(request.url).pathname
    try {
      if (path === '/base/steps/dispatch') {
        await worker.dispatch(workerApp, await request.json())
        return Response.json({ status: 'accepted' }, { status: 202 })
      }
      if (path === '/base/dry-run') return Response.json(await worker.dryRun(workerApp, await request.json()))
      return Response.json({ error: `no route POST ${path}`, code: 'not_found' }, { status: 404 })
    } catch (error) {
      if (LoomError.is(error)) return Response.json(error.toJSON(), { status: HTTP_STATUS_OF_CODE[error.code] })
      return new Response('Internal Server Error', { status: 500 })
    }
  }
  return async (input, init) => {
    const request = new Request(input, init)
    const workerApp = workerApps.find((app) => new URL(request.url).host === `${app}.workers.test`)
    if (!workerApp) throw new TypeError('fetch failed')
    const aborted = new Promise<never>((_, reject) => {
      request.signal.addEventListener('abort', () => reject(request.signal.reason), { once: true })
    })
    return Promise.race([respond(workerApp, request), aborted])
  }
}

const optionsOf = (fixture: TransportFixture) => ({
  fetch: workerFetch(fixture),
  workerUrls,
  timeoutMs: fixture.timeoutMs,
  ...(fixture.token ? { token: fixture.token } : {}),
})

describe('core transports', () => {
  dispatcherContract('httpDispatcher', async (fixture) => ({ dispatcher: httpDispatcher(optionsOf(fixture)) }))
  dryRunnerContract('httpDryRunner', async (fixture) => ({ dryRunner: httpDryRunner(optionsOf(fixture)) }))
})
