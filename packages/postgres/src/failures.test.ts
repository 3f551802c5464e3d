import { LoomError } from '@loom/core'
import { describe, expect, it } from 'vitest'
import { guard } from './failures'

describe('guard', () => {
  it('turns connection failures and terminated backends into unavailable, naming the code', async () => {
    for (const code of ['ECONNREFUSED', 'CONNECTION_CLOSED', '57P01', '08006', '53300']) {
      const error = await guard(() => Promise.reject(Object.assign(new Error('boom'), { code }))).catch((e: unknown) => e)
      expect(LoomError.is(error, 'unavailable')).toBe(true)
      expect((error as LoomError).details).toEqual({ dependency: 'postgres', code })
    }
  })

  it('rethrows other errors as they are, so a bug is not mistaken for an outage', async () => {
    const bug = Object.assign(new Error('syntax error'), { code: '42601' })
    await expect(guard(() => Promise.reject(bug))).rejects.toBe(bug)
  })

  it('fails a call that has no answer by the deadline with unavailable', async () => {
    const error = await guard(() => new Promise<never>(() => {}), 20).catch((e: unknown) => e)
    expect(LoomError.is(error, 'unavailable')).toBe(true)
    expect((error as LoomError).details).toEqual({ dependency: 'postgres', code: 'TIMEOUT' })
    await expect(guard(() => Promise.resolve('answered'), 1000)).resolves.toBe('answered')
  })
})
