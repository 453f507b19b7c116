"""Convincing samples (ReConcile §4.3): few-shot demos whose human explanation flipped an agent
from wrong to right, shown to the OTHER agents.

Files follow ReConcile's `convincing/<TASK>/<model>.json` layout: a list of objects with a
`train_sample` holding `question`, `answer`, `gold_explanation` and, for multiple-choice tasks,
`options`. They are read once when a job is created and embedded in its spec, so a worker on
another machine runs the same prompts without the files (and a changed file is a changed job).
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from pathlib import Path

from magdi.answers import normalize_answer
from magdi.errors import UserError
from magdi.mag import TaskType
from magdi.protocol import Demo

# dataset name -> ReConcile's task folder name
TASK_DIRS = {"gsm8k": "GSM8k", "strategyqa": "SQA", "sqa": "SQA", "ecqa": "ECQA", "aqua": "Aqua"}
_OPTION_LABEL = re.compile(r"^\s*\(?[A-Ja-j1-9]\s*[)\].:]\s*")


class DemoError(UserError):
    """A convincing-samples folder or file that cannot be used; the message names it."""


def task_dir(root: Path, dataset: str) -> Path:
    """`root` itself when it holds *.json files, else its subfolder for `dataset` (case-insensitive)."""
    if not root.is_dir():
        raise DemoError(f"{root}: convincing-samples folder not found")
    if any(root.glob("*.json")):
        return root
    wanted = {dataset.lower(), TASK_DIRS.get(dataset.lower(), dataset).lower()}
    for child in sorted(root.iterdir()):
        if child.is_dir() and child.name.lower() in wanted:
            return child
    raise DemoError(f"{root}: no *.json files and no subfolder for dataset {dataset!r} "
                    f"(looked for {', '.join(sorted(wanted))})")


def load_file(path: Path, task: TaskType) -> list[Demo]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise DemoError(f"{path}: cannot read convincing samples ({exc})") from None
    if not isinstance(data, list):
        raise DemoError(f"{path}: expected a JSON list of samples")
    demos = []
    for i, item in enumerate(data):
        sample = item.get("train_sample") if isinstance(item, dict) else None
        if not isinstance(sample, dict) or not sample.get("question") or sample.get("answer") in (None, ""):
            raise DemoError(f"{path}: sample {i}: needs train_sample.question and train_sample.answer")
        options = [_OPTION_LABEL.sub("", str(o)).strip() for o in sample.get("options") or []]
        answer = normalize_answer(sample["answer"], task, options)
        if answer is None:
            raise DemoError(f"{path}: sample {i}: answer {sample['answer']!r} is not a valid {task.value} answer")
        demos.append(Demo(question=str(sample["question"]).strip(), options=options, answer=answer,
                          explanation=str(sample.get("gold_explanation") or "").strip()))
    return demos


def load_convincing(root: str | Path, dataset: str, task: TaskType, stems: Sequence[str]) -> dict[str, list[Demo]]:
    """Demos per file stem for every stem in `stems` (one per panel agent); DemoError if one is missing."""
    folder = task_dir(Path(root), dataset)
    available = sorted(p.stem for p in folder.glob("*.json"))
    missing = sorted({s for s in stems if s not in available})
    if missing:
        raise DemoError(f"{folder}: no convincing samples for {', '.join(missing)} (available: "
                        f"{', '.join(available) or 'none'}); set `demos:` on those agents in the panel")
    return {stem: load_file(folder / f"{stem}.json", task) for stem in dict.fromkeys(stems)}


def demos_for(agent_stems: dict[str, str], bank: dict[str, list[Demo]]) -> dict[str, list[Demo]]:
    """Each agent gets the OTHER agents' samples, in panel order (§4.3); none without a bank."""
    if not bank:
        return {name: [] for name in agent_stems}
    return {
        name: [d for other, stem in agent_stems.items() if other != name for d in bank.get(stem, [])]
        for name in agent_stems
    }
