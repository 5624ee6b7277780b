// Starts the channels chat example (examples/channels_chat/) with
// bin/hornbeam on a free port, for the browser tests (chat.test.mjs,
// longpoll.test.mjs).
import { spawn } from 'node:child_process'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'

const repoRoot = join(dirname(fileURLToPath(import.meta.url)), '..', '..')
export const STEP = 10_000 // the longest any single step may take, in ms

/**
 * Start the chat example on a free port; resolve once it prints its URL.
 * @returns {Promise<{ url: string, output: () => string, stop: () => Promise<number|string> }>}
 */
export async function startChatServer() {
  const proc = spawn(join(repoRoot, 'bin', 'hornbeam'), [
    'run', 'app:app', '--bind', '127.0.0.1:0', '--workers', '1',
    '--pythonpath', 'examples/channels_chat', '--channel-module', 'app',
  ], {
    cwd: repoRoot,
    env: { ...process.env, ERL_CRASH_DUMP_SECONDS: '0' },
    stdio: ['ignore', 'pipe', 'pipe'],
  })
  let output = ''
  proc.stdout.on('data', (d) => { output += d })
  proc.stderr.on('data', (d) => { output += d })
  const exited = new Promise((resolve) => proc.once('exit', (code, signal) => resolve(code ?? signal)))

  const url = await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`bin/hornbeam did not start in ${STEP} ms:\n${output}`)), STEP)
    const onData = () => {
      const m = output.match(/hornbeam: serving app:app on (http:\/\/127\.0\.0\.1:\d+)/)
      if (m) {
        clearTimeout(timer)
        proc.stdout.off('data', onData)
        resolve(m[1])
      }
    }
    proc.stdout.on('data', onData)
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
  return { url, output: () => output, stop }
}
