// Integration tests against the REAL server (the Erlang app of this repo,
// see support/server.mjs), over real WebSockets (the `ws` package):
//   * our client: join, push/reply, broadcast, server push, leave, phx_close,
//     phx_error + rejoin, reconnect after the server drops or closes the
//     connection, heartbeats, and the documented example as written;
//   * the official `phoenix` npm client against our server: join,
//     push/reply, broadcast (to and from our client), heartbeats, Presence;
//   * Presence: the server has no Presence yet, so the test channel sends
//     HAND-MADE presence_state / presence_diff messages (support/js_test_channel.erl).
import { describe, it, before, after, afterEach } from 'node:test'
import assert from 'node:assert/strict'
import WebSocket from 'ws'
import { Socket as PhxSocket, Presence as PhxPresence } from 'phoenix'
import { Socket, Presence } from '../../priv/static/hornbeam.mjs'
import { createRequire } from 'node:module'
import { startServer, waitFor, outcome } from './support/server.mjs'

/** hornbeam.js as a page's <script> loads it: it sets globalThis.Hornbeam. */
function loadBrowserGlobal() {
  createRequire(import.meta.url)('../../priv/static/hornbeam.js')
  return globalThis.Hornbeam
}

let server
const sockets = []
before(async () => { server = await startServer() })
after(async () => { await server?.stop() })
afterEach(() => {
  for (const socket of sockets.splice(0)) socket.disconnect()
})

/** Our client, connected to the test server. */
function connect(opts = {}) {
  const socket = new Socket(server.url, { transport: WebSocket, ...opts })
  sockets.push(socket)
  socket.connect()
  return socket
}

/** The official phoenix.js client, connected to the test server. */
function connectPhoenix(opts = {}) {
  const socket = new PhxSocket(server.url, { transport: WebSocket, ...opts })
  sockets.push(socket)
  socket.connect()
  return socket
}

async function join(socket, topic, params = {}) {
  const channel = socket.channel(topic, params)
  const result = await outcome(channel.join())
  assert.equal(result.status, 'ok', `join ${topic}: ${JSON.stringify(result)}`)
  return { channel, response: result.response }
}

/** Collect the payloads of `event` on `channel`. */
function collect(channel, event) {
  const got = []
  channel.on(event, (payload) => got.push(payload))
  return got
}

// Hand-made presence messages (no server-side Presence yet).
const handMadeState = {
  alice: { metas: [{ phx_ref: 'a1', device: 'laptop' }, { phx_ref: 'a2', device: 'phone' }] },
  bob: { metas: [{ phx_ref: 'b1', device: 'laptop' }] },
}
const handMadeDiffs = [
  // alice closes her phone tab
  { joins: {}, leaves: { alice: { metas: [{ phx_ref: 'a2', device: 'phone' }] } } },
  // bob goes away: an update is a leave of the old phx_ref + a join with phx_ref_prev
  {
    joins: { bob: { metas: [{ phx_ref: 'b2', phx_ref_prev: 'b1', device: 'laptop', status: 'away' }] } },
    leaves: { bob: { metas: [{ phx_ref: 'b1', device: 'laptop' }] } },
  },
  // carol arrives
  { joins: { carol: { metas: [{ phx_ref: 'c1', device: 'tablet' }] } }, leaves: {} },
]
const expectedAfterDiffs = ['alice:laptop', 'bob:laptop:away', 'carol:tablet']
const summary = (id, { metas }) => [id, ...metas.map((m) => [m.device, m.status].filter(Boolean).join(':'))].join(':')

describe('our client against the real server', { timeout: 20000 }, () => {
  it('connects with params, joins, and gets the join reply', async () => {
    const socket = connect({ params: { token: 'user_token' } })
    const { channel, response } = await join(socket, 'room:lobby', { username: 'Alice' })
    assert.deepEqual(response, { topic: 'room:lobby', joined_with: { username: 'Alice' }, params: { token: 'user_token', vsn: '2.0.0' } })
    assert.equal(channel.state, 'joined')
    assert.ok(socket.isConnected())
  })

  it('gets a join error reply', async () => {
    const socket = connect()
    const channel = socket.channel('room:denied', { mode: 'error' })
    const result = await outcome(channel.join())
    assert.deepEqual(result, { status: 'error', response: { reason: 'denied' } })
    channel.leave()
  })

  it('pushes and gets ok, error and timeout', async () => {
    const socket = connect()
    const { channel } = await join(socket, 'room:push')
    assert.deepEqual(await outcome(channel.push('echo', { body: 'Hello!', n: [1, 2] })), { status: 'ok', response: { body: 'Hello!', n: [1, 2] } })
    assert.deepEqual(await outcome(channel.push('error_reply', { why: 'x' })), { status: 'error', response: { why: 'x' } })
    assert.deepEqual(await outcome(channel.push('noreply', {}, 200)), { status: 'timeout', response: {} })
  })

  it('buffers pushes made before the join completes', async () => {
    const socket = connect()
    const channel = socket.channel('room:early')
    channel.join()
    const results = await Promise.all([outcome(channel.push('echo', { n: 1 })), outcome(channel.push('echo', { n: 2 }))])
    assert.deepEqual(results.map((r) => r.response.n), [1, 2])
  })

  it('receives a server push, broadcasts, and broadcast_from (not to the sender)', async () => {
    const a = connect()
    const b = connect()
    const { channel: ca } = await join(a, 'room:bcast')
    const { channel: cb } = await join(b, 'room:bcast')
    const aGot = collect(ca, 'shout')
    const bGot = collect(cb, 'shout')
    const pushed = collect(ca, 'pushed')

    await outcome(ca.push('push', { event: 'pushed', payload: { only: 'a' } }))
    await outcome(ca.push('broadcast', { event: 'shout', payload: { n: 1 } }))
    await outcome(ca.push('broadcast_from', { event: 'shout', payload: { n: 2 } }))
    await waitFor(() => bGot.length === 2, 3000, 'two shouts at b')
    await outcome(ca.push('echo', {})) // a round trip later, nothing more arrives at a
    assert.deepEqual(pushed, [{ only: 'a' }])
    assert.deepEqual(aGot, [{ n: 1 }])
    assert.deepEqual(bGot, [{ n: 1 }, { n: 2 }])
  })

  it('leaves: ok, then the channel is closed and gets no more broadcasts', async () => {
    const a = connect()
    const b = connect()
    const { channel: ca } = await join(a, 'room:leave')
    const { channel: cb } = await join(b, 'room:leave')
    const closes = []
    ca.onClose((reason) => closes.push(reason))
    const aGot = collect(ca, 'shout')
    const seen = []
    a.onMessage((m) => seen.push(m))
    assert.equal((await outcome(ca.leave())).status, 'ok')
    assert.equal(ca.state, 'closed')
    assert.deepEqual(closes, ['leave'])
    await outcome(cb.push('broadcast', { event: 'shout', payload: {} }))
    await outcome(cb.push('echo', {}))
    await new Promise((r) => setTimeout(r, 50))
    assert.deepEqual(aGot, [])
    // The leave's reply, then the server's phx_close for the join that was left (as Phoenix does); no shout.
    assert.deepEqual(seen.filter((m) => m.topic === 'room:leave').map((m) => m.event), ['phx_reply', 'phx_close'])
  })

  it('phx_close from the server closes the channel for good (no rejoin)', async () => {
    const joins = []
    const socket = connect({ rejoinAfterMs: () => 20, logger: (kind, msg) => / phx_join /.test(msg) && joins.push(msg) })
    const { channel } = await join(socket, 'room:stop')
    joins.length = 0
    const closed = new Promise((resolve) => channel.onClose(resolve))
    channel.push('stop', {}, 500) // no reply: the channel stops
    await closed
    assert.equal(channel.state, 'closed')
    await new Promise((r) => setTimeout(r, 200))
    assert.deepEqual(joins, [])
    assert.ok(!socket.channels.includes(channel))
  })

  it('phx_error (a crash in the channel) rejoins with a new join_ref, and pushes work again', async () => {
    const socket = connect({ rejoinAfterMs: () => 20 })
    const { channel } = await join(socket, 'room:crash')
    const firstRef = channel.joinRef()
    const errors = []
    channel.onError((reason) => errors.push(reason))
    let joins = 0
    channel.joinPush.receive('ok', () => joins++) // runs at once for the first join
    channel.push('crash', {}, 500) // no reply: the channel crashes
    await waitFor(() => joins === 2, 3000, 'rejoin')
    assert.deepEqual(errors, [{ reason: 'channel_crash' }])
    assert.notEqual(channel.joinRef(), firstRef)
    assert.deepEqual(await outcome(channel.push('echo', { again: true })), { status: 'ok', response: { again: true } })
  })

  it('reconnects after the server drops the connection, and the channel rejoins with a new join_ref', async () => {
    const socket = connect()
    const { channel } = await join(socket, 'room:reconnect')
    const firstRef = channel.joinRef()
    const events = []
    socket.onClose((e) => events.push(`close ${e.code}`))
    socket.onOpen(() => events.push('open'))
    let joins = 0
    channel.joinPush.receive('ok', () => joins++) // runs at once for the first join
    channel.push('kill_connection', {}, 500) // no reply: the connection dies
    await waitFor(() => joins === 2, 5000, 'rejoin after reconnect')
    assert.deepEqual(events, ['close 1006', 'open'])
    assert.notEqual(channel.joinRef(), firstRef)
    assert.deepEqual(await outcome(channel.push('echo', { back: 1 })), { status: 'ok', response: { back: 1 } })
  })

  it('keeps the connection alive with heartbeats the server answers', async () => {
    const socket = connect({ heartbeatIntervalMs: 150 })
    const replies = []
    socket.onMessage((m) => m.topic === 'phoenix' && replies.push(m))
    const closes = []
    socket.onClose((e) => closes.push(e))
    await waitFor(() => replies.length >= 3, 5000, 'three heartbeat replies')
    assert.deepEqual(closes, [])
    assert.deepEqual([replies[0].event, replies[0].payload.status], ['phx_reply', 'ok'])
  })

  it('runs the documented example as written (browser global from hornbeam.js, relative /ws)', async () => {
    // What a page has: window.location, WebSocket, and the <script> global.
    globalThis.location = new URL(`http://127.0.0.1:${server.port}/chat`)
    globalThis.WebSocket = WebSocket
    const Hornbeam = loadBrowserGlobal()
    const log = []
    const seen = []
    let socket, url
    try {
      socket = new Hornbeam.Socket('/ws', { params: { token: 'user_token' }, logger: (kind, msg, data) => log.push([kind, msg, data]) })
      sockets.push(socket)
      socket.onOpen(() => seen.push('open')); socket.onClose(() => seen.push('close')); socket.onError((e) => seen.push(`error ${e}`)); socket.connect()
      const channel = socket.channel('room:lobby', { username: 'Alice' })
      const joinedOk = new Promise((resolve) => {
        channel.join().receive('ok', resp => { seen.push(`joined ${resp.joined_with.username}`); resolve() }).receive('error', resp => seen.push(`join error ${resp.reason}`)).receive('timeout', () => seen.push('join timeout'))
      })
      const got = new Promise((resolve) => channel.on('new_msg', payload => { seen.push(`new_msg ${payload.body}`); resolve() }))
      const presence = new Hornbeam.Presence(channel)
      presence.onJoin((id, current, newPres) => seen.push(`presence join ${id}`)); presence.onLeave((id, current, leftPres) => seen.push(`presence leave ${id}`))
      const synced = new Promise((resolve) => presence.onSync(() => { seen.push(`sync ${presence.list((id, { metas }) => metas[0]).map((m) => m.device)}`); resolve() }))
      channel.push('new_msg', { body: 'Hello!' }).receive('ok', () => seen.push('pushed')).receive('error', e => seen.push(`push error ${e}`))
      await joinedOk
      channel.push('push', { event: 'presence_state', payload: handMadeState }) // hand-made presence_state
      await Promise.all([got, synced])
      await new Promise((resolve) => channel.leave().receive('ok', () => { seen.push('left'); resolve() }))
      socket.disconnect()
      url = socket.endPointURL()
    } finally {
      delete globalThis.location
      delete globalThis.WebSocket
    }
    // The reply to new_msg and its broadcast may come in either order.
    assert.deepEqual(seen.slice(0, 2), ['open', 'joined Alice'])
    assert.deepEqual(seen.slice(2, 4).sort(), ['new_msg Hello!', 'pushed'])
    assert.deepEqual(seen.slice(4), ['presence join alice', 'presence join bob', 'sync laptop,laptop', 'left', 'close'])
    assert.match(url, new RegExp(`^ws://127\\.0\\.0\\.1:${server.port}/ws/websocket\\?token=user_token&vsn=2\\.0\\.0$`))
    assert.ok(log.some(([kind]) => kind === 'push') && log.some(([kind]) => kind === 'receive'))
  })
})

describe('Presence over the wire (hand-made presence_state / presence_diff)', { timeout: 20000 }, () => {
  it('our Presence queues diffs sent before the state and applies them after it', async () => {
    const socket = connect()
    const { channel } = await join(socket, 'room:presence-ours')
    const presence = new Presence(channel)
    const syncs = []
    presence.onSync(() => syncs.push(presence.list(summary)))
    for (const diff of handMadeDiffs) await outcome(channel.push('push', { event: 'presence_diff', payload: diff }))
    await outcome(channel.push('push', { event: 'presence_state', payload: handMadeState }))
    await waitFor(() => syncs.length === 1, 3000, 'sync')
    assert.deepEqual(syncs, [expectedAfterDiffs])
  })

  it('our Presence follows broadcast diffs: two tabs, an update with phx_ref_prev, a join', async () => {
    const a = connect()
    const b = connect()
    const { channel: ca } = await join(a, 'room:presence-bcast')
    const { channel: cb } = await join(b, 'room:presence-bcast')
    const presence = new Presence(cb)
    const calls = []
    presence.onJoin((id, current, added) => calls.push(`join ${id} ${added.metas.map((m) => m.phx_ref)}`))
    presence.onLeave((id, current, left) => calls.push(`leave ${id} ${left.metas.map((m) => m.phx_ref)} (${current.metas.length} left)`))
    await outcome(cb.push('push', { event: 'presence_state', payload: handMadeState }))
    for (const diff of handMadeDiffs) await outcome(ca.push('broadcast', { event: 'presence_diff', payload: diff }))
    await waitFor(() => presence.list().length === 3, 3000, 'carol')
    assert.deepEqual(presence.list(summary), expectedAfterDiffs)
    assert.deepEqual(calls, ['join alice a1,a2', 'join bob b1', 'leave alice a2 (1 left)', 'join bob b2', 'leave bob b1 (1 left)', 'join carol c1'])
  })
})

describe('the official phoenix client against our server', { timeout: 20000 }, () => {
  it('joins with params, and gets ok, error and timeout for pushes', async () => {
    const socket = connectPhoenix({ params: { token: 'phx' } })
    const channel = socket.channel('room:phx', { username: 'Bob' })
    const joined = await outcome(channel.join())
    assert.deepEqual(joined, { status: 'ok', response: { topic: 'room:phx', joined_with: { username: 'Bob' }, params: { token: 'phx', vsn: '2.0.0' } } })
    assert.deepEqual(await outcome(channel.push('echo', { body: 'hi' })), { status: 'ok', response: { body: 'hi' } })
    assert.deepEqual(await outcome(channel.push('error_reply', { why: 1 })), { status: 'error', response: { why: 1 } })
    assert.equal((await outcome(channel.push('noreply', {}, 200))).status, 'timeout')
    assert.equal((await outcome(channel.leave())).status, 'ok')
  })

  it('gets a join error', async () => {
    const socket = connectPhoenix()
    const channel = socket.channel('room:phx-denied', { mode: 'error' })
    assert.deepEqual(await outcome(channel.join()), { status: 'error', response: { reason: 'denied' } })
    channel.leave()
  })

  it('exchanges broadcasts with our client on one topic', async () => {
    const phx = connectPhoenix()
    const ours = connect()
    const phxChannel = phx.channel('room:mixed', {})
    assert.equal((await outcome(phxChannel.join())).status, 'ok')
    const { channel: ourChannel } = await join(ours, 'room:mixed')
    const phxGot = collect(phxChannel, 'shout')
    const ourGot = collect(ourChannel, 'shout')
    await outcome(phxChannel.push('broadcast', { event: 'shout', payload: { from: 'phoenix' } }))
    await outcome(ourChannel.push('broadcast', { event: 'shout', payload: { from: 'hornbeam' } }))
    await waitFor(() => phxGot.length === 2 && ourGot.length === 2, 3000, 'both shouts at both clients')
    assert.deepEqual(phxGot, [{ from: 'phoenix' }, { from: 'hornbeam' }])
    assert.deepEqual(ourGot, [{ from: 'phoenix' }, { from: 'hornbeam' }])
  })

  it('stays connected on heartbeats the server answers', async () => {
    const socket = connectPhoenix({ heartbeatIntervalMs: 150 })
    let replies = 0
    socket.onMessage(({ topic }) => { if (topic === 'phoenix') replies++ })
    let closes = 0
    socket.onClose(() => closes++)
    await waitFor(() => replies >= 3, 5000, 'three heartbeat replies')
    assert.equal(closes, 0)
  })

  it('syncs phoenix Presence from hand-made presence_state / presence_diff', async () => {
    const phx = connectPhoenix()
    const ours = connect()
    const phxChannel = phx.channel('room:phx-presence', {})
    const presence = new PhxPresence(phxChannel)
    const calls = []
    presence.onJoin((id, current, added) => calls.push(`join ${id} ${added.metas.map((m) => m.phx_ref)}`))
    presence.onLeave((id, current, left) => calls.push(`leave ${id} ${left.metas.map((m) => m.phx_ref)}`))
    assert.equal((await outcome(phxChannel.join())).status, 'ok')
    const { channel: ourChannel } = await join(ours, 'room:phx-presence')
    // A diff before the state: phoenix queues it too.
    await outcome(ourChannel.push('broadcast', { event: 'presence_diff', payload: handMadeDiffs[0] }))
    await outcome(phxChannel.push('push', { event: 'presence_state', payload: handMadeState }))
    for (const diff of handMadeDiffs.slice(1)) await outcome(ourChannel.push('broadcast', { event: 'presence_diff', payload: diff }))
    await waitFor(() => presence.list().length === 3, 3000, 'carol')
    assert.deepEqual(presence.list(summary), expectedAfterDiffs)
    assert.deepEqual(calls, ['join alice a1,a2', 'join bob b1', 'leave alice a2', 'join bob b2', 'leave bob b1', 'join carol c1'])
  })
})

describe('a server that closes idle connections (heartbeat_timeout 300 ms)', { timeout: 20000 }, () => {
  let idle
  before(async () => { idle = await startServer('heartbeat_timeout => 300') })
  after(async () => { await idle?.stop() })

  it('our client reconnects after the server\'s close 1000 "heartbeat timeout", and rejoins', async () => {
    const socket = new Socket(idle.url, { transport: WebSocket, heartbeatIntervalMs: 60000 })
    sockets.push(socket)
    const closes = []
    socket.onClose((e) => closes.push([e.code, e.reason]))
    socket.connect()
    const { channel } = await join(socket, 'room:idle')
    const firstRef = channel.joinRef()
    let joins = 0
    channel.joinPush.receive('ok', () => joins++) // runs at once for the first join
    await waitFor(() => joins === 2, 5000, 'rejoin after the server closed')
    assert.deepEqual(closes[0], [1000, 'heartbeat timeout'])
    assert.notEqual(channel.joinRef(), firstRef)
    socket.disconnect()
  })
})
