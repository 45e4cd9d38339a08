// The inbox list's pages (issue 12): keyset pages from /inbox/api/list/, loaded as the agent
// scrolls (infinite scroll, no cap), while live frames keep every loaded conversation current.
// A conversation is shown only once it falls inside the loaded range of the current sort, so a
// live update never makes the list look complete where a page is still missing.

const KEYS = { recent: "last_message_at", waiting: "waiting_since", queue: "queued_at" };
const DESCENDING = { recent: true, waiting: false, queue: false };

export class PagedList {
  constructor({ url, countsUrl, conversations, onLoaded, onCounts }) {
    this.url = url;
    this.countsUrl = countsUrl;
    this.conversations = conversations; // the inbox's Map id -> payload, shared
    this.onLoaded = onLoaded;
    this.onCounts = onCounts;
    this.query = { tab: "all", status: "", q: "", sort: "recent" };
    this.next = null; // cursor of the next page; null: the loaded range reaches the end
    this.boundary = null; // the sort key of the last loaded row
    this.loading = null;
    this.generation = 0; // a newer query makes older answers stale
    this.countsTimer = null;
  }

  params(extra = {}) {
    const p = { ...this.query, ...extra };
    if (p.tab === "queue") p.sort = "queue";
    return new URLSearchParams(Object.entries(p).filter(([, v]) => v !== "" && v !== null && v !== undefined));
  }

  sortName() {
    return this.query.tab === "queue" ? "queue" : this.query.sort;
  }

  // Reload from the first page (tab, filter, search or sort changed).
  async reset(query) {
    Object.assign(this.query, query);
    this.generation += 1;
    this.next = null;
    this.boundary = null;
    this.loading = null;
    await this.load(null, true);
  }

  async more() {
    if (this.next && !this.loading) await this.load(this.next, false);
  }

  async load(cursor, first) {
    const generation = this.generation;
    const request = (async () => {
      const response = await fetch(`${this.url}?${this.params(cursor ? { cursor } : {})}`, { credentials: "same-origin" });
      if (!response.ok || generation !== this.generation) return;
      const page = await response.json();
      page.conversations.forEach((c) => this.conversations.set(c.id, c));
      const last = page.conversations[page.conversations.length - 1];
      if (last) this.boundary = last[KEYS[this.sortName()]];
      else if (first) this.boundary = null;
      this.next = page.next;
      if (page.counts) this.onCounts({ counts: page.counts });
      this.onLoaded();
    })();
    this.loading = request;
    try { await request; } finally { if (this.loading === request) this.loading = null; }
  }

  // Whether a conversation belongs to the loaded part of the list in the current sort.
  loaded(c) {
    const key = c[KEYS[this.sortName()]];
    if (!key) return false;
    if (this.next === null || this.boundary === null) return true;
    return DESCENDING[this.sortName()] ? key >= this.boundary : key <= this.boundary;
  }

  compare(a, b) {
    const key = KEYS[this.sortName()];
    const order = (a[key] || "").localeCompare(b[key] || "") || a.id - b.id;
    return DESCENDING[this.sortName()] ? -order : order;
  }

  // Live list changes move the counts: read them again, at most every two seconds.
  countsChanged() {
    if (this.countsTimer) return;
    this.countsTimer = setTimeout(async () => {
      this.countsTimer = null;
      const response = await fetch(this.countsUrl, { credentials: "same-origin" });
      if (response.ok) this.onCounts(await response.json());
    }, 2000);
  }

  // Infinite scroll: the next page when the sentinel at the list's end comes into view. The list
  // is re-rendered whole, so each render hands over its new sentinel.
  watch(sentinel, root) {
    if (!this.observer) {
      this.observer = new IntersectionObserver((entries) => {
        if (entries.some((e) => e.isIntersecting)) this.more();
      }, { root, rootMargin: "200px" });
    }
    this.observer.disconnect();
    if (sentinel) this.observer.observe(sentinel);
  }
}
