// The chat page's satisfaction survey (insights): asks once the business resolved the
// conversation, if it wants ratings. No polling: it checks on load, when the page becomes
// visible again and shortly after the thread changes (a resolve usually follows a reply).
const box = document.getElementById("csat");
if (box) {
  const url = box.dataset.url;
  const send = document.getElementById("csat-send");
  const status = document.getElementById("csat-status");
  const token = box.querySelector("input[name=csrfmiddlewaretoken]").value;
  const buttons = [...box.querySelectorAll("[data-score]")];
  let cycle = null;
  let score = null;
  let done = false;
  let timer = null;

  async function check() {
    if (done) return;
    const response = await fetch(url, { credentials: "same-origin" });
    if (!response.ok) return;
    const data = await response.json();
    cycle = data.survey ? data.survey.cycle : null;
    box.hidden = cycle === null;
  }

  buttons.forEach((button) => button.addEventListener("click", () => {
    score = Number(button.dataset.score);
    buttons.forEach((b) => b.setAttribute("aria-pressed", String(b === button)));
    send.disabled = false;
  }));

  send.addEventListener("click", async () => {
    if (cycle === null || score === null) return;
    send.disabled = true;
    const response = await fetch(url, {
      method: "POST",
      credentials: "same-origin",
      headers: { "Content-Type": "application/json", "X-CSRFToken": token },
      body: JSON.stringify({ cycle, score, comment: document.getElementById("csat-comment").value }),
    });
    const data = await response.json().catch(() => ({}));
    if (response.ok) {
      done = true;
      box.querySelectorAll("button, textarea, label").forEach((node) => { node.hidden = true; });
      status.textContent = data.thanks;
    } else {
      status.textContent = (data.error && data.error.message) || "";
      send.disabled = false;
      if (response.status === 404) check();
    }
  });

  const soon = () => { clearTimeout(timer); timer = setTimeout(check, 1500); };
  const thread = document.getElementById("thread");
  if (thread) new MutationObserver(soon).observe(thread, { childList: true });
  document.addEventListener("visibilitychange", () => { if (document.visibilityState === "visible") check(); });
  check();
}
