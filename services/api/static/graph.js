// Draws one MAG as SVG: agents as rows, rounds as columns, then the team answer.
//
// Read at a glance: each node's mark (colour + glyph: correct, incorrect, invalid, absent, unknown),
// its confidence as a ring, its answer under it and latency / tokens / attempts under that; an
// orange badge and arc where an agent switched answers; the vote tally under every round; the
// team answer as a box fed by each agent's final vote. A round's all-to-all INFORMS edges (every
// agent sees every answer: n^2 lines) are drawn as one bundle through a hub; hovering or focusing
// a node (or a hub) shows the exact edges. Every string from the model goes in as text.
"use strict";

const SVG_NS = "http://www.w3.org/2000/svg";
const MARKS = {
  correct: { glyph: "✓", text: "correct" },
  incorrect: { glyph: "✗", text: "incorrect" },
  invalid: { glyph: "!", text: "invalid: the output could not be parsed" },
  absent: { glyph: "–", text: "absent: no output" },
  unknown: { glyph: "?", text: "valid, correctness unknown (no gold answer)" },
};
// An answer label sits under its node and gets the width between two rounds: about 20 characters
// at 11px. A longer answer ends in an ellipsis; the node's tooltip and the side panel show it whole.
const LABEL_MAX = 20;
const G = { left: 96, top: 46, dy: 100, r: 17, ring: 5, minDx: 124, maxDx: 190, team: 136, tallyLine: 15 };
const TALLY_MAX = 4;  // answers listed per round; the rest are summed up in one line

function cut(text, max) {
  const chars = Array.from(text ?? "");  // code points: never cut a character in half
  return chars.length <= max ? chars.join("") : chars.slice(0, max - 1).join("") + "…";
}

function answerLabel(answer) {
  return cut(answer, LABEL_MAX);
}

function svg(tag, attrs, text) {
  const node = document.createElementNS(SVG_NS, tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value !== null && value !== undefined) node.setAttribute(key, value);
  }
  if (text !== undefined) node.textContent = text;  // text, never markup
  return node;
}

function statusOf(node) {
  if (node.parse_status === "absent" || node.parse_status === "invalid") return node.parse_status;
  return node.correct === true ? "correct" : node.correct === false ? "incorrect" : "unknown";
}

function fmtLatency(seconds) {
  if (seconds === null || seconds === undefined) return "–";
  return seconds < 10 ? `${Number(seconds).toFixed(1)} s` : `${Math.round(seconds)} s`;
}

// -- what the drawing needs, computed once from the API's MAG ------------------------------------
function analyse(mag) {
  const agents = mag.panel.map((a) => a.name);
  for (const n of mag.nodes) if (!agents.includes(n.agent)) agents.push(n.agent);  // never drop a node
  const rounds = Math.max(1, mag.metrics.rounds, ...mag.nodes.map((n) => n.round + 1));
  const valid = (n) => n.parse_status === "valid" && n.answer !== null && n.answer !== undefined;

  // an agent's answer switch: its answer differs from its previous valid answer (stored answers are
  // already normalised by the parser, so equal strings are equal answers)
  const switches = new Map(), finals = new Map();
  for (const agent of agents) {
    let last = null;
    for (const n of mag.nodes.filter((x) => x.agent === agent).sort((a, b) => a.round - b.round)) {
      if (!valid(n)) continue;
      if (last && last.answer !== n.answer) switches.set(n.id, { from: last.answer, round: last.round });
      last = n;
    }
    if (last) finals.set(agent, last);  // the latest valid answer is the agent's vote (carry-forward)
  }

  const tallies = [];
  for (let r = 0; r < rounds; r++) {
    const inRound = mag.nodes.filter((n) => n.round === r);
    const groups = new Map();
    for (const n of inRound.filter(valid)) {
      const g = groups.get(n.answer) ?? { answer: n.answer, count: 0, weight: 0, status: statusOf(n) };
      g.count += 1;
      g.weight += n.recalibrated_confidence ?? 0;
      groups.set(n.answer, g);
    }
    tallies.push({
      round: r,
      answers: [...groups.values()].sort((a, b) => b.count - a.count || b.weight - a.weight),
      invalid: inRound.filter((n) => n.parse_status === "invalid").length,
      absent: inRound.filter((n) => n.parse_status === "absent").length,
    });
  }

  // INFORMS edges grouped by (source round, target round): denser than a one-to-one matching means
  // an all-to-all round, drawn as a bundle
  const groups = new Map();
  for (const e of mag.edges) {
    const key = `${e.source_round}-${e.target_round}`;
    if (!groups.has(key)) groups.set(key, { key, from: e.source_round, to: e.target_round, edges: [] });
    groups.get(key).edges.push(e);
  }
  for (const g of groups.values()) {
    g.sources = [...new Set(g.edges.map((e) => e.source_agent))];
    g.targets = [...new Set(g.edges.map((e) => e.target_agent))];
    g.bundled = g.to === g.from + 1 && g.edges.length > Math.max(g.sources.length, g.targets.length);
  }
  return { agents, rounds, switches, finals, tallies, groups: [...groups.values()] };
}

// -- geometry: fit the card's width (an 800 px window included) ----------------------------------
function layout(info, width) {
  const dx = Math.max(G.minDx, Math.min(G.maxDx, (width - G.left - G.team) / info.rounds));
  const tallyLines = Math.max(1, ...info.tallies.map((t) => Math.min(t.answers.length, TALLY_MAX + 1)
    + (t.invalid ? 1 : 0) + (t.absent ? 1 : 0)));
  const bottom = G.top + info.agents.length * G.dy - 20;
  return {
    dx,
    x: (round) => G.left + dx / 2 + round * dx,
    y: (agent) => G.top + 28 + info.agents.indexOf(agent) * G.dy,
    tallyTop: bottom + 10,
    width: Math.ceil(G.left + info.rounds * dx + G.team),
    height: Math.ceil(bottom + 16 + tallyLines * G.tallyLine),  // the last tally line's descenders
    teamX: G.left + info.rounds * dx + G.team / 2,
  };
}

// `info` is analyse(mag), computed once per debate: a resize only lays the same drawing out again
function draw(root, mag, info, handlers) {
  const box = root.parentElement.getBoundingClientRect();
  const style = getComputedStyle(root.parentElement);
  const inner = box.width - parseFloat(style.paddingLeft) - parseFloat(style.paddingRight) - 2;
  const L = layout(info, inner);
  const at = (agent, round) => ({ x: L.x(round), y: L.y(agent) });
  root.replaceChildren();
  root.setAttribute("width", L.width);
  root.setAttribute("height", L.height);
  root.setAttribute("viewBox", `0 0 ${L.width} ${L.height}`);
  root.append(defs());

  // round headers and agent names
  for (let r = 0; r < info.rounds; r++) {
    root.append(svg("text", { class: "round", x: L.x(r), y: 18, "text-anchor": "middle" }, `round ${r}`));
  }
  root.append(svg("text", { class: "round", x: L.teamX, y: 18, "text-anchor": "middle" }, "team"));
  // the names column stays at the card's left edge while a wide debate scrolls sideways
  const names = svg("g", { class: "names" });
  names.append(svg("rect", { class: "names-bg", x: 0, y: 0, width: G.left - 14, height: L.height }));
  for (const agent of info.agents) {
    const model = (mag.panel.find((a) => a.name === agent) || {}).model;
    const label = svg("text", { class: "agent", x: 8, y: L.y(agent) + 4, "data-agent": agent }, cut(agent, 12));
    label.append(svg("title", {}, model ? `${agent} (${model})` : agent));
    names.append(label);
  }
  names.append(svg("text", { class: "round", x: 8, y: L.tallyTop + 14 }, "votes"));

  const edgeLayer = svg("g", { class: "edges" });
  const bundleLayer = svg("g", { class: "bundles" });
  root.append(bundleLayer, edgeLayer);
  for (const group of info.groups) drawGroup(group, at, L, edgeLayer, bundleLayer, root);
  drawSwitches(mag, info, at, root);
  drawTeam(mag, info, L, at, root);
  for (const node of mag.nodes) drawNode(node, info, at(node.agent, node.round), root, handlers);
  drawTallies(info, L, root);
  root.append(names);
  const scroller = root.parentElement;  // .graph-scroll: a debate wider than the card scrolls there
  scroller.onscroll = () => {
    names.setAttribute("transform", `translate(${scroller.scrollLeft},0)`);
    names.classList.toggle("stuck", scroller.scrollLeft > 0);
  };
  scroller.onscroll();
}

function defs() {
  const d = svg("defs", {});
  for (const [id, cls] of [["arrow", "arrow"], ["arrow-lit", "arrow lit"], ["arrow-vote", "arrow vote"]]) {
    const marker = svg("marker", { id, viewBox: "0 0 10 10", refX: 9, refY: 5, markerWidth: 6, markerHeight: 6,
                                   orient: "auto" });
    marker.append(svg("path", { class: cls, d: "M0,0 L10,5 L0,10 z" }));
    d.append(marker);
  }
  return d;
}

// -- edges -----------------------------------------------------------------------------------------
function drawGroup(group, at, L, edgeLayer, bundleLayer, root) {
  const reach = G.r + G.ring;
  for (const e of group.edges) {  // the exact edges: always in the DOM, hidden inside a bundle
    const s = at(e.source_agent, e.source_round), t = at(e.target_agent, e.target_round);
    const len = Math.hypot(t.x - s.x, t.y - s.y) || 1, ux = (t.x - s.x) / len, uy = (t.y - s.y) / len;
    edgeLayer.append(svg("line", {
      class: ["edge", e.same_agent ? "same-agent" : "", group.bundled ? "full" : ""].filter(Boolean).join(" "),
      "data-source": e.source, "data-target": e.target, "data-group": group.key,
      x1: s.x + ux * reach, y1: s.y + uy * reach, x2: t.x - ux * reach, y2: t.y - uy * reach,
      "marker-end": "url(#arrow)",
    }));
  }
  if (!group.bundled) return;
  const ys = [...group.sources.map((a) => at(a, group.from).y), ...group.targets.map((a) => at(a, group.to).y)];
  const hub = { x: (L.x(group.from) + L.x(group.to)) / 2, y: (Math.min(...ys) + Math.max(...ys)) / 2 };
  const bundle = svg("g", { class: "bundle", "data-group": group.key, tabindex: 0 });
  for (const a of group.sources) {
    const s = at(a, group.from), x0 = s.x + reach;
    bundle.append(svg("path", { class: "stub", d: `M${x0},${s.y} C${hub.x - 8},${s.y} ${hub.x - 22},${hub.y} ${hub.x},${hub.y}` }));
  }
  for (const a of group.targets) {
    const t = at(a, group.to), x1 = t.x - reach;
    bundle.append(svg("path", { class: "stub", "marker-end": "url(#arrow)",
                                d: `M${hub.x},${hub.y} C${hub.x + 22},${hub.y} ${hub.x + 8},${t.y} ${x1},${t.y}` }));
  }
  bundle.append(svg("circle", { class: "hub", cx: hub.x, cy: hub.y, r: 5 }));
  bundle.append(svg("title", {}, `round ${group.from} → ${group.to}: ${group.edges.length} INFORMS edges `
    + `(${group.sources.length} answers shown to ${group.targets.length} agents); hover to see each one`));
  const lightGroup = () => light(root, (line) => line.dataset.group === group.key);
  bundle.addEventListener("mouseenter", lightGroup);
  bundle.addEventListener("focus", lightGroup);
  bundle.addEventListener("mouseleave", () => light(root, null));
  bundle.addEventListener("blur", () => light(root, null));
  bundleLayer.append(bundle);
}

function light(root, shows) {
  root.classList.toggle("hovering", Boolean(shows));
  root.querySelectorAll("line.edge").forEach((line) => line.classList.toggle("lit", Boolean(shows && shows(line))));
}

// -- marks -------------------------------------------------------------------------------------------
function drawSwitches(mag, info, at, root) {
  for (const node of mag.nodes) {
    const sw = info.switches.get(node.id);
    if (!sw) continue;
    const a = at(node.agent, sw.round), b = at(node.agent, node.round), top = G.r + G.ring + 1;
    const lift = Math.min(22, 10 + (b.x - a.x) / 16);
    const arc = svg("path", { class: "switch-arc", "data-of": node.id,
                              d: `M${a.x},${a.y - top} C${a.x},${a.y - top - lift} ${b.x},${b.y - top - lift} ${b.x},${b.y - top}` });
    arc.append(svg("title", {}, `${node.agent} switched from ${sw.from} (round ${sw.round}) to ${node.answer}`));
    root.append(arc);
  }
}

function drawNode(node, info, p, root, handlers) {
  const status = statusOf(node);
  const g = svg("g", { class: `mag-node ${status}` });
  const ringR = G.r + G.ring - 1.5, length = 2 * Math.PI * ringR;
  if (node.confidence !== null && node.confidence !== undefined) {
    g.append(svg("circle", { class: "ring-track", cx: p.x, cy: p.y, r: ringR }));
    g.append(svg("circle", {
      class: "ring", cx: p.x, cy: p.y, r: ringR, "data-of": node.id, "data-confidence": node.confidence,
      "stroke-dasharray": `${(node.confidence * length).toFixed(2)} ${length.toFixed(2)}`,
      transform: `rotate(-90 ${p.x} ${p.y})`,
    }));
  }
  const circle = svg("circle", {
    class: `node ${status}`, cx: p.x, cy: p.y, r: G.r, tabindex: 0, role: "button",
    "data-node-id": node.id, "data-label": node.label, "data-status": status,
  });
  const sw = info.switches.get(node.id);
  const conf = node.confidence === null || node.confidence === undefined ? "" : `, confidence ${fmtNum(node.confidence, 2)}`;
  circle.append(svg("title", {}, `${node.agent}, round ${node.round}: ${node.answer ?? node.parse_status} `
    + `(${MARKS[status].text}${conf})${sw ? `; switched from ${sw.from}` : ""}`));
  g.append(circle);
  g.append(svg("text", { class: "glyph", x: p.x, y: p.y + 5, "text-anchor": "middle" }, MARKS[status].glyph));
  if (sw) {
    const bx = p.x + G.r * 0.8, by = p.y - G.r * 0.8;
    g.append(svg("circle", { class: "switch", cx: bx, cy: by, r: 7, "data-of": node.id }));
    g.append(svg("text", { class: "switch-glyph", x: bx, y: by + 3.5, "text-anchor": "middle" }, "⇄"));
  }
  const below = p.y + G.r + G.ring;
  const text = node.answer ?? (status === "absent" ? "(absent)" : status === "invalid" ? "(invalid)" : "–");
  g.append(svg("text", { class: node.answer === null || node.answer === undefined ? "answer none" : "answer",
                         x: p.x, y: below + 14, "text-anchor": "middle", "data-node-id": node.id }, answerLabel(text)));
  const known = (v) => v !== null && v !== undefined;
  const parts = [known(node.latency_s) ? fmtLatency(node.latency_s) : null,
                 known(node.tokens_out) ? `${node.tokens_out} tok` : null].filter(Boolean);
  const tries = node.attempts > 1 ? `×${node.attempts}` : null;
  if (parts.length || tries) {
    const meta = svg("text", { class: "meta", x: p.x, y: below + 27, "text-anchor": "middle", "data-of": node.id },
                     parts.join(" · ") + (parts.length && tries ? " · " : ""));
    if (tries) meta.append(svg("tspan", { class: "tries" }, tries));
    g.append(meta);
  }
  const select = () => handlers.select(node, circle);
  circle.addEventListener("click", select);
  circle.addEventListener("keydown", (ev) => { if (ev.key === "Enter" || ev.key === " ") { ev.preventDefault(); select(); } });
  const lightNode = () => light(root, (line) => line.dataset.source === node.id || line.dataset.target === node.id);
  circle.addEventListener("mouseenter", lightNode);
  circle.addEventListener("focus", lightNode);
  circle.addEventListener("mouseleave", () => light(root, null));
  circle.addEventListener("blur", () => light(root, null));
  root.append(g);
}

// -- votes -------------------------------------------------------------------------------------------
function drawTallies(info, L, root) {
  for (const t of info.tallies) {
    const g = svg("g", { class: "tally", "data-round": t.round });
    const x = L.x(t.round) - L.dx / 2 + 10;
    const lines = t.answers.slice(0, TALLY_MAX).map((a) => ({
      text: `${cut(a.answer, 16)} ×${a.count}`, status: a.status,
      title: `${a.answer}: ${a.count} agent(s), recalibrated confidence ${fmtNum(a.weight, 2)}`,
    }));
    const rest = t.answers.slice(TALLY_MAX);
    if (rest.length) lines.push({ text: `+${rest.length} more ×${rest.reduce((s, a) => s + a.count, 0)}`, status: "unknown" });
    if (t.invalid) lines.push({ text: `invalid ×${t.invalid}`, status: "invalid" });
    if (t.absent) lines.push({ text: `absent ×${t.absent}`, status: "absent" });
    if (!lines.length) lines.push({ text: "no answers", status: "absent" });
    lines.forEach((line, i) => {
      const y = L.tallyTop + 14 + i * G.tallyLine, item = svg("g", { class: "tally-row" });
      item.append(svg("rect", { class: `swatch ${line.status}`, x, y: y - 8, width: 9, height: 9, rx: 2 }),
                  svg("text", { class: "tally-line", x: x + 14, y }, line.text));
      if (line.title) item.append(svg("title", {}, line.title));
      g.append(item);
    });
    root.append(g);
  }
}

function drawTeam(mag, info, L, at, root) {
  const ys = info.agents.map((a) => L.y(a));
  const cy = (Math.min(...ys) + Math.max(...ys)) / 2, w = G.team - 26, h = 64;
  const status = mag.team_correct === true ? "correct" : mag.team_correct === false ? "incorrect" : "unknown";
  const left = L.teamX - w / 2;
  const last = info.rounds - 1;
  for (const [agent, final] of info.finals) {  // each agent's vote: its latest valid answer (carried forward)
    const p = at(agent, last), agree = mag.team_answer !== null && final.answer === mag.team_answer;
    let x0 = p.x + G.r + G.ring;
    if (final.round < last) {  // the agent's last node is not its vote: say where the vote comes from
      const note = svg("text", { class: "carried", x: x0 + 3, y: p.y + 4, "data-of": final.id },
                       `${cut(final.answer, 8)} (r${final.round})`);
      note.append(svg("title", {}, `${agent}'s vote: its latest valid answer, ${final.answer}, from round ${final.round}`));
      root.append(note);
      x0 += 8 + note.getComputedTextLength();
    }
    const y1 = cy + (p.y - cy) * 0.4, bend = Math.max(8, (left - x0) / 3);
    root.append(svg("path", {
      class: agree ? "vote agree" : "vote dissent", "data-of": final.id, "marker-end": agree ? "url(#arrow-vote)" : null,
      d: `M${x0},${p.y} C${x0 + bend},${p.y} ${left - bend},${y1} ${left},${y1}`,
    }));
  }
  const g = svg("g", { id: "team-node", class: `team ${status}`, "data-status": status });
  g.append(svg("rect", { x: left, y: cy - h / 2, width: w, height: h, rx: 8 }));
  g.append(svg("text", { class: "team-title", x: L.teamX, y: cy - h / 2 + 15, "text-anchor": "middle" },
               mag.team_answer === null ? "team: pending" : `team ${MARKS[status].glyph}`));
  g.append(svg("text", { id: "team-answer-label", class: "team-answer", x: L.teamX, y: cy + 6, "text-anchor": "middle" },
               cut(mag.team_answer ?? "–", 12)));
  const votes = [...info.finals.values()].filter((f) => mag.team_answer !== null && f.answer === mag.team_answer).length;
  g.append(svg("text", { id: "team-votes", class: "team-sub", x: L.teamX, y: cy + h / 2 - 9, "text-anchor": "middle" },
               info.finals.size ? `${votes} of ${info.finals.size} votes${mag.consensus ? " · consensus" : ""}`
                 : "no votes"));
  g.append(svg("title", {}, `team answer ${mag.team_answer ?? "(none yet)"}: ${MARKS[status].text}; `
    + `majority ${mag.majority_answer ?? "–"}; consensus ${fmtBool(mag.consensus)}`));
  root.append(g);
}
