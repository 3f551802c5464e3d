import { hostname } from 'node:os'
import { describe, expect, it } from 'vitest'
import { ANONYMOUS_OPERATOR } from '@loom/core'
import { describeConfig, identitiesOf, operatorNames, readConfig } from './config'

describe('readConfig', () => {
  it('defaults to the embedded setup: PGlite in .loom-data, local engine, no token', () => {
    const config = readConfig({}, '/srv/loom')
    expect(config).toEqual({
      dataDir: '/srv/loom/.loom-data',
      databaseSchema: 'loom',
      mqttTopicPrefix: 'loom',
      temporalNamespace: 'default',
      temporalTaskQueue: 'loom',
      instanceId: `${hostname()}:3000`,
      stepTimeout: '24h',
      sessionTtlMs: 12 * 3600_000,
    })
    expect(describeConfig(config)).toEqual([
      'store: PGlite in /srv/loom/.loom-data',
      'engine: local (in-process)',
      'announcements: HTTP',
      'auth: open: no token is set (LOOM_TOKEN, LOOM_OPERATORS, LOOM_WORKER_TOKEN, LOOM_WORKERS), so anyone who reaches this console acts as operator "anonymous"',
    ])
    expect(identitiesOf(config).authenticate(undefined)).toEqual(ANONYMOUS_OPERATOR)
  })

  it('switches each part to its service when its variable is set', () => {
    const config = readConfig(
      {
        DATABASE_URL: 'postgres://loom:secret@db:5432/loom',
        TEMPORAL_ADDRESS: 'temporal:7233',
        MQTT_URL: 'mqtt://broker:1883',
        LOOM_TOKEN: 'op-token',
        PORT: '8080',
        LOOM_DATA_DIR: 'data',
        LOOM_INSTANCE_ID: 'loom-api-0',
        LOOM_STEP_TIMEOUT: '30m',
        LOOM_ACTIVITY_RETENTION: '90d',
      },
      '/srv',
    )
    expect(config).toMatchObject({
      instanceId: 'loom-api-0',
      stepTimeout: '30m',
      activityRetention: '90d',
      databaseUrl: 'postgres://loom:secret@db:5432/loom',
      temporalAddress: 'temporal:7233',
      mqttUrl: 'mqtt://broker:1883',
      token: 'op-token',
      dataDir: '/srv/data',
    })
    // The password never reaches the log line.
    expect(describeConfig(config)[0]).toBe('store: PostgreSQL (postgres://loom:***@db:5432/loom)')
  })

  it('talks to a remote Loom with LOOM_URL', () => {
    const config = readConfig({ LOOM_URL: 'https://loom.example.com/api/' })
    expect(config.loomUrl).toBe('https://loom.example.com/api')
    expect(describeConfig(config)).toEqual([
      'Loom API: remote, https://loom.example.com/api',
      'auth: open: no token is set (LOOM_TOKEN, LOOM_OPERATORS, LOOM_WORKER_TOKEN, LOOM_WORKERS), so anyone who reaches this console acts as operator "anonymous"',
    ])
  })

  it.each([
    [{ LOOM_URL: 'ftp://x' }, 'LOOM_URL: "ftp://x" must start with http:// or https://'],
    [{ DATABASE_URL: 'mysql://x' }, 'DATABASE_URL: "mysql://x" must start with postgres:// or postgresql://'],
    [{ TEMPORAL_ADDRESS: 'http://temporal' }, 'TEMPORAL_ADDRESS: "http://temporal" must be host:port'],
    [{ PORT: 'eighty' }, 'PORT: "eighty" is not a port number'],
    [{ LOOM_STEP_TIMEOUT: '1 day' }, 'LOOM_STEP_TIMEOUT: "1 day" must be a whole number of seconds, minutes, hours or days up to 90 days'],
    [{ LOOM_STEP_TIMEOUT: '2161h' }, 'LOOM_STEP_TIMEOUT: "2161h" must be a whole number of seconds, minutes, hours or days up to 90 days'],
    [{ LOOM_ACTIVITY_RETENTION: 'a year' }, 'LOOM_ACTIVITY_RETENTION: "a year" must be a whole number of hours or days'],
    [{ LOOM_TOKEN: 'pass word' }, 'LOOM_TOKEN: must be letters, digits and . _ ~ + / - (a bearer token)'],
    [{ LOOM_WORKER_TOKEN: 'p@ss' }, 'LOOM_WORKER_TOKEN: must be letters, digits and . _ ~ + / - (a bearer token)'],
    [{ LOOM_DB_SCHEMA: 'Loom; drop' }, 'LOOM_DB_SCHEMA: "Loom; drop" must be a lower-case SQL identifier (a-z, 0-9, _)'],
    [{ LOOM_MQTT_TOPIC_PREFIX: 'loom/#' }, 'LOOM_MQTT_TOPIC_PREFIX: "loom/#" must be MQTT topic levels without wildcards or outer slashes'],
    [{ LOOM_OPERATORS: 'alice' }, 'LOOM_OPERATORS: each entry must be name:token'],
    [{ LOOM_OPERATORS: 'alice:' }, 'LOOM_OPERATORS: each entry must be name:token'],
    [{ LOOM_OPERATORS: 'al ice:tok' }, 'LOOM_OPERATORS: each entry must be name:token'],
    [{ LOOM_OPERATORS: 'alice:a,alice:b' }, 'LOOM_OPERATORS: alice is named twice'],
    [{ LOOM_OPERATORS: 'alice:p@ss' }, 'LOOM_OPERATORS: the token of alice must be a bearer token'],
    [{ LOOM_WORKERS: 'charts' }, 'LOOM_WORKERS: each entry must be name:token'],
    [{ LOOM_TOKEN: 'same', LOOM_OPERATORS: 'alice:same' }, "LOOM_OPERATORS: the token of operator alice is also operator operator's"],
    [{ LOOM_OPERATORS: 'alice:same', LOOM_WORKERS: 'charts:same' }, "LOOM_WORKERS: the token of worker charts is also operator alice's"],
    [{ LOOM_WORKER_URLS: 'ftp://charts.internal' }, 'LOOM_WORKER_URLS: "ftp://charts.internal" must be an http or https URL'],
    [{ LOOM_WORKER_URLS: 'http://charts.internal,charts' }, 'LOOM_WORKER_URLS: "charts" must be an absolute URL'],
    [{ LOOM_WORKER_URLS: 'http://u:pw@charts.internal' }, 'LOOM_WORKER_URLS: "http://charts.internal" must not carry credentials'],
    [{ LOOM_SESSION_TTL: 'forever' }, 'LOOM_SESSION_TTL: "forever" must be a whole number of minutes or hours from 1 minute to 30 days'],
    [{ LOOM_SESSION_TTL: '30s' }, 'LOOM_SESSION_TTL: "30s" must be a whole number of minutes or hours from 1 minute to 30 days'],
    [{ LOOM_SESSION_TTL: '721h' }, 'LOOM_SESSION_TTL: "721h" must be a whole number of minutes or hours from 1 minute to 30 days'],
  ])('refuses %o with an error naming the variable', (env, message) => {
    expect(() => readConfig(env)).toThrow(message)
  })

  it('reads named operators and workers, the worker URL allow-list and the session time to live', () => {
    const config = readConfig({
      LOOM_TOKEN: 'shared-op',
      LOOM_OPERATORS: ' alice:tok-a , bob:tok-b ',
      LOOM_WORKERS: 'app-charts:tok-c,topics:tok-t',
      LOOM_WORKER_TOKEN: 'tok-w',
      LOOM_WORKER_URLS: 'http://charts.internal:4000, https://workers.internal/loom/',
      LOOM_SESSION_TTL: '8h',
    })
    expect(config).toMatchObject({
      operators: { alice: 'tok-a', bob: 'tok-b' },
      workers: { 'app-charts': 'tok-c', topics: 'tok-t' },
      allowedWorkerUrls: ['http://charts.internal:4000', 'https://workers.internal/loom/'],
      sessionTtlMs: 8 * 3600_000,
    })
    const ids = identitiesOf(config)
    expect(ids.authenticate('tok-a')).toEqual({ kind: 'operator', name: 'alice' })
    expect(ids.authenticate('shared-op')).toEqual({ kind: 'operator', name: 'operator' })
    expect(ids.authenticate('tok-c')).toEqual({ kind: 'worker', name: 'app-charts' })
    expect(ids.authenticate('tok-w')).toEqual({ kind: 'worker', name: 'worker' })
    expect(ids.authenticate('nope')).toBeNull()
    expect(ids.authenticate(undefined)).toBeNull()
    expect(ids.workerToken('topics')).toBe('tok-t')
    expect(ids.workerToken('unnamed')).toBeUndefined()
    expect(ids.workerToken(undefined)).toBe('tok-w')
    expect(operatorNames(config)).toEqual(['operator', 'alice', 'bob'])
    expect(describeConfig(config)).toContain(
      'auth: operators operator, alice, bob sign in with their tokens; workers worker, app-charts, topics',
    )
    expect(describeConfig(config)).toContain('worker URLs: only http://charts.internal:4000, https://workers.internal/loom/')
    // No token ever reaches the banner.
    expect(describeConfig(config).join('\n')).not.toMatch(/tok-|shared-op/)
  })

  it('says when only worker tokens are set: no one can sign in, nothing is open', () => {
    const config = readConfig({ LOOM_WORKER_TOKEN: 'tok-w' })
    expect(identitiesOf(config).open).toBe(false)
    expect(identitiesOf(config).authenticate(undefined)).toBeNull()
    expect(describeConfig(config)).toContain(
      'auth: no operator token is set (LOOM_TOKEN or LOOM_OPERATORS), so no one can sign in; workers worker',
    )
  })

  it('treats empty variables as unset', () => {
    expect(readConfig({ LOOM_TOKEN: '', DATABASE_URL: '  ', LOOM_URL: '' })).not.toHaveProperty('token')
    expect(readConfig({ DATABASE_URL: '  ' })).not.toHaveProperty('databaseUrl')
    const empty = readConfig({ LOOM_OPERATORS: ' ', LOOM_WORKERS: '', LOOM_WORKER_URLS: ' ', LOOM_SESSION_TTL: '' })
    expect(empty).not.toHaveProperty('operators')
    expect(empty).not.toHaveProperty('workers')
    expect(empty).not.toHaveProperty('allowedWorkerUrls')
    expect(empty.sessionTtlMs).toBe(12 * 3600_000)
  })
})
