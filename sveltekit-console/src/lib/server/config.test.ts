import { hostname } from 'node:os'
import { describe, expect, it } from 'vitest'
import { describeConfig, readConfig } from './config'

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
    })
    expect(describeConfig(config)).toEqual([
      'store: PGlite in /srv/loom/.loom-data',
      'engine: local (in-process)',
      'announcements: HTTP',
      'auth: open (set LOOM_TOKEN to require a token)',
    ])
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
      },
      '/srv',
    )
    expect(config).toMatchObject({
      instanceId: 'loom-api-0',
      stepTimeout: '30m',
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
    expect(describeConfig(config)).toEqual(['Loom API: remote, https://loom.example.com/api'])
  })

  it.each([
    [{ LOOM_URL: 'ftp://x' }, 'LOOM_URL: "ftp://x" must start with http:// or https://'],
    [{ DATABASE_URL: 'mysql://x' }, 'DATABASE_URL: "mysql://x" must start with postgres:// or postgresql://'],
    [{ TEMPORAL_ADDRESS: 'http://temporal' }, 'TEMPORAL_ADDRESS: "http://temporal" must be host:port'],
    [{ PORT: 'eighty' }, 'PORT: "eighty" is not a port number'],
    [{ LOOM_STEP_TIMEOUT: '1 day' }, 'LOOM_STEP_TIMEOUT: "1 day" must be a whole number of seconds, minutes or hours up to 90 days'],
    [{ LOOM_STEP_TIMEOUT: '2161h' }, 'LOOM_STEP_TIMEOUT: "2161h" must be a whole number of seconds, minutes or hours up to 90 days'],
    [{ LOOM_TOKEN: 'pass word' }, 'LOOM_TOKEN: must be letters, digits and . _ ~ + / - (a bearer token)'],
    [{ LOOM_WORKER_TOKEN: 'p@ss' }, 'LOOM_WORKER_TOKEN: must be letters, digits and . _ ~ + / - (a bearer token)'],
    [{ LOOM_DB_SCHEMA: 'Loom; drop' }, 'LOOM_DB_SCHEMA: "Loom; drop" must be a lower-case SQL identifier (a-z, 0-9, _)'],
    [{ LOOM_MQTT_TOPIC_PREFIX: 'loom/#' }, 'LOOM_MQTT_TOPIC_PREFIX: "loom/#" must be MQTT topic levels without wildcards or outer slashes'],
  ])('refuses %o with an error naming the variable', (env, message) => {
    expect(() => readConfig(env)).toThrow(message)
  })

  it('treats empty variables as unset', () => {
    expect(readConfig({ LOOM_TOKEN: '', DATABASE_URL: '  ', LOOM_URL: '' })).not.toHaveProperty('token')
    expect(readConfig({ DATABASE_URL: '  ' })).not.toHaveProperty('databaseUrl')
  })
})
