import { existsSync, readFileSync, readdirSync } from 'node:fs'
import { dirname, join, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'
import { describe, expect, it } from 'vitest'
import { renderReference } from '../../scripts/api-reference-render'

const root = resolve(dirname(fileURLToPath(import.meta.url)), '../..')

function markdownFiles(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((entry) => {
    const path = join(dir, entry.name)
    if (entry.isDirectory()) return markdownFiles(path)
    return entry.name.endsWith('.md') ? [path] : []
  })
}

describe('docs', () => {
  it('keeps the HTTP API reference equal to what the OpenAPI document generates', () => {
    const { markdown, json } = renderReference()
    expect(readFileSync(join(root, 'docs/reference/http-api.md'), 'utf8')).toBe(markdown)
    expect(readFileSync(join(root, 'docs/reference/openapi.json'), 'utf8')).toBe(json)
  })

  const files = [join(root, 'README.md'), ...markdownFiles(join(root, 'docs'))]
  it.each(files.map((f) => [f.slice(root.length + 1), f]))('%s links only to files that exist', (_name, file) => {
    const text = readFileSync(file, 'utf8')
    const broken: string[] = []
    for (const [, target] of text.matchAll(/\]\(([^)\s]+)\)/g)) {
      if (/^(https?:|mailto:|#)/.test(target!)) continue
      const path = target!.split('#')[0]!
      if (!existsSync(resolve(dirname(file), path))) broken.push(target!)
    }
    expect(broken).toEqual([])
  })
})
