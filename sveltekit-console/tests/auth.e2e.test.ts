/**
 * A console started with tokens (LOOM_TOKEN, named operators in LOOM_OPERATORS, a worker
 * token): nothing is shown, acted on or streamed until an operator signs in, the check
 * happens on the server, signing out ends the session for good, and what workers report
 * cannot smuggle a script into the page.
 */
import { createServer, type Server } from 'node:http'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import type { Browser, BrowserContext, Page } from 'playwright-core'
import { hydrated, launchBrowser, removeDir, screenshot, seriousViolations, startConsole, type ConsoleServer } from './harness'

const TOKEN = 'operator-secret-7'
const ALICE = 'alice-secret-1'
const BOB = 'bob-secret-2'
const WORKER_TOKEN = 'worker-secret-3'
let server: ConsoleServer
let browser: Browser

beforeAll(async () => {
  server = await startConsole({
    env: {
      LOOM_TOKEN: TOKEN,
      LOOM_OPERATORS: `alice:${ALICE},bob:${BOB}`,
      // The example worker announces with this one (scripts/start.mjs hands it over).
      LOOM_WORKER_TOKEN: WORKER_TOKEN,
      DATABASE_URL: undefined,
      MQTT_URL: undefined,
      TEMPORAL_ADDRESS: undefined,
    },
  })
  browser = await launchBrowser()
})

afterAll(async () => {
  await browser?.close()
  await server?.stop()
  await removeDir(server?.dataDir ?? '')
})

/** Signs in on the login page with `token`, then waits for the page it returns to. */
async function signIn(context: BrowserContext, token: string, path = '/'): Promise<Page> {
  const page = await context.newPage()
  await page.goto(`${server.url}/login?redirectTo=${encodeURIComponent(path)}`)
  await hydrated(page)
  await page.fill('#token', token)
  await page.click('button:has-text("Sign in")')
  await page.waitForURL((url) => url.pathname === path)
  await hydrated(page)
  return page
}

const json = (token: string) => ({ authorization: `Bearer ${token}`, 'content-type': 'application/json' })

describe('a console with tokens', () => {
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

  it('signs a named operator in and shows who is signed in; a worker token does not sign in', async () => {
    const context = await browser.newContext()
    const page = await signIn(context, ALICE)
    await expect(page.locator('[data-testid="signed-in-as"]').textContent()).resolves.toMatch(/^\s*Signed in as alice\s*$/)
    await screenshot(page, '21-signed-in-as-alice')

    const other = await browser.newContext()
    const login = await other.newPage()
    await login.goto(`${server.url}/login`)
    await hydrated(login)
    await login.fill('#token', WORKER_TOKEN)
    await login.click('button:has-text("Sign in")')
    await expect(login.locator('[role="alert"]').textContent()).resolves.toBe(
      'That is the token of worker worker: the console is for operators. Sign in with an operator token.',
    )
    expect((await other.cookies()).some((c) => c.name === 'loom_session')).toBe(false)
    await other.close()
    await context.close()
  })

  it('records who cancelled, with the reason: the run page and the overview name the signed-in operator', async () => {
    const context = await browser.newContext({ viewport: { width: 1360, height: 900 } })
    const page = await signIn(context, ALICE, '/migrations/app-chart')
    // checkout is queued by an earlier test; billing-api is untouched.
    await page.click('button[aria-label="Queue billing-api"]')
    await page.locator('tr[data-candidate="billing-api"][data-status="queued"]').waitFor()
    await page.click('tr[data-candidate="billing-api"] summary[aria-label="Cancel the run of billing-api"]')
    await page.fill('tr[data-candidate="billing-api"] input[name="reason"]', 'alice has second thoughts')
    await page
      .getByRole('form', { name: 'Confirm cancelling the run of billing-api' })
      .getByRole('button', { name: 'Cancel the run' })
      .click()
    await page.locator('[data-testid="toast"]', { hasText: 'Cancelled the run of billing-api' }).waitFor()

    await page.goto(`${server.url}/runs/app-chart__billing-api`)
    await hydrated(page)
    const attempt = page.locator('[data-testid="attempt"]').first()
    await expect(attempt.getAttribute('data-outcome')).resolves.toBe('cancelled')
    await expect(attempt.textContent()).resolves.toContain('Queued by alice')
    await expect(attempt.locator('[data-testid="attempt-ended"]').textContent()).resolves.toMatch(/^\s*Cancelled by alice/)
    await expect(attempt.locator('[data-testid="attempt-reason"]').textContent()).resolves.toBe('alice has second thoughts')

    await page.goto(server.url)
    await hydrated(page)
    const entry = page.locator('[data-testid="activity-entry"][data-type="run.cancel"]').first()
    await expect(entry.locator('.actor').textContent()).resolves.toBe('alice')
    await expect(entry.textContent()).resolves.toContain('cancelled billing-api (reason: alice has second thoughts)')
    // The worker's announce is in the feed under the worker's name.
    await expect(
      page.locator('[data-testid="activity-entry"][data-type="migration.announced"] .actor').first().textContent(),
    ).resolves.toBe('worker')
    await screenshot(page, '21b-activity-by-alice')
    await context.close()
  })

  it('refuses a session cookie once its operator has signed out', async () => {
    const context = await browser.newContext()
    const page = await signIn(context, BOB)
    const cookie = (await context.cookies()).find((c) => c.name === 'loom_session')
    expect(cookie).toMatchObject({ httpOnly: true, sameSite: 'Strict', path: '/' })
    // A random id, the same length whoever signs in, and nothing of the token in it.
    expect(cookie!.value).toMatch(/^[A-Za-z0-9_-]{43}$/)
    const withCookie = { cookie: `loom_session=${cookie!.value}` }
    const before = await fetch(`${server.url}/`, { headers: withCookie, redirect: 'manual' })
    expect(before.status).toBe(200)
    expect((await fetch(`${server.url}/api/migrations`, { headers: withCookie })).status).toBe(200)

    await page.click('button:has-text("Sign out")')
    await page.waitForURL('**/login')
    // The same cookie, sent again as a thief who copied it would: refused everywhere.
    const after = await fetch(`${server.url}/`, { headers: withCookie, redirect: 'manual' })
    expect(after.status).toBe(303)
    expect(after.headers.get('location')).toBe('/login?redirectTo=%2F')
    expect((await fetch(`${server.url}/api/migrations`, { headers: withCookie })).status).toBe(401)
    const stream = await fetch(`${server.url}/api/events`, { headers: withCookie })
    expect(stream.status).toBe(401)
    const action = await fetch(`${server.url}/migrations/app-chart?/queue`, {
      method: 'POST',
      headers: { ...withCookie, 'content-type': 'application/x-www-form-urlencoded', origin: server.url },
      body: 'candidateId=checkout',
    })
    expect(action.status).toBe(401)
    await context.close()
  })

  it('does not follow a sign-in redirect off the console, however it is encoded', async () => {
    const signInTo = (target: string) =>
      fetch(`${server.url}/login`, {
        method: 'POST',
        // As a browser without JavaScript posts the form: it asks for a page, so the answer is a redirect.
        headers: { 'content-type': 'application/x-www-form-urlencoded', accept: 'text/html', origin: server.url },
        body: new URLSearchParams({ token: ALICE, redirectTo: target }).toString(),
        redirect: 'manual',
      })
    const home = await signInTo('/migrations/app-chart?status=queued')
    expect([home.status, home.headers.get('location')]).toEqual([303, '/migrations/app-chart?status=queued'])
    for (const target of [
      '/%09/evil.example',
      '/\t/evil.example',
      '//evil.example',
      '/%2F/evil.example',
      '/\\evil.example',
      '/%5Cevil.example',
    ]) {
      const response = await signInTo(target)
      expect(response.status).toBe(303)
      expect(response.headers.get('location')).toBe('/')
    }
  })

  it('shows javascript: addresses from a worker as text, under a CSP that refuses injected scripts', async () => {
    // A worker of its own on loopback, which accepts every step and reports what it is told.
    const dispatched: Array<{ path: string; authorization: string | undefined }> = []
    const worker: Server = createServer((request, response) => {
      dispatched.push({ path: request.url ?? '', authorization: request.headers.authorization })
      request.resume()
      request.on('end', () => {
        response.writeHead(200, { 'content-type': 'application/json' })
        response.end('{}')
      })
    })
    await new Promise<void>((resolve) => worker.listen(0, '127.0.0.1', resolve))
    const address = worker.address()
    const workerUrl = `http://127.0.0.1:${typeof address === 'object' && address ? address.port : 0}`
    try {
      const announced = await fetch(`${server.url}/api/registry/announce`, {
        method: 'POST',
        headers: json(WORKER_TOKEN),
        body: JSON.stringify({
          id: 'xss-check',
          name: 'XSS check',
          workerUrl,
          steps: [
            { name: 'open-pr', workerApp: 'evil' },
            { name: 'wait', workerApp: 'evil' },
          ],
          candidates: [
            {
              id: 'victim',
              files: [
                {
                  name: 'manifests',
                  repo: 'acme/gitops',
                  files: [
                    { path: 'deploy.yaml', url: 'javascript:alert(1)' },
                    { path: 'ok.yaml', url: 'https://git.example/acme/gitops/ok.yaml' },
                  ],
                },
              ],
            },
          ],
        }),
      })
      expect(announced.status).toBe(200)
      expect(
        (
          await fetch(`${server.url}/api/migrations/xss-check/queue`, {
            method: 'POST',
            headers: json(TOKEN),
            body: '{"candidateId":"victim"}',
          })
        ).status,
      ).toBe(202)
      expect(
        (await fetch(`${server.url}/api/runs/xss-check__victim/execute`, { method: 'POST', headers: json(TOKEN), body: '{}' })).status,
      ).toBe(202)
      const deadline = Date.now() + 20_000
      while (!dispatched.some((d) => d.path === '/steps/dispatch') && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50))
      // The migration is the announcing worker's, so Loom shows it that worker's token.
      expect(dispatched.find((d) => d.path === '/steps/dispatch')?.authorization).toBe(`Bearer ${WORKER_TOKEN}`)
      const reported = await fetch(`${server.url}/api/event/xss-check__victim`, {
        method: 'POST',
        headers: json(WORKER_TOKEN),
        body: JSON.stringify({
          stepName: 'open-pr',
          candidate: { id: 'victim' },
          success: true,
          metadata: { prUrl: 'javascript:alert(1)' },
        }),
      })
      expect(reported.status).toBe(202)
    } finally {
      await new Promise((resolve) => worker.close(resolve))
    }

    const context = await browser.newContext({ viewport: { width: 1360, height: 900 } })
    const run = await signIn(context, ALICE, '/runs/xss-check__victim')
    const dialogs: string[] = []
    run.on('dialog', (dialog) => {
      dialogs.push(dialog.message())
      void dialog.dismiss()
    })
    const violations: string[] = []
    run.on('console', (message) => {
      if (message.type() === 'error' && /Content Security Policy/i.test(message.text())) violations.push(message.text())
    })
    const response = await run.reload()
    await hydrated(run)
    const csp = response?.headers()['content-security-policy'] ?? ''
    expect(csp).toMatch(/script-src 'self' 'nonce-[A-Za-z0-9+/=]+'/)
    for (const directive of [
      "object-src 'none'",
      "base-uri 'self'",
      "frame-ancestors 'none'",
      "form-action 'self'",
      "default-src 'self'",
    ]) {
      expect(csp).toContain(directive)
    }

    const pullRequest = run.locator('[data-testid="timeline-step"][data-step="open-pr"] [data-testid="pull-request"]')
    await expect(pullRequest.textContent()).resolves.toMatch(/Pull request:\s*javascript:alert\(1\)/)
    await expect(pullRequest.locator('a').count()).resolves.toBe(0)
    const scriptHrefs = () =>
      run.evaluate(() =>
        [...document.querySelectorAll('[href], [src], [action], [formaction]')]
          .flatMap((e) => ['href', 'src', 'action', 'formaction'].map((a) => e.getAttribute(a)))
          .filter((v): v is string => v !== null && /^\s*(javascript|data|vbscript):/i.test(v)),
      )
    await expect(scriptHrefs()).resolves.toEqual([])
    await screenshot(run, '22-javascript-pr-url-as-text')

    await run.goto(`${server.url}/migrations/xss-check`)
    await hydrated(run)
    await run.click('tr[data-candidate="victim"] details.files summary')
    const files = run.locator('tr[data-candidate="victim"] [data-testid="candidate-file"]')
    await expect(files.nth(0).textContent()).resolves.toContain('javascript:alert(1)')
    await expect(files.nth(0).locator('a').count()).resolves.toBe(0)
    // An http(s) address is still a link.
    await expect(files.nth(1).locator('a').getAttribute('href')).resolves.toBe('https://git.example/acme/gitops/ok.yaml')
    await expect(scriptHrefs()).resolves.toEqual([])
    await screenshot(run, '23-javascript-file-url-as-text')
    // The console's own pages, scripts and styles keep within the policy…
    expect(violations).toEqual([])
    // …and a script injected into the page does not run.
    await run.evaluate(() => {
      const script = document.createElement('script')
      script.textContent = 'window.loomInjected = true'
      document.body.append(script)
    })
    await expect(run.evaluate(() => (window as unknown as { loomInjected?: boolean }).loomInjected)).resolves.toBeUndefined()
    expect(violations.length).toBeGreaterThan(0)
    expect(dialogs).toEqual([])
    await context.close()
  })
})
