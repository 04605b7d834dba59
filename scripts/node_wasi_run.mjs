#!/usr/bin/env node
// Run a WASI module under node:wasi, for scripts/bench.
//
//   node --no-warnings node_wasi_run.mjs [--dir HOST[::GUEST]]... MODULE.wasm [ARGS...]
//
// Node's WASI (uvwasi, in C) as the fast baseline: preopens as given (GUEST
// defaults to HOST), argv[0] = the module's file name, no environment, stdio
// inherited. The snapshot is chosen from the module's imports, so both
// wasi_unstable (the tutorial's demo.wat, compiled: demo_wat.wasm) and
// wasi_snapshot_preview1 modules run. Node cannot read .wat.
// Exit status: the module's, 134 on a trap.
import { readFile } from 'node:fs/promises';
import { basename } from 'node:path';
import { WASI } from 'node:wasi';
import process from 'node:process';

const argv = process.argv.slice(2);
const preopens = {};
while (argv.length && argv[0].startsWith('--dir')) {
  const flag = argv.shift();
  const value = flag.includes('=') ? flag.slice(flag.indexOf('=') + 1) : argv.shift();
  const [host, guest] = value.split('::');
  preopens[guest || host] = host;
}
if (!argv.length) {
  process.stderr.write('usage: node_wasi_run.mjs [--dir HOST[::GUEST]]... MODULE.wasm [ARGS...]\n');
  process.exit(2);
}
const [modulePath, ...args] = argv;
const module = await WebAssembly.compile(await readFile(modulePath));
const imported = new Set(WebAssembly.Module.imports(module).map((i) => i.module));
const version = imported.has('wasi_unstable') ? 'unstable' : 'preview1';
const wasi = new WASI({
  version,
  args: [basename(modulePath), ...args],
  env: {},
  preopens,
  returnOnExit: true,
});
let code;
try {
  const instance = await WebAssembly.instantiate(module, wasi.getImportObject());
  code = wasi.start(instance);
} catch (err) {
  process.stderr.write(`Error: ${err}\n`);
  code = 134;
}
process.exitCode = code ?? 0;
