/**
 * The published packages as consumers get them: publint and attw on each, the package.json
 * fields a registry page and a bundler read, and `changeset version` bumping the fixed @loom/*
 * group together (in a copy, never this tree). The install-and-run test is tests/consumer.
 */
import { execFileSync } from 'node:child_process'
import { cpSync, mkdtempSync, readFileSync, readdirSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { dirname, join, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'
import { describe, expect, it } from 'vitest'
// @ts-expect-error a plain .mjs script without types
import { PACKAGES, checkPackage } from '../../scripts/check-packages.mjs'

const root = resolve(dirname(fileURLToPath(import.meta.url)), '../..')
const sh = (command: string, args: string[], cwd: string, env: NodeJS.ProcessEnv = process.env) =>
  execFileSync(command, args, { cwd, env, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'], maxBuffer: 64 * 1024 * 1024 })

const published: [string, string][] = (PACKAGES as string[]).map((dir) => [dir.slice(root.length + 1), dir])
const manifest = (dir: string) => JSON.parse(readFileSync(join(dir, 'package.json'), 'utf8'))
const workspaceVersion = manifest(join(root, 'packages/core')).version as string

describe('published packages', () => {
  it.each(published)(
    '%s passes publint and attw',
    (_name, dir) => {
      const result = checkPackage(dir)
      expect(result.publint.ok, result.publint.output).toBe(true)
      expect(result.attw.ok, result.attw.output).toBe(true)
    },
    60_000,
  )

  it.each(published)('%s declares what consumers and bundlers read', (path, dir) => {
    const pkg = manifest(dir)
    expect(pkg.name).toBe(`@loom/${path.split('/')[1]}`)
    expect(pkg.private).toBeUndefined()
    expect(pkg.version).toBe(workspaceVersion)
    expect(pkg).toMatchObject({ type: 'module', sideEffects: false, license: 'MIT', files: ['dist', 'CHANGELOG.md'] })
    expect(pkg.engines.node).toBe('>=20.11')
    for (const [entry, target] of Object.entries(pkg.exports as Record<string, unknown>)) {
      if (entry === './package.json') continue
      // `types` first: resolvers take the first condition that matches.
      expect(Object.keys(target as object), entry).toEqual(['types', 'import'])
    }
    // Internal packages move together (one fixed changeset group), so they pin the exact version.
    for (const [name, range] of Object.entries({ ...pkg.dependencies, ...pkg.devDependencies })) {
      if (name.startsWith('@loom/')) expect(range, name).toBe(workspaceVersion)
    }
    // Frameworks and drivers are the consumer's: peers, and devDependencies so the tests run against them.
    for (const peer of Object.keys(pkg.peerDependencies ?? {})) {
      if (peer === 'vitest') continue // @loom/core/testing's optional peer, a root devDependency
      expect(pkg.devDependencies?.[peer], peer).toBeDefined()
      expect(pkg.dependencies?.[peer], peer).toBeUndefined()
    }
  })

  it.each(published)(
    '%s packs its README, CHANGELOG and build, and nothing else',
    (path, dir) => {
      const [packed] = JSON.parse(sh('npm', ['pack', '--dry-run', '--json', '--silent'], dir)) as { files: { path: string }[] }[]
      const files = packed.files.map((file) => file.path)
      expect(files).toEqual(expect.arrayContaining(['README.md', 'CHANGELOG.md', 'package.json', 'dist/index.js', 'dist/index.d.ts']))
      expect(files.filter((file) => !/^(README\.md|CHANGELOG\.md|package\.json|dist\/.+)$/.test(file))).toEqual([])
      expect(readFileSync(join(dir, 'CHANGELOG.md'), 'utf8')).toMatch(new RegExp(`^# @loom/${path.split('/')[1]}\n`))
    },
    60_000,
  )
})

describe('changesets', () => {
  it('versions every @loom/* package together and leaves the private ones alone', () => {
    const copy = mkdtempSync(join(tmpdir(), 'loom-changeset-'))
    try {
      for (const entry of ['package.json', '.changeset', 'packages', 'examples', 'sveltekit-console']) {
        cpSync(join(root, entry), join(copy, entry), {
          recursive: true,
          filter: (src) => !/(^|\/)(node_modules|dist|build|\.svelte-kit|test-results)(\/|$)/.test(src.slice(root.length)),
        })
      }
      const version = (dir: string) => JSON.parse(readFileSync(join(copy, dir, 'package.json'), 'utf8')).version as string
      const before = version('packages/core')
      sh(join(root, 'node_modules/.bin/changeset'), ['version'], copy, { ...process.env, CI: 'true' })
      const publishable = ['core', 'client', 'hono', 'mqtt', 'postgres', 'temporal', 'worker'].map((p) => version(`packages/${p}`))
      expect(new Set(publishable).size).toBe(1)
      expect(publishable[0]).not.toBe(before)
      // Internal dependencies follow the group, so a consumer never mixes two Loom versions.
      const worker = JSON.parse(readFileSync(join(copy, 'packages/worker/package.json'), 'utf8'))
      expect([worker.dependencies['@loom/core'], worker.dependencies['@loom/client'], worker.dependencies['@loom/mqtt']]).toEqual(
        Array(3).fill(publishable[0]),
      )
      for (const dir of ['sveltekit-console', ...readdirSync(join(root, 'examples')).map((name) => `examples/${name}`)]) {
        expect(version(dir), dir).toBe(manifest(join(root, dir)).version)
      }
      expect(readdirSync(join(copy, '.changeset')).filter((f) => f.endsWith('.md') && f !== 'README.md')).toEqual([])
      expect(readFileSync(join(copy, 'packages/core/CHANGELOG.md'), 'utf8')).toContain(publishable[0])
    } finally {
      rmSync(copy, { recursive: true, force: true })
    }
  }, 120_000)
})
