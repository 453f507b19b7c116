"""The paper's open questions as config switches: rounds used, edges, teacher diversity, label source;
plus the budget switches (MAGs without a correct node, per-group clipping)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch

from magdi.errors import UserError
from magdi.mag import Agent, Debate, Question, Response, TaskType, full_visibility_edges
from trainer.config import ConfigError, load_config
from trainer.graphs import GraphSpec, MAGEncoder, plan_graph, scan_debates

DOCS = Path(__file__).resolve().parents[2] / "docs" / "trainer.md"
RECIPE = Path(__file__).resolve().parents[2] / "configs" / "trainer" / "smollm2-cpu.yaml"


def _debate(table: dict[str, list[bool]], team_correct: bool | None = True) -> Debate:
    """table: agent -> correctness per round (round 0 first)."""
    q = Question(dataset="toy", qid="a1", text="What is 3 + 4?", task=TaskType.NUMBER, gold_answer="7")
    responses = [Response(agent=agent, round=r, reasoning=f"{agent} in round {r} adds.", answer="7" if ok else "1",
                          correct=ok) for agent, row in table.items() for r, ok in enumerate(row)]
    return Debate(question=q, panel=[Agent(name=a, model="m") for a in table], responses=responses,
                  edges=full_visibility_edges(responses), rounds_used=max(len(r) for r in table.values()),
                  team_correct=team_correct)


MAG = {"alice": [True, True, True], "bob": [False, False, True], "carol": [False, True, False]}


def test_rounds_used_for_training_keeps_the_first_rounds_and_their_edges() -> None:
    full = plan_graph(_debate(MAG), GraphSpec())
    one = plan_graph(_debate(MAG), GraphSpec(max_rounds=1))
    two = plan_graph(_debate(MAG), GraphSpec(max_rounds=2))
    assert [len(p.nodes) for p in (one, two, full)] == [3, 6, 9]
    assert one.edges == [] and one.filtered == 6  # initial answers only: no interaction to learn from
    assert len(two.edges) == 9 and len(full.edges) == 18
    assert all(max(s, t) < 6 for s, t in two.edges)


def test_no_edges_keeps_every_node_and_gives_the_gcn_an_empty_edge_set(tokenizer) -> None:
    data = MAGEncoder(tokenizer, GraphSpec(use_edges=False)).encode(_debate(MAG))
    assert data.num_nodes == 9 and data.edge_index.shape == (2, 0)
    assert len(data.pair_index[0]) > 0  # ranking pairs do not need edges


def test_teacher_diversity_keeps_the_named_agents_and_rejects_unknown_names() -> None:
    two = plan_graph(_debate(MAG), GraphSpec(agents=("alice", "bob")))
    assert {r.agent for r in two.nodes} == {"alice", "bob"} and two.filtered == 3
    assert all(two.nodes[s].agent != "carol" and two.nodes[t].agent != "carol" for s, t in two.edges)
    with pytest.raises(UserError, match="data.agents: 'dave'"):  # a user error: exit 2, no traceback
        scan_debates([_debate(MAG)], GraphSpec(agents=("alice", "dave")))


def test_label_source_node_agent_final_or_team() -> None:
    def labels(source: str, team: bool | None = True) -> dict[tuple[str, int], int]:
        plan = plan_graph(_debate(MAG, team), GraphSpec(label_source=source))
        return {(r.agent, r.round): y for r, y in zip(plan.nodes, plan.labels, strict=True)}

    assert labels("node")[("bob", 0)] == 0 and labels("node")[("bob", 2)] == 1
    final = labels("agent_final")  # bob ended right, carol wrong: their whole lines take that label
    assert [final[("bob", r)] for r in range(3)] == [1, 1, 1] and [final[("carol", r)] for r in range(3)] == [0, 0, 0]
    assert set(labels("team").values()) == {1} and set(labels("team", False).values()) == {0}
    unknown = plan_graph(_debate(MAG, None), GraphSpec(label_source="team"))
    assert getattr(unknown, "reason", None) == "skipped_no_nodes"  # no team answer: no label to learn
    # agent_final with rounds cut: the final answer is the last KEPT round's
    cut = plan_graph(_debate(MAG), GraphSpec(label_source="agent_final", max_rounds=2))
    assert {(r.agent, r.round): y for r, y in zip(cut.nodes, cut.labels, strict=True)}[("bob", 0)] == 0


def test_magdi_can_skip_mags_without_a_correct_node() -> None:
    none_right = _debate({"alice": [False], "bob": [False]}, team_correct=False)
    cfg = load_config(None, [], env={})
    assert plan_graph(none_right, GraphSpec.from_config(cfg)).nll == [False, False]  # kept for L_I
    skip = load_config(None, ["data.keep_without_correct=false"], env={})
    assert plan_graph(none_right, GraphSpec.from_config(skip)).reason == "skipped_no_target"


def test_per_group_clipping_stops_the_heads_from_shrinking_the_lora_update(make_student) -> None:
    student = make_student("objective=magdi")
    from trainer.train import clip_gradients

    def set_grads() -> None:
        for p in student.lora_parameters():
            p.grad = torch.full_like(p, 0.5 / p.numel() ** 0.5 / len(student.lora_parameters()) ** 0.5)
        for p in student.head_parameters():
            p.grad = torch.full_like(p, 10.0 / p.numel() ** 0.5 / len(student.head_parameters()) ** 0.5)

    def lora_norm() -> float:
        return float(torch.linalg.vector_norm(torch.stack([p.grad.norm() for p in student.lora_parameters()])))

    set_grads()
    assert abs(clip_gradients(student, 1.0, per_group=False) - (0.5**2 + 10**2) ** 0.5) < 1e-3
    assert lora_norm() < 0.06  # the joint clip divided the LoRA gradient by ~10
    set_grads()
    clip_gradients(student, 1.0, per_group=True)
    head = float(torch.linalg.vector_norm(torch.stack([p.grad.norm() for p in student.head_parameters()])))
    assert abs(lora_norm() - 0.5) < 1e-4 and abs(head - 1.0) < 1e-3


def test_bad_ablation_values_name_the_key() -> None:
    for override, key in (("data.max_rounds=0", "data.max_rounds"), ("data.label_source=votes", "label_source"),
                          ("data.agents=[]", "data.agents")):
        with pytest.raises(ConfigError, match=key):
            load_config(None, [override], env={})


def _documented_ablations() -> list[str]:
    """The `--set` overrides listed in docs/trainer.md's ablation table."""
    section = DOCS.read_text().split("## Ablations", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"`--set ([a-z_.]+=[^`]+)`", section)


def test_every_documented_ablation_is_one_command_that_trains(tiny_config, synth, write_jsonl) -> None:
    from trainer.train import train

    documented = _documented_ablations()
    keys = {d.split("=")[0] for d in documented}
    assert {"data.max_rounds", "data.use_edges", "data.agents", "data.label_source"} <= keys, documented
    for item in documented:
        load_config(RECIPE, [item], env={})  # every line parses against the CPU recipe
    debates = [synth(i, rounds=3) for i in range(6)]
    for i, item in enumerate(("data.max_rounds=1", "data.use_edges=false", "data.agents=alice,bob",
                              "data.label_source=agent_final")):
        result = train(tiny_config(write_jsonl(debates), item, "optim.max_steps=1", out=f"ablation-{i}"))
        assert result.steps == 1 and result.summary["data"]["mags_used"] > 0
