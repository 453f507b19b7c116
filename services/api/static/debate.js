// Draws one MAG as SVG: agents as rows, rounds as columns, INFORMS edges as lines.
"use strict";

const SVG_NS = "http://www.w3.org/2000/svg";
const COLOURS = { 1: "#2e9d4f", 0: "#d64541", 2: "#9aa0a6" };  // label: correct, incorrect, absent/invalid
const GEOMETRY = { left: 150, top: 50, dx: 170, dy: 90, r: 20 };
// An answer label sits under its node and gets the width between two rounds (dx): about 20
// characters at 11px. A longer answer ends in an ellipsis; the node's tooltip and the side panel
// always show it in full.
const LABEL_MAX = 20;

function answerLabel(answer) {
  const chars = Array.from(answer ?? "");  // code points: never cut a character in half
  return chars.length <= LABEL_MAX ? chars.join("") : chars.slice(0, LABEL_MAX - 1).join("") + "…";
}

function svg(tag, attrs, text) {
  const node = document.createElementNS(SVG_NS, tag);
  for (const [key, value] of Object.entries(attrs)) node.setAttribute(key, value);
  if (text !== undefined) node.textContent = text;
  return node;
}

function debateIdFromUrl() {
  const parts = location.pathname.split("/").filter(Boolean);  // viewer, debates, <id>
  return decodeURIComponent(parts[parts.length - 1]);
}

function showQuestion(mag) {
  const q = mag.question, m = mag.metrics;
  const section = document.getElementById("question");
  section.replaceChildren(
    el("h2", {}, q.text),
    el("dl", {},
      el("dt", {}, "gold answer"), el("dd", {}, q.gold_answer ?? "–"),
      el("dt", {}, "team answer"), el("dd", { id: "team-answer" }, `${mag.team_answer ?? "–"} (correct: ${fmtBool(mag.team_correct)})`),
      el("dt", {}, "consensus"), el("dd", {}, fmtBool(mag.consensus)),
      el("dt", {}, "rounds used"), el("dd", {}, mag.rounds_used ?? m.rounds),
      el("dt", {}, "nodes / edges"), el("dd", {}, `${m.nodes} / ${m.edges}`),
      el("dt", {}, "tokens in / out, cost"), el("dd", {}, `${m.tokens_in} / ${m.tokens_out}, $${fmtNum(m.cost_usd, 4)}`),
      el("dt", {}, "dataset, job, protocol"), el("dd", {}, `${q.dataset}, ${mag.job_id ?? "–"}, ${mag.protocol}`),
    ));
  section.hidden = false;
}

function showNode(node) {
  const panel = document.getElementById("panel");
  panel.replaceChildren(...[
    el("h2", {}, `${node.agent}, round ${node.round}`),
    el("dl", {},
      el("dt", {}, "model"), el("dd", {}, node.model ?? "–"),
      el("dt", {}, "status"), el("dd", {}, node.parse_status),
      el("dt", {}, "answer"), el("dd", { id: "panel-answer" }, node.answer ?? "–"),
      el("dt", {}, "correct"), el("dd", {}, fmtBool(node.correct)),
      el("dt", {}, "confidence"), el("dd", { id: "panel-confidence" }, fmtNum(node.confidence, 2)),
      el("dt", {}, "recalibrated"), el("dd", {}, fmtNum(node.recalibrated_confidence, 2)),
      el("dt", {}, "tokens in / out"), el("dd", {}, `${node.tokens_in ?? "–"} / ${node.tokens_out ?? "–"}`),
    ),
    el("h3", {}, "Reasoning"),
    el("pre", { id: "panel-reasoning" }, node.reasoning ?? "(none)"),
    node.parse_error ? el("p", { class: "error" }, `parse error: ${node.parse_error}`) : null,
    node.raw_text ? el("details", {}, el("summary", {}, "raw output"), el("pre", {}, node.raw_text)) : null,
  ].filter((child) => child !== null));  // replaceChildren would print a null as the text "null"
}

function draw(mag) {
  const agents = mag.panel.map((a) => a.name);
  const rounds = Math.max(1, mag.metrics.rounds);
  const g = GEOMETRY;
  const where = (agent, round) => ({ x: g.left + round * g.dx, y: g.top + agents.indexOf(agent) * g.dy });
  const root = document.getElementById("mag");
  root.replaceChildren();
  root.setAttribute("width", g.left + rounds * g.dx);
  root.setAttribute("height", g.top + agents.length * g.dy);
  const defs = svg("defs", {});
  const marker = svg("marker", { id: "arrow", viewBox: "0 0 10 10", refX: 10, refY: 5, markerWidth: 6, markerHeight: 6, orient: "auto" });
  marker.append(svg("path", { d: "M0,0 L10,5 L0,10 z", fill: "#8c959f" }));
  defs.append(marker);
  root.append(defs);
  for (let r = 0; r < rounds; r++) root.append(svg("text", { x: g.left + r * g.dx - 22, y: 20 }, `round ${r}`));
  agents.forEach((a, i) => root.append(svg("text", { x: 10, y: g.top + i * g.dy + 4 }, a)));
  for (const e of mag.edges) {
    const s = where(e.source_agent, e.source_round), t = where(e.target_agent, e.target_round);
    const len = Math.hypot(t.x - s.x, t.y - s.y) || 1, ux = (t.x - s.x) / len, uy = (t.y - s.y) / len;
    root.append(svg("line", {
      class: e.same_agent ? "edge same-agent" : "edge", "data-source": e.source, "data-target": e.target,
      x1: s.x + ux * g.r, y1: s.y + uy * g.r, x2: t.x - ux * g.r, y2: t.y - uy * g.r, "marker-end": "url(#arrow)",
    }));
  }
  for (const node of mag.nodes) {
    const p = where(node.agent, node.round);
    const circle = svg("circle", {
      class: "node", cx: p.x, cy: p.y, r: g.r, fill: COLOURS[node.label] ?? COLOURS[2],
      "data-node-id": node.id, "data-label": node.label, tabindex: 0,
    });
    circle.append(svg("title", {}, `${node.agent} r${node.round}: ${node.answer ?? node.parse_status}`));
    const select = () => {
      root.querySelectorAll(".node.selected").forEach((c) => c.classList.remove("selected"));
      circle.classList.add("selected");
      showNode(node);
    };
    circle.addEventListener("click", select);
    circle.addEventListener("keydown", (ev) => { if (ev.key === "Enter") select(); });
    root.append(circle);
    root.append(svg("text", { class: "answer", x: p.x, y: p.y + g.r + 15, "text-anchor": "middle",
                              "data-node-id": node.id }, answerLabel(node.answer)));
  }
}

async function load() {
  const status = document.getElementById("status");
  const id = debateIdFromUrl();
  document.getElementById("title").textContent = id;
  try {
    const mag = await api(`/v1/debates/${encodeURIComponent(id)}`);
    showQuestion(mag);
    draw(mag);
    status.textContent = "";
    document.body.dataset.loaded = "true";
  } catch (err) {
    status.textContent = String(err.message || err);
    status.className = "error";
  }
}

setupToken(load);
load();
