// Starts the real Hornbeam server (the Erlang app of this repo) for the
// integration tests: compiles support/js_test_channel.erl into a temporary
// directory, runs `erl` with the app's ebin, mounts the channel on "room:*"
// on 127.0.0.1 with a free port, and reads the port from stdout.
// Needs `rebar3 compile` first (make test does it).
import assert from 'node:assert/strict'
import { spawn, execFileSync } from 'node:child_process'
import { existsSync, mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'

const here = dirname(fileURLToPath(import.meta.url))
export const repoRoot = join(here, '..', '..', '..')
const ebin = join(repoRoot, '_build', 'default', 'lib', 'hornbeam', 'ebin')

/**
 * @param {string} [extraOpts] more entries of the hornbeam:start/2 options map, in Erlang syntax
 * @param {Array<[string, string]>} [moreChannels] [pattern, module] pairs: support/<module>.erl mounted on pattern
 * @returns {Promise<{ port: number, url: string, output: () => string, stop: () => Promise<void> }>}
 */
export async function startServer(extraOpts = '', moreChannels = []) {
  if (!existsSync(join(ebin, 'hornbeam.beam'))) {
    throw new Error(`${ebin} has no hornbeam.beam: run \`rebar3 compile\` in the repo root first`)
  }
  const beamDir = mkdtempSync(join(tmpdir(), 'js-test-channel-')) // not "hornbeam-*": code:priv_dir(hornbeam) would pick it
  for (const mod of ['js_test_channel', ...moreChannels.map(([, m]) => m)]) {
    execFileSync('erlc', ['-pa', ebin, '-o', beamDir, join(here, `${mod}.erl`)], { stdio: 'pipe' })
  }
  const mounts = [['room:*', 'js_test_channel'], ...moreChannels].map(([p, m]) => `{<<"${p}">>, ${m}}`)
  const opts = [
    'bind => "127.0.0.1:0"',
    `channels => [${mounts.join(', ')}]`,
    ...(extraOpts ? [extraOpts] : []),
  ].join(', ')
  // The node halts when its stdin closes, so it never outlives the test run.
  const script = [
    `ok = hornbeam:start(none, #{${opts}})`,
    'io:format("PORT ~b~n", [hornbeam:port()])',
    'spawn(fun() -> _ = io:get_line(""), erlang:halt() end)',
  ].join(', ')
  const erl = spawn('erl', ['-noshell', '-pa', ebin, '-pa', beamDir, '-eval', `${script}.`], {
    cwd: repoRoot,
    env: { ...process.env, ERL_CRASH_DUMP_SECONDS: '0' }, // no erl_crash.dump left behind
    stdio: ['pipe', 'pipe', 'pipe'],
  })
  let output = ''
  erl.stdout.on('data', (d) => { output += d })
  erl.stderr.on('data', (d) => { output += d })

  const port = await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`server did not start in 20 s:\n${output}`)), 20000)
    const onData = () => {
      const m = output.match(/PORT (\d+)/)
      if (m) {
        clearTimeout(timer)
        erl.stdout.off('data', onData)
        resolve(Number(m[1]))
      }
    }
    erl.stdout.on('data', onData)
    erl.on('exit', (code) => {
      clearTimeout(timer)
      reject(new Error(`server exited with ${code} before it listened:\n${output}`))
    })
  })

  const stop = () => new Promise((resolve) => {
    const done = () => {
      rmSync(beamDir, { recursive: true, force: true })
      resolve()
    }
    if (erl.exitCode !== null || erl.signalCode !== null) return done()
    erl.once('exit', done)
    erl.kill('SIGKILL')
  })
  return { port, url: `ws://127.0.0.1:${port}/ws`, output: () => output, stop }
}

/** Resolve when `check()` is truthy; poll every 5 ms, fail after `ms`. */
export async function waitFor(check, ms = 5000, what = 'condition') {
  const deadline = Date.now() + ms
  for (;;) {
    const value = check()
    if (value) return value
    if (Date.now() > deadline) throw new Error(`timed out after ${ms} ms waiting for ${what}`)
    await new Promise((r) => setTimeout(r, 5))
  }
}

/** A promise of a Push's outcome: { status, response }. */
export function outcome(push) {
  return new Promise((resolve) => {
    for (const status of ['ok', 'error', 'timeout']) push.receive(status, (response) => resolve({ status, response }))
  })
}

/** Join `topic` on a connected socket (either client); fails the test unless the reply is ok. */
export async function joinOk(socket, topic, params = {}) {
  const channel = socket.channel(topic, params)
  const result = await outcome(channel.join())
  assert.equal(result.status, 'ok', `join ${topic}: ${JSON.stringify(result)}`)
  return { channel, response: result.response }
}
