// Packaging: the tarball `npm pack` makes is installed into a scratch project and a tiny TypeScript consumer is
// compiled against it twice, as an ES module (import) and as CommonJS (require, through dist/xindao.d.cts), with
// module resolution `nodenext` (what Node itself does). The package name the README imports is the packed one.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, mkdirSync, writeFileSync, readFileSync, rmSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createRequire } from 'node:module';

const pkg = join(dirname(fileURLToPath(import.meta.url)), '..');
const require = createRequire(import.meta.url);

function pack(dir) {
  const out = execFileSync('npm', ['pack', '--json', '--pack-destination', dir], { cwd: pkg, encoding: 'utf8' });
  return JSON.parse(out)[0];
}

const CONSUMER = `
const c = new XindaoClient({ url: 'http://127.0.0.1:1', readyTimeoutMs: 1000 });
const ready: Promise<Hello> = c.connect({ timeoutMs: 500 });
void ready;
c.on('message', (m: Message) => { const s: 'recalled' | 'removed' | 'hidden' | undefined = m.state; void s; });
c.on('profile', (p) => { const name: string = p.user.display_name; void name; });
c.on('read', (r) => { const implied: boolean | undefined = r.implied; void implied; });
const e: XindaoError | null = checkContent('text', 'hi', { max_text_chars: 10 });
const t: string = errorText(e, pickLang('zh-CN'));
const n: number = textLength(t);
void n;
async function people(): Promise<User[]> { return c.searchUsers('al'); }
void people;
async function media(blob: Blob): Promise<number | undefined> {
  const up = await c.uploadMedia(blob, { kind: 'image', public: true });
  const ack = await c.sendVoice(1, 'wxfile://tmp.aac', { cmid: 'c-1' });
  const one = await c.mediaUrl(up.id);
  const many = await c.mediaUrl([up.id]);
  const url: string | undefined = one?.thumb_url ?? many[up.id]?.url;
  void url;
  return ack.message.kind === 'voice' ? (ack.message.content as MediaContent).duration_ms : undefined;
}
void media;
`;

test('npm pack produces the package the README imports, and TypeScript consumers compile as ESM and as CommonJS', () => {
  const dir = mkdtempSync(join(tmpdir(), 'xindao-types-'));
  try {
    const info = pack(dir);
    const readme = readFileSync(join(pkg, 'README.md'), 'utf8');
    const imported = [...readme.matchAll(/from '([^'.][^']*)'/g)].map((m) => m[1]).filter((n) => n !== 'ws');
    assert.ok(imported.length > 0, 'the README imports the package');
    for (const name of imported) assert.equal(name, info.name, 'README imports the name npm pack produces');

    const proj = join(dir, 'consumer');
    const mod = join(proj, 'node_modules', info.name);
    mkdirSync(mod, { recursive: true });
    execFileSync('tar', ['xzf', join(dir, info.filename), '-C', mod, '--strip-components=1']);
    assert.ok(existsSync(join(mod, 'dist', 'xindao.d.cts')), 'the .d.cts is in the tarball');
    const names = 'XindaoClient, XindaoError, Hello, Message, MediaContent, User, checkContent, errorText, pickLang, textLength';
    writeFileSync(join(proj, 'esm.mts'), `import { ${names} } from '${info.name}';\n` + CONSUMER);
    writeFileSync(join(proj, 'cjs.cts'), `import { ${names} } from '${info.name}';\n// compiled to require()\n` + CONSUMER);
    writeFileSync(join(proj, 'package.json'), JSON.stringify({ name: 'consumer', private: true }));
    writeFileSync(
      join(proj, 'tsconfig.json'),
      JSON.stringify({ compilerOptions: { module: 'nodenext', moduleResolution: 'nodenext', target: 'es2022', strict: true, noEmit: true, skipLibCheck: false, types: [] }, files: ['esm.mts', 'cjs.cts'] }),
    );
    const tsc = require.resolve('typescript/bin/tsc');
    let out = '';
    try {
      out = execFileSync(process.execPath, [tsc, '-p', proj, '--traceResolution'], { encoding: 'utf8' });
    } catch (e) {
      assert.fail('tsc failed:\n' + e.stdout + e.stderr);
    }
    // each consumer got the declaration file of its own module kind
    assert.match(out, /resolved to '.*xindao\.d\.ts'.*Package ID/s);
    assert.match(out, /resolved to '.*dist\/xindao\.d\.cts'/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
