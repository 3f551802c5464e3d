import { describe, expect, it } from 'vitest'
import { safeHref, safeRedirect } from './links'

describe('safeHref', () => {
  it.each([
    ['https://github.com/acme/gitops/pull/12', 'https://github.com/acme/gitops/pull/12'],
    ['http://git.internal/pr/3', 'http://git.internal/pr/3'],
    ['  https://example.com/a b ', 'https://example.com/a%20b'],
  ])('links %s', (url, href) => {
    expect(safeHref(url)).toBe(href)
  })

  it.each([
    'javascript:alert(1)',
    'JavaScript:alert(1)',
    ' javascript:alert(1)',
    'java\tscript:alert(1)',
    'java\nscript:alert(1)',
    'data:text/html,<script>alert(1)</script>',
    'vbscript:msgbox(1)',
    'file:///etc/passwd',
    'ftp://example.com/x',
    '//evil.example/x',
    '/relative/path',
    'not a url',
    '',
  ])('renders %j as text', (url) => {
    expect(safeHref(url)).toBeUndefined()
  })

  it('renders what is not a string as text', () => {
    expect(safeHref(undefined)).toBeUndefined()
    expect(safeHref(null)).toBeUndefined()
    expect(safeHref({ toString: () => 'https://x' })).toBeUndefined()
  })
})

describe('safeRedirect', () => {
  it.each([
    ['/migrations/app-chart?status=queued', '/migrations/app-chart?status=queued'],
    ['/', '/'],
    ['/runs/app-chart__billing-api#step-2', '/runs/app-chart__billing-api#step-2'],
    ['/migrations/a%20b', '/migrations/a%20b'],
    // Dot segments resolve on the console's own origin.
    ['/a/../runs', '/runs'],
  ])('returns to %s', (target, expected) => {
    expect(safeRedirect(target)).toBe(expected)
  })

  it.each([
    'https://evil.example',
    'http://evil.example/x',
    '//evil.example/x',
    '///evil.example/x',
    '/\\evil.example',
    '\\\\evil.example',
    '/%09/evil.example',
    '/\t/evil.example',
    '/\n/evil.example',
    '/\r\n/evil.example',
    '/%0a/evil.example',
    '/%0d%0a/evil.example',
    '/%2F/evil.example',
    '/%2f/evil.example',
    '/%252F/evil.example',
    '/%25252F%25252Fevil.example',
    '/%5Cevil.example',
    '/%5c%5cevil.example',
    '/%00/evil.example',
    '/\u0000/evil.example',
    '/\u007f/evil.example',
    '/\u0085/evil.example',
    '/%E0%A4%A',
    'javascript:alert(1)',
    'evil.example',
    '',
  ])('refuses %j', (target) => {
    expect(safeRedirect(target)).toBe('/')
  })

  it('refuses what is not there and what is too long', () => {
    expect(safeRedirect(null)).toBe('/')
    expect(safeRedirect(undefined)).toBe('/')
    expect(safeRedirect(`/${'a'.repeat(5000)}`)).toBe('/')
  })

  it('refuses a target still changing after several rounds of decoding', () => {
    let target = '/x'
    for (let i = 0; i < 6; i++) target = target.replace(/%/g, '%25').replace('/x', '/%78')
    expect(safeRedirect(target)).toBe('/')
  })
})
