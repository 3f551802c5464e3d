import { describe, expect, it } from 'vitest'
import { tokensMatch } from './tokens'

describe('tokensMatch', () => {
  it('matches only the same token', () => {
    expect(tokensMatch('s3cret', 's3cret')).toBe(true)
    expect(tokensMatch('s3cret', 's3creT')).toBe(false)
    expect(tokensMatch('s3cre', 's3cret')).toBe(false)
    expect(tokensMatch('s3crets3cret', 's3cret')).toBe(false)
    expect(tokensMatch('', 's3cret')).toBe(false)
    expect(tokensMatch(undefined, 's3cret')).toBe(false)
    expect(tokensMatch('jeton-é', 'jeton-é')).toBe(true)
  })
})
