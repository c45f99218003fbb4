// The admin page: scrapes /metrics every 2 s and shows the same figures as the Grafana dashboard
// (deploy/grafana-dashboard.json), over the last interval. No framework, no external resources.
'use strict';

const HOPS = [
  ['upgrade', 'xindao_upgrade_seconds'],
  ['request queued', 'xindao_request_queued_seconds'],
  ['commit wait', 'xindao_commit_wait_seconds'],
  ['store pool wait', 'xindao_store_pool_wait_seconds'],
  ['fan-out per message', 'xindao_fanout_seconds'],
  ['push queue wait (sampled)', 'xindao_push_wait_seconds'],
  ['bus publish', 'xindao_bus_publish_seconds'],
  ['bus receive lag', 'xindao_bus_receive_lag_seconds'],
];

/** Parses the exposition into [{name, labels, value}]. */
function parse(text) {
  const out = [];
  for (const line of text.split('\n')) {
    if (!line || line.startsWith('#')) continue;
    const m = line.match(/^([a-zA-Z_:][\w:]*)(\{([^}]*)\})?\s+(\S+)/);
    if (!m) continue;
    const labels = {};
    for (const pair of (m[3] || '').match(/\w+="(?:[^"\\]|\\.)*"/g) || []) {
      const i = pair.indexOf('=');
      labels[pair.slice(0, i)] = pair.slice(i + 2, -1);
    }
    out.push({ name: m[1], labels, value: Number(m[4]) });
  }
  return out;
}

const sum = (samples, name, keep = () => true) =>
  samples.filter((s) => s.name === name && keep(s.labels)).reduce((a, s) => a + s.value, 0);

/** Cumulative buckets of a histogram family (summed over other labels): Map(le -> count). */
function buckets(samples, family, keep = () => true) {
  const out = new Map();
  for (const s of samples) {
    if (s.name !== family + '_bucket' || !keep(s.labels)) continue;
    const le = s.labels.le === '+Inf' ? Infinity : Number(s.labels.le);
    out.set(le, (out.get(le) || 0) + s.value);
  }
  return out;
}

/** The q-quantile's bucket bound from cumulative buckets (the same estimate as PromQL, without interpolation). */
function quantile(q, cumulative) {
  const les = [...cumulative.keys()].sort((a, b) => a - b);
  const total = les.length ? cumulative.get(les[les.length - 1]) : 0;
  if (!total) return null;
  for (const le of les) if (cumulative.get(le) >= q * total) return le;
  return Infinity;
}

function delta(now, before) {
  const d = new Map();
  for (const [le, v] of now) d.set(le, v - ((before && before.get(le)) || 0));
  const last = [...d.values()].pop();
  return last > 0 ? d : now; // idle interval: show the whole run
}

const fmt = (s) => (s == null ? '–' : s === Infinity ? '> max' : s < 1e-3 ? `≤ ${(s * 1e6).toFixed(0)} µs` : s < 1 ? `≤ ${(s * 1e3).toFixed(1)} ms` : `≤ ${s.toFixed(2)} s`);
const $ = (id) => document.getElementById(id);

function row(cells) {
  const tr = document.createElement('tr');
  for (const c of cells) {
    const td = document.createElement('td');
    td.textContent = c;
    tr.appendChild(td);
  }
  return tr;
}

let previous = null;

async function refresh() {
  const [text, status] = await Promise.all([
    fetch('/metrics').then((r) => r.text()),
    fetch('/admin/status').then((r) => r.json()),
  ]);
  const samples = parse(text);
  const now = { at: Date.now(), samples, hist: {} };
  $('node').textContent = status.node;
  $('connections').textContent = sum(samples, 'xindao_connections');
  const nodes = new Set([status.node, ...status.nodes_heard]);
  $('nodes').textContent = nodes.size;
  $('nodes-list').textContent = [...nodes].join(', ') + (status.bus_connected ? '' : ' (bus disconnected)');
  $('slow').textContent = sum(samples, 'xindao_slow_consumers_total');
  $('store-errors').textContent = sum(samples, 'xindao_errors_total', (l) => l.code === 'unavailable' || l.code === 'internal');
  if (previous) {
    const seconds = (now.at - previous.at) / 1000;
    const rate = (name) => ((sum(samples, name) - sum(previous.samples, name)) / seconds).toFixed(1);
    $('message-rate').textContent = rate('xindao_messages_committed_total');
    $('request-rate').textContent = rate('xindao_requests_total');
  }
  const hops = $('hops').tBodies[0];
  hops.replaceChildren();
  for (const [label, family] of HOPS) {
    const cumulative = buckets(samples, family);
    now.hist[family] = cumulative;
    const d = delta(cumulative, previous && previous.hist[family]);
    const count = [...d.values()].pop() || 0;
    hops.appendChild(row([label, count, fmt(quantile(0.5, d)), fmt(quantile(0.99, d))]));
  }
  const ops = $('ops').tBodies[0];
  ops.replaceChildren();
  const names = [...new Set(samples.filter((s) => s.name === 'xindao_request_seconds_bucket').map((s) => s.labels.op))].sort();
  for (const op of names) {
    const key = 'op:' + op;
    const cumulative = buckets(samples, 'xindao_request_seconds', (l) => l.op === op);
    now.hist[key] = cumulative;
    const d = delta(cumulative, previous && previous.hist[key]);
    ops.appendChild(row([op, [...d.values()].pop() || 0, fmt(quantile(0.5, d)), fmt(quantile(0.99, d))]));
  }
  previous = now;
  $('updated').textContent = new Date().toLocaleTimeString();
}

async function loop() {
  try {
    await refresh();
  } catch (e) {
    $('updated').textContent = 'error: ' + e.message;
  }
  setTimeout(loop, 2000);
}

$('probe-form').addEventListener('submit', async (event) => {
  event.preventDefault();
  const button = $('probe-button');
  button.disabled = true;
  $('probe-verdict').textContent = 'probing…';
  const body = { url: $('probe-url').value.trim() };
  const token = $('probe-token').value.trim();
  if (token) body.token = token;
  try {
    const answer = await fetch('/admin/probe', { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
    const report = await answer.json();
    if (!answer.ok) throw new Error((report.error && report.error.message) || answer.status);
    $('probe-verdict').textContent = report.verdict;
    $('probe-output').textContent = report.text;
    $('probe-output').hidden = false;
  } catch (e) {
    $('probe-verdict').textContent = 'probe failed: ' + e.message;
  } finally {
    button.disabled = false;
  }
});

loop();
