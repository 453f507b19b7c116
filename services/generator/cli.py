"""`magdi generate`, `magdi worker` and `magdi teachers serve`.

    magdi generate --panel configs/panels/simulated.yaml --dataset gsm8k \
        --data data/gsm8k/test.jsonl --limit 30 --job demo \
        --convincing data/convincing
    magdi generate ... --job demo --resume          # continue after a crash or Ctrl-C
    magdi worker                                    # claim jobs queued through the API
    magdi teachers serve --solutions data/gsm8k/model_solutions.jsonl \
        --questions data/gsm8k/test.jsonl --port 8901

Only typer, the standard library and the core's protocol config (for its defaults) are imported
here at module level (the core CLI imports this module in every image); the generator's
dependencies load when a command runs.
"""

from pathlib import Path

import typer

from magdi.protocol import ProtocolConfig

_PROTOCOL = ProtocolConfig()  # the options below show the core's defaults, never their own


def register(app: typer.Typer) -> None:
    app.command()(generate)
    app.command()(worker)
    teachers = typer.Typer(no_args_is_help=True, help="The SIMULATED teacher panel (replays recorded outputs).")
    teachers.command("serve")(teachers_serve)
    app.add_typer(teachers, name="teachers")


def generate(
    panel: Path = typer.Option(..., help="panel YAML (see configs/panels/)"),
    dataset: str = typer.Option(..., help="dataset name stored on every question, e.g. gsm8k"),
    data: Path = typer.Option(..., help="data file (or folder, for MATH)"),
    fmt: str | None = typer.Option(None, "--format", help="gsm8k|strategyqa|ecqa|aqua|arc|math|jsonl|auto; "
                                                          "default: the dataset name"),
    limit: int | None = typer.Option(None, min=1, help="number of questions"),
    offset: int = typer.Option(0, min=0, help="first question (0-based)"),
    job: str = typer.Option(..., help="job name; a job is identified by it"),
    resume: bool = typer.Option(False, help="continue an existing job; stored turns are never re-requested"),
    protocol: str = typer.Option(_PROTOCOL.name, help="reconcile | debate"),
    max_rounds: int = typer.Option(_PROTOCOL.max_rounds, min=0, help="discussion rounds after round 0"),
    topology: str = typer.Option(str(_PROTOCOL.topology), help="all | ring | 'a->b,b->c' (who sees whom)"),
    convincing: Path | None = typer.Option(None, help="convincing-samples folder (ReConcile's convincing/ "
                                                      "or one task folder); default: no demos"),
    reask: bool = typer.Option(_PROTOCOL.reask, help="re-ask once when a reply cannot be parsed"),
    missing_confidence: str = typer.Option(_PROTOCOL.missing_confidence,
                                           help="a missing confidence in the team vote: zero (ReConcile: counts "
                                                "as 0.0) | ignore (no weight)"),
    concurrency: int | None = typer.Option(None, min=1, help="debates in flight (default 16)"),
    progress: bool = typer.Option(True, help="live progress bar"),
) -> None:
    """Run a debate job against the panel's endpoints and store every turn in Neo4j as it completes."""
    from services.generator.commands import run_generate

    run_generate(panel=panel, dataset=dataset, data=data, fmt=fmt, limit=limit, offset=offset, job=job,
                 resume=resume, protocol=protocol, max_rounds=max_rounds, topology=topology,
                 convincing=convincing, reask=reask, missing_confidence=missing_confidence,
                 concurrency=concurrency, show_progress=progress)


def worker(
    once: bool = typer.Option(False, help="exit when no job is queued instead of polling"),
    concurrency: int | None = typer.Option(None, min=1, help="debates in flight per job"),
) -> None:
    """Run a generator worker: claim queued jobs (with a lease), run them, repeat."""
    from services.generator.commands import run_worker

    run_worker(once=once, concurrency=concurrency)


def teachers_serve(
    solutions: Path = typer.Option(..., exists=True, dir_okay=False,
                                   help="gsm8k model_solutions.jsonl (the recorded outputs), e.g. "
                                        "data/gsm8k/model_solutions.jsonl"),
    questions: Path = typer.Option(..., exists=True, dir_okay=False,
                                   help="the line-aligned gsm8k test.jsonl, e.g. data/gsm8k/test.jsonl"),
    host: str = typer.Option("127.0.0.1"),
    port: int = typer.Option(8901),
    seed: int = typer.Option(0),
    model: list[str] = typer.Option([], help="serve only these recorded models (repeat)"),
    alias: list[str] = typer.Option([], help="NAME=RECORDED_MODEL extra model name (repeat)"),
    latency: float = typer.Option(0.0, help="fixed delay per answer, seconds"),
    latency_jitter: float = typer.Option(0.0, help="extra uniform delay, seconds"),
    rpm_limit: int | None = typer.Option(None, help="requests per model per minute (429 beyond)"),
    tpm_limit: int | None = typer.Option(None, help="tokens per model per minute (429 beyond)"),
    error_rate: float = typer.Option(0.0, help="P(500/502/503)"),
    timeout_rate: float = typer.Option(0.0, help="P(hang for --hang-s)"),
    hang_s: float = typer.Option(30.0),
    malformed_rate: float = typer.Option(0.0, help="P(content that is not valid JSON)"),
    empty_rate: float = typer.Option(0.0, help="P(empty content)"),
    truncated_body_rate: float = typer.Option(0.0, help="P(HTTP body cut in the middle)"),
    wrong_usage_rate: float = typer.Option(0.0, help="P(usage missing or negative)"),
    reset_rate: float = typer.Option(0.0, help="P(connection dropped mid-body)"),
    down_model: list[str] = typer.Option([], help="model that always answers 503 (repeat)"),
) -> None:
    """Serve the SIMULATED OpenAI-compatible teacher panel (replayed GSM8K outputs, fault injection)."""
    from services.generator.commands import run_teachers

    run_teachers(solutions=solutions, questions=questions, host=host, port=port, seed=seed, models=model,
                 aliases=alias, latency_s=latency, latency_jitter_s=latency_jitter, rpm_limit=rpm_limit,
                 tpm_limit=tpm_limit, error_rate=error_rate, timeout_rate=timeout_rate, hang_s=hang_s,
                 malformed_rate=malformed_rate, empty_rate=empty_rate, truncated_body_rate=truncated_body_rate,
                 wrong_usage_rate=wrong_usage_rate, reset_rate=reset_rate, down_models=down_model)
