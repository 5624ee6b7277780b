// The metrics dashboard (priv/dashboard/, served on --metrics-bind) in a real
// headless browser: Debian's Chromium driven by playwright-core, as in
// chat.test.mjs.
//
// Starts the chat example with bin/hornbeam --metrics-bind 127.0.0.1:0, opens
// the dashboard, and checks through the page's own DOM that:
//   * it loads with no page error, console error or failed request, and its
//     tiles, charts and tables are filled from /metrics.json;
//   * the connection number moves when clients connect (a chat page in another
//     browser context) and back when they leave;
//   * the joined room shows in the busiest topics with its subscriber and
//     presence counts, and the Python worker shows as ready;
//   * the Python latency tile shows a value once the chat page's join ran.
// A screenshot goes to _build/browser/dashboard.png.
import { describe, it, before, after } from 'node:test'
import assert from 'node:assert/strict'
import { mkdirSync } from 'node:fs'
import { dirname, join } from 'node:path'
import { closeAll, launchChromium, repoRoot, skip, startChatServer } from './support.mjs'

const STEP = 15_000 // the longest any single step may take, in ms
const SCREENSHOT = join(repoRoot, '_build', 'browser', 'dashboard.png')

describe('metrics dashboard in headless Chromium', { skip, timeout: 120_000 }, () => {
  let server
  let browser
  const problems = []

  before(async () => {
    server = await startChatServer(['--metrics-bind', '127.0.0.1:0'], { metrics: true, startTimeout: STEP })
    browser = await launchChromium(STEP)
  })

  after(() => closeAll(browser, server))

  async function open(url, name, watch) {
    const context = await browser.newContext({ viewport: { width: 1100, height: 900 } })
    context.setDefaultTimeout(STEP)
    const page = await context.newPage()
    if (watch) {
      page.on('pageerror', (err) => problems.push(`${name}: page error: ${err.message}`))
      page.on('console', (msg) => {
        if (msg.type() === 'error' && !msg.text().startsWith('Failed to load resource')) problems.push(`${name}: console error: ${msg.text()}`)
      })
      page.on('response', (res) => {
        if (res.status() >= 400 && new URL(res.url()).pathname !== '/favicon.ico') problems.push(`${name}: HTTP ${res.status()} for ${res.url()}`)
      })
      page.on('requestfailed', (req) => problems.push(`${name}: request failed: ${req.url()} (${req.failure()?.errorText})`))
    }
    const response = await page.goto(url, { timeout: STEP })
    assert.equal(response.status(), 200)
    return { context, page }
  }

  const tile = (page, id, re) => page.locator(`#${id}`, { hasText: re }).waitFor()

  it('loads, and its numbers move when clients connect and leave', async () => {
    const dash = await open(server.metrics + '/', 'dashboard', true)
    assert.equal(await dash.page.title(), 'hornbeam dashboard')
    await dash.page.locator('#status', { hasText: /^updated / }).waitFor()
    await tile(dash.page, 'connections', /^0$/)
    await dash.page.locator('#workers tbody tr td', { hasText: /^ready$/ }).waitFor()

    // A chat page connects (one WebSocket) and joins a room.
    const room = `dash${process.pid}`
    const chat = await open(server.url + '/', 'chat', false)
    await chat.page.locator('#conn', { hasText: /^connected$/ }).waitFor()
    await tile(dash.page, 'connections', /^1$/)
    await chat.page.fill('#username', 'ada')
    await chat.page.fill('#room', room)
    await chat.page.click('#join-btn')
    await chat.page.locator('#log p.notice', { hasText: `you joined room ${room} as ada` }).waitFor()
    await tile(dash.page, 'channels', /^1$/)
    await dash.page.waitForFunction((topic) => [...document.querySelectorAll('#topics tbody tr')]
      .some((tr) => tr.children[0].textContent === topic && tr.children[1].textContent === '1' &&
                    tr.children[2].textContent === '1'), `room:${room}`, { timeout: STEP, polling: 100 })
    await tile(dash.page, 'presences', /^1$/)
    await tile(dash.page, 'p99', /ms$/)

    // A second client, then both gone.
    const chat2 = await open(server.url + '/', 'chat2', false)
    await chat2.page.locator('#conn', { hasText: /^connected$/ }).waitFor()
    await tile(dash.page, 'connections', /^2$/)
    await chat.context.close()
    await chat2.context.close()
    await tile(dash.page, 'connections', /^0$/)
    await tile(dash.page, 'presences', /^0$/)

    // The charts hold the samples drawn (five minutes at most).
    const n = await dash.page.evaluate(() => window.hornbeamDashboard.samples.length)
    assert.ok(n >= 3, `only ${n} samples`)

    mkdirSync(dirname(SCREENSHOT), { recursive: true })
    await dash.page.screenshot({ path: SCREENSHOT, fullPage: true })
    assert.deepEqual(problems, [])
  })
})
