// The generated files are up to date: dist/*, the web page's copy and the mini-program example's copy.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import * as esm from '../src/xindao.js';

const pkg = join(dirname(fileURLToPath(import.meta.url)), '..');
const repo = join(pkg, '..', '..');
const require = createRequire(import.meta.url);

test('the web page and the package import the ESM source itself (no copy to go stale)', () => {
  const web = readFileSync(join(repo, 'crates', 'xindao', 'src', 'http', 'web.rs'), 'utf8');
  assert.match(web, /include_bytes!\("\.\.\/\.\.\/\.\.\/\.\.\/sdk\/js\/src\/xindao\.js"\)/);
  const p = JSON.parse(readFileSync(join(pkg, 'package.json'), 'utf8'));
  assert.equal(p.exports['.'].import.default, './src/xindao.js');
  assert.ok(!existsSync(join(repo, 'crates', 'xindao', 'web', 'xindao.js')), 'no stale copy beside the web page');
});

test('the CommonJS build exports what the ESM source exports', () => {
  const cjs = require('../dist/xindao.cjs');
  assert.deepEqual(Object.keys(cjs).sort(), Object.keys(esm).sort());
  assert.equal(typeof cjs.XindaoClient, 'function');
  const mp = join(repo, 'examples', 'miniprogram', 'utils', 'xindao.js');
  assert.equal(readFileSync(mp, 'utf8'), readFileSync(join(pkg, 'dist', 'xindao.cjs'), 'utf8'), 'mini-program copy is stale');
});

test('the SDK has no runtime dependencies and ships types', () => {
  const p = JSON.parse(readFileSync(join(pkg, 'package.json'), 'utf8'));
  assert.equal(p.dependencies, undefined);
  assert.ok(existsSync(join(pkg, p.types)));
  assert.doesNotMatch(readFileSync(join(pkg, 'src', 'xindao.js'), 'utf8'), /^\s*import /m);
});

test('newCmid matches the protocol alphabet and is unique', () => {
  const seen = new Set();
  for (let i = 0; i < 1000; i++) {
    const c = esm.newCmid();
    assert.match(c, /^[A-Za-z0-9_.:-]{1,64}$/);
    seen.add(c);
  }
  assert.equal(seen.size, 1000);
});

test('every error code the server can send has a readable text in zh-CN and en', () => {
  const rs = readFileSync(join(repo, 'crates', 'xindao', 'src', 'error.rs'), 'utf8');
  const codes = [...rs.matchAll(/=> "([a-z_]+)"/g)].map((m) => m[1]);
  assert.ok(codes.length > 15, 'codes read from error.rs');
  for (const code of codes) {
    for (const lang of ['zh-CN', 'en']) assert.ok(esm.ERROR_TEXT[lang][code], `${lang} text for ${code}`);
  }
});
