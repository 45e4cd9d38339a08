// Live preview of a template while it is written: the customer's bubble, placeholders marked.
const PLACEHOLDER = /\{\{\s*([a-z_][a-z0-9_]{0,39})\s*\}\}/g;

function field(form, name) {
  const el = form.elements.namedItem(name);
  return el ? el.value : "";
}

function withPlaceholders(target, text) {
  // Built from text nodes, never innerHTML: the template is user input.
  target.replaceChildren();
  let last = 0;
  for (const match of text.matchAll(PLACEHOLDER)) {
    target.append(text.slice(last, match.index));
    const mark = document.createElement("mark");
    mark.textContent = match[1];
    target.append(mark);
    last = match.index + match[0].length;
  }
  target.append(text.slice(last));
}

function render(form, preview) {
  const part = (name) => preview.querySelector(`[data-preview="${name}"]`);
  withPlaceholders(part("header"), field(form, "header"));
  withPlaceholders(part("body"), field(form, "body"));
  part("footer").textContent = field(form, "footer");
  const buttons = part("buttons");
  buttons.replaceChildren();
  for (const name of ["button_1", "button_2", "button_3"]) {
    const label = field(form, name).trim();
    if (label) {
      const chip = document.createElement("span");
      chip.className = "tpl-button";
      chip.textContent = label;
      buttons.append(chip);
    }
  }
  const names = new Set();
  for (const m of `${field(form, "header")}\n${field(form, "body")}`.matchAll(PLACEHOLDER)) names.add(m[1]);
  const list = form.querySelector('[data-preview="placeholders"]');
  list.textContent = names.size ? `${list.dataset.label} ${[...names].join(", ")}` : "";
}

for (const preview of document.querySelectorAll("[data-template-preview]")) {
  const form = preview.closest("form");
  form.addEventListener("input", () => render(form, preview));
  render(form, preview);
}
