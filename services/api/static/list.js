// The debate list: filters mirrored in the page URL (shareable), keyset pages via next_cursor.
"use strict";

const FILTERS = ["dataset", "job", "status", "consensus", "team_correct", "agent", "rounds_used"];
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

function row(d) {
  return el("tr", {},
    el("td", {}, el("a", { href: `/viewer/debates/${encodeURIComponent(d.id)}` }, d.id)),
    el("td", {}, d.dataset), el("td", {}, d.status), el("td", {}, d.team_answer ?? "–"),
    el("td", {}, fmtBool(d.team_correct)), el("td", {}, fmtBool(d.consensus)), el("td", {}, d.rounds_used ?? "–"),
    el("td", {}, (d.agents || []).join(", ")), el("td", {}, d.tokens_in + d.tokens_out));
}

async function loadPage(reset) {
  const status = document.getElementById("status");
  const body = document.querySelector("#debates tbody");
  const params = query();
  if (reset) {
    cursor = null;
    body.replaceChildren();
    history.replaceState(null, "", params.toString() ? `?${params}` : location.pathname);
  }
  if (cursor) params.set("cursor", cursor);
  params.set("limit", "50");
  try {
    const page = await api(`/v1/debates?${params}`);
    page.items.forEach((d) => body.append(row(d)));
    cursor = page.next_cursor;
    document.getElementById("more").hidden = !cursor;
    status.textContent = body.children.length ? `${body.children.length} debate(s)` : "no debates match";
    status.className = "muted";
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
