// The rest of the Phoenix wire (issue 15) against the REAL server
// (support/server.mjs), over real WebSockets (the `ws` package):
//   * heartbeat timeout: the server's close makes phoenix.js 1.6, 1.7 and 1.8
//     (npm aliases phoenix16 / phoenix17 / phoenix) reconnect and rejoin;
//   * authToken: phoenix.js 1.8's and our client's `authToken` option;
//   * binary payloads: ArrayBuffer pushes, replies, server pushes and
//     broadcasts, with phoenix.js 1.8 and with our client.
import { describe, it, before, after, afterEach } from 'node:test'
import assert from 'node:assert/strict'
import WebSocket from 'ws'
import { Socket as Phx18 } from 'phoenix'
import { Socket as Phx17 } from 'phoenix17'
import { Socket as Phx16 } from 'phoenix16'
import { Socket } from '../../priv/static/hornbeam.mjs'
import { startServer, waitFor, outcome } from './support/server.mjs'

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

async function join(socket, topic, params = {}) {
  const channel = socket.channel(topic, params)
  const result = await outcome(channel.join())
  assert.equal(result.status, 'ok', `join ${topic}: ${JSON.stringify(result)}`)
  return { channel, response: result.response }
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
