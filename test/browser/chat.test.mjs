// End-to-end test of the channels chat example (examples/channels_chat/) in a
// real headless browser: Debian's Chromium driven by playwright-core.
//
// Starts the example with bin/hornbeam (so it needs the build: `make test`
// runs `rebar3 compile` first), opens the chat page in two browser contexts
// (two independent users), and checks over the real WebSocket/Channels/
// Presence stack, through the page's own DOM:
//   * both join the same room, see "connected" and their own join notice;
//   * messages go both ways (the receiver sees "<name>: <body>", the sender
//     sees its own "you: <body>" after the server's reply);
//   * each sees the other in the online list with the status "online";
//   * a status change on one page shows on the other;
//   * Leave then Join again: the other sees the leave and the return, with the
//     status the page shows;
//   * one page closes; the other's online list shrinks and it logs "<name> left";
//   * no page errors or console errors along the way.
// A screenshot of the remaining page goes to _build/browser/chat.png.
//
// playwright-core is a devDependency of test/js (installed there by
// scripts/bootstrap.sh); this test reuses that install.
import { describe, it, before, after } from 'node:test'
import assert from 'node:assert/strict'
import { mkdirSync } from 'node:fs'
import { dirname, join } from 'node:path'
import { closeAll, launchChromium, repoRoot, seesMessage, seesOnline, skip, startChatServer, STEP } from './support.mjs'

const SCREENSHOT = join(repoRoot, '_build', 'browser', 'chat.png')

describe('channels chat example in headless Chromium', { skip, timeout: 120_000 }, () => {
  let server
  let browser
  const problems = [] // page errors and console errors, from every page

  before(async () => {
    server = await startChatServer()
    browser = await launchChromium(STEP)
  })

  after(() => closeAll(browser, server))

  /** A fresh browser context (its own cookies/storage: another user) with the chat page open. */
  async function openChat(name) {
    const context = await browser.newContext({ viewport: { width: 900, height: 560 } })
    context.setDefaultTimeout(STEP)
    const page = await context.newPage()
    page.on('pageerror', (err) => problems.push(`${name}: page error: ${err.message}`))
    page.on('console', (msg) => {
      // A failed load is reported below, with its URL (the favicon, which the example lacks, is fine).
      if (msg.type() === 'error' && !msg.text().startsWith('Failed to load resource')) problems.push(`${name}: console error: ${msg.text()}`)
    })
    page.on('response', (res) => {
      if (res.status() >= 400 && new URL(res.url()).pathname !== '/favicon.ico') problems.push(`${name}: HTTP ${res.status()} for ${res.url()}`)
    })
    page.on('requestfailed', (req) => problems.push(`${name}: request failed: ${req.url()} (${req.failure()?.errorText})`))
    const response = await page.goto(server.url + '/', { timeout: STEP })
    assert.equal(response.status(), 200)
    assert.equal(await page.title(), 'Hornbeam chat')
    await page.locator('#conn', { hasText: /^connected$/ }).waitFor()
    return { context, page, name }
  }

  async function joinRoom({ page, name }, room) {
    await page.fill('#username', name)
    await page.fill('#room', room)
    await page.click('#join-btn')
    await page.locator('#log p.notice', { hasText: `you joined room ${room} as ${name}` }).waitFor()
    // setJoined(true) ran: the controls flipped.
    assert.equal(await page.isDisabled('#join-btn'), true)
    assert.equal(await page.isEnabled('#message'), true)
    assert.equal(await page.isEnabled('#status'), true)
  }

  async function send({ page }, body) {
    await page.fill('#message', body)
    await page.click('#send-btn')
    // The sender's own line appears on the server's ok reply, and the input clears.
    await page.locator('#log p.me', { hasText: `you: ${body}` }).waitFor()
    await page.waitForFunction(() => document.getElementById('message').value === '', null, { timeout: STEP })
  }

  it('two users chat, see each other online, change status, and see a leave', async () => {
    const room = `e2e${process.pid}`
    const alice = await openChat('alice')
    const bob = await openChat('bob')

    await joinRoom(alice, room)
    await seesOnline(alice, [['alice', 'online']])
    await joinRoom(bob, room)

    // Each sees the other (and itself) online, with the status.
    await seesOnline(alice, [['alice', 'online'], ['bob', 'online']])
    await seesOnline(bob, [['alice', 'online'], ['bob', 'online']])
    await alice.page.locator('#log p.notice', { hasText: /^bob joined$/ }).waitFor()

    // Messages both ways; the sender does not get its own broadcast back.
    await send(alice, 'hello from alice')
    await seesMessage(bob, 'alice', 'hello from alice')
    await send(bob, 'hi alice, bob here <b>not bold</b>')
    await seesMessage(alice, 'bob', 'hi alice, bob here <b>not bold</b>') // escaped, shown as text
    assert.equal(await alice.page.locator('#log b', { hasText: 'not bold' }).count(), 0, 'message HTML was not escaped')
    assert.equal(await alice.page.locator('#log p', { hasText: 'alice: hello from alice' }).count(), 0,
      'alice got her own broadcast back')

    // A status change on bob's page shows on alice's (and on bob's own list).
    await bob.page.selectOption('#status', 'away')
    await seesOnline(alice, [['alice', 'online'], ['bob', 'away']])
    await seesOnline(bob, [['alice', 'online'], ['bob', 'away']])
    await alice.page.selectOption('#status', 'busy')
    await seesOnline(bob, [['alice', 'busy'], ['bob', 'away']])
    // A status update is not logged as a leave + join.
    assert.deepEqual(await alice.page.locator('#log p.notice', { hasText: /^bob (joined|left)$/ }).allTextContents(), ['bob joined'])
    assert.deepEqual(await bob.page.locator('#log p.notice', { hasText: /^alice (joined|left)$/ }).allTextContents(), ['alice joined'])

    // Alice leaves with the button and joins again: bob sees her go and come back,
    // with the status her page still shows (not reset to "online" behind her back).
    await alice.page.click('#leave-btn')
    await alice.page.locator('#log p.notice', { hasText: /^you left the room$/ }).waitFor()
    await seesOnline(alice, [])
    await seesOnline(bob, [['bob', 'away']])
    await bob.page.locator('#log p.notice', { hasText: /^alice left$/ }).waitFor()
    await alice.page.click('#join-btn')
    await alice.page.locator('#log p.notice', { hasText: `you joined room ${room} as alice` }).nth(1).waitFor()
    assert.equal(await alice.page.inputValue('#status'), 'busy')
    await seesOnline(bob, [['alice', 'busy'], ['bob', 'away']])
    await seesOnline(alice, [['alice', 'busy'], ['bob', 'away']])
    await send(alice, 'back again')
    await seesMessage(bob, 'alice', 'back again')

    // Bob closes his page: alice's list shrinks to herself and she sees him leave.
    await bob.page.close()
    await bob.context.close()
    await seesOnline(alice, [['alice', 'busy']])
    await alice.page.locator('#log p.notice', { hasText: /^bob left$/ }).waitFor()

    mkdirSync(dirname(SCREENSHOT), { recursive: true })
    await alice.page.screenshot({ path: SCREENSHOT, timeout: STEP })
    await alice.context.close()

    assert.deepEqual(problems, [], 'errors in the pages')
  })
})
