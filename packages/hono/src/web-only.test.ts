import { build } from 'esbuild'
import { readdirSync, readFileSync } from 'node:fs'
import { fileURLToPath } from 'node:url'
import { describe, expect, it } from 'vitest'

/** This package runs on Node, Bun and workerd alike: Web-standard APIs only. */
describe('Web APIs only', () => {
  const dir = fileURLToPath(new URL('.', import.meta.url))
  const sources = readdirSync(dir).filter((f) => f.endsWith('.ts') && !f.endsWith('.test.ts'))

  it('bundles with its dependencies for the browser platform, where a Node built-in does not resolve', async () => {
    const result = await build({
      entryPoints: [`${dir}index.ts`],
      bundle: true,
      platform: 'browser',
      format: 'esm',
      write: false,
      metafile: true,
      logLevel: 'silent',
    })
    const inputs = Object.keys(result.metafile.inputs)
    expect(inputs.filter((input) => input.startsWith('node:') || !input.includes('/'))).toEqual([])
    expect(inputs.some((input) => input.includes('src/index.ts'))).toBe(true)
  })

  it('uses no Node globals in its sources', () => {
    expect(sources.length).toBeGreaterThan(1)
    for (const file of sources) {
      // Comments may show how a caller passes process.env; the code itself may not touch it.
      const text = readFileSync(`${dir}${file}`, 'utf8')
        .replace(/\/\*[\s\S]*?\*\//g, '')
        .replace(/^\s*\/\/.*$/gm, '')
      expect(text, file).not.toMatch(/from ['"]node:|require\(|\bBuffer\b|\bprocess\.|\b__dirname\b/)
    }
  })
})
