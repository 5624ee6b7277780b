// A WebSocket stand-in for unit tests. The client drives it like a real
// one (send, close, readyState); the test plays the server: open(),
// receive([...]), reply(msg, status, response), serverClose(code).
export class FakeWebSocket {
  static instances = []

  static reset() {
    FakeWebSocket.instances = []
  }

  static get last() {
    return FakeWebSocket.instances[FakeWebSocket.instances.length - 1]
  }

  constructor(url) {
    this.url = url
    this.readyState = 0
    this.sent = [] // decoded [join_ref, ref, topic, event, payload] arrays
    this.closeCalls = []
    this.onopen = this.onclose = this.onerror = this.onmessage = null
    FakeWebSocket.instances.push(this)
  }

  send(text) {
    if (this.readyState !== 1) throw new Error(`send on a ${this.readyState} socket`)
    this.sent.push(JSON.parse(text))
  }

  // Like a peer that never answers the close: no onclose follows by itself.
  close(code, reason) {
    this.closeCalls.push({ code, reason })
    this.readyState = 2
  }

  // --- the test's side ---
  open() {
    this.readyState = 1
    this.onopen?.({})
  }

  receive(message) {
    this.onmessage?.({ data: JSON.stringify(message) })
  }

  /** Answer a sent message `[join_ref, ref, topic, event, payload]` with phx_reply. */
  reply(message, status = 'ok', response = {}) {
    const [joinRef, ref, topic] = message
    this.receive([joinRef, ref, topic, 'phx_reply', { status, response }])
  }

  serverClose(code = 1006, reason = '') {
    this.readyState = 3
    this.onclose?.({ code, reason, wasClean: code === 1000 })
  }

  error() {
    this.onerror?.(new Error('network down'))
  }

  /** The messages sent so far with this event (and topic). */
  sentEvents(event, topic) {
    return this.sent.filter((m) => m[3] === event && (topic === undefined || m[2] === topic))
  }

  lastSent(event, topic) {
    const all = this.sentEvents(event, topic)
    return all[all.length - 1]
  }
}
