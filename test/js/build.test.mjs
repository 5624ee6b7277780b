// The committed client files: up to date with their one source, loadable as
// a <script> (global Hornbeam) and as an ES module, and their type
// declarations accept the documented example (and reject misuse).
import { describe, it } from 'node:test'
import assert from 'node:assert/strict'
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { createRequire } from 'node:module'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import vm from 'node:vm'
import { staleFiles } from '../../scripts/build_js.mjs'
import * as esm from '../../priv/static/hornbeam.mjs'
import { repoRoot } from './support/server.mjs'

const staticDir = join(repoRoot, 'priv', 'static')

describe('priv/static', () => {
  it('is what scripts/build_js.mjs makes from hornbeam.src.mjs (run it after editing the source)', () => {
    assert.deepEqual(staleFiles(), [])
  })

  it('hornbeam.mjs exports Socket, Channel, Push, Presence and LongPoll', () => {
    assert.deepEqual(Object.keys(esm).sort(), ['Channel', 'LongPoll', 'Presence', 'Push', 'Socket'])
  })

  it('hornbeam.js, run as a plain <script>, defines the global Hornbeam', () => {
    const page = vm.createContext({ location: new URL('https://app.test/chat'), URL })
    vm.runInContext(readFileSync(join(staticDir, 'hornbeam.js'), 'utf8'), page, { filename: 'hornbeam.js' })
    const Hornbeam = vm.runInContext('Hornbeam', page)
    assert.deepEqual(Object.keys(Hornbeam).sort(), ['Channel', 'LongPoll', 'Presence', 'Push', 'Socket'])
    assert.equal(new Hornbeam.Socket('/ws', { params: { token: 't' } }).endPointURL(), 'wss://app.test/ws/websocket?token=t&vsn=2.0.0')
    const state = Hornbeam.Presence.syncDiff({}, { joins: { a: { metas: [{ phx_ref: '1' }] } }, leaves: {} })
    assert.deepEqual(Object.keys(state), ['a'])
  })

  it('hornbeam.js under CommonJS require() exports the same four classes', () => {
    const cjs = createRequire(import.meta.url)('../../priv/static/hornbeam.js')
    assert.deepEqual(Object.keys(cjs).sort(), ['Channel', 'LongPoll', 'Presence', 'Push', 'Socket'])
  })
})

describe('hornbeam.d.ts', () => {
  const ts = createRequire(import.meta.url)('typescript')
  const dts = join(staticDir, 'hornbeam.d.ts')
  const js = join(staticDir, 'hornbeam.js')

  // The example of the docs, with its \`...\` filled in; a script using the global Hornbeam.
  const example = `/// <reference path="${dts}" />
{
const socket = new Hornbeam.Socket('/ws', { params: { token: 'user_token' }, logger: (kind, msg, data) => console.log(kind, msg, data) });
socket.onOpen(() => console.log('open')); socket.onClose(() => console.log('close')); socket.onError((e) => console.log(e)); socket.connect();
const channel = socket.channel('room:lobby', { username: 'Alice' });
channel.join().receive('ok', resp => console.log(resp)).receive('error', resp => console.log(resp)).receive('timeout', () => console.log('timeout'));
channel.push('new_msg', { body: 'Hello!' }).receive('ok', () => console.log('ok')).receive('error', e => console.log(e));
channel.on('new_msg', payload => console.log(payload));
const presence = new Hornbeam.Presence(channel);
presence.onJoin((id, current, newPres) => console.log(id, current, newPres)); presence.onLeave((id, current, leftPres) => console.log(id, current.metas, leftPres.metas));
presence.onSync(() => presence.list((id, {metas}) => metas[0]));
channel.leave().receive('ok', () => console.log('left')); socket.disconnect();
}
`
  // The module form (hornbeam.js resolves to hornbeam.d.ts), options, Presence helpers.
  const moduleUse = `import { Socket, Channel, Push, Presence } from '${js}'
import type { PresenceState, SocketOptions } from '${js}'
const opts: SocketOptions = { params: () => ({ token: 'x' }), timeout: 5000, heartbeatIntervalMs: 1000,
  reconnectAfterMs: (tries) => tries * 100, rejoinAfterMs: (tries) => 1000, vsn: '2.0.0' }
const socket: Socket = new Socket('ws://localhost:8000/ws', opts)
const channel: Channel = socket.channel('room:1')
const push: Push = channel.join(1000)
const ref: number = channel.on('x', (payload, ref, joinRef) => {})
channel.off('x', ref)
socket.off([socket.onOpen(() => {}), socket.onMessage((m) => m.topic)])
const state: PresenceState = Presence.syncDiff(Presence.syncState({}, {}), { joins: {}, leaves: {} })
const names: string[] = Presence.list(state, (key) => key)
const firstRefs: string[] = new Presence(channel, { events: { state: 's', diff: 'd' } }).list((key, p) => p.metas[0].phx_ref)
export { push, names, firstRefs }
`
  const misuse = `/// <reference path="${dts}" />
{
const socket = new Hornbeam.Socket('/ws', { timeout: 'soon' });
socket.channel('room:1').join().receive('done', () => {});
Hornbeam.Presence.list({ a: { metas: [{ no_ref: 1 }] } });
}
`

  // One program for all three files (tsc with lib.dom takes seconds to set up).
  const errorsByFile = (() => {
    const dir = mkdtempSync(join(tmpdir(), 'hornbeam-dts-'))
    try {
      const files = { 'example.ts': example, 'module.ts': moduleUse, 'misuse.ts': misuse }
      for (const [name, text] of Object.entries(files)) writeFileSync(join(dir, name), text)
      const program = ts.createProgram(Object.keys(files).map((name) => join(dir, name)), {
        noEmit: true, strict: true, target: ts.ScriptTarget.ES2020, module: ts.ModuleKind.ESNext,
        moduleResolution: ts.ModuleResolutionKind.Bundler, lib: ['lib.es2020.d.ts', 'lib.dom.d.ts'], types: [], skipDefaultLibCheck: true,
      })
      const errors = { 'example.ts': [], 'module.ts': [], 'misuse.ts': [], other: [] }
      for (const d of ts.getPreEmitDiagnostics(program)) {
        const name = d.file ? d.file.fileName.slice(dir.length + 1) : 'other'
        ;(errors[name] || errors.other).push(ts.flattenDiagnosticMessageText(d.messageText, '\n'))
      }
      return errors
    } finally {
      rmSync(dir, { recursive: true, force: true })
    }
  })()

  it('is valid TypeScript', () => {
    assert.deepEqual(errorsByFile.other, [])
  })

  it('types the documented example through the global Hornbeam', () => {
    assert.deepEqual(errorsByFile['example.ts'], [])
  })

  it('types the module form, the options and the Presence helpers', () => {
    assert.deepEqual(errorsByFile['module.ts'], [])
  })

  it('rejects misuse: a bad option type, an unknown receive status, a meta without phx_ref', () => {
    const errors = errorsByFile['misuse.ts']
    assert.equal(errors.length, 3, errors.join('\n'))
    assert.match(errors.join('\n'), /'string' is not assignable to type 'number'/)
    assert.match(errors.join('\n'), /"done"/)
    assert.match(errors.join('\n'), /phx_ref/)
  })
})
