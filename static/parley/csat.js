// The chat page's satisfaction survey (insights): asks once the business resolved the
// conversation, if it wants ratings. It checks when the customer's socket hears of the resolve
// (a `queue` frame with `resolved`, passed on by chat.js as "parley:resolved"), on load, when
// the page becomes visible again, and after each new reply from the business a few times with
// growing pauses (a frame missed while the socket was away) — not on every redraw of the thread
// (ticks, reactions and acks redraw it too), and never as a steady poll.
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
  let lastCheck = 0;
  let replies = 0;
  // After a reply: 2 s, 15 s, 1 min and 3 min later, then nothing until the next one.
  const AFTER_REPLY = [2000, 15000, 60000, 180000];

  async function check() {
    if (done) return;
    lastCheck = Date.now();
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

  function afterReply(step = 0) {
    clearTimeout(timer);
    if (done || step >= AFTER_REPLY.length) return;
    timer = setTimeout(async () => {
      if (cycle !== null) return; // shown already (the resolve's frame came first)
      await check();
      if (cycle === null) afterReply(step + 1); // asked already: no need to look again
    }, AFTER_REPLY[step]);
  }

  const thread = document.getElementById("thread");
  if (thread) {
    replies = thread.querySelectorAll(".bubble.theirs").length;
    new MutationObserver(() => {
      const count = thread.querySelectorAll(".bubble.theirs").length;
      if (count > replies) afterReply();
      replies = count;
    }).observe(thread, { childList: true });
  }
  document.addEventListener("parley:resolved", () => check());
  document.addEventListener("visibilitychange", () => {
    if (document.visibilityState === "visible" && Date.now() - lastCheck > 10000) check();
  });
  check();
}
