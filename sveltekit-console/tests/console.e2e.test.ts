/**
 * The console in a real Chromium, against the built server hosting Loom and the example
 * worker: the operator's day from the overview to a completed run, a cancelled one and a
 * rejected review, with live updates, toasts, the 409 of a lost race, pages without
 * JavaScript, not-found pages, both themes and axe-core on every page. With DATABASE_URL and
 * MQTT_URL set (as in CI) the server uses those services, in a schema and topic prefix of
 * its own.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { runId, type RunInfo } from '@loom/core'
import type { Browser, BrowserContext, Page } from 'playwright-core'
import { dropSchema, hydrated, launchBrowser, removeDir, screenshot, seriousViolations, startConsole, type ConsoleServer } from './harness'

const MIGRATION = 'app-chart'
const MIGRATION_NAME = 'Applications: generic chart → own chart'
const unique = `console_e2e_${process.pid}_${Date.now().toString(36)}`

// The example worker discovers these in its fixture GitOps repository.
const COMPLETE = 'billing-api'
const CANCEL = 'checkout'
const REJECT = 'search-api'
const CANCEL_REASON = 'wrong chart version for checkout'

let server: ConsoleServer
let discovered: string[]
let browser: Browser
let context: BrowserContext
let page: Page
/** What the browser refused under the console's Content-Security-Policy, on every page the tests showed. */
const cspViolations: string[] = []

const row = (p: Page, candidateId: string) => p.locator(`tr[data-candidate="${candidateId}"]`)
const toast = (p: Page, text: string | RegExp) => p.locator('[data-testid="toast"]', { hasText: text })

async function expectAccessible(p: Page) {
  expect(await seriousViolations(p)).toEqual([])
}

beforeAll(async () => {
  server = await startConsole({
    env: {
      LOOM_DB_SCHEMA: unique,
      LOOM_MQTT_TOPIC_PREFIX: `loom-test/${unique}`,
      LOOM_TEMPORAL_TASK_QUEUE: unique,
    },
  })
  const listed = (await (await fetch(`${server.url}/api/migrations/${MIGRATION}/candidates`)).json()) as Array<{ id: string }>
  discovered = listed.map((c) => c.id)
  browser = await launchBrowser()
  context = await browser.newContext({ viewport: { width: 1360, height: 900 } })
  page = await context.newPage()
  page.on('console', (message) => {
    if (message.type() === 'error' && /Content Security Policy/i.test(message.text())) cspViolations.push(message.text())
  })
})

afterAll(async () => {
  await browser?.close()
  const code = await server?.stop()
  await removeDir(server?.dataDir ?? '')
  await dropSchema(unique)
  // Ctrl-C (SIGINT) stops the console cleanly: exit code 0.
  expect(code).toBe(0)
})

describe('the console in Chromium', () => {
  it('opens the overview: the migration with its candidates by status, and totals', async () => {
    await page.goto(server.url)
    await hydrated(page)
    const card = page.locator('[data-testid="migration-card"]', { hasText: MIGRATION_NAME })
    await expect(card.count()).resolves.toBe(1)
    await expect(card.textContent()).resolves.toContain('3 steps')
    expect(discovered).toEqual(expect.arrayContaining([COMPLETE, CANCEL, REJECT]))
    await expect(page.locator('[data-testid="stat-candidates"]').textContent()).resolves.toBe(String(discovered.length))
    await expect(page.locator('[data-testid="stat-queued"]').textContent()).resolves.toBe('0')
    await expect(page.locator('[data-testid="live-state"][data-state="open"]').waitFor()).resolves.toBeUndefined()
    await screenshot(page, '01-overview')
    await expectAccessible(page)
  })

  it('opens the migration: steps, candidates with their metadata, status filters with counts', async () => {
    await page.click(`a:has-text("${MIGRATION_NAME}") >> nth=0`)
    await page.waitForURL(`**/migrations/${MIGRATION}`)
    await hydrated(page)
    await expect(page.locator('h1').textContent()).resolves.toBe(MIGRATION_NAME)
    const ids = await page.locator('tbody tr[data-candidate]').evaluateAll((rows) => rows.map((r) => r.getAttribute('data-candidate')))
    expect(ids).toEqual(discovered)
    await expect(row(page, 'billing-api').getAttribute('data-status')).resolves.toBe('not_started')
    await expect(page.locator('.pills a', { hasText: 'Not started' }).textContent()).resolves.toMatch(
      new RegExp(`Not started\\s*${discovered.length}`),
    )
    // Metadata columns come from the candidates' metadata.
    await expect(page.locator('thead').textContent()).resolves.toContain('team')
    await expect(page.locator('details.steps').textContent()).resolves.toContain('verify-sync')
    await screenshot(page, '02-migration')
    await expectAccessible(page)

    // Group the page by a metadata key.
    await page.click('.group-by a:has-text("team")')
    await page.waitForURL(/group=team/)
    const groups = await page.locator('tr.group-row').allTextContents()
    expect(groups.length).toBeGreaterThan(0)
    expect(groups.every((g) => g.startsWith('team: '))).toBe(true)
    await expectAccessible(page)
    await page.click('.group-by a:has-text("None")')
    await page.waitForURL((url) => !url.search.includes('group='))
  })

  it('searches candidates and shows an empty state when nothing matches', async () => {
    await page.fill('#candidate-search', REJECT)
    await page.waitForURL(new RegExp(`q=${REJECT}`))
    await page.waitForFunction((n) => document.querySelectorAll('tbody tr[data-candidate]').length === n, 1)
    await expect(page.locator('tbody tr[data-candidate]').getAttribute('data-candidate')).resolves.toBe(REJECT)
    await page.fill('#candidate-search', 'no-such-candidate')
    await page.waitForURL(/q=no-such-candidate/)
    await expect(page.locator('[data-testid="empty-state"]').textContent()).resolves.toContain('No candidate matches these filters.')
    await page.goto(`${server.url}/migrations/${MIGRATION}`)
    await hydrated(page)
  })

  it('queues a candidate: the button is disabled while the action is pending, then a toast and the new status', async () => {
    let release!: () => void
    const gate = new Promise<void>((resolve) => (release = resolve))
    await page.route(
      (url) => url.search.includes('/queue'),
      async (route) => {
        await gate
        await route.continue()
      },
    )
    const button = page.locator('button[aria-label="Queue billing-api"]')
    await button.click()
    await expect(button.getAttribute('aria-busy')).resolves.toBe('true')
    await expect(button.isDisabled()).resolves.toBe(true)
    release()
    await toast(page, 'Queued billing-api').waitFor()
    await page.unroute((url) => url.search.includes('/queue'))
    await row(page, 'billing-api').and(page.locator('[data-status="queued"]')).waitFor()
    await page.locator('.pills a', { hasText: /Queued\s*1/ }).waitFor()
  })

  it('shows the dry-run preview of the queued run, per step, with line diffs', async () => {
    await toast(page, 'Queued billing-api').getByRole('link', { name: 'Preview' }).click()
    await page.waitForURL(`**/runs/${MIGRATION}__billing-api`)
    await hydrated(page)
    await expect(page.locator('[data-testid="run-status"]').getAttribute('data-status')).resolves.toBe('queued')
    await page.locator('[data-testid="file-diff"]').first().waitFor({ timeout: 20_000 })
    const chart = page.locator('[data-step="create-app-chart"] [data-testid="file-diff"]', { hasText: 'charts/billing-api/Chart.yaml' })
    await expect(chart.locator('.tag').textContent()).resolves.toBe('new')
    await expect(chart.locator('tr.add').count()).resolves.toBeGreaterThan(3)
    const switched = page.locator('[data-step="switch-applications"] [data-testid="file-diff"]')
    await expect(switched.count()).resolves.toBe(2) // billing-api has a dev and a prod environment
    await expect(switched.first().locator('tr.remove').count()).resolves.toBeGreaterThan(0)
    await expect(switched.first().locator('tr.fold').first().textContent()).resolves.toMatch(/\d+ unchanged lines?/)
    await expect(page.locator('[data-step="verify-sync"]').textContent()).resolves.toContain('Manual review')
    await screenshot(page, '03-run-queued-preview')
    await expectAccessible(page)
  })

  it('executes the run and watches it reach completed through live updates', async () => {
    // A second tab on the migration follows the run without any action of its own.
    const watcher = await context.newPage()
    await watcher.goto(`${server.url}/migrations/${MIGRATION}`)
    await hydrated(watcher)
    await watcher.locator('[data-testid="live-state"][data-state="open"]').waitFor()
    await watcher.evaluate(() => ((window as unknown as { loomMarker: number }).loomMarker = 42))
    await page.evaluate(() => ((window as unknown as { loomMarker: number }).loomMarker = 42))

    await page.click('button[aria-label="Execute billing-api"]')
    await toast(page, 'Executing billing-api').waitFor()
    // Both pull requests open and merge, then the manual review waits: all pushed to the page.
    await page.locator('[data-step="create-app-chart"][data-state="merged"]').waitFor({ timeout: 30_000 })
    await page.locator('[data-step="verify-sync"][data-state="awaiting_review"]').waitFor({ timeout: 30_000 })
    // Loom records the waiting review as API 0.2 did (success, phase awaiting_review, the whole candidate);
    // the page shows it as awaiting the operator, with the decision, not as done or failed.
    const run = (await (await fetch(`${server.url}/api/runs/${runId(MIGRATION, COMPLETE)}`)).json()) as RunInfo
    expect(run.steps?.find((s) => s.stepName === 'verify-sync')).toMatchObject({
      success: true,
      metadata: { phase: 'awaiting_review' },
      candidate: { id: COMPLETE, metadata: { team: 'payments' } },
    })
    await expect(page.locator('[data-step="verify-sync"] .phase').textContent()).resolves.toBe('Awaiting review')
    await expect(page.locator('form.review button').allTextContents()).resolves.toEqual(['Approve', 'Reject'])
    await expect(page.locator('[data-step="create-app-chart"] a', { hasText: 'View PR' }).count()).resolves.toBe(1)
    await expect(row(watcher, 'billing-api').getAttribute('data-status')).resolves.toBe('running')
    await screenshot(page, '04-run-awaiting-review')
    await expectAccessible(page)

    await page.click('button:has-text("Approve")')
    await page.locator('[data-testid="run-status"][data-status="completed"]').waitFor({ timeout: 20_000 })
    await row(watcher, 'billing-api').and(watcher.locator('[data-status="completed"]')).waitFor({ timeout: 20_000 })
    await watcher.locator('.pills a', { hasText: /Completed\s*1/ }).waitFor()
    // Neither page was reloaded: the marker set before the run is still there.
    await expect(watcher.evaluate(() => (window as unknown as { loomMarker?: number }).loomMarker)).resolves.toBe(42)
    await expect(page.evaluate(() => (window as unknown as { loomMarker?: number }).loomMarker)).resolves.toBe(42)
    await expect(page.locator('[data-testid="stat-completed"]').textContent()).resolves.toBe('3')
    await screenshot(page, '05-run-completed')
    await expectAccessible(page)
    await watcher.close()
  })

  it('queues and cancels another candidate, and shows its cancelled attempt', async () => {
    await page.goto(`${server.url}/migrations/${MIGRATION}`)
    await hydrated(page)
    await page.click('button[aria-label="Queue checkout"]')
    await toast(page, 'Queued checkout').waitFor()
    // Cancel asks first, with an optional reason; "Keep it" closes the question and cancels nothing.
    const cancel = page.locator('tr[data-candidate="checkout"] summary[aria-label="Cancel the run of checkout"]')
    await cancel.click()
    const confirm = page.getByRole('form', { name: 'Confirm cancelling the run of checkout' })
    await confirm.getByRole('button', { name: 'Keep it' }).click()
    await expect(confirm.isVisible()).resolves.toBe(false)
    await expect(row(page, CANCEL).getAttribute('data-status')).resolves.toBe('queued')
    await cancel.click()
    // The reason field has the focus once the question opens (the console moves it there after the panel renders).
    await page.locator('[name="reason"]:focus').waitFor({ timeout: 5_000 })
    await expect(page.evaluate(() => document.activeElement?.getAttribute('name'))).resolves.toBe('reason')
    await page.keyboard.type(CANCEL_REASON)
    await screenshot(page, '06a-cancel-confirm')
    await expectAccessible(page)
    await confirm.getByRole('button', { name: 'Cancel the run' }).click()
    await toast(page, 'Cancelled the run of checkout').waitFor()
    await row(page, 'checkout').and(page.locator('[data-status="not_started"]')).waitFor()
    const attempts = page.locator('[data-testid="cancelled-attempts"]')
    await attempts.locator('summary').click()
    await expect(attempts.locator('summary').textContent()).resolves.toContain('Cancelled attempts (1)')
    await expect(attempts.locator('tbody').textContent()).resolves.toContain(`${MIGRATION}__checkout`)
    await screenshot(page, '06-migration-cancelled-attempt')

    // The run page of a cancelled candidate says what happened instead of "not found".
    await attempts.locator('a', { hasText: `${MIGRATION}__checkout` }).click()
    await page.waitForURL(`**/runs/${MIGRATION}__checkout`)
    await hydrated(page)
    await expect(page.locator('[data-testid="run-status"]').getAttribute('data-status')).resolves.toBe('not_started')
    // Its attempts, newest first: cancelled by the operator (anonymous: no token is configured), with the reason.
    const attempt = page.locator('[data-testid="attempt"]').first()
    await expect(attempt.getAttribute('data-outcome')).resolves.toBe('cancelled')
    const ended = await attempt.locator('[data-testid="attempt-ended"]').textContent()
    expect(ended).toMatch(/^\s*Cancelled by anonymous/)
    await expect(attempt.locator('[data-testid="attempt-reason"]').textContent()).resolves.toBe(CANCEL_REASON)
    await expect(attempt.textContent()).resolves.toContain('Queued by anonymous')
    // When: relative, with the exact time as its title.
    const time = attempt.locator('[data-testid="attempt-ended"] time')
    const exact = await time.getAttribute('datetime')
    expect(Date.now() - Date.parse(exact ?? '')).toBeLessThan(60_000)
    await expect(time.getAttribute('title')).resolves.toBe(exact)
    await screenshot(page, '06b-run-cancelled-attempts')
    await expectAccessible(page)

    // The overview's activity feed says who cancelled which run, why, and links to the run.
    await page.goto(server.url)
    await hydrated(page)
    const feed = page.locator('[data-testid="activity-feed"]')
    const entry = feed.locator('[data-testid="activity-entry"][data-type="run.cancel"]').first()
    await expect(entry.textContent()).resolves.toContain(`anonymous`)
    await expect(entry.textContent()).resolves.toContain(`cancelled checkout (reason: ${CANCEL_REASON})`)
    // Newest first: the cancel comes before the queue that preceded it.
    const types = await feed.locator('[data-testid="activity-entry"]').evaluateAll((rows) => rows.map((r) => r.getAttribute('data-type')))
    expect(types.indexOf('run.cancel')).toBeLessThan(types.lastIndexOf('run.queue'))
    await entry.getByRole('link', { name: `View run ${MIGRATION}__checkout` }).click()
    await page.waitForURL(`**/runs/${MIGRATION}__checkout`)
    await screenshot(page, '06c-overview-activity')
  })

  it('rejects a manual-review step: the candidate goes back to not_started', async () => {
    await page.goto(`${server.url}/migrations/${MIGRATION}`)
    await hydrated(page)
    await page.click('button[aria-label="Queue search-api"]')
    await toast(page, 'Queued search-api').waitFor()
    await page.goto(`${server.url}/runs/${MIGRATION}__search-api`)
    await hydrated(page)
    await page.locator('[data-testid="live-state"][data-state="open"]').waitFor()
    await page.click('button[aria-label="Execute search-api"]')
    await page.locator('[data-step="verify-sync"][data-state="awaiting_review"]').waitFor({ timeout: 30_000 })
    await page.fill('input[name="note"]', 'prod is Degraded in Argo CD')
    await page.click('button:has-text("Reject")')
    await toast(page, 'Rejected "verify-sync"').waitFor()
    await page.locator('[data-testid="run-status"][data-status="not_started"]').waitFor({ timeout: 20_000 })
    await expect(page.locator('h2', { hasText: 'Last attempt' }).textContent()).resolves.toBe('Last attempt: failed')
    const review = page.locator('[data-testid="timeline-step"][data-step="verify-sync"]')
    await expect(review.getAttribute('data-state')).resolves.toBe('failed')
    await expect(review.textContent()).resolves.toContain('prod is Degraded in Argo CD')
    // The attempt history: rejected at the review, each step with its times and who reported it.
    const attempt = page.locator('[data-testid="attempt"]').first()
    await expect(attempt.getAttribute('data-outcome')).resolves.toBe('rejected')
    await expect(attempt.textContent()).resolves.toContain('Executed by anonymous')
    const reviewRow = attempt.locator('tr[data-step="verify-sync"]')
    await expect(reviewRow.locator('[data-testid="step-by"]').textContent()).resolves.toBe('anonymous')
    await expect(reviewRow.textContent()).resolves.toContain('Failed')
    await expect(reviewRow.textContent()).resolves.toContain('prod is Degraded in Argo CD')
    const chartRow = attempt.locator('tr[data-step="create-app-chart"]')
    await expect(chartRow.locator('time').count()).resolves.toBe(2)
    await expect(chartRow.getByRole('link', { name: 'PR' }).getAttribute('href')).resolves.toMatch(/^https?:\/\//)
    // It can be queued again.
    await expect(page.locator('button[aria-label="Queue search-api"]').count()).resolves.toBe(1)
    await screenshot(page, '07-run-rejected')
    await expectAccessible(page)
  })

  it('shows the 409 message when an action loses a race', async () => {
    // A page that hears no events keeps showing "Queue" after another operator queued.
    const stale = await context.newPage()
    await stale.route('**/api/events', (route) => route.abort())
    await stale.goto(`${server.url}/migrations/${MIGRATION}`)
    await hydrated(stale)
    const queued = await fetch(`${server.url}/api/migrations/${MIGRATION}/queue`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ candidateId: CANCEL }),
    })
    expect(queued.status).toBe(202)
    await stale.click('button[aria-label="Queue checkout"]')
    const message = toast(stale, 'Someone got there first. Cannot queue')
    await message.waitFor()
    await expect(message.textContent()).resolves.toContain('the candidate is queued')
    await expect(stale.locator('[data-testid="toast"][data-kind="error"]').count()).resolves.toBe(1)
    // The page refreshed after the refusal and shows the truth.
    await row(stale, CANCEL).and(stale.locator('[data-status="queued"]')).waitFor()
    await screenshot(stale, '08-lost-race-409')
    await stale.close()
  })

  it('works without JavaScript: actions are plain form posts', async () => {
    const noJs = await browser.newContext({ javaScriptEnabled: false, viewport: { width: 1360, height: 900 } })
    const p = await noJs.newPage()
    await p.goto(`${server.url}/migrations/${MIGRATION}`)
    await p.click('button[aria-label="Remove from queue: checkout"]')
    await expect(p.locator('[data-testid="form-result"]').textContent()).resolves.toBe('Removed checkout from the queue.')
    await expect(row(p, CANCEL).getAttribute('data-status')).resolves.toBe('not_started')
    await p.click('button[aria-label="Queue checkout"]')
    await expect(p.locator('[data-testid="form-result"]').textContent()).resolves.toContain('Queued checkout')
    // The preview waits for the worker when the browser cannot receive streamed data.
    await p.goto(`${server.url}/runs/${MIGRATION}__checkout?preview`)
    await expect(p.locator('[data-testid="file-diff"]').count()).resolves.toBeGreaterThan(0)
    await screenshot(p, '09-no-javascript-preview')
    await noJs.close()
  })

  it('answers unknown migrations and runs with a not-found page', async () => {
    const response = await page.goto(`${server.url}/migrations/no-such-migration`)
    expect(response?.status()).toBe(404)
    await expect(page.locator('[data-testid="error-page"] h1').textContent()).resolves.toBe('Not found')
    await expect(page.locator('[data-testid="error-page"]').textContent()).resolves.toContain('no-such-migration')
    await screenshot(page, '10-not-found')
    await expectAccessible(page)
    const run = await page.goto(`${server.url}/runs/${MIGRATION}__no-such-candidate`)
    expect(run?.status()).toBe(404)
    const bad = await page.goto(`${server.url}/runs/not-a-run-id`)
    expect(bad?.status()).toBe(404)
  })

  it('switches to the light theme, kept across pages, and stays accessible', async () => {
    await page.goto(server.url)
    await hydrated(page)
    await page.click('button:has-text("Light theme")')
    await page.waitForFunction(() => document.documentElement.dataset.theme === 'light')
    await page.goto(`${server.url}/migrations/${MIGRATION}`)
    await expect(page.evaluate(() => document.documentElement.dataset.theme)).resolves.toBe('light')
    await hydrated(page)
    await screenshot(page, '11-migration-light')
    await expectAccessible(page)
    await page.goto(`${server.url}/runs/${MIGRATION}__billing-api`)
    await hydrated(page)
    await screenshot(page, '12-run-completed-light')
    await expectAccessible(page)
    await page.goto(server.url)
    await hydrated(page)
    await screenshot(page, '13-overview-light')
    await expectAccessible(page)
  })

  it('serves every page under a Content-Security-Policy that its own scripts and styles keep to', async () => {
    const response = await page.goto(server.url)
    await hydrated(page)
    expect(response?.headers()['content-security-policy']).toMatch(/script-src 'self' 'nonce-[^']+'/)
    // Every page above (previews, live updates, toasts, both themes) ran without a refusal.
    expect(cspViolations).toEqual([])
  })
})
