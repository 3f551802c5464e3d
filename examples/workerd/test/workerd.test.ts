import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { checkEdges, driveWholeRun, startFakeWorker, type FakeWorker } from '../../node/test/whole-run'
import { startWorkerd, type RunningWorkerd } from '../serve'

const TOKEN = 'workerd-example-token'

describe('examples/workerd: loomApp as a Worker in workerd (Miniflare)', () => {
  let workerd: RunningWorkerd
  let worker: FakeWorker

  beforeAll(async () => {
    worker = await startFakeWorker()
    workerd = await startWorkerd({ token: TOKEN })
  })
  afterAll(async () => {
    await workerd?.dispose()
    await worker?.close()
  })

  it('runs in workerd', async () => {
    expect(await (await fetch(workerd.url)).text()).toBe('Loom on Cloudflare-Workers')
  })

  it('answers health, a JSON 404 and 401 without the token', async () => {
    await checkEdges(`${workerd.url}/api`, TOKEN)
  })

  it('drives a whole run over HTTP to completed, the engine dispatching to the worker over HTTP', async () => {
    await driveWholeRun({ api: `${workerd.url}/api`, token: TOKEN, worker })
  })
})
