// Every string the web page shows, in zh-CN (first: most users are Chinese) and English, in one place.
// The language comes from a saved choice, else navigator.language; the switch in the sidebar changes it.
// Error codes read out through the SDK's errorText (the same table the mini-program uses).
import { errorText, pickLang } from '/xindao.js';

const STRINGS = {
  'zh-CN': {
    title: '信道',
    'login.warning': '开发登录，无需密码。输入相同名字的人会进入同一个账号并看到它的消息。仅用于在自己的电脑上试用，不要用于真实对话。',
    'login.name': '你的名字',
    'login.button': '登录',
    'login.devDisabled': '此服务器未开启开发登录。',
    'login.failed': '登录失败：{err}',
    'session.ended': '会话已结束，请重新登录。',
    'session.cannotConnect': '无法连接：{err}',
    logout: '退出登录',
    userId: '用户 ID {id}',
    'conn.connecting': '正在连接…',
    'conn.open': '在线',
    'conn.openRtt': '在线 · 往返 {ms} 毫秒',
    'conn.reconnecting': '连接已断开，正在重连…',
    'conn.reconnectingN': '连接已断开，正在重连（第 {n} 次）…',
    'conn.paused': '已暂停',
    'conn.closed': '离线',
    'newChat.placeholder': '搜索名字或输入用户 ID',
    'newChat.aria': '名字或用户 ID',
    'newChat.button': '查找',
    'newChat.none': '没有找到名字以“{q}”开头的人',
    'newChat.tooShort': '请至少输入 2 个字',
    'newChat.chat': '聊天',
    'newRoom.placeholder': '新群聊名称',
    'newRoom.aria': '群聊名称',
    'newRoom.button': '创建',
    'newRoom.invite': '仅限邀请',
    chats: '聊天',
    contacts: '联系人',
    publicRooms: '公开群聊',
    refresh: '刷新',
    noChats: '还没有聊天。',
    noContacts: '还没有联系人。',
    noPublicRooms: '没有公开群聊。',
    members: '{n} 位成员',
    join: '加入',
    open: '打开',
    empty: '选择一个聊天，搜索联系人开始聊天，或加入一个群聊。',
    back: '返回',
    leave: '退出群聊',
    membersButton: '成员',
    directChat: '私聊',
    room: '群聊 {id}',
    online: '在线',
    offline: '离线',
    presenceUnknown: '状态未知（你已离线）',
    publicRoom: '公开群聊',
    inviteRoom: '仅限邀请的群聊',
    you: '我：',
    message: '消息',
    send: '发送',
    sending: '发送中…',
    notSent: '未发送：{err}',
    retry: '重试',
    read: '已读',
    loading: '加载中…',
    older: '向上滚动查看更早的消息',
    beginning: '已经是最早的消息了',
    typingOne: '{names} 正在输入…',
    typingMany: '{names} 正在输入…',
    today: '今天',
    yesterday: '昨天',
    'sys.joined': '{who} 加入了群聊',
    'sys.added': '{by} 邀请 {who} 加入了群聊',
    'sys.left': '{who} 退出了群聊',
    'sys.removed': '{by} 将 {who} 移出了群聊',
    'sys.recalledMe': '你撤回了一条消息',
    'sys.recalled': '{who} 撤回了一条消息',
    'sys.removedMsg': '群主移除了一条消息',
    'menu.recall': '撤回',
    'menu.hide': '删除',
    'menu.remove': '移除',
    'menu.aria': '消息操作',
    'profile.title': '个人资料',
    'profile.name': '昵称',
    'profile.avatar': '头像链接（https://…）',
    'profile.save': '保存',
    'profile.cancel': '取消',
    'profile.saved': '已保存',
    'profile.badAvatar': '头像链接必须以 https:// 开头，最多 512 个字符',
    'members.title': '群成员',
    'members.owner': '群主',
    'members.remove': '移出',
    'members.addPlaceholder': '名字或用户 ID',
    'members.add': '添加',
    'members.close': '关闭',
    unknownUser: '用户 {id}',
    'err.noKnownUser': '没有找到“{q}”：请输入对方的用户 ID',
    lang: 'English',
    'media.attach': '发送图片、语音或文件',
    'media.image': '图片',
    'media.voice': '语音',
    'media.file': '文件',
    'media.uploading': '正在上传{kind}…',
    'media.enlarge': '查看大图',
    'media.play': '播放语音',
    'media.download': '下载',
    'media.close': '关闭',
  },
  en: {
    title: 'xindao',
    'login.warning': 'Development login, no password. Anyone who types the same name gets the same account and its messages. For trying xindao out on your own machine, not for real conversations.',
    'login.name': 'Your name',
    'login.button': 'Log in',
    'login.devDisabled': 'Development login is disabled on this server.',
    'login.failed': 'Login failed: {err}',
    'session.ended': 'Your session ended. Please log in again.',
    'session.cannotConnect': 'Could not connect: {err}',
    logout: 'Log out',
    userId: 'user id {id}',
    'conn.connecting': 'Connecting…',
    'conn.open': 'Online',
    'conn.openRtt': 'Online · round trip {ms} ms',
    'conn.reconnecting': 'Connection lost: reconnecting…',
    'conn.reconnectingN': 'Connection lost: reconnecting (attempt {n})…',
    'conn.paused': 'Paused',
    'conn.closed': 'Offline',
    'newChat.placeholder': 'Search a name or type a user id',
    'newChat.aria': 'Name or user id',
    'newChat.button': 'Find',
    'newChat.none': 'Nobody whose name starts with "{q}"',
    'newChat.tooShort': 'Type at least 2 characters',
    'newChat.chat': 'Chat',
    'newRoom.placeholder': 'New room name',
    'newRoom.aria': 'Room name',
    'newRoom.button': 'Create',
    'newRoom.invite': 'Invite only',
    chats: 'Chats',
    contacts: 'Contacts',
    publicRooms: 'Public rooms',
    refresh: 'Refresh',
    noChats: 'No chats yet.',
    noContacts: 'No contacts yet.',
    noPublicRooms: 'No public rooms.',
    members: '{n} members',
    join: 'Join',
    open: 'Open',
    empty: 'Select a chat, find someone to talk to, or join a room.',
    back: 'Back',
    leave: 'Leave',
    membersButton: 'Members',
    directChat: 'Direct chat',
    room: 'room {id}',
    online: 'online',
    offline: 'offline',
    presenceUnknown: 'presence unknown (you are offline)',
    publicRoom: 'public room',
    inviteRoom: 'invite-only room',
    you: 'You: ',
    message: 'Message',
    send: 'Send',
    sending: 'Sending…',
    notSent: 'Not sent: {err}',
    retry: 'Retry',
    read: 'Read',
    loading: 'Loading…',
    older: 'Scroll up for older messages',
    beginning: 'Beginning of the conversation',
    typingOne: '{names} is typing…',
    typingMany: '{names} are typing…',
    today: 'Today',
    yesterday: 'Yesterday',
    'sys.joined': '{who} joined',
    'sys.added': '{by} added {who}',
    'sys.left': '{who} left',
    'sys.removed': '{by} removed {who}',
    'sys.recalledMe': 'You recalled a message',
    'sys.recalled': '{who} recalled a message',
    'sys.removedMsg': 'The owner removed a message',
    'menu.recall': 'Recall',
    'menu.hide': 'Delete for me',
    'menu.remove': 'Remove',
    'menu.aria': 'Message actions',
    'profile.title': 'Profile',
    'profile.name': 'Display name',
    'profile.avatar': 'Avatar URL (https://…)',
    'profile.save': 'Save',
    'profile.cancel': 'Cancel',
    'profile.saved': 'Saved',
    'profile.badAvatar': 'The avatar URL must start with https:// (at most 512 characters)',
    'members.title': 'Members',
    'members.owner': 'owner',
    'members.remove': 'Remove',
    'members.addPlaceholder': 'Name or user id',
    'members.add': 'Add',
    'members.close': 'Close',
    unknownUser: 'user {id}',
    'err.noKnownUser': 'Nobody called "{q}": ask for their user id',
    lang: '中文',
    'media.attach': 'Send an image, a recording or a file',
    'media.image': 'Image',
    'media.voice': 'Voice',
    'media.file': 'File',
    'media.uploading': 'Uploading {kind}…',
    'media.enlarge': 'View full size',
    'media.play': 'Play',
    'media.download': 'Download',
    'media.close': 'Close',
  },
};

function initialLang() {
  let saved = null;
  try {
    saved = localStorage.getItem('xindao.lang');
  } catch (_) {
    saved = null;
  }
  if (saved === 'en' || saved === 'zh-CN') return saved;
  return pickLang(navigator.language || (navigator.languages && navigator.languages[0]));
}

export let lang = initialLang();

/** The string `key` in the current language, with {name} placeholders filled in. */
export function t(key, vars) {
  const table = STRINGS[lang];
  let s = table[key] != null ? table[key] : STRINGS.en[key] != null ? STRINGS.en[key] : key;
  if (vars) s = s.replace(/\{(\w+)\}/g, (m, k) => (vars[k] != null ? String(vars[k]) : m));
  return s;
}

/** Readable text for an SDK/server error in the current language (the code goes to the console). */
export function errText(e) {
  if (e && e.code && typeof console !== 'undefined') console.debug('xindao error', e.code, e.message);
  return errorText(e, lang);
}

/** Fill the static page: data-i18n (text), data-i18n-ph (placeholder), data-i18n-aria, data-i18n-title. */
export function applyStatic(root = document) {
  document.documentElement.lang = lang;
  for (const el of root.querySelectorAll('[data-i18n]')) el.textContent = t(el.dataset.i18n);
  for (const el of root.querySelectorAll('[data-i18n-ph]')) el.placeholder = t(el.dataset.i18nPh);
  for (const el of root.querySelectorAll('[data-i18n-aria]')) el.setAttribute('aria-label', t(el.dataset.i18nAria));
  for (const el of root.querySelectorAll('[data-i18n-title]')) el.title = t(el.dataset.i18nTitle);
}

export function setLang(l) {
  lang = l === 'en' ? 'en' : 'zh-CN';
  try {
    localStorage.setItem('xindao.lang', lang);
  } catch (_) {
    /* private mode: the choice lasts for this page */
  }
  applyStatic();
}

const DAY = 86400000;
function dayStart(ts) {
  const d = new Date(ts);
  return new Date(d.getFullYear(), d.getMonth(), d.getDate()).getTime();
}

/** "今天" / "昨天" / "2026年12月3日 星期四" (or the English equivalents) for a day separator. */
export function fmtDay(ts) {
  const today = dayStart(Date.now());
  const day = dayStart(ts);
  if (day === today) return t('today');
  if (day === today - DAY) return t('yesterday');
  const sameYear = new Date(ts).getFullYear() === new Date().getFullYear();
  return new Date(ts).toLocaleDateString(lang, { year: sameYear ? undefined : 'numeric', month: 'long', day: 'numeric', weekday: 'short' });
}

export function fmtTime(ts) {
  return new Date(ts).toLocaleTimeString(lang, { hour: '2-digit', minute: '2-digit', hour12: false });
}

export function sameDay(a, b) {
  return dayStart(a) === dayStart(b);
}
