// Types for the xindao client SDK (wire protocol v1). Hand-written; see docs/protocol.md for the wire format.
// ESM consumers get this file; CommonJS consumers get its copy dist/xindao.d.cts (scripts/build.mjs).
//
// SECURITY: `content`, display names and room names come from other users: render them as text, never as HTML.

export declare const PROTOCOL_VERSION: 1;
export declare const STATES: readonly ['connecting', 'open', 'reconnecting', 'closed'];

export type ConnectionState = 'connecting' | 'open' | 'reconnecting' | 'closed';

export interface User {
  id: number;
  display_name: string;
  /** https or a xindao media URL; absent when unset */
  avatar_url?: string;
}

export interface Message {
  id: number;
  conversation_id: number;
  seq: number;
  sender_id: number;
  /** The sender's client message id: in replies, history and sync, and in pushes to the sender's own devices.
   * Absent from pushes of another user's message (protocol v1 lean pushes). */
  cmid?: string;
  /** Always set by the SDK (a lean push leaves out the default `text`). */
  kind: MessageKind;
  /** A string for `text`, any JSON value for `custom`, a {@link MediaContent} for `image`, `voice` and
   * `file`. Untrusted: render as text. */
  content: unknown;
  ts: number;
  /** Absent for a normal message. A recalled/removed/hidden message keeps id, seq, sender and ts, not `content`. */
  state?: 'recalled' | 'removed' | 'hidden';
}

export type MessageKind = 'text' | 'custom' | 'image' | 'voice' | 'file';
export type MediaKind = 'image' | 'voice' | 'file';

/** The content of an image, voice or file message, as the server filled it in from the upload. */
export interface MediaContent {
  media_id: string;
  mime: string;
  size: number;
  /** images: as displayed */
  width?: number;
  height?: number;
  /** images: whether a thumbnail exists (`thumb_url`) */
  thumb?: boolean;
  /** voice */
  duration_ms?: number;
  /** files: the uploaded file's name */
  name?: string;
}

/** An upload, as `POST /v1/media` answers it. */
export interface Media {
  id: string;
  kind: MediaKind;
  mime: string;
  size: number;
  width?: number;
  height?: number;
  duration_ms?: number;
  name?: string;
  created_at: number;
  /** public images (avatars): unsigned paths that do not expire */
  public?: boolean;
  url?: string;
  thumb_url?: string;
}

/** Absolute download URLs of a medium, signed, valid until `expires_at` (ms). */
export interface MediaUrls {
  url: string;
  thumb_url?: string;
  expires_at: number;
}

/** Anything `uploadMedia` takes: a Blob/File, or a mini-program's temporary file path. */
export type MediaSource = Blob | string;

export interface UploadOptions {
  kind?: MediaKind;
  /** the file name sent with a Blob (default: the File's name) */
  name?: string;
  /** an image anyone holding its id may fetch, for `setProfile({avatar_url})` */
  public?: boolean;
  /** default: `uploadTimeoutMs` */
  timeoutMs?: number;
}

export interface SendMediaOptions {
  cmid?: string;
  /** the file name (with a Blob) */
  name?: string;
  /** the send's timeout (default sendTimeoutMs) */
  timeoutMs?: number;
  /** the upload's timeout (default uploadTimeoutMs) */
  uploadTimeoutMs?: number;
}

export interface Conversation {
  id: number;
  kind: 'direct' | 'room';
  name: string | null;
  visibility: 'public' | 'invite' | null;
  owner_id: number | null;
  peer: User | null;
  last_seq: number;
  read_seq: number;
  unread: number;
  last_message: Message | null;
  /** Time of the last message (or of the creation), ms since the epoch: what the list is ordered by. */
  last_ts: number;
}

export interface Limits {
  max_frame_bytes: number;
  max_text_chars: number;
  max_custom_bytes: number;
  history_page_max: number;
  rate_per_sec: number;
  rate_burst: number;
}

export interface Hello {
  protocol: number;
  user: User;
  connection_id: number;
  /** When the connection's token ends (ms): a JWT's exp, after which the server closes the socket with 4001
   * `token_expired` unless the client refreshed it (the SDK does, with `getToken`); null for a login's session. */
  expires_at?: number | null;
  heartbeat_ms: number;
  idle_timeout_ms: number;
  limits: Limits;
}

export interface Session {
  token: string;
  expires_at: number;
  user: User;
}

export interface RoomMember {
  user: User;
  role: 'owner' | 'member';
  read_seq: number;
  online: boolean;
}

export interface PublicRoom {
  id: number;
  name: string;
  members: number;
}

export interface Presence {
  user_id: number;
  online: boolean;
}

export interface ReadEvent {
  conversation_id: number;
  user_id: number;
  seq: number;
  /** true when made by the SDK from a `message` (its sender has read up to it), not pushed by the server */
  implied?: boolean;
}
export interface ProfileEvent {
  user: User;
}
export interface MessageStateEvent {
  conversation_id: number;
  seq: number;
  state: 'recalled' | 'removed' | 'hidden';
  by: number;
}
export interface SendFailedEvent {
  cmid: string;
  args: PendingSend;
  error: XindaoError;
}
/** A send not acknowledged yet, as pendingSends() lists it. */
export interface PendingSend {
  cmid: string;
  conversation_id?: number;
  to_user?: number;
  kind: string;
  content: unknown;
  ts?: number;
  /** restored from storage after a reload (its promise belongs to the page that was) */
  restored?: boolean;
}
export interface TypingEvent {
  conversation_id: number;
  user_id: number;
}
export interface MemberEvent {
  conversation_id: number;
  user_id: number;
  action: 'joined' | 'added' | 'left' | 'removed';
  by: number;
}
/** A big room's membership changes, summarised (at most one per room per second). */
export interface MembersChangedEvent {
  conversation_id: number;
  /** the room's size when the summary was made (absent if the server could not read it) */
  members?: number;
  joined: number;
  left: number;
  /** the latest changes (at most 10), oldest first */
  recent: Array<{ user_id: number; action: MemberEvent['action']; by: number }>;
}
export interface StateEvent {
  state: ConnectionState;
  prev: ConnectionState;
  /** close code of the socket that ended, when there was one (1001, 4009, 4010, ...; 4010 also for a local heartbeat timeout) */
  code?: number;
  reason?: string;
  /** reconnect attempt number (1, 2, ...) */
  attempt?: number;
  /** how long until the next attempt */
  delayMs?: number;
  /** `open` after a reconnect */
  reconnect?: boolean;
}
export interface SyncedEvent {
  /** conversations with new messages (initial: every conversation) */
  conversations: Conversation[];
  /** true for the first baseline of a client without stored cursors */
  initial: boolean;
}

export interface ClientEvents {
  /** A `ping` or `send` round trip measured, in ms. */
  rtt: number;
  state: StateEvent;
  open: Hello;
  /** Every message of every conversation the client tracks, once, in seq order per conversation (own messages
   * included, sent from here or from another device). */
  message: Message;
  /** read marks: pushed ones, and `implied` ones made from each message (its sender read up to it) */
  read: ReadEvent;
  /** a contact (or you, on another device) changed name or avatar */
  profile: ProfileEvent;
  /** a message was recalled, removed by the room owner, or hidden by you on another device */
  message_state: MessageStateEvent;
  /** a send restored from storage after a reload failed for good (its promise is gone with the old page) */
  send_failed: SendFailedEvent;
  typing: TypingEvent;
  presence: Presence;
  /** in a big room only for your own joins and leaves; the others' come as `members_changed` */
  member: MemberEvent;
  members_changed: MembersChangedEvent;
  /** a conversation the client did not know about showed up */
  conversation: Partial<Conversation> & { id: number };
  synced: SyncedEvent;
  resync: { reason: string };
  /** close code 4001 or a refused token: log in again; 4003: the user was banned. The client does not reconnect. */
  session_ended: { code: number; reason?: string };
  /** the open socket took a fresh token from `getToken` and now ends at `expires_at` (ms) */
  token_refreshed: { expires_at: number | null };
  error: Error;
  /** every push, raw */
  event: { event: string; data: any };
}

export interface KeyValueStorage {
  getItem(key: string): string | null | undefined;
  setItem(key: string, value: string): void;
}

export interface ClientOptions {
  /** Server base URL, e.g. `https://chat.example.com`. Defaults to `location.origin` in a browser. */
  url?: string;
  /** WebSocket URL; default: `url` with ws(s): and `/v1/ws`. */
  wsUrl?: string;
  /** A WebSocket constructor (Node 20: `require('ws')`); default: globalThis.WebSocket. */
  WebSocket?: any;
  /** fetch implementation; default: globalThis.fetch. */
  fetch?: typeof fetch;
  /** The `wx` object of a mini-program; detected automatically. Pass `null` to force browser mode. */
  wx?: any;
  /** A token from an earlier login (e.g. kept in storage), or a connection token (JWT) from your backend. */
  token?: string;
  /** Fetches a fresh connection token (JWT) from your backend: called when there is none, before the token's
   * exp (`tokenRefreshMarginMs`), and once when the server refuses the token it has. A fresh token is handed to
   * the open socket (`auth_refresh`), which then stays open past the old one's exp. */
  getToken?: () => Promise<string>;
  /** How long before a JWT's exp `getToken` is called at the latest (default 30000); sooner once 80 % of the
   * token's time left has passed. */
  tokenRefreshMarginMs?: number;
  /** How often the measured ping/send round trips are reported to the server (`client_stats`; default
   * 300000; 0 = never). */
  statsIntervalMs?: number;
  /** The client kind reported with them (default: guessed: `wx` present, a browser, else node). */
  clientKind?: 'miniprogram' | 'browser' | 'node' | null;
  user?: User;
  /** Timeout of one request on an open socket (default 15000). */
  requestTimeoutMs?: number;
  /** send() from the call to the ack, time queued included (default 30000; 0 = none). */
  sendTimeoutMs?: number;
  /** Socket open + hello (default 10000). */
  connectTimeoutMs?: number;
  /** connect()/ready() reject with `unreachable` after this long without an open connection (default 15000; 0 = wait). */
  readyTimeoutMs?: number;
  /** The ping sent when the page becomes visible or the network changes: no answer within this = dead (default 3000). */
  livenessTimeoutMs?: number;
  /** Application `ping` interval; default: the server's hello.heartbeat_ms, capped at 25000. */
  heartbeatMs?: number;
  /** Nothing received for this long = dead socket, reconnect (default 2 x heartbeatMs). */
  heartbeatTimeoutMs?: number;
  /** Unacknowledged sends kept (default 200); more are rejected with `outbox_full`. */
  outboxMax?: number;
  backoffInitialMs?: number;
  backoffMaxMs?: number;
  backoffFactor?: number;
  /** Messages per conversation per `sync` page (default 100). */
  syncLimit?: number;
  /** First push of an unknown conversation with seq <= this: fetch from seq 1 (default 50). */
  newConversationBackfill?: number;
  /** Mini-program: pause this long after onAppHide (default 3000). */
  backgroundGraceMs?: number;
  typingThrottleMs?: number;
  /** Install wx.onAppHide/onAppShow or visibilitychange/online hooks (default true). */
  lifecycle?: boolean;
  /** Persist delivery cursors, the outbox and the server's limits (localStorage, or a wx.getStorageSync/
   * setStorageSync wrapper, or anything with getItem/setItem in Node). */
  storage?: KeyValueStorage | null;
  /** Names this client's stored outbox (`xindao:outbox:<user>:<tabId>`). Default: one id per browser tab, kept
   * in sessionStorage across reloads; '' outside browsers (one client at a time). */
  tabId?: string | null;
  /** Web Locks (default navigator.locks): a tab holds a lock while it lives, so another tab adopts its stored
   * outbox only once it is gone. */
  locks?: { request(name: string, options: { ifAvailable: boolean }, callback: (lock: unknown | null) => unknown): Promise<unknown> } | null;
  /** Without Web Locks: a tab's stored outbox is adopted after this long without a sign of life (default 15000). */
  outboxOrphanMs?: number;
  log?: (level: string, message: string, data?: unknown) => void;
  /** One media upload, from the call to the answer (default 120000). */
  uploadTimeoutMs?: number;
}

export declare class XindaoError extends Error {
  /** the server's error code (`forbidden`, `rate_limited`, ...) or `timeout`, `not_connected`,
   * `disconnected`, `outbox_full`, `closed`, `session_ended`, `network`, `unsupported` */
  code: string;
  status?: number;
  retry_after_ms?: number;
  /** for send errors: the cmid (resending with it is safe) */
  cmid?: string;
  /** message_too_long from the SDK's own check: the length (characters or bytes) and the limit */
  chars?: number;
  bytes?: number;
  max?: number;
  constructor(code: string, message?: string, extra?: object);
}

export interface SendOptions {
  cmid?: string;
  kind?: MessageKind;
  timeoutMs?: number;
}
export interface SendAck {
  message: Message;
  duplicate: boolean;
}
export type SendTarget = number | { conversationId: number } | { toUser: number };

/** Upper bounds (ms) of the `client_stats` buckets; a report has one more count, above the last. */
export declare const RTT_BOUNDS_MS: number[];

export declare class XindaoClient {
  constructor(options?: ClientOptions);
  readonly options: Required<ClientOptions>;
  readonly url: string;
  readonly wsUrl: string;
  token: string | null;
  user: User | null;
  hello: Hello | null;
  limits?: Limits;
  readonly state: ConnectionState;
  readonly paused: boolean;
  readonly outboxSize: number;
  /** The last round trip of a `ping` or `send`, in ms (null before the first). */
  readonly rtt: number | null;

  on<K extends keyof ClientEvents>(type: K, fn: (data: ClientEvents[K]) => void): () => void;
  once<K extends keyof ClientEvents>(type: K, fn: (data: ClientEvents[K]) => void): () => void;
  off<K extends keyof ClientEvents>(type: K, fn: (data: ClientEvents[K]) => void): void;

  loginDev(displayName: string): Promise<Session>;
  loginWechat(code?: string): Promise<Session>;
  me(): Promise<User>;
  logout(): Promise<void>;

  /** Rejects with `unreachable` after `timeoutMs` (default readyTimeoutMs); the client keeps retrying. */
  connect(opts?: { timeoutMs?: number }): Promise<Hello>;
  /** Resolves once open; rejects with `unreachable` after `timeoutMs`, `not_connected` before connect(). */
  ready(timeoutMs?: number): Promise<Hello>;
  /** Ping the open socket now; no answer within livenessTimeoutMs = dead, reconnect. */
  checkAlive(why?: string): void;
  /** Unacknowledged sends, oldest first (restored ones included). */
  pendingSends(): PendingSend[];
  close(): void;
  pause(): void;
  resume(): void;

  lastSeq(conversationId: number): number | undefined;
  cursors(): Record<string, number>;

  request<T = any>(op: string, args?: object, opts?: { timeoutMs?: number }): Promise<T>;
  ping(): Promise<{ ts: number }>;
  send(target: SendTarget, content: unknown, opts?: SendOptions): Promise<SendAck>;
  sendTo(userId: number, content: unknown, opts?: SendOptions): Promise<SendAck>;
  history(conversationId: number, opts?: { beforeSeq?: number; afterSeq?: number; limit?: number }): Promise<{ messages: Message[]; has_more: boolean }>;
  /** All conversations (following the server's pages), or the most recent `max`. */
  conversations(opts?: { max?: number }): Promise<Conversation[]>;
  /** One page; pass `next_cursor` back as `cursor`. */
  conversationsPage(opts?: { limit?: number; cursor?: string }): Promise<{ conversations: Conversation[]; has_more: boolean; next_cursor: string | null }>;
  markRead(conversationId: number, seq: number): Promise<number>;
  typing(conversationId: number): Promise<boolean>;
  openDirect(userId: number): Promise<Conversation>;
  createRoom(name: string, opts?: { visibility?: 'public' | 'invite' }): Promise<Conversation>;
  joinRoom(conversationId: number): Promise<Conversation>;
  leaveRoom(conversationId: number): Promise<void>;
  addToRoom(conversationId: number, userId: number): Promise<{}>;
  removeFromRoom(conversationId: number, userId: number): Promise<{}>;
  roomMembers(conversationId: number): Promise<RoomMember[]>;
  publicRooms(opts?: { limit?: number }): Promise<PublicRoom[]>;
  presence(userIds: number[]): Promise<Presence[]>;
  setProfile(profile: { display_name?: string; avatar_url?: string }): Promise<User>;
  /** Display-name prefix, at least 2 characters; at most 20 results. */
  searchUsers(prefix: string, opts?: { limit?: number }): Promise<User[]>;
  contacts(opts?: { limit?: number; cursor?: string }): Promise<{ users: User[]; has_more: boolean; next_cursor: string | null }>;
  recall(conversationId: number, seq: number): Promise<{}>;
  removeMessage(conversationId: number, seq: number): Promise<{}>;
  hide(conversationId: number, seq: number): Promise<{}>;

  /** Upload a medium (`POST /v1/media`): a Blob/File, or a mini-program temp file path (`wx.uploadFile`). */
  uploadMedia(source: MediaSource, opts?: UploadOptions): Promise<Media>;
  /** Upload, then send a message of `opts.kind` (default `file`) naming the upload. */
  sendMedia(target: SendTarget, source: MediaSource, opts?: SendMediaOptions & { kind?: MediaKind }): Promise<SendAck>;
  sendImage(target: SendTarget, source: MediaSource, opts?: SendMediaOptions): Promise<SendAck>;
  /** AAC (ADTS or M4A), MP3 or WAV; the server measures the duration. */
  sendVoice(target: SendTarget, source: MediaSource, opts?: SendMediaOptions): Promise<SendAck>;
  sendFile(target: SendTarget, source: MediaSource, opts?: SendMediaOptions): Promise<SendAck>;
  /** Signed download URLs: one id (null when not visible or deleted), or several (the visible ones, by id).
   * Batched per tick (100 ids a request) and cached until shortly before they expire. */
  mediaUrl(id: string): Promise<MediaUrls | null>;
  mediaUrl(ids: string[]): Promise<Record<string, MediaUrls>>;
  /** Records one-time subscribe-message grants (after `wx.requestSubscribeMessage` accepted); resolves with the grants held. */
  notifyGrant(templateId: string, count?: number): Promise<number>;
}

export declare function createClient(options?: ClientOptions): XindaoClient;
export declare function newCmid(): string;
/** Fills in what a lean `message` push leaves out (`kind: 'text'`); accepts the old and the new shape. */
export declare function normalizeMessage<T extends Partial<Message>>(m: T): T & { kind: MessageKind };

export type Lang = 'zh-CN' | 'en';
/** Readable text for every error code, per language. */
export declare const ERROR_TEXT: Record<Lang, Record<string, string>>;
/** Readable text for an error (default zh-CN); the code stays on the error. */
export declare function errorText(err: { code?: string; max?: number; chars?: number; bytes?: number; retry_after_ms?: number } | null | undefined, lang?: Lang): string;
/** `zh-CN` for any Chinese locale, else `en`. */
export declare function pickLang(locale?: string | null): Lang;
/** Characters as the server counts them (code points). */
export declare function textLength(text: string): number;
/** The server's body checks: null when accepted, else the error it would answer. */
export declare function checkContent(kind: string, content: unknown, limits?: Partial<Limits> | null): XindaoError | null;
