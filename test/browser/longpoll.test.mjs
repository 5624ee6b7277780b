// The channels chat example (examples/channels_chat/) in headless Chromium
// with WebSocket blocked on one page: `window.WebSocket` is removed before
// the page's scripts run (as where a browser or a proxy offers none), so
// its client (hornbeam.js) long-polls /ws/longpoll. The other page uses
// WebSocket. Through the pages' own DOM:
//   * both connect and join one room, see each other online;
//   * messages go both ways between the long-poll page and the WebSocket page;
//   * a status change on the long-poll page shows on the other;
//   * the WebSocket page closes: the long-poll page sees the leave;
//   * the long-poll page never opened a WebSocket and did poll; no page errors;
//   * a page whose WebSocket upgrade the server refuses (sent to a path it
//     does not serve) falls back to long-poll (the example's
//     longPollFallbackMs) and chats;
//   * phoenix.js 1.6, 1.7 and 1.8's own LongPoll (XMLHttpRequest, which
//     Node lacks) in a page of the same origin chats with the chat page.
import { describe, it, before, after } from 'node:test'
import assert from 'node:assert/strict'
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import { closeAll, launchChromium, repoRoot, seesMessage, seesOnline, skip, startChatServer, STEP } from './support.mjs'

describe('chat example over long-poll in headless Chromium (WebSocket blocked)', { skip, timeout: 120_000 }, () => {
  let server
  let browser
  const problems = []

  before(async () => {
    server = await startChatServer()
    browser = await launchChromium(STEP)
  })

  after(() => closeAll(browser, server))

  /**
   * The chat page in a fresh context. `blockWebSocket`: `true` removes
   * window.WebSocket before any script; `'refused'` keeps it but sends its
   * upgrade to a path the server refuses (404, as a proxy that strips the
   * upgrade would make it fail), so the page's longPollFallbackMs must act.
   */
  async function openChat(name, { blockWebSocket }) {
    const context = await browser.newContext({ viewport: { width: 900, height: 560 } })
    context.setDefaultTimeout(STEP)
    const page = await context.newPage()
    const seen = { websockets: 0, polls: 0, posts: 0 }
    if (blockWebSocket === true) await page.addInitScript(() => { delete window.WebSocket })
    if (blockWebSocket === 'refused') {
      await page.addInitScript(() => {
        const Real = window.WebSocket
        window.WebSocket = class extends Real {
          constructor(url, protocols) { super(String(url).replace('/ws/websocket', '/refused/websocket'), protocols) }
        }
      })
    }
    page.on('websocket', () => seen.websockets++)
    page.on('request', (req) => {
      if (new URL(req.url()).pathname === '/ws/longpoll') seen[req.method() === 'POST' ? 'posts' : 'polls']++
    })
    page.on('pageerror', (err) => problems.push(`${name}: page error: ${err.message}`))
    page.on('console', (msg) => {
      if (msg.type() === 'error' && !msg.text().startsWith('Failed to load resource') &&
          !(blockWebSocket === 'refused' && msg.text().includes('/refused/websocket'))) problems.push(`${name}: console error: ${msg.text()}`)
    })
    page.on('response', (res) => {
      if (res.status() >= 400 && new URL(res.url()).pathname !== '/favicon.ico') problems.push(`${name}: HTTP ${res.status()} for ${res.url()}`)
    })
    const response = await page.goto(server.url + '/', { timeout: STEP })
    assert.equal(response.status(), 200)
    await page.locator('#conn', { hasText: /^connected$/ }).waitFor()
    return { context, page, name, seen }
  }

  async function joinRoom({ page, name }, room) {
    await page.fill('#username', name)
    await page.fill('#room', room)
    await page.click('#join-btn')
    await page.locator('#log p.notice', { hasText: `you joined room ${room} as ${name}` }).waitFor()
  }

  async function send({ page }, body) {
    await page.fill('#message', body)
    await page.click('#send-btn')
    await page.locator('#log p.me', { hasText: `you: ${body}` }).waitFor()
  }

  const PHOENIX = { '1.6': 'phoenix16', '1.7': 'phoenix17', '1.8': 'phoenix' }
  for (const [version, pkg] of Object.entries(PHOENIX)) {
    it(`phoenix.js ${version} LongPoll in the browser chats with the chat page`, async () => {
      const room = `phx${version.replace('.', '')}${process.pid}`
      const chat = await openChat('erin', { blockWebSocket: false })
      await joinRoom(chat, room)
      const context = await browser.newContext()
      context.setDefaultTimeout(STEP)
      const page = await context.newPage()
      page.on('pageerror', (err) => problems.push(`phoenix.js ${version}: page error: ${err.message}`))
      const script = readFileSync(join(repoRoot, 'test', 'js', 'node_modules', pkg, 'priv', 'static', 'phoenix.js'), 'utf8')
      // phoenix.js, served from the server's origin (the chat app does not serve it)
      await page.route('**/__phoenix.js', (route) => route.fulfill({ contentType: 'text/javascript', body: script }))
      await page.route('**/__phoenix.html', (route) => route.fulfill({
        contentType: 'text/html', body: '<!doctype html><title>phx</title><script src="/__phoenix.js"></script>',
      }))
      let polls = 0
      page.on('request', (req) => { if (new URL(req.url()).pathname === '/ws/longpoll') polls++ })
      await page.goto(server.url + '/__phoenix.html')
      const joined = await page.evaluate(async (room) => {
        const P = /** @type {any} */ (window).Phoenix
        const socket = new P.Socket('/ws', { transport: P.LongPoll })
        socket.connect()
        const channel = socket.channel(`room:${room}`, { username: 'frank' })
        const got = []
        channel.on('new_msg', (m) => got.push(`${m.username}: ${m.body}`))
        Object.assign(window, { channel, got })
        return new Promise((resolve) => channel.join()
          .receive('ok', () => resolve(socket.conn instanceof P.LongPoll ? 'ok over LongPoll' : 'not LongPoll'))
          .receive('error', (e) => resolve(`error ${JSON.stringify(e)}`))
          .receive('timeout', () => resolve('timeout')))
      }, room)
      assert.equal(joined, 'ok over LongPoll')
      await seesOnline(chat, [['erin', 'online'], ['frank', 'online']])
      await send(chat, `hello frank (${version})`)
      await page.waitForFunction((body) => /** @type {any} */ (window).got.includes(body), `erin: hello frank (${version})`)
      const reply = await page.evaluate((body) => new Promise((resolve) => /** @type {any} */ (window).channel
        .push('new_msg', { body }).receive('ok', (r) => resolve(r)).receive('error', (e) => resolve(e))), `hi erin (${version})`)
      assert.deepEqual(reply, { status: 'ok' })
      await seesMessage(chat, 'frank', `hi erin (${version})`)
      assert.ok(polls >= 2)
      await context.close()
      await chat.context.close()
      assert.deepEqual(problems, [], 'errors in the pages')
    })
  }

  it('a page whose WebSocket upgrade is refused falls back to long-poll (longPollFallbackMs) and chats', async () => {
    const room = `fb${process.pid}`
    const blocked = await openChat('gina', { blockWebSocket: 'refused' })
    const ws = await openChat('hal', { blockWebSocket: false })
    await joinRoom(blocked, room)
    await joinRoom(ws, room)
    await seesOnline(blocked, [['gina', 'online'], ['hal', 'online']])
    await send(blocked, 'made it through')
    await seesMessage(ws, 'gina', 'made it through')
    await send(ws, 'welcome')
    await seesMessage(blocked, 'hal', 'welcome')
    assert.ok(blocked.seen.polls >= 2 && blocked.seen.posts >= 1, `long-poll traffic: ${JSON.stringify(blocked.seen)}`)
    assert.ok(blocked.seen.websockets >= 1, 'the page tried WebSocket first')
    assert.equal(ws.seen.polls, 0, 'the unblocked page long-polled')
    await blocked.context.close()
    await ws.context.close()
    assert.deepEqual(problems, [], 'errors in the pages')
  })

  it('a long-poll page and a WebSocket page chat, see presence, and see a leave', async () => {
    const room = `lp${process.pid}`
    const polling = await openChat('carol', { blockWebSocket: true })
    assert.equal(await polling.page.evaluate(() => typeof window.WebSocket), 'undefined')
    const ws = await openChat('dave', { blockWebSocket: false })

    await joinRoom(polling, room)
    await joinRoom(ws, room)
    await seesOnline(polling, [['carol', 'online'], ['dave', 'online']])
    await seesOnline(ws, [['carol', 'online'], ['dave', 'online']])

    await send(polling, 'hello over long-poll')
    await seesMessage(ws, 'carol', 'hello over long-poll')
    await send(ws, 'hi from a WebSocket')
    await seesMessage(polling, 'dave', 'hi from a WebSocket')

    await polling.page.selectOption('#status', 'away')
    await seesOnline(ws, [['carol', 'away'], ['dave', 'online']])

    await ws.page.close()
    await ws.context.close()
    await seesOnline(polling, [['carol', 'away']])
    await polling.page.locator('#log p.notice', { hasText: /^dave left$/ }).waitFor()

    assert.equal(polling.seen.websockets, 0, 'the blocked page opened a WebSocket')
    assert.ok(polling.seen.polls >= 2 && polling.seen.posts >= 2, `long-poll traffic: ${JSON.stringify(polling.seen)}`)
    assert.ok(ws.seen.websockets >= 1, 'the other page used WebSocket')
    assert.equal(ws.seen.polls, 0)
    await polling.context.close()
    assert.deepEqual(problems, [], 'errors in the pages')
  })
})
