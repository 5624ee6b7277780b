// The long-poll transport (issue 15) with the official phoenix.js 1.8
// `LongPoll` against the REAL server (support/server.mjs), over real HTTP
// (Node's fetch, which phoenix.js 1.8 uses where there is no XMLHttpRequest):
//   * join, push and reply, server pushes, broadcasts between a long-poll
//     client and a WebSocket client, presence sync;
//   * an ArrayBuffer push travels (base64, as phoenix.js sends it);
//   * `longPollFallbackMs`: a WebSocket whose upgrade the server refuses
//     makes phoenix.js fall back to LongPoll, and remember it;
//   * a session the server ended (longpoll_timeout while the client sleeps)
//     makes phoenix.js open a new one and rejoin.
// and our client's `LongPoll` (priv/static) the same way.
// phoenix.js 1.6 and 1.7 poll with XMLHttpRequest only, which Node lacks.
import { describe, it, before, after, afterEach } from 'node:test'
import assert from 'node:assert/strict'
import { createServer } from 'node:net'
import WebSocket from 'ws'
import { Socket, LongPoll, Presence } from 'phoenix'
import * as Hornbeam from '../../priv/static/hornbeam.mjs'
import { startServer, waitFor, outcome, joinOk } from './support/server.mjs'

const sockets = []
afterEach(() => {
  for (const socket of sockets.splice(0)) socket.disconnect()
})

/** A connected phoenix.js socket: long-poll, unless `opts.transport` says otherwise. */
function open(url, opts = {}) {
  const socket = new Socket(url, { transport: LongPoll, ...opts })
  sockets.push(socket)
  socket.connect()
  return socket
}

async function join(socket, topic, params = {}) {
  return (await joinOk(socket, topic, params)).channel
}

describe('phoenix.js 1.8 LongPoll', { timeout: 60000 }, () => {
  let server
  before(async () => { server = await startServer('longpoll_poll_timeout => 2000') })
  after(async () => { await server?.stop() })

  it('joins, pushes and gets replies and server pushes over long-poll', async () => {
    const socket = open(server.url, { params: { user: 'lp' } })
    const channel = await join(socket, 'room:lp1', { hello: 1 })
    assert.equal(socket.transport, LongPoll)
    assert.ok(socket.conn instanceof LongPoll)
    const echo = await outcome(channel.push('echo', { n: 1, s: 'é' }))
    assert.deepEqual(echo, { status: 'ok', response: { n: 1, s: 'é' } })
    const pushed = new Promise((resolve) => channel.on('told', resolve))
    assert.equal((await outcome(channel.push('push', { event: 'told', payload: { x: 2 } }))).status, 'ok')
    assert.deepEqual(await pushed, { x: 2 })
    // several pushes in one tick go in one ndjson POST; each gets its reply, in order
    const many = await Promise.all([1, 2, 3, 4, 5].map((n) => outcome(channel.push('echo', { n }))))
    assert.deepEqual(many.map((r) => r.response.n), [1, 2, 3, 4, 5])
    // connect params reached the server (the test channel's join reply shows them)
    const params = await outcome(socket.channel('room:lp1b', {}).join())
    assert.equal(params.response.params.user, 'lp')
  })

  it('a broadcast reaches a long-poll client and a WebSocket client alike, both ways', async () => {
    const lp = open(server.url)
    const ws = open(server.url, { transport: WebSocket })
    const lpChan = await join(lp, 'room:mix')
    const wsChan = await join(ws, 'room:mix')
    const atLp = []
    const atWs = []
    lpChan.on('said', (p) => atLp.push(p.from))
    wsChan.on('said', (p) => atWs.push(p.from))
    await outcome(lpChan.push('broadcast', { event: 'said', payload: { from: 'lp' } }))
    await outcome(wsChan.push('broadcast', { event: 'said', payload: { from: 'ws' } }))
    await waitFor(() => atLp.length === 2 && atWs.length === 2, 10000, 'both broadcasts at both clients')
    assert.deepEqual(atLp.sort(), ['lp', 'ws'])
    assert.deepEqual(atWs.sort(), ['lp', 'ws'])
  })

  it('presence syncs over long-poll (state, then diffs)', async () => {
    const lp = open(server.url)
    const ws = open(server.url, { transport: WebSocket })
    const lpChan = lp.channel('room:pres', { presence: { key: 'ana', meta: { via: 'longpoll' } } })
    const presence = new Presence(lpChan)
    let names = []
    presence.onSync(() => { names = presence.list((key) => key).sort() })
    assert.equal((await outcome(lpChan.join())).status, 'ok')
    await waitFor(() => names.includes('ana'), 10000, 'ana in the long-poll client presence')
    await join(ws, 'room:pres', { presence: { key: 'bob', meta: {} } })
    await waitFor(() => names.includes('bob'), 10000, 'bob (a WebSocket client) in the diff')
    ws.disconnect()
    await waitFor(() => !names.includes('bob'), 10000, 'bob gone after his WebSocket closed')
  })

  it('an ArrayBuffer push travels over long-poll (base64) to a WebSocket client as bytes', async () => {
    const lp = open(server.url)
    const ws = open(server.url, { transport: WebSocket })
    const lpChan = await join(lp, 'room:bytes')
    const wsChan = await join(ws, 'room:bytes')
    const got = new Promise((resolve) => wsChan.on('bin', resolve))
    const bytes = new Uint8Array([0, 1, 2, 254, 255]).buffer
    assert.equal((await outcome(lpChan.push('broadcast_binary', bytes))).status, 'ok')
    assert.deepEqual([...new Uint8Array(await got)], [0, 1, 2, 254, 255])
  })
})

describe('phoenix.js 1.8 longPollFallbackMs', { timeout: 60000 }, () => {
  let server
  before(async () => { server = await startServer() })
  after(async () => { await server?.stop() })

  // A real WebSocket (the `ws` package) whose upgrade the server refuses:
  // it asks for a path the endpoint does not serve (404 to the upgrade), as
  // a proxy that strips Upgrade headers would make it fail.
  class RefusedWebSocket extends WebSocket {
    constructor(url, protocols) { super(url.replace('/ws/websocket', '/no-ws-here/websocket'), protocols) }
  }

  it('falls back to LongPoll when the WebSocket upgrade fails, works, and remembers it', async () => {
    const store = new Map()
    const sessionStorage = { getItem: (k) => store.get(k) ?? null, setItem: (k, v) => store.set(k, v), removeItem: (k) => store.delete(k) }
    const socket = new Socket(server.url, { transport: RefusedWebSocket, longPollFallbackMs: 5000, sessionStorage })
    sockets.push(socket)
    const errors = []
    socket.onError((e) => errors.push(e))
    socket.connect()
    const channel = await join(socket, 'room:fallback')
    assert.equal(socket.transport, LongPoll)
    assert.ok(errors.length >= 1, 'the refused WebSocket reported an error first')
    assert.deepEqual(await outcome(channel.push('echo', { ok: true })), { status: 'ok', response: { ok: true } })
    await waitFor(() => store.get('phx:fallback:LongPoll') === 'true', 5000, 'the fallback memorized')
    // a new socket of this session goes straight to LongPoll
    const again = new Socket(server.url, { transport: RefusedWebSocket, longPollFallbackMs: 5000, sessionStorage })
    sockets.push(again)
    again.connect()
    await join(again, 'room:fallback')
    assert.equal(again.transport, LongPoll)
  })
})

describe('a session the server ended', { timeout: 60000 }, () => {
  let server
  before(async () => { server = await startServer('longpoll_timeout => 1500, longpoll_poll_timeout => 500') })
  after(async () => { await server?.stop() })

  it('phoenix.js gets 410, opens a new session and rejoins', async () => {
    // with a `token` connect param, as apps often have: not the session's token
    const socket = open(server.url, { params: { token: 'user-1' }, reconnectAfterMs: () => 50, rejoinAfterMs: () => 50 })
    const channel = await join(socket, 'room:gone')
    let joins = 0
    channel.joinPush.receive('ok', () => joins++)
    const closes = []
    socket.onClose((e) => closes.push(e.code))
    // Stop polling (as a frozen tab does) past longpoll_timeout: the server ends the session.
    const token = socket.conn.token
    socket.conn.stop(1) // cancels the pending poll without closing the socket
    await new Promise((r) => setTimeout(r, 3500))
    socket.conn.poll()
    await waitFor(() => joins >= 2, 15000, 'rejoined on a new session')
    assert.ok(closes.includes(3410), `closed with 3410 (session_gone): ${closes}`)
    assert.notEqual(socket.conn.token, token)
    assert.equal((await outcome(channel.push('echo', { back: 1 }))).status, 'ok')
    const rejoined = await outcome(socket.channel('room:gone2', {}).join())
    assert.equal(rejoined.response.params.token, 'user-1')
  })
})

describe('our client (hornbeam.mjs) LongPoll', { timeout: 60000 }, () => {
  let server
  before(async () => {
    server = await startServer('longpoll_timeout => 1500, longpoll_poll_timeout => 500, ' +
      'connect => fun(_Params, #{auth_token := T, transport := Tr}) -> ' +
      '{ok, #{<<"auth_token">> => case T of undefined -> null; _ -> T end, <<"transport">> => Tr}} end')
  })
  after(async () => { await server?.stop() })

  function ours(opts = {}) {
    const socket = new Hornbeam.Socket(server.url, { transport: Hornbeam.LongPoll, ...opts })
    sockets.push(socket)
    socket.connect()
    return socket
  }

  it('joins, gets replies, pushes and broadcasts with a WebSocket client, sends bytes; authToken reaches connect', async () => {
    const socket = ours({ authToken: 'user-7' })
    const channel = await join(socket, 'room:ours')
    assert.ok(socket.conn instanceof Hornbeam.LongPoll)
    assert.deepEqual(await outcome(channel.push('assigns', {})),
      { status: 'ok', response: { auth_token: 'user-7', transport: 'longpoll' } })
    const ws = open(server.url, { transport: WebSocket })
    const wsChan = await join(ws, 'room:ours')
    const atOurs = []
    channel.on('said', (p) => atOurs.push(p.n))
    await outcome(wsChan.push('broadcast', { event: 'said', payload: { n: 1 } }))
    await outcome(channel.push('broadcast', { event: 'said', payload: { n: 2 } }))
    await waitFor(() => atOurs.length === 2, 10000, 'both broadcasts at the long-poll client')
    const bin = new Promise((resolve) => wsChan.on('bin', resolve))
    assert.equal((await outcome(channel.push('broadcast_binary', new Uint8Array([9, 8, 7]).buffer))).status, 'ok')
    assert.deepEqual([...new Uint8Array(await bin)], [9, 8, 7])
  })

  it('longPollFallbackMs: a refused upgrade, and an upgrade that never completes, switch to LongPoll', async () => {
    // refused: the server answers the upgrade with 404 (a path it does not serve)
    class Refused extends WebSocket {
      constructor(url, protocols) { super(url.replace('/ws/websocket', '/no-ws-here/websocket'), protocols) }
    }
    const refused = new Hornbeam.Socket(server.url, { transport: Refused, longPollFallbackMs: 10000 })
    sockets.push(refused)
    const errors = []
    refused.onError((e) => errors.push(e))
    refused.connect()
    const channel = await join(refused, 'room:fb1')
    assert.ok(refused.conn instanceof Hornbeam.LongPoll)
    assert.equal(refused.transport, Hornbeam.LongPoll)
    assert.ok(errors.length >= 1)
    assert.equal((await outcome(channel.push('echo', { a: 1 }))).status, 'ok')
    // hanging: a TCP server that accepts and never answers the upgrade
    const hang = createServer(() => {})
    await new Promise((r) => hang.listen(0, '127.0.0.1', r))
    const hangPort = hang.address().port
    class Hanging extends WebSocket {
      constructor(url, protocols) { super(url.replace(/:\d+\//, `:${hangPort}/`), protocols) }
    }
    try {
      const t0 = Date.now()
      const slow = new Hornbeam.Socket(server.url, { transport: Hanging, longPollFallbackMs: 300 })
      sockets.push(slow)
      slow.connect()
      await join(slow, 'room:fb2')
      assert.ok(slow.conn instanceof Hornbeam.LongPoll)
      assert.ok(Date.now() - t0 >= 300, 'not before longPollFallbackMs')
    } finally {
      hang.close()
    }
    // without the option nothing falls back
    const plain = new Hornbeam.Socket(server.url, { transport: Refused, reconnectAfterMs: () => 100000 })
    sockets.push(plain)
    const closed = new Promise((resolve) => plain.onClose(resolve))
    plain.connect()
    await closed
    assert.equal(plain.transport, Refused)
  })

  it('phoenix.js 1.8 authToken over LongPoll (X-Phoenix-AuthToken) reaches connect', async () => {
    const socket = open(server.url, { authToken: 'phx-token-9' })
    const channel = await join(socket, 'room:phxauth')
    assert.deepEqual(await outcome(channel.push('assigns', {})),
      { status: 'ok', response: { auth_token: 'phx-token-9', transport: 'longpoll' } })
  })

  it('is the default where there is no WebSocket, and rejoins on a new session after the old one expired', async () => {
    const socket = new Hornbeam.Socket(server.url, { reconnectAfterMs: () => 50, rejoinAfterMs: () => 50 })
    sockets.push(socket)
    const saved = Object.getOwnPropertyDescriptor(globalThis, 'WebSocket') // Node 22 has one
    delete globalThis.WebSocket
    try { socket.connect() } finally { if (saved) Object.defineProperty(globalThis, 'WebSocket', saved) }
    const channel = await join(socket, 'room:ours2')
    assert.ok(socket.conn instanceof Hornbeam.LongPoll)
    let joins = 0
    socket.onOpen(() => joins++)
    const conn = socket.conn
    const token = conn.token
    // freeze the client's polling past longpoll_timeout
    for (const c of conn.requests) c.abort()
    conn.readyState = 2
    await new Promise((r) => setTimeout(r, 3000))
    conn.readyState = 1
    conn.poll()
    await waitFor(() => joins >= 1 && socket.conn && socket.conn.token && socket.conn.token !== token, 15000, 'a new session')
    await waitFor(() => channel.state === 'joined', 15000, 'rejoined')
    assert.equal((await outcome(channel.push('echo', { again: true }))).status, 'ok')
  })
})
