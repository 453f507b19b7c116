"""MAG -> graph: node text, exclusion of absent nodes (D3), edges, pairs (D2, D7), bad inputs."""

from __future__ import annotations

import json

import pytest

from magdi.mag import Agent, Debate, ParseStatus, Question, Response, TaskType, full_visibility_edges
from magdi.prompts import REFERENCE, PromptFormat, answer_text, reference_prompt
from trainer.graphs import GraphSpec, MAGEncoder, scan_debates


def _q(text: str) -> Question:
    return Question(dataset="toy", qid="1", text=text, task=TaskType.NUMBER, gold_answer="18")


def test_node_text_is_the_reference_template_exactly() -> None:
    assert reference_prompt(_q("What is 9 + 9?")) == "[INST] ### Question: What is 9 + 9?[/INST] ### Answer:"
    text = PromptFormat(REFERENCE).text(_q("Q?"), answer_text("Add them.", "18.0"))
    assert text == "[INST] ### Question: Q?[/INST] ### Answer: Add them. So the answer is 18.0"


def test_encoded_node_is_bos_text_eos_and_prompt_length_marks_the_answer(tokenizer, synth) -> None:
    debate = synth(3)
    data = MAGEncoder(tokenizer, GraphSpec(remove_agreement=False)).encode(debate)
    first = data.tokens[: int(data.length[0])].tolist()
    assert first[0] == tokenizer.bos_token_id and first[-1] == tokenizer.eos_token_id
    p = int(data.prompt_length[0])
    r = debate.sorted_responses()[0]
    assert tokenizer.decode(first[1:p]) == reference_prompt(debate.question)
    assert tokenizer.decode(first[p:-1]) == f" {r.reasoning} So the answer is {r.answer}"


def test_agreement_sentences_are_removed_by_default_and_the_rule_is_configurable(tokenizer, synth) -> None:
    debate = synth(5, rounds=2)
    later = [r for r in debate.sorted_responses() if r.round == 1 and r.reasoning.startswith("I agree")]
    assert later, "fixture should contain agreement sentences"

    def texts(spec: GraphSpec) -> str:
        data = MAGEncoder(tokenizer, spec).encode(debate)
        return tokenizer.decode(data.tokens.tolist())

    assert "I agree" not in texts(GraphSpec())
    assert "I agree" in texts(GraphSpec(remove_agreement=False))
    assert "I agree" in texts(GraphSpec(agreement_prefixes=("I disagree",)))


def _debate(cells: list[tuple[str, int, str]], gold: str = "7") -> Debate:
    """cells: (agent, round, kind) with kind in ok, bad, absent, invalid, unknown."""
    responses = []
    for agent, rnd, kind in cells:
        if kind == "absent":
            responses.append(Response(agent=agent, round=rnd, parse_status=ParseStatus.ABSENT))
        elif kind == "invalid":
            responses.append(Response(agent=agent, round=rnd, parse_status=ParseStatus.INVALID, raw_text="??"))
        else:
            ok = {"ok": True, "bad": False, "unknown": None}[kind]
            responses.append(Response(agent=agent, round=rnd, reasoning=f"{agent} {rnd} thinks.",
                                      answer=gold if ok else "3", correct=ok))
    agents = sorted({a for a, _, _ in cells})
    q = Question(dataset="toy", qid="1", text="What is 3 + 4?", task=TaskType.NUMBER, gold_answer=gold)
    return Debate(question=q, panel=[Agent(name=a, model="m") for a in agents], responses=responses,
                  edges=full_visibility_edges(responses))


def test_absent_invalid_and_unlabelled_nodes_are_excluded_with_their_edges(tokenizer) -> None:
    debate = _debate([("a", 0, "ok"), ("b", 0, "bad"), ("c", 0, "invalid"),
                      ("a", 1, "ok"), ("b", 1, "absent"), ("c", 1, "unknown")])
    enc = MAGEncoder(tokenizer, GraphSpec())
    data = enc.encode(debate)
    assert data.num_nodes == 3  # a0, a1, b0 (panel order, then round)
    assert data.y.tolist() == [1, 1, 0] and data.node_round.tolist() == [0, 1, 0]
    assert data.edge_index.t().tolist() == [[0, 1], [2, 1]]  # a0->a1, b0->a1: only existing nodes
    assert enc.stats.nodes_excluded == 3
    assert "None" not in tokenizer.decode(data.tokens.tolist())  # D3: no stale or placeholder text


def test_edges_follow_the_mag_source_to_target(tokenizer, synth) -> None:
    debate = synth(1, rounds=3)
    data = MAGEncoder(tokenizer, GraphSpec()).encode(debate)
    rounds = data.node_round
    src, dst = data.edge_index
    assert len(src) == 2 * 3 * 3 and bool((rounds[dst] == rounds[src] + 1).all())  # forward in time (D4)


def test_pairs_are_balanced_within_the_mag_and_flag_missing_negatives(tokenizer) -> None:
    mixed = _debate([("a", 0, "ok"), ("b", 0, "bad"), ("c", 0, "bad"), ("a", 1, "bad")])
    data = MAGEncoder(tokenizer, GraphSpec()).encode(mixed)
    # P = [a0], N = [a1, b0, c0] -> the shorter list is repeated: 3 pairs (docs/method.md §5.1)
    assert data.pair_index.t().tolist() == [[0, 1], [0, 2], [0, 3]]
    assert data.pair_has_neg.tolist() == [True, True, True]
    allgood = _debate([("a", 0, "ok"), ("b", 0, "ok")])
    data = MAGEncoder(tokenizer, GraphSpec()).encode(allgood)
    assert data.pair_has_neg.tolist() == [False, False]  # D7: flagged, never scored


def test_mag_without_correct_node_feeds_only_the_gcn_and_is_counted(tokenizer, synth) -> None:
    debate = synth(2, pattern="none_correct")
    enc = MAGEncoder(tokenizer, GraphSpec(keep_without_correct=True))
    data = enc.encode(debate)
    assert data is not None and not data.nll_mask.any() and data.pair_index.shape[1] == 0
    assert enc.stats.no_correct_kept == 1
    for spec in (GraphSpec(keep_without_correct=False), GraphSpec(objective="sft-multi")):
        enc = MAGEncoder(tokenizer, spec)
        assert enc.encode(debate) is None and enc.stats.skipped_no_target == 1


def test_mag_with_only_absent_nodes_is_skipped_and_counted(tokenizer, synth) -> None:
    enc = MAGEncoder(tokenizer, GraphSpec())
    assert enc.encode(synth(4, pattern="only_absent")) is None
    assert enc.stats.skipped_no_nodes == 1 and enc.stats.nodes_excluded == 6


def test_overlong_node_is_truncated_and_counted(tokenizer, synth) -> None:
    debate = synth(6)
    long_r = debate.responses[0].model_copy(update={"reasoning": "step " * 400})
    debate = debate.model_copy(update={"responses": [long_r, *debate.responses[1:]]})
    enc = MAGEncoder(tokenizer, GraphSpec(max_length=64))
    data = enc.encode(debate)
    assert int(data.length.max()) == 64 and enc.stats.nodes_truncated == 1
    assert data.tokens[: int(data.length[0])][-1] != tokenizer.eos_token_id  # a cut answer is not "finished"


def test_sft_single_distils_the_strongest_teachers_round0_answers(tokenizer, synth) -> None:
    debates = [synth(i) for i in range(20)]
    scan = scan_debates(debates, GraphSpec(objective="sft-single"))
    acc = scan.round0_accuracy
    assert scan.strongest_agent == max(sorted(acc), key=lambda a: acc[a])
    enc = MAGEncoder(tokenizer, GraphSpec(objective="sft-single", strongest_agent=scan.strongest_agent))
    used = [d for d in (enc.encode(x) for x in debates) if d is not None]
    assert len(used) == scan.items
    for data in used:
        assert int(data.nll_mask.sum()) == 1 and int(data.node_round[data.nll_mask]) == 0
    with pytest.raises(ValueError, match="strongest_agent"):
        scan_debates(debates, GraphSpec(objective="sft-single", strongest_agent="nobody"))


def test_sft_multi_trains_every_correct_node(tokenizer, synth) -> None:
    data = MAGEncoder(tokenizer, GraphSpec(objective="sft-multi")).encode(synth(7))
    assert data.nll_mask.tolist() == (data.y == 1).tolist() and data.pair_index.shape[1] == 0


def test_realistic_gsm8k_solutions_encode(tokenizer, public_data) -> None:
    """Real multi-model GSM8K solutions as a one-round MAG of four agents."""
    path = public_data("gsm8k", "model_solutions.jsonl")
    models = ["6b_finetuning", "6b_verification", "175b_finetuning", "175b_verification"]
    debates = []
    with path.open() as fh:
        for i, line in zip(range(6), fh, strict=False):
            rec = json.loads(line)
            gold = rec["ground_truth"].rsplit("A:", 1)[1].strip()
            rs = []
            for m in models:
                body, _, ans = rec[m]["solution"].rpartition("A:")
                rs.append(Response(agent=m.replace("_", "-"), round=0, reasoning=body.strip().replace("\n", " "),
                                   answer=ans.strip(), correct=rec[m]["is_correct"]))
            q = Question(dataset="gsm8k", qid=str(i), text=rec["question"], task=TaskType.NUMBER, gold_answer=gold)
            debates.append(Debate(question=q, panel=[Agent(name=r.agent, model=r.agent) for r in rs], responses=rs,
                                  edges=full_visibility_edges(rs)))
    enc = MAGEncoder(tokenizer, GraphSpec(max_length=512))
    graphs = [enc.encode(d) for d in debates]
    assert enc.stats.mags_read == 6
    for d, g in zip(debates, graphs, strict=True):
        if g is not None:
            assert g.num_nodes == 4 and g.edge_index.shape[1] == 0  # one round: no INFORMS edges
            assert g.y.tolist() == [int(r.correct) for r in d.sorted_responses()]
