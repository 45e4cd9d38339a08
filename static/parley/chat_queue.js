// The customer's place in line on the chat page (issue 12): rendered from the page's state, then
// from live `queue` frames, and read again after the customer's own message (their first one
// creates the conversation before this page's socket has joined it) and every 30 s as a backstop.
import { format } from "./realtime.js";

export class QueueLine {
  constructor(node, config) {
    this.node = node;
    this.url = config.urls.queue;
    this.S = config.strings;
    this.state = config.queue || null;
    this.lang = document.documentElement.lang || "en";
    this.timer = null;
    this.render();
    setInterval(() => { if (this.waiting()) this.refresh(); }, 30000);
  }

  waiting() {
    return Boolean(this.state && (this.state.position || this.state.closed));
  }

  ordinal(n) {
    const category = new Intl.PluralRules(this.lang, { type: "ordinal" }).select(n);
    return format(this.S[`ordinal_${category}`] || this.S.ordinal_other, { n });
  }

  update(state) {
    this.state = state;
    this.render();
  }

  // Several triggers can come together (a send, a frame): one request.
  refresh() {
    clearTimeout(this.timer);
    this.timer = setTimeout(async () => {
      const response = await fetch(this.url, { credentials: "same-origin" });
      if (response.ok) this.update(await response.json());
    }, 300);
  }

  // The next opening in the business's own zone, named by its city ("Monday 07:00 (Berlin)"),
  // as the business sets its hours and writes its away message; the customer's clock may differ.
  opening(iso, zone) {
    const when = new Date(iso);
    const style = { weekday: "long", hour: "2-digit", minute: "2-digit" };
    try {
      const city = zone ? zone.split("/").pop().replaceAll("_", " ") : "";
      const text = when.toLocaleString(this.lang, zone ? { ...style, timeZone: zone } : style);
      return city ? `${text} (${city})` : text;
    } catch {
      return when.toLocaleString(this.lang, style); // a zone this browser does not know
    }
  }

  render() {
    const s = this.state;
    const lines = [];
    if (s && s.closed) {
      const opens = s.opens_at ? this.opening(s.opens_at, s.time_zone) : "";
      lines.push(opens ? format(this.S.closedUntil, { time: opens }) : this.S.closed);
    }
    if (s && s.position) {
      lines.push(format(this.S.queuePlace, { place: this.ordinal(s.position) }));
      if (s.estimate_minutes) lines.push(format(this.S.queueEstimate, { minutes: s.estimate_minutes }));
      else if (!s.closed) lines.push(this.S.queueNoEstimate);
    }
    const text = lines.join(" ");
    if (this.node.textContent !== text) this.node.textContent = text; // a live region: only news
    this.node.hidden = !text;
  }
}
