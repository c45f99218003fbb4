// A Wafer 2 business server as the quickstart builds one, on the unmodified wafer-node-sdk@1.4.5: its own
// login (code2Session, sessions in MariaDB table cSessionInfo), `GET /weapp/tunnel` through the SDK's
// getTunnelUrl, and the quickstart's chat logic (people/speak) on the tunnel callbacks, with xindao as its
// tunnel server. The chat logic is written here from the quickstart's documented behaviour, not copied.
// The SDK calls WeChat at a hard-coded https URL: the one piece of plumbing is an axios interceptor sending
// those calls to the fake WeChat instead. Driven by the runner over IPC (broadcast, closeTunnel, down).
'use strict';

const http = require('node:http');
const axios = require('axios');

const [tunnelServerUrl, tunnelSignatureKey, wechat, appId, appSecret] = process.argv.slice(2);
axios.interceptors.request.use((cfg) => {
  if (cfg.url.startsWith('https://api.weixin.qq.com')) cfg.url = wechat + cfg.url.slice('https://api.weixin.qq.com'.length);
  return cfg;
});

const emit = (msg) => process.send(msg);
process.on('uncaughtException', (e) => emit({ ev: 'uncaught', error: String(e && e.stack) }));
process.on('unhandledRejection', (e) => emit({ ev: 'uncaught', error: String(e && e.stack) }));

let qcloud;
const userMap = {};
let connectedTunnelIds = [];
const callbacks = [];
// The words of the `speak` message callbacks, in the order they reached this server.
const words = [];

function broadcast(type, content) {
  return qcloud.tunnel.broadcast(connectedTunnelIds, type, content).then((result) => {
    const invalid = (result.data && result.data.invalidTunnelIds) || [];
    invalid.forEach((id) => {
      delete userMap[id];
      connectedTunnelIds = connectedTunnelIds.filter((t) => t !== id);
    });
    return invalid;
  });
}

function onTunnelPacket(packet) {
  const { tunnelId, type } = packet;
  callbacks.push(type);
  if (type === 'connect') {
    if (tunnelId in userMap) {
      connectedTunnelIds.push(tunnelId);
      broadcast('people', { total: connectedTunnelIds.length, enter: userMap[tunnelId] });
    } else {
      qcloud.tunnel.closeTunnel(tunnelId);
    }
  } else if (type === 'message') {
    const { messageType, messageContent } = packet.content;
    if (messageType === 'speak' && tunnelId in userMap) {
      words.push(messageContent.word);
      broadcast('speak', { who: userMap[tunnelId], word: messageContent.word });
    }
  } else if (type === 'close') {
    if (tunnelId in userMap) {
      const leave = userMap[tunnelId];
      delete userMap[tunnelId];
      connectedTunnelIds = connectedTunnelIds.filter((t) => t !== tunnelId);
      broadcast('people', { total: connectedTunnelIds.length, leave });
    }
  }
}

const json = (res, status, body) => {
  res.writeHead(status, { 'content-type': 'application/json' });
  res.end(JSON.stringify(body));
};

async function handle(req, res) {
  const path = new URL(req.url, 'http://x').pathname;
  let body = '';
  for await (const chunk of req) body += chunk;
  try {
    if (path === '/weapp/login') {
      const info = await qcloud.auth.authorization(req);
      return json(res, 200, { code: 0, data: { ...info.userinfo, time: Math.floor(Date.now() / 1000) } });
    }
    if (path === '/weapp/user') {
      const info = await qcloud.auth.validation(req);
      return json(res, 200, info.loginState === 1 ? { code: 0, data: info.userinfo } : { code: -1, data: {} });
    }
    if (path === '/weapp/tunnel' && req.method === 'GET') {
      const data = await qcloud.tunnel.getTunnelUrl(req);
      userMap[data.tunnel.tunnelId] = data.userinfo;
      return json(res, 200, { code: 0, data: data.tunnel });
    }
    if (path === '/weapp/tunnel' && req.method === 'POST') {
      const packet = await qcloud.tunnel.onTunnelMessage(JSON.parse(body));
      onTunnelPacket(packet);
      return json(res, 200, { code: 0, data: {} });
    }
    json(res, 404, { code: -1, error: 'not found' });
  } catch (e) {
    json(res, 200, { code: -1, error: e && e.message ? e.message : String(e) });
  }
}

const sockets = new Set();
let server = null;
function listen(port) {
  server = http.createServer((req, res) => handle(req, res));
  server.on('connection', (s) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
  });
  return new Promise((resolve) => server.listen(port, '127.0.0.1', () => resolve(server.address().port)));
}

const commands = {
  broadcast: ({ type, content }) => broadcast(type, content).then((invalid) => ({ ok: true, invalid })),
  closeTunnel: ({ nickName }) => {
    const id = Object.keys(userMap).find((t) => userMap[t].nickName === nickName);
    return qcloud.tunnel.closeTunnel(id).then((r) => ({ ok: true, id, result: r }));
  },
  down: ({ ms }) => {
    const port = server.address().port;
    server.close();
    sockets.forEach((s) => s.destroy());
    setTimeout(() => listen(port), ms);
    return { ok: true };
  },
  state: () => ({ ok: true, callbacks, words, connected: connectedTunnelIds.length }),
};

process.on('message', async ({ id, cmd, args }) => {
  try {
    emit({ id, reply: await commands[cmd](args || {}) });
  } catch (e) {
    emit({ id, reply: { ok: false, error: String(e && e.stack) } });
  }
});

(async () => {
  const port = await listen(0);
  qcloud = require('wafer-node-sdk')({
    rootPathname: '',
    appId,
    appSecret,
    useQcloudLogin: false,
    mysql: { host: '127.0.0.1', port: 3306, user: 'root', db: 'test', pass: '', char: 'utf8mb4' },
    cos: { region: 'none', fileBucket: 'none', uploadFolder: 'none' },
    serverHost: '127.0.0.1',
    serverPort: port,
    tunnelServerUrl,
    tunnelSignatureKey,
    qcloudAppId: 'none',
    qcloudSecretId: 'none',
    qcloudSecretKey: 'none',
    wxMessageToken: 'none',
  });
  await qcloud.mysql.raw(`CREATE TABLE IF NOT EXISTS cSessionInfo (
    open_id varchar(100) NOT NULL, uuid varchar(100) NOT NULL, skey varchar(100) NOT NULL,
    create_time timestamp NOT NULL DEFAULT CURRENT_TIMESTAMP, last_visit_time timestamp NOT NULL DEFAULT CURRENT_TIMESTAMP,
    session_key varchar(100) NOT NULL, user_info varchar(2048) NOT NULL, PRIMARY KEY (open_id), KEY skey (skey))`);
  emit({ ev: 'ready', port });
})().catch((e) => emit({ ev: 'failed', error: String(e && e.stack) }));
