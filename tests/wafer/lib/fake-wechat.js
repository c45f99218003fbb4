// A fake WeChat for the Wafer tests: the server side (`/sns/jscode2session`, real-shaped answers, text/plain
// like WeChat) and the phone side the `wx` shim calls (`/dev/login` mints a one-time code and a fresh 16-byte
// session key for the user; `/dev/userinfo` encrypts the profile with that key, AES-128-CBC, as
// `wx.getUserInfo` does, with `rawData` and its `signature`).
'use strict';

const http = require('node:http');
const crypto = require('node:crypto');

function startFakeWeChat({ appid, secret }) {
  const keys = new Map(); // openid -> current session_key (base64)
  const codes = new Map(); // code -> { openid, used }
  const calls = [];

  const server = http.createServer(async (req, res) => {
    const url = new URL(req.url, 'http://x');
    let body = '';
    for await (const chunk of req) body += chunk;
    const send = (obj, type = 'application/json') => {
      res.writeHead(200, { 'content-type': type });
      res.end(JSON.stringify(obj));
    };
    if (url.pathname === '/dev/login') {
      const { openid } = JSON.parse(body);
      const code = crypto.randomBytes(12).toString('hex');
      keys.set(openid, crypto.randomBytes(16).toString('base64'));
      codes.set(code, { openid, used: false });
      return send({ code });
    }
    if (url.pathname === '/dev/userinfo') {
      const { openid, userInfo } = JSON.parse(body);
      const key = Buffer.from(keys.get(openid), 'base64');
      const iv = crypto.randomBytes(16);
      const rawData = JSON.stringify(userInfo);
      const signature = crypto.createHash('sha1').update(rawData + keys.get(openid)).digest('hex');
      const plain = JSON.stringify({ openId: openid, ...userInfo, watermark: { appid, timestamp: Math.floor(Date.now() / 1000) } });
      const cipher = crypto.createCipheriv('aes-128-cbc', key, iv);
      const encryptedData = Buffer.concat([cipher.update(plain, 'utf8'), cipher.final()]).toString('base64');
      return send({ userInfo, rawData, signature, encryptedData, iv: iv.toString('base64') });
    }
    if (url.pathname === '/sns/jscode2session') {
      const q = Object.fromEntries(url.searchParams);
      calls.push(q);
      if (q.appid !== appid || q.secret !== secret) return send({ errcode: 40013, errmsg: 'invalid appid' }, 'text/plain');
      const entry = codes.get(q.js_code);
      if (!entry) return send({ errcode: 40029, errmsg: 'invalid code' }, 'text/plain');
      if (entry.used) return send({ errcode: 40163, errmsg: 'code been used' }, 'text/plain');
      entry.used = true;
      return send({ openid: entry.openid, session_key: keys.get(entry.openid) }, 'text/plain');
    }
    res.writeHead(404);
    res.end();
  });
  return new Promise((resolve) =>
    server.listen(0, '127.0.0.1', () => resolve({ url: `http://127.0.0.1:${server.address().port}`, calls, close: () => server.close() })),
  );
}

module.exports = { startFakeWeChat };
