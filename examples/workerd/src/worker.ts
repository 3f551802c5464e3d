/**
 * Loom's HTTP API as a Cloudflare Worker, run by workerd. Bundled by esbuild for the
 * browser platform, so a Node built-in anywhere in `@loom/core`, `@loom/hono` or `hono`
 * would fail the build.
 *
 * Loom lives in one Durable Object, and the Worker forwards every request to it. Two
 * reasons. State: a Worker may run in many isolates at once, each with its own memory,
 * while one Durable Object is one instance, so every request sees the same migrations and
 * runs. Work after the response: the in-process engine keeps going after Execute returns
 * (it dispatches each step to the worker, waits for the step's event, dispatches the
 * next). In a plain Worker that work belongs to the request that started it and is
 * cancelled when that request ends; a Durable Object's requests share the object's
 * lifetime, so the run goes on.
 *
 * The memory store keeps state as long as the object lives, which suits a demonstration
 * and tests; a deployment would keep it in a store reachable from the edge.
 */
import { createLoom, localEngine, memoryStore } from '@loom/core'
import { loomApp } from '@loom/hono'
import { Hono } from 'hono'

interface Env {
  LOOM_TOKEN?: string
  LOOM: DurableObjectNamespace
}
interface DurableObjectNamespace {
  idFromName(name: string): unknown
  get(id: unknown): { fetch(request: Request): Promise<Response> }
}

/** The Durable Object that holds Loom: one per deployment (named `loom`). */
export class LoomObject {
  private app: { fetch: (request: Request) => Response | Promise<Response> } | undefined

  constructor(
    _state: unknown,
    private readonly env: Env,
  ) {}

  async fetch(request: Request): Promise<Response> {
    if (!this.app) {
      const loom = createLoom({ store: memoryStore(), engine: localEngine() })
      await loom.ready
      this.app = new Hono()
        .get('/', (c) => c.text(`Loom on ${navigator.userAgent}`))
        .route('/api', loomApp(loom, this.env.LOOM_TOKEN ? { token: this.env.LOOM_TOKEN } : {}))
    }
    return this.app.fetch(request)
  }
}

export default {
  fetch(request: Request, env: Env): Promise<Response> {
    return env.LOOM.get(env.LOOM.idFromName('loom')).fetch(request)
  },
}
