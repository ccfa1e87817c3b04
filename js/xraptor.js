// SPDX-License-Identifier: Apache-2.0
// xraptor.js — browser client for the X-raptor wire protocol.
//
//   import { XRaptor } from "./xraptor.js";
//   const xr = new XRaptor("ws://127.0.0.1:8765/");
//   await xr.connect();
//   const answer = await xr.request("/send_message_to_chat_room", "POST", {chat_id: "1", ...});
//   const sub = await xr.subscribe("/chat_messages", {chat_id: "1"}, (payload) => ...);
//   await sub.unsubscribe();
//
// Payloads are sent as JSON text (a string is sent as is); answers and
// channel messages are handed back parsed when they are JSON.
//
// With a server started with --jwt-key, give a token callback: it is
// called (and awaited) before every connection attempt and again before
// the token's exp, whose answer is handed to the server with PUT
// /xraptor/token so the connection outlives its first token:
//
//   const xr = new XRaptor(url, { token: async () => (await fetch("/token")).text() });
//   xr.on("token", (e) => ...);   // {refreshed: true} or {error}
//
// Presence (a server with --presence): subscribe with an onPresence
// callback to hear who joins and leaves the rooms the SUB joins, and ask
// who is there now:
//
//   await xr.subscribe("/chat_messages", {chat_id: "1", client_id: "ana"}, onMessage, {},
//                      { onPresence: (event, {user, info}) => ... });   // "join" | "leave"
//   const { users, connections, members } = await xr.presence("1");
//
// History (a server with --history-size/--history-room): a stream
// remembers the position of the last message it got and, after a drop,
// subscribes again with it ("since"): what was posted meanwhile arrives
// once and in order before the live messages. When the server cannot
// recover it (too much missed, history lost), the "recovery" event says
// so, so the page can reload what it shows:
//
//   xr.on("recovery", ({ id, recovered }) => { if (!recovered) reloadRoom(); });
//
// Several nodes: give a list of URLs; a connection that cannot be made
// moves on to the next one, and the streams recover there.
//
//   const xr = new XRaptor(["ws://a:8765/", "ws://b:8765/"]);
//
// The refresh is sent refreshBefore ms before exp (default 30 s; at the
// latest halfway through a shorter token's life). A close with 4001
// (token expired) reconnects with a fresh token like any other drop.

function newId() {
  if (globalThis.crypto && crypto.randomUUID) return crypto.randomUUID();
  return Date.now().toString(36) + Math.random().toString(36).slice(2);
}

function parse(text) {
  try { return JSON.parse(text); } catch { return text; }
}

// The exp claim of a JWT in ms, or null; read, not verified (the server
// verifies): it only says when to ask for the next one.
function expiry(token) {
  try {
    const part = token.split(".")[1].replace(/-/g, "+").replace(/_/g, "/");
    const exp = JSON.parse(atob(part + "===".slice((part.length + 3) % 4))).exp;
    return typeof exp === "number" ? exp * 1000 : null;
  } catch { return null; }
}

export class XRaptor {
  constructor(url, { reconnect = true, timeout = 10000, token = null, refreshBefore = 30000 } = {}) {
    this.urls = Array.isArray(url) ? url : [url];
    this.url = this.urls[0];
    this.reconnect = reconnect;
    this.timeout = timeout;
    this.token = token;
    this.refreshBefore = refreshBefore;
    this.refreshTimer = null;
    this.ws = null;
    this.pending = new Map();   // request_id -> {resolve, reject, timer}
    this.streams = new Map();   // request_id -> {route, payload, onMessage}
    this.listeners = { state: [] };
    this.state = "closed";
    this.closing = false;
    this.retry = 0;
  }

  on(event, fn) { (this.listeners[event] ||= []).push(fn); return this; }

  emit(event, arg) {
    for (const fn of this.listeners[event] || []) fn(arg);
  }

  setState(state) {
    this.state = state;
    this.emit("state", state);
  }

  // The next refresh of tok, before its exp.
  schedule(tok) {
    clearTimeout(this.refreshTimer);
    const exp = expiry(tok);
    if (exp === null) return;
    const left = exp - Date.now();
    const wait = Math.max(0, Math.min(left - this.refreshBefore, left / 2));
    this.refreshTimer = setTimeout(() => this.refresh(), wait);
  }

  async refresh() {
    try {
      const tok = await this.token();
      await this.request("/xraptor/token", "PUT", { token: tok });
      this.schedule(tok);
      this.emit("token", { refreshed: true });
    } catch (error) {
      // Told no (or the callback failed): the server closes with 4001 at
      // the old token's end, and the reconnect asks for a token again.
      this.emit("token", { error });
    }
  }

  async connect() {
    this.closing = false;
    this.setState("connecting");
    let url = this.url, tok = null;
    if (this.token) {
      tok = await this.token();
      url += (url.includes("?") ? "&" : "?") + "token=" + encodeURIComponent(tok);
    }
    return new Promise((resolve, reject) => {
      const ws = new WebSocket(url);
      this.ws = ws;
      let opened = false;
      ws.onopen = () => {
        opened = true;
        this.retry = 0;
        this.setState("open");
        if (tok) this.schedule(tok);
        // Streams survive a reconnect: subscribe them again, from the
        // last position each one saw when it has one.
        for (const [id, s] of this.streams) {
          this.send(id, s.route, "SUB", s.payload, s.pos ? { ...s.header, since: s.pos } : s.header);
        }
        resolve(this);
      };
      ws.onmessage = (ev) => this.dispatch(ev.data);
      ws.onerror = () => { if (this.state === "connecting") reject(new Error("cannot connect to " + this.url)); };
      ws.onclose = () => {
        clearTimeout(this.refreshTimer);
        for (const [, p] of this.pending) { clearTimeout(p.timer); p.reject(new Error("connection closed")); }
        this.pending.clear();
        this.setState("closed");
        // A node that could not be reached: the next one is tried.
        if (!opened) this.url = this.urls[(this.urls.indexOf(this.url) + 1) % this.urls.length];
        if (this.reconnect && !this.closing) {
          const delay = Math.min(10000, 250 * 2 ** this.retry++);
          setTimeout(() => this.connect().catch(() => {}), delay);
        }
      };
    });
  }

  close() {
    this.closing = true;
    if (this.ws) this.ws.close(1000);
  }

  dispatch(text) {
    let msg;
    try { msg = JSON.parse(text); } catch { return; }
    const stream = this.streams.get(msg.request_id);
    if (stream && msg.method === "SUB" && msg.header && msg.header.event) {
      if (stream.onPresence) stream.onPresence(msg.header.event, parse(msg.payload));
      return;
    }
    if (stream && msg.method === "SUB" && msg.header && "recovered" in msg.header) {
      // The answer to a SUB with since: the position now; what was missed
      // follows. Not recovered: the page may be missing messages.
      const h = msg.header;
      // What comes with a refusal was delivered while it was decided, at
      // positions up to the one it names: none of it may be taken for a
      // duplicate, so the position starts again from the next delivery.
      if (!h.recovered) stream.pos = null;
      this.emit("recovery", { id: msg.request_id, recovered: h.recovered, offset: h.offset, epoch: h.epoch });
      return;
    }
    if (stream && msg.method === "SUB") {
      const h = msg.header || {};
      if (typeof h.offset === "number" && typeof h.epoch === "string") {
        // Never the same message twice, whatever a node sends.
        if (stream.pos && stream.pos.epoch === h.epoch && h.offset <= stream.pos.offset) return;
        stream.pos = { offset: h.offset, epoch: h.epoch };
      }
      stream.onMessage(parse(msg.payload), msg);
      return;
    }
    const p = this.pending.get(msg.request_id);
    if (p) {
      this.pending.delete(msg.request_id);
      clearTimeout(p.timer);
      if (msg.header && msg.header.error) p.reject(Object.assign(new Error(parse(msg.payload).message || "bad request"), { response: msg }));
      else p.resolve(parse(msg.payload));
    }
  }

  send(id, route, method, payload, header = {}) {
    const body = typeof payload === "string" ? payload : JSON.stringify(payload ?? {});
    this.ws.send(JSON.stringify({ request_id: id, payload: body, header, route, method }));
  }

  // The newest messages kept for a room or channel (history on):
  // {offset, epoch, messages: [{offset, payload}]}, oldest first.
  history(channel, limit = 100) {
    return this.request("/xraptor/history", "GET", { channel, limit });
  }

  // Who is in a room now: {users, connections, members: [{user, connections, info}]}.
  presence(room, { stats = false } = {}) {
    return this.request(stats ? "/xraptor/presence_stats" : "/xraptor/presence", "GET", { room });
  }

  // One request, one answer: a Promise of the parsed payload.
  request(route, method, payload, header = {}) {
    const id = newId();
    return new Promise((resolve, reject) => {
      if (!this.ws || this.ws.readyState !== WebSocket.OPEN) { reject(new Error("not connected")); return; }
      const timer = setTimeout(() => { this.pending.delete(id); reject(new Error("timeout")); }, this.timeout);
      this.pending.set(id, { resolve, reject, timer });
      this.send(id, route, method, payload, header);
    });
  }

  // SUB: every message posted to the stream's channel calls onMessage;
  // with onPresence, the join and leave events of its rooms call that.
  async subscribe(route, payload, onMessage, header = {}, { onPresence = null } = {}) {
    const id = newId();
    if (onPresence) header = { ...header, presence: true };
    this.streams.set(id, { route, payload, onMessage, onPresence, header, pos: null });
    this.send(id, route, "SUB", payload, header);
    return {
      id,
      unsubscribe: () => {
        this.streams.delete(id);
        return new Promise((resolve, reject) => {
          const timer = setTimeout(() => { this.pending.delete(id); reject(new Error("timeout")); }, this.timeout);
          this.pending.set(id, { resolve, reject, timer });
          this.send(id, route, "UNSUB", payload, header);
        });
      },
    };
  }
}
