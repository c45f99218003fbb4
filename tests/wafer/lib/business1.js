// A Wafer 1 business server as its demo builds one, on the unmodified qcloud-weapp-server-sdk@0.8.2: logins
// and session checks through `AuthServerUrl` (xindao's /wafer-auth, replacing Tencent's hosted auth service),
// its tunnel through `TunnelServerUrl` (xindao's /wafer-tunnel), and the demo's chat logic (people/speak),
// written here from the demo's documented behaviour. The SDK cannot put a port in `ServerHost`, so callbacks go
// to port 80: this server listens on 127.0.0.3:80. Driven over IPC like lib/business.js.
'use strict';

const http = require('node:http');
const { config, LoginService, TunnelService } = require('qcloud-weapp-server-sdk');

const [tunnelServerUrl, tunnelSignatureKey, authServerUrl, host] = process.argv.slice(2);
config({ ServerHost: host, AuthServerUrl: authServerUrl, TunnelServerUrl: tunnelServerUrl, TunnelSignatureKey: tunnelSignatureKey, NetworkTimeout: 5000 });

const emit = (msg) => process.send(msg);
process.on('uncaughtException', (e) => emit({ ev: 'uncaught', error: String(e && e.stack) }));
process.on('unhandledRejection', (e) => emit({ ev: 'uncaught', error: String(e && e.stack) }));

const userMap = {};
let connectedTunnelIds = [];
const callbacks = [];

const broadcast = (type, content) => TunnelService.broadcast(connectedTunnelIds, type, content);

const handler = {
  onRequest(tunnelId, userInfo) {
    if (typeof userInfo === 'object') userMap[tunnelId] = userInfo;
  },
  onConnect(tunnelId) {
    callbacks.push('connect');
    if (tunnelId in userMap) {
      connectedTunnelIds.push(tunnelId);
      broadcast('people', { total: connectedTunnelIds.length, enter: userMap[tunnelId] });
    } else {
      TunnelService.closeTunnel(tunnelId);
    }
  },
  onMessage(tunnelId, type, content) {
    callbacks.push('message');
    if (type === 'speak' && tunnelId in userMap) broadcast('speak', { who: userMap[tunnelId], word: content.word });
  },
  onClose(tunnelId) {
    callbacks.push('close');
    if (!(tunnelId in userMap)) return;
    const leave = userMap[tunnelId];
    delete userMap[tunnelId];
    connectedTunnelIds = connectedTunnelIds.filter((t) => t !== tunnelId);
    broadcast('people', { total: connectedTunnelIds.length, leave });
  },
};

const server = http.createServer(async (req, res) => {
  let body = '';
  for await (const chunk of req) body += chunk;
  const path = new URL(req.url, 'http://x').pathname;
  if (path === '/login') {
    LoginService.create(req, res).login().catch(() => {});
  } else if (path === '/user') {
    LoginService.create(req, res)
      .check()
      .then((data) => {
        res.writeHead(200, { 'content-type': 'application/json' });
        res.end(JSON.stringify({ code: 0, message: 'ok', data }));
      })
      .catch(() => {});
  } else if (path === '/tunnel') {
    let parsed = body;
    try {
      parsed = JSON.parse(body);
    } catch (_) {
      /* the SDK answers 400 */
    }
    TunnelService.create(req, res).handle(handler, { checkLogin: true, getBody: () => parsed });
  } else {
    res.writeHead(404);
    res.end();
  }
});

const commands = {
  broadcast: ({ type, content }) => broadcast(type, content).then((r) => ({ ok: true, invalid: r.data.invalidTunnelIds })),
  closeTunnel: ({ nickName }) => {
    const id = Object.keys(userMap).find((t) => userMap[t].nickName === nickName);
    return TunnelService.closeTunnel(id).then(() => ({ ok: true, id }));
  },
  state: () => ({ ok: true, callbacks, connected: connectedTunnelIds.length }),
};

process.on('message', async ({ id, cmd, args }) => {
  try {
    emit({ id, reply: await commands[cmd](args || {}) });
  } catch (e) {
    emit({ id, reply: { ok: false, error: String(e && e.stack) } });
  }
});

server.on('error', (e) => emit({ ev: 'failed', error: String(e && e.message), code: e && e.code }));
server.listen(80, host, () => emit({ ev: 'ready', port: 80 }));
