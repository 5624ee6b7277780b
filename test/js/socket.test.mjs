// Unit tests of Socket: URL, buffering, heartbeat, reconnect backoff,
// callbacks. Fake transport and fake clock: no network, no sleeps.
import { describe, it, beforeEach, afterEach } from 'node:test'
import assert from 'node:assert/strict'
import { Socket, LongPoll } from '../../priv/static/hornbeam.mjs'
import { FakeClock } from './support/fake_clock.mjs'
import { FakeWebSocket } from './support/fake_transport.mjs'

let clock
beforeEach(() => {
  clock = new FakeClock().install()
  FakeWebSocket.reset()
})
afterEach(() => {
  clock.uninstall()
  delete globalThis.location
})

// Exact backoff (no jitter) keeps the fake clock's ticks exact; the jitter
// is tested in reconnect_jitter.test.mjs.
const newSocket = (opts = {}) => new Socket('ws://example.test/ws', { transport: FakeWebSocket, reconnectJitter: 0, ...opts })

function openSocket(opts) {
  const socket = newSocket(opts)
  socket.connect()
  FakeWebSocket.last.open()
  return socket
}

describe('Socket URL', () => {
  it('appends /websocket, the params and vsn=2.0.0 to an absolute ws:// endpoint', () => {
    const socket = newSocket({ params: { token: 'user_token' } })
    assert.equal(socket.endPointURL(), 'ws://example.test/ws/websocket?token=user_token&vsn=2.0.0')
    socket.connect()
    assert.equal(FakeWebSocket.last.url, 'ws://example.test/ws/websocket?token=user_token&vsn=2.0.0')
  })

  it('sends only vsn without params, and keeps wss:// and a port as given', () => {
    assert.equal(new Socket('wss://h.test:4443/ws').endPointURL(), 'wss://h.test:4443/ws/websocket?vsn=2.0.0')
    assert.equal(new Socket('ws://h.test/ws/').endPointURL(), 'ws://h.test/ws/websocket?vsn=2.0.0')
  })

  it('resolves a relative endpoint against location: ws: for http:, wss: for https:', () => {
    globalThis.location = new URL('http://app.test:8080/rooms/1')
    assert.equal(new Socket('/ws').endPointURL(), 'ws://app.test:8080/ws/websocket?vsn=2.0.0')
    globalThis.location = new URL('https://app.test/rooms/1')
    assert.equal(new Socket('/ws', { params: { token: 't' } }).endPointURL(),
      'wss://app.test/ws/websocket?token=t&vsn=2.0.0')
    assert.equal(new Socket('//other.test/socket').endPointURL(), 'wss://other.test/socket/websocket?vsn=2.0.0')
  })

  it('explains that a relative endpoint needs a location', () => {
    assert.throws(() => new Socket('/ws').endPointURL(), /relative.*ws:\/\/host:port\/ws/)
  })

  it('calls a params function at every connect', () => {
    let n = 0
    const socket = newSocket({ params: () => ({ token: `t${++n}` }) })
    socket.connect()
    assert.match(FakeWebSocket.last.url, /\?token=t1&vsn=2\.0\.0$/)
    FakeWebSocket.last.serverClose()
    clock.tick(10)
    assert.equal(FakeWebSocket.instances.length, 2)
    assert.match(FakeWebSocket.last.url, /\?token=t2&vsn=2\.0\.0$/)
  })

  it('percent-encodes params, nests objects Phoenix-style, and skips null/undefined', () => {
    const socket = newSocket({ params: { q: 'a b&c=d', user: { id: 7 }, gone: null, nope: undefined } })
    assert.equal(socket.endPointURL(), 'ws://example.test/ws/websocket?q=a%20b%26c%3Dd&user%5Bid%5D=7&vsn=2.0.0')
  })

  it('uses globalThis.WebSocket when no transport is given', () => {
    globalThis.WebSocket = FakeWebSocket
    try {
      new Socket('ws://example.test/ws').connect()
      assert.equal(FakeWebSocket.instances.length, 1)
    } finally {
      delete globalThis.WebSocket
    }
    // none: it long-polls (closed at once here, before its first request)
    const polling = new Socket('ws://example.test/ws')
    polling.connect()
    assert.ok(polling.conn instanceof LongPoll)
    polling.disconnect()
  })
})

describe('Socket connection', () => {
  it('opens one connection however often connect() is called', () => {
    const socket = newSocket()
    socket.connect()
    socket.connect()
    assert.equal(FakeWebSocket.instances.length, 1)
    assert.equal(socket.connectionState(), 'connecting')
    assert.equal(socket.isConnected(), false)
    FakeWebSocket.last.open()
    assert.equal(socket.connectionState(), 'open')
    assert.equal(socket.isConnected(), true)
  })

  it('buffers sends while disconnected and flushes them in order on open', () => {
    const socket = newSocket()
    socket.push({ join_ref: null, ref: '1', topic: 't', event: 'a', payload: { n: 1 } })
    socket.connect()
    socket.push({ join_ref: null, ref: '2', topic: 't', event: 'b', payload: { n: 2 } })
    const conn = FakeWebSocket.last
    assert.deepEqual(conn.sent, [])
    conn.open()
    assert.deepEqual(conn.sent, [[null, '1', 't', 'a', { n: 1 }], [null, '2', 't', 'b', { n: 2 }]])
    socket.push({ join_ref: '5', ref: '6', topic: 't', event: 'c', payload: {} })
    assert.deepEqual(conn.sent[2], ['5', '6', 't', 'c', {}])
  })

  it('makes string refs, unique per socket', () => {
    const socket = newSocket()
    const refs = [socket.makeRef(), socket.makeRef(), socket.makeRef()]
    assert.ok(refs.every((r) => typeof r === 'string'))
    assert.equal(new Set(refs).size, 3)
  })

  it('runs onOpen/onClose/onError/onMessage callbacks, and off(refs) removes them', () => {
    const socket = newSocket()
    const seen = []
    const refs = [
      socket.onOpen(() => seen.push('open')),
      socket.onClose((e) => seen.push(`close ${e.code}`)),
      socket.onError((e) => seen.push(`error ${e.message}`)),
      socket.onMessage((m) => seen.push(`message ${m.topic} ${m.event} ${m.payload.x}`)),
    ]
    socket.connect()
    const conn = FakeWebSocket.last
    conn.open()
    conn.receive([null, null, 'room:1', 'hi', { x: 1 }])
    conn.error()
    conn.serverClose(1006)
    assert.deepEqual(seen, ['open', 'message room:1 hi 1', 'error network down', 'close 1006'])

    socket.off(refs.slice(0, 2))
    clock.tick(10)
    FakeWebSocket.last.open()
    FakeWebSocket.last.receive([null, null, 'room:1', 'hi', { x: 2 }])
    FakeWebSocket.last.serverClose(1006)
    assert.deepEqual(seen.slice(4), ['message room:1 hi 2'])
  })

  it('passes transport, push and receive events to the logger', () => {
    const logs = []
    const socket = openSocket({ logger: (kind, msg, data) => logs.push([kind, msg, data]) })
    socket.push({ join_ref: null, ref: '9', topic: 't', event: 'e', payload: { a: 1 } })
    FakeWebSocket.last.receive([null, null, 't', 'ev', { b: 2 }])
    assert.ok(logs.some(([kind, msg]) => kind === 'transport' && /connecting to ws:\/\/example\.test/.test(msg)))
    assert.ok(logs.some(([kind, msg, data]) => kind === 'push' && msg === 't e (null, 9)' && data.a === 1))
    assert.ok(logs.some(([kind, msg, data]) => kind === 'receive' && msg === 't ev' && data.b === 2))
  })

  it('ignores a frame that is not a message array', () => {
    const logs = []
    const socket = openSocket({ logger: (kind, msg) => logs.push(msg) })
    const messages = []
    socket.onMessage((m) => messages.push(m))
    FakeWebSocket.last.onmessage({ data: 'not json' })
    assert.deepEqual(messages, [])
    assert.ok(logs.some((m) => /dropping a message/.test(m)))
  })

  it('disconnect() closes with 1000, runs close callbacks at once, and does not reconnect', () => {
    const socket = openSocket()
    const conn = FakeWebSocket.last
    const closes = []
    socket.onClose((e) => closes.push(e))
    let called = false
    socket.disconnect(() => { called = true })
    assert.ok(called)
    assert.deepEqual(conn.closeCalls, [{ code: 1000, reason: '' }])
    assert.equal(closes.length, 1)
    assert.equal(closes[0].code, 1000)
    assert.equal(socket.connectionState(), 'closed')
    conn.serverClose(1000) // the transport's own late close event changes nothing
    clock.tick(60000)
    assert.equal(FakeWebSocket.instances.length, 1)
    assert.equal(closes.length, 1)

    socket.connect() // and connect() works again afterwards
    assert.equal(FakeWebSocket.instances.length, 2)
  })

  it('disconnect(cb, code, reason) passes code and reason on', () => {
    const socket = openSocket()
    socket.disconnect(undefined, 4000, 'bye')
    assert.deepEqual(FakeWebSocket.last.closeCalls, [{ code: 4000, reason: 'bye' }])
  })
})

describe('Socket heartbeat', () => {
  it('sends a heartbeat on topic phoenix every heartbeatIntervalMs while it is answered', () => {
    const socket = openSocket({ heartbeatIntervalMs: 1000 })
    const conn = FakeWebSocket.last
    clock.tick(999)
    assert.equal(conn.sentEvents('heartbeat').length, 0)
    clock.tick(1)
    const hb = conn.lastSent('heartbeat')
    assert.deepEqual([hb[0], hb[2], hb[3], hb[4]], [null, 'phoenix', 'heartbeat', {}])
    assert.equal(typeof hb[1], 'string')
    conn.reply(hb)
    clock.tick(1000)
    assert.equal(conn.sentEvents('heartbeat').length, 2)
    conn.reply(conn.lastSent('heartbeat'))
    clock.tick(1000)
    assert.equal(conn.sentEvents('heartbeat').length, 3)
    assert.deepEqual(conn.closeCalls, [])
    assert.ok(socket.isConnected())
  })

  it('defaults to 30 s', () => {
    openSocket()
    clock.tick(29999)
    assert.equal(FakeWebSocket.last.sentEvents('heartbeat').length, 0)
    clock.tick(1)
    assert.equal(FakeWebSocket.last.sentEvents('heartbeat').length, 1)
  })

  it('closes with 1000 "heartbeat timeout" when a heartbeat is unanswered by the next interval, then reconnects', () => {
    const socket = openSocket({ heartbeatIntervalMs: 1000 })
    const closes = []
    socket.onClose((e) => closes.push(e))
    const conn = FakeWebSocket.last
    clock.tick(1000)
    assert.equal(conn.sentEvents('heartbeat').length, 1)
    clock.tick(999)
    assert.deepEqual(conn.closeCalls, [])
    clock.tick(1)
    assert.deepEqual(conn.closeCalls, [{ code: 1000, reason: 'heartbeat timeout' }])
    assert.equal(conn.sentEvents('heartbeat').length, 1)
    // Treated as closed at once (a dead peer may never finish the close handshake).
    assert.equal(closes.length, 1)
    assert.equal(closes[0].reason, 'heartbeat timeout')
    assert.equal(socket.isConnected(), false)
    clock.tick(10)
    assert.equal(FakeWebSocket.instances.length, 2)
    FakeWebSocket.last.open()
    assert.ok(socket.isConnected())
  })

  it('stops heartbeats while disconnected and restarts them on reconnect', () => {
    openSocket({ heartbeatIntervalMs: 1000 })
    const first = FakeWebSocket.last
    first.serverClose()
    clock.tick(5000)
    assert.equal(first.sentEvents('heartbeat').length, 0)
    const second = FakeWebSocket.last
    assert.notEqual(second, first)
    second.open()
    clock.tick(1000)
    assert.equal(second.sentEvents('heartbeat').length, 1)
  })
})

describe('Socket reconnect', () => {
  it('backs off 10, 50, 100, 150, 200, 250, 500, 1000, 2000, then 5000 ms (without jitter), and resets after an open', () => {
    const socket = newSocket()
    socket.connect()
    const expected = [10, 50, 100, 150, 200, 250, 500, 1000, 2000, 5000, 5000, 5000]
    for (const delay of expected) {
      const count = FakeWebSocket.instances.length
      FakeWebSocket.last.serverClose(1006)
      clock.tick(delay - 1)
      assert.equal(FakeWebSocket.instances.length, count, `no reconnect before ${delay} ms`)
      clock.tick(1)
      assert.equal(FakeWebSocket.instances.length, count + 1, `reconnect after ${delay} ms`)
    }
    FakeWebSocket.last.open()
    FakeWebSocket.last.serverClose(1006)
    clock.tick(10)
    assert.equal(FakeWebSocket.instances.length, expected.length + 2)
  })

  it('reconnects after any close it did not ask for, 1000 from the server included', () => {
    openSocket()
    FakeWebSocket.last.serverClose(1000, 'heartbeat timeout')
    clock.tick(10)
    assert.equal(FakeWebSocket.instances.length, 2)
  })

  it('reconnects after an error followed by a close', () => {
    openSocket()
    FakeWebSocket.last.error()
    FakeWebSocket.last.serverClose(1006)
    clock.tick(10)
    assert.equal(FakeWebSocket.instances.length, 2)
  })

  it('asks reconnectAfterMs for each try', () => {
    const tries = []
    const socket = newSocket({ reconnectAfterMs: (n) => { tries.push(n); return n * 100 } })
    socket.connect()
    FakeWebSocket.last.serverClose()
    clock.tick(100)
    FakeWebSocket.last.serverClose()
    clock.tick(200)
    FakeWebSocket.last.serverClose()
    clock.tick(300)
    assert.deepEqual(tries, [1, 2, 3])
    assert.equal(FakeWebSocket.instances.length, 4)
  })

  it('does not reconnect when disconnect() was called while a reconnect was pending', () => {
    const socket = openSocket()
    FakeWebSocket.last.serverClose()
    socket.disconnect()
    clock.tick(60000)
    assert.equal(FakeWebSocket.instances.length, 1)
  })
})
