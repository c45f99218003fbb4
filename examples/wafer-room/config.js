// The one place to configure: where xindao runs and the Wafer prefix it serves (`wafer_prefix`).
const HOST = 'https://chat.example.com';
const PREFIX = '/weapp';

module.exports = {
  loginUrl: `${HOST}${PREFIX}/login`,
  userUrl: `${HOST}${PREFIX}/user`,
  tunnelUrl: `${HOST}${PREFIX}/tunnel`,
};
