// permessage-deflate in a real browser: headless Chromium (which offers
// permessage-deflate on every WebSocket) on the channels chat example,
// served by bin/hornbeam with `--compress on` and off (the default). The
// handshake's response header and the frames are read over the Chrome
// DevTools Protocol; two users exchange a message through the page's DOM.
// Needs the build and test/js's playwright-core, like chat.test.mjs.
import { describe, it, before, after } from 'node:test'
import assert from 'node:assert/strict'
import { launchChromium, skip, startChatServer, STEP } from './support.mjs'

describe('permessage-deflate in headless Chromium (chat example)', { skip, timeout: 120_000 }, () => {
  let browser
  before(async () => {
    browser = await launchChromium(STEP)
  })
  after(async () => { await browser?.close() })

  /** The chat page as `name` in `room`, with its WebSocket handshake and frames recorded. */
  async function openChat(url, name, room) {
    const context = await browser.newContext()
    context.setDefaultTimeout(STEP)
    const page = await context.newPage()
    const cdp = await context.newCDPSession(page)
    const seen = { extensions: null, sent: 0, received: 0 }
    await cdp.send('Network.enable')
    cdp.on('Network.webSocketHandshakeResponseReceived', ({ response }) => {
      const headers = Object.fromEntries(Object.entries(response.headers).map(([k, v]) => [k.toLowerCase(), v]))
      seen.extensions = headers['sec-websocket-extensions'] ?? ''
    })
    cdp.on('Network.webSocketFrameSent', () => { seen.sent++ })
    cdp.on('Network.webSocketFrameReceived', () => { seen.received++ })
    await page.goto(url + '/')
    await page.locator('#conn', { hasText: /^connected$/ }).waitFor()
    await page.fill('#username', name)
    await page.fill('#room', room)
    await page.click('#join-btn')
    await page.locator('#log p.notice', { hasText: `you joined room ${room} as ${name}` }).waitFor()
    return { context, page, seen }
  }

  for (const [label, args, compressed] of [['--compress on', ['--compress', 'on'], true], ['compress off (default)', [], false]]) {
    it(`${label}: Chromium's offer is ${compressed ? 'accepted' : 'declined'} and the chat works`, async () => {
      const server = await startChatServer(args, { startTimeout: 3 * STEP })
      try {
        const room = `deflate${process.pid}`
        const alice = await openChat(server.url, 'alice', room)
        const bob = await openChat(server.url, 'bob', room)
        if (compressed) assert.match(alice.seen.extensions, /^permessage-deflate/)
        else assert.equal(alice.seen.extensions, '')
        const body = 'compressed or not, the same words arrive '.repeat(3).trim()
        await alice.page.fill('#message', body)
        await alice.page.click('#send-btn')
        await alice.page.locator('#log p.me', { hasText: `you: ${body}` }).waitFor()
        await bob.page.locator('#log p:not(.me):not(.notice)', { hasText: `alice: ${body}` }).waitFor()
        assert.ok(alice.seen.sent > 0 && bob.seen.received > 0)
        await alice.context.close()
        await bob.context.close()
      } finally {
        await server.stop()
      }
    })
  }
})
