// The debate list: the question of each debate, a search box and the list filters, all mirrored
// in the page URL (shareable); keyset pages via next_cursor. A search is a bounded scan on the
// server (each request reads a window of debates), so a page may come back short: the page asks
// for more on its own, a few windows per click, before it offers to search further.
"use strict";

const FILTERS = ["q", "dataset", "job", "status", "consensus", "team_correct", "agent", "rounds_used"];
const PAGE = 50;
const WINDOWS_PER_CLICK = 5;
let cursor = null;

function query() {
  const params = new URLSearchParams();
  const form = document.getElementById("filters");
  for (const name of FILTERS) {
    const value = form.elements[name].value.trim();
    if (value) params.set(name, value);
  }
  return params;
}

function correctMark(value) {
  if (value === true) return el("span", { class: "badge correct", title: "team answer correct" }, "✓");
  if (value === false) return el("span", { class: "badge incorrect", title: "team answer incorrect" }, "✗");
  return "–";
}

function row(d) {
  const href = `/viewer/debates/${encodeURIComponent(d.id)}`;
  return el("tr", {},
    el("td", { class: "question" },
      el("a", { href }, d.question_text ?? d.question_id),
      el("div", { class: "sub" }, `${d.id} · ${d.dataset}${d.job_id ? ` · ${d.job_id}` : ""}`)),
    el("td", { class: "team" }, el("span", {}, d.team_answer ?? "–"), " ", correctMark(d.team_correct)),
    el("td", {}, fmtBool(d.consensus)), el("td", {}, d.rounds_used ?? "–"),
    el("td", { class: "wide" }, d.status), el("td", { class: "wide" }, (d.agents || []).join(", ")),
    el("td", { class: "wide" }, d.tokens_in + d.tokens_out));
}

async function loadPage(reset) {
  const status = document.getElementById("status");
  const body = document.querySelector("#debates tbody");
  const more = document.getElementById("more");
  const params = query();
  const searching = params.has("q");
  if (reset) {
    cursor = null;
    body.replaceChildren();
    history.replaceState(null, "", params.toString() ? `?${params}` : location.pathname);
  }
  params.set("limit", String(PAGE));
  status.textContent = searching ? "searching…" : "loading…";
  status.className = "muted";
  try {
    let added = 0;
    for (let i = 0; i < (searching ? WINDOWS_PER_CLICK : 1); i++) {
      if (cursor) params.set("cursor", cursor);
      const page = await api(`/v1/debates?${params}`);
      page.items.forEach((d) => body.append(row(d)));
      added += page.items.length;
      cursor = page.next_cursor;
      if (!cursor || added >= PAGE) break;
    }
    more.hidden = !cursor;
    more.textContent = searching ? "Search further" : "Next page";
    const n = body.children.length;
    status.textContent = n ? `${n} debate(s)${cursor ? (searching ? "; more may match further on" : "") : ""}`
      : cursor ? "no match yet; more debates to search" : "no debates match";
  } catch (err) {
    status.textContent = String(err.message || err);
    status.className = "error";
  }
}

function init() {
  const form = document.getElementById("filters");
  const initial = new URLSearchParams(location.search);
  for (const name of FILTERS) if (initial.has(name)) form.elements[name].value = initial.get(name);
  form.addEventListener("submit", (ev) => { ev.preventDefault(); loadPage(true); });
  document.getElementById("more").addEventListener("click", () => loadPage(false));
  setupToken(() => loadPage(true));
  loadPage(true);
}

init();
