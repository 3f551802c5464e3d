import { DEFAULT_LIMITS, LoomError } from '@loom/core'
import { describe, expect, it } from 'vitest'
import { DEFAULT_MAX_PAYLOAD_BYTES, checkToken, decode, failure, maxPayloadBytesOf, parseReply, tokenFor } from './wire'

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
    ['not JSON', '{"id":', /^body: malformed JSON/],
    ['nested past the depth limit', `${'['.repeat(33)}${']'.repeat(33)}`, /^body: nested deeper than the limit of 32 \(limits\.depth\)$/],
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

describe('decode limits', () => {
  const catching = (run: () => unknown) => {
    try {
      run()
    } catch (error) {
      return error
    }
    throw new Error('did not throw')
  }

  it('refuses a payload over maxPayloadBytes as too_large, naming the limit, without reading it', () => {
    const error = catching(() => decode(bytes('{"id":"abcdef"}'), { maxPayloadBytes: 10, limits: DEFAULT_LIMITS }))
    expect(LoomError.is(error, 'too_large')).toBe(true)
    expect((error as Error).message).toBe('body: 15 bytes, larger than the limit of 10 bytes (maxPayloadBytes)')
    // At the limit it is read.
    expect(decode(bytes('{"id":"abc"}'), { maxPayloadBytes: 12, limits: DEFAULT_LIMITS }).body).toEqual({ id: 'abc' })
  })

  it('refuses bytes that are not UTF-8 instead of storing U+FFFD', () => {
    const payload = new Uint8Array([...bytes('{"id":"'), 0xff, 0xfe, ...bytes('"}')])
    const error = catching(() => decode(payload))
    expect(LoomError.is(error, 'invalid')).toBe(true)
    expect((error as Error).message).toBe('body: is not valid UTF-8')
  })

  it('measures depth against the limit it is given', () => {
    expect(decode(bytes('{"a":[[1]]}'), { maxPayloadBytes: 100, limits: { ...DEFAULT_LIMITS, depth: 3 } }).body).toEqual({ a: [[1]] })
    expect(
      (catching(() => decode(bytes('{"a":[[[1]]]}'), { maxPayloadBytes: 100, limits: { ...DEFAULT_LIMITS, depth: 3 } })) as Error).message,
    ).toBe('body: nested deeper than the limit of 3 (limits.depth)')
  })

  it('defaults maxPayloadBytes to 4 MiB and refuses a value that is not a positive integer', () => {
    expect(maxPayloadBytesOf(undefined)).toBe(4 * 1024 * 1024)
    expect(DEFAULT_MAX_PAYLOAD_BYTES).toBe(4_194_304)
    expect(maxPayloadBytesOf(1)).toBe(1)
    for (const bad of [0, -1, 1.5, Number.NaN]) {
      const error = catching(() => maxPayloadBytesOf(bad))
      expect(LoomError.is(error, 'invalid')).toBe(true)
      expect((error as Error).message).toMatch(/^maxPayloadBytes: must be a positive integer/)
    }
  })
})

describe('tokenFor', () => {
  it('sends the one token to every worker, or the one the function chooses for the target', () => {
    expect(tokenFor('shared', { workerApp: 'charts', owner: 'team-a' })).toBe('shared')
    expect(tokenFor(undefined, { workerApp: 'charts' })).toBeUndefined()
    expect(tokenFor('', { workerApp: 'charts' })).toBeUndefined()
    const perOwner = (target: { owner?: string }) => ({ 'team-a': 'tok-a', 'team-b': 'tok-b' })[target.owner ?? ''] ?? undefined
    expect(tokenFor(perOwner, { workerApp: 'charts', owner: 'team-a' })).toBe('tok-a')
    expect(tokenFor(perOwner, { workerApp: 'charts', owner: 'team-b' })).toBe('tok-b')
    expect(tokenFor(perOwner, { workerApp: 'charts' })).toBeUndefined()
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
