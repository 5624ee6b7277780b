// What the browser tests share: headless Chromium (Debian's package driven
// by test/js's playwright-core) and the channels chat example
// (examples/channels_chat/) started with bin/hornbeam on a free port.
import assert from 'node:assert/strict'
import { spawn } from 'node:child_process'
import { existsSync } from 'node:fs'
import { createRequire } from 'node:module'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'

export const repoRoot = join(dirname(fileURLToPath(import.meta.url)), '..', '..')
export const STEP = 10_000 // the longest any single step may take, in ms
export const CHROMIUM = '/usr/bin/chromium'

/** `describe`'s skip option: false, or why the browser tests cannot run here. */
export const skip = existsSync(CHROMIUM)
  ? false
  : `${CHROMIUM} is missing (Debian package "chromium", installed by \`make bootstrap\`): browser test skipped`

/** Launch headless Chromium with the flags this machine needs. */
export async function launchChromium(timeout = STEP) {
  const { chromium } = createRequire(join(repoRoot, 'test', 'js', 'package.json'))('playwright-core')
  return chromium.launch({
    executablePath: CHROMIUM,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking',
      '--disable-component-update', '--disable-quic', '--no-first-run', '--disable-sync'],
    timeout,
  })
}

/**
 * Start the chat example on a free port with `extraArgs`; resolve once it
 * prints its URL (and, with `metrics`, its dashboard URL).
 * @param {string[]} [extraArgs]
 * @param {{ metrics?: boolean, startTimeout?: number }} [opts]
 * @returns {Promise<{ url: string, metrics?: string, output: () => string, stop: () => Promise<number|string> }>}
 */
export async function startChatServer(extraArgs = [], { metrics = false, startTimeout = STEP } = {}) {
  const proc = spawn(join(repoRoot, 'bin', 'hornbeam'), [
    'run', 'app:app', '--bind', '127.0.0.1:0', '--workers', '1',
    '--pythonpath', 'examples/channels_chat', '--channel-module', 'app', ...extraArgs,
  ], {
    cwd: repoRoot,
    env: { ...process.env, ERL_CRASH_DUMP_SECONDS: '0' },
    stdio: ['ignore', 'pipe', 'pipe'],
  })
  let output = ''
  proc.stdout.on('data', (d) => { output += d })
  proc.stderr.on('data', (d) => { output += d })
  const exited = new Promise((resolve) => proc.once('exit', (code, signal) => resolve(code ?? signal)))

  const urls = await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`bin/hornbeam did not start in ${startTimeout} ms:\n${output}`)),
      startTimeout)
    const onData = () => {
      const app = output.match(/hornbeam: serving app:app on (http:\/\/127\.0\.0\.1:\d+)/)
      const dashboard = metrics ? output.match(/dashboard on (http:\/\/127\.0\.0\.1:\d+)\//) : null
      if (app && (!metrics || dashboard)) {
        clearTimeout(timer)
        proc.stdout.off('data', onData)
        proc.stderr.off('data', onData)
        resolve(metrics ? { url: app[1], metrics: dashboard[1] } : { url: app[1] })
      }
    }
    proc.stdout.on('data', onData)
    proc.stderr.on('data', onData)
    exited.then((status) => {
      clearTimeout(timer)
      reject(new Error(`bin/hornbeam exited (${status}) before it listened:\n${output}`))
    })
  })

  /** SIGINT (a graceful stop), then wait for the exit; SIGKILL only if it hangs. */
  const stop = async () => {
    if (proc.exitCode !== null || proc.signalCode !== null) return exited
    proc.kill('SIGINT')
    const timer = setTimeout(() => proc.kill('SIGKILL'), 2 * STEP)
    const status = await exited
    clearTimeout(timer)
    return status
  }
  return { ...urls, output: () => output, stop }
}

// --- checks on the chat example's page (chat and long-poll tests) ---

/** Wait until a page's log has a message line "<from>: <body>" (from the other user). */
export const seesMessage = ({ page }, from, body) =>
  page.locator('#log p:not(.me):not(.notice)', { hasText: `${from}: ${body}` }).waitFor()

/** Wait until the online list is exactly `entries` ([name, status] pairs, any order). */
export async function seesOnline({ page }, entries) {
  const want = entries.map(([n, s]) => `${n} ${s}`).sort()
  try {
    await page.waitForFunction((want) => {
      const got = [...document.querySelectorAll('#online li')]
        .map((li) => `${li.dataset.user} ${li.querySelector('.status')?.textContent}`).sort()
      return JSON.stringify(got) === JSON.stringify(want)
    }, want, { timeout: STEP, polling: 50 })
  } catch (err) {
    const got = await page.locator('#online li').allTextContents()
    throw new Error(`online list: wanted ${JSON.stringify(want)}, have ${JSON.stringify(got)} (${err.message})`)
  }
}

/** For `after`: close Chromium, stop the chat server and check it stopped cleanly on SIGINT. */
export async function closeAll(browser, server) {
  await browser?.close()
  if (server) {
    const status = await server.stop()
    assert.equal(status, 0, `bin/hornbeam did not stop cleanly on SIGINT (${status}):\n${server.output()}`)
  }
}
