// permessage-deflate (RFC 7692) against the REAL server (support/server.mjs)
// with the official phoenix.js 1.8 and our client over the `ws` package,
// which offers permessage-deflate when asked (`perMessageDeflate`; threshold
// 0 so it compresses every message, as browsers do). The bytes counted on
// the client's TCP socket show compressed frames going both ways.
import { describe, it, before, after, afterEach } from 'node:test'
import assert from 'node:assert/strict'
import WebSocket from 'ws'
import { Socket as Phx18 } from 'phoenix'
import { Socket } from '../../priv/static/hornbeam.mjs'
import { startServer, waitFor, outcome } from './support/server.mjs'

const sockets = []
const transports = []
afterEach(() => {
  for (const socket of sockets.splice(0)) socket.disconnect()
  transports.splice(0)
})

// A `ws` WebSocket that offers permessage-deflate (phoenix.js constructs it).
class DeflateWebSocket extends WebSocket {
  constructor(url, protocols) {
    super(url, protocols, { perMessageDeflate: { threshold: 0 } })
    transports.push(this)
  }
}

class PlainWebSocket extends WebSocket {
  constructor(url, protocols) {
    super(url, protocols, { perMessageDeflate: false })
    transports.push(this)
  }
}

function open(SocketClass, url, transport) {
  const socket = new SocketClass(url, { transport })
  sockets.push(socket)
  socket.connect()
  return socket
}

async function join(socket, topic) {
  const channel = socket.channel(topic, {})
  const result = await outcome(channel.join())
  assert.equal(result.status, 'ok', `join ${topic}: ${JSON.stringify(result)}`)
  return channel
}

const wire = (ws) => ({ read: ws._socket.bytesRead, written: ws._socket.bytesWritten })

describe('permessage-deflate with compress => true', { timeout: 30000 }, () => {
  let server
  before(async () => { server = await startServer('compress => true') })
  after(async () => { await server?.stop() })

  for (const [name, SocketClass] of [['phoenix.js 1.8', Phx18], ['our client', Socket]]) {
    it(`${name}: negotiated, and a 20 KB message goes compressed both ways`, async () => {
      const socket = open(SocketClass, server.url, DeflateWebSocket)
      const channel = await join(socket, 'room:deflate')
      const ws = transports[0]
      assert.match(ws.extensions, /permessage-deflate/)
      const text = 'the quick brown fox jumps over the lazy dog '.repeat(500)
      const before = wire(ws)
      const result = await outcome(channel.push('echo', { text }))
      assert.deepEqual(result, { status: 'ok', response: { text } })
      const after = wire(ws)
      // 22 KB of JSON each way; compressed it is a few hundred bytes
      assert.ok(after.written - before.written < 2000, `sent ${after.written - before.written} bytes`)
      assert.ok(after.read - before.read < 2000, `received ${after.read - before.read} bytes`)
    })
  }

  it('a broadcast reaches a compressing and a plain client alike', async () => {
    const a = open(Phx18, server.url, DeflateWebSocket)
    const b = open(Phx18, server.url, PlainWebSocket)
    const ca = await join(a, 'room:mixed')
    const cb = await join(b, 'room:mixed')
    const [wa, wb] = transports
    assert.match(wa.extensions, /permessage-deflate/)
    assert.equal(wb.extensions, '')
    const got = { a: [], b: [] }
    ca.on('new_msg', (m) => got.a.push(m))
    cb.on('new_msg', (m) => got.b.push(m))
    for (let i = 0; i < 20; i++) {
      assert.equal((await outcome(cb.push('new_msg', { user: 'bob', body: `hello number ${i} to the room` }))).status, 'ok')
    }
    await waitFor(() => got.a.length === 20 && got.b.length === 20, 10000, 'the broadcasts at both clients')
    assert.deepEqual(got.a, got.b)
    assert.equal(got.a[19].body, 'hello number 19 to the room')
  })
})

describe('permessage-deflate with compress off (the default)', { timeout: 20000 }, () => {
  let server
  before(async () => { server = await startServer() })
  after(async () => { await server?.stop() })

  it('phoenix.js offers, the server declines, and messages go uncompressed', async () => {
    const socket = open(Phx18, server.url, DeflateWebSocket)
    const channel = await join(socket, 'room:plain')
    const ws = transports[0]
    assert.equal(ws.extensions, '')
    const text = 'x'.repeat(5000)
    const before = wire(ws)
    assert.deepEqual(await outcome(channel.push('echo', { text })), { status: 'ok', response: { text } })
    assert.ok(wire(ws).read - before.read > 5000)
  })
})
