// Unit tests of Channel and Push: join, push buffering and timeouts,
// receive() chaining, rejoin with backoff, stale join_refs, on/off,
// phx_error, phx_close, leave. Fake transport and fake clock.
import { describe, it, beforeEach, afterEach } from 'node:test'
import assert from 'node:assert/strict'
import { Socket, Channel, Push } from '../../priv/static/hornbeam.mjs'
import { FakeClock } from './support/fake_clock.mjs'
import { FakeWebSocket } from './support/fake_transport.mjs'

let clock
beforeEach(() => {
  clock = new FakeClock().install()
  FakeWebSocket.reset()
})
afterEach(() => clock.uninstall())

function openSocket(opts = {}) {
  const socket = new Socket('ws://example.test/ws', { transport: FakeWebSocket, heartbeatIntervalMs: 1e9, reconnectJitter: 0, ...opts })
  socket.connect()
  FakeWebSocket.last.open()
  return socket
}

const conn = () => FakeWebSocket.last

/** A channel joined on an open socket; returns the join message too. */
function joined(topic = 'room:lobby', params = {}, opts) {
  const socket = openSocket(opts)
  const channel = socket.channel(topic, params)
  const joinPush = channel.join()
  const join = conn().lastSent('phx_join', topic)
  conn().reply(join, 'ok', {})
  return { socket, channel, joinPush, join }
}

describe('Channel join', () => {
  it('sends phx_join with join_ref = ref and the params; ok makes it joined', () => {
    const socket = openSocket()
    const channel = socket.channel('room:lobby', { username: 'Alice' })
    assert.ok(channel instanceof Channel)
    assert.equal(channel.state, 'closed')
    const replies = []
    const push = channel.join().receive('ok', (r) => replies.push(r))
    assert.ok(push instanceof Push)
    assert.equal(channel.state, 'joining')
    const join = conn().lastSent('phx_join')
    assert.deepEqual(join.slice(2), ['room:lobby', 'phx_join', { username: 'Alice' }])
    assert.equal(join[0], join[1])
    assert.equal(channel.joinRef(), join[0])
    conn().reply(join, 'ok', { welcome: true })
    assert.equal(channel.state, 'joined')
    assert.deepEqual(replies, [{ welcome: true }])
  })

  it('calls a params function at each (re)join', () => {
    const socket = openSocket()
    let n = 0
    socket.channel('room:1', () => ({ n: ++n })).join()
    assert.deepEqual(conn().lastSent('phx_join')[4], { n: 1 })
  })

  it('throws on a second join() of the same channel object', () => {
    const { channel } = joined()
    assert.throws(() => channel.join(), /join\(\) called twice on the channel room:lobby/)
  })

  it('throws on push() before join()', () => {
    const socket = openSocket()
    assert.throws(() => socket.channel('room:1').push('x', {}), /before join\(\)/)
  })

  it('sends the join when the socket opens if joined before connect()', () => {
    const socket = new Socket('ws://example.test/ws', { transport: FakeWebSocket, reconnectJitter: 0 })
    const channel = socket.channel('room:1')
    channel.join()
    socket.connect()
    assert.deepEqual(conn().sent, [])
    conn().open()
    assert.equal(conn().sentEvents('phx_join').length, 1)
    conn().reply(conn().lastSent('phx_join'))
    assert.equal(channel.state, 'joined')
  })

  it('sends one join, not two, when the first connection attempt fails', () => {
    const socket = new Socket('ws://example.test/ws', { transport: FakeWebSocket, reconnectJitter: 0 })
    const channel = socket.channel('room:1')
    channel.join()
    socket.connect()
    conn().serverClose(1006) // never opened
    clock.tick(10)
    conn().open()
    assert.equal(conn().sentEvents('phx_join').length, 1)
    assert.equal(channel.joinRef(), conn().lastSent('phx_join')[0])
  })

  it('rejoins with rejoinAfterMs backoff (1 s, 2 s, 5 s, then 10 s) after join errors, with a new join_ref each time', () => {
    const socket = openSocket()
    const channel = socket.channel('room:1')
    const errors = []
    channel.join().receive('error', (r) => errors.push(r.reason))
    const refs = []
    for (const delay of [1000, 2000, 5000, 10000, 10000]) {
      const join = conn().lastSent('phx_join')
      refs.push(join[0])
      conn().reply(join, 'error', { reason: 'denied' })
      assert.equal(channel.state, 'errored')
      const count = conn().sentEvents('phx_join').length
      clock.tick(delay - 1)
      assert.equal(conn().sentEvents('phx_join').length, count, `no rejoin before ${delay} ms`)
      clock.tick(1)
      assert.equal(conn().sentEvents('phx_join').length, count + 1, `rejoin after ${delay} ms`)
    }
    assert.equal(new Set(refs).size, refs.length)
    assert.equal(errors.length, 5)
    conn().reply(conn().lastSent('phx_join'), 'ok')
    assert.equal(channel.state, 'joined')
  })

  it('on a join timeout: receive("timeout") fires, phx_leave goes out with that join_ref, and it rejoins with a new one', () => {
    const socket = openSocket()
    const channel = socket.channel('room:1')
    const timeouts = []
    channel.join(5000).receive('timeout', () => timeouts.push(clock.now))
    const first = conn().lastSent('phx_join')
    clock.tick(5000)
    assert.deepEqual(timeouts, [5000])
    assert.equal(channel.state, 'errored')
    const leave = conn().lastSent('phx_leave')
    assert.equal(leave[0], first[0])
    clock.tick(1000)
    const second = conn().lastSent('phx_join')
    assert.notEqual(second[0], first[0])
    conn().reply(first, 'ok') // the late answer to the abandoned join is stale
    assert.equal(channel.state, 'joining')
    conn().reply(second, 'ok')
    assert.equal(channel.state, 'joined')
  })

  it('rejoins with a new join_ref after the socket reconnects', () => {
    const { socket, channel, join } = joined()
    const errors = []
    channel.onError((reason) => errors.push(reason))
    conn().serverClose(1006)
    assert.equal(channel.state, 'errored')
    assert.deepEqual(errors, ['connection lost'])
    clock.tick(10)
    conn().open()
    const rejoin = conn().lastSent('phx_join')
    assert.notEqual(rejoin[0], join[0])
    assert.equal(channel.joinRef(), rejoin[0])
    conn().reply(rejoin, 'ok')
    assert.equal(channel.state, 'joined')
    assert.ok(socket.isConnected())
  })

  it('fires the join receive("ok") callbacks again at each rejoin', () => {
    const socket = openSocket()
    const channel = socket.channel('room:1')
    let oks = 0
    channel.join().receive('ok', () => oks++)
    conn().reply(conn().lastSent('phx_join'))
    conn().serverClose()
    clock.tick(10)
    conn().open()
    conn().reply(conn().lastSent('phx_join'))
    assert.equal(oks, 2)
  })

  it('leaves the other channel object of the same topic when a new one joins', () => {
    const { socket, channel: old, join } = joined('room:1')
    const fresh = socket.channel('room:1')
    fresh.join()
    const leave = conn().lastSent('phx_leave', 'room:1')
    assert.equal(leave[0], join[0])
    assert.equal(old.state, 'leaving')
    conn().reply(leave)
    assert.equal(old.state, 'closed')
    assert.equal(fresh.state, 'joining')
  })
})

describe('Channel push and receive', () => {
  it('sends [join_ref, ref, topic, event, payload] and routes the reply to receive("ok")', () => {
    const { channel, join } = joined()
    const got = []
    channel.push('new_msg', { body: 'Hello!' }).receive('ok', (r) => got.push(r)).receive('error', () => got.push('error'))
    const msg = conn().lastSent('new_msg')
    assert.deepEqual(msg.slice(2), ['room:lobby', 'new_msg', { body: 'Hello!' }])
    assert.equal(msg[0], join[0])
    assert.notEqual(msg[1], join[1])
    conn().reply(msg, 'ok', { id: 1 })
    assert.deepEqual(got, [{ id: 1 }])
  })

  it('routes error replies to receive("error")', () => {
    const { channel } = joined()
    const got = []
    channel.push('x', {}).receive('ok', () => got.push('ok')).receive('error', (e) => got.push(e))
    conn().reply(conn().lastSent('x'), 'error', { reason: 'nope' })
    assert.deepEqual(got, [{ reason: 'nope' }])
  })

  it('fires a callback registered after the answer arrived at once, and only for that status', () => {
    const { channel } = joined()
    const push = channel.push('x', {})
    conn().reply(conn().lastSent('x'), 'ok', { v: 1 })
    const got = []
    push.receive('error', () => got.push('error')).receive('timeout', () => got.push('timeout')).receive('ok', (r) => got.push(r))
    assert.deepEqual(got, [{ v: 1 }])
  })

  it('times out after the channel timeout (10 s default), and ignores a late reply', () => {
    const { channel } = joined()
    const got = []
    channel.push('x', {}).receive('timeout', () => got.push(`timeout@${clock.now}`)).receive('ok', () => got.push('ok'))
    const sent = conn().lastSent('x')
    clock.tick(9999)
    assert.deepEqual(got, [])
    clock.tick(1)
    assert.deepEqual(got, ['timeout@10000'])
    conn().reply(sent, 'ok')
    assert.deepEqual(got, ['timeout@10000'])
  })

  it('honours the socket timeout option and a per-push timeout', () => {
    const { channel } = joined('room:1', {}, { timeout: 300 })
    const got = []
    channel.push('a', {}).receive('timeout', () => got.push(`a@${clock.now}`))
    channel.push('b', {}, 100).receive('timeout', () => got.push(`b@${clock.now}`))
    clock.tick(300)
    assert.deepEqual(got, ['b@100', 'a@300'])
  })

  it('buffers pushes before the join completes and sends them in order after ok', () => {
    const socket = openSocket()
    const channel = socket.channel('room:1')
    channel.join()
    channel.push('a', { n: 1 })
    channel.push('b', { n: 2 })
    assert.deepEqual(conn().sentEvents('a'), [])
    const join = conn().lastSent('phx_join')
    conn().reply(join, 'ok')
    assert.deepEqual(conn().sent.slice(-2).map((m) => [m[0], m[3], m[4]]), [[join[0], 'a', { n: 1 }], [join[0], 'b', { n: 2 }]])
  })

  it('keeps a buffered push\'s timeout running from the push, not from the flush', () => {
    const socket = openSocket()
    const channel = socket.channel('room:1')
    channel.join()
    const got = []
    channel.push('a', {}, 5000).receive('timeout', () => got.push(clock.now))
    clock.tick(3000)
    conn().reply(conn().lastSent('phx_join'), 'ok')
    assert.equal(conn().sentEvents('a').length, 1)
    clock.tick(2000)
    assert.deepEqual(got, [5000])
  })

  it('never sends a buffered push that timed out before the join completed', () => {
    const socket = openSocket()
    const channel = socket.channel('room:1')
    channel.join(20000)
    const got = []
    channel.push('a', {}, 1000).receive('timeout', () => got.push('timeout'))
    clock.tick(1000)
    assert.deepEqual(got, ['timeout'])
    conn().reply(conn().lastSent('phx_join'), 'ok')
    assert.equal(conn().sentEvents('a').length, 0)
  })

  it('buffers pushes while the socket is down and sends them after the rejoin, with the new join_ref', () => {
    const { channel } = joined()
    conn().serverClose()
    channel.push('during', { n: 1 })
    clock.tick(10)
    conn().open()
    assert.equal(conn().sentEvents('during').length, 0)
    const rejoin = conn().lastSent('phx_join')
    conn().reply(rejoin, 'ok')
    const sent = conn().lastSent('during')
    assert.equal(sent[0], rejoin[0])
  })
})

describe('Channel events', () => {
  it('on(event) returns a ref; off(event, ref) removes one callback, off(event) all', () => {
    const { channel, join } = joined()
    const got = []
    const ref1 = channel.on('new_msg', (p) => got.push(`1:${p.n}`))
    const ref2 = channel.on('new_msg', (p) => got.push(`2:${p.n}`))
    channel.on('other', (p) => got.push(`other:${p.n}`))
    assert.notEqual(ref1, ref2)
    conn().receive([join[0], null, 'room:lobby', 'new_msg', { n: 1 }])
    channel.off('new_msg', ref1)
    conn().receive([join[0], null, 'room:lobby', 'new_msg', { n: 2 }])
    channel.off('new_msg')
    conn().receive([join[0], null, 'room:lobby', 'new_msg', { n: 3 }])
    conn().receive([join[0], null, 'room:lobby', 'other', { n: 4 }])
    assert.deepEqual(got, ['1:1', '2:1', '2:2', 'other:4'])
  })

  it('passes payload, ref and join_ref to the callback', () => {
    const { channel, join } = joined()
    const got = []
    channel.on('ev', (payload, ref, joinRef) => got.push([payload, ref, joinRef]))
    conn().receive([join[0], '77', 'room:lobby', 'ev', { a: 1 }])
    assert.deepEqual(got, [[{ a: 1 }, '77', join[0]]])
  })

  it('delivers broadcasts (join_ref null) and drops messages of a stale join_ref', () => {
    const { channel, join } = joined()
    const got = []
    channel.on('new_msg', (p) => got.push(p.n))
    conn().receive([null, null, 'room:lobby', 'new_msg', { n: 1 }])
    conn().receive(['stale-1', null, 'room:lobby', 'new_msg', { n: 2 }])
    conn().receive([join[0], null, 'room:lobby', 'new_msg', { n: 3 }])
    conn().receive([null, null, 'room:other', 'new_msg', { n: 4 }])
    assert.deepEqual(got, [1, 3])
  })

  it('drops what the old join sends after a rejoin (its phx_close included)', () => {
    const { channel, join } = joined()
    conn().serverClose()
    clock.tick(10)
    conn().open()
    conn().reply(conn().lastSent('phx_join'), 'ok')
    const got = []
    channel.on('new_msg', () => got.push('msg'))
    channel.onClose(() => got.push('close'))
    conn().receive([join[0], null, 'room:lobby', 'new_msg', {}])
    conn().receive([join[0], join[0], 'room:lobby', 'phx_close', {}])
    assert.deepEqual(got, [])
    assert.equal(channel.state, 'joined')
  })

  it('on phx_error: onError runs, state errored, and it rejoins after rejoinAfterMs with a new join_ref', () => {
    const { channel, join } = joined()
    const errors = []
    channel.onError((reason) => errors.push(reason))
    conn().receive([join[0], join[0], 'room:lobby', 'phx_error', { reason: 'channel_crash' }])
    assert.deepEqual(errors, [{ reason: 'channel_crash' }])
    assert.equal(channel.state, 'errored')
    clock.tick(999)
    assert.equal(conn().sentEvents('phx_join').length, 1)
    clock.tick(1)
    const rejoin = conn().lastSent('phx_join')
    assert.notEqual(rejoin[0], join[0])
    conn().reply(rejoin, 'ok')
    assert.equal(channel.state, 'joined')
  })

  it('on phx_close: onClose runs, state closed, no rejoin, and the socket forgets it', () => {
    const { socket, channel, join } = joined()
    const closes = []
    channel.onClose((p) => closes.push(p))
    conn().receive([join[0], join[0], 'room:lobby', 'phx_close', {}])
    assert.deepEqual(closes, [{}])
    assert.equal(channel.state, 'closed')
    assert.ok(!socket.channels.includes(channel))
    clock.tick(60000)
    conn().serverClose()
    clock.tick(60000)
    conn().open()
    assert.equal(conn().sentEvents('phx_join').length, 0)
  })
})

describe('Channel leave', () => {
  it('pushes phx_leave with the join_ref, and closes on ok', () => {
    const { socket, channel, join } = joined()
    const got = []
    channel.onClose((reason) => got.push(`close:${reason}`))
    const push = channel.leave().receive('ok', () => got.push('ok'))
    assert.equal(channel.state, 'leaving')
    const leave = conn().lastSent('phx_leave')
    assert.deepEqual([leave[0], leave[2], leave[4]], [join[0], 'room:lobby', {}])
    assert.ok(push instanceof Push)
    conn().reply(leave, 'ok')
    assert.deepEqual(got, ['close:leave', 'ok'])
    assert.equal(channel.state, 'closed')
    assert.ok(!socket.channels.includes(channel))
  })

  it('closes on timeout when the server does not answer', () => {
    const { channel } = joined()
    const got = []
    channel.leave(2000).receive('timeout', () => got.push(`timeout@${clock.now}`))
    clock.tick(2000)
    assert.deepEqual(got, ['timeout@2000'])
    assert.equal(channel.state, 'closed')
  })

  it('closes at once, sending nothing, when the socket is down', () => {
    const { channel } = joined()
    conn().serverClose()
    const got = []
    channel.leave().receive('ok', () => got.push('ok'))
    assert.deepEqual(got, ['ok'])
    assert.equal(channel.state, 'closed')
    clock.tick(10)
    conn().open()
    assert.deepEqual(conn().sent, [])
  })

  it('stops rejoin attempts', () => {
    const socket = openSocket()
    const channel = socket.channel('room:1')
    channel.join()
    conn().reply(conn().lastSent('phx_join'), 'error', {})
    channel.leave()
    clock.tick(60000)
    assert.equal(conn().sentEvents('phx_join').length, 1)
    assert.equal(channel.state, 'closed')
  })
})
