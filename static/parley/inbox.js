// The agents' shared inbox: live list (tabs, status filter, unread), thread with history paged
// backwards, composer, typing both ways, read receipts, presence.
import {
  AckBatcher, ResumingSocket, announce, betterStatus, el, format, keepFocusAfterLoad, newClientMsgId, pressHold, SendOutbox, replaceKeepingFocus,
  ticks, timeLabel,
} from "./realtime.js";
import { ButtonsEditor, RichComposer, applyRichFrame, bodyNodes, choices, editedMark, jumpTo, richParts } from "./rich.js";
import { PagedList } from "./inbox_list.js";
import { activityLine, confirmTakeover, renderTeam, snoozeControl, statusControl } from "./inbox_assignment.js";

const config = JSON.parse(document.getElementById("inbox-config").textContent);
const S = config.strings;
const $ = (id) => document.getElementById(id);
const list = $("conv-list");
const thread = $("thread");
const form = $("composer");
const input = $("composer-body");
const noteBox = $("composer-note");
const typingLine = $("thread-typing");
const windowLine = $("thread-window");
const errorBox = $("thread-error");
const announcer = $("thread-announce");
const tabs = [...document.querySelectorAll("[role=tab]")];

const conversations = new Map(); // id -> payload
const conversationEvent = new Map(); // id -> event id of the state shown (list updates can come twice)
let tab = "all";
let statusFilter = $("inbox-status").value;
let search = "";
let searchTimer = null;
let current = null; // open conversation id
let currentLast = null; // the last event id seen of the open conversation (it resumes from there)
let viewed = null; // resolves when the server confirms the open conversation ("viewing")
let messages = new Map(); // message id -> payload, for the open conversation
const pending = new Map(); // client_msg_id -> payload
let hasMore = false;
let activities = new Map(); // event id -> conversation.activity of the open conversation
let loadingEarlier = false;
let counts = config.counts; // from the server: the list holds only the pages loaded so far
let availability = config.availability;
let presence = { online: [], viewing: {} };
let typingTimer = null;
let lastTypingSent = 0;

config.conversations.forEach((c) => conversations.set(c.id, c));
const paged = new PagedList({
  url: config.urls.conversations,
  countsUrl: config.urls.counts,
  conversations,
  onLoaded: () => renderList(),
  onCounts: (data) => {
    if (data.counts) counts = data.counts;
    if (data.team) { availability = data.team; renderTeam($("inbox-team"), availability, S, config.me.id); }
    renderCounts();
  },
});
paged.query.status = statusFilter;
paged.next = config.next;
if (config.next && config.conversations.length) paged.boundary = config.conversations[config.conversations.length - 1].last_message_at;

function matchesTab(c, which) {
  if (which === "mine") return c.assignee && c.assignee.id === config.me.id;
  if (which === "unassigned") return !c.assignee;
  if (which === "queue") return !c.assignee && c.status === "open" && Boolean(c.queued_at);
  return true;
}

function renderCounts() {
  for (const which of ["mine", "unassigned", "queue", "all"]) {
    const n = counts[which] || 0;
    const node = document.querySelector(`[data-count="${which}"]`);
    node.textContent = n ? String(n) : "";
    node.setAttribute("aria-label", n ? format(S.unread, { count: n }) : "");
  }
  tabs.forEach((b) => {
    b.setAttribute("aria-selected", String(b.dataset.tab === tab));
    b.tabIndex = b.dataset.tab === tab ? 0 : -1; // one tab stop; arrow keys move between tabs
  });
}

function matchesSearch(c) {
  if (!search) return true;
  const needle = search.toLowerCase();
  // Only a number-like search matches phone numbers: "Kundin 0315" is a name, and its digits
  // must not match every phone that contains "0315".
  const digits = /^[\d\s+()\-./]+$/.test(needle) ? needle.replace(/[^\d+]/g, "") : "";
  return c.contact.name.toLowerCase().includes(needle) || (digits !== "" && c.contact.phone.includes(digits));
}

function renderList() {
  if (pressHold(list).defer(renderList)) return;
  const rows = [...conversations.values()]
    .filter((c) => matchesTab(c, tab) && (!statusFilter || c.status === statusFilter) && matchesSearch(c) && paged.loaded(c))
    .sort((a, b) => paged.compare(a, b));
  if (!rows.length) {
    list.replaceChildren(paged.next
      ? el("li", { class: "muted small conv-more", text: S.loadingMore })
      : el("li", { class: "muted small conv-empty", text: S.noConversations }));
  } else {
    replaceKeepingFocus(list, ...rows.map((c) => {
      const viewers = (presence.viewing[String(c.id)] || []).filter((id) => id !== config.me.id);
      const viewerNames = format(S.alsoViewing, { names: viewers.map(nameOf).join(", ") });
      return el("li", {},
        el("button", {
          type: "button",
          class: `conv${c.id === current ? " active" : ""}${c.unread ? " unread" : ""}`,
          "aria-current": c.id === current ? "true" : null,
          dataset: { conversation: c.id },
          onclick: () => openConversation(c.id),
        },
          el("span", { class: "conv-top" },
            el("span", { class: "conv-name", text: c.contact.name }),
            el("time", { class: "conv-time", datetime: c.last_message_at || "", text: timeLabel(c.last_message_at) })),
          el("span", { class: "conv-preview", text: c.preview }),
          el("span", { class: "conv-meta small" },
            el("span", { class: `pill status-${c.status}`, text: S[`status_${c.status}`] }),
            c.assignee ? el("span", { class: "muted", text: c.assignee.name }) : null,
            viewers.length ? el("span", { class: "viewers", title: viewerNames, "aria-label": viewerNames, text: "👁 " + viewers.length }) : null,
            c.unread ? el("span", { class: "unread-count", "aria-label": format(S.unread, { count: c.unread }), text: String(c.unread) }) : null)));
    }), ...(paged.next ? [el("li", { class: "muted small conv-more", text: S.loadingMore })] : []));
  }
  // Infinite scroll: the next page loads when this row comes into view.
  paged.watch(list.querySelector(".conv-more"), list);
  renderCounts();
  document.dispatchEvent(new CustomEvent("parley:list-rendered", { detail: { list } }));
}

function nameOf(id) {
  return (presence.online.find((p) => p.id === id) || { name: "?" }).name;
}

// Both lines are live regions and presence frames come whenever any agent switches
// conversations: write only what changed, so screen readers hear news, not repeats.
function setLive(node, text) {
  if (node.textContent !== text) node.textContent = text;
}

function renderPresence() {
  const names = presence.online.map((p) => (p.id === config.me.id ? S.you : p.name));
  setLive($("inbox-online"), names.length ? `${S.online}: ${names.join(", ")}` : "");
  if (current !== null) {
    const others = (presence.viewing[String(current)] || [])
      .filter((id) => id !== config.me.id)
      .map(nameOf);
    setLive($("thread-viewers"), others.length ? format(S.alsoViewing, { names: others.join(", ") }) : "");
  }
}

function renderHeader() {
  const c = conversations.get(current);
  if (!c) return;
  $("thread-h").textContent = c.contact.name;
  $("thread-actions").hidden = false;
  const claim = $("btn-claim");
  const mineNow = c.assignee && c.assignee.id === config.me.id;
  claim.textContent = mineNow ? S.unassign : S.claim;
  claim.onclick = () => socket.send({ type: "assign", conversation_id: c.id, assignee_id: mineNow ? null : "me" });
  const select = $("assign-select");
  select.replaceChildren(
    el("option", { value: "", text: S.unassignedLabel }),
    ...config.team.map((m) => el("option", { value: m.id, text: m.name, selected: c.assignee && c.assignee.id === m.id })),
  );
  select.onchange = () => {
    // A transfer may carry a note for the new assignee (kept as an internal note).
    const note = $("assign-note");
    socket.send({ type: "assign", conversation_id: c.id, assignee_id: select.value || null, note: note.value });
    note.value = "";
  };
  snoozeControl($("snooze-select"), S, (frame) => socket.send(frame), c.id);
  const held = c.assignee && c.assignee.id !== config.me.id;
  $("thread-held").hidden = !held;
  $("thread-held").textContent = held ? format(S.heldBy, { name: c.assignee.name }) : "";
  const resolve = $("btn-resolve");
  resolve.textContent = c.status === "resolved" ? S.reopen : S.resolve;
  resolve.onclick = () => socket.send({ type: "status", conversation_id: c.id, status: c.status === "resolved" ? "open" : "resolved" });
  const open = c.window_expires_at && new Date(c.window_expires_at) > new Date();
  windowLine.hidden = false;
  windowLine.className = `small ${open ? "muted" : "alert warning"}`;
  windowLine.textContent = open ? format(S.windowOpen, { time: timeLabel(c.window_expires_at) }) : S.windowClosed;
  document.dispatchEvent(new CustomEvent("parley:conversation", { detail: { id: c.id, windowOpen: Boolean(open) } }));
  // replaceChildren, unlike el(), would write a null child as the text "null": leave it out.
  $("details").replaceChildren(...[
    el("p", {}, el("strong", { text: c.contact.name })),
    el("p", { class: "small" }, `${S.phone}: `, el("span", { text: c.contact.phone_display || c.contact.phone })),
    el("p", { class: "small muted", text: c.assignee ? format(S.assignedTo, { name: c.assignee.name }) : S.unassignedLabel }),
    c.contact.notes ? el("p", { class: "small contact-notes", text: c.contact.notes }) : null,
  ].filter(Boolean));
  document.dispatchEvent(new CustomEvent("parley:conversation-shown", { detail: c }));
}

// Who wrote a message, as the inbox names them. The away message (author_kind "system") and API
// sends have no author's name, and no agent wrote them: they are not "You".
function authorLabel(m) {
  if (m.author_name) return m.author_name;
  if (m.author_kind === "system") return S.automaticReply;
  if (m.author_kind === "api") return S.api;
  return m.direction === "in" || m.author_kind === "customer" ? S.customer : S.you;
}

function renderMessage(m, chosen) {
  const outgoing = m.direction !== "in";
  const status = m.id ? m.status : m.failed ? "failed" : "sending";
  const rich = richParts(m, {
    S, me: `user:${config.me.id}`, nameOf: authorLabel, mine: m.author_id === config.me.id, canChoose: false, chosen: chosen.get(m.id),
    onReply: (x) => composer.setReply(x, authorLabel(x)),
    onReact: (x, emoji) => socket.send({ type: "react", message_id: x.id, emoji }, { queue: false }),
    onEdit: (x) => composer.setEdit(x),
    onDelete: (x) => socket.send({ type: "delete", message_id: x.id }, { queue: false }),
    onChoose: () => {},
    onJump: (id) => jumpTo(thread, id),
    rerender: renderThread,
  });
  const node = el("div", {
    class: `bubble ${outgoing ? "mine" : "theirs"}${m.kind === "note" ? " note" : ""}${m.kind === "template" ? " template" : ""}`,
    id: m.id ? `m${m.id}` : `p${m.client_msg_id}`,
    dataset: { id: m.id || "" },
  },
    m.kind === "note" ? el("p", { class: "bubble-kind small", text: S.note }) : null,
    rich.quote,
    ...rich.media,
    ...bodyNodes(m, S),
    rich.interactive,
    el("p", { class: "bubble-meta" },
      el("span", { class: "bubble-author", dataset: { authorKind: m.author_kind || "" }, text: authorLabel(m) }), " · ",
      el("time", { datetime: m.created_at || "", text: timeLabel(m.created_at || new Date().toISOString()) }),
      editedMark(m, S),
      outgoing && m.kind !== "note" ? " " : null,
      outgoing && m.kind !== "note" ? ticks(status, S) : null),
    ...rich.footer);
  if (m.failed) node.append(el("p", { class: "bubble-error small", text: m.failed }));
  return node;
}

function renderThread() {
  if (pressHold(thread).defer(renderThread)) return;
  const nodes = [];
  if (hasMore) nodes.push(el("button", { type: "button", class: "linklike load-earlier", text: S.loadEarlier, onclick: loadEarlier }));
  const chosen = choices(messages);
  // Messages and what happened to the conversation, in stream order.
  const items = [...messages.values()].map((m) => [m.event_id || 0, m.id, renderMessage(m, chosen)]);
  activities.forEach((a) => items.push([a.id, 0, activityLine(a, S)]));
  items.sort((a, b) => a[0] - b[0] || a[1] - b[1]).forEach(([, , node]) => nodes.push(node));
  pending.forEach((m) => { if (m.conversation_id === current) nodes.push(renderMessage(m, chosen)); });
  const atBottom = thread.scrollHeight - thread.scrollTop - thread.clientHeight < 80;
  replaceKeepingFocus(thread, ...nodes);
  if (atBottom) thread.scrollTop = thread.scrollHeight;
}

function upsertMessage(m) {
  const known = messages.get(m.id);
  if (known) m.status = betterStatus(known.status, m.status);
  messages.set(m.id, m);
  if (m.client_msg_id) pending.delete(m.client_msg_id);
}

async function fetchPage(id, before) {
  const url = config.urls.messages.replace("{id}", id) + (before ? `?before=${before}` : "");
  const response = await fetch(url, { credentials: "same-origin" });
  if (!response.ok) return null;
  return response.json();
}

async function loadEarlier() {
  if (loadingEarlier || !messages.size) return;
  loadingEarlier = true;
  // Scrolling up loads too: keep focus in the thread only when it was there (the button was
  // pressed), never take it from the composer while the agent is typing.
  const focusWasInThread = thread.contains(document.activeElement);
  const page = await fetchPage(current, Math.min(...messages.keys())).finally(() => { loadingEarlier = false; });
  if (!page) return;
  page.messages.forEach(upsertMessage);
  (page.activity || []).forEach((a) => activities.set(a.id, a));
  hasMore = page.has_more;
  const height = thread.scrollHeight;
  renderThread();
  thread.scrollTop = thread.scrollHeight - height;
  if (focusWasInThread) keepFocusAfterLoad(thread);
}

function markRead() {
  if (current === null || document.visibilityState !== "visible") return;
  const inbound = [...messages.values()].filter((m) => m.direction === "in");
  if (!inbound.length) return;
  const c = conversations.get(current);
  if (c && !c.unread && inbound.every((m) => m.status === "read")) return;
  acks.add({ type: "ack", conversation_id: current, up_to: Math.max(...inbound.map((m) => m.id)), read: true });
}

// The server answers "view" with "viewing" once the conversation's live events flow to this
// socket; a page read after that misses nothing (and what arrives twice is merged by id).
// After a reconnect it names the last event seen of the conversation, and the server replays
// what was missed (or answers `reload` when that is too far back).
function view(id, after = null) {
  return new Promise((resolve) => {
    if (!viewed || viewed.id !== id) viewed = { id, waiters: [] };
    viewed.waiters.push({ resolve, resuming: after !== null });
    socket.send(after === null ? { type: "view", conversation_id: id } : { type: "view", conversation_id: id, after });
  });
}

function applyConversation(event) {
  const c = event.conversation;
  if ((conversationEvent.get(c.id) || 0) > event.id) return false; // an older state
  conversationEvent.set(c.id, event.id);
  conversations.set(c.id, c);
  return true;
}

// On a phone the inbox shows one pane at a time (messaging.css); on wider screens all three.
function showPane(name, focus) {
  $("inbox").dataset.pane = name;
  if (focus) focus.focus();
}
$("pane-back").addEventListener("click", () => showPane("list", list.querySelector(".conv.active") || list));
$("pane-details").addEventListener("click", () => showPane("details", $("details-h")));
$("pane-details-back").addEventListener("click", () => showPane("thread", $("pane-details")));

async function openConversation(id) {
  current = id;
  showPane("thread");
  messages = new Map();
  activities = new Map();
  hasMore = false;
  errorBox.hidden = true;
  typingLine.textContent = "";
  form.hidden = false;
  composer.clear(); // a file or quote belongs to the conversation it was chosen in
  history.replaceState(null, "", `#c${id}`);
  renderList();
  renderHeader();
  thread.replaceChildren(el("p", { class: "muted", text: "…" }));
  currentLast = null;
  await view(id);
  if (current !== id) return;
  const page = await fetchPage(id);
  if (current !== id || !page) return;
  if (!conversations.has(id)) { conversations.set(id, page.conversation); renderList(); renderHeader(); }
  page.messages.forEach(upsertMessage);
  (page.activity || []).forEach((a) => activities.set(a.id, a));
  hasMore = page.has_more;
  renderThread();
  thread.scrollTop = thread.scrollHeight;
  renderPresence();
  markRead();
  input.focus();
}

async function refreshList() {
  await paged.reset({ tab, status: statusFilter, q: search, sort: $("inbox-sort").value });
}

function onFrame(frame) {
  // Other modules (collab.js: mentions, labels) follow the socket's frames.
  document.dispatchEvent(new CustomEvent("parley:inbox-frame", { detail: frame }));
  switch (frame.type) {
    case "conversations.updated": {
      // The list: the latest state of each conversation that changed (a few of these a second).
      const changed = frame.events.filter(applyConversation).map((e) => e.conversation.id);
      if (!changed.length) break;
      paged.countsChanged();
      renderList();
      if (changed.includes(current)) renderHeader();
      break;
    }
    case "viewing":
      if (viewed && viewed.id === frame.conversation_id) {
        const waiter = viewed.waiters.shift();
        if (!viewed.waiters.length) viewed = null;
        currentLast = Math.max(currentLast || 0, frame.last);
        if (waiter) {
          waiter.resolve();
          // A resume from too far back: read the thread's page again.
          if (waiter.resuming && frame.reload) openConversation(frame.conversation_id);
        }
      }
      break;
    case "conversation.updated":
      if (frame.conversation.id === current && typeof frame.id === "number") currentLast = Math.max(currentLast || 0, frame.id);
      if (!applyConversation(frame)) break;
      renderList();
      if (frame.conversation.id === current) renderHeader();
      break;
    case "message.created": {
      const m = frame.message;
      // A reply of this page into the open conversation is answered with its own message when
      // nothing comes between (otherwise message.accepted, and the message follows).
      if (m.client_msg_id && pending.has(m.client_msg_id)) outbox.accepted(m);
      if (m.conversation_id === current) currentLast = Math.max(currentLast || 0, frame.id);
      if (m.conversation_id === current) {
        // Someone else's new message (not a replay, not this agent's own send) is spoken.
        if (!messages.has(m.id) && !pending.has(m.client_msg_id)) {
          announce(announcer, format(S.newMessage, { name: m.author_name || S.customer, body: m.body }));
        }
        upsertMessage(m);
        renderThread();
        if (m.direction === "in") { typingLine.textContent = ""; markRead(); }
      } else if (m.direction === "in") {
        // Reached the assignee's screen: the customer sees "delivered" (batched with the others).
        acks.add({ type: "ack", conversation_id: m.conversation_id, up_to: m.id, read: false });
      }
      break;
    }
    case "message.accepted":
      outbox.accepted(frame); // stored: not sent again (its message.created may still be on its way)
      break;
    case "message.status":
      if (frame.conversation_id === current) currentLast = Math.max(currentLast || 0, frame.id);
      if (frame.conversation_id === current) {
        messages.forEach((m) => {
          if (m.direction === frame.direction && m.id <= frame.up_to) m.status = betterStatus(m.status, frame.status);
        });
        renderThread();
      }
      break;
    case "message.edited":
    case "message.deleted":
    case "reaction.set":
      if (frame.conversation_id === current) {
        currentLast = Math.max(currentLast || 0, frame.id);
        if (applyRichFrame(frame, messages)) renderThread();
      }
      break;
    case "conversation.activity":
      if (frame.conversation_id === current) {
        currentLast = Math.max(currentLast || 0, frame.id);
        activities.set(frame.id, frame);
        renderThread();
      }
      break;
    case "agent.status":
      if (frame.user_id === config.me.id) setMyStatus(frame.status);
      // Show the change at once; the counts refresh (debounced) brings the team's loads.
      availability = availability.map((m) => (m.id === frame.user_id ? { ...m, status: frame.status } : m));
      renderTeam($("inbox-team"), availability, S, config.me.id);
      paged.countsChanged();
      break;
    case "presence":
      presence = frame;
      renderPresence();
      renderList();
      break;
    case "typing":
      if (frame.conversation_id === current) {
        typingLine.textContent = frame.who === "customer" ? S.customerTyping : format(S.typing, { name: frame.name });
        clearTimeout(typingTimer);
        typingTimer = setTimeout(() => { typingLine.textContent = ""; }, 4000);
      }
      break;
    case "error": {
      if (confirmTakeover(frame, pending, (m) => socket.send(sendFrame(m), { queue: false }))) {
        outbox.dropped(frame.client_msg_id);
        break;
      }
      const outcome = outbox.refused(frame);
      if (outcome === "retrying" || outcome === "late") break;
      errorBox.textContent = frame.message;
      errorBox.hidden = false;
      if (outcome === "failed") renderThread();
      break;
    }
  }
}

function sendFrame(m) {
  return { type: "send", conversation_id: m.conversation_id, body: m.body, kind: m.kind, client_msg_id: m.client_msg_id, takeover: Boolean(m.takeover), ...m.extras };
}

const acks = new AckBatcher((frame) => socket.send(frame, { queue: false }));
// Sends in the order written; a refused one holds the later ones back (realtime.js).
const outbox = new SendOutbox(pending, (m) => socket.send(sendFrame(m), { queue: false }));

const socket = new ResumingSocket(config.urls.socket, {
  lastEventId: config.last_event_id,
  // The list resumes from the id its updates are complete up to (see messaging/README.md).
  position: (frame) => (frame.type === "conversations.updated" || frame.type === "resumed" ? frame.last : undefined),
  closeCodes: config.close_codes,
  onFrame,
  onOpen: () => {
    // The open conversation resumes from its own last event: what was missed is replayed.
    if (current !== null) view(current, currentLast);
    outbox.reconnected();
  },
  onStatus: (up) => { $("conn-status").hidden = up; $("conn-status").textContent = up ? "" : S.reconnecting; },
});

const composer = new RichComposer({
  form, input, uploadUrl: config.urls.upload, strings: S, fields: () => ({ conversation_id: current }), dropTarget: thread.parentElement,
});
const buttons = new ButtonsEditor({ form, strings: S });

form.addEventListener("submit", (event) => {
  event.preventDefault();
  const body = input.value.trim();
  if (current === null) return;
  if (composer.editing) {
    if (body) socket.send({ type: "edit", message_id: composer.editing.id, body }, { queue: false });
    input.value = "";
    composer.clear();
    return;
  }
  const extras = composer.extras();
  if (composer.uploading || (!body && !extras.attachment_id)) return;
  errorBox.hidden = true;
  const kind = noteBox.checked ? "note" : "text";
  const interactive = kind === "text" ? buttons.value() : undefined;
  if (interactive) extras.interactive = interactive;
  const m = { client_msg_id: newClientMsgId(), conversation_id: current, body, kind, direction: kind === "note" ? "internal" : "out", author_name: config.me.name, author_id: config.me.id, created_at: new Date().toISOString(), extras, ...composer.preview() };
  if (interactive) m.interactive = interactive;
  input.value = "";
  // A note is one message: the next one goes to the customer again unless ticked anew.
  noteBox.checked = false;
  composer.clear();
  buttons.clear();
  outbox.add(m);
  renderThread();
  thread.scrollTop = thread.scrollHeight;
});
input.addEventListener("keydown", (event) => {
  if (event.key === "Enter" && !event.shiftKey) { event.preventDefault(); form.requestSubmit(); }
});
input.addEventListener("input", () => {
  const now = Date.now();
  if (current !== null && !noteBox.checked && now - lastTypingSent > 2500) {
    lastTypingSent = now;
    socket.send({ type: "typing", conversation_id: current }, { queue: false });
  }
});
function selectTab(button) {
  tab = button.dataset.tab;
  renderList();
  refreshList();
}
tabs.forEach((button, index) => {
  button.addEventListener("click", () => selectTab(button));
  button.addEventListener("keydown", (event) => {
    const next = { ArrowRight: index + 1, ArrowLeft: index - 1, Home: 0, End: tabs.length - 1 }[event.key];
    if (next === undefined) return;
    event.preventDefault();
    const target = tabs[(next + tabs.length) % tabs.length];
    target.focus();
    selectTab(target);
  });
});
$("inbox-search").addEventListener("input", (event) => {
  search = event.target.value.trim();
  renderList();
  clearTimeout(searchTimer);
  searchTimer = setTimeout(refreshList, 300);
});
$("inbox-status").addEventListener("change", (event) => { statusFilter = event.target.value; renderList(); refreshList(); });
$("inbox-sort").addEventListener("change", () => { renderList(); refreshList(); });
// History loads backwards in pages as the agent scrolls up.
thread.addEventListener("scroll", () => { if (hasMore && thread.scrollTop < 60) loadEarlier(); });
const setMyStatus = statusControl($("my-status"), { status: config.me.status, send: (frame) => socket.send(frame) });
renderTeam($("inbox-team"), availability, S, config.me.id);
document.addEventListener("visibilitychange", markRead);

// Other modules open a conversation (a notification, a search result).
document.addEventListener("parley:open-conversation", (event) => openConversation(event.detail.id));

renderList();
// A linked conversation opens once every module of the page has run (a page's module scripts
// all run before DOMContentLoaded): collab.js, after this one, draws its parts of the thread
// (macros, labels, SLA) on parley:conversation-shown, and missed it when the thread opened
// before it listened (the bar then appeared with the next update, pushing the thread down
// under the agent's pointer).
const hash = /^#c(\d+)$/.exec(location.hash);
if (hash) document.addEventListener("DOMContentLoaded", () => openConversation(Number(hash[1])), { once: true });
