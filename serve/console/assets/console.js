// The samops console: one page, a view per hash (#overview, #history[/ID], #resources[/NAME],
// #review). Everything shown comes from /console/api/* as JSON and reaches the page only through
// textContent and attributes (the `h` helper): manifest text can never become markup. No
// library, nothing fetched from elsewhere (the server's Content-Security-Policy forbids it).
"use strict";

const state = { session: null, view: null, timer: null };
const POLL_MS = 2000;

// --- DOM ---------------------------------------------------------------------------------

function h(tag, attrs, ...children) {
  const svg = ["svg", "g", "rect", "line", "text", "path", "title"].includes(tag);
  const node = svg
    ? document.createElementNS("http://www.w3.org/2000/svg", tag)
    : document.createElement(tag);
  for (const [name, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (name.startsWith("on")) node.addEventListener(name.slice(2), value);
    else node.setAttribute(name, value === true ? "" : String(value));
  }
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

function show(...nodes) {
  const main = document.getElementById("main");
  main.replaceChildren(...nodes);
}

function toast(text, bad) {
  const box = document.getElementById("toast");
  box.textContent = text;
  box.className = bad ? "bad" : "";
  box.hidden = false;
  clearTimeout(toast.timer);
  toast.timer = setTimeout(() => { box.hidden = true; }, 4000);
}

const short = (revision) => (revision ? revision.slice(0, 12) : "–");

function ago(iso) {
  if (!iso) return "never";
  const seconds = Math.max(0, Math.round((Date.now() - Date.parse(iso)) / 1000));
  if (seconds < 60) return `${seconds} s ago`;
  if (seconds < 3600) return `${Math.round(seconds / 60)} min ago`;
  if (seconds < 86400) return `${Math.round(seconds / 3600)} h ago`;
  return `${Math.round(seconds / 86400)} d ago`;
}

const badge = (outcome) => h("span", { class: `badge ${outcome}` }, outcome);

function where(error) {
  const place = [error.file, error.line, error.column].filter((x) => x !== null && x !== undefined);
  return place.join(":");
}

function errorList(errors) {
  return h("ul", { class: "errors" }, errors.map((e) =>
    h("li", {},
      h("code", { class: "where" }, where(e) || "(revision)"),
      e.path ? h("code", { class: "path" }, e.path) : null,
      h("span", { class: "message" }, e.message),
      e.hint ? h("div", { class: "hint" }, "hint: ", e.hint) : null)));
}

function value(v) {
  if (v === null || v === undefined) return "–";
  return typeof v === "string" ? v : JSON.stringify(v);
}

function planView(plan) {
  if (!plan.changes.length) return h("p", { class: "muted" }, "No changes.");
  return h("div", { class: "plan" }, plan.changes.map((c) =>
    h("details", { class: `change ${c.action}`, open: plan.changes.length <= 8 },
      h("summary", {}, h("span", { class: `action ${c.action}` }, c.action), " ",
        h("strong", {}, `${c.kind}/${c.name}`), " ", h("span", { class: "muted" }, c.file || "")),
      c.fields.length
        ? h("table", { class: "fields" },
          h("tr", {}, h("th", {}, "field"), h("th", {}, "before"), h("th", {}, "after")),
          c.fields.map((f) => h("tr", {}, h("td", {}, h("code", {}, f.path)),
            h("td", { class: "before" }, value(f.before)),
            h("td", { class: "after" }, value(f.after)))))
        : null)));
}

// --- the API -----------------------------------------------------------------------------

class ApiError extends Error {
  constructor(status, code, message) { super(message); this.status = status; this.code = code; }
}

async function api(method, path, body) {
  const headers = { Accept: "application/json" };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  if (method !== "GET" && state.session) headers["X-CSRF-Token"] = state.session.csrf;
  const response = await fetch(path, {
    method, headers, body: body === undefined ? undefined : JSON.stringify(body),
    credentials: "same-origin",
  });
  const data = await response.json().catch(() => ({}));
  if (!response.ok) {
    const error = data.error || {};
    if (response.status === 401 && error.code === "not_signed_in") signIn();
    throw new ApiError(response.status, error.code || "error", error.message || response.statusText);
  }
  return data;
}

// Server-sent events from a POST (the playground): calls onEvent(name, data) for each.
async function postEvents(path, body, onEvent) {
  const response = await fetch(path, {
    method: "POST",
    headers: { "Content-Type": "application/json", "X-CSRF-Token": state.session.csrf },
    body: JSON.stringify(body), credentials: "same-origin",
  });
  if (!response.ok) {
    const data = await response.json().catch(() => ({}));
    const error = data.error || {};
    onEvent("error", { status: response.status, code: error.code, message: error.message });
    return;
  }
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  let buffer = "";
  for (;;) {
    const { done, value: bytes } = await reader.read();
    if (done) break;
    buffer += decoder.decode(bytes, { stream: true });
    let end;
    while ((end = buffer.indexOf("\n\n")) >= 0) {
      const block = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      let name = "message", data = "";
      for (const line of block.split("\n")) {
        if (line.startsWith("event: ")) name = line.slice(7);
        else if (line.startsWith("data: ")) data += line.slice(6);
      }
      onEvent(name, data ? JSON.parse(data) : null);
    }
  }
}

// --- signing in --------------------------------------------------------------------------

async function start() {
  const fragment = new URLSearchParams(location.hash.slice(1));
  const key = fragment.get("key");
  if (key) {  // the sign-in link `samops run` printed: use it once, then forget it
    history.replaceState(null, "", location.pathname + "#overview");
    try {
      state.session = await api("POST", "/console/api/session", { key });
    } catch (error) {
      toast(`That sign-in link is not valid any more: ${error.message}`, true);
    }
  }
  if (!state.session) {
    const session = await api("GET", "/console/api/session");
    if (session.signed_in) state.session = session;
    else return signIn(session);
  }
  signedIn();
}

function signIn(info) {
  state.session = null;
  clearInterval(state.timer);
  document.getElementById("nav").hidden = true;
  document.getElementById("who").replaceChildren();
  const input = h("input", { type: "password", id: "key", autocomplete: "current-password",
    placeholder: "admin or viewer key", "aria-label": "key" });
  const message = h("p", { class: "hint" }, info && info.hint ? info.hint : "");
  const form = h("form", { class: "card signin", onsubmit: async (event) => {
    event.preventDefault();
    try {
      state.session = await api("POST", "/console/api/session", { key: input.value });
      input.value = "";
      signedIn();
    } catch (error) {
      message.textContent = error.message;
      message.className = "bad";
    }
  } }, h("h1", {}, "Sign in"), input, h("button", { type: "submit" }, "Sign in"), message);
  show(form);
  input.focus();
}

function signedIn() {
  document.getElementById("nav").hidden = false;
  const out = h("button", { class: "link", id: "sign-out", onclick: async () => {
    await api("DELETE", "/console/api/session").catch(() => null);
    signIn();
  } }, "Sign out");
  document.getElementById("who").replaceChildren(
    h("span", { class: `role ${state.session.role}` }, state.session.role), " ", out);
  route();
}

// --- views -------------------------------------------------------------------------------

window.addEventListener("hashchange", () => state.session && route());

function route() {
  clearInterval(state.timer);
  const [view, ...rest] = (location.hash.slice(1) || "overview").split("/");
  const argument = rest.length ? decodeURIComponent(rest.join("/")) : null;
  state.view = view;
  for (const link of document.querySelectorAll("#nav a")) {
    link.classList.toggle("current", link.dataset.view === view);
  }
  const views = { overview, history: argument ? syncDetail : historyView,
    resources: argument ? clientDetail : resourcesView, review: reviewView };
  (views[view] || overview)(argument).catch((error) => {
    if (!(error instanceof ApiError && error.code === "not_signed_in")) {
      show(h("div", { class: "card bad" }, `Could not load this view: ${error.message}`));
    }
  });
}

function poll(refresh) {
  clearInterval(state.timer);
  state.timer = setInterval(() => refresh().catch(() => null), POLL_MS);
}

async function overview() {
  const box = h("div", { id: "overview" });
  show(box);
  const refresh = async () => {
    const o = await api("GET", "/console/api/overview");
    box.replaceChildren(...overviewCards(o));
  };
  await refresh();
  poll(refresh);
}

function row(label, ...content) {
  return h("tr", {}, h("th", {}, label), h("td", {}, ...content));
}

function overviewCards(o) {
  const followed = o.followed || {};
  const last = o.last_sync;
  const facts = h("table", { class: "facts" },
    row("source", followed.source || o.source || "–"),
    row("ref", followed.ref || "–", followed.path ? ` · folder ${followed.path}` : ""),
    row("applied", h("code", { id: "applied-revision", title: o.last_applied_revision || "" },
      short(o.last_applied_revision))),
    row("attempted", h("code", { id: "attempted-revision" }, short(o.last_attempted_revision))),
    row("generation", h("span", { id: "generation" }, String(o.generation))),
    row("last sync", last ? [badge(last.outcome), " ", ago(last.finished_at)] : "none yet"),
    row("reconciling", h("span", { id: "suspended", class: o.suspended ? "bad" : "good" },
      o.suspended ? `suspended (${o.suspended_reason || "no reason given"})` : "active")));
  const cards = [h("section", { class: "card" }, h("h2", {}, "State"), facts, actions(o))];
  if (last && last.errors_total) {
    cards.push(h("section", { class: "card bad-border", id: "last-errors" },
      h("h2", {}, `Revision ${short(last.revision)} was not applied: `,
        `${last.errors_total} error${last.errors_total === 1 ? "" : "s"}`),
      errorList(last.errors)));
  }
  cards.push(h("section", { class: "card" }, h("h2", {}, "Processes"),
    o.processes.length
      ? h("table", { class: "list", id: "processes" },
        h("tr", {}, ["process", "role", "leads", "serves generation", "seen"].map((t) => h("th", {}, t))),
        o.processes.map((p) => h("tr", {},
          h("td", {}, `${p.host}:${p.pid}`), h("td", {}, p.role), h("td", {}, p.leads ? "yes" : ""),
          h("td", { class: p.served_generation === o.generation ? "good" : "warn" },
            String(p.served_generation)),
          h("td", {}, ago(p.seen_at)))))
      : h("p", { class: "muted" }, "No process has reported yet.")));
  cards.push(h("section", { class: "card" }, h("h2", {}, "Resources"),
    h("p", {}, Object.entries(o.resources).filter(([, n]) => n)
      .map(([kind, n]) => `${n} ${kind}`).join(" · ") || "none")));
  return cards;
}

function actions(o) {
  if (state.session.role !== "admin") {
    return h("p", { class: "muted", id: "read-only" }, "Read-only: viewers cannot act.");
  }
  const act = (name, body) => async () => {
    try {
      await api("POST", `/console/api/actions/${name}`, body || {});
      toast(`${name}: done`);
      if (state.view === "overview") route();
    } catch (error) { toast(`${name}: ${error.message}`, true); }
  };
  return h("div", { class: "actions" },
    o.suspended
      ? h("button", { id: "resume", onclick: act("resume") }, "Resume")
      : h("button", { id: "suspend", onclick: act("suspend", { reason: "suspended from the console" }) }, "Suspend"),
    h("button", { id: "reconcile", onclick: act("reconcile") }, "Reconcile now"));
}

async function historyView() {
  const table = h("table", { class: "list", id: "history" });
  const more = h("button", { class: "link" }, "Older syncs");
  show(h("section", { class: "card" }, h("h2", {}, "Sync history"), table, more));
  const header = h("tr", {}, ["#", "revision", "outcome", "started", "duration", "created", "updated",
    "deleted", "errors"].map((t) => h("th", {}, t)));
  let before = null;
  const load = async (append) => {
    const page = await api("GET", `/console/api/syncs${before ? `?before=${before}` : ""}`);
    const rows = page.syncs.map((s) => h("tr", { class: "clickable", onclick: () => { location.hash = `#history/${s.id}`; } },
      h("td", {}, h("a", { href: `#history/${s.id}` }, String(s.id))), h("td", {}, h("code", {}, short(s.revision))),
      h("td", {}, badge(s.outcome)), h("td", {}, ago(s.started_at)), h("td", {}, `${s.duration_ms} ms`),
      h("td", {}, String(s.created)), h("td", {}, String(s.updated)), h("td", {}, String(s.deleted)),
      h("td", { class: s.errors_total ? "bad" : "" }, String(s.errors_total))));
    if (append) table.append(...rows); else table.replaceChildren(header, ...rows);
    if (page.syncs.length) before = page.syncs[page.syncs.length - 1].id;
    more.hidden = !page.more;
  };
  more.onclick = () => load(true);
  await load(false);
  poll(async () => { if (!before || table.rows.length <= 51) { before = null; await load(false); } });
}

async function syncDetail(id) {
  const s = await api("GET", `/console/api/syncs/${encodeURIComponent(id)}`);
  const parts = [h("h2", {}, `Sync ${s.id}: `, badge(s.outcome), " ", h("code", {}, short(s.revision))),
    h("p", { class: "muted" }, `${s.started_at} · ${s.duration_ms} ms · generation ${s.generation} · `,
      `${s.created} created, ${s.updated} updated, ${s.deleted} deleted`)];
  if (s.errors.length) {
    parts.push(h("h3", {}, `${s.errors_total} error${s.errors_total === 1 ? "" : "s"}`), errorList(s.errors));
  }
  if (s.plan) {
    parts.push(h("h3", {}, `Plan against ${s.base ? short(s.base) : "nothing"}`), flagList(s.plan.flags),
      planView(s.plan));
  } else if (s.plan_unavailable) {
    parts.push(h("p", { class: "muted" }, `No plan: ${s.plan_unavailable}`));
  }
  show(h("p", {}, h("a", { href: "#history" }, "← history")), h("section", { class: "card", id: "sync" }, parts));
}

function flagList(flags) {
  if (!flags || !flags.length) return h("p", { class: "muted" }, "No risk flags.");
  return h("ul", { class: "flags" }, flags.map((f) =>
    h("li", { class: `flag ${f.level}` }, h("span", { class: "level" }, f.level), " ",
      h("code", {}, f.code), " ", h("strong", {}, `${f.kind}/${f.name}`), ": ", f.reason)));
}

async function resourcesView() {
  const r = await api("GET", "/console/api/resources");
  const clients = h("table", { class: "list", id: "clients" },
    h("tr", {}, ["client", "provider", "model", "plugins", "functions", "keys", "budgets", "turns 24 h",
      "tokens 24 h", "cost 24 h"].map((t) => h("th", {}, t))),
    r.clients.map((c) => h("tr", {},
      h("td", {}, h("a", { href: `#resources/${encodeURIComponent(c.name)}` }, c.name)),
      h("td", {}, c.provider || "–"), h("td", {}, c.model || "–"),
      h("td", {}, c.plugins.join(", ") || "–"), h("td", {}, c.functions.join(", ") || "–"),
      h("td", {}, c.keys.length ? c.keys.map((k) => h("div", { title: k.digests.join(" ") },
        `${k.name}${k.active === false ? " (inactive)" : ""} `, h("code", {}, (k.digests[0] || "").replace(/^sha\d+:/, "")))) : "none (public)"),
      h("td", {}, c.budgets.join(", ") || "–"),
      h("td", {}, c.usage ? String(c.usage.turns) : "0"),
      h("td", {}, c.usage ? String(c.usage.total_tokens) : "0"),
      h("td", {}, c.usage ? `$${c.usage.cost_usd}${c.usage.cost_unknown_turns ? " + unpriced" : ""}` : "–"))));
  const others = h("table", { class: "list" },
    h("tr", {}, ["kind", "name", "file", "refers to"].map((t) => h("th", {}, t))),
    r.resources.filter((x) => x.kind !== "LLMClient").map((x) => h("tr", {},
      h("td", {}, x.kind), h("td", {}, x.name), h("td", { class: "muted" }, x.file || ""),
      h("td", {}, x.refers_to.map((t) => `${t.kind}/${t.name}`).join(", ")))));
  show(h("section", { class: "card" }, h("h2", {}, "LLM clients"), clients),
    h("section", { class: "card" }, h("h2", {}, "Everything else"), others));
}

async function clientDetail(name) {
  const r = await api("GET", "/console/api/resources");
  const client = r.clients.find((c) => c.name === name);
  if (!client) {
    show(h("div", { class: "card bad" }, `There is no applied client named ${name}.`));
    return;
  }
  const resource = r.resources.find((x) => x.kind === "LLMClient" && x.name === name);
  show(h("p", {}, h("a", { href: "#resources" }, "← resources")),
    h("section", { class: "card" }, h("h2", {}, `LLM client ${name}`),
      h("p", { class: "muted" }, `${client.provider || "openai"} · ${client.model || "default model"} · ${client.file || ""}`),
      graph(client), h("details", {}, h("summary", {}, "Applied fields"),
        h("pre", { class: "fields" }, JSON.stringify(resource.fields, null, 2)))),
    h("section", { class: "card" }, h("h2", {}, "Playground"), playground(name, null)));
}

// The client's dependencies as a picture: the client in the middle, what it refers to on the
// right (columns by distance), its keys and budgets on the left.
function graph(client) {
  const center = `LLMClient/${client.name}`;
  const column = new Map([[center, 0]]);
  const edges = client.edges.map((e) => [`${e[0]}/${e[1]}`, `${e[2]}/${e[3]}`]);
  for (let changed = true; changed;) {
    changed = false;
    for (const [from, to] of edges) {
      const kind = from.split("/")[0];
      if (["SmarterAuthToken", "Budget"].includes(kind) && !column.has(from)) {
        if (column.has(to)) { column.set(from, Math.min(0, column.get(to)) - 1); changed = true; }
      } else if (column.has(from) && !column.has(to)) {
        column.set(to, column.get(from) + 1); changed = true;
      }
    }
  }
  for (const [from, to] of edges) for (const n of [from, to]) if (!column.has(n)) column.set(n, 0);
  const columns = new Map();
  for (const [node, c] of column) (columns.get(c) || columns.set(c, []).get(c)).push(node);
  const keys = [...columns.keys()].sort((a, b) => a - b);
  const W = 190, H = 34, GX = 60, GY = 16;
  const place = new Map();
  keys.forEach((c, i) => columns.get(c).sort().forEach((node, j) => place.set(node, [i * (W + GX) + 10, j * (H + GY) + 10])));
  const width = keys.length * (W + GX) + 20 - GX;
  const height = Math.max(...keys.map((c) => columns.get(c).length)) * (H + GY) + 20 - GY;
  const svg = h("svg", { class: "graph", id: "graph", viewBox: `0 0 ${width} ${height}`, width, height,
    role: "img", "aria-label": `what ${client.name} depends on` });
  for (const [from, to] of edges) {
    const [x1, y1] = place.get(from), [x2, y2] = place.get(to);
    const [a, b] = x1 <= x2 ? [[x1 + W, y1], [x2, y2]] : [[x2 + W, y2], [x1, y1]];
    svg.append(h("path", { d: `M${a[0]},${a[1] + H / 2} C${a[0] + GX / 2},${a[1] + H / 2} ${b[0] - GX / 2},${b[1] + H / 2} ${b[0]},${b[1] + H / 2}`, class: "edge" }));
  }
  for (const [node, [x, y]] of place) {
    const [kind, ...rest] = node.split("/");
    const label = rest.join("/");
    svg.append(h("g", { class: `node ${kind}${node === center ? " center" : ""}` },
      h("title", {}, node),
      h("rect", { x, y, width: W, height: H, rx: 6 }),
      h("text", { x: x + 8, y: y + 13, class: "kind" }, kind),
      h("text", { x: x + 8, y: y + 27, class: "name" }, label.length > 26 ? `${label.slice(0, 25)}…` : label)));
  }
  return h("div", { class: "graph-box" }, svg);
}

// A conversation with one client, streamed: the applied client, or (ref) a revision's.
function playground(name, ref) {
  const messages = [];
  const log = h("div", { class: "chat-log", id: ref ? "review-chat-log" : "chat-log" });
  const key = h("input", { type: "password", class: "chat-key", placeholder: "this client's API key",
    "aria-label": "API key", hidden: true });
  const input = h("input", { type: "text", class: "chat-input", placeholder: `Ask ${name}…`, "aria-label": "message" });
  const send = h("button", { type: "submit" }, "Send");
  const form = h("form", { class: "chat-form", onsubmit: async (event) => {
    event.preventDefault();
    const text = input.value.trim();
    if (!text) return;
    input.value = "";
    send.disabled = true;
    messages.push({ role: "user", content: text });
    log.append(h("div", { class: "msg user" }, text));
    const answer = h("div", { class: "msg assistant streaming" });
    const tools = h("div", { class: "tools" });
    log.append(tools, answer);
    let content = "";
    await postEvents(`/console/api/chat/${encodeURIComponent(name)}`,
      { messages, key: key.value || undefined, ref: ref || undefined }, (event, data) => {
        if (event === "delta") { content += data.content; answer.textContent = content; }
        else if (event === "progress" && data.type && data.type.startsWith("tool")) {
          tools.append(h("div", { class: `tool ${data.type}` }, "⚙ ", data.message || data.tool));
        } else if (event === "done") {
          answer.classList.remove("streaming");
          answer.append(h("div", { class: "meta" },
            `${data.model || ""}${data.usage ? ` · ${data.usage.total_tokens} tokens` : ""}`,
            data.generation !== undefined ? ` · generation ${data.generation}` : ` · ${data.revision}`));
          messages.push({ role: "assistant", content });
        } else if (event === "error") {
          answer.classList.remove("streaming");
          answer.classList.add("bad");
          answer.textContent = `${data.status} ${data.code}: ${data.message}`;
          messages.pop();
          if (["missing_key", "invalid_key", "wrong_key"].includes(data.code)) {
            key.hidden = false;
            key.focus();
            answer.append(h("div", { class: "hint" }, "This client needs its API key: enter it above and send again."));
          }
        }
        log.scrollTop = log.scrollHeight;
      }).catch((error) => { answer.textContent = String(error); });
    send.disabled = false;
  } }, key, input, send);
  return h("div", { class: "playground" }, log, form);
}

async function reviewView() {
  const base = h("input", { type: "text", id: "review-base", placeholder: "base (default: the applied revision)" });
  const head = h("input", { type: "text", id: "review-head", placeholder: "head: branch, tag or commit", required: true });
  const out = h("div", { id: "review-result" });
  const form = h("form", { class: "review-form", onsubmit: async (event) => {
    event.preventDefault();
    out.replaceChildren(h("p", { class: "muted" }, "Reading the revisions…"));
    try {
      const review = await api("POST", "/console/api/review", { base: base.value || null, head: head.value });
      out.replaceChildren(...reviewResult(review, head.value));
    } catch (error) {
      out.replaceChildren(h("p", { class: "bad" }, error.message));
    }
  } }, base, head, h("button", { type: "submit" }, "Review"));
  show(h("section", { class: "card" }, h("h2", {}, "Review a revision before merging"), form, out));
}

function reviewResult(review, ref) {
  const parts = [h("p", {}, `${short(review.base)} → ${short(review.head)}: `,
    `${review.summary.create} to create, ${review.summary.update} to update, ${review.summary.delete} to delete`)];
  if (!review.valid) {
    parts.push(h("h3", { class: "bad" }, "The head is invalid: it would not be applied"), errorList(review.errors));
    return parts;
  }
  parts.push(h("h3", {}, "Risk flags"), flagList(review.flags), h("h3", {}, "Plan"), planView(review));
  if (state.session.role === "admin") {
    const changed = review.changes.filter((c) => c.kind === "LLMClient" && c.action !== "delete");
    const pick = h("input", { type: "text", id: "review-client", placeholder: "client to chat with",
      value: changed.length ? changed[0].name : "" });
    const box = h("div", {});
    parts.push(h("h3", {}, `Chat with ${short(review.head)}`),
      h("form", { class: "review-form", onsubmit: (event) => {
        event.preventDefault();
        box.replaceChildren(playground(pick.value, ref));
      } }, pick, h("button", { type: "submit" }, "Open")), box);
  }
  return parts;
}

document.addEventListener("DOMContentLoaded", () => {
  start().catch((error) => show(h("div", { class: "card bad" }, `The console could not start: ${error.message}`)));
});
