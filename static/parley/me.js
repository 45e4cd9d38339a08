// /me/: the customer's conversations with every business, refreshed when one changes.
// The list is state, not a stream, so after a reconnect it is simply fetched again.
const url = `${location.protocol === "https:" ? "wss" : "ws"}://${location.host}/ws/me/`;
let backoff = 500;

function refresh() {
  const section = document.getElementById("me-conversations");
  if (section && window.htmx) window.htmx.trigger(section, "parley:refresh");
}

function connect(first) {
  const ws = new WebSocket(url);
  ws.addEventListener("open", () => { backoff = 500; if (!first) refresh(); });
  ws.addEventListener("message", (event) => {
    let frame;
    try { frame = JSON.parse(event.data); } catch { return; }
    if (frame.type === "thread.updated") refresh();
  });
  ws.addEventListener("close", (event) => {
    if ([4401, 4403, 4404].includes(event.code)) return;
    setTimeout(() => connect(false), backoff);
    backoff = Math.min(backoff * 2, 10000);
  });
}

connect(true);
