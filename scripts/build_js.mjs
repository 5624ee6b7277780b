#!/usr/bin/env node
// Regenerates the committed JS client files in priv/static/ from their one
// source, priv/static/hornbeam.src.mjs:
//
//   hornbeam.mjs   the source as it is (ES module: Socket, Channel, Push, Presence)
//   hornbeam.js    the same code in a function, setting the browser global `Hornbeam`
//                  (and module.exports under CommonJS)
//   hornbeam.d.ts  TypeScript declarations from the source's JSDoc (tsc), usable as
//                  a module and, through `export as namespace`, as the global
//
// Users load the committed files; nothing is built for them. Run this after
// editing the source (it needs `npm install` in test/js for typescript):
//
//   node scripts/build_js.mjs           write the three files
//   node scripts/build_js.mjs --check   exit 1 if any of them is out of date
//
// test/js/build.test.mjs runs the check.
import { readFileSync, writeFileSync } from 'node:fs'
import { createRequire } from 'node:module'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'

const root = join(dirname(fileURLToPath(import.meta.url)), '..')
const staticDir = join(root, 'priv', 'static')
const sourcePath = join(staticDir, 'hornbeam.src.mjs')

const banner = (what) =>
  `// Hornbeam JS client${what}. GENERATED from hornbeam.src.mjs by scripts/build_js.mjs: edit the source, not this file.\n`

/** The names the source exports; it must have no imports and only `export class|function|const NAME`. */
function exportedNames(source) {
  if (/^\s*import\s/m.test(source) || /^\s*export\s+(default|\{|\*)/m.test(source)) {
    throw new Error('hornbeam.src.mjs: use only `export class|function|const NAME` and no imports')
  }
  return [...source.matchAll(/^export (?:class|function|const) (\w+)/gm)].map((m) => m[1])
}

function browserScript(source) {
  const names = exportedNames(source).join(', ')
  return [
    banner(' (browser global `Hornbeam`)'),
    '(function (root) {',
    "'use strict'",
    '',
    source.replace(/^export (class|function|const) /gm, '$1 ').trimEnd(),
    '',
    `const Hornbeam = { ${names} }`,
    "if (typeof module === 'object' && module.exports) module.exports = Hornbeam",
    'root.Hornbeam = Hornbeam',
    '})(globalThis)',
    '',
  ].join('\n')
}

function declarations(source) {
  const require = createRequire(join(root, 'test', 'js', 'package.json'))
  const ts = require('typescript')
  const options = {
    allowJs: true,
    checkJs: true,
    strict: true,
    declaration: true,
    emitDeclarationOnly: true,
    target: ts.ScriptTarget.ES2020,
    module: ts.ModuleKind.ES2020,
    lib: ['lib.es2020.d.ts', 'lib.dom.d.ts'],
    types: [],
    skipDefaultLibCheck: true,
    newLine: ts.NewLineKind.LineFeed,
  }
  const host = ts.createCompilerHost(options)
  const readFile = host.readFile
  host.readFile = (file) => (file === sourcePath ? source : readFile(file))
  let output = null
  host.writeFile = (_name, text) => { output = text }
  const program = ts.createProgram([sourcePath], options, host)
  const result = program.emit()
  const diagnostics = [...ts.getPreEmitDiagnostics(program), ...result.diagnostics]
  if (diagnostics.length > 0) {
    throw new Error(ts.formatDiagnostics(diagnostics, {
      getCanonicalFileName: (f) => f, getCurrentDirectory: () => root, getNewLine: () => '\n',
    }))
  }
  return `${banner(' type declarations')}${output.trimEnd()}\n\nexport as namespace Hornbeam;\n`
}

/** @returns {Record<string, string>} file name in priv/static → content */
export function build() {
  const source = readFileSync(sourcePath, 'utf8')
  return {
    'hornbeam.mjs': banner(' (ES module)') + source,
    'hornbeam.js': browserScript(source),
    'hornbeam.d.ts': declarations(source),
  }
}

/** @returns {string[]} the files in priv/static that differ from what build() makes */
export function staleFiles() {
  return Object.entries(build())
    .filter(([name, text]) => {
      try { return readFileSync(join(staticDir, name), 'utf8') !== text } catch { return true }
    })
    .map(([name]) => name)
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  if (process.argv.includes('--check')) {
    const stale = staleFiles()
    if (stale.length > 0) {
      console.error(`out of date in priv/static: ${stale.join(', ')}; run: node scripts/build_js.mjs`)
      process.exit(1)
    }
    console.log('priv/static is up to date with hornbeam.src.mjs')
  } else {
    for (const [name, text] of Object.entries(build())) writeFileSync(join(staticDir, name), text)
    console.log('wrote priv/static/hornbeam.mjs, hornbeam.js, hornbeam.d.ts')
  }
}
