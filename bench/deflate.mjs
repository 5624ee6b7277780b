// permessage-deflate: what compression costs and saves, on the chat example.
//
//   node bench/deflate.mjs                 # 40 clients x 25 messages, then 1000 idle
//   node bench/deflate.mjs --clients 100 --messages 20 --idle 2000
//
// For compression off and four ways on (VARIANTS below) it serves the chat
// example (examples/channels_chat: Python handlers and presence, one worker),
// connects N clients with the official phoenix.js over `ws` offering
// permessage-deflate as browsers do (threshold 0: every message compressed
// by the client), joins them to room:lobby, and has each send M chat lines
// (each broadcast to the other N-1). It reports
//   * bytes on the wire: every byte the clients' TCP sockets read and wrote
//     during the chat phase (WebSocket frames; handshakes excluded);
//   * server CPU: user+system time of the BEAM process (/proc/PID/stat)
//     during the chat phase (the Python worker's CPU is not counted: it
//     does the same work either way);
//   * memory: the BEAM's RSS with `--idle` more connections (a room each)
//     joined and each sent and received one message (contexts allocated),
//     and again after each sent a heartbeat (the socket hibernates and drops
//     its deflate context; the client's context was never kept:
//     client_no_context_takeover). RSS is coarse: freed zlib state stays in
//     the C allocator for reuse, so it seldom drops; the exact bytes a context
//     holds are measured in native/hornbeam_core/tests/deflate_memory.rs.
// Results and the reading of them: README "Compression"; bench/README.md.
// Needs `make build` and test/js/node_modules (npm ci in test/js).
import { spawn } from 'node:child_process'
import { readFileSync, readdirSync } from 'node:fs'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { createRequire } from 'node:module'

const root = join(dirname(fileURLToPath(import.meta.url)), '..')
const require = createRequire(join(root, 'test', 'js', 'package.json'))
const WebSocket = require('ws')
const { Socket } = await import(join(root, 'test', 'js', 'node_modules', 'phoenix', 'priv', 'static', 'phoenix.mjs'))

const args = Object.fromEntries(process.argv.slice(2).reduce((acc, a, i, all) =>
  (a.startsWith('--') ? [...acc, [a.slice(2), all[i + 1]]] : acc), []))
const CLIENTS = Number(args.clients ?? 40)
const MESSAGES = Number(args.messages ?? 25)
const IDLE = Number(args.idle ?? 1000)
const PORT = Number(args.port ?? 18731)
const TICKS = 100 // clock ticks per second (getconf CLK_TCK)

class DeflateWebSocket extends WebSocket {
  constructor(url, protocols) { super(url, protocols, { perMessageDeflate: { threshold: 0 } }) }
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms))

async function waitFor(check, ms, what) {
  const deadline = Date.now() + ms
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timeout: ${what}`)
    await sleep(10)
  }
}

function descendants(pid) {
  const children = new Map()
  for (const d of readdirSync('/proc')) {
    if (!/^\d+$/.test(d)) continue
    try {
      const stat = readFileSync(`/proc/${d}/stat`, 'utf8')
      const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1])
      if (!children.has(ppid)) children.set(ppid, [])
      children.get(ppid).push(Number(d))
    } catch { /* gone */ }
  }
  const out = []
  const walk = (p) => { for (const c of children.get(p) ?? []) { out.push(c); walk(c) } }
  walk(pid)
  return out
}

function beamPid(pid) {
  return [pid, ...descendants(pid)].find((p) => {
    try { return readFileSync(`/proc/${p}/comm`, 'utf8').startsWith('beam') } catch { return false }
  })
}

function cpuSeconds(pid) {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8')
  const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
  return (Number(f[11]) + Number(f[12])) / TICKS
}

function rssMiB(pid) {
  const m = readFileSync(`/proc/${pid}/status`, 'utf8').match(/VmRSS:\s+(\d+) kB/)
  return Number(m[1]) / 1024
}

async function serve(opts) {
  const ebin = join(root, '_build', 'default', 'lib', 'hornbeam', 'ebin')
  const all = [`bind => "127.0.0.1:${PORT}"`, 'pythonpath => ["examples/channels_chat"]', 'channel_modules => ["app"]',
    'workers => 1', ...(opts ? [opts] : [])].join(', ')
  const script = `logger:set_primary_config(level, warning), ok = hornbeam:start("app:app", #{${all}}), ` +
    '_ = io:get_line(""), erlang:halt().'
  const proc = spawn('erl', ['-noshell', '-pa', ebin, '-eval', script], { cwd: root, stdio: ['pipe', 'pipe', 'pipe'] })
  let output = ''
  proc.stdout.on('data', (d) => { output += d })
  proc.stderr.on('data', (d) => { output += d })
  const deadline = Date.now() + 60000
  for (;;) {
    if (Date.now() > deadline) throw new Error(`server did not start:\n${output}`)
    const ok = await fetch(`http://127.0.0.1:${PORT}/`).then((r) => r.ok, () => false)
    if (ok) break
    await sleep(200)
  }
  const beam = beamPid(proc.pid)
  return { beam, stop: () => new Promise((r) => { proc.once('exit', r); proc.kill('SIGKILL') }) }
}

async function connect(username, onMsg, room = 'lobby') {
  const socket = new Socket(`ws://127.0.0.1:${PORT}/ws`, { transport: DeflateWebSocket, heartbeatIntervalMs: 3600000 })
  socket.connect()
  const channel = socket.channel(`room:${room}`, { username })
  if (onMsg) channel.on('new_msg', onMsg)
  await new Promise((resolve, reject) => channel.join().receive('ok', resolve).receive('error', reject))
  return { socket, channel, ws: socket.conn }
}

const wire = (clients) => clients.reduce((s, c) => s + c.ws._socket.bytesRead + c.ws._socket.bytesWritten, 0)

const LINES = ['hi all', 'anyone around for the standup?', 'pushed the fix for the login bug, please review',
  'lunch at 12:30?', 'the build is green again', 'I will be 5 minutes late', 'thanks!', 'see the doc I shared in the channel']

async function run([name, opts]) {
  const server = await serve(opts)
  try {
    let received = 0
    const clients = []
    for (let i = 0; i < CLIENTS; i++) clients.push(await connect(`user${i}`, () => { received++ }))
    await sleep(1000) // presence diffs of the joins settle
    const extensions = clients[0].ws.extensions || '(none)'
    const bytes0 = wire(clients)
    const cpu0 = cpuSeconds(server.beam)
    const t0 = Date.now()
    received = 0
    for (let m = 0; m < MESSAGES; m++) {
      await Promise.all(clients.map((c, i) => new Promise((resolve) =>
        c.channel.push('new_msg', { body: `${LINES[(i + m) % LINES.length]} (${m})` }).receive('ok', resolve))))
    }
    const expected = CLIENTS * MESSAGES * (CLIENTS - 1)
    await waitFor(() => received >= expected, 120000, `${expected} broadcasts`)
    const chat = { seconds: (Date.now() - t0) / 1000, bytes: wire(clients) - bytes0, cpu: cpuSeconds(server.beam) - cpu0, deliveries: received }
    for (const c of clients) c.socket.disconnect()
    await sleep(500)

    // Memory: IDLE connections, each joined, sent and received one message.
    const rss0 = rssMiB(server.beam)
    const idle = []
    for (let i = 0; i < IDLE; i++) idle.push(await connect(`idle${i}`, null, `idle${i}`)) // a room each
    await Promise.all(idle.map((c) => new Promise((resolve) => c.channel.push('new_msg', { body: 'hello' }).receive('ok', resolve))))
    await sleep(2000)
    const rssActive = rssMiB(server.beam)
    // A heartbeat each: the sockets hibernate and drop their deflate context.
    await Promise.all(idle.map((c) => new Promise((resolve) => {
      const ref = c.socket.makeRef()
      c.socket.push({ topic: 'phoenix', event: 'heartbeat', payload: {}, ref })
      c.socket.onMessage((msg) => { if (msg.ref === ref) resolve() })
    })))
    await sleep(2000)
    const rssIdle = rssMiB(server.beam)
    for (const c of idle) c.socket.disconnect()
    return { name, extensions, chat, memory: { before: rss0, active: rssActive, idle: rssIdle } }
  } finally {
    await server.stop()
  }
}

const VARIANTS = [
  ['off', 'compress => false'],
  ['on (other options default: level 1, server takeover)', 'compress => true'],
  ['on, server_no_context_takeover', 'compress => true, compress_server_context_takeover => false'],
  ['on, level 6', 'compress => true, compress_level => 6'],
  ['on, window bits 10', 'compress => true, compress_window_bits => 10'],
]
const results = []
for (const v of VARIANTS) results.push(await run(v))
console.log(`chat example: ${CLIENTS} clients in room:lobby, ${MESSAGES} messages each (each broadcast to ${CLIENTS - 1}); ${IDLE} more connections for memory`)
console.log('| compress | negotiated | wire bytes (chat phase) | bytes/delivery | BEAM CPU s | CPU µs/delivery | RSS +MiB, idle conns after a message | after a heartbeat (hibernated) | KiB/conn active | KiB/conn idle |')
console.log('|---|---|---|---|---|---|---|---|---|---|')
for (const r of results) {
  const { chat, memory } = r
  const active = memory.active - memory.before
  const idle = memory.idle - memory.before
  console.log(`| ${r.name} | ${r.extensions} | ${chat.bytes} | ${(chat.bytes / chat.deliveries).toFixed(1)} | ${chat.cpu.toFixed(2)} | ${(chat.cpu * 1e6 / chat.deliveries).toFixed(1)} | ${active.toFixed(1)} | ${idle.toFixed(1)} | ${(active * 1024 / IDLE).toFixed(1)} | ${(idle * 1024 / IDLE).toFixed(1)} |`)
}
process.exit(0)
