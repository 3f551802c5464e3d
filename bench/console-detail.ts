/**
 * How long the migration detail page takes to become interactive with 100 and with 10,000
 * candidates, in the same run: the built console on its default store (PGlite in a fresh
 * data folder), two migrations announced through the API, and a real Chromium that loads
 * each page until SvelteKit has hydrated it (the buttons work) with the candidate table
 * shown. Also: a status filter and a search applied on each. Prints the medians and the
 * ratio 10,000 / 100; the aim is under 2.
 *
 *   npx tsx bench/console-detail.ts            # 7 loads of each page
 *   RUNS=15 npx tsx bench/console-detail.ts
 */
import type { Page } from 'playwright-core'
import { hydrated, launchBrowser, removeDir, startConsole } from '../sveltekit-console/tests/harness.ts'

const RUNS = Number(process.env.RUNS ?? 7)
const SIZES = [100, 10_000] as const
const TEAMS = ['payments', 'search', 'storefront', 'platform', 'data', 'identity']

function candidates(n: number) {
  return Array.from({ length: n }, (_, i) => {
    const id = `app-${String(i).padStart(5, '0')}`
    const team = TEAMS[i % TEAMS.length]!
    return {
      id,
      kind: 'application',
      metadata: { team, repoName: 'acme/gitops', gitopsPath: `apps/${team}/${id}` },
      state: { chartVersion: `1.${i % 7}.0` },
      files: [{ name: 'prod', repo: 'acme/gitops', files: [{ path: `apps/${team}/${id}/prod/application.yaml`, url: '' }] }],
    }
  })
}

async function api(base: string, path: string, body: unknown) {
  const response = await fetch(`${base}/api${path}`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify(body),
  })
  if (!response.ok) throw new Error(`POST ${path}: ${response.status} ${await response.text()}`)
}

const median = (values: number[]) => {
  const sorted = [...values].sort((a, b) => a - b)
  const mid = Math.floor(sorted.length / 2)
  return sorted.length % 2 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2
}

async function loadDetail(page: Page, url: string): Promise<number> {
  const started = performance.now()
  await page.goto(url, { waitUntil: 'commit' })
  await hydrated(page)
  await page.waitForSelector('tr[data-candidate]')
  return performance.now() - started
}

async function applyFilter(page: Page, label: string, expectRows: (n: number) => boolean): Promise<number> {
  const started = performance.now()
  await page.click(`.pills a:has-text("${label}")`)
  await page.waitForFunction((want) => document.querySelector(`.pills a[aria-current="true"]`)?.textContent?.includes(want) ?? false, label)
  await page.waitForSelector('tr[data-candidate]')
  const rows = await page.locator('tr[data-candidate]').count()
  if (!expectRows(rows)) throw new Error(`filter ${label}: ${rows} rows`)
  return performance.now() - started
}

async function search(page: Page, text: string): Promise<number> {
  const started = performance.now()
  await page.fill('#candidate-search', text)
  await page.waitForFunction(
    (q) => new URL(location.href).searchParams.get('q') === q && document.querySelectorAll('tr[data-candidate]').length === 1,
    text,
  )
  return performance.now() - started
}

const server = await startConsole({
  env: { LOOM_EXAMPLE_WORKER: 'false', DATABASE_URL: undefined, TEMPORAL_ADDRESS: undefined, MQTT_URL: undefined },
})
const browser = await launchBrowser()
try {
  for (const n of SIZES) {
    const id = `bench-${n}`
    const started = performance.now()
    await api(server.url, '/registry/announce', {
      id,
      name: `Bench, ${n.toLocaleString('en-US')} candidates`,
      steps: [{ name: 'change', workerApp: 'bench', description: 'A step no worker runs: only the page is measured.' }],
    })
    await api(server.url, `/migrations/${id}/candidates`, { candidates: candidates(n) })
    // A few candidates in other statuses, so the counts and filters have something to show.
    for (let i = 0; i < 10; i++) await api(server.url, `/migrations/${id}/queue`, { candidateId: `app-${String(i * 7).padStart(5, '0')}` })
    console.log(`seeded ${id}: ${n} candidates in ${((performance.now() - started) / 1000).toFixed(1)} s`)
  }

  const context = await browser.newContext({ viewport: { width: 1360, height: 900 } })
  const page = await context.newPage()
  const cold: Record<number, number[]> = { 100: [], 10000: [] }
  const loads: Record<number, number[]> = { 100: [], 10000: [] }
  const filters: Record<number, number[]> = { 100: [], 10000: [] }
  const searches: Record<number, number[]> = { 100: [], 10000: [] }
  // Warm up both pages once (JIT, the browser cache of the app's scripts), then alternate.
  for (const n of SIZES) await loadDetail(page, `${server.url}/migrations/bench-${n}`)
  for (let run = 0; run < RUNS; run++) {
    for (const n of SIZES) {
      const url = `${server.url}/migrations/bench-${n}`
      // Cold: a fresh browser context, so nothing is cached.
      const fresh = await browser.newContext({ viewport: { width: 1360, height: 900 } })
      cold[n]!.push(await loadDetail(await fresh.newPage(), url))
      await fresh.close()
      loads[n]!.push(await loadDetail(page, url))
      filters[n]!.push(await applyFilter(page, 'Queued', (rows) => rows === 10))
      searches[n]!.push(await search(page, 'app-00063')) // queued in both, so the Queued filter keeps it
    }
  }

  const fmt = (ms: number) => `${ms.toFixed(0)} ms`
  console.log(`\nmigration detail page, median of ${RUNS} loads each (Chromium, built console, PGlite):`)
  console.log('candidates | interactive, cold | interactive, warm | status filter | search (250 ms debounce)')
  for (const n of SIZES) {
    console.log(
      `${n.toLocaleString('en-US').padStart(10)} | ${fmt(median(cold[n]!)).padStart(17)} | ${fmt(median(loads[n]!)).padStart(17)} | ${fmt(median(filters[n]!)).padStart(13)} | ${fmt(median(searches[n]!)).padStart(6)}`,
    )
  }
  const ratio = (xs: Record<number, number[]>) => (median(xs[10_000]!) / median(xs[100]!)).toFixed(2)
  console.log(`\n10,000 / 100, time to interactive: cold ${ratio(cold)}×, warm ${ratio(loads)}× (aim: under 2×)`)
  console.log(
    `all cold loads (ms): 100 → ${cold[100]!.map((x) => x.toFixed(0)).join(', ')}; 10,000 → ${cold[10_000]!.map((x) => x.toFixed(0)).join(', ')}`,
  )
  await context.close()
} finally {
  await browser.close()
  await server.stop()
  await removeDir(server.dataDir)
}
