// The inbox's template picker: when the open conversation's 24-hour window has closed, free text
// would be refused, so this offers the business's approved templates instead — a field per
// placeholder, the text the customer will read, and what sending it costs now. The inbox tells
// it which conversation is open ("parley:conversation" events); the message itself reaches the
// thread live, like every other. URLs and strings come from the form's data attributes.
import { el, format, newClientMsgId } from "./realtime.js";

const PLACEHOLDER = /\{\{\s*([a-z_][a-z0-9_]{0,39})\s*\}\}/g;
const form = document.getElementById("template-picker");
const $ = (id) => document.getElementById(id);

let conversationId = null;
let templates = [];
let loading = 0; // answers of older loads are dropped
let clientMsgId = null; // kept for a retry of the same send, so it is never sent twice

function fill(text, values) {
  return text.replace(PLACEHOLDER, (_, name) => (values[name] ? values[name] : `{{${name}}}`));
}

function chosen() {
  return templates.find((t) => String(t.id) === $("template-picker-choice").value);
}

function values() {
  const out = {};
  for (const input of $("template-picker-fields").querySelectorAll("input")) out[input.name] = input.value.trim();
  return out;
}

function euro(amount) {
  return `€${Number(amount).toLocaleString(document.documentElement.lang || undefined, { minimumFractionDigits: 4 })}`;
}

function priceText(price) {
  const data = form.dataset;
  if (Number(price.amount) === 0) return price.per === "conversation" ? data.inConversation : data.free;
  if (price.per === "conversation") return format(data.opens, { price: euro(price.amount) });
  return format(data.perMessage, { price: euro(price.amount) });
}

function renderPreview() {
  const template = chosen();
  if (!template) return;
  const vals = values();
  const parts = [template.header && fill(template.header, vals), fill(template.body, vals), template.footer]
    .filter(Boolean);
  if (template.buttons.length) parts.push(template.buttons.map((b) => `[${b}]`).join(" · "));
  $("template-picker-preview").textContent = parts.join("\n\n");
}

function renderChoice() {
  const template = chosen();
  clientMsgId = null;
  $("template-picker-fields").replaceChildren(
    ...(template ? template.placeholders : []).map((name) => {
      const id = `template-picker-${name}`;
      return el("p", {},
        el("label", { for: id, class: "small", text: name }),
        el("input", { id, name, type: "text", maxlength: "200", required: true, autocomplete: "off", oninput: renderPreview }),
      );
    }),
  );
  $("template-picker-price").textContent = template ? priceText(template.price) : "";
  renderPreview();
}

async function load(id) {
  const mine = ++loading;
  const url = new URL(form.dataset.listUrl, location.href);
  url.searchParams.set("conversation", id);
  const response = await fetch(url, { headers: { Accept: "application/json" }, credentials: "same-origin" });
  if (mine !== loading) return;
  const body = await response.json().catch(() => ({}));
  templates = response.ok ? body.templates : [];
  const select = $("template-picker-choice");
  select.replaceChildren(
    ...templates.map((t) => el("option", { value: t.id, text: `${t.name} (${t.language}) · ${t.category_label}` })),
  );
  select.disabled = !templates.length;
  form.querySelector("button[type=submit]").disabled = !templates.length;
  $("template-picker-status").textContent = templates.length ? "" : (body.error?.message || form.dataset.none);
  renderChoice();
}

async function send(event) {
  event.preventDefault();
  const template = chosen();
  if (!template || conversationId === null) return;
  const button = form.querySelector("button[type=submit]");
  button.disabled = true;
  clientMsgId = clientMsgId || newClientMsgId();
  const status = $("template-picker-status");
  try {
    const response = await fetch(form.dataset.sendUrl, {
      method: "POST",
      credentials: "same-origin",
      headers: {
        "Content-Type": "application/json",
        Accept: "application/json",
        "X-CSRFToken": form.querySelector("[name=csrfmiddlewaretoken]").value,
      },
      body: JSON.stringify({
        conversation_id: conversationId, template_id: template.id, parameters: values(), client_msg_id: clientMsgId,
      }),
    });
    const body = await response.json().catch(() => ({}));
    if (response.ok) {
      status.className = "small";
      status.textContent = `${form.dataset.sent} ${priceText(body.price)}`;
      clientMsgId = null;
      await load(conversationId); // the next one may cost something else (a conversation is open now)
      status.textContent = `${form.dataset.sent} ${priceText(body.price)}`;
    } else {
      status.className = "small alert error";
      status.textContent = body.error?.message || form.dataset.failed;
    }
  } catch {
    status.className = "small alert error";
    status.textContent = form.dataset.failed;
  } finally {
    button.disabled = !templates.length;
  }
}

if (form) {
  form.addEventListener("submit", send);
  $("template-picker-choice").addEventListener("change", renderChoice);
  document.addEventListener("parley:conversation", (event) => {
    const { id, windowOpen } = event.detail;
    const changed = id !== conversationId;
    conversationId = id;
    form.hidden = windowOpen;
    if (!windowOpen && changed) {
      $("template-picker-status").textContent = "";
      load(id);
    }
  });
}
