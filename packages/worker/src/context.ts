import { LoomError, type Loom } from '@loom/core'
import type { MqttClient } from 'mqtt'
import type { Migration } from './define-migration'
import type { RetryOptions } from './retry'

/** Announce or receive over MQTT, on the caller's connected mqtt.js client (never closed by the worker). */
export interface MqttTransport {
  mqtt: MqttClient
  /** The first topic level(s); default `loom`. Must match the server's. */
  topicPrefix?: string
}

export interface WorkerOptions {
  /** This worker's app: the `workerApp` of its steps (unless a step names another) and its MQTT topic level. */
  app: string
  /** The migrations this worker announces and runs, from {@link defineMigration}. */
  migrations: Migration[]
  /** Loom in this process (a service that embeds Loom, tests). Either this or `loomUrl`. */
  loom?: Loom
  /** Where Loom's HTTP API is, e.g. `http://localhost:3000/api`; the worker talks to it with `@loom/client`. */
  loomUrl?: string
  /**
   * This worker's token: its own named one (`LOOM_WORKERS="charts:<token>"` on Loom's side) or
   * the single worker token. Sent with every call to Loom, over HTTP and in each MQTT
   * announcement, so Loom knows which worker it is: the migrations it announces first become
   * its own, and no other worker may change them. Unless `dispatchToken` says otherwise, every
   * dispatch and dry run Loom sends here must carry it too; a Loom with named worker tokens
   * presents each worker its own, so the default fits.
   */
  token?: string
  /** The token Loom's dispatcher sends; dispatches without it are refused. Default: `token`. */
  dispatchToken?: string
  /** Where Loom reaches this worker's HTTP app (`worker.app`), announced as `workerUrl`. */
  url?: string
  /** How migrations are announced: `'http'` (default, through the Loom API) or over MQTT. */
  announce?: 'http' | MqttTransport
  /**
   * How dispatched steps and dry runs arrive: `'http'` (default) through `worker.app` /
   * `worker.fetch`, which you serve, or over MQTT (the worker subscribes in `start`).
   */
  dispatch?: 'http' | MqttTransport
  /** Retries of announce, discovery and reports while Loom cannot be reached. */
  retry?: RetryOptions
  /** The fetch the Loom client uses (with `loomUrl`). */
  fetch?: (input: Request | string | URL, init?: RequestInit) => Promise<Response>
  /** Errors the worker handles but should not hide (a report Loom refused, a discovery that failed). Default: console.error. */
  onError?: (error: unknown) => void
  /**
   * The largest part a discovered list is sent in. A list that fits in one part is submitted in
   * one request; a larger one through a discovery of Loom's (opened, sent part by part, then
   * committed: Loom swaps the whole list in at once). Default 5,000 candidates and 2 MiB of
   * JSON, well under Loom's default body limit (4 MiB) and candidate limit (100,000).
   */
  discoveryParts?: DiscoveryParts
}

/** How large one part of a discovered list may be; a single candidate larger than `bytes` goes alone. */
export interface DiscoveryParts {
  /** Candidates per part. Default 5,000. */
  candidates?: number
  /** Bytes of JSON per part. Default 2 MiB. */
  bytes?: number
}

const DEFAULT_PARTS: Required<DiscoveryParts> = { candidates: 5_000, bytes: 2 * 1024 * 1024 }

/** What every part of `createWorker` works with: the checked options, the worker's lifetime and the way to Loom. */
export interface WorkerContext {
  readonly options: WorkerOptions
  readonly app: string
  readonly migrations: ReadonlyMap<string, Migration>
  readonly retry: RetryOptions
  /** The size of one part of a discovered list. */
  readonly parts: Required<DiscoveryParts>
  /** The token dispatches and dry runs must carry, if any. */
  readonly dispatchToken: string | undefined
  /** Aborted by `worker.stop`: retries end and handlers should give up. */
  readonly signal: AbortSignal
  readonly onError: (error: unknown) => void
  /** Loom, in this process or through `@loom/client` (created on first use). */
  loom(): Promise<Loom>
  /** The migration, or `not_found`. */
  requireMigration(id: string): Migration
  /** Registers what `worker.stop` must close (a subscription, an announcer). */
  onStop(stop: () => Promise<void>): void
}

/** Checks `options` (an `invalid` LoomError naming the field) and builds what the parts of the worker share. */
export function workerContext(options: WorkerOptions, signal: AbortSignal, stopping: Array<() => Promise<void>>): WorkerContext {
  const app = options.app
  if (typeof app !== 'string') throw new LoomError('invalid', 'app: must be the worker app name', { details: { field: 'app' } })
  const migrations = new Map<string, Migration>()
  for (const [i, migration] of (options.migrations ?? []).entries()) {
    if (migration?.defined !== true) {
      throw new LoomError('invalid', `migrations.${i}: must be built with defineMigration`, { details: { field: `migrations.${i}` } })
    }
    if (migrations.has(migration.id)) {
      throw new LoomError('invalid', `migrations.${i}.id: "${migration.id}" is defined twice`, { details: { field: `migrations.${i}.id` } })
    }
    migrations.set(migration.id, migration)
  }
  if (!options.loom && !options.loomUrl) {
    throw new LoomError('invalid', 'loomUrl: give loomUrl (Loom over HTTP) or loom (Loom in this process)', {
      details: { field: 'loomUrl' },
    })
  }

  const parts = { ...DEFAULT_PARTS, ...options.discoveryParts }
  for (const [key, value] of Object.entries(parts)) {
    if (!Number.isSafeInteger(value) || value < 1) {
      const field = `discoveryParts.${key}`
      throw new LoomError('invalid', `${field}: must be a positive integer (got ${String(value)})`, { details: { field } })
    }
  }

  const dispatchToken = options.dispatchToken ?? options.token
  // Over HTTP the token travels in an Authorization header, where bearerAuth (RFC 6750) takes
  // only these characters: with any other, every dispatch would be refused.
  const overHttp = options.dispatch === undefined || options.dispatch === 'http'
  if (dispatchToken && overHttp && !/^[A-Za-z0-9._~+/-]+=*$/.test(dispatchToken)) {
    const field = options.dispatchToken === undefined ? 'token' : 'dispatchToken'
    throw new LoomError('invalid', `${field}: must be letters, digits and . _ ~ + / - (an RFC 6750 bearer token)`, { details: { field } })
  }

  let loomPromise: Promise<Loom> | undefined
  const loom = () =>
    (loomPromise ??= options.loom
      ? Promise.resolve(options.loom)
      : import('@loom/client').then(({ createClient }) =>
          createClient({
            baseUrl: options.loomUrl!,
            ...(options.token ? { token: options.token } : {}),
            ...(options.fetch ? { fetch: options.fetch } : {}),
          }),
        ))

  return {
    options,
    app,
    migrations,
    retry: options.retry ?? {},
    parts,
    dispatchToken,
    signal,
    onError: options.onError ?? ((error: unknown) => console.error('[loom/worker]', error)),
    loom,
    requireMigration(id) {
      const migration = migrations.get(id)
      if (!migration) throw new LoomError('not_found', `worker app ${app} has no migration ${id}`, { details: { migrationId: id } })
      return migration
    },
    onStop: (stop) => void stopping.push(stop),
  }
}
