// A fake clock for unit tests: replaces the global setTimeout/clearTimeout
// (which the client looks up at each call) with timers that fire only when
// the test calls tick(ms). No real time passes, no sleeps.
export class FakeClock {
  constructor() {
    this.now = 0
    this.timers = new Map() // id → { at, fn }
    this.nextId = 1
    this.saved = null
  }

  install() {
    this.saved = { setTimeout: globalThis.setTimeout, clearTimeout: globalThis.clearTimeout }
    globalThis.setTimeout = (fn, ms = 0, ...args) => {
      const id = this.nextId++
      this.timers.set(id, { at: this.now + Math.max(0, ms), fn: () => fn(...args) })
      return id
    }
    globalThis.clearTimeout = (id) => { this.timers.delete(id) }
    return this
  }

  uninstall() {
    Object.assign(globalThis, this.saved)
  }

  /** Advance time by ms, firing due timers in order (earliest first, then oldest). */
  tick(ms) {
    const end = this.now + ms
    for (;;) {
      let next = null
      for (const [id, t] of this.timers) {
        if (t.at <= end && (next === null || t.at < next.t.at || (t.at === next.t.at && id < next.id))) next = { id, t }
      }
      if (next === null) break
      this.timers.delete(next.id)
      this.now = next.t.at
      next.t.fn()
    }
    this.now = end
  }

  /** Delays (from now) of the timers still pending, sorted. */
  pending() {
    return [...this.timers.values()].map((t) => t.at - this.now).sort((a, b) => a - b)
  }
}
