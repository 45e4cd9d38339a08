// The customer's chat page: history, composer, delivery ticks, typing indicator.
import {
  AckBatcher, ResumingSocket, announce, betterStatus, el, format, keepFocusAfterLoad, newClientMsgId, pressHold, SendOutbox, replaceKeepingFocus,
  ticks, timeLabel,
} from "./realtime.js";
import { RichComposer, applyRichFrame, bodyNodes, choices, editedMark, jumpTo, richParts } from "./rich.js";
import { QueueLine } from "./chat_queue.js";

const config = JSON.parse(document.getElementById("chat-config").textContent);
const S = config.strings;
const thread = document.getElementById("thread");
const form = document.getElementById("composer");
const input = document.getElementById("composer-body");
const errorBox = document.getElementById("chat-error");
const typingLine = document.getElementById("chat-typing");
const verifiedLine = document.getElementById("chat-verified");
const connStatus = document.getElementById("conn-status");
const announcer = document.getElementById("thread-announce");
const queueLine = new QueueLine(document.getElementById("chat-queue"), config);

const messages = new Map(); // message id -> payload
const pending = new Map(); // client_msg_id -> payload (not yet accepted)
let hasMore = config.has_more;
let typingTimer = null;
let lastTypingSent = 0;

function authorOf(m) {
  return m.direction === "in" ? S.you : m.author_name || config.business_name;
}

function renderMessage(m, chosen) {
  const mine = m.direction === "in";
  const key = m.id ? `m${m.id}` : `p${m.client_msg_id}`;
  const status = m.id ? m.status : m.failed ? "failed" : "sending";
  const rich = richParts(m, {
    S, me: config.me, selfKind: "customer", fallbackName: config.business_name, mine, canChoose: !config.blocked && !mine && !chosen.has(m.id), chosen: chosen.get(m.id),
    onReply: (x) => composer.setReply(x, authorOf(x)),
    onReact: (x, emoji) => socket.send({ type: "react", message_id: x.id, emoji }, { queue: false }),
    onEdit: (x) => composer.setEdit(x),
    onDelete: (x) => socket.send({ type: "delete", message_id: x.id }, { queue: false }),
    onChoose: (x, option) => sendMessage(option.title, { choice: { message_id: x.id, option_id: option.id } }),
    onJump: (id) => jumpTo(thread, id),
    rerender: render,
  });
  const node = el(
    "div",
    { class: `bubble ${mine ? "mine" : "theirs"}${m.kind === "template" ? " template" : ""}`, id: key, dataset: { id: m.id || "" } },
    rich.quote,
    ...rich.media,
    ...bodyNodes(m, S),
    rich.interactive,
    el(
      "p",
      { class: "bubble-meta" },
      el("span", { text: authorOf(m) }),
      " · ",
      el("time", { datetime: m.created_at || "", text: timeLabel(m.created_at || new Date().toISOString()) }),
      editedMark(m, S),
      mine ? " " : null,
      mine ? ticks(status, S) : null,
    ),
    ...rich.footer,
  );
  if (m.failed) node.append(el("p", { class: "bubble-error small", text: m.failed }));
  return node;
}

function render() {
  if (pressHold(thread).defer(render)) return;
  const ordered = [...messages.values()].sort((a, b) => a.id - b.id);
  const nodes = [];
  if (hasMore) nodes.push(el("button", { type: "button", class: "linklike load-earlier", text: S.loadEarlier, onclick: loadEarlier }));
  if (!ordered.length && !pending.size) nodes.push(el("p", { class: "muted thread-empty", text: S.empty }));
  const chosen = choices(messages);
  ordered.forEach((m) => nodes.push(renderMessage(m, chosen)));
  pending.forEach((m) => nodes.push(renderMessage(m, chosen)));
  const atBottom = thread.scrollHeight - thread.scrollTop - thread.clientHeight < 80;
  replaceKeepingFocus(thread, ...nodes);
  if (atBottom) thread.scrollTop = thread.scrollHeight;
}

function upsert(m) {
  const known = messages.get(m.id);
  if (known) m.status = betterStatus(known.status, m.status);
  messages.set(m.id, m);
  if (m.client_msg_id) pending.delete(m.client_msg_id);
}

async function loadEarlier() {
  const first = Math.min(...messages.keys());
  const response = await fetch(`${config.urls.messages}?before=${first}`, { credentials: "same-origin" });
  if (!response.ok) return;
  const page = await response.json();
  page.messages.forEach(upsert);
  hasMore = page.has_more;
  const height = thread.scrollHeight;
  render();
  thread.scrollTop = thread.scrollHeight - height;
  keepFocusAfterLoad(thread);
}

function acknowledge() {
  const theirs = [...messages.values()].filter((m) => m.direction === "out");
  if (!theirs.length) return;
  const upTo = Math.max(...theirs.map((m) => m.id));
  const read = document.visibilityState === "visible";
  const open = theirs.some((m) => m.status !== "read" && (read || m.status !== "delivered"));
  if (open) acks.add({ type: "ack", up_to: upTo, read });
}

function showTyping(text) {
  typingLine.textContent = text;
  verifiedLine.hidden = Boolean(text);
}

function onFrame(frame) {
  switch (frame.type) {
    case "message.created":
      // A send of this page is answered with its own message when nothing comes between
      // (otherwise with message.accepted, and the message follows): stored, never sent again.
      if (frame.message.client_msg_id && pending.has(frame.message.client_msg_id)) {
        outbox.accepted(frame.message);
        queueLine.refresh();
      }
      if (frame.message.direction === "out" && !messages.has(frame.message.id)) {
        const m = frame.message;
        announce(announcer, format(S.newMessage, { name: m.author_name || config.business_name, body: m.body }));
      }
      upsert(frame.message);
      render();
      if (frame.message.direction === "out") {
        showTyping("");
        acknowledge();
      }
      break;
    case "message.status":
      messages.forEach((m) => {
        if (m.direction === frame.direction && m.id <= frame.up_to) m.status = betterStatus(m.status, frame.status);
      });
      render();
      break;
    case "message.accepted": {
      outbox.accepted(frame);
      queueLine.refresh();
      break;
    }
    case "message.edited":
    case "message.deleted":
    case "reaction.set":
      if (applyRichFrame(frame, messages)) render();
    case "queue":
      queueLine.update(frame);
      if (frame.resolved) document.dispatchEvent(new CustomEvent("parley:resolved")); // csat.js
      break;
    case "typing":
      if (frame.who === "agent") {
        showTyping(format(S.typing, { name: frame.name || config.business_name }));
        clearTimeout(typingTimer);
        typingTimer = setTimeout(() => showTyping(""), 4000);
      }
      break;
    case "error": {
      const outcome = outbox.refused(frame);
      if (outcome === "retrying" || outcome === "late") break;
      errorBox.textContent = frame.message;
      errorBox.hidden = false;
      if (outcome === "failed") render();
      break;
    }
  }
}

function sendFrame(m) {
  return { type: "send", body: m.body, client_msg_id: m.client_msg_id, ...m.extras };
}

const acks = new AckBatcher((frame) => socket.send(frame, { queue: false }));
// Sends in the order written; a refused one holds the later ones back (realtime.js).
const outbox = new SendOutbox(pending, (m) => socket.send(sendFrame(m), { queue: false }));

const socket = new ResumingSocket(config.urls.socket, {
  lastEventId: config.last_event_id,
  closeCodes: config.close_codes,
  onFrame,
  onOpen: () => {
    // Sends that were not confirmed are sent again; the same client_msg_id makes it harmless.
    outbox.reconnected();
    acknowledge();
  },
  onStatus: (up) => { connStatus.hidden = up; connStatus.textContent = up ? "" : S.reconnecting; },
});

function sendMessage(body, extras = {}, shown = {}) {
  errorBox.hidden = true;
  const m = { client_msg_id: newClientMsgId(), body, direction: "in", created_at: new Date().toISOString(), extras, ...shown };
  outbox.add(m);
  render();
  thread.scrollTop = thread.scrollHeight;
}

const composer = new RichComposer({ form, input, uploadUrl: config.urls.upload, strings: S, dropTarget: form.parentElement });

form.addEventListener("submit", (event) => {
  event.preventDefault();
  const body = input.value.trim();
  if (composer.editing) {
    if (body) socket.send({ type: "edit", message_id: composer.editing.id, body }, { queue: false });
    input.value = "";
    composer.clear();
    return;
  }
  const extras = composer.extras();
  if (composer.uploading || (!body && !extras.attachment_id)) return;
  sendMessage(body, extras, composer.preview());
  input.value = "";
  composer.clear();
});

input.addEventListener("keydown", (event) => {
  if (event.key === "Enter" && !event.shiftKey) { event.preventDefault(); form.requestSubmit(); }
});
input.addEventListener("input", () => {
  const now = Date.now();
  if (now - lastTypingSent > 2500) { lastTypingSent = now; socket.send({ type: "typing" }, { queue: false }); }
});
document.addEventListener("visibilitychange", acknowledge);

config.messages.forEach(upsert);
render();
thread.scrollTop = thread.scrollHeight;
