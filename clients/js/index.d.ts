// Type declarations of @chatrt/chat-client (src/chat.js). The wire format is docs/contract.md.

/** A chat message as stored and pushed (v1), with its state when it has changed (v1.2). */
export interface Message {
  id: string;
  room: string;
  name: string;
  message: string;
  /** RFC 3339 UTC with milliseconds. */
  sent_at: string;
  /** Stream sequence: the room's order and the resume cursor. */
  seq: number;
  edited_at?: string;
  /** Emoji -> count (only counts ≥ 1). */
  reactions?: Record<string, number>;
  /** A tombstone: name and message are "". */
  deleted?: true;
}

/** The 201 of a post: the stored message, with the edit key when authentication is off. */
export interface PostedMessage extends Message {
  edit_key?: string;
}

/** A changed message as an edit or deletion answers it; change_seq is the change's seq. */
export interface ChangedMessage extends Message {
  change_seq: number;
}

/** The answer to react and unreact: every count after the change. */
export interface ReactionsAnswer {
  id: string;
  room: string;
  change_seq: number;
  reactions: Record<string, number>;
}

/** A change to a message of a subscribed room (seq is the change's own). */
export type Change =
  | { type: 'edited'; room: string; id: string; seq: number; message: string; edited_at: string }
  | { type: 'deleted'; room: string; id: string; seq: number }
  | { type: 'reactions'; room: string; id: string; seq: number; reactions: Record<string, number> };

export type State = 'connecting' | 'live' | 'reconnecting' | 'offline' | 'auth_failed';

export interface SubscribedFrame {
  type: 'subscribed';
  room: string;
  /** The stream's latest seq when subscribed. */
  seq: number;
  [field: string]: unknown;
}

export type ClientError =
  | { source: 'ws'; error: string; room?: string }
  | { source: 'ws'; code: number; reason: string; auth?: true }
  | { source: 'http'; status: number; error: string; auth: true };

export interface Member {
  name: string;
  connections: number;
}

/** A room's whole current presence (v1.3): online counts every connection, anonymous those without a name. */
export interface PresenceState {
  online: number;
  anonymous: number;
  /** Sorted by name. */
  members: Member[];
}

/** GET /rooms/{room}/presence. */
export interface RoomPresence {
  room: string;
  online: number;
  members: Member[];
}

/** One entry of GET /rooms. */
export interface RoomInfo {
  room: string;
  last_seq: number;
  last_sent_at: string;
  messages: number;
  online: number;
}

export interface TokenInfo {
  source: 'ws' | 'http';
  code?: number;
  status?: number;
}

/** Where post() keeps edit keys: localStorage's shape. */
export interface KeyStorage {
  getItem(key: string): string | null;
  setItem(key: string, value: string): void;
}

/** The WebSocket class the client uses (the browser's, or the ws package's in Node). */
export type WebSocketClass = new (url: string) => {
  readyState: number;
  onopen: ((ev: unknown) => void) | null;
  onmessage: ((ev: { data: unknown }) => void) | null;
  onerror: ((ev: unknown) => void) | null;
  onclose: ((ev: { code: number; reason: string }) => void) | null;
  send(data: string): void;
  close(code?: number, reason?: string): void;
};

export interface ChatClientOptions {
  /** Websocket URL; default the page's /ws, or (no page) baseURL's host + /ws. */
  url?: string;
  /** HTTP API origin; default the page's (required without a page). */
  baseURL?: string;
  /** Default the global WebSocket; Node 20 has none: pass the ws package's. */
  WebSocket?: WebSocketClass;
  /** Default the global fetch. */
  fetch?: (url: string, init: RequestInit) => Promise<Response>;
  onMessage?(msg: Message): void;
  onChange?(change: Change): void;
  onState?(state: State): void;
  onSubscribed?(frame: SubscribedFrame): void;
  onError?(err: ClientError): void;
  /** After every presence/join/leave frame of a room subscribed with presence: true. */
  onPresence?(room: string, state: PresenceState): void;
  /** Someone else is typing in a room subscribed with presence: true. */
  onTyping?(typing: { room: string; name: string }): void;
  /** Reconnect backoff in ms (exponential, capped, jittered). Defaults 500 and 30000. */
  minDelay?: number;
  maxDelay?: number;
  /** Open the socket in the constructor (default true). */
  autoConnect?: boolean;
  /** Where edit keys are kept (default localStorage; null: memory only). */
  storage?: KeyStorage | null;
  maxEditKeys?: number;
  /** Bearer token (JWT) when the server requires auth. */
  token?: string | null;
  /** A fresh token after a refusal (or nothing: stop). */
  getToken?(info: TokenInfo): string | null | undefined | Promise<string | null | undefined>;
}

export interface SubscribeOptions {
  /** Last seq already shown: every later message and change is delivered once, in order. */
  since?: number;
  /** Opt in to onPresence and onTyping for the room (v1.3). */
  presence?: boolean;
  /** Who this subscription is in presence when auth is off. */
  name?: string;
}

export interface RequestOptions {
  /** Retries of network errors and 502/503/504 (default 2). */
  retries?: number;
  signal?: AbortSignal;
}

export class ChatError extends Error {
  /** HTTP status; 0 for a network error. */
  status: number;
  /** The server's reason. */
  error: string;
  /** Seconds from Retry-After, or null. */
  retryAfter: number | null;
  /** The Idempotency-Key used, or null. */
  key: string | null;
}

export class ChatClient {
  constructor(opts?: ChatClientOptions);
  url: string;
  baseURL: string;
  token: string | null;
  readonly state: State;
  onMessage(msg: Message): void;
  onChange(change: Change): void;
  onState(state: State): void;
  onSubscribed(frame: SubscribedFrame): void;
  onError(err: ClientError): void;
  onPresence(room: string, state: PresenceState): void;
  onTyping(typing: { room: string; name: string }): void;

  subscribe(room: string, since?: number | null): void;
  subscribe(room: string, opts?: SubscribeOptions): void;
  unsubscribe(room: string): void;
  /** Last seq delivered (or given as since) for the room, or null. */
  lastSeq(room: string): number | null;
  /** Sends a typing frame, at most one per 2 s per room; whether it sent. */
  typing(room: string): boolean;
  connect(): void;
  disconnect(): void;
  close(): void;

  post(room: string, name: string, message: string, idempotencyKey?: string, opts?: RequestOptions): Promise<PostedMessage>;
  edit(room: string, id: string, message: string, opts?: RequestOptions): Promise<ChangedMessage>;
  remove(room: string, id: string, opts?: RequestOptions): Promise<ChangedMessage>;
  react(room: string, id: string, emoji: string, name?: string, opts?: RequestOptions): Promise<ReactionsAnswer>;
  unreact(room: string, id: string, emoji: string, name?: string, opts?: RequestOptions): Promise<ReactionsAnswer>;
  history(room: string, opts?: { before?: number; after?: number; limit?: number }): Promise<Message[]>;
  rooms(opts?: { limit?: number; before?: number }): Promise<RoomInfo[]>;
  presence(room: string): Promise<RoomPresence>;
  postedHere(room: string, id: string): boolean;
  editKey(room: string, id: string): string | null;

  /** A random Idempotency-Key (a ULID). */
  static newKey(): string;
  /** 1-64 chars of [A-Za-z0-9_-]. */
  static validRoom(room: string): boolean;
  /** Applies a change to a message in place, part by part; whether it changed. */
  static applyChange(msg: Message, change: Change): boolean;
  /** The change an answer of edit, remove or react/unreact made, or null. */
  static changeFrom(type: Change['type'], answer: ChangedMessage | ReactionsAnswer): Change | null;
  static ChatError: typeof ChatError;
}

export default ChatClient;
