// Collaboration in the shared inbox (issue 12): @mention notifications (live), labels on
// conversations (list chips, a picker in the details pane), SLA warnings, macros, canned replies
// expanded by typing /shortcut in the composer, @mention suggestions, and full-text search with
// filters. It talks to inbox.js only through DOM events: parley:inbox-frame,
// parley:list-rendered, parley:conversation-shown (in) and parley:open-conversation (out).
import { announce, el, format, timeLabel } from "./realtime.js";

const config = JSON.parse(document.getElementById("collab-config").textContent);
const inboxConfig = JSON.parse(document.getElementById("inbox-config").textContent);
const S = config.strings;
const $ = (id) => document.getElementById(id);
const csrf = document.cookie.split("; ").find((c) => c.startsWith("csrftoken="))?.split("=")[1] || "";

let setup = { labels: [], canned_replies: [], macros: [], people: [], notifications: [], unread: 0 };
const labelsOf = new Map(); // conversation id -> [label]
const slaOf = new Map(); // conversation id -> state | null
let current = null; // the open conversation's payload

async function api(url, body) {
  const options = { credentials: "same-origin", headers: {} };
  if (body !== undefined) {
    options.method = "POST";
    options.headers = { "Content-Type": "application/json", "X-CSRFToken": csrf };
    options.body = JSON.stringify(body);
  }
  const response = await fetch(url, options);
  const data = await response.json().catch(() => ({}));
  if (!response.ok) throw new Error((data.error && data.error.message) || S.error);
  return data;
}

const chip = (label) => el("span", { class: `label-chip label-${label.colour}`, text: label.name });

// --- notifications ---------------------------------------------------------------------------

function renderBell() {
  const count = $("bell-count");
  count.hidden = !setup.unread;
  count.textContent = setup.unread ? String(setup.unread) : "";
  const pop = $("bell-pop");
  const items = setup.notifications.map((n) => el("li", {},
    el("button", { type: "button", class: `item${n.read ? "" : " unread"}`, onclick: () => openNotification(n) },
      el("span", { text: format(S.mentioned, { actor: n.actor_name, contact: n.contact_name }) }),
      el("span", { class: "small muted", text: ` · ${timeLabel(n.created_at)}` }),
      el("span", { class: "small conv-match", text: n.excerpt }))));
  pop.replaceChildren(
    el("h2", { class: "small", text: S.notifications }),
    items.length ? el("ul", {}, ...items) : el("p", { class: "small muted", text: S.noNotifications }),
    setup.unread ? el("button", { type: "button", class: "linklike small", text: S.markAllRead, onclick: markAllRead }) : "",
  );
}

async function openNotification(n) {
  togglePop(false);
  document.dispatchEvent(new CustomEvent("parley:open-conversation", { detail: { id: n.conversation_id } }));
  if (!n.read) {
    const data = await api(config.urls.notifications, { ids: [n.id] }).catch(() => null);
    n.read = true;
    if (data) setup.unread = data.unread;
    renderBell();
  }
}

async function markAllRead() {
  const data = await api(config.urls.notifications, { all: true }).catch(() => null);
  if (!data) return;
  setup.notifications.forEach((n) => { n.read = true; });
  setup.unread = data.unread;
  renderBell();
}

function togglePop(open) {
  $("bell-pop").hidden = !open;
  $("bell").setAttribute("aria-expanded", String(open));
}
$("bell").addEventListener("click", () => togglePop($("bell-pop").hidden));
document.addEventListener("keydown", (event) => { if (event.key === "Escape" && !$("bell-pop").hidden) { togglePop(false); $("bell").focus(); } });

// --- labels and SLA in the list ----------------------------------------------------------------

function slaText(state) {
  const time = timeLabel(state.due_at);
  if (state.kind === "first_response") return format(state.breached ? S.firstResponseLate : S.firstResponseDue, { time });
  return format(state.breached ? S.resolutionLate : S.resolutionDue, { time });
}

function decorate(root) {
  root.querySelectorAll("button.conv[data-conversation]").forEach((button) => {
    const id = Number(button.dataset.conversation);
    const labels = labelsOf.get(id) || [];
    const sla = slaOf.get(id);
    const old = button.querySelector(".collab-deco");
    const deco = labels.length || (sla && sla.breached)
      ? el("span", { class: "label-row collab-deco" },
        sla && sla.breached ? el("span", { class: "sla-badge breached", title: slaText(sla), text: `⏱ ${S.slaLate}` }) : null,
        ...labels.map(chip))
      : null;
    // Unchanged, the drawn one stays: a tap on it must not lose its element (realtime.js pressHold).
    if (old && deco && old.isEqualNode(deco)) return;
    old?.remove();
    if (deco) button.append(deco);
  });
}

let fetchTimer = null;
const wanted = new Set();
function fetchFor(ids) {
  ids.forEach((id) => wanted.add(id));
  clearTimeout(fetchTimer);
  fetchTimer = setTimeout(async () => {
    const batch = [...wanted].slice(0, 200);
    wanted.clear();
    if (!batch.length) return;
    const query = `?conversations=${batch.join(",")}`;
    const [labels, sla] = await Promise.all([
      api(config.urls.labels + query).catch(() => null),
      api(config.urls.sla + query).catch(() => null),
    ]);
    if (labels) batch.forEach((id) => labelsOf.set(id, labels.labels[String(id)] || []));
    if (sla) {
      batch.forEach((id) => slaOf.set(id, sla.states[String(id)] || null));
      renderBanner(sla.breached);
    }
    decorate(document);
    if (current) renderThreadParts(current);
  }, 150);
}

function visibleIds(root) {
  return [...root.querySelectorAll("button.conv[data-conversation]")].map((b) => Number(b.dataset.conversation));
}

document.addEventListener("parley:list-rendered", (event) => {
  const list = event.detail.list;
  const missing = visibleIds(list).filter((id) => !labelsOf.has(id));
  if (missing.length) fetchFor(missing);
  decorate(list);
});

function renderBanner(count) {
  const banner = $("sla-banner");
  banner.hidden = !count;
  banner.textContent = count === 1 ? S.breachedOne : format(S.breached, { n: count });
}

// --- the open conversation: SLA line, macros, label picker ----------------------------------------

function renderThreadParts(c) {
  $("collab-thread").hidden = false;
  const sla = slaOf.get(c.id);
  const line = $("sla-line");
  line.hidden = !sla;
  if (sla) line.replaceChildren(el("span", { class: `sla-badge${sla.breached ? " breached" : ""}`, text: slaText(sla) }));
  $("macro-bar").hidden = !setup.macros.length;
  const select = $("macro-select");
  const chosen = select.value;
  select.replaceChildren(el("option", { value: "", text: S.chooseMacro }), ...setup.macros.map((m) => el("option", { value: m.id, text: m.name, selected: String(m.id) === chosen })));
  const details = $("collab-details");
  details.hidden = false;
  const mine = new Set((labelsOf.get(c.id) || []).map((l) => l.id));
  const pick = $("label-pick");
  pick.replaceChildren(...(setup.labels.length
    ? setup.labels.map((label) => el("label", {},
        el("input", { type: "checkbox", value: label.id, checked: mine.has(label.id), onchange: () => saveLabels(c.id) }),
        chip(label)))
    : [el("p", { class: "small muted", text: S.noLabels })]));
}

async function saveLabels(id) {
  const ids = [...$("label-pick").querySelectorAll("input:checked")].map((i) => Number(i.value));
  try {
    const data = await api(config.urls.labels, { conversation_id: id, label_ids: ids });
    labelsOf.set(id, data.labels);
    decorate(document);
  } catch (error) {
    $("macro-status").textContent = error.message;
  }
}

$("macro-apply").addEventListener("click", async () => {
  const id = $("macro-select").value;
  if (!id || !current) return;
  const status = $("macro-status");
  status.textContent = "…";
  try {
    const data = await api(config.urls.macro.replace("{id}", id), { conversation_id: current.id });
    labelsOf.set(current.id, data.labels);
    status.textContent = S.macroDone;
    $("macro-select").value = "";
    decorate(document);
    renderThreadParts(current);
    fetchFor([current.id]);
  } catch (error) {
    status.textContent = error.message;
  }
});

document.addEventListener("parley:conversation-shown", (event) => {
  const changed = !current || current.id !== event.detail.id;
  current = event.detail;
  if (changed) $("macro-status").textContent = "";
  renderThreadParts(current);
  if (changed || !slaOf.has(current.id)) fetchFor([current.id]);
});

// --- live frames ---------------------------------------------------------------------------------

let slaTimer = null;
document.addEventListener("parley:inbox-frame", (event) => {
  const frame = event.detail;
  if (frame.type === "mention.created") {
    setup.notifications = [frame.notification, ...setup.notifications.filter((n) => n.id !== frame.notification.id)].slice(0, 30);
    setup.unread = frame.unread;
    renderBell();
    announce($("collab-announce"), format(S.mentionAnnounce, { actor: frame.notification.actor_name, excerpt: frame.notification.excerpt }));
  } else if (frame.type === "labels.updated") {
    labelsOf.set(frame.conversation_id, frame.labels);
    decorate(document);
    if (current && current.id === frame.conversation_id) renderThreadParts(current);
  } else if (frame.type === "conversations.updated") {
    // A reply or a resolve changes SLA states: re-read them for those conversations, at most every 2 s.
    frame.events.forEach((e) => wanted.add(e.conversation.id));
    clearTimeout(slaTimer);
    slaTimer = setTimeout(() => fetchFor([]), 2000);
  }
});

// --- the composer: /shortcut and @mention suggestions -------------------------------------------------

const input = $("composer-body");
const composer = $("composer");
const suggest = el("ul", { class: "suggest", role: "listbox", id: "composer-suggest", hidden: true });
composer.append(suggest);
input.setAttribute("aria-controls", "composer-suggest");
input.setAttribute("aria-autocomplete", "list");
let options = [];
let active = 0;
let trigger = null; // { start, kind }

// As collab.selectors.canned_reply_text: a contact shown by their number has no name to greet
// ("Hello +49"), and a placeholder left empty takes the blanks before it along ("Hello, …").
function fill(body) {
  const shown = (current ? current.contact.name : "").trim();
  const name = /^\+?[\d\s()\/.-]*$/.test(shown) ? "" : shown;
  const values = { name, first_name: name.split(/\s+/)[0] || "", agent: inboxConfig.me.name, business: config.business_name };
  return body.replace(/([ \t]*)\{\{\s*(name|first_name|agent|business)\s*\}\}/g, (_, blanks, key) => (values[key] ? blanks + values[key] : ""));
}

function closeSuggest() {
  suggest.hidden = true;
  options = [];
  trigger = null;
  input.removeAttribute("aria-activedescendant");
}

function renderSuggest() {
  if (!options.length) { closeSuggest(); return; }
  suggest.hidden = false;
  suggest.setAttribute("aria-label", trigger.kind === "/" ? S.cannedHint : S.mentionHint);
  suggest.replaceChildren(...options.map((option, index) => el("li", {
    id: `suggest-${index}`, role: "option", "aria-selected": String(index === active),
    onmousedown: (event) => { event.preventDefault(); choose(index); },
  }, el("strong", { text: option.label }), " ", el("span", { class: "muted", text: option.hint }))));
  input.setAttribute("aria-activedescendant", `suggest-${active}`);
}

function choose(index) {
  const option = options[index];
  if (!option || !trigger) return;
  const end = input.selectionStart;
  input.value = input.value.slice(0, trigger.start) + option.insert + input.value.slice(end);
  const caret = trigger.start + option.insert.length;
  input.setSelectionRange(caret, caret);
  closeSuggest();
  input.focus();
}

function offerSuggestions() {
  const before = input.value.slice(0, input.selectionStart);
  const canned = /(^|\s)\/([\w-]*)$/.exec(before);
  const mention = /(^|\s)@([\p{L}\p{N}._-]*)$/u.exec(before);
  if (canned && setup.canned_replies.length) {
    const needle = canned[2].toLowerCase();
    trigger = { start: before.length - canned[2].length - 1, kind: "/" };
    options = setup.canned_replies
      .filter((r) => r.shortcut.startsWith(needle) || r.title.toLowerCase().includes(needle))
      .slice(0, 8)
      .map((r) => ({ label: `/${r.shortcut}`, hint: r.title, insert: fill(r.body) }));
  } else if (mention) {
    const needle = mention[2].toLowerCase();
    trigger = { start: before.length - mention[2].length - 1, kind: "@" };
    options = setup.people
      .filter((p) => p.id !== inboxConfig.me.id && p.name.toLowerCase().split(/\s+/).some((w) => w.startsWith(needle)))
      .slice(0, 8)
      .map((p) => ({ label: `@${p.name}`, hint: "", insert: `@${p.name} ` }));
  } else {
    closeSuggest();
    return;
  }
  active = 0;
  renderSuggest();
}
input.addEventListener("input", offerSuggestions);

// Capture phase on the form: runs before inbox.js's Enter-to-send on the textarea.
composer.addEventListener("keydown", (event) => {
  if (event.target !== input || suggest.hidden) return;
  if (event.key === "ArrowDown" || event.key === "ArrowUp") {
    active = (active + (event.key === "ArrowDown" ? 1 : options.length - 1)) % options.length;
    renderSuggest();
  } else if (event.key === "Enter" || event.key === "Tab") {
    choose(active);
  } else if (event.key === "Escape") {
    closeSuggest();
  } else {
    return;
  }
  event.preventDefault();
  event.stopPropagation();
}, true);
// Close on leaving the composer (after a click on an option had its turn), not when focus came
// back meanwhile; on returning, offer again what the text before the caret asks for (a live
// update that moved focus for a moment must not lose the agent's suggestions).
input.addEventListener("blur", () => setTimeout(() => { if (document.activeElement !== input) closeSuggest(); }, 150));
input.addEventListener("focus", () => { if (suggest.hidden) offerSuggestions(); });

// --- search with filters --------------------------------------------------------------------------

let searchPage = 1;
let lastQuery = null;

async function runSearch(page) {
  const form = new FormData($("search-form"));
  const params = new URLSearchParams();
  for (const [key, value] of form.entries()) if (value) params.set(key, value);
  if (page > 1) params.set("page", String(page));
  const results = $("search-results");
  try {
    const data = await api(`${config.urls.search}?${params}`);
    data.conversations.forEach((c) => labelsOf.set(c.id, c.labels));
    const rows = data.conversations.map((c) => el("li", {},
      el("button", { type: "button", class: "conv", dataset: { conversation: c.id }, onclick: () => document.dispatchEvent(new CustomEvent("parley:open-conversation", { detail: { id: c.id } })) },
        el("span", { class: "conv-top" },
          el("span", { class: "conv-name", text: c.contact.name }),
          el("time", { class: "conv-time", datetime: c.last_message_at || "", text: timeLabel(c.last_message_at) })),
        el("span", { class: "conv-preview", text: c.match ? c.match.body : c.preview }),
        el("span", { class: "conv-meta small" }, el("span", { class: `pill status-${c.status}`, text: inboxConfig.strings[`status_${c.status}`] || c.status }),
          c.assignee ? el("span", { class: "muted", text: c.assignee.name }) : null))));
    const list = $("search-list");
    if (page === 1) list.replaceChildren(...rows); else list.append(...rows);
    list.querySelector(".load-more")?.remove();
    if (data.has_more) list.append(el("li", { class: "load-more" }, el("button", { type: "button", class: "linklike small", text: S.moreResults, onclick: () => runSearch(page + 1) })));
    const shown = list.querySelectorAll("button.conv").length;
    $("search-count").textContent = shown ? format(S.results, { n: data.has_more ? `${shown}+` : shown }) : S.noResults;
    searchPage = page;
    results.hidden = false;
    $("conv-list").hidden = true;
    decorate(list);
    fetchFor(visibleIds(list));
  } catch (error) {
    $("search-count").textContent = error.message;
    results.hidden = false;
  }
}

$("search-form").addEventListener("submit", (event) => {
  event.preventDefault();
  lastQuery = new URLSearchParams(new FormData($("search-form"))).toString();
  runSearch(1);
});
$("search-clear").textContent = S.clear;
$("search-clear").addEventListener("click", () => {
  $("search-results").hidden = true;
  $("conv-list").hidden = false;
  $("search-form").reset();
  lastQuery = null;
  searchPage = 1;
});

// --- start ----------------------------------------------------------------------------------------

async function start() {
  try {
    setup = await api(config.urls.setup);
  } catch {
    return;
  }
  const labelSelect = $("search-label");
  setup.labels.forEach((label) => labelSelect.append(el("option", { value: label.id, text: label.name })));
  const assignee = $("search-assignee");
  setup.people.forEach((p) => { if (p.id !== inboxConfig.me.id) assignee.append(el("option", { value: p.id, text: p.name })); });
  renderBell();
  fetchFor(visibleIds($("conv-list")));
  if (current) renderThreadParts(current);
}
start();
