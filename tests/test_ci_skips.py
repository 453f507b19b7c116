"""`.ci/run` fails on a skipped test unless its reason is listed in .ci/allowed-skips.txt."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def report(tmp_path: Path, *skip_messages: str) -> Path:
    cases = "".join(f'<testcase classname="tests.test_x" name="test_{i}"><skipped type="pytest.skip" '
                    f'message="{m}">x</skipped></testcase>' for i, m in enumerate(skip_messages))
    path = tmp_path / f"report-{len(list(tmp_path.iterdir()))}.xml"
    path.write_text(f'<testsuites><testsuite name="pytest">{cases}<testcase classname="t" name="ok"/>'
                    "</testsuite></testsuites>")
    return path


def check(*reports: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(REPO / ".ci" / "check_skips.py"), *map(str, reports)],
                          capture_output=True, text=True, timeout=60)


def test_a_listed_reason_passes_and_any_other_skip_fails(tmp_path):
    allowed = report(tmp_path, "pip-audit cannot query advisories here: PyPI did not answer")
    assert check(allowed).returncode == 0
    chromium = report(tmp_path, "no chromium binary (install Debian&apos;s: `make browser`)")
    result = check(allowed, chromium)
    assert result.returncode == 1
    assert "UNEXPLAINED SKIP  tests.test_x::test_0: no chromium binary" in result.stdout
    assert "1 allowed" in result.stdout and "1 unexplained" in result.stdout


def test_every_allowed_skip_says_why():
    entries = [line for line in (REPO / ".ci" / "allowed-skips.txt").read_text().splitlines()
               if line.strip() and not line.startswith("#")]
    assert entries
    for line in entries:
        pattern, _, why = line.partition("##")
        assert pattern.strip() and len(why.split()) >= 5, line


def test_ci_checks_the_skips_of_both_runs():
    script = (REPO / ".ci" / "run").read_text()
    assert 'make test PYTEST_ARGS="--junitxml=$reports/default.xml"' in script
    assert 'make test-slow PYTEST_ARGS="--junitxml=$reports/slow.xml"' in script
    assert script.rstrip().endswith('python3 .ci/check_skips.py "$reports"/*.xml')
