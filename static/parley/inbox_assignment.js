// Assignment in the agents' inbox (issue 12): the agent's own status, snoozing, the thread's
// activity lines (assigned, returned, snoozed…), the team's load, and the collision guard's
// confirmation before replying into a conversation another agent holds.
import { el, format, timeLabel } from "./realtime.js";

export function statusControl(select, { status, send }) {
  select.value = status;
  select.dataset.status = status;
  select.addEventListener("change", () => send({ type: "agent_status", status: select.value }));
  return (next) => { select.value = next; select.dataset.status = next; };
}

// Snooze choices, as times computed in the agent's own clock ("" = until the customer writes).
export function snoozeChoices(S, now = new Date()) {
  const inHours = (h) => new Date(now.getTime() + h * 3600 * 1000);
  const tomorrow = new Date(now);
  tomorrow.setDate(now.getDate() + 1);
  tomorrow.setHours(9, 0, 0, 0);
  const nextWeek = new Date(tomorrow);
  nextWeek.setDate(tomorrow.getDate() + ((8 - tomorrow.getDay()) % 7 || 7) - 1);
  return [
    { label: S.snooze1h, until: inHours(1).toISOString() },
    { label: S.snoozeTomorrow, until: tomorrow.toISOString() },
    { label: S.snoozeNextWeek, until: nextWeek.toISOString() },
    { label: S.snoozeUntilReply, until: "" },
  ];
}

export function snoozeControl(select, S, send, conversationId) {
  select.replaceChildren(
    el("option", { value: "-", text: S.snooze }),
    ...snoozeChoices(S).map((c) => el("option", { value: c.until, text: c.label })),
  );
  select.value = "-";
  select.onchange = () => {
    if (select.value === "-") return;
    send({ type: "snooze", conversation_id: conversationId, until: select.value || null });
    select.value = "-";
  };
}

// One line of the thread for a conversation.activity event.
export function activityLine(a, S) {
  const who = a.actor ? a.actor.name : S.parley;
  const assignee = a.assignee ? a.assignee.name : "";
  const status = S[`status_${a.status}`] || a.status;
  const texts = {
    assigned: format(S.actAssigned, { who, assignee }),
    auto_assigned: format(S.actAutoAssigned, { assignee }),
    transferred: format(S.actTransferred, { who, assignee }),
    unassigned: a.actor ? format(S.actUnassigned, { who }) : S.actBackToQueue,
    returned: S.actReturned,
    status: format(S.actStatus, { who, status }),
    snoozed: a.snoozed_until ? format(S.actSnoozedUntil, { who, time: timeLabel(a.snoozed_until) }) : format(S.actSnoozed, { who }),
    woken: S.actWoken,
  };
  return el("p", { class: "activity small", id: `a${a.id}`, dataset: { event: a.id } },
    el("span", { text: texts[a.action] || a.action }),
    a.note ? el("span", { class: "activity-note", text: ` — ${a.note}` }) : null,
    " · ",
    el("time", { datetime: a.at, text: timeLabel(a.at) }));
}

// The team's status and load: who is online, and each agent's open and unread conversations.
export function renderTeam(node, team, S, meId) {
  const online = team.filter((m) => m.status === "online").length;
  node.querySelector("summary").textContent = format(S.teamSummary, { online, total: team.length });
  node.querySelector("ul").replaceChildren(...team.map((m) => el("li", { class: "team-row" },
    el("span", { class: `agent-dot status-${m.status}`, "aria-hidden": "true" }),
    el("span", { class: "team-name", text: m.id === meId ? `${m.name} (${S.you})` : m.name }),
    el("span", { class: "muted", text: S[`agent_${m.status}`] }),
    el("span", { class: "team-load", text: format(S.teamLoad, { open: m.open, unread: m.unread }) }))));
}

// The soft lock: a reply into a conversation another agent holds is refused with held_by_other;
// the agent confirms and the same message goes again with takeover. True when handled here.
export function confirmTakeover(frame, pending, resend) {
  if (frame.code !== "held_by_other" || !frame.client_msg_id) return false;
  const m = pending.get(frame.client_msg_id);
  if (!m) return false;
  if (window.confirm(frame.message)) {
    m.takeover = true;
    resend(m);
  } else {
    pending.delete(frame.client_msg_id);
  }
  return true;
}
