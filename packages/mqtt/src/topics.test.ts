import { LoomError } from '@loom/core'
import { describe, expect, it } from 'vitest'
import { topicMatches, topicPrefix, topics, workerAppLevel } from './topics'

describe('topicMatches', () => {
  it.each([
    ['loom/announce/+', 'loom/announce/app-chart', true],
    ['loom/announce/+', 'loom/announce', false],
    ['loom/announce/+', 'loom/announce/app-chart/extra', false],
    ['loom/#', 'loom/workers/charts/dispatch', true],
    ['loom/#', 'loom', true],
    ['loom/workers/+/dispatch', 'loom/workers/charts/dispatch', true],
    ['loom/workers/+/dispatch', 'loom/workers/charts/dry-run', false],
    ['loom/replies/abc', 'loom/replies/abc', true],
    ['loom/replies/abc', 'loom/replies/abcd', false],
    ['+/announce/x', '$SYS/announce/x', false],
    ['#', '$SYS/broker/uptime', false],
  ])('%s matches %s: %s', (filter, topic, expected) => {
    expect(topicMatches(filter, topic)).toBe(expected)
  })
})

describe('topicPrefix', () => {
  it('defaults to loom and drops trailing slashes', () => {
    expect(topicPrefix(undefined)).toBe('loom')
    expect(topicPrefix('acme/loom/')).toBe('acme/loom')
  })

  it.each(['', '/', 'loom/+', 'loom/#', '$SYS'])('refuses %j as invalid, naming topicPrefix', (prefix) => {
    let caught: unknown
    try {
      topicPrefix(prefix)
    } catch (error) {
      caught = error
    }
    expect(LoomError.is(caught, 'invalid')).toBe(true)
    expect((caught as LoomError).message).toMatch(/^topicPrefix: /)
  })
})

describe('topics', () => {
  it('builds the topics of the worker protocol', () => {
    expect(topics.announce('loom', 'app-chart')).toBe('loom/announce/app-chart')
    expect(topics.dispatch('loom', 'charts')).toBe('loom/workers/charts/dispatch')
    expect(topics.dryRun('loom', 'charts')).toBe('loom/workers/charts/dry-run')
  })

  it('refuses a worker app that would change the topic, naming workerApp', () => {
    expect(() => workerAppLevel('charts/#')).toThrow(/^workerApp: /)
    expect(() => workerAppLevel('+')).toThrow(/^workerApp: /)
    expect(workerAppLevel('charts-v2')).toBe('charts-v2')
  })
})
