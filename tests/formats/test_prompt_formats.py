"""One prompt per question: training node texts, `magdi eval` prompts and the sft/dpo exports agree.

Checked with the real SmolLM2 tokenizer and its chat template, on a choice question (the options
are where the formats used to differ), in both prompt formats.
"""

from __future__ import annotations

import pytest

from magdi.formats import dpo, sft
from magdi.mag import Agent, Debate, Question, Response, TaskType
from magdi.prompts import CHAT_TEMPLATE, REFERENCE, resolve_kind
from trainer.graphs import GraphSpec, MAGEncoder, StudentPrompt


def _debate() -> Debate:
    q = Question(dataset="ecqa", qid="7", text="Where do fish live?", task=TaskType.CHOICE, gold_answer="A",
                 options=["sea", "tree"])
    responses = [Response(agent="alice", round=0, reasoning="Fish need water. I agree with bob.", answer="A",
                          correct=True, model="m"),
                 Response(agent="bob", round=0, reasoning="Fish climb.", answer="B", correct=False, model="m")]
    return Debate(question=q, panel=[Agent(name="alice", model="m"), Agent(name="bob", model="m")],
                  responses=responses)


@pytest.fixture(scope="module")
def smol_tokenizer(smollm2):
    from trainer.model import load_tokenizer

    return load_tokenizer(str(smollm2))


def _first_node(tokenizer, kind: str) -> tuple[list[int], int]:
    data = MAGEncoder(tokenizer, GraphSpec(prompt_format=kind)).encode(_debate())
    return data.tokens[: int(data.length[0])].tolist(), int(data.prompt_length[0])  # node 0 = alice, correct


def test_auto_picks_the_students_chat_template(smol_tokenizer) -> None:
    assert resolve_kind("auto", smol_tokenizer) == CHAT_TEMPLATE
    assert resolve_kind("reference", smol_tokenizer) == REFERENCE


def test_chat_template_same_prompt_in_training_eval_and_exports(smol_tokenizer) -> None:
    tok, d = smol_tokenizer, _debate()
    eval_prompt = tok.decode(StudentPrompt(tok, CHAT_TEMPLATE).prompt_ids(d.question))
    record = next(sft.iter_records([d]))
    export_prompt = tok.apply_chat_template(record["messages"][:1], add_generation_prompt=True, tokenize=False)
    node, p = _first_node(tok, CHAT_TEMPLATE)
    assert tok.decode(node[:p]) == eval_prompt == export_prompt
    assert "Where do fish live? Answer choices: (A) sea (B) tree<|im_end|>" in eval_prompt
    # the training sequence is the exported conversation, ending with the end-of-turn token
    assert tok.decode(node) == tok.apply_chat_template(record["messages"], tokenize=False).rstrip()
    assert node[-1] == tok.eos_token_id and node.count(tok.eos_token_id) == 3  # system, user, assistant turns
    assert next(dpo.iter_records([d]))["prompt"] == record["messages"][:1]


def test_reference_same_prompt_in_training_eval_and_exports(smol_tokenizer) -> None:
    tok, d = smol_tokenizer, _debate()
    eval_prompt = tok.decode(StudentPrompt(tok, REFERENCE).prompt_ids(d.question))
    record = next(sft.iter_records([d], prompt_format=REFERENCE))
    node, p = _first_node(tok, REFERENCE)
    assert eval_prompt == record["prompt"] == tok.decode(node[:p])
    assert record["prompt"] == "[INST] ### Question: Where do fish live? Answer choices: (A) sea (B) tree[/INST] ### Answer:"
    assert record["completion"] == " Fish need water So the answer is A" == tok.decode(node[p:-1])
    assert node[-1] == tok.eos_token_id  # SmolLM2 adds no BOS of its own, so none is added
    pair = next(dpo.iter_records([d], prompt_format=REFERENCE))
    assert pair["prompt"] == record["prompt"] and pair["rejected"] == " Fish climb. So the answer is B"


def test_export_cli_rejects_an_unknown_prompt_format() -> None:
    from typer.testing import CliRunner

    from magdi.cli import app

    outcome = CliRunner().invoke(app, ["export", "--format", "sft", "--out", "x.jsonl", "--prompt-format", "chat"])
    assert outcome.exit_code == 2 and "chat_template or reference" in outcome.output
