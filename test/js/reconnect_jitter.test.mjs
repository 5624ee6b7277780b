// Reconnect jitter of our client (issue 16): each reconnect delay is drawn
// uniformly from ±reconnectJitter of the backoff (default 0.5: 50–150 %), so
// the clients a deploy closed do not all come back in the same instant.
// Fake transport and fake clock: the pending reconnect timer's delay is read
// from the clock.
import { describe, it, beforeEach, afterEach } from 'node:test'
import assert from 'node:assert/strict'
import { Socket } from '../../priv/static/hornbeam.mjs'
import { FakeClock } from './support/fake_clock.mjs'
import { FakeWebSocket } from './support/fake_transport.mjs'

let clock
let realRandom
beforeEach(() => {
  clock = new FakeClock().install()
  FakeWebSocket.reset()
  realRandom = Math.random
})
afterEach(() => {
  clock.uninstall()
  Math.random = realRandom
})

const newSocket = (opts = {}) => new Socket('ws://example.test/ws', { transport: FakeWebSocket, ...opts })

/** The delay of the reconnect the client schedules after a close, on try 1. */
function firstDelay(opts) {
  FakeWebSocket.reset()
  const socket = newSocket(opts)
  socket.connect()
  FakeWebSocket.last.serverClose(1006)
  const pending = clock.pending()
  assert.equal(pending.length, 1, `one reconnect timer, got ${pending}`)
  socket.disconnect()
  return pending[0]
}

describe('Socket reconnect jitter', () => {
  it('varies the delays and keeps each within 50-150 % of the backoff by default', () => {
    const delays = Array.from({ length: 400 }, () => firstDelay({ reconnectAfterMs: () => 1000 }))
    for (const d of delays) assert.ok(d >= 500 && d <= 1500, `delay ${d} outside 500..1500`)
    assert.ok(new Set(delays).size > 100, `only ${new Set(delays).size} distinct delays`)
    // spread over the whole range, not bunched at the base
    assert.ok(delays.some((d) => d < 650) && delays.some((d) => d > 1350), 'no delay near either bound')
  })

  it('reaches exactly the bounds at the ends of Math.random', () => {
    Math.random = () => 0
    assert.equal(firstDelay({ reconnectAfterMs: () => 1000 }), 500)
    Math.random = () => 0.9999999
    assert.equal(firstDelay({ reconnectAfterMs: () => 1000 }), 1500)
    Math.random = () => 0.5
    assert.equal(firstDelay({ reconnectAfterMs: () => 1000 }), 1000)
  })

  it('applies reconnectJitter to every step of the default backoff', () => {
    Math.random = () => 0
    const socket = newSocket({ reconnectJitter: 0.2 })
    socket.connect()
    const seen = []
    for (let i = 0; i < 10; i++) {
      FakeWebSocket.last.serverClose(1006)
      const [delay] = clock.pending()
      seen.push(delay)
      clock.tick(delay)
    }
    assert.deepEqual(seen, [8, 40, 80, 120, 160, 200, 400, 800, 1600, 4000])
    socket.disconnect()
  })

  it('reconnectJitter 0 keeps the exact backoff; 1 spreads it over 0-200 %', () => {
    for (let i = 0; i < 50; i++) assert.equal(firstDelay({ reconnectAfterMs: () => 300, reconnectJitter: 0 }), 300)
    const full = Array.from({ length: 200 }, () => firstDelay({ reconnectAfterMs: () => 300, reconnectJitter: 1 }))
    for (const d of full) assert.ok(d >= 0 && d <= 600, `delay ${d} outside 0..600`)
    assert.ok(full.some((d) => d < 100) && full.some((d) => d > 500))
  })

  it('refuses a reconnectJitter that is not a fraction from 0 to 1', () => {
    for (const bad of [-0.1, 1.5, NaN, '0.5', Infinity]) {
      assert.throws(() => newSocket({ reconnectJitter: bad }), RangeError, String(bad))
    }
  })
})
