// flagstream review console. Every piece of post text reaches the page through textContent only:
// no innerHTML, no attribute built from post text other than dataset keys set as properties.
"use strict";

const S = {
  token: null, reviewer: "console", rows: [], sel: 0, item: null, pending: {}, cursor: 0,
  showMembers: false, busy: false,
};

function el(tag, props, ...kids) {
  const n = document.createElement(tag);
  for (const [k, v] of Object.entries(props || {})) {
    if (k === "text") n.textContent = v;
    else if (k === "cls") n.className = v;
    else if (k === "data") Object.assign(n.dataset, v);
    else n.setAttribute(k, v);
  }
  for (const kid of kids) if (kid != null) n.append(kid);
  return n;
}

function headers(extra) {
  const h = Object.assign({}, extra || {});
  if (S.token) h["X-Flagstream-Token"] = S.token;
  return h;
}

async function api(path, opts) {
  const r = await fetch(path, Object.assign({}, opts || {}, { headers: headers(opts && opts.headers) }));
  const body = await r.json().catch(() => ({}));
  return { status: r.status, body };
}

function status(text, isError) {
  const s = document.getElementById("status");
  s.textContent = text;
  s.className = isError ? "error" : "";
}

function segmentsNode(segs, cls) {
  const box = el("div", { cls: cls || "text", dir: "ltr" });
  for (const seg of segs) {
    const span = el("span", { text: seg.t });
    const classes = [];
    if (seg.ctl) classes.push("ctl");
    if (seg.labels && seg.labels.length === 1) classes.push("hl-" + seg.labels[0].replace(/[^a-z0-9_-]/gi, ""));
    if (seg.labels && seg.labels.length > 1) classes.push("hl-multi");
    if (seg.labels && seg.labels.length) span.title = "drove: " + seg.labels.join(", ");
    if (seg.ctl) span.title = "hidden character " + seg.t;
    span.className = classes.join(" ");
    box.append(span);
  }
  return box;
}

function filters() {
  const p = new URLSearchParams();
  p.set("order", document.getElementById("order").value);
  for (const f of ["label", "lang", "topic"]) {
    const v = document.getElementById("f-" + f).value;
    if (v) p.set(f, v);
  }
  return p.toString();
}

function fillFacet(id, values) {
  const sel = document.getElementById(id);
  const keep = sel.value;
  while (sel.options.length > 1) sel.remove(1);
  for (const v of values) sel.add(new Option(v, v));
  if (values.includes(keep)) sel.value = keep;
}

async function loadQueue() {
  const keepKey = S.rows[S.sel] && S.rows[S.sel].key;
  const { status: code, body } = await api("/api/queue?" + filters());
  if (code !== 200) { status(body.error || ("queue: HTTP " + code), true); return; }
  S.rows = body.rows;
  fillFacet("f-label", body.facets.label);
  fillFacet("f-lang", body.facets.lang);
  fillFacet("f-topic", body.facets.topic);
  const idx = S.rows.findIndex((r) => r.key === keepKey);
  S.sel = idx >= 0 ? idx : Math.min(S.sel, Math.max(0, S.rows.length - 1));
  renderQueue();
  if (body.stale) status(body.total + " to review, but this console cannot read its topics: the queue may be out of date", true);
  else status(body.total + " to review" + (body.caught_up ? "" : " (still reading topics)"));
  const cur = S.rows[S.sel];
  if (!cur) { S.item = null; renderItem(); }
  else if (!S.item || S.item.key !== cur.key) await loadItem();
}

function renderQueue() {
  const q = document.getElementById("queue");
  q.replaceChildren();
  S.rows.forEach((r, i) => {
    const li = el("li", { data: { key: r.key, id: r.id } });
    if (i === S.sel) li.classList.add("selected");
    li.append(el("strong", { text: r.score.toFixed(3) + " " }), el("span", { text: r.audit ? "audit" : r.labels.join(", ") }));
    if (r.count > 1) li.append(el("span", { cls: "count", text: "×" + r.count }));
    li.append(el("span", { cls: "meta", text: [r.id, r.lang || "", r.topic || ""].filter(Boolean).join(" · ") }));
    li.append(segmentsNode(r.preview, "meta"));
    li.addEventListener("click", () => select(i));
    q.append(li);
  });
  document.getElementById("queue-empty").hidden = S.rows.length > 0;
  const selected = q.querySelector("li.selected");
  if (selected) selected.scrollIntoView({ block: "nearest" });
}

async function loadItem() {
  const cur = S.rows[S.sel];
  if (!cur) return;
  const { status: code, body } = await api("/api/item?key=" + encodeURIComponent(cur.key) + (S.showMembers ? "&members=1" : ""));
  if (code === 404) { await loadQueue(); return; }
  S.item = body;
  S.pending = {};
  S.cursor = 0;
  renderItem();
}

function flaggedLabels() {
  return S.item ? (S.item.decide || S.item.labels) : [];
}

function renderItem() {
  const box = document.getElementById("item");
  box.replaceChildren();
  const it = S.item;
  if (!it) { box.append(el("p", { text: "Nothing selected." })); return; }
  box.dataset.key = it.key;
  const title = el("h2", { text: "post " + it.id });
  if (it.count > 1) title.append(" ", el("span", { cls: "count", text: "campaign ×" + it.count }));
  box.append(title);
  box.append(segmentsNode(it.segments));
  if (it.spans_skipped) box.append(el("p", { cls: "meta", text: "No words highlighted: the stream was too busy to explain this post (" + it.spans_skipped + ")." }));
  if (it.bank_match) {
    const m = it.bank_match, d = m.decision || {};
    box.append(el("p", { cls: "meta bank-match", data: { bank: m.bank },
      text: "Known content: matches " + m.bank + " bank entry " + m.entry_id + " (" + m.match + ", similarity " +
        Number(m.similarity).toFixed(2) + "; " + (m.labels || []).join(", ") + "), banked by decision " +
        (d.decision_id || "?") + (d.post_id ? " on post " + d.post_id : "") + (d.decided_at ? " at " + d.decided_at : "") + "." }));
  }
  const table = el("table", { cls: "scores" });
  table.append(el("tr", {}, el("th", { text: "label" }), el("th", { text: "score" }), el("th", { text: "threshold" }), el("th", { text: "" })));
  for (const s of it.scores) {
    const bar = el("span", { cls: "bar" });
    const fill = el("i"); fill.style.width = (100 * s.score).toFixed(1) + "%";
    bar.append(fill);
    if (s.threshold != null) { const t = el("b"); t.style.left = (100 * s.threshold).toFixed(1) + "%"; bar.append(t); }
    table.append(el("tr", {}, el("td", { text: s.label + (s.flagged ? " ⚑" : "") }), el("td", { text: s.score.toFixed(3) }),
      el("td", { text: s.threshold != null ? Number(s.threshold).toFixed(3) : "-" }), el("td", {}, bar)));
  }
  box.append(table);
  const m = it.model || {}, src = it.source || {};
  box.append(el("p", { cls: "meta-line", text: "model " + (m.name || "?") + "@" + (m.version || "?") +
    " · from " + (src.topic || "?") + "[" + src.partition + "]@" + src.offset + (it.lang ? " · lang " + it.lang : "") +
    " · flagged " + (it.flagged_at || "?") }));
  const rows = el("div", { cls: "verdicts" });
  flaggedLabels().forEach((label, i) => {
    const row = el("div", { cls: "verdict-row" + (i === S.cursor ? " active" : ""), data: { label } });
    row.append(el("span", { text: (i + 1) + " " + label + ": " }));
    for (const v of ["confirm", "reject", "unsure"]) {
      const b = el("button", { text: v, type: "button" });
      if (S.pending[label] === v) b.classList.add("on");
      b.addEventListener("click", () => { S.cursor = i; setVerdict(v); });
      row.append(b);
    }
    rows.append(row);
  });
  box.append(rows);
  if (it.members) {
    const ol = el("ol", { cls: "members" });
    for (const mem of it.members) {
      const li = el("li", {}, el("span", { text: mem.id + " (" + mem.score.toFixed(3) + ") " }));
      li.append(segmentsNode(mem.segments, "meta"));
      ol.append(li);
    }
    box.append(el("h3", { text: "campaign members" }), ol);
  }
}

async function select(i) {
  if (i < 0 || i >= S.rows.length) return;
  S.sel = i;
  renderQueue();
  await loadItem();
}

function setVerdict(v) {
  const labels = flaggedLabels();
  if (!labels.length) return;
  S.pending[labels[S.cursor]] = v;
  const next = labels.findIndex((l) => !(l in S.pending));
  if (next < 0) { submit(); return; }
  S.cursor = next;
  renderItem();
}

function setAll(v) {
  for (const l of flaggedLabels()) S.pending[l] = v;
  submit();
}

async function submit() {
  if (!S.item || S.busy) return;
  S.busy = true;
  const key = S.item.key;
  try {
    const { status: code, body } = await api("/api/decide", {
      method: "POST", headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ key, verdicts: S.pending }),
    });
    if (code === 200) status("decided " + body.ids.length + " post(s)");
    else status(body.error || ("decide: HTTP " + code), code !== 409);
    S.rows = S.rows.filter((r) => r.key !== key);
    S.sel = Math.min(S.sel, Math.max(0, S.rows.length - 1));
    S.item = null;
    renderQueue();
    await loadQueue();
    await loadStats();
  } finally {
    S.busy = false;
  }
}

async function loadStats() {
  const { status: code, body } = await api("/api/stats");
  if (code !== 200) return;
  const dl = document.getElementById("stats");
  dl.replaceChildren();
  for (const [k, v] of [["queue (items)", body.queue_items], ["queue (posts)", body.queue_posts],
    ["decisions", body.decisions], ["decisions / hour", body.decisions_last_hour],
    ["waited past SLA", body.time_to_decision ? body.time_to_decision.over_sla + " of " + body.time_to_decision.posts +
      " past " + body.time_to_decision.sla_s + " s (max " + body.time_to_decision.max_s + " s)" : "-"]]) {
    dl.append(el("dt", { text: k }), el("dd", { text: String(v), data: { stat: k } }));
  }
  const tb = document.querySelector("#rates tbody");
  tb.replaceChildren();
  const pct = (x) => (x == null ? "-" : (100 * x).toFixed(1) + "%");
  for (const [label, r] of Object.entries(body.labels)) {
    tb.append(el("tr", { data: { label } }, el("td", { text: label }), el("td", { text: String(r.confirm) }),
      el("td", { text: String(r.reject) }), el("td", { text: String(r.unsure) }),
      el("td", { text: pct(r.reject_rate) }), el("td", { text: pct(r.reject_rate_last_100) })));
  }
}

function onKey(e) {
  if (e.target && ["INPUT", "SELECT", "TEXTAREA"].includes(e.target.tagName)) {
    if (e.key === "Escape") e.target.blur();
    return;
  }
  if (e.ctrlKey || e.metaKey || e.altKey) return;
  const k = e.key;
  if (k === "j" || k === "ArrowDown") select(S.sel + 1);
  else if (k === "k" || k === "ArrowUp") select(S.sel - 1);
  else if (/^[1-9]$/.test(k)) { const i = Number(k) - 1; if (i < flaggedLabels().length) { S.cursor = i; renderItem(); } }
  else if (k === "c" || k === "r" || k === "u") setVerdict({ c: "confirm", r: "reject", u: "unsure" }[k]);
  else if (k === "C" || k === "R" || k === "U") setAll({ C: "confirm", R: "reject", U: "unsure" }[k]);
  else if (k === "m") { S.showMembers = !S.showMembers; loadItem(); }
  else if (k === "o") { const o = document.getElementById("order"); o.value = o.value === "score" ? "campaign" : "score"; S.rows = []; S.sel = 0; loadQueue(); }
  else if (k === "g") loadQueue();
  else if (k === "Escape") { S.pending = {}; S.cursor = 0; renderItem(); }
  else return;
  e.preventDefault();
}

async function init() {
  const hash = new URLSearchParams(location.hash.slice(1));
  if (hash.get("token")) { sessionStorage.setItem("flagstream-token", hash.get("token")); history.replaceState(null, "", location.pathname + location.search); }
  S.token = sessionStorage.getItem("flagstream-token");
  const { status: code, body } = await api("/api/config");
  if (code !== 200) { status(body.error || "not authorised", true); return; }
  S.reviewer = body.reviewer;  // the server's idea of who is deciding; a ?reviewer= in the URL means nothing
  for (const id of ["order", "f-label", "f-lang", "f-topic"]) {
    document.getElementById(id).addEventListener("change", () => { S.rows = []; S.sel = 0; loadQueue(); });
  }
  document.addEventListener("keydown", onKey);
  await loadQueue();
  await loadStats();
  setInterval(() => { if (!S.busy) { loadQueue(); loadStats(); } }, 4000);
  document.body.dataset.ready = "1";
}

document.addEventListener("DOMContentLoaded", init);
