#!/usr/bin/env node
/**
 * Checks every publishable @loom/* package as npm consumers will get it: `publint` (package.json
 * fields against the packed files) and `@arethetypeswrong/cli` (types resolve for every exported
 * entry, ESM-only profile: the packages are ESM, so CommonJS `require` is not a target).
 * Run after `npm run build`. Exits 1 when any package has a problem.
 *
 *   npm run check:packages
 */
import { spawnSync } from 'node:child_process'
import { readFileSync } from 'node:fs'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'

const root = dirname(dirname(fileURLToPath(import.meta.url)))
const bin = (name) => join(root, 'node_modules', '.bin', name)
export const PACKAGES = ['core', 'client', 'hono', 'mqtt', 'postgres', 'temporal', 'worker'].map((name) => join(root, 'packages', name))

export function checkPackage(dir) {
  const name = JSON.parse(readFileSync(join(dir, 'package.json'), 'utf8')).name
  const run = (command, args) => spawnSync(command, args, { cwd: dir, encoding: 'utf8' })
  const publint = run(bin('publint'), ['--strict'])
  const attw = run(bin('attw'), ['--pack', '.', '--profile', 'esm-only', '--format', 'ascii'])
  return {
    name,
    publint: { ok: publint.status === 0, output: `${publint.stdout}${publint.stderr}` },
    attw: { ok: attw.status === 0, output: `${attw.stdout}${attw.stderr}` },
  }
}

if (import.meta.url === `file://${process.argv[1]}`) {
  let failed = 0
  for (const dir of PACKAGES) {
    const result = checkPackage(dir)
    for (const tool of ['publint', 'attw']) {
      const { ok, output } = result[tool]
      console.log(`${ok ? 'ok  ' : 'FAIL'} ${tool.padEnd(7)} ${result.name}`)
      if (!ok) {
        failed++
        console.log(output)
      }
    }
  }
  process.exit(failed ? 1 : 0)
}
