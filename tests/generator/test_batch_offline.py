"""Offline batch mode: `magdi generate --mode batch --offline --batch-dir DIR` and `vllm run-batch`.

The generator writes each batch as `<stem>.input.jsonl` and waits for `<stem>.output.jsonl`. Here
`run_batch_files` plays the GPU node's part: for every input file without an output it does what
`vllm run-batch -i IN -o OUT` does (each line's body sent to a chat endpoint, the answers written in
vLLM's output shape), against the simulated panel's `/v1/chat/completions`, and moves the output
into place. The generator itself calls no endpoint. The job is killed while its first batch
file waits; the resumed run waits for that same file (written once), and the MAGs equal those of a
synchronous run on the same panel.
"""

from __future__ import annotations

import json
import os
import threading
import uuid
from collections import Counter
from pathlib import Path

import httpx
from generator_helpers import MAGDI, job_mags, neo4j_subprocess_env, running, wait_for, write_panel

from magdi.store.batches import BatchStore
from magdi.store.graph_store import GraphStore
from magdi.store.jobs import JobStore

OFFLINE_ENV = {"MAGDI_GENERATOR_BATCH_POLL_S": "0.2", "MAGDI_GENERATOR_BATCH_POLL_MAX_S": "0.5",
               "MAGDI_GENERATOR_BATCH_SETTLE_S": "1"}


def vllm_output_line(custom_id: str, response: httpx.Response) -> dict:
    """One line as `vllm run-batch` writes it (vllm.entrypoints.openai.protocol.BatchRequestOutput)."""
    ok = response.status_code == 200
    return {"id": f"vllm-{uuid.uuid4().hex}", "custom_id": custom_id,
            "response": {"status_code": response.status_code, "request_id": f"vllm-batch-{uuid.uuid4().hex}",
                         "body": response.json() if ok else None},
            "error": None if ok else response.text}


def run_batch_files(folder: Path, base_url: str) -> list[Path]:
    """Every input file without an output, run like `vllm run-batch -i IN -o OUT.tmp && mv OUT.tmp OUT`."""
    ran = []
    with httpx.Client(timeout=30.0) as http:
        for inp in sorted(folder.glob("*.input.jsonl")):
            out = inp.with_name(inp.name.removesuffix(".input.jsonl") + ".output.jsonl")
            if out.exists():
                continue
            lines = []
            for raw in inp.read_text().splitlines():
                request = json.loads(raw)
                assert request["method"] == "POST" and request["url"] == "/v1/chat/completions", request
                reply = http.post(f"{base_url}/chat/completions", json=request["body"])
                lines.append(json.dumps(vllm_output_line(request["custom_id"], reply)))
            tmp = out.with_name(f".{out.name}.tmp")
            tmp.write_text("\n".join(lines) + "\n")
            os.replace(tmp, out)
            ran.append(inp)
    return ran


class GpuNode:
    """A thread that keeps running the folder's new input files until stopped (or paused)."""

    def __init__(self, folder: Path, base_url: str) -> None:
        self.folder, self.base_url = folder, base_url
        self.stop, self.go = threading.Event(), threading.Event()
        self.ran: list[Path] = []
        self.thread = threading.Thread(target=self._loop, daemon=True)

    def _loop(self) -> None:
        while not self.stop.wait(0.2):
            if self.go.is_set():
                self.ran += run_batch_files(self.folder, self.base_url)

    def __enter__(self) -> GpuNode:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join(timeout=30)


def test_offline_batch_files_killed_and_resumed_end_with_the_sync_mags(
        store: GraphStore, neo4j_env, start_panel, gsm8k: dict[str, Path], tmp_path: Path) -> None:  # noqa: ANN001
    n = 6
    panel = start_panel()
    panel_file = write_panel(tmp_path / "panel.yaml", panel.base_url)
    cmd = [MAGDI, "generate", "--panel", str(panel_file), "--dataset", "gsm8k", "--data", str(gsm8k["test"]),
           "--limit", str(n), "--offset", "420", "--convincing", str(gsm8k["convincing"]), "--no-progress"]
    env = neo4j_subprocess_env(**OFFLINE_ENV)
    with running([*cmd, "--job", "sync-off"], env, tmp_path / "sync.log") as proc:
        assert proc.wait(timeout=300) == 0, (tmp_path / "sync.log").read_text()[-3000:]
    panel.reset()

    folder = tmp_path / "batches"
    offline = [*cmd, "--job", "offline", "--mode", "batch", "--offline", "--batch-dir", str(folder)]
    log = tmp_path / "offline.log"
    with GpuNode(folder, panel.base_url) as gpu:
        with running(offline, env, log) as proc:
            wait_for(lambda: any(folder.glob("*.input.jsonl")) or proc.poll() is not None, 120, "a batch input file")
            wait_for(lambda: any(b["batch_id"] for b in BatchStore(store).summaries("job-offline")), 30,
                     "the file recorded on the job")
            assert proc.poll() is None, log.read_text()[-3000:]
            proc.kill()  # SIGKILL while the first round's files wait for their outputs
            proc.wait(timeout=10)
        first = sorted(p.name for p in folder.glob("*.input.jsonl"))
        gpu.go.set()  # the GPU node gets to them only now: the resumed run must wait for the same files
        with running([*offline, "--resume"], env, log) as proc:
            assert proc.wait(timeout=300) == 0, log.read_text()[-3000:]

    assert {p.name for p in gpu.ran} >= set(first), "the first files were answered, not written anew"
    inputs = sorted(folder.glob("*.input.jsonl"))
    assert len({p.name for p in gpu.ran}) == len(inputs)
    sent = Counter(json.loads(line)["custom_id"] for p in inputs for line in p.read_text().splitlines())
    assert sent and max(sent.values()) == 1, [c for c, k in sent.items() if k > 1][:5]
    for p in inputs:  # one model per file, named in the file name, as `vllm run-batch --model` serves one
        models = {json.loads(line)["body"]["model"] for line in p.read_text().splitlines()}
        assert len(models) == 1 and models.pop() in p.name
    recorded = BatchStore(store).summaries("job-offline")
    assert {b["batch_id"] for b in recorded} == {p.name.removesuffix(".input.jsonl") for p in inputs}
    assert all(b["ingested"] and b["kind"] == "offline" for b in recorded)

    sync, off = job_mags(store, "job-sync-off"), job_mags(store, "job-offline")
    assert len(off) == n and off == sync
    job = JobStore(store).get("job-offline")
    assert job is not None and job.status.value == "complete" and job.done == n


def test_an_output_file_with_lines_that_are_not_batch_lines_still_ends_the_wait(tmp_path: Path) -> None:
    """JSON that is not an output line (no custom_id, a list, null, a string) is skipped, not fatal;
    the requests it does not answer count as failed once the file stops growing."""
    import asyncio

    from magdi.store.batches import BatchRecord
    from services.generator.batch_api import PollPolicy
    from services.generator.batching import OfflineBackend

    backend = OfflineBackend(tmp_path, PollPolicy(initial_s=0.05, factor=1.0, max_s=0.05, timeout_s=20.0),
                             "job", settle_s=0.3)
    inp = tmp_path / "job-0000-m-abc.input.jsonl"
    inp.write_text("{}\n")
    answered = {"custom_id": "t/a/0#a.1", "error": None,
                "response": {"status_code": 200, "body": {"choices": [{"message": {"content": "hi"}}]}}}
    junk = [{"id": "no custom_id"}, [1], None, "x", {"custom_id": 7}]
    backend.output_path(inp).write_text("\n".join(json.dumps(x) for x in [*junk, answered]) + "\n{\"custom_id\": ")
    record = BatchRecord(job_id="job", key="job/abc", kind="offline", seq=0, model="m", endpoint="e",
                         batch_id="job-0000-m-abc", input_file_id=str(inp), custom_ids=["t/a/0#a.1", "t/b/0#a.1"])
    asyncio.run(asyncio.wait_for(backend.wait(record, lambda r: None), 15))
    assert record.status == "completed"
    results = asyncio.run(backend.collect(record))
    assert results["t/a/0#a.1"].ok and not results["t/b/0#a.1"].ok
