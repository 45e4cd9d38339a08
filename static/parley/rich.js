// Rich messages on both thread pages (chat and inbox): attachments with upload progress, quoted
// replies, reactions, interactive buttons and lists, edits and deletes. The pages keep their own
// rendering and sockets; this module renders the rich parts of a message and owns the composer's
// extras (the file being uploaded, the message being replied to or edited).
import { el, format, markJumped, newClientMsgId } from "./realtime.js";

export const QUICK_EMOJI = ["👍", "❤️", "😂", "😮", "😢", "🙏"];
const EDIT_WINDOW_MS = 15 * 60 * 1000;

function csrfToken() {
  // base.html hands htmx the token; uploads send it the same way.
  try { return JSON.parse(document.body.getAttribute("hx-headers") || "{}")["X-CSRFToken"] || ""; } catch { return ""; }
}

function sizeLabel(bytes) {
  if (bytes >= 1024 * 1024) return `${(bytes / (1024 * 1024)).toFixed(1)} MB`;
  return `${Math.max(1, Math.round(bytes / 1024))} KB`;
}

function kindLabel(kind, S) {
  return { image: S.photo, document: S.document, audio: S.audio }[kind] || "";
}

export function editable(m) {
  return Boolean(m.id) && !m.deleted_at && Date.now() - Date.parse(m.created_at) < EDIT_WINDOW_MS;
}

// --- the composer's extras -----------------------------------------------------------------

export class RichComposer {
  // form: the composer; input: its textarea; uploadUrl: where files go; fields(): extra form
  // fields for the upload (the inbox's conversation id); dropTarget: where files may be dropped.
  constructor({ form, input, uploadUrl, strings, fields = () => ({}), dropTarget = null, onChange = () => {} }) {
    this.S = strings;
    this.form = form;
    this.input = input;
    this.uploadUrl = uploadUrl;
    this.fields = fields;
    this.onChange = onChange;
    this.upload = null; // {file, key, progress, attachment, error, xhr}
    this.replyTo = null; // {id, author_name, body}
    this.editing = null; // the message being edited
    this.bar = el("div", { class: "composer-extras", "aria-live": "polite" });
    this.picker = el("input", { type: "file", class: "sr-only", id: `${form.id}-file`, accept: "image/jpeg,image/png,image/webp,application/pdf,audio/*", tabindex: "-1" });
    this.picker.addEventListener("change", () => { if (this.picker.files[0]) this.attach(this.picker.files[0]); this.picker.value = ""; });
    this.button = el("button", { type: "button", class: "button secondary small attach-button", "aria-label": strings.attach, title: strings.attach, text: `+ ${strings.file}`, onclick: () => this.picker.click() });
    form.prepend(this.bar);
    form.append(this.picker);
    const row = form.querySelector(".composer-row");
    (row || form).prepend(this.button);
    input.addEventListener("paste", (event) => {
      const file = [...(event.clipboardData?.files || [])][0];
      if (file) { event.preventDefault(); this.attach(file); }
    });
    const target = dropTarget || form;
    target.addEventListener("dragover", (event) => { if ([...event.dataTransfer.types].includes("Files")) { event.preventDefault(); target.classList.add("drop-active"); } });
    target.addEventListener("dragleave", () => target.classList.remove("drop-active"));
    target.addEventListener("drop", (event) => {
      target.classList.remove("drop-active");
      const file = event.dataTransfer?.files?.[0];
      if (file) { event.preventDefault(); this.attach(file); }
    });
    this.render();
  }

  attach(file) {
    if (this.upload?.xhr) this.upload.xhr.abort();
    // One key per chosen file: a retry after a lost answer returns the same attachment.
    this.upload = { file, key: newClientMsgId(), progress: 0, attachment: null, error: "" };
    this.send();
  }

  send() {
    const upload = this.upload;
    const data = new FormData();
    data.append("file", upload.file);
    data.append("upload_key", upload.key);
    for (const [name, value] of Object.entries(this.fields())) data.append(name, value);
    const xhr = new XMLHttpRequest(); // fetch() cannot report upload progress
    upload.xhr = xhr;
    upload.error = "";
    upload.progress = 0;
    xhr.open("POST", this.uploadUrl);
    xhr.setRequestHeader("X-CSRFToken", csrfToken());
    xhr.upload.addEventListener("progress", (event) => {
      if (event.lengthComputable) { upload.progress = event.loaded / event.total; this.renderProgress(); }
    });
    xhr.addEventListener("load", () => {
      upload.xhr = null;
      let answer = {};
      try { answer = JSON.parse(xhr.responseText); } catch { /* not JSON: a proxy's error page */ }
      if (xhr.status === 200 || xhr.status === 201) upload.attachment = answer.attachment;
      else upload.error = answer.error?.message || this.S.uploadFailed;
      this.render();
    });
    xhr.addEventListener("error", () => { upload.xhr = null; upload.error = this.S.uploadFailed; this.render(); });
    xhr.send(data);
    this.render();
  }

  get uploading() { return Boolean(this.upload && !this.upload.attachment); }

  setReply(m, authorName) {
    this.editing = null;
    this.replyTo = { id: m.id, author_name: authorName, body: m.body, attachment_kind: m.attachments?.[0]?.kind || "" };
    this.render();
    this.input.focus();
  }

  setEdit(m) {
    this.replyTo = null;
    this.editing = m;
    this.input.value = m.body;
    this.render();
    this.input.focus();
  }

  // What a send carries besides its text, and what its pending bubble shows meanwhile.
  extras() {
    const out = {};
    if (this.upload?.attachment) out.attachment_id = this.upload.attachment.id;
    if (this.replyTo) out.reply_to = this.replyTo.id;
    return out;
  }

  preview() {
    return {
      attachments: this.upload?.attachment ? [this.upload.attachment] : [],
      reply_to: this.replyTo ? { ...this.replyTo, deleted: false } : null,
    };
  }

  clear() {
    this.upload = null;
    this.replyTo = null;
    this.editing = null;
    this.render();
  }

  renderProgress() {
    const bar = this.bar.querySelector("progress");
    if (bar) { bar.value = this.upload.progress; bar.textContent = `${Math.round(this.upload.progress * 100)}%`; }
    const pct = this.bar.querySelector(".upload-pct");
    if (pct) pct.textContent = `${Math.round(this.upload.progress * 100)}%`;
  }

  render() {
    const nodes = [];
    if (this.replyTo || this.editing) {
      const label = this.editing ? this.S.edit : format(this.S.replyingTo, { name: this.replyTo.author_name });
      const text = this.editing ? this.editing.body : this.replyTo.body || kindLabel(this.replyTo.attachment_kind, this.S);
      nodes.push(el("div", { class: "composer-quote" },
        el("div", {}, el("strong", { class: "small", text: label }), el("p", { class: "small muted quote-text", text })),
        el("button", { type: "button", class: "linklike small", "aria-label": this.S.cancelReply, text: "✕", onclick: () => { if (this.editing) this.input.value = ""; this.replyTo = null; this.editing = null; this.render(); } })));
    }
    const u = this.upload;
    if (u) {
      const chip = el("div", { class: `upload-chip${u.error ? " failed" : ""}`, dataset: { state: u.error ? "failed" : u.attachment ? "done" : "uploading" } });
      if (u.attachment?.thumbnail_url) chip.append(el("img", { src: u.attachment.thumbnail_url, alt: "", class: "upload-thumb" }));
      chip.append(el("span", { class: "small upload-name", text: u.attachment ? `${u.attachment.name} · ${sizeLabel(u.attachment.size)}` : format(this.S.uploading, { name: u.file.name }) }));
      if (!u.attachment && !u.error) {
        chip.append(el("progress", { max: "1", value: String(u.progress), "aria-label": format(this.S.uploading, { name: u.file.name }) }));
        chip.append(el("span", { class: "small muted upload-pct", text: `${Math.round(u.progress * 100)}%` }));
      }
      if (u.error) {
        chip.append(el("span", { class: "small upload-error", role: "alert", text: u.error }));
        chip.append(el("button", { type: "button", class: "button small secondary", text: this.S.retry, onclick: () => this.send() }));
      }
      chip.append(el("button", { type: "button", class: "linklike small", "aria-label": this.S.removeFile, text: "✕", onclick: () => { if (u.xhr) u.xhr.abort(); this.upload = null; this.render(); } }));
      nodes.push(chip);
    }
    this.bar.replaceChildren(...nodes);
    this.bar.hidden = !nodes.length;
    this.onChange();
  }
}

// --- a message's rich parts ----------------------------------------------------------------

let openPicker = null; // the message whose emoji picker is open (survives re-renders)

function quoteNode(q, S, ctx) {
  const text = q.deleted ? S.deleted : q.body || kindLabel(q.attachment_kind, S);
  const name = q.author_kind === ctx.selfKind ? S.you : ctx.nameOf ? ctx.nameOf(q) : q.author_name || ctx.fallbackName || "";
  return el("button", { type: "button", class: "bubble-quote", title: S.jumpToOriginal, "aria-label": `${S.jumpToOriginal}: ${text}`, onclick: () => ctx.onJump(q.id) },
    el("strong", { class: "small", text: name }),
    el("span", { class: "small quote-text", text }));
}

function attachmentNode(a, S) {
  if (a.removed) return el("p", { class: "file-gone small", text: a.removed === "expired" ? S.fileExpired : S.fileDeleted });
  const label = format(S.open, { name: a.name });
  if (a.kind === "image") {
    const img = el("img", { src: a.thumbnail_url || a.url, alt: a.name, loading: "lazy", class: "bubble-image" });
    if (a.width && a.height) { img.width = Math.min(240, a.width); img.height = Math.round(img.width * a.height / a.width); }
    return el("a", { href: a.url, target: "_blank", rel: "noopener", class: "bubble-image-link", "aria-label": label }, img);
  }
  if (a.kind === "audio") return el("audio", { controls: true, preload: "none", src: a.url, "aria-label": a.name });
  return el("a", { href: a.url, target: "_blank", rel: "noopener", class: "file-card", "aria-label": label },
    el("span", { class: "file-icon", "aria-hidden": "true", text: "📄" }),
    el("span", {}, el("span", { class: "file-name", text: a.name }), el("span", { class: "small muted", text: ` · ${sizeLabel(a.size)}` })));
}

function interactiveNode(m, S, canChoose, onChoose, chosen) {
  const box = m.interactive;
  const option = (o) => el("button", {
    type: "button",
    class: `button small ${chosen === o.id ? "" : "secondary"} choice`,
    disabled: !canChoose,
    dataset: { option: o.id },
    onclick: () => onChoose(m, o),
  }, o.title, o.description ? el("span", { class: "small muted choice-desc", text: o.description }) : null);
  if (box.type === "list") {
    return el("details", { class: "bubble-list" }, el("summary", { class: "button small secondary", text: box.button || "…" }),
      el("div", { class: "choices" }, ...box.options.map(option)));
  }
  return el("div", { class: "choices" }, ...box.options.map(option));
}

function reactionsNode(m, me, S, onReact) {
  const groups = new Map();
  for (const r of m.reactions || []) {
    const g = groups.get(r.emoji) || { names: [], mine: false };
    g.names.push(r.name || "?");
    if (r.by === me) g.mine = true;
    groups.set(r.emoji, g);
  }
  return el("div", { class: "reactions" }, ...[...groups.entries()].map(([emoji, g]) => el("button", {
    type: "button",
    class: `reaction${g.mine ? " mine" : ""}`,
    title: format(S.reactedWith, { names: g.names.join(", "), emoji }),
    "aria-label": format(S.reactedWith, { names: g.names.join(", "), emoji }),
    "aria-pressed": String(g.mine),
    onclick: () => onReact(m, g.mine ? "" : emoji),
  }, emoji, g.names.length > 1 ? el("span", { class: "small", text: ` ${g.names.length}` }) : null)));
}

// ctx: { S, me (reaction key), selfKind ("customer" on the chat page: quotes of them say "You"), fallbackName (a template's author), nameOf (optional: a quoted message's author, instead of the two before), mine (bool: this viewer sent it), canChoose, chosen, onReply,
// onReact, onEdit, onDelete, onChoose, onJump, rerender }
export function richParts(m, ctx) {
  const { S } = ctx;
  const parts = { quote: null, media: [], interactive: null, footer: [] };
  if (m.reply_to && !m.choice_id) parts.quote = quoteNode(m.reply_to, S, ctx);
  if (m.deleted_at) return parts;
  parts.media = (m.attachments || []).map((a) => attachmentNode(a, S));
  if (m.interactive) parts.interactive = interactiveNode(m, S, ctx.canChoose, ctx.onChoose, ctx.chosen);
  if (m.choice_id && m.reply_to) parts.quote = quoteNode(m.reply_to, S, ctx);
  if (m.reactions?.length) parts.footer.push(reactionsNode(m, ctx.me, S, ctx.onReact));
  if (!m.id) return parts; // still sending
  const actions = el("div", { class: "bubble-actions" });
  actions.append(el("button", { type: "button", class: "linklike small", text: S.reply, onclick: () => ctx.onReply(m) }));
  actions.append(el("button", {
    type: "button", class: "linklike small", text: S.react, "aria-expanded": String(openPicker === m.id),
    onclick: () => { openPicker = openPicker === m.id ? null : m.id; ctx.rerender(); },
  }));
  if (ctx.mine && editable(m) && m.kind !== "template" && !m.choice_id) {
    actions.append(el("button", { type: "button", class: "linklike small", text: S.edit, onclick: () => ctx.onEdit(m) }));
  }
  if (ctx.mine && editable(m)) {
    actions.append(el("button", { type: "button", class: "linklike small", text: S.delete, onclick: () => { if (confirm(S.confirmDelete)) ctx.onDelete(m); } }));
  }
  parts.footer.push(actions);
  if (openPicker === m.id) {
    parts.footer.push(el("div", { class: "emoji-picker", role: "group", "aria-label": S.react },
      ...QUICK_EMOJI.map((emoji) => el("button", { type: "button", class: "reaction", text: emoji, "aria-label": emoji, onclick: () => { openPicker = null; ctx.onReact(m, emoji); } }))));
  }
  return parts;
}

// The bubble's body: the text, or "deleted", marked "edited".
export function bodyNodes(m, S) {
  if (m.deleted_at) return [el("p", { class: "bubble-body bubble-deleted", text: S.deleted })];
  const nodes = [];
  if (m.body) nodes.push(el("p", { class: "bubble-body", text: m.body }));
  return nodes;
}

export function editedMark(m, S) {
  return m.edited_at && !m.deleted_at ? el("span", { class: "edited", text: ` · ${S.edited}` }) : null;
}

// Which option the customer chose, per interactive message (their tap is a message linked to it).
export function choices(messages) {
  const chosen = new Map();
  messages.forEach((m) => { if (m.choice_id && m.reply_to) chosen.set(m.reply_to.id, m.choice_id); });
  return chosen;
}

// Apply an edit, delete or reaction frame to a page's messages; true when something changed.
export function applyRichFrame(frame, messages) {
  if (frame.type === "message.edited" || frame.type === "message.deleted") {
    const known = messages.get(frame.message.id);
    messages.set(frame.message.id, known ? { ...known, ...frame.message, status: known.status } : frame.message);
    // Quotes of it follow.
    messages.forEach((m) => {
      if (m.reply_to && m.reply_to.id === frame.message.id) {
        m.reply_to = { ...m.reply_to, body: frame.message.body.slice(0, 140), deleted: Boolean(frame.message.deleted_at) };
      }
    });
    return true;
  }
  if (frame.type === "reaction.set") {
    const known = messages.get(frame.message_id);
    if (!known) return false;
    known.reactions = frame.reactions;
    return true;
  }
  return false;
}

const jumpTimers = new Map(); // message id -> the timer that ends its highlight

export function jumpTo(thread, id) {
  const node = thread.querySelector(`#m${id}`);
  if (!node) return;
  node.scrollIntoView({ block: "center", behavior: "smooth" });
  markJumped(node);
  node.focus({ preventScroll: true });
  // Jumped to again, the highlight lasts from the latest jump; a re-render in between replaces
  // the node (replaceKeepingFocus carries the highlight over), so look it up when it ends.
  clearTimeout(jumpTimers.get(id));
  jumpTimers.set(id, setTimeout(() => {
    jumpTimers.delete(id);
    thread.querySelector(`#m${id}`)?.classList.remove("jumped");
  }, 1600));
}

// --- agents: quick-reply buttons on a reply (inbox) -----------------------------------------

// A "Buttons" toggle in the composer: up to three labels sent as quick-reply buttons the
// customer taps (their tap comes back as a message linked to the choice).
export class ButtonsEditor {
  constructor({ form, strings }) {
    this.S = strings;
    this.open = false;
    this.inputs = [1, 2, 3].map((n) => el("input", { type: "text", maxlength: "25", class: "button-label", "aria-label": format(strings.buttonLabel, { n }), placeholder: format(strings.buttonLabel, { n }) }));
    this.box = el("fieldset", { class: "buttons-editor", hidden: true }, el("legend", { class: "small", text: strings.quickReplies }), ...this.inputs);
    this.toggle = el("button", { type: "button", class: "button secondary small", "aria-expanded": "false", text: strings.addButtons, onclick: () => this.setOpen(!this.open) });
    form.querySelector(".composer-extras")?.after(this.box);
    const row = form.querySelector(".composer-row");
    (row || form).querySelector(".attach-button")?.after(this.toggle);
  }

  setOpen(open) {
    this.open = open;
    this.box.hidden = !open;
    this.toggle.setAttribute("aria-expanded", String(open));
    if (open) this.inputs[0].focus();
  }

  // The frame's `interactive`, or undefined when no label is filled in.
  value() {
    if (!this.open) return undefined;
    const labels = this.inputs.map((i) => i.value.trim()).filter(Boolean);
    if (!labels.length) return undefined;
    return { type: "buttons", options: labels.map((title, index) => ({ id: `b${index + 1}`, title })) };
  }

  clear() {
    this.inputs.forEach((i) => { i.value = ""; });
    this.setOpen(false);
  }
}
