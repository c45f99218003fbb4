// Every string the example shows, zh-CN first (the audience is mostly Chinese) and English, in one place.
// The language follows WeChat's (wx.getAppBaseInfo / getSystemInfoSync `language`: zh_CN, zh_TW, en...).
// Pages put `strings()` in their data as `s` and write {{s.key}} in WXML; code uses t('key', {vars}).
const { errorText, pickLang } = require('./xindao.js');

const STRINGS = {
  'zh-CN': {
    loginTitle: '登录',
    wechatLogin: '微信登录',
    devLoginHint: '或者，在开发服务器上：',
    displayName: '显示名称',
    devLogin: '开发登录',
    wechatNotConfigured: '此服务器未配置微信登录',
    devDisabled: '此服务器未开启开发登录',
    loginFailed: '登录失败：{err}',
    connecting: '正在连接…',
    reconnecting: '连接已断开，正在重连…',
    offline: '离线',
    chats: '聊天',
    you: '我：',
    noChats: '还没有聊天。',
    publicRooms: '公开群聊',
    members: '{n} 位成员',
    searchPlaceholder: '搜索名字或输入用户 ID',
    search: '查找',
    searchNone: '没有找到“{q}”',
    tooShort: '请至少输入 2 个字',
    chat: '聊天',
    newRoom: '新群聊名称',
    inviteOnly: '仅限邀请',
    create: '创建',
    profile: '个人资料',
    me: '我是 {name}（用户 ID {id}）',
    chooseAvatar: '选择头像',
    nickname: '昵称',
    nicknamePlaceholder: '输入昵称',
    save: '保存',
    saved: '已保存',
    avatarNeedsMedia: '头像上传需要服务器开启媒体上传',
    older: '上拉查看更早的消息',
    beginning: '已经是最早的消息了',
    sending: '发送中…',
    notSent: '未发送：{err}',
    message: '消息',
    send: '发送',
    typing: '{name} 正在输入…',
    someone: '有人',
    leave: '退出群聊',
    leaveConfirm: '确定退出这个群聊？',
    recall: '撤回',
    hide: '删除',
    recalledMe: '你撤回了一条消息',
    recalled: '{name} 撤回了一条消息',
    removed: '群主移除了一条消息',
    today: '今天',
    yesterday: '昨天',
    directChat: '私聊',
    user: '用户 {id}',
    sessionEnded: '请重新登录',
    image: '图片',
    voice: '语音',
    file: '文件',
    keyboard: '键盘',
    uploading: '正在上传{kind}…',
    holdToTalk: '按住 说话',
    releaseToSend: '松开 发送',
    voiceTooShort: '说话时间太短',
    recordFailed: '录音失败：{err}',
  },
  en: {
    loginTitle: 'Log in',
    wechatLogin: 'Log in with WeChat',
    devLoginHint: 'or, on a development server:',
    displayName: 'Display name',
    devLogin: 'Development login',
    wechatNotConfigured: 'WeChat login is not set up on this server',
    devDisabled: 'Development login is disabled on this server',
    loginFailed: 'Login failed: {err}',
    connecting: 'Connecting…',
    reconnecting: 'Connection lost: reconnecting…',
    offline: 'Offline',
    chats: 'Chats',
    you: 'You: ',
    noChats: 'No chats yet.',
    publicRooms: 'Public rooms',
    members: '{n} members',
    searchPlaceholder: 'Search a name or type a user id',
    search: 'Find',
    searchNone: 'Nobody called "{q}"',
    tooShort: 'Type at least 2 characters',
    chat: 'Chat',
    newRoom: 'New room name',
    inviteOnly: 'Invite only',
    create: 'Create',
    profile: 'Profile',
    me: 'You are {name} (user id {id})',
    chooseAvatar: 'Choose avatar',
    nickname: 'Nickname',
    nicknamePlaceholder: 'Your nickname',
    save: 'Save',
    saved: 'Saved',
    avatarNeedsMedia: 'Avatar upload needs media uploads on the server',
    older: 'Pull up for older messages',
    beginning: 'Beginning of the conversation',
    sending: 'Sending…',
    notSent: 'Not sent: {err}',
    message: 'Message',
    send: 'Send',
    typing: '{name} is typing…',
    someone: 'Someone',
    leave: 'Leave room',
    leaveConfirm: 'Leave this room?',
    recall: 'Recall',
    hide: 'Delete',
    recalledMe: 'You recalled a message',
    recalled: '{name} recalled a message',
    removed: 'The owner removed a message',
    today: 'Today',
    yesterday: 'Yesterday',
    directChat: 'Direct chat',
    user: 'user {id}',
    sessionEnded: 'Please log in again',
    image: 'Image',
    voice: 'Voice',
    file: 'File',
    keyboard: 'Keyboard',
    uploading: 'Uploading {kind}…',
    holdToTalk: 'Hold to talk',
    releaseToSend: 'Release to send',
    voiceTooShort: 'Too short to send',
    recordFailed: 'Recording failed: {err}',
  },
};

function systemLanguage() {
  try {
    const info = typeof wx.getAppBaseInfo === 'function' ? wx.getAppBaseInfo() : wx.getSystemInfoSync();
    return info && info.language;
  } catch (_) {
    return 'zh_CN';
  }
}

let lang = null;
function currentLang() {
  if (!lang) lang = pickLang(systemLanguage() || 'zh_CN');
  return lang;
}

/** The whole table of the current language, for a page's data (`s`). */
function strings() {
  return STRINGS[currentLang()];
}

function t(key, vars) {
  let s = strings()[key];
  if (s == null) s = STRINGS.en[key] != null ? STRINGS.en[key] : key;
  if (vars) s = s.replace(/\{(\w+)\}/g, (m, k) => (vars[k] != null ? String(vars[k]) : m));
  return s;
}

/** Readable text for an SDK / server error (the code goes to the console for logs). */
function errText(e) {
  if (e && e.code) console.warn('xindao error', e.code, e.message);
  return errorText(e, currentLang());
}

module.exports = { strings, t, errText, currentLang };
