/**
 * A console started with LOOM_TOKEN: nothing is shown, acted on or streamed until the
 * operator signs in with the token, and the check happens on the server.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import type { Browser } from 'playwright-core'
import { hydrated, launchBrowser, removeDir, screenshot, seriousViolations, startConsole, type ConsoleServer } from './harness'

const TOKEN = 'operator-secret-7'
let server: ConsoleServer
let browser: Browser

beforeAll(async () => {
  server = await startConsole({ env: { LOOM_TOKEN: TOKEN, DATABASE_URL: undefined, MQTT_URL: undefined, TEMPORAL_ADDRESS: undefined } })
  browser = await launchBrowser()
})

afterAll(async () => {
  await browser?.close()
  await server?.stop()
  await removeDir(server?.dataDir ?? '')
})

describe('a console with LOOM_TOKEN', () => {
  it('refuses pages, actions, the API and the event stream without the token', async () => {
    const page = await fetch(`${server.url}/migrations/app-chart`, { redirect: 'manual' })
    expect(page.status).toBe(303)
    expect(page.headers.get('location')).toBe('/login?redirectTo=%2Fmigrations%2Fapp-chart')
    const action = await fetch(`${server.url}/migrations/app-chart?/queue`, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded', origin: server.url },
      body: 'candidateId=checkout',
    })
    expect(action.status).toBe(401)
    expect((await fetch(`${server.url}/api/migrations`)).status).toBe(401)
    expect((await fetch(`${server.url}/api/events`)).status).toBe(401)
    const candidates = await fetch(`${server.url}/api/migrations/app-chart/candidates`, { headers: { authorization: `Bearer ${TOKEN}` } })
    expect(((await candidates.json()) as Array<{ status: string }>).every((c) => c.status === 'not_started')).toBe(true)
  })

  it('signs in with the token, then shows the page asked for, live', async () => {
    const context = await browser.newContext({ viewport: { width: 1360, height: 900 } })
    const page = await context.newPage()
    await page.goto(`${server.url}/migrations/app-chart`)
    await page.waitForURL('**/login?redirectTo=*')
    await hydrated(page)
    await screenshot(page, '20-sign-in')
    expect(await seriousViolations(page)).toEqual([])

    await page.fill('#token', 'wrong')
    await page.click('button:has-text("Sign in")')
    await expect(page.locator('[role="alert"]').textContent()).resolves.toBe('That token is not valid for this console.')

    await page.fill('#token', TOKEN)
    await page.click('button:has-text("Sign in")')
    await page.waitForURL('**/migrations/app-chart')
    await hydrated(page)
    // The browser's event stream is authorised by the session cookie.
    await page.locator('[data-testid="live-state"][data-state="open"]').waitFor()
    await page.click('button[aria-label="Queue checkout"]')
    await page.locator('[data-testid="toast"]', { hasText: 'Queued checkout' }).waitFor()
    const cookies = await context.cookies()
    const session = cookies.find((c) => c.name === 'loom_session')
    expect(session).toMatchObject({ httpOnly: true, sameSite: 'Strict' })
    expect(session!.value).not.toContain(TOKEN)

    await page.click('button:has-text("Sign out")')
    await page.waitForURL('**/login')
    const after = await page.goto(`${server.url}/`)
    expect(after?.url()).toContain('/login')
    await context.close()
  })
})
