/**
 * Failures in the console, in a real Chromium against the built server and the example
 * worker: a candidate whose pull request the worker saw closed (a step reported as failed,
 * with its error) and one an operator cancelled with a reason. Both are back at not started;
 * the console tells them apart from the never-tried ones: the Failed pill and its count, the
 * last-outcome filter (server-side, in the URL, with or without JavaScript), the Last outcome
 * column with who, when and why, the overview's failed count, and the run page's banner
 * above its attempts. The console runs with named tokens so that "who" is a real name: the
 * worker app-charts and the operator alice. With DATABASE_URL and MQTT_URL set (as in CI) the
 * server uses those services, in a schema and topic prefix of its own.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { runId, type CandidateWithStatus } from '@loom/core'
import type { Browser, BrowserContext, Page } from 'playwright-core'
import { dropSchema, hydrated, launchBrowser, removeDir, screenshot, seriousViolations, startConsole, type ConsoleServer } from './harness'

const MIGRATION = 'app-chart'
const ALICE = 'alice-failures-secret'
const WORKER_TOKEN = 'app-charts-failures-secret'
const unique = `failures_e2e_${process.pid}_${Date.now().toString(36)}`

// The example worker discovers these in its fixture GitOps repository.
const FAIL = 'billing-api'
const CANCEL = 'checkout'
const CANCEL_REASON = 'wrong chart version for checkout'
const FAILED_STEP = 'create-app-chart'

let server: ConsoleServer
let browser: Browser
let context: BrowserContext
let page: Page
/** The worker's error for the closed pull request, as the worker wrote it. */
let failure: string
/** How many candidates the example worker discovered. */
let discovered: number

const row = (p: Page, candidateId: string) => p.locator(`tr[data-candidate="${candidateId}"]`)
const outcomeOf = (p: Page, candidateId: string) => row(p, candidateId).locator('[data-testid="last-outcome"]')
const escaped = (text: string) => text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')
const listed = (p: Page) => p.locator('tbody tr[data-candidate]').evaluateAll((rows) => rows.map((r) => r.getAttribute('data-candidate')))

/** The Loom API as alice. */
async function api(path: string, init: { method?: string; body?: unknown } = {}): Promise<Response> {
  const response = await fetch(`${server.url}/api${path}`, {
    method: init.method ?? 'GET',
    headers: { authorization: `Bearer ${ALICE}`, 'content-type': 'application/json' },
    ...(init.body === undefined ? {} : { body: JSON.stringify(init.body) }),
  })
  if (!response.ok) throw new Error(`${init.method ?? 'GET'} ${path}: ${response.status} ${await response.text()}`)
  return response
}

/** Polls `check` until it returns a value, for at most `ms`. */
async function until<T>(what: string, check: () => Promise<T | undefined>, ms = 30_000): Promise<T> {
  const deadline = Date.now() + ms
  for (;;) {
    const value = await check()
    if (value !== undefined) return value
    if (Date.now() > deadline) throw new Error(`${what}: not within ${ms} ms`)
    await new Promise((resolve) => setTimeout(resolve, 200))
  }
}

const lastOutcomeOf = async (candidateId: string) => {
  const candidates = (await (await api(`/migrations/${MIGRATION}/candidates`)).json()) as CandidateWithStatus[]
  discovered = candidates.length
  return candidates.find((c) => c.id === candidateId)?.lastAttempt
}

async function signIn(into: BrowserContext, path: string): Promise<Page> {
  const p = await into.newPage()
  await p.goto(`${server.url}/login?redirectTo=${encodeURIComponent(path)}`)
  await hydrated(p)
  await p.fill('#token', ALICE)
  await p.click('button:has-text("Sign in")')
  await p.waitForURL((url) => url.pathname + url.search === path)
  await hydrated(p)
  return p
}

async function expectAccessible(p: Page) {
  expect(await seriousViolations(p)).toEqual([])
}

beforeAll(async () => {
  server = await startConsole({
    env: {
      LOOM_OPERATORS: `alice:${ALICE}`,
      // The example worker presents the token LOOM_WORKERS names for app-charts, so its reports are its own.
      LOOM_WORKERS: `app-charts:${WORKER_TOKEN}`,
      // Pull requests stay open until the test closes one, which is how the example worker fails a step.
      LOOM_EXAMPLE_AUTO_MERGE_MS: '0',
      LOOM_DB_SCHEMA: unique,
      LOOM_MQTT_TOPIC_PREFIX: `loom-test/${unique}`,
      LOOM_TEMPORAL_TASK_QUEUE: unique,
    },
  })

  // billing-api: executed, its first pull request closed without merging; the worker fails the step.
  const failRun = runId(MIGRATION, FAIL)
  await api(`/migrations/${MIGRATION}/queue`, { method: 'POST', body: { candidateId: FAIL } })
  await api(`/runs/${failRun}/execute`, { method: 'POST' })
  const pr = await until('the pull request of billing-api opens', async () => {
    const { open } = (await (await fetch(`${server.workerUrl}/prs`)).json()) as { open: Array<{ runId: string; branch: string }> }
    return open.find((p) => p.runId === failRun)
  })
  const closed = await fetch(`${server.workerUrl}/prs/close?branch=${encodeURIComponent(pr.branch)}`, {
    method: 'POST',
    headers: { authorization: `Bearer ${WORKER_TOKEN}` },
  })
  expect(closed.status).toBe(200)
  failure = `pull request ${pr.branch} was closed without merging`
  const failed = await until('billing-api fails', async () => {
    const last = await lastOutcomeOf(FAIL)
    return last?.outcome === 'failed' ? last : undefined
  })
  expect(failed).toMatchObject({ step: FAILED_STEP, error: failure, by: { kind: 'worker', name: 'app-charts' } })

  // checkout: queued, then cancelled by alice with a reason.
  await api(`/migrations/${MIGRATION}/queue`, { method: 'POST', body: { candidateId: CANCEL } })
  await api(`/runs/${runId(MIGRATION, CANCEL)}/cancel`, { method: 'POST', body: { reason: CANCEL_REASON } })
  expect(await lastOutcomeOf(CANCEL)).toMatchObject({
    outcome: 'cancelled',
    reason: CANCEL_REASON,
    by: { kind: 'operator', name: 'alice' },
  })

  browser = await launchBrowser()
  context = await browser.newContext({ viewport: { width: 1360, height: 900 } })
  page = await signIn(context, `/migrations/${MIGRATION}`)
}, 180_000)

afterAll(async () => {
  await browser?.close()
  await server?.stop()
  await removeDir(server?.dataDir ?? '')
  await dropSchema(unique)
})

describe('failures in the console', () => {
  it('counts the failed beside Not started, and says what ended each last attempt, who ended it and when', async () => {
    const pill = page.locator('.pills a[data-filter="failed"]')
    await expect(pill.textContent()).resolves.toMatch(/^\s*Failed\s*1\s*$/)
    await expect(pill.getAttribute('title')).resolves.toBe('Not started after a failed attempt')
    // Failed is a part of Not started, which still counts both tried candidates.
    await expect(page.locator('.pills a[data-filter="not_started"] .count').textContent()).resolves.toBe(String(discovered))
    await expect(page.locator('.pills a[data-filter="all"] .count').textContent()).resolves.toBe(String(discovered))

    const failed = outcomeOf(page, FAIL)
    await expect(failed.getAttribute('data-outcome')).resolves.toBe('failed')
    await expect(failed.locator('.outcome-badge').textContent()).resolves.toBe('Failed')
    await expect(failed.locator('[data-testid="last-outcome-by"]').textContent()).resolves.toBe('worker app-charts')
    const detail = failed.locator('[data-testid="last-outcome-detail"]')
    await expect(detail.getAttribute('title')).resolves.toBe(`${FAILED_STEP}: ${failure}`)
    await expect(detail.textContent()).resolves.toMatch(new RegExp(`^${FAILED_STEP}: pull request `))
    const time = failed.locator('time')
    const exact = await time.getAttribute('datetime')
    expect(Date.now() - Date.parse(exact ?? '')).toBeLessThan(120_000)
    await expect(time.getAttribute('title')).resolves.toBe(exact)
    await expect(time.textContent()).resolves.toMatch(/ago|now/)

    const cancelled = outcomeOf(page, CANCEL)
    await expect(cancelled.getAttribute('data-outcome')).resolves.toBe('cancelled')
    await expect(cancelled.locator('.outcome-badge').textContent()).resolves.toBe('Cancelled')
    await expect(cancelled.locator('[data-testid="last-outcome-by"]').textContent()).resolves.toBe('alice')
    await expect(cancelled.locator('[data-testid="last-outcome-detail"]').textContent()).resolves.toBe(CANCEL_REASON)

    // A candidate never tried has no last outcome.
    await expect(outcomeOf(page, 'search-api').textContent()).resolves.toMatch(/^\s*$/)
    await screenshot(page, '30-migration-last-outcomes')
    await expectAccessible(page)
  })

  it('filters to the failed with the pill, and to any last outcome with the select, in the URL', async () => {
    await page.click('.pills a[data-filter="failed"]')
    await page.waitForURL(/[?&]lastOutcome=failed/)
    await page.waitForFunction(() => document.querySelectorAll('tbody tr[data-candidate]').length === 1)
    await expect(listed(page)).resolves.toEqual([FAIL])
    await expect(page.locator('.pills a[data-filter="failed"]').getAttribute('aria-current')).resolves.toBe('true')
    await expect(page.locator('.pills a[data-filter="all"]').getAttribute('aria-current')).resolves.toBeNull()
    await expect(page.locator('[data-testid="page-info"]').textContent()).resolves.toBe('Showing 1–1 of 1')
    await expect(page.locator('#last-outcome').inputValue()).resolves.toBe('failed')
    await screenshot(page, '31-migration-failed-filter')
    await expectAccessible(page)

    await page.selectOption('#last-outcome', 'cancelled')
    await page.waitForURL(/[?&]lastOutcome=cancelled/)
    await page.waitForFunction((id) => document.querySelector('tbody tr[data-candidate]')?.getAttribute('data-candidate') === id, CANCEL)
    await expect(listed(page)).resolves.toEqual([CANCEL])
    await expect(page.locator('.pills a[data-filter="failed"]').getAttribute('aria-current')).resolves.toBeNull()

    // A status pill replaces the last-outcome filter rather than narrowing it.
    await page.click('.pills a[data-filter="not_started"]')
    await page.waitForURL((url) => url.searchParams.get('status') === 'not_started' && !url.searchParams.has('lastOutcome'))
    await page.waitForFunction((n) => document.querySelectorAll('tbody tr[data-candidate]').length === n, discovered)
    await expect(page.locator('#last-outcome').inputValue()).resolves.toBe('')
  })

  it('filters on the server: the select and Search work without JavaScript', async () => {
    const noJs = await browser.newContext({ javaScriptEnabled: false, storageState: await context.storageState() })
    const p = await noJs.newPage()
    await p.goto(`${server.url}/migrations/${MIGRATION}`)
    await p.selectOption('#last-outcome', 'failed')
    await p.click('form[role="search"] button:has-text("Search")')
    await p.waitForURL(/[?&]lastOutcome=failed/)
    await expect(listed(p)).resolves.toEqual([FAIL])
    await expect(p.locator('.pills a[data-filter="failed"]').getAttribute('aria-current')).resolves.toBe('true')
    await noJs.close()
  })

  it('stays readable at 390 px wide and in the light theme', async () => {
    const phone = await browser.newContext({ viewport: { width: 390, height: 844 }, storageState: await context.storageState() })
    const p = await phone.newPage()
    await p.goto(`${server.url}/migrations/${MIGRATION}`)
    await hydrated(p)
    // The page itself never scrolls sideways; only the table, inside its frame, may.
    await expect(p.evaluate(() => document.documentElement.scrollWidth <= window.innerWidth)).resolves.toBe(true)
    await expect(p.locator('.toolbar').evaluate((el) => el.scrollWidth <= el.clientWidth)).resolves.toBe(true)
    await expect(outcomeOf(p, FAIL).locator('.outcome-badge').isVisible()).resolves.toBe(true)
    await expect(outcomeOf(p, FAIL).locator('[data-testid="last-outcome-detail"]').isVisible()).resolves.toBe(true)
    await screenshot(p, '32-migration-last-outcomes-390px')
    await phone.close()

    await page.goto(`${server.url}/migrations/${MIGRATION}`)
    await hydrated(page)
    await page.click('button:has-text("Light theme")')
    await page.waitForFunction(() => document.documentElement.dataset.theme === 'light')
    await screenshot(page, '33-migration-last-outcomes-light')
    await expectAccessible(page)
    await page.click('button:has-text("Dark theme")')
    await page.waitForFunction(() => document.documentElement.dataset.theme === 'dark')
  })

  it('shows each migration’s failed count on the overview, linking to its Failed filter', async () => {
    await page.goto(server.url)
    await hydrated(page)
    const count = page.locator('[data-testid="migration-card"] [data-testid="failed-count"]')
    await expect(count.textContent()).resolves.toBe('1 failed')
    await expect(count.getAttribute('href')).resolves.toBe(`/migrations/${MIGRATION}?lastOutcome=failed`)
    await screenshot(page, '34-overview-failed-count')
    await expectAccessible(page)
    await count.click()
    await page.waitForURL(/[?&]lastOutcome=failed/)
    await hydrated(page)
    await expect(listed(page)).resolves.toEqual([FAIL])
  })

  it('opens the failed run with a banner on its last attempt, above the attempts and their times', async () => {
    await page.goto(`${server.url}/runs/${runId(MIGRATION, FAIL)}`)
    await hydrated(page)
    await expect(page.locator('[data-testid="run-status"]').getAttribute('data-status')).resolves.toBe('not_started')
    const banner = page.locator('[data-testid="last-attempt"]')
    await expect(banner.getAttribute('data-outcome')).resolves.toBe('failed')
    const said = (await banner.textContent())?.replace(/\s+/g, ' ').trim()
    expect(said).toMatch(
      new RegExp(`^Last attempt failed at step ${FAILED_STEP}: ${escaped(failure)} — by worker app-charts, .*(ago|now)$`),
    )
    await expect(banner.locator('time').getAttribute('datetime')).resolves.toBe((await lastOutcomeOf(FAIL))?.at)
    // The banner comes first, then the attempts.
    const order = await page.evaluate(() => {
      const banner = document.querySelector('[data-testid="last-attempt"]')
      const attempts = document.querySelector('#attempts-title')
      return banner && attempts ? banner.compareDocumentPosition(attempts) & Node.DOCUMENT_POSITION_FOLLOWING : 0
    })
    expect(order).toBeGreaterThan(0)

    const attempt = page.locator('[data-testid="attempt"]').first()
    await expect(attempt.getAttribute('data-outcome')).resolves.toBe('failed')
    await expect(attempt.textContent()).resolves.toContain('Queued by alice')
    await expect(attempt.textContent()).resolves.toContain('Executed by alice')
    await expect(attempt.locator('[data-testid="attempt-ended"]').textContent()).resolves.toMatch(/^\s*Failed by /)
    const step = attempt.locator(`tr[data-step="${FAILED_STEP}"]`)
    // Dispatched and reported, each with its exact time.
    const times = await step.locator('time').evaluateAll((els) => els.map((el) => [el.getAttribute('datetime'), el.getAttribute('title')]))
    expect(times).toHaveLength(2)
    for (const [datetime, title] of times) {
      expect(Number.isNaN(Date.parse(datetime ?? ''))).toBe(false)
      expect(title).toBe(datetime)
    }
    await expect(step.locator('[data-testid="step-by"]').textContent()).resolves.toBe('app-charts')
    await expect(step.locator('[data-testid="attempt-step-error"]').textContent()).resolves.toBe(failure)
    await screenshot(page, '35-run-failed-banner')
    await expectAccessible(page)
  })

  it('opens the cancelled run with who cancelled it and why', async () => {
    await page.goto(`${server.url}/runs/${runId(MIGRATION, CANCEL)}`)
    await hydrated(page)
    const banner = page.locator('[data-testid="last-attempt"]')
    await expect(banner.getAttribute('data-outcome')).resolves.toBe('cancelled')
    const said = (await banner.textContent())?.replace(/\s+/g, ' ').trim()
    expect(said).toMatch(new RegExp(`^Last attempt was cancelled: ${CANCEL_REASON} — by alice, .*(ago|now)$`))
    await screenshot(page, '36-run-cancelled-banner')
    await expectAccessible(page)
  })
})
