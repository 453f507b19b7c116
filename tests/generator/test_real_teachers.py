"""Real local teachers: a debate against HF's `transformers serve` running SmolLM2 on this machine.

Slow (a 135M model writes a few tokens per second on a shared CPU): `pytest -m slow`.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import yaml

from magdi.mag import ParseStatus
from magdi.model_server import ModelServer
from magdi.store.graph_store import DebateFilter

REPO = Path(__file__).resolve().parents[2]
MAGDI = str(Path(__import__("sys").executable).with_name("magdi"))


@pytest.mark.slow
def test_two_real_agents_one_question_every_node_keeps_the_servers_text_and_usage(
        smollm2, store, neo4j_env, gsm8k, tmp_path) -> None:
    from transformers import AutoTokenizer

    panel = yaml.safe_load((REPO / "configs" / "panels" / "local-hf.yaml").read_text())
    panel["agents"] = panel["agents"][:2]
    panel["defaults"]["max_tokens"] = 96
    with ModelServer(log_file=tmp_path / "serve.log") as server:
        panel["defaults"]["base_url"] = server.base_url
        (tmp_path / "panel.yaml").write_text(yaml.safe_dump(panel))
        run = subprocess.run([MAGDI, "generate", "--panel", str(tmp_path / "panel.yaml"), "--dataset", "gsm8k",
                              "--data", str(gsm8k["test"]), "--format", "gsm8k", "--limit", "1", "--max-rounds", "1",
                              "--job", "real", "--convincing", str(gsm8k["convincing"] / "GSM8k")],
                             capture_output=True, text=True, timeout=1500)
        assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]
    assert server.proc.poll() is not None  # stopped by pid
    [debate] = list(store.iter_debates(DebateFilter(job_id="job-real")))
    tokenizer = AutoTokenizer.from_pretrained(smollm2)
    present = [r for r in debate.responses if r.parse_status is not ParseStatus.ABSENT]
    assert {r.agent for r in present} == {"smollm2-cool", "smollm2-mid"} and {r.round for r in present} >= {0}
    for r in present:
        assert r.model == "smollm2-135m-instruct" and r.raw_text, r
        assert r.tokens_in > 100 and 0 < r.tokens_out <= 96, r  # the server's usage
        # the stored text is what the server generated: it re-tokenises to its completion_tokens
        assert abs(len(tokenizer(r.raw_text, add_special_tokens=False)["input_ids"]) - r.tokens_out) <= 2, r
