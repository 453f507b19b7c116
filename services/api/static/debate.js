// The debate page: the question card, the MAG (graph.js) and the side panel of the clicked node,
// which shows what the agent was shown (its prompt, message by message) and every raw output.
"use strict";

let current = null;  // { mag, selected: node id }
const LABELS = { 1: "correct", 0: "incorrect", 2: "absent, invalid or unknown" };  // the trainer's node label

function debateIdFromUrl() {
  const parts = location.pathname.split("/").filter(Boolean);  // viewer, debates, <id>
  return decodeURIComponent(parts[parts.length - 1]);
}

function dl(rows) {
  return el("dl", {}, rows.filter((row) => row !== null).flatMap(([term, value, id]) =>
    [el("dt", {}, term), el("dd", id ? { id } : {}, value ?? "–")]));
}

function showQuestion(mag) {
  const q = mag.question, m = mag.metrics;
  const section = document.getElementById("question");
  const marks = ["correct", "incorrect", "invalid", "absent", "unknown"]
    .map((s) => [s, mag.nodes.filter((n) => statusOf(n) === s).length]).filter(([, n]) => n > 0)
    .map(([s, n]) => `${n} ${MARKS[s].glyph} ${s}`).join(" · ");
  section.replaceChildren(...[
    el("h2", {}, q.text),
    q.options && q.options.length ? el("ol", { class: "options", type: "A" }, q.options.map((o) => el("li", {}, o))) : null,
    dl([
      ["gold answer", q.gold_answer],
      ["team answer", `${mag.team_answer ?? "–"} (correct: ${fmtBool(mag.team_correct)})`, "team-answer"],
      ["majority answer", mag.majority_answer, "majority-answer"],
      ["status, consensus, rounds", `${mag.status}, ${fmtBool(mag.consensus)}, ${mag.rounds_used ?? m.rounds}`,
       "debate-state"],
      ["nodes", marks || "none", "mark-counts"],
      ["tokens in / out, cost", `${m.tokens_in} / ${m.tokens_out}, $${fmtNum(m.cost_usd, 4)}`],
      ["dataset, job, protocol", `${q.dataset}, ${mag.job_id ?? "–"}, ${mag.protocol}`],
      mag.error ? ["error", mag.error] : null,
    ]),
  ].filter((child) => child !== null));  // replaceChildren would print a null as the text "null"
  section.hidden = false;
}

function message(msg, i) {
  return el("div", { class: "message" },
    el("div", { class: "message-head" }, `${i + 1} · ${msg.role}`, el("span", { class: "muted" }, ` · ${msg.content.length} chars`)),
    el("pre", { class: "message-content" }, msg.content));
}

function output(out, i) {
  const usage = `${out.tokens_in ?? "–"} → ${out.tokens_out ?? "–"} tokens`;
  const head = [`call ${i + 1}`, out.finish_reason ?? "no finish reason", fmtLatency(out.latency_s), usage,
                `${out.attempts ?? "–"} HTTP attempt(s)`].join(" · ");
  return el("div", { class: "output" },
    el("div", { class: "message-head" }, head),
    out.reask ? el("div", { class: "reask" }, el("div", { class: "muted" }, "re-ask sent before this call:"),
                   el("pre", { class: "message-content" }, out.reask)) : null,
    out.error ? el("p", { class: "error" }, `error: ${out.error}`) : null,
    out.text !== null && out.text !== undefined ? el("pre", { class: "message-content output-text" }, out.text) : null);
}

function showNode(node) {
  const panel = document.getElementById("panel");
  const status = statusOf(node);
  const sw = current && current.info.switches.get(node.id);
  const prompt = node.prompt || [];
  const outputs = node.outputs || [];
  panel.replaceChildren(...[
    el("h2", {}, `${node.agent}, round ${node.round} `,
       el("span", { class: `badge ${status}`, id: "panel-status" }, `${MARKS[status].glyph} ${status}`)),
    dl([
      ["answer", node.answer, "panel-answer"],
      sw ? ["switched", `from ${sw.from} (round ${sw.round})`, "panel-switch"] : null,
      ["confidence", fmtNum(node.confidence, 2), "panel-confidence"],
      ["recalibrated", fmtNum(node.recalibrated_confidence, 2)],
      ["MAG label", `${node.label} (${LABELS[node.label] ?? "?"})`, "panel-label"],
      ["model", node.model],
      ["latency", fmtLatency(node.latency_s), "panel-latency"],
      ["tokens in / out", `${node.tokens_in ?? "–"} / ${node.tokens_out ?? "–"}`, "panel-tokens"],
      ["attempts", node.attempts ?? "–", "panel-attempts"],
      ["finish reason", node.finish_reason],
      ["cost", node.cost_usd === null || node.cost_usd === undefined ? null : `$${fmtNum(node.cost_usd, 5)}`],
    ]),
    node.parse_error ? el("p", { class: "error" }, `parse error: ${node.parse_error}`) : null,
    el("h3", {}, "Reasoning"),
    el("pre", { id: "panel-reasoning" }, node.reasoning ?? "(none)"),
    el("h3", {}, `Prompt (${prompt.length} message${prompt.length === 1 ? "" : "s"})`),
    node.prompt ? el("div", { id: "panel-prompt" }, prompt.map(message))
      : el("p", { class: "muted", id: "panel-prompt" }, "not stored (an imported node)"),
    el("h3", {}, `Outputs (${outputs.length} call${outputs.length === 1 ? "" : "s"})`),
    outputs.length ? el("div", { id: "panel-outputs" }, outputs.map(output))
      : el("p", { class: "muted", id: "panel-outputs" }, "none stored"),
    !outputs.length && node.raw_text ? el("details", {}, el("summary", {}, "raw output"), el("pre", {}, node.raw_text)) : null,
  ].filter((child) => child !== null));  // replaceChildren would print a null as the text "null"
}

function select(node, circle) {
  document.querySelectorAll("svg#mag .node.selected").forEach((c) => c.classList.remove("selected"));
  circle.classList.add("selected");
  current.selected = node.id;
  showNode(node);
  document.getElementById("panel").scrollIntoView({ block: "nearest" });
}

function render() {
  const root = document.getElementById("mag");
  draw(root, current.mag, current.info, { select });
  const chosen = current.selected && root.querySelector(`circle.node[data-node-id="${CSS.escape(current.selected)}"]`);
  if (chosen) chosen.classList.add("selected");
}

async function load() {
  const status = document.getElementById("status");
  const id = debateIdFromUrl();
  document.getElementById("title").textContent = id;
  try {
    const mag = await api(`/v1/debates/${encodeURIComponent(id)}`);
    current = { mag, selected: null, info: analyse(mag) };
    showQuestion(mag);
    render();
    status.textContent = "";
    document.body.dataset.loaded = "true";
  } catch (err) {
    status.textContent = String(err.message || err);
    status.className = "error";
  }
}

let resizeTimer = null;
window.addEventListener("resize", () => {
  clearTimeout(resizeTimer);
  resizeTimer = setTimeout(() => { if (current) render(); }, 100);
});
setupToken(load);
load();
