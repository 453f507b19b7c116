"""Fail when a test was skipped for a reason not listed in .ci/allowed-skips.txt.

    python3 .ci/check_skips.py REPORT.xml [REPORT.xml ...]     # pytest --junitxml reports

A skipped test proves nothing; a skip that CI tolerates must be listed with why it is acceptable.
Standard library only, so it runs with any python3.
"""

from __future__ import annotations

import re
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

ALLOWED = Path(__file__).resolve().with_name("allowed-skips.txt")


def allowed_patterns(path: Path = ALLOWED) -> list[tuple[re.Pattern[str], str]]:
    """(pattern, why) per entry; an entry without its `## why` is an error."""
    entries = []
    for number, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        pattern, sep, why = line.partition("##")
        if not sep or not why.strip() or not pattern.strip():
            raise SystemExit(f"{path}:{number}: expected `<regex>  ##  <why it is acceptable>`")
        entries.append((re.compile(pattern.strip()), why.strip()))
    return entries


def skips(report: Path) -> list[tuple[str, str]]:
    """(test id, skip message) of every skipped test case in a junit XML report."""
    out = []
    for case in ET.parse(report).getroot().iter("testcase"):
        for skipped in case.findall("skipped"):
            out.append((f"{case.get('classname')}::{case.get('name')}", skipped.get("message") or ""))
    return out


def main(argv: list[str]) -> int:
    if not argv:
        print(__doc__)
        return 2
    patterns = allowed_patterns()
    unexplained, tolerated = [], []
    for report in map(Path, argv):
        for test, message in skips(report):
            why = next((why for pattern, why in patterns if pattern.match(message)), None)
            (tolerated if why else unexplained).append(f"{test}: {message}")
    for line in tolerated:
        print(f"allowed skip  {line}")
    for line in unexplained:
        print(f"UNEXPLAINED SKIP  {line}")
    print(f"skips: {len(tolerated)} allowed (.ci/allowed-skips.txt), {len(unexplained)} unexplained")
    return 1 if unexplained else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
