import { LoomError } from '@loom/core'
import { describe, expect, it } from 'vitest'
import { checkToken, decode, failure, parseReply } from './wire'

const bytes = (text: string) => new TextEncoder().encode(text)

describe('checkToken', () => {
  it('passes everything when no token is configured', () => {
    expect(() => checkToken({}, undefined)).not.toThrow()
  })

  it('refuses a missing or different token as unauthorized', () => {
    expect(() => checkToken({}, 't')).toThrow('token: missing')
    expect(() => checkToken({ token: 'x' }, 't')).toThrow('token: does not match')
    try {
      checkToken({ token: 'x' }, 't')
    } catch (error) {
      expect(LoomError.is(error, 'unauthorized')).toBe(true)
    }
    expect(() => checkToken({ token: 't' }, 't')).not.toThrow()
  })
})

describe('decode', () => {
  it('splits the transport fields off the body', () => {
    const { body, transport } = decode(bytes(JSON.stringify({ id: 'a', token: 't', replyTo: 'loom/replies/1', correlationId: 'c1' })))
    expect(body).toEqual({ id: 'a' })
    expect(transport).toEqual({ token: 't', replyTo: 'loom/replies/1', correlationId: 'c1' })
  })

  it('drops transport fields of the wrong type and reply topics with wildcards', () => {
    const { transport } = decode(bytes(JSON.stringify({ token: 7, replyTo: 'loom/#', correlationId: 12 })))
    expect(transport).toEqual({ correlationId: '12' })
  })

  it.each([
    ['not JSON', '{"id":', /^body: not JSON/],
    ['an array', '[1]', /^body: must be a JSON object$/],
    ['null', 'null', /^body: must be a JSON object$/],
  ])('refuses %s as invalid', (_what, payload, message) => {
    let caught: unknown
    try {
      decode(bytes(payload))
    } catch (error) {
      caught = error
    }
    expect(LoomError.is(caught, 'invalid')).toBe(true)
    expect((caught as Error).message).toMatch(message)
  })
})

describe('replies', () => {
  it('parses answers and ignores anything else', () => {
    expect(parseReply(bytes('{"correlationId":"c","ok":true,"result":{"steps":[]}}'))).toEqual({
      correlationId: 'c',
      ok: true,
      result: { steps: [] },
    })
    expect(parseReply(bytes('{"correlationId":"c","ok":false,"error":"no","code":"unauthorized"}'))).toEqual({
      correlationId: 'c',
      ok: false,
      error: 'no',
      code: 'unauthorized',
    })
    expect(parseReply(bytes('{"correlationId":"c","ok":false,"code":"teapot"}'))).toMatchObject({ code: 'unavailable' })
    expect(parseReply(bytes('hello'))).toBeUndefined()
    expect(parseReply(bytes('{"ok":true}'))).toBeUndefined()
  })

  it('keeps a LoomError code in a failure and calls anything else unavailable', () => {
    expect(failure(new LoomError('invalid', 'stepName: must not be empty'))).toEqual({
      ok: false,
      code: 'invalid',
      error: 'stepName: must not be empty',
    })
    expect(failure(new Error('disk full'))).toEqual({ ok: false, code: 'unavailable', error: 'disk full' })
  })
})
