// The rest of the Phoenix wire (issue 15) against the REAL server
// (support/server.mjs), over real WebSockets (the `ws` package):
//   * heartbeat timeout: the server's close makes phoenix.js 1.6, 1.7 and 1.8
//     (npm aliases phoenix16 / phoenix17 / phoenix) reconnect and rejoin;
//   * authToken: phoenix.js 1.8's and our client's `authToken` option;
//   * binary payloads: ArrayBuffer pushes, replies, server pushes and
//     broadcasts, with phoenix.js 1.8 and with our client; and our client's
//     binary encoding and decoding against phoenix.js's own Serializer.
import { describe, it, before, after, afterEach } from 'node:test'
import assert from 'node:assert/strict'
import WebSocket from 'ws'
import { Socket as Phx18, Serializer } from 'phoenix'
import { Socket as Phx17 } from 'phoenix17'
import { Socket as Phx16 } from 'phoenix16'
import { Socket } from '../../priv/static/hornbeam.mjs'
import { startServer, waitFor, outcome, joinOk as join } from './support/server.mjs'

const sockets = []
afterEach(() => {
  for (const socket of sockets.splice(0)) socket.disconnect()
})

function open(SocketClass, url, opts = {}) {
  const socket = new SocketClass(url, { transport: WebSocket, ...opts })
  sockets.push(socket)
  socket.connect()
  return socket
}

describe('heartbeat timeout: every phoenix.js version reconnects (heartbeat_timeout 300 ms)', { timeout: 30000 }, () => {
  let idle
  before(async () => { idle = await startServer('heartbeat_timeout => 300') })
  after(async () => { await idle?.stop() })

  for (const [name, SocketClass] of [['phoenix.js 1.6', Phx16], ['phoenix.js 1.7', Phx17], ['phoenix.js 1.8', Phx18], ['our client', Socket]]) {
    it(`${name} reconnects and rejoins after the server's heartbeat-timeout close (1008)`, async () => {
      // The client sends no heartbeat within the server's timeout.
      const socket = open(SocketClass, idle.url, { heartbeatIntervalMs: 60000, reconnectAfterMs: () => 50 })
      const closes = []
      let opens = 0
      socket.onClose((e) => closes.push(e.code))
      socket.onOpen(() => opens++)
      const { channel } = await join(socket, 'room:idle')
      let joins = 0
      channel.joinPush.receive('ok', () => joins++) // runs at once for the first join
      await waitFor(() => joins >= 2 && opens >= 2, 10000, 'reconnect and rejoin after the server closed')
      assert.equal(closes[0], 1008)
    })
  }
})

describe('authToken (phoenix.js 1.8 and our client)', { timeout: 20000 }, () => {
  let server
  // The connect function keeps the decoded token in the assigns; the test
  // channel's "assigns" event replies with them.
  before(async () => {
    server = await startServer('connect => fun(_Params, #{auth_token := T}) -> ' +
      '{ok, #{<<"auth_token">> => case T of undefined -> null; _ -> T end}} end')
  })
  after(async () => { await server?.stop() })

  for (const [name, SocketClass] of [['phoenix.js 1.8', Phx18], ['our client', Socket]]) {
    it(`${name}: the handshake completes (phoenix echoed) and the token reaches connect`, async () => {
      const socket = open(SocketClass, server.url, { authToken: 'user-42.s3cret' })
      const { channel } = await join(socket, 'room:auth')
      const result = await outcome(channel.push('assigns', {}))
      assert.deepEqual(result, { status: 'ok', response: { auth_token: 'user-42.s3cret' } })
      assert.equal(socket.conn.protocol, 'phoenix')
    })
  }

  it('our client sends a non-ASCII token as base64url of its UTF-8 bytes', async () => {
    const socket = open(Socket, server.url, { authToken: () => 'jöse/ü?>' })
    const { channel } = await join(socket, 'room:auth')
    const result = await outcome(channel.push('assigns', {}))
    assert.deepEqual(result.response, { auth_token: 'jöse/ü?>' })
  })

  it('without authToken no subprotocol is offered and auth_token is null', async () => {
    const socket = open(Phx18, server.url)
    const { channel } = await join(socket, 'room:auth')
    const result = await outcome(channel.push('assigns', {}))
    assert.deepEqual(result.response, { auth_token: null })
    assert.equal(socket.conn.protocol, '')
  })
})

const bytes = (...values) => new Uint8Array(values).buffer
const asArray = (buffer) => [...new Uint8Array(buffer)]

describe('binary payloads (ArrayBuffer) against an Erlang channel', { timeout: 20000 }, () => {
  let server
  before(async () => { server = await startServer() })
  after(async () => { await server?.stop() })

  for (const [name, SocketClass] of [['phoenix.js 1.8', Phx18], ['our client', Socket]]) {
    it(`${name}: an ArrayBuffer push gets an ArrayBuffer reply`, async () => {
      const socket = open(SocketClass, server.url)
      const { channel } = await join(socket, 'room:bin')
      const result = await outcome(channel.push('echo', bytes(0, 1, 2, 255, 128)))
      assert.equal(result.status, 'ok')
      assert.ok(result.response instanceof ArrayBuffer, `reply is ${result.response}`)
      assert.deepEqual(asArray(result.response), [0, 1, 2, 255, 128])
      // JSON on the same channel still works
      assert.deepEqual(await outcome(channel.push('echo', { a: 1 })), { status: 'ok', response: { a: 1 } })
    })

    it(`${name}: server pushes and broadcasts of bytes arrive as ArrayBuffer`, async () => {
      const a = open(SocketClass, server.url)
      const b = open(SocketClass, server.url)
      const { channel: ca } = await join(a, 'room:binb')
      const { channel: cb } = await join(b, 'room:binb')
      const gotA = []
      const gotB = []
      ca.on('bin', (payload) => gotA.push(payload))
      cb.on('bin', (payload) => gotB.push(payload))
      assert.equal((await outcome(ca.push('push_binary', bytes(7, 8)))).status, 'ok')
      await waitFor(() => gotA.length === 1, 5000, 'the binary push')
      assert.ok(gotA[0] instanceof ArrayBuffer)
      assert.deepEqual(asArray(gotA[0]), [7, 8])
      assert.equal((await outcome(ca.push('broadcast_binary', bytes(9)))).status, 'ok')
      await waitFor(() => gotB.length === 1 && gotA.length === 2, 5000, 'the binary broadcast at both clients')
      assert.deepEqual(asArray(gotB[0]), [9])
      assert.deepEqual(asArray(gotA[1]), [9])
    })
  }

  it('a large ArrayBuffer (512 KiB, under max_frame_size) round-trips intact', async () => {
    const socket = open(Phx18, server.url)
    const { channel } = await join(socket, 'room:big')
    const big = new Uint8Array(512 * 1024).map((_, i) => (i * 31) & 255)
    const result = await outcome(channel.push('echo', big.buffer))
    assert.equal(result.status, 'ok')
    assert.deepEqual(new Uint8Array(result.response), big)
  })
})

describe('binary payloads over max_frame_size (1000 bytes)', { timeout: 20000 }, () => {
  let server
  before(async () => { server = await startServer('max_frame_size => 1000') })
  after(async () => { await server?.stop() })

  it('phoenix.js: the connection closes with 1009 and reconnects', async () => {
    const socket = open(Phx18, server.url, { reconnectAfterMs: () => 50 })
    const closes = []
    let opens = 0
    socket.onClose((e) => closes.push(e.code))
    socket.onOpen(() => opens++)
    const { channel } = await join(socket, 'room:big')
    channel.push('echo', new ArrayBuffer(2000))
    await waitFor(() => closes.length >= 1 && opens >= 2, 10000, 'close and reconnect')
    assert.equal(closes[0], 1009)
  })
})

/** A transport that records what the client sends and lets the test play the server. */
class RecordingWebSocket {
  static last = null
  constructor(url, protocols) {
    this.url = url
    this.protocols = protocols
    this.readyState = 0
    this.sent = []
    RecordingWebSocket.last = this
  }
  send(data) { this.sent.push(data) }
  close() { this.readyState = 3 }
  open() { this.readyState = 1; this.onopen?.({}) }
  receive(data) { this.onmessage?.({ data }) }
}

const phoenixEncode = (msg) => new Promise((resolve) => Serializer.encode(msg, resolve))
const phoenixDecode = (data) => new Promise((resolve) => Serializer.decode(data, resolve))

describe('our client\'s binary frames are byte-for-byte phoenix.js\'s Serializer', () => {
  it('encodes an ArrayBuffer push as phoenix.js does (UTF-8 topic included)', async () => {
    const socket = new Socket('ws://example.test/ws', { transport: RecordingWebSocket, heartbeatIntervalMs: 1e9 })
    socket.connect()
    RecordingWebSocket.last.open()
    const payload = bytes(1, 2, 3, 250)
    socket.push({ join_ref: '7', ref: '12', topic: 'room:é', event: 'chunk', payload })
    const expected = await phoenixEncode({ join_ref: '7', ref: '12', topic: 'room:é', event: 'chunk', payload })
    assert.deepEqual(asArray(RecordingWebSocket.last.sent[0]), asArray(expected))
    socket.disconnect()
  })

  it('decodes reply, push and broadcast frames as phoenix.js does', async () => {
    const socket = new Socket('ws://example.test/ws', { transport: RecordingWebSocket, heartbeatIntervalMs: 1e9 })
    const got = []
    socket.onMessage((m) => got.push(m))
    socket.connect()
    RecordingWebSocket.last.open()
    const enc = new TextEncoder()
    const frame = (...parts) => {
      const chunks = parts.map((p) => (typeof p === 'string' ? enc.encode(p) : new Uint8Array(typeof p === 'number' ? [p] : p)))
      const out = new Uint8Array(chunks.reduce((n, c) => n + c.length, 0))
      let o = 0
      for (const c of chunks) { out.set(c, o); o += c.length }
      return out.buffer
    }
    const frames = [
      frame(1, 1, 2, 6, 2, '7', '12', 'room:1', 'ok', [9, 8]), // reply
      frame(0, 1, 6, 4, '7', 'room:1', 'ping', [1]), // push
      frame(2, 6, 3, 'room:1', 'bin', [0, 255]), // broadcast
    ]
    for (const f of frames) RecordingWebSocket.last.receive(f)
    assert.equal(got.length, 3)
    for (const [i, f] of frames.entries()) {
      const theirs = await phoenixDecode(f)
      const ours = got[i]
      const plain = (m) => JSON.parse(JSON.stringify(m, (k, v) => (v instanceof ArrayBuffer ? asArray(v) : v)))
      assert.deepEqual(plain(ours), plain(theirs))
    }
    socket.disconnect()
  })

  it('drops a malformed binary frame without closing the connection', () => {
    const socket = new Socket('ws://example.test/ws', { transport: RecordingWebSocket, heartbeatIntervalMs: 1e9 })
    const got = []
    socket.onMessage((m) => got.push(m))
    socket.connect()
    RecordingWebSocket.last.open()
    RecordingWebSocket.last.receive(bytes(7, 1, 2)) // unknown kind
    RecordingWebSocket.last.receive(bytes(2, 9, 9, 1)) // lengths past the end
    assert.equal(got.length, 0)
    assert.ok(socket.isConnected())
    socket.disconnect()
  })
})
