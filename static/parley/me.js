// /me/: the customer's conversations with every business, refreshed when one changes.
// The list is state, not a stream: it has no event ids to resume from, so after a reconnect it
// is simply fetched again. The reconnect loop is realtime.js's, like the inbox's and the chat's.
import { ResumingSocket } from "./realtime.js";

// The fragment (and this config with it) is swapped by htmx on every refresh; the module runs once.
const config = JSON.parse(document.getElementById("me-config").textContent);

function refresh() {
  const section = document.getElementById("me-conversations");
  if (section && window.htmx) window.htmx.trigger(section, "parley:refresh");
}

let opened = false;
new ResumingSocket(config.urls.socket, {
  resume: false,
  closeCodes: config.close_codes,
  onOpen: () => { if (opened) refresh(); opened = true; },
  onFrame: (frame) => { if (frame.type === "thread.updated") refresh(); },
});
