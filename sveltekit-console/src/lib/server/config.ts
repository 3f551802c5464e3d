/**
 * What the console runs on, read from the environment once at start. With nothing set it
 * hosts Loom in-process on embedded defaults (PGlite in a data folder, the local engine);
 * each variable switches one part to a real service.
 */
import { hostname } from 'node:os'
import path from 'node:path'
import {
  LoomError,
  MAX_STEP_TIMEOUT_MS,
  parseDuration,
  parseNamedTokens,
  redactUrl,
  tokenIdentities,
  workerUrlPolicy,
  type Identities,
  type NamedTokens,
} from '@loom/core'
import { DEFAULT_SESSION_TTL } from './session'

export interface ConsoleConfig {
  /** A remote Loom API (`LOOM_URL`); when set the console hosts nothing and talks to it. */
  loomUrl?: string
  /**
   * The single operator token (`LOOM_TOKEN`), whose holder is operator `operator`. In
   * remote mode it is also what this console presents to the remote Loom.
   */
  token?: string
  /** The single worker token (`LOOM_WORKER_TOKEN`), whose holder is worker `worker`. */
  workerToken?: string
  /** Operators by name (`LOOM_OPERATORS="alice:<token>,bob:<token>"`); each signs in with their own token. */
  operators?: NamedTokens
  /** Workers by name (`LOOM_WORKERS="app-charts:<token>,topics:<token>"`). */
  workers?: NamedTokens
  /** The worker URLs Loom may call (`LOOM_WORKER_URLS`, comma-separated origins or prefixes); unset, any http(s) URL. */
  allowedWorkerUrls?: string[]
  /** How long a sign-in lasts (`LOOM_SESSION_TTL`, default `12h`, at most 30 days), in milliseconds. */
  sessionTtlMs: number
  /** PostgreSQL server (`DATABASE_URL`); otherwise PGlite in `dataDir`. */
  databaseUrl?: string
  /** The PostgreSQL schema holding Loom's tables (`LOOM_DB_SCHEMA`, default `loom`). */
  databaseSchema: string
  /** Temporal frontend (`TEMPORAL_ADDRESS`); otherwise the local engine. */
  temporalAddress?: string
  /** Temporal namespace (`TEMPORAL_NAMESPACE`, default `default`). */
  temporalNamespace: string
  /** The task queue of Loom's runs (`LOOM_TEMPORAL_TASK_QUEUE`, default `loom`). */
  temporalTaskQueue: string
  /** MQTT broker (`MQTT_URL`) for announcements and step dispatch. */
  mqttUrl?: string
  /** The first topic level of Loom's MQTT topics (`LOOM_MQTT_TOPIC_PREFIX`, default `loom`). */
  mqttTopicPrefix: string
  /** Where the embedded database lives (`LOOM_DATA_DIR`, default `.loom-data` in the working directory). */
  dataDir: string
  /**
   * This process's name as the owner of the runs it executes (`LOOM_INSTANCE_ID`, default
   * `host:port`): restarted under the same name, it takes its running runs back at once.
   */
  instanceId: string
  /** The deadline of a step without `config.timeout` (`LOOM_STEP_TIMEOUT`, default `24h`). */
  stepTimeout: string
  /** How long the activity log keeps an entry (`LOOM_ACTIVITY_RETENTION`); absent: for ever. */
  activityRetention?: string
}

type Env = Record<string, string | undefined>

const nonEmpty = (value: string | undefined) => (value && value.trim() !== '' ? value.trim() : undefined)

function identifier(name: string, value: string | undefined, fallback: string): string {
  const v = nonEmpty(value) ?? fallback
  if (!/^[a-z_][a-z0-9_]{0,62}$/.test(v)) throw new Error(`${name}: "${v}" must be a lower-case SQL identifier (a-z, 0-9, _)`)
  return v
}

function topicPrefix(name: string, value: string | undefined, fallback: string): string {
  const v = nonEmpty(value) ?? fallback
  if (/[#+\u0000]/.test(v) || v.startsWith('/') || v.endsWith('/'))
    throw new Error(`${name}: "${v}" must be MQTT topic levels without wildcards or outer slashes`)
  return v
}

/** A token travels in `Authorization: Bearer`, which takes only these characters (RFC 6750): any other would be refused. */
function bearerToken(name: string, value: string | undefined): string | undefined {
  const v = nonEmpty(value)
  if (v !== undefined && !/^[A-Za-z0-9._~+/-]+=*$/.test(v))
    throw new Error(`${name}: must be letters, digits and . _ ~ + / - (a bearer token)`)
  return v
}

function duration(name: string, value: string | undefined, fallback: string): string {
  const v = nonEmpty(value) ?? fallback
  const ms = parseDuration(v)
  if (ms === undefined || ms > MAX_STEP_TIMEOUT_MS) {
    throw new Error(`${name}: "${v}" must be a whole number of seconds, minutes, hours or days up to 90 days ("90s", "30m", "2h", "7d")`)
  }
  return v
}

function retention(value: string | undefined): string | undefined {
  const v = nonEmpty(value)
  if (v !== undefined && parseDuration(v) === undefined) {
    throw new Error(`LOOM_ACTIVITY_RETENTION: "${v}" must be a whole number of hours or days ("720h", "90d")`)
  }
  return v
}

/** The longest sign-in `LOOM_SESSION_TTL` may ask for. */
const MAX_SESSION_TTL_MS = 30 * 24 * 3600_000

function sessionTtl(value: string | undefined): number {
  const v = nonEmpty(value) ?? DEFAULT_SESSION_TTL
  const ms = parseDuration(v)
  if (ms === undefined || ms < 60_000 || ms > MAX_SESSION_TTL_MS) {
    throw new Error(`LOOM_SESSION_TTL: "${v}" must be a whole number of minutes or hours from 1 minute to 30 days ("30m", "12h")`)
  }
  return ms
}

/** The variable each of `tokenIdentities`' option names comes from, for its error messages. */
const VARIABLE_OF_OPTION: Record<string, string> = {
  token: 'LOOM_TOKEN',
  workerToken: 'LOOM_WORKER_TOKEN',
  operators: 'LOOM_OPERATORS',
  workers: 'LOOM_WORKERS',
}

function namedTokens(name: string, value: string | undefined): NamedTokens | undefined {
  const v = nonEmpty(value)
  if (v === undefined) return undefined
  const named = parseNamedTokens(v, name)
  return Object.keys(named).length > 0 ? named : undefined
}

function workerUrls(value: string | undefined): string[] | undefined {
  const v = nonEmpty(value)
  if (v === undefined) return undefined
  const list = v
    .split(',')
    .map((entry) => entry.trim())
    .filter(Boolean)
  for (const entry of list) {
    try {
      workerUrlPolicy([entry])
    } catch (error) {
      const reason = LoomError.is(error) ? error.message.replace(/^[^:]*: /, '') : String(error)
      throw new Error(`LOOM_WORKER_URLS: "${redactUrl(entry)}" ${reason}`)
    }
  }
  return list.length > 0 ? list : undefined
}

function url(name: string, value: string | undefined, protocols: string[]): string | undefined {
  const v = nonEmpty(value)
  if (v === undefined) return undefined
  let parsed: URL
  try {
    parsed = new URL(v)
  } catch {
    throw new Error(`${name}: "${v}" is not a URL`)
  }
  if (!protocols.includes(parsed.protocol)) {
    throw new Error(`${name}: "${v}" must start with ${protocols.map((p) => `${p}//`).join(' or ')}`)
  }
  return v
}

/**
 * Reads the console's configuration; throws an error naming the variable when one is malformed.
 *
 * @example
 * const config = readConfig(process.env)
 * if (config.loomUrl) console.log('remote Loom at', config.loomUrl)
 */
export function readConfig(env: Env, cwd = process.cwd()): ConsoleConfig {
  const loomUrl = url('LOOM_URL', env.LOOM_URL, ['http:', 'https:'])
  const port = nonEmpty(env.PORT) ?? '3000'
  if (!/^\d+$/.test(port)) throw new Error(`PORT: "${port}" is not a port number`)
  const config: ConsoleConfig = {
    temporalNamespace: nonEmpty(env.TEMPORAL_NAMESPACE) ?? 'default',
    temporalTaskQueue: nonEmpty(env.LOOM_TEMPORAL_TASK_QUEUE) ?? 'loom',
    databaseSchema: identifier('LOOM_DB_SCHEMA', env.LOOM_DB_SCHEMA, 'loom'),
    mqttTopicPrefix: topicPrefix('LOOM_MQTT_TOPIC_PREFIX', env.LOOM_MQTT_TOPIC_PREFIX, 'loom'),
    dataDir: path.resolve(cwd, nonEmpty(env.LOOM_DATA_DIR) ?? '.loom-data'),
    instanceId: nonEmpty(env.LOOM_INSTANCE_ID) ?? `${hostname()}:${port}`,
    stepTimeout: duration('LOOM_STEP_TIMEOUT', env.LOOM_STEP_TIMEOUT, '24h'),
    sessionTtlMs: sessionTtl(env.LOOM_SESSION_TTL),
  }
  if (loomUrl) config.loomUrl = loomUrl.replace(/\/+$/, '')
  const activityRetention = retention(env.LOOM_ACTIVITY_RETENTION)
  if (activityRetention) config.activityRetention = activityRetention
  const token = bearerToken('LOOM_TOKEN', env.LOOM_TOKEN)
  if (token) config.token = token
  const workerToken = bearerToken('LOOM_WORKER_TOKEN', env.LOOM_WORKER_TOKEN)
  if (workerToken) config.workerToken = workerToken
  const operators = namedTokens('LOOM_OPERATORS', env.LOOM_OPERATORS)
  if (operators) config.operators = operators
  const workers = namedTokens('LOOM_WORKERS', env.LOOM_WORKERS)
  if (workers) config.workers = workers
  // Token syntax and one actor per token, checked now so a bad value stops the start.
  identitiesOf(config)
  const allowedWorkerUrls = workerUrls(env.LOOM_WORKER_URLS)
  if (allowedWorkerUrls) config.allowedWorkerUrls = allowedWorkerUrls
  const databaseUrl = url('DATABASE_URL', env.DATABASE_URL, ['postgres:', 'postgresql:'])
  if (databaseUrl) config.databaseUrl = databaseUrl
  const temporalAddress = nonEmpty(env.TEMPORAL_ADDRESS)
  if (temporalAddress) {
    if (!/^[^\s/:]+:\d+$/.test(temporalAddress)) throw new Error(`TEMPORAL_ADDRESS: "${temporalAddress}" must be host:port`)
    config.temporalAddress = temporalAddress
  }
  const mqttUrl = url('MQTT_URL', env.MQTT_URL, ['mqtt:', 'mqtts:', 'ws:', 'wss:'])
  if (mqttUrl) config.mqttUrl = mqttUrl
  return config
}

/**
 * Who holds which of the configured tokens: core's `tokenIdentities` over `LOOM_TOKEN`,
 * `LOOM_WORKER_TOKEN`, `LOOM_OPERATORS` and `LOOM_WORKERS`. Throws an error naming the
 * variable for a token given twice or one a bearer header could not carry.
 */
export function identitiesOf(config: Pick<ConsoleConfig, 'token' | 'workerToken' | 'operators' | 'workers'>): Identities {
  try {
    return tokenIdentities({ token: config.token, workerToken: config.workerToken, operators: config.operators, workers: config.workers })
  } catch (error) {
    if (!LoomError.is(error)) throw error
    throw new Error(error.message.replace(/^(\w+):/, (_whole, option: string) => `${VARIABLE_OF_OPTION[option] ?? option}:`))
  }
}

/** The operators who may sign in to this console, by name: `operator` for `LOOM_TOKEN`, then the named ones. */
export function operatorNames(config: Pick<ConsoleConfig, 'token' | 'operators'>): string[] {
  return [...(config.token ? ['operator'] : []), ...Object.keys(config.operators ?? {})]
}

/** What the console asks of its callers, in one line for the start banner. */
function describeAuth(config: ConsoleConfig): string {
  const operators = operatorNames(config)
  const workers = [...(config.workerToken ? ['worker'] : []), ...Object.keys(config.workers ?? {})]
  if (operators.length === 0 && workers.length === 0) {
    return 'open: no token is set (LOOM_TOKEN, LOOM_OPERATORS, LOOM_WORKER_TOKEN, LOOM_WORKERS), so anyone who reaches this console acts as operator "anonymous"'
  }
  const parts = [
    operators.length > 0
      ? `operators ${operators.join(', ')} sign in with their tokens`
      : 'no operator token is set (LOOM_TOKEN or LOOM_OPERATORS), so no one can sign in',
  ]
  if (workers.length > 0) parts.push(`workers ${workers.join(', ')}`)
  return parts.join('; ')
}

/** One line per part, for the start banner: what this console runs on. */
export function describeConfig(config: ConsoleConfig): string[] {
  if (config.loomUrl) return [`Loom API: remote, ${config.loomUrl}`, `auth: ${describeAuth(config)}`]
  return [
    `store: ${config.databaseUrl ? `PostgreSQL (${redact(config.databaseUrl)})` : `PGlite in ${config.dataDir}`}`,
    `engine: ${config.temporalAddress ? `Temporal at ${config.temporalAddress}` : 'local (in-process)'}`,
    `announcements: ${config.mqttUrl ? `MQTT at ${redact(config.mqttUrl)}` : 'HTTP'}`,
    `auth: ${describeAuth(config)}`,
    ...(config.allowedWorkerUrls ? [`worker URLs: only ${config.allowedWorkerUrls.map(redactUrl).join(', ')}`] : []),
  ]
}

function redact(value: string): string {
  try {
    const u = new URL(value)
    if (u.password) u.password = '***'
    return u.toString()
  } catch {
    return value
  }
}
