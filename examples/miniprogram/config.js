// The one place to configure the example.
module.exports = {
  // Production: an https domain on the mini-program's "request legal domain" and "socket legal domain"
  // whitelist (the SDK derives wss://<domain>/v1/ws from it). In WeChat DevTools you may tick
  // "do not verify legal domains" and use http://127.0.0.1:8080 for local development.
  SERVER_URL: 'https://chat.example.com',
  // Show the development login (display name) next to the WeChat login; the server needs --dev-login true.
  DEV_LOGIN: true,
  // Show the WeChat login button (the server needs --wechat-appid/--wechat-secret); hidden by itself after the
  // server answers that WeChat login is not configured.
  WECHAT_LOGIN: true,
  // How long the login page waits for the connection before it says the server cannot be reached.
  CONNECT_TIMEOUT_MS: 10000,
};
