// Integration tests against the REAL server (the Erlang app of this repo,
// see support/server.mjs), over real WebSockets (the `ws` package):
//   * our client: join, push/reply, broadcast, server push, leave, phx_close,
//     phx_error + rejoin, reconnect after the server drops or closes the
//     connection, heartbeats, and the documented example as written;
//   * the official `phoenix` npm client against our server: join,
//     push/reply, broadcast (to and from our client), heartbeats, Presence;
//   * Presence: real server-side presence (the test channel tracks a key
//     given in the join params), synced by our Presence and phoenix's.
import { describe, it, before, after, afterEach } from 'node:test'
import assert from 'node:assert/strict'
import WebSocket from 'ws'
import { Socket as PhxSocket, Presence as PhxPresence } from 'phoenix'
import { Socket, Presence } from '../../priv/static/hornbeam.mjs'
import { createRequire } from 'node:module'
import { startServer, waitFor, outcome, joinOk as join } from './support/server.mjs'

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

/** Collect the payloads of `event` on `channel`. */
function collect(channel, event) {
  const got = []
  channel.on(event, (payload) => got.push(payload))
  return got
}

const summary = (id, { metas }) => [id, ...metas.map((m) => [m.device, m.status].filter(Boolean).join(':')).sort()].join(':')
const tracking = (key, meta) => ({ presence: { key, meta } })

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
      const channel = socket.channel('room:lobby', { username: 'Alice', ...tracking('alice', { device: 'laptop' }) })
      const joinedOk = new Promise((resolve) => {
        channel.join().receive('ok', resp => { seen.push(`joined ${resp.joined_with.username}`); resolve() }).receive('error', resp => seen.push(`join error ${resp.reason}`)).receive('timeout', () => seen.push('join timeout'))
      })
      const got = new Promise((resolve) => channel.on('new_msg', payload => { seen.push(`new_msg ${payload.body}`); resolve() }))
      const presence = new Hornbeam.Presence(channel)
      presence.onJoin((id, current, newPres) => seen.push(`presence join ${id}`)); presence.onLeave((id, current, leftPres) => seen.push(`presence leave ${id}`))
      const synced = new Promise((resolve) => presence.onSync(() => { seen.push(`sync ${presence.list((id, { metas }) => metas[0]).map((m) => m.device)}`); resolve() }))
      channel.push('new_msg', { body: 'Hello!' }).receive('ok', () => seen.push('pushed')).receive('error', e => seen.push(`push error ${e}`))
      await joinedOk
      await Promise.all([got, synced])
      await new Promise((resolve) => channel.leave().receive('ok', () => { seen.push('left'); resolve() }))
      socket.disconnect()
      url = socket.endPointURL()
    } finally {
      delete globalThis.location
      delete globalThis.WebSocket
    }
    // After the join: the presence_state (a join and a sync), the reply to
    // new_msg and its broadcast, in an order the server does not fix.
    assert.deepEqual(seen.slice(0, 2), ['open', 'joined Alice'])
    assert.deepEqual(seen.slice(2, 6).sort(), ['new_msg Hello!', 'presence join alice', 'pushed', 'sync laptop'])
    assert.deepEqual(seen.slice(6), ['left', 'close'])
    assert.match(url, new RegExp(`^ws://127\\.0\\.0\\.1:${server.port}/ws/websocket\\?token=user_token&vsn=2\\.0\\.0$`))
    assert.ok(log.some(([kind]) => kind === 'push') && log.some(([kind]) => kind === 'receive'))
  })
})

describe('Presence over the wire (real server-side presence)', { timeout: 20000 }, () => {
  it('our Presence syncs the state, two tabs, an update with phx_ref_prev, a join and leaves', async () => {
    const watcher = connect()
    // Presence before join: the server pushes presence_state right after the join reply.
    const cw = watcher.channel('room:presence-ours', tracking('watcher', { device: 'desk' }))
    const presence = new Presence(cw)
    const calls = []
    presence.onJoin((id, current, added) => calls.push(`join ${id} ${added.metas.length}`))
    presence.onLeave((id, current, left) => calls.push(`leave ${id} (${current.metas.length} left)`))
    assert.equal((await outcome(cw.join())).status, 'ok')
    await waitFor(() => presence.list().length === 1, 3000, 'own presence_state')
    const [tab1, tab2, bob] = [connect(), connect(), connect()]
    await join(tab1, 'room:presence-ours', tracking('alice', { device: 'laptop' }))
    await join(tab2, 'room:presence-ours', tracking('alice', { device: 'phone' }))
    const { channel: cb } = await join(bob, 'room:presence-ours', tracking('bob', { device: 'laptop' }))
    await waitFor(() => presence.list().length === 3 && presence.list(summary).includes('alice:laptop:phone'), 3000, 'three keys')
    await outcome(cb.push('presence_update', { device: 'laptop', status: 'away' }))
    await waitFor(() => presence.list(summary).includes('bob:laptop:away'), 3000, 'bob away')
    const bobMeta = presence.list((id, { metas }) => id === 'bob' && metas[0]).find(Boolean)
    assert.ok(bobMeta.phx_ref_prev, 'an update carries phx_ref_prev')
    tab2.disconnect()
    await waitFor(() => presence.list(summary).includes('alice:laptop'), 3000, 'alice keeps one tab')
    bob.disconnect()
    await waitFor(() => presence.list().length === 2, 3000, 'bob gone')
    assert.deepEqual(presence.list(summary).sort(), ['alice:laptop', 'watcher:desk'])
    assert.ok(calls.includes('leave alice (1 left)') && calls.includes('leave bob (0 left)'), calls.join(', '))
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

  it('syncs phoenix Presence from the server: joins, an update, a leave, with our client', async () => {
    const phx = connectPhoenix()
    const ours = connect()
    const phxChannel = phx.channel('room:phx-presence', tracking('phoenix', { device: 'laptop' }))
    const presence = new PhxPresence(phxChannel)
    const calls = []
    presence.onJoin((id) => calls.push(`join ${id}`))
    presence.onLeave((id, current) => calls.push(`leave ${id} (${current.metas.length} left)`))
    assert.equal((await outcome(phxChannel.join())).status, 'ok')
    const { channel: ourChannel } = await join(ours, 'room:phx-presence', tracking('ours', { device: 'tablet' }))
    await waitFor(() => presence.list().length === 2, 3000, 'both keys at phoenix')
    await outcome(ourChannel.push('presence_update', { device: 'tablet', status: 'away' }))
    await waitFor(() => presence.list(summary).includes('ours:tablet:away'), 3000, 'update at phoenix')
    assert.deepEqual(presence.list(summary).sort(), ['ours:tablet:away', 'phoenix:laptop'])
    ours.disconnect()
    await waitFor(() => presence.list().length === 1, 3000, 'leave at phoenix')
    assert.ok(calls.includes('join phoenix') && calls.includes('join ours') && calls.includes('leave ours (0 left)'), calls.join(', '))
  })
})

describe('a server that closes idle connections (heartbeat_timeout 300 ms)', { timeout: 20000 }, () => {
  let idle
  before(async () => { idle = await startServer('heartbeat_timeout => 300') })
  after(async () => { await idle?.stop() })

  it('our client reconnects after the server\'s close 1008 "heartbeat timeout", and rejoins', async () => {
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
    assert.deepEqual(closes[0], [1008, 'heartbeat timeout'])
    assert.notEqual(channel.joinRef(), firstRef)
    socket.disconnect()
  })
})
