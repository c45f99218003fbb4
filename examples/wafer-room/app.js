// Points the unmodified Wafer 2 SDK at xindao's login endpoint; nothing else is xindao-specific.
const qcloud = require('wafer2-client-sdk');
const config = require('./config');

App({
  onLaunch() {
    qcloud.setLoginUrl(config.loginUrl);
  },
});
