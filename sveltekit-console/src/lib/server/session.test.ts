import { describe, expect, it } from 'vitest'
import { safeRedirect, sessionValue, tokenMatches, validSession } from './session'

describe('console sign-in', () => {
  it('accepts the session cookie made from the token, and nothing else', () => {
    const cookie = sessionValue('s3cret')
    expect(cookie).not.toContain('s3cret')
    expect(validSession('s3cret', cookie)).toBe(true)
    expect(validSession('other', cookie)).toBe(false)
    expect(validSession('s3cret', cookie.slice(1))).toBe(false)
    expect(validSession('s3cret', undefined)).toBe(false)
  })

  it('compares tokens exactly', () => {
    expect(tokenMatches('s3cret', 's3cret')).toBe(true)
    expect(tokenMatches('s3cret', 's3cret ')).toBe(false)
    expect(tokenMatches('s3cret', '')).toBe(false)
  })

  it('returns only to paths of this console after signing in', () => {
    expect(safeRedirect('/migrations/app-chart?status=queued')).toBe('/migrations/app-chart?status=queued')
    expect(safeRedirect('https://evil.example')).toBe('/')
    expect(safeRedirect('//evil.example/x')).toBe('/')
    expect(safeRedirect('/\\evil.example')).toBe('/')
    expect(safeRedirect(null)).toBe('/')
  })
})
