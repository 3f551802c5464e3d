/**
 * What the console runs on, read from the environment once at start. With nothing set it
 * hosts Loom in-process on embedded defaults (PGlite in a data folder, the local engine);
 * each variable switches one part to a real service.
 */
import { hostname } from 'node:os'
import path from 'node:path'
import { MAX_STEP_TIMEOUT_MS, parseDuration } from '@loom/core'

export interface ConsoleConfig {
  /** A remote Loom API (`LOOM_URL`); when set the console hosts nothing and talks to it. */
  loomUrl?: string
  /** Bearer token for operators (`LOOM_TOKEN`); when set the console asks for it before showing anything. */
  token?: string
  /** Bearer token for worker routes (`LOOM_WORKER_TOKEN`); defaults to `token` in the API. */
  workerToken?: string
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
    throw new Error(`${name}: "${v}" must be a whole number of seconds, minutes or hours up to 90 days ("90s", "30m", "2h")`)
  }
  return v
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
  }
  if (loomUrl) config.loomUrl = loomUrl.replace(/\/+$/, '')
  const token = bearerToken('LOOM_TOKEN', env.LOOM_TOKEN)
  if (token) config.token = token
  const workerToken = bearerToken('LOOM_WORKER_TOKEN', env.LOOM_WORKER_TOKEN)
  if (workerToken) config.workerToken = workerToken
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

/** One line per part, for the start banner: what this console runs on. */
export function describeConfig(config: ConsoleConfig): string[] {
  if (config.loomUrl) return [`Loom API: remote, ${config.loomUrl}`]
  return [
    `store: ${config.databaseUrl ? `PostgreSQL (${redact(config.databaseUrl)})` : `PGlite in ${config.dataDir}`}`,
    `engine: ${config.temporalAddress ? `Temporal at ${config.temporalAddress}` : 'local (in-process)'}`,
    `announcements: ${config.mqttUrl ? `MQTT at ${redact(config.mqttUrl)}` : 'HTTP'}`,
    `auth: ${config.token ? 'LOOM_TOKEN required' : 'open (set LOOM_TOKEN to require a token)'}`,
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
