// A websocket that resumes: after every (re)connect it sends the last event id it saw, and the
// server replays what was missed from PostgreSQL before live frames continue, in order.
export function format(template, values) {
  return template.replace(/%\((\w+)\)s/g, (_, key) => (key in values ? String(values[key]) : ""));
}

export function newClientMsgId() {
  const bytes = new Uint8Array(16);
  crypto.getRandomValues(bytes);
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

// Reconnecting: exponential backoff with full jitter (a random wait between 0 and 0.5 s, 1 s,
// 2 s, ... up to 10 s). When a server restarts, every page loses its socket at the same moment;
// without jitter they would all come back in the same instant, again and again, and time out in
// the handshake queue together. config/websocket.py's reconnect_delay is the same rule for the
// Python clients (tests, bench).
export const RECONNECT_BASE_MS = 500;
export const RECONNECT_CAP_MS = 10000;

export function reconnectDelay(attempt, random = Math.random) {
  return random() * Math.min(RECONNECT_CAP_MS, RECONNECT_BASE_MS * 2 ** attempt);
}

// Pages hand the close codes over in their config (declared once, in config/websocket.py). After
// one of them (not signed in, not allowed, no such business) reconnecting cannot help.
//
// `position(frame)` says which resume point a frame moves to (undefined: none). By default a
// durable frame's id, and frames at or below the point are dropped as already seen (the chat:
// one stream). The inbox passes its own: its list resumes from the `last` of list updates, and
// its open conversation from that conversation's own events.
export class ResumingSocket {
  constructor(path, { lastEventId = 0, resume = true, position = null, closeCodes = {}, onFrame, onOpen, onStatus }) {
    this.url = `${location.protocol === "https:" ? "wss" : "ws"}://${location.host}${path}`;
    this.last = lastEventId;
    this.resume = resume;
    this.position = position;
    this.finalCodes = new Set(Object.values(closeCodes));
    this.onFrame = onFrame;
    this.onOpen = onOpen || (() => {});
    this.onStatus = onStatus || (() => {});
    this.attempt = 0; // reconnects since the last socket opened
    this.queue = [];
    this.connect();
    setInterval(() => this.send({ type: "ping" }, { queue: false }), 25000);
  }

  connect() {
    const ws = new WebSocket(this.url);
    this.ws = ws;
    ws.addEventListener("open", () => {
      this.attempt = 0;
      if (this.resume) ws.send(JSON.stringify({ type: "resume", after: this.last }));
      this.onStatus(true);
      const queued = this.queue;
      this.queue = [];
      queued.forEach((frame) => ws.send(JSON.stringify(frame)));
      this.onOpen();
    });
    ws.addEventListener("message", (event) => {
      let frame;
      try { frame = JSON.parse(event.data); } catch { return; }
      if (this.resume && this.position) {
        const at = this.position(frame);
        if (typeof at === "number" && at > this.last) this.last = at;
      } else if (this.resume && typeof frame.id === "number") {
        if (frame.id <= this.last) return; // already seen (the page state or a replay)
        this.last = frame.id;
      }
      if (frame.type === "resync") { location.reload(); return; }
      this.onFrame(frame);
    });
    ws.addEventListener("close", (event) => {
      this.onStatus(false);
      if (this.finalCodes.has(event.code)) return; // not allowed: retrying will not help
      setTimeout(() => this.connect(), reconnectDelay(this.attempt++));
    });
  }

  get open() { return this.ws && this.ws.readyState === WebSocket.OPEN; }

  send(frame, { queue = true } = {}) {
    if (this.open) this.ws.send(JSON.stringify(frame));
    else if (queue) this.queue.push(frame);
  }
}

// A refused send goes again after the server's retry_after (seconds; 3 s if it names none); each
// further refusal of the same message doubles the wait, up to 30 s (never below retry_after), with
// up to a quarter of jitter so clients refused together do not all come back at the same moment.
// Without the doubling, every message waiting through a long overload came back every fraction
// of a second and the retries outnumbered the new sends. config/websocket.py's send_retry_delay
// is the same rule for the Python clients (bench, tests). Returns milliseconds.
export const SEND_RETRY_DEFAULT_S = 3;
export const SEND_RETRY_CAP_S = 30;

export function sendRetryDelay(retryAfter, refusals, random = Math.random) {
  const base = typeof retryAfter === "number" && retryAfter > 0 ? retryAfter : SEND_RETRY_DEFAULT_S;
  const wait = Math.max(base, Math.min(SEND_RETRY_CAP_S, base * 2 ** Math.min(Math.max(refusals, 1) - 1, 30)));
  return wait * (1 + random() * 0.25) * 1000;
}

// A socket's sends, in the order they were written: `pending` (client_msg_id -> message, the
// page's own map, which it renders) keeps that order. A refusal for load or rate (rate_limited,
// overloaded: not final) holds every send not yet accepted until the refused one's wait
// (sendRetryDelay) is over. Then they go again oldest first, with the same client_msg_ids
// (repeating one is harmless), in a window: one on its way at first, one more for each
// accepted (doubling every round trip, as TCP's slow start) — or the hold starts again,
// doubled, if one is refused — until none is left; then sends go at once again.
// Holding the later ones keeps the thread in the order typed (the server also refuses a
// socket's later sends until the refused one is back), and sends nothing a full server would
// refuse anyway: each refusal and each retry is work on a server that has none to spare (sent
// together after a hold, a backlog was refused all but its first few, every time; one at a
// time, a customer with a backlog got one message through per round trip). Any other refusal
// marks the message failed.
export class SendOutbox {
  constructor(pending, transmit, { random = Math.random, setTimer = (fn, ms) => setTimeout(fn, ms) } = {}) {
    this.pending = pending;
    this.transmit = transmit; // (message) => void: put its send frame on the socket now
    this.random = random;
    this.setTimer = setTimer;
    this.held = false; // waiting out a refusal
    this.window = 0; // after a hold: how many sends may be on their way at once (0: no hold to recover from)
    this.onTheirWay = new Set(); // after a hold: the client_msg_ids sent and not yet answered
  }

  // A new message: it goes now, unless earlier ones are held or the window is full (then it waits its turn).
  add(m) {
    this.pending.set(m.client_msg_id, m);
    if (this.held) return;
    if (this.window === 0) this.transmit(m);
    else this.fill();
  }

  // A new socket: a send on its way over the old one will not be answered; what is pending goes again.
  reconnected() {
    if (this.held) return;
    if (this.window !== 0) {
      this.onTheirWay.clear();
      this.fill();
      return;
    }
    this.pending.forEach((m) => { if (!m.failed && !m.accepted) this.transmit(m); });
  }

  // message.accepted, or the send's own message.created when it is its answer: stored, so never
  // sent again; after a hold, the window grows by one.
  accepted(frame) {
    const m = this.pending.get(frame.client_msg_id);
    if (m) m.accepted = true;
    if (this.onTheirWay.delete(frame.client_msg_id)) {
      this.window += 1;
      this.fill();
    }
  }

  // An error frame. Returns "retrying", "failed" (the caller re-renders), "late" (a refused
  // repeat of a message already stored: nothing to show) or "other" (not about a send).
  refused(frame) {
    const retryable = frame.code === "rate_limited" || frame.code === "overloaded";
    const m = frame.client_msg_id ? this.pending.get(frame.client_msg_id) : undefined;
    // After a hold the oldest unanswered send goes again; if it was being stored all along, its
    // acceptance (and its copy: the page drops it from pending) arrives before the repeat's refusal.
    if (!m || m.accepted) return retryable && frame.client_msg_id ? "late" : "other";
    if (retryable) {
      m.refusals = (m.refusals || 0) + 1;
      // A refusal of a send from before the hold (answered late) starts no new one.
      if (!this.held && (this.window === 0 || this.onTheirWay.has(m.client_msg_id))) {
        this.held = true;
        this.window = 1;
        this.onTheirWay.clear();
        this.setTimer(() => { this.held = false; this.fill(); }, sendRetryDelay(frame.retry_after, m.refusals, this.random));
      }
      return "retrying";
    }
    m.failed = frame.message;
    if (this.onTheirWay.delete(m.client_msg_id)) this.fill();
    return "failed";
  }

  // The page dropped a pending message (a takeover it declined): if it was on its way, the next goes.
  dropped(clientMsgId) {
    if (!this.pending.has(clientMsgId) && this.onTheirWay.delete(clientMsgId)) this.fill();
  }

  // After a hold: the oldest sends not yet accepted go, as many as the window lets be on their
  // way; none left: sends go at once again, and a send still counted on its way (the page
  // dropped it from pending when its copy came, before its acceptance) is forgotten — its late
  // acceptance must not open a window and send again what went at once meanwhile.
  fill() {
    let waiting = false;
    for (const m of this.pending.values()) {
      if (m.failed || m.accepted) continue;
      waiting = true;
      if (this.onTheirWay.has(m.client_msg_id)) continue;
      if (this.onTheirWay.size >= this.window) return;
      this.onTheirWay.add(m.client_msg_id);
      this.transmit(m);
    }
    if (!waiting) {
      this.window = 0;
      this.onTheirWay.clear();
    }
  }
}

// Threads are re-rendered whole, so they cannot be live regions: a message that arrives live is
// spoken through a separate, visually hidden one.
export function announce(region, text) {
  region.textContent = "";
  setTimeout(() => { region.textContent = text; }, 50);
}

// A click is a press and a release on the same element. Lists and threads are redrawn on live
// frames (a busy inbox: several a second); a redraw between an agent's press and release
// replaced the pressed element and the browser dropped the click, so the tap did nothing. While
// a pointer is pressed in the container, a redraw waits (`defer`), and runs once the release's
// click was handled. A press held longer than HOLD_MS lets redraws through again (a long press
// or a drag is not a tap).
const HOLD_MS = 3000;
const holds = new WeakMap();

class PressHold {
  constructor(container) {
    this.pressed = false;
    this.waiting = null;
    this.timer = null;
    container.addEventListener("pointerdown", () => {
      this.pressed = true;
      clearTimeout(this.timer);
      this.timer = setTimeout(() => this.release(), HOLD_MS);
    });
    // On the document: the release may happen outside the container.
    for (const type of ["pointerup", "pointercancel"]) document.addEventListener(type, () => this.release(), true);
  }

  // True when `redraw` must wait for the release (the caller returns); the latest one runs then.
  defer(redraw) {
    if (!this.pressed) return false;
    this.waiting = redraw;
    return true;
  }

  release() {
    if (!this.pressed) return;
    this.pressed = false;
    clearTimeout(this.timer);
    // The click follows the release in the same task; the waiting redraw runs in the next one.
    setTimeout(() => {
      if (this.pressed || !this.waiting) return;
      const redraw = this.waiting;
      this.waiting = null;
      redraw();
    }, 0);
  }
}

export function pressHold(container) {
  if (!holds.has(container)) holds.set(container, new PressHold(container));
  return holds.get(container);
}

// Lists and threads are re-rendered whole on every live frame, which would throw away the
// element that has keyboard focus (a conversation in the list, the "load earlier" button, a
// message jumped to from a quote) and leave focus on the page body. Put it back on the element's
// replacement, and keep a jumped-to message highlighted: a read receipt arriving a moment after
// the jump must not wipe the highlight the reader is looking for.
export function replaceKeepingFocus(container, ...nodes) {
  const active = document.activeElement;
  let key = null;
  if (active && active !== container && container.contains(active)) {
    if (active.dataset.conversation) key = `[data-conversation="${CSS.escape(active.dataset.conversation)}"]`;
    else if (active.classList.contains("load-earlier")) key = ".load-earlier";
    else if (active.classList.contains("bubble") && active.id) key = `#${CSS.escape(active.id)}`;
  }
  const jumped = [...container.querySelectorAll(".bubble.jumped[id]")].map((node) => node.id);
  container.replaceChildren(...nodes);
  jumped.forEach((id) => markJumped(container.querySelector(`#${CSS.escape(id)}`)));
  const again = key ? container.querySelector(key) : null;
  if (!again) return;
  if (!again.classList.contains("bubble")) {
    again.focus();
    return;
  }
  // A message keeps focus after its highlight ended too (its new node is made focusable), and
  // the thread is not scrolled to it while new messages arrive below.
  again.setAttribute("tabindex", "-1");
  again.focus({ preventScroll: true });
}

// The highlight on a message jumped to from a quote; jumpTo (rich.js) sets it and clears it on
// whichever node carries the message by then.
export function markJumped(node) {
  if (!node) return;
  node.classList.add("jumped");
  node.setAttribute("tabindex", "-1");
}

// After "load earlier" re-renders the thread, keep keyboard focus in it: on the new button while
// there is more, else on the thread itself.
export function keepFocusAfterLoad(thread) {
  const again = thread.querySelector(".load-earlier");
  (again || thread).focus();
}

// Times follow the page's language (<html lang>), not the browser's: a German page says 16:33.
const PAGE_LOCALE = document.documentElement.lang || undefined;

export function timeLabel(iso) {
  if (!iso) return "";
  const date = new Date(iso);
  const today = new Date();
  const sameDay = date.toDateString() === today.toDateString();
  return sameDay
    ? date.toLocaleTimeString(PAGE_LOCALE, { hour: "2-digit", minute: "2-digit" })
    : date.toLocaleDateString(PAGE_LOCALE, { day: "numeric", month: "short" }) + " " +
      date.toLocaleTimeString(PAGE_LOCALE, { hour: "2-digit", minute: "2-digit" });
}

export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value === null || value === undefined || value === false) continue;
    if (key === "class") node.className = value;
    else if (key === "text") node.textContent = value;
    else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else if (key === "dataset") Object.assign(node.dataset, value);
    else node.setAttribute(key, value === true ? "" : value);
  }
  for (const child of children) if (child !== null && child !== undefined) node.append(child);
  return node;
}

const RANK = { queued: 0, sent: 1, delivered: 2, read: 3, failed: -1 };

export function betterStatus(current, next) {
  if (current === "failed") return current;
  return (RANK[next] ?? 0) > (RANK[current] ?? 0) ? next : current;
}

export function ticks(status, strings) {
  const marks = { queued: "🕓", sending: "🕓", sent: "✓", delivered: "✓✓", read: "✓✓", failed: "!" };
  return el("span", {
    class: `ticks ticks-${status}`,
    dataset: { status },
    role: "img", // so screen readers read the label, not the check marks
    "aria-label": strings[status] || status,
    title: strings[status] || status,
    text: marks[status] || "",
  });
}

// Delivered/read receipts, batched: the highest message id per conversation and kind, sent once
// after `delay` ms however many messages arrived meanwhile (one database write, not one per
// message). A read receipt covers delivery up to the same id.
export class AckBatcher {
  constructor(send, delay = 500) {
    this.sendFrame = send;
    this.delay = delay;
    this.pending = new Map(); // `${conversation}:${read}` -> frame
    this.timer = null;
  }

  add(frame) {
    const key = `${frame.conversation_id ?? ""}:${frame.read ? 1 : 0}`;
    const known = this.pending.get(key);
    if (!known || known.up_to < frame.up_to) this.pending.set(key, frame);
    if (!this.timer) this.timer = setTimeout(() => this.flush(), this.delay);
  }

  flush() {
    this.timer = null;
    const frames = [...this.pending.values()];
    this.pending.clear();
    for (const frame of frames) {
      if (!frame.read) {
        const read = frames.find((f) => f.read && f.conversation_id === frame.conversation_id);
        if (read && read.up_to >= frame.up_to) continue;
      }
      this.sendFrame(frame);
    }
  }
}
