import { describe, expect, it } from 'vitest'
import { LOOM_ERROR_CODES, LoomError } from './errors'

describe('LoomError', () => {
  it('carries its code, message, details and cause', () => {
    const cause = new Error('socket closed')
    const error = new LoomError('unavailable', 'store: socket closed', { cause, details: { dependency: 'store' } })
    expect(error).toBeInstanceOf(Error)
    expect(error.name).toBe('LoomError')
    expect(error.code).toBe('unavailable')
    expect(error.message).toBe('store: socket closed')
    expect(error.details).toEqual({ dependency: 'store' })
    expect(error.cause).toBe(cause)
    expect(JSON.parse(JSON.stringify(error))).toEqual({ error: 'store: socket closed', code: 'unavailable' })
  })

  it('is recognised by its brand, also when it comes from another copy of the package', () => {
    // A second copy of @loom/core defines its own class, but shares the global symbol.
    const brand = Symbol.for('@loom/core/LoomError')
    const fromOtherCopy = Object.assign(new Error('x'), { [brand]: true, code: 'conflict' })
    expect(LoomError.is(fromOtherCopy)).toBe(true)
    expect(LoomError.is(fromOtherCopy, 'conflict')).toBe(true)
    expect(LoomError.is(fromOtherCopy, 'not_found')).toBe(false)
    expect(fromOtherCopy instanceof LoomError).toBe(false)
  })

  it('is not fooled by look-alikes', () => {
    expect(LoomError.is(new Error('conflict'))).toBe(false)
    expect(LoomError.is({ code: 'conflict', message: 'x' })).toBe(false)
    expect(LoomError.is(null)).toBe(false)
    expect(LoomError.is('conflict')).toBe(false)
  })

  it('has a closed set of codes', () => {
    expect(LOOM_ERROR_CODES).toEqual(['invalid', 'not_found', 'conflict', 'unauthorized', 'forbidden', 'too_large', 'unavailable'])
    expect(LoomError.isCode('conflict')).toBe(true)
    expect(LoomError.isCode('teapot')).toBe(false)
  })
})
