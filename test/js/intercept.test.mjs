// Intercepts (hornbeam_channel intercept/0 + handle_out/3) seen from the
// official phoenix.js client over real WebSockets: the server of
// support/server.mjs with support/js_intercept_channel.erl on "sec:*".
import { describe, it, before, after, afterEach } from 'node:test'
import assert from 'node:assert/strict'
import WebSocket from 'ws'
import { Socket as PhxSocket } from 'phoenix'
import { startServer, waitFor, outcome } from './support/server.mjs'

let server
const sockets = []
before(async () => { server = await startServer('', [['sec:*', 'js_intercept_channel']]) })
after(async () => { await server?.stop() })
afterEach(() => {
  for (const socket of sockets.splice(0)) socket.disconnect()
})

async function joinAs (role) {
  const socket = new PhxSocket(server.url, { transport: WebSocket })
  sockets.push(socket)
  socket.connect()
  const channel = socket.channel('sec:lobby', { role })
  const got = []
  for (const event of ['secret', 'plain']) channel.on(event, (payload) => got.push([event, payload]))
  const result = await outcome(channel.join())
  assert.equal(result.status, 'ok', JSON.stringify(result))
  return { channel, got }
}

describe('intercepts with phoenix.js', { timeout: 20000 }, () => {
  it('a filtered-out subscriber gets nothing, another the rewritten payload, in order', async () => {
    const admin = await joinAs('admin')
    const guest = await joinAs('guest')
    const broadcast = (event, payload) => outcome(admin.channel.push('broadcast', { event, payload }))
    assert.equal((await broadcast('secret', { code: 42 })).status, 'ok')
    assert.equal((await broadcast('plain', { n: 1 })).status, 'ok')
    await waitFor(() => admin.got.length === 2 && guest.got.length === 1, 10000, 'the broadcasts')
    assert.deepEqual(admin.got, [['secret', { code: 42, seen_by: 'admin' }], ['plain', { n: 1 }]])
    assert.deepEqual(guest.got, [['plain', { n: 1 }]])
  })
})
