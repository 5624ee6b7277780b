// Logging a user out everywhere (issue 16) against the REAL server
// (support/server.mjs): the endpoint's connect names each socket
// "user:<user>"; POST /hornbeam/api/disconnect closes the sockets with that
// id (close code 4000), and phoenix.js 1.6, 1.7, 1.8 and our client treat it
// as an ordinary close: they reconnect, and connect decides again (a revoked
// token is refused until a good one comes back).
import { describe, it, before, after, afterEach } from 'node:test'
import assert from 'node:assert/strict'
import WebSocket from 'ws'
import { Socket as Phx18 } from 'phoenix'
import { Socket as Phx17 } from 'phoenix17'
import { Socket as Phx16 } from 'phoenix16'
import { Socket } from '../../priv/static/hornbeam.mjs'
import { startServer, waitFor, outcome } from './support/server.mjs'

const KEY = 'js-disconnect-key'
const sockets = []
afterEach(() => {
  for (const socket of sockets.splice(0)) socket.disconnect()
})

async function disconnect(server, id) {
  const response = await fetch(`http://127.0.0.1:${server.port}/hornbeam/api/disconnect`, {
    method: 'POST',
    headers: { authorization: `Bearer ${KEY}`, 'content-type': 'application/json' },
    body: JSON.stringify({ id }),
  })
  assert.equal(response.status, 200, await response.text())
}

describe('disconnect by socket id: every client reconnects and connect decides again', { timeout: 60000 }, () => {
  let server
  before(async () => {
    server = await startServer(`api_key => <<"${KEY}">>, connect => fun` +
      '(#{<<"user">> := U, <<"token">> := <<"good">>}, _) -> {ok, #{}, <<"user:", U/binary>>}; ' +
      '(_, _) -> {error, bad_token} end')
  })
  after(async () => { await server?.stop() })

  for (const [name, SocketClass] of [['phoenix.js 1.6', Phx16], ['phoenix.js 1.7', Phx17], ['phoenix.js 1.8', Phx18], ['our client', Socket]]) {
    it(`${name} reconnects after the server's disconnect (4000) and rejoins while connect accepts it`, async () => {
      const user = name.replace(/\W+/g, '-')
      let token = 'good'
      // params as a function: read again on every (re)connect, as an app reads its session token
      const socket = new SocketClass(server.url, {
        transport: WebSocket, params: () => ({ user, token }), reconnectAfterMs: () => 50,
      })
      sockets.push(socket)
      const closes = []
      let opens = 0
      let errors = 0
      socket.onClose((e) => closes.push(e.code))
      socket.onOpen(() => opens++)
      socket.onError(() => errors++)
      socket.connect()
      const channel = socket.channel('room:logout', {})
      assert.equal((await outcome(channel.join())).status, 'ok')
      let joins = 0
      channel.joinPush.receive('ok', () => joins++) // runs at once for the first join

      await disconnect(server, `user:${user}`)
      await waitFor(() => opens >= 2 && joins >= 2, 15000, 'reconnect and rejoin after the disconnect')
      assert.equal(closes[0], 4000)

      // The session is revoked: the next connects are refused (403) and the
      // client keeps trying; a good token lets it in again.
      token = 'revoked'
      const errorsBefore = errors
      await disconnect(server, `user:${user}`)
      await waitFor(() => errors >= errorsBefore + 2, 15000, 'refused reconnects')
      assert.equal(opens, 2)
      token = 'good'
      await waitFor(() => opens >= 3 && joins >= 3, 15000, 'reconnect once connect accepts again')
    })
  }

  it('a socket with another id stays connected', async () => {
    const other = new Phx18(server.url, { transport: WebSocket, params: { user: 'stays', token: 'good' } })
    sockets.push(other)
    let closes = 0
    other.onClose(() => closes++)
    other.connect()
    const channel = other.channel('room:logout', {})
    assert.equal((await outcome(channel.join())).status, 'ok')
    await disconnect(server, 'user:somebody-else')
    const echo = await outcome(channel.push('echo', { still: 'here' }))
    assert.deepEqual(echo, { status: 'ok', response: { still: 'here' } })
    assert.equal(closes, 0)
  })
})
