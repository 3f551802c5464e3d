import { mkdtemp, readFile, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterEach, describe, expect, it } from 'vitest'
import { appChartFiles, discoverApps, switchApplication } from './app-chart'
import { FIXTURES_DIR } from './example-worker'
import { openGitOpsRepo, type GitOpsRepo } from './gitops'

const dirs: string[] = []
afterEach(async () => {
  for (const dir of dirs.splice(0)) await rm(dir, { recursive: true, force: true })
})

async function freshRepo(): Promise<GitOpsRepo> {
  const dir = await mkdtemp(join(tmpdir(), 'loom-gitops-'))
  dirs.push(dir)
  return openGitOpsRepo(join(dir, 'gitops.git'), FIXTURES_DIR)
}

const prodPath = 'apps/billing-api/prod/application.yaml'

describe('switchApplication', () => {
  it('points the application at its own chart and keeps comments, order and quoting', async () => {
    const before = await readFile(join(FIXTURES_DIR, prodPath), 'utf8')
    const after = switchApplication(before, { app: 'billing-api', path: prodPath, gitopsUrl: 'https://git.acme.example/acme/gitops.git' })
    // Only the source block changes; every other line, comment included, is where it was.
    const unchanged = (text: string) => text.split('\n').filter((l) => !/^ {4}\S/.test(l) && !/^ {6,}/.test(l))
    expect(unchanged(after)).toEqual(unchanged(before))
    expect(after).toContain(
      [
        '  source:',
        '    repoURL: https://git.acme.example/acme/gitops.git',
        '    path: charts/billing-api',
        '    targetRevision: main # follows main: the chart version is pinned in charts/billing-api/Chart.yaml',
        '    helm:',
        '      valuesObject:',
        '        generic-app:',
        '          image:',
        '            repository: ghcr.io/acme/billing-api',
        '            tag: "2.3.0"',
        '          replicas: 3 # peak load at month end',
      ].join('\n'),
    )
  })

  it('refuses an application that is no longer on the generic chart, naming the file', () => {
    const moved = 'kind: Application\nspec:\n  source:\n    chart: other-chart\n'
    expect(() => switchApplication(moved, { app: 'x', path: 'apps/x/prod/application.yaml', gitopsUrl: 'u' })).toThrow(
      'apps/x/prod/application.yaml: spec.source.chart is "other-chart", not generic-app; it changed since discovery',
    )
  })
})

describe('discoverApps', () => {
  it('finds the apps on the generic chart, one file group per environment', async () => {
    const repo = await freshRepo()
    const candidates = await discoverApps(repo, 'acme/gitops', (path) => `file:///${path}`)
    expect(candidates.map((c) => [c.id, c.metadata?.team, c.files?.map((g) => g.name)])).toEqual([
      ['billing-api', 'payments', ['dev', 'prod']],
      ['checkout', 'payments', ['prod']],
      ['search-api', 'search', ['dev', 'prod', 'staging']],
    ])
    expect(candidates[0]!.files![1]).toEqual({ name: 'prod', repo: 'acme/gitops', files: [{ path: prodPath, url: `file:///${prodPath}` }] })
  })

  it('no longer lists an app once all of its environments are switched', async () => {
    const repo = await freshRepo()
    const switched = ['dev', 'prod'].map((env) => `apps/billing-api/${env}/application.yaml`)
    const files = await Promise.all(
      switched.map(async (path) => ({
        path,
        content: switchApplication((await repo.read(path))!, { app: 'billing-api', path, gitopsUrl: 'u' }),
      })),
    )
    await repo.commit('loom/test/switch', files, 'switch')
    await repo.merge('loom/test/switch')
    expect((await discoverApps(repo, 'acme/gitops', (p) => p)).map((c) => c.id)).toEqual(['checkout', 'search-api'])
  })
})

describe('the GitOps repository', () => {
  it('keeps branches apart from main until merged, and merges branches that started from the same main', async () => {
    const repo = await freshRepo()
    const [chart] = appChartFiles('checkout', '1.4.2', 'https://charts.acme.example/stable')
    await repo.commit('loom/a/one', [chart!], 'one')
    await repo.commit('loom/b/two', [{ path: 'README.md', content: 'changed\n' }], 'two')
    expect(await repo.read(chart!.path)).toBeUndefined()
    expect(await repo.read(chart!.path, 'loom/a/one')).toBe(chart!.content)
    expect(await repo.isMerged('loom/a/one')).toBe(false)
    await repo.merge('loom/a/one') // fast-forward
    await repo.merge('loom/b/two') // a merge commit: main moved since the branch started
    expect(await repo.read(chart!.path)).toBe(chart!.content)
    expect(await repo.read('README.md')).toBe('changed\n')
    expect([await repo.isMerged('loom/a/one'), await repo.isMerged('loom/b/two')]).toEqual([true, true])
    await repo.close('loom/a/one')
    expect(await repo.branches('loom/')).toEqual(['loom/b/two'])
    expect(await repo.isMerged('loom/a/one')).toBe(false)
  })
})
