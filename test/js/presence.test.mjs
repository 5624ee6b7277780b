// Unit tests of Presence: syncState / syncDiff by phx_ref (two tabs,
// updates via phx_ref_prev, `__proto__` keys), and the Presence object on a
// channel (diffs queued until the state of the current join arrives).
import { describe, it, beforeEach, afterEach } from 'node:test'
import assert from 'node:assert/strict'
import { Socket, Presence } from '../../priv/static/hornbeam.mjs'
import { FakeClock } from './support/fake_clock.mjs'
import { FakeWebSocket } from './support/fake_transport.mjs'

const meta = (ref, extra = {}) => ({ phx_ref: ref, ...extra })
const pres = (...metas) => ({ metas })
/** A plain object view of a state (null-prototype objects compare unequal to {} in deepEqual). */
const plain = (state) => JSON.parse(JSON.stringify(state))

/** Records onJoin/onLeave calls as readable tuples. */
function recorder() {
  const calls = []
  return {
    calls,
    onJoin: (key, current, added) => calls.push(['join', key, current && current.metas.map((m) => m.phx_ref), added.metas.map((m) => m.phx_ref)]),
    onLeave: (key, current, left) => calls.push(['leave', key, current.metas.map((m) => m.phx_ref), left.metas.map((m) => m.phx_ref)]),
  }
}

describe('Presence.syncState', () => {
  it('joins every key of the first state', () => {
    const r = recorder()
    const state = Presence.syncState({}, { alice: pres(meta('a1')), bob: pres(meta('b1')) }, r.onJoin, r.onLeave)
    assert.deepEqual(plain(state), { alice: pres(meta('a1')), bob: pres(meta('b1')) })
    assert.deepEqual(r.calls, [['join', 'alice', undefined, ['a1']], ['join', 'bob', undefined, ['b1']]])
  })

  it('leaves keys that are gone, and keeps keys that did not change silent', () => {
    const r = recorder()
    const before = { alice: pres(meta('a1')), bob: pres(meta('b1')) }
    const state = Presence.syncState(before, { alice: pres(meta('a1')) }, r.onJoin, r.onLeave)
    assert.deepEqual(plain(state), { alice: pres(meta('a1')) })
    assert.deepEqual(r.calls, [['leave', 'bob', [], ['b1']]])
  })

  it('works meta by meta: two tabs under one key, one tab replaced', () => {
    const r = recorder()
    const before = { alice: pres(meta('a1'), meta('a2')) }
    const state = Presence.syncState(before, { alice: pres(meta('a2'), meta('a3')) }, r.onJoin, r.onLeave)
    assert.deepEqual(state.alice.metas.map((m) => m.phx_ref).sort(), ['a2', 'a3'])
    assert.deepEqual(r.calls, [['join', 'alice', ['a1', 'a2'], ['a3']], ['leave', 'alice', ['a2', 'a3'], ['a1']]])
  })

  it('does not change its arguments, and works without callbacks', () => {
    const before = { alice: pres(meta('a1')) }
    const incoming = { bob: pres(meta('b1')) }
    const snapshot = JSON.stringify([before, incoming])
    const state = Presence.syncState(before, incoming)
    assert.equal(JSON.stringify([before, incoming]), snapshot)
    assert.deepEqual(Object.keys(state), ['bob'])
  })
})

describe('Presence.syncDiff', () => {
  it('a second tab under one key is a second meta; a leave removes one meta, the key goes with the last', () => {
    const r = recorder()
    let state = Presence.syncDiff({}, { joins: { alice: pres(meta('a1', { device: 'laptop' })) }, leaves: {} }, r.onJoin, r.onLeave)
    state = Presence.syncDiff(state, { joins: { alice: pres(meta('a2', { device: 'phone' })) }, leaves: {} }, r.onJoin, r.onLeave)
    assert.deepEqual(state.alice.metas.map((m) => m.device), ['laptop', 'phone'])
    state = Presence.syncDiff(state, { joins: {}, leaves: { alice: pres(meta('a1')) } }, r.onJoin, r.onLeave)
    assert.deepEqual(plain(state), { alice: pres(meta('a2', { device: 'phone' })) })
    state = Presence.syncDiff(state, { joins: {}, leaves: { alice: pres(meta('a2')) } }, r.onJoin, r.onLeave)
    assert.deepEqual(plain(state), {})
    assert.deepEqual(r.calls, [
      ['join', 'alice', undefined, ['a1']],
      ['join', 'alice', ['a1'], ['a2']],
      ['leave', 'alice', ['a2'], ['a1']],
      ['leave', 'alice', [], ['a2']],
    ])
  })

  it('applies an update (leave of the old phx_ref + join with phx_ref_prev) as one changed meta', () => {
    const r = recorder()
    const before = { alice: pres(meta('a1', { status: 'online' }), meta('x9', { status: 'online' })) }
    const diff = {
      joins: { alice: pres(meta('a2', { status: 'away', phx_ref_prev: 'a1' })) },
      leaves: { alice: pres(meta('a1', { status: 'online' })) },
    }
    const state = Presence.syncDiff(before, diff, r.onJoin, r.onLeave)
    assert.deepEqual(plain(state), {
      alice: pres(meta('x9', { status: 'online' }), meta('a2', { status: 'away', phx_ref_prev: 'a1' })),
    })
    assert.deepEqual(r.calls, [['join', 'alice', ['a1', 'x9'], ['a2']], ['leave', 'alice', ['x9', 'a2'], ['a1']]])
  })

  it('replaces a meta joined again with the same phx_ref instead of doubling it', () => {
    const state = Presence.syncDiff({ alice: pres(meta('a1', { v: 1 })) }, { joins: { alice: pres(meta('a1', { v: 2 })) } })
    assert.deepEqual(plain(state), { alice: pres(meta('a1', { v: 2 })) })
  })

  it('ignores a leave of a key it does not know', () => {
    const r = recorder()
    const state = Presence.syncDiff({}, { joins: {}, leaves: { ghost: pres(meta('g1')) } }, r.onJoin, r.onLeave)
    assert.deepEqual(plain(state), {})
    assert.deepEqual(r.calls, [])
  })

  it('does not change the state or the diff it is given', () => {
    const before = { alice: pres(meta('a1')) }
    const diff = { joins: { alice: pres(meta('a2')) }, leaves: { alice: pres(meta('a1')) } }
    const snapshot = JSON.stringify([before, diff])
    Presence.syncDiff(before, diff)
    assert.equal(JSON.stringify([before, diff]), snapshot)
  })

  it('keeps keys like __proto__, constructor and toString as plain keys (no prototype pollution)', () => {
    // JSON.parse, like a message from the wire, makes "__proto__" an own key.
    const diff = JSON.parse('{"joins": {"__proto__": {"metas": [{"phx_ref": "p1", "polluted": true}]},' +
      ' "constructor": {"metas": [{"phx_ref": "c1"}]}}, "leaves": {}}')
    const r = recorder()
    let state = Presence.syncDiff({}, diff, r.onJoin, r.onLeave)
    assert.equal(Object.getPrototypeOf(state), null)
    assert.deepEqual(Object.keys(state), ['__proto__', 'constructor'])
    assert.equal(state['__proto__'].metas[0].phx_ref, 'p1')
    assert.equal({}.polluted, undefined)
    assert.equal(Object.prototype.polluted, undefined)
    // "constructor" was new: onJoin saw no current presence (not Object.prototype.constructor).
    assert.deepEqual(r.calls[1], ['join', 'constructor', undefined, ['c1']])
    assert.deepEqual(Presence.list(state, (key) => key), ['__proto__', 'constructor'])

    state = Presence.syncState(state, JSON.parse('{"__proto__": {"metas": [{"phx_ref": "p2"}]}, "toString": {"metas": [{"phx_ref": "t1"}]}}'))
    assert.deepEqual(Object.keys(state).sort(), ['__proto__', 'toString'])
    assert.deepEqual(state['__proto__'].metas.map((m) => m.phx_ref), ['p2'])
    state = Presence.syncDiff(state, JSON.parse('{"joins": {}, "leaves": {"__proto__": {"metas": [{"phx_ref": "p2"}]}}}'))
    assert.deepEqual(Object.keys(state), ['toString'])
  })
})

describe('Presence.list', () => {
  it('maps each key through the chooser, or returns the presences', () => {
    const state = Presence.syncState({}, { alice: pres(meta('a1', { n: 1 }), meta('a2', { n: 2 })), bob: pres(meta('b1', { n: 3 })) })
    assert.deepEqual(Presence.list(state, (id, { metas }) => `${id}:${metas[0].n}`), ['alice:1', 'bob:3'])
    assert.deepEqual(plain(Presence.list(state)), [state.alice, state.bob].map(plain))
  })
})

describe('Presence on a channel', () => {
  let clock
  beforeEach(() => {
    clock = new FakeClock().install()
    FakeWebSocket.reset()
  })
  afterEach(() => clock.uninstall())

  function setup(opts) {
    const socket = new Socket('ws://example.test/ws', { transport: FakeWebSocket, reconnectJitter: 0 })
    socket.connect()
    FakeWebSocket.last.open()
    const channel = socket.channel('room:lobby')
    const presence = new Presence(channel, opts)
    const log = []
    presence.onJoin((key, current, added) => log.push(`join ${key} ${added.metas.map((m) => m.phx_ref)}`))
    presence.onLeave((key, current, left) => log.push(`leave ${key} ${left.metas.map((m) => m.phx_ref)}`))
    presence.onSync(() => log.push(`sync ${presence.list((id, { metas }) => `${id}=${metas.map((m) => m.phx_ref)}`).join(' ')}`))
    channel.join()
    const join = FakeWebSocket.last.lastSent('phx_join')
    FakeWebSocket.last.reply(join, 'ok')
    const send = (event, payload) => FakeWebSocket.last.receive([channel.joinRef(), null, 'room:lobby', event, payload])
    return { socket, channel, presence, log, send }
  }

  it('syncs from presence_state, then from presence_diff, calling onJoin/onLeave/onSync', () => {
    const { log, send, presence } = setup()
    send('presence_state', { alice: pres(meta('a1')) })
    send('presence_diff', { joins: { bob: pres(meta('b1')) }, leaves: { alice: pres(meta('a1')) } })
    assert.deepEqual(log, ['join alice a1', 'sync alice=a1', 'join bob b1', 'leave alice a1', 'sync bob=b1'])
    assert.deepEqual(presence.list((id) => id), ['bob'])
  })

  it('queues diffs that arrive before the state and applies them after it', () => {
    const { log, send } = setup()
    send('presence_diff', { joins: { bob: pres(meta('b1')) }, leaves: {} })
    send('presence_diff', { joins: {}, leaves: { alice: pres(meta('a1')) } })
    assert.deepEqual(log, [])
    send('presence_state', { alice: pres(meta('a1'), meta('a2')) })
    assert.deepEqual(log, ['join alice a1,a2', 'join bob b1', 'leave alice a1', 'sync alice=a2 bob=b1'])
  })

  it('queues diffs again after a rejoin until the new join\'s state arrives', () => {
    const { log, send } = setup()
    send('presence_state', { alice: pres(meta('a1')) })
    log.length = 0
    FakeWebSocket.last.serverClose()
    clock.tick(10)
    FakeWebSocket.last.open()
    FakeWebSocket.last.reply(FakeWebSocket.last.lastSent('phx_join'), 'ok')
    send('presence_diff', { joins: { bob: pres(meta('b1')) }, leaves: {} })
    assert.deepEqual(log, [])
    send('presence_state', { alice: pres(meta('a1')), carol: pres(meta('c1')) })
    assert.deepEqual(log, ['join carol c1', 'join bob b1', 'sync alice=a1 carol=c1 bob=b1'])
  })

  it('listens to renamed events', () => {
    const { log, send } = setup({ events: { state: 'who_state', diff: 'who_diff' } })
    send('presence_state', { alice: pres(meta('a1')) })
    assert.deepEqual(log, [])
    send('who_state', { alice: pres(meta('a1')) })
    send('who_diff', { joins: { bob: pres(meta('b1')) }, leaves: {} })
    assert.deepEqual(log, ['join alice a1', 'sync alice=a1', 'join bob b1', 'sync alice=a1 bob=b1'])
  })

  it('keeps its state in a null-prototype object', () => {
    const { presence, send } = setup()
    assert.equal(Object.getPrototypeOf(presence.state), null)
    send('presence_state', JSON.parse('{"__proto__": {"metas": [{"phx_ref": "p1"}]}}'))
    assert.equal(Object.getPrototypeOf(presence.state), null)
    assert.deepEqual(presence.list((id) => id), ['__proto__'])
  })
})
