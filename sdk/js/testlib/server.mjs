// Starts the real xindao binary for tests: XINDAO_BIN, else <repo>/target/debug/xindao.
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
export const repoRoot = resolve(here, '..', '..', '..');

export function xindaoBin() {
  const bin = process.env.XINDAO_BIN ? resolve(process.env.XINDAO_BIN) : join(repoRoot, 'target', 'debug', 'xindao');
  if (!existsSync(bin)) {
    throw new Error(`xindao binary not found at ${bin}: run \`cargo build\` in the repository root, or set XINDAO_BIN`);
  }
  return bin;
}

export function tempDataDir(prefix = 'xindao-test-') {
  return mkdtempSync(join(tmpdir(), prefix));
}

/**
 * Start `xindao serve` and wait for its `listening http://HOST:PORT` line (and `admin http://HOST:PORT`, the
 * admin listener serving /metrics, on a port of its own unless opts.args sets --admin-listen).
 * Every test client comes from 127.0.0.1, so the per-address connection cap is lifted.
 * opts: {dataDir, port (0 = any), heartbeatMs, idleTimeoutMs, args: [], env: {}, readyTimeoutMs}
 * Returns {url, adminUrl, port, dataDir, proc, stop(signal), kill(), restart(), stderr()}.
 */
export async function startServer(opts = {}) {
  const bin = xindaoBin();
  const dataDir = opts.dataDir || tempDataDir();
  const port = opts.port || 0;
  // Tests log in many users from 127.0.0.1: lift the login rate limits (they have tests of their own in Rust).
  const args = ['serve', '--listen', `127.0.0.1:${port}`, '--data-dir', dataDir, '--dev-login', 'true', '--login-per-ip-per-minute', '1000000', '--login-per-second', '1000000'];
  if (opts.heartbeatMs) args.push('--heartbeat-ms', String(opts.heartbeatMs));
  if (opts.idleTimeoutMs) args.push('--idle-timeout-ms', String(opts.idleTimeoutMs));
  const wantAdmin = !(opts.args || []).includes('--admin-listen');
  if (wantAdmin) args.push('--admin-listen', '127.0.0.1:0');
  args.push('--max-connections-per-ip', '100000');
  args.push(...(opts.args || []));
  const cmd = bin.endsWith('.mjs') || bin.endsWith('.js') ? process.execPath : bin;
  const cmdArgs = cmd === bin ? args : [bin, ...args];
  const proc = spawn(cmd, cmdArgs, {
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, RUST_LOG: process.env.RUST_LOG || 'warn', ...(opts.env || {}) },
  });
  let err = '';
  proc.stderr.on('data', (d) => {
    err += d;
    if (err.length > 200000) err = err.slice(-100000);
    if (process.env.XINDAO_TEST_LOG) process.stderr.write(d);
  });
  const exited = new Promise((res) => proc.on('exit', (code, signal) => res({ code, signal })));
  let adminUrl = null;
  const url = await new Promise((res, rej) => {
    let out = '';
    const timer = setTimeout(() => {
      proc.kill('SIGKILL');
      rej(new Error(`xindao did not print "listening ..." within ${opts.readyTimeoutMs || 20000} ms; stderr:\n${err}`));
    }, opts.readyTimeoutMs || 20000);
    proc.stdout.on('data', (d) => {
      out += d;
      const m = out.match(/^listening (http:\/\/\S+)\s*$/m);
      const admin = out.match(/^admin (http:\/\/\S+)\s*$/m);
      if (m && (admin || !wantAdmin)) {
        clearTimeout(timer);
        adminUrl = admin ? admin[1] : null;
        res(m[1]);
      }
    });
    proc.on('exit', (code, signal) => {
      clearTimeout(timer);
      rej(new Error(`xindao exited (code ${code}, signal ${signal}) before listening; stderr:\n${err}`));
    });
  });
  const boundPort = Number(new URL(url).port);
  const srv = {
    url,
    adminUrl,
    port: boundPort,
    dataDir,
    proc,
    exited,
    stderr: () => err,
    /** SIGTERM (graceful, default) or SIGKILL; resolves when the process is gone. */
    async stop(signal = 'SIGTERM') {
      if (proc.exitCode === null && proc.signalCode === null) proc.kill(signal);
      const t = setTimeout(() => proc.kill('SIGKILL'), 10000);
      const r = await exited;
      clearTimeout(t);
      return r;
    },
    kill() {
      return srv.stop('SIGKILL');
    },
    /** Start again on the same port and data dir. */
    async restart(extra = {}) {
      await srv.stop(extra.signal || 'SIGTERM');
      let lastErr;
      for (let i = 0; i < 20; i++) {
        try {
          return await startServer({ ...opts, ...extra, dataDir, port: boundPort });
        } catch (e) {
          lastErr = e; // the port may not be free yet
          await new Promise((r) => setTimeout(r, 250));
        }
      }
      throw lastErr;
    },
    cleanup() {
      try {
        rmSync(dataDir, { recursive: true, force: true });
      } catch (_) {
        /* ignore */
      }
    },
  };
  return srv;
}
