/**
 * What every runtime example's test does, over real HTTP on 127.0.0.1: a fake worker that
 * accepts step dispatches, and a whole run driven through the API — announce, submit
 * candidates, queue, dequeue, queue, execute, complete every step, `completed`. The Bun
 * and workerd examples import it from here.
 */
import type { DispatchStepRequest } from '@loom/core'
import { eventually } from '@loom/core/testing'
import { spawn, type ChildProcess } from 'node:child_process'
import { createServer } from 'node:http'
import type { AddressInfo } from 'node:net'
import { expect } from 'vitest'

export interface FakeWorker {
  url: string
  dispatched: DispatchStepRequest[]
  close(): Promise<void>
}

/** An HTTP worker on a free port of 127.0.0.1 that accepts every dispatched step and records it. */
export async function startFakeWorker(): Promise<FakeWorker> {
  const dispatched: DispatchStepRequest[] = []
  const server = createServer((req, res) => {
    let body = ''
    req.on('data', (chunk) => (body += chunk))
    req.on('end', () => {
      if (req.method === 'POST' && req.url === '/steps/dispatch') {
        dispatched.push(JSON.parse(body) as DispatchStepRequest)
        res.writeHead(202, { 'content-type': 'application/json' }).end('{"accepted":true}')
      } else {
        res.writeHead(404).end()
      }
    })
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const { port } = server.address() as AddressInfo
  return {
    url: `http://127.0.0.1:${port}`,
    dispatched,
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  }
}

export interface RunningServer {
  url: string
  output: () => string
  stop(): Promise<void>
}

/**
 * Starts a server process and waits (at most `timeoutMs`) for its `listening on <url>` line.
 * Its output is kept for the failure message.
 */
export async function startServer(
  command: string,
  args: string[],
  env: Record<string, string>,
  timeoutMs = 30_000,
): Promise<RunningServer> {
  const child: ChildProcess = spawn(command, args, { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] })
  let output = ''
  const url = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no "listening on" within ${timeoutMs} ms:\n${output}`)), timeoutMs)
    const onData = (chunk: Buffer) => {
      output += chunk.toString()
      const match = /listening on (http:\/\/\S+)/.exec(output)
      if (match) {
        clearTimeout(timer)
        resolve(match[1]!)
      }
    }
    child.stdout!.on('data', onData)
    child.stderr!.on('data', (chunk: Buffer) => (output += chunk.toString()))
    child.on('exit', (code) => {
      clearTimeout(timer)
      reject(new Error(`${command} exited with ${code} before listening:\n${output}`))
    })
  })
  return {
    url,
    output: () => output,
    stop: async () => {
      if (child.exitCode !== null) return
      const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()))
      child.kill('SIGTERM')
      const timer = setTimeout(() => child.kill('SIGKILL'), 5_000)
      await exited
      clearTimeout(timer)
    },
  }
}

/**
 * Drives one candidate of a two-step migration from announce to `completed` through the
 * HTTP API at `api`, the fake worker standing in for the worker that runs the steps.
 */
export async function driveWholeRun(options: { api: string; token?: string; worker: FakeWorker; migrationId?: string }) {
  const { api, worker } = options
  const M = options.migrationId ?? 'app-chart'
  const auth: Record<string, string> = options.token ? { authorization: `Bearer ${options.token}` } : {}
  const call = async (method: string, path: string, body?: unknown) => {
    const response = await fetch(`${api}${path}`, {
      method,
      headers: { ...auth, ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
      ...(body === undefined ? {} : { body: JSON.stringify(body) }),
    })
    const text = await response.text()
    return { status: response.status, json: text ? JSON.parse(text) : undefined }
  }

  const announced = await call('POST', '/registry/announce', {
    id: M,
    name: 'App chart',
    workerUrl: worker.url,
    steps: [
      { name: 'update-chart', workerApp: 'charts' },
      { name: 'open-pr', workerApp: 'charts' },
    ],
  })
  expect(announced.status).toBe(200)
  expect(announced.json.id).toBe(M)

  expect((await call('POST', `/migrations/${M}/candidates`, { candidates: [{ id: 'svc-0' }, { id: 'svc-1' }] })).status).toBe(204)

  const queued = await call('POST', `/migrations/${M}/queue`, { candidateId: 'svc-0' })
  expect(queued).toEqual({ status: 202, json: { runId: `${M}__svc-0` } })
  const runId = queued.json.runId as string

  expect((await call('DELETE', `/runs/${runId}/dequeue`)).status).toBe(204)
  expect((await call('GET', `/migrations/${M}/candidates`)).json.map((c: { status: string }) => c.status)).toEqual([
    'not_started',
    'not_started',
  ])
  expect((await call('POST', `/migrations/${M}/queue`, { candidate: { id: 'svc-0' } })).status).toBe(202)
  expect((await call('GET', `/runs/${runId}`)).json.status).toBe('queued')

  expect(await call('POST', `/runs/${runId}/execute`)).toEqual({ status: 202, json: { runId } })

  for (const stepName of ['update-chart', 'open-pr']) {
    const request = await eventually(() => {
      const found = worker.dispatched.find((d) => d.runId === runId && d.stepName === stepName)
      if (!found) throw new Error(`step ${stepName} of ${runId} not dispatched yet`)
      return found
    })
    expect(request).toMatchObject({ migrationId: M, candidate: { id: 'svc-0' }, callbackId: runId })
    const reported = await call('POST', `/event/${request.callbackId}`, { stepName, candidate: { id: 'svc-0' }, success: true })
    expect(reported).toEqual({ status: 202, json: { status: 'accepted' } })
  }

  await eventually(async () => expect((await call('GET', `/runs/${runId}`)).json.status).toBe('completed'))
  const run = (await call('GET', `/runs/${runId}`)).json
  expect(run.steps.map((s: { stepName: string; success: boolean }) => [s.stepName, s.success])).toEqual([
    ['update-chart', true],
    ['open-pr', true],
  ])
  expect((await call('GET', `/migrations/${M}/candidates`)).json.map((c: { id: string; status: string }) => [c.id, c.status])).toEqual([
    ['svc-0', 'completed'],
    ['svc-1', 'not_started'],
  ])
  expect((await call('GET', `/status/${runId}`)).json).toMatchObject({
    instanceId: runId,
    runtimeStatus: 'COMPLETED',
    result: { status: 'completed' },
  })
  expect(worker.dispatched.filter((d) => d.runId === runId).map((d) => d.stepName)).toEqual(['update-chart', 'open-pr'])
  return runId
}

/** The answers every runtime must give the same way: health, a JSON 404, a 401 without the token. */
export async function checkEdges(api: string, token: string) {
  const health = await fetch(`${api}/health`)
  expect(health.status).toBe(200)
  expect(await health.json()).toEqual({ status: 'ok' })
  const missing = await fetch(`${api}/no-such-route`, { headers: { authorization: `Bearer ${token}` } })
  expect(missing.status).toBe(404)
  expect((await missing.json()).code).toBe('not_found')
  const refused = await fetch(`${api}/migrations`)
  expect(refused.status).toBe(401)
  expect((await refused.json()).code).toBe('unauthorized')
}
