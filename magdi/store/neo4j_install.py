"""Fetching Neo4j Community from Maven Central, and finding a Java that runs it.

`org.neo4j:neo4j` on Maven Central is the whole Community server (kernel, Cypher, bolt, built-in
procedures). Maven resolves its runtime classpath once into
`${MAGDI_CACHE_DIR:-~/.cache/magdi}/neo4j-<version>/lib`, shared by every checkout and CI run;
the download goes to a temp dir renamed into place under a file lock, so concurrent first runs
neither download twice nor see half a directory.
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import json
import logging
import os
import re
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from magdi.errors import UserError

log = logging.getLogger(__name__)

NEO4J_VERSION = "5.26.30"  # same LTS line as the docker image neo4j:5.26-community
_DEPENDENCY_PLUGIN = "org.apache.maven.plugins:maven-dependency-plugin:3.6.1"
_SUPPORTED_JAVA = (17, 21)
_SYSTEM_JAVAS = ("/usr/lib/jvm/java-17-openjdk-amd64/bin/java", "/usr/lib/jvm/java-21-openjdk-amd64/bin/java")
_MARKER = "installed.json"
_POM = """<project xmlns="http://maven.apache.org/POM/4.0.0"><modelVersion>4.0.0</modelVersion>
  <groupId>magdi</groupId><artifactId>neo4j-runtime</artifactId><version>1</version><packaging>pom</packaging>
  <dependencies><dependency>
    <groupId>org.neo4j</groupId><artifactId>neo4j</artifactId><version>{version}</version>
  </dependency></dependencies>
</project>
"""


class Neo4jInstallError(UserError, RuntimeError):
    """The Neo4j jars or a Java runtime could not be obtained; the message says what to fix."""


def default_cache_dir() -> Path:
    """Jar cache shared by all checkouts and CI runs, so Neo4j is downloaded once per machine."""
    return Path(os.environ.get("MAGDI_CACHE_DIR") or Path.home() / ".cache" / "magdi").expanduser()


@functools.lru_cache(maxsize=16)
def java_version(java: str) -> int | None:
    """Major version of a `java` binary (8 for 1.8), or None when it does not run."""
    try:
        out = subprocess.run([java, "-version"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return None
    m = re.search(r'version "(\d+)(?:\.(\d+))?', out.stderr + out.stdout)
    if not m:
        return None
    major = int(m.group(1))
    return int(m.group(2) or 0) if major == 1 else major


def find_java() -> str:
    """A Java that Neo4j 5.26 supports (17 or 21): JAVA_HOME, then the system JDK 17/21, then PATH.

    Newer Javas (tested: Temurin 25) start 5.26 too but are unsupported upstream, so they are only
    used as a last resort from PATH, with a warning.
    """
    java_home = os.environ.get("JAVA_HOME")
    if java_home:
        cand = str(Path(java_home) / "bin" / "java")
        if java_version(cand) in _SUPPORTED_JAVA:
            return cand
        log.warning("JAVA_HOME=%s is not Java 17 or 21 (Neo4j %s needs one); looking elsewhere", java_home, NEO4J_VERSION)
    for cand in _SYSTEM_JAVAS:
        if os.access(cand, os.X_OK):
            return cand
    on_path = shutil.which("java")
    if on_path:
        if java_version(on_path) not in _SUPPORTED_JAVA:
            log.warning("%s is Java %s; Neo4j %s supports 17 and 21", on_path, java_version(on_path), NEO4J_VERSION)
        return on_path
    raise Neo4jInstallError(
        f"no Java found: Neo4j {NEO4J_VERSION} needs Java 17 or 21 "
        "(e.g. `apt install openjdk-17-jre-headless`) or set JAVA_HOME"
    )


@contextlib.contextmanager
def file_lock(path: Path) -> Iterator[None]:
    """Exclusive advisory lock, so concurrent processes neither download twice nor start one home twice."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def install(cache_dir: Path, *, timeout_s: float = 1800.0) -> Path:
    """Resolve the server's runtime jars with Maven once (atomic rename, file lock); returns lib/."""
    root = cache_dir / f"neo4j-{NEO4J_VERSION}"
    if (root / _MARKER).is_file():
        return root / "lib"
    cache_dir.mkdir(parents=True, exist_ok=True)
    with file_lock(cache_dir / f"neo4j-{NEO4J_VERSION}.lock"):
        if (root / _MARKER).is_file():  # another process finished while we waited
            return root / "lib"
        mvn = os.environ.get("MAGDI_MVN") or shutil.which("mvn")
        if not mvn or not os.access(mvn, os.X_OK):
            raise Neo4jInstallError(
                f"Maven (`mvn`) is needed once to fetch Neo4j {NEO4J_VERSION} from Maven Central into {root}; "
                "install it (e.g. `apt install maven`) or set MAGDI_MVN"
            )
        tmp = Path(tempfile.mkdtemp(prefix=f".neo4j-{NEO4J_VERSION}-", dir=cache_dir))
        try:
            (tmp / "pom.xml").write_text(_POM.format(version=NEO4J_VERSION))
            cmd = [mvn, "-q", "-B", "-f", str(tmp / "pom.xml"), f"{_DEPENDENCY_PLUGIN}:copy-dependencies",
                   f"-DoutputDirectory={tmp / 'lib'}", "-DincludeScope=runtime"]
            log.info("downloading Neo4j %s from Maven Central into %s (once, ~125 MB)", NEO4J_VERSION, root)
            t0 = time.monotonic()
            try:
                res = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s)
            except subprocess.TimeoutExpired:
                raise Neo4jInstallError(f"mvn took over {timeout_s:.0f}s fetching Neo4j; is Maven Central reachable?") from None
            except OSError as exc:
                raise Neo4jInstallError(f"could not run {mvn}: {exc}") from None
            if res.returncode != 0 or not (tmp / "lib" / f"neo4j-{NEO4J_VERSION}.jar").is_file():
                tail = "\n".join((res.stdout + res.stderr).strip().splitlines()[-25:])
                raise Neo4jInstallError(
                    f"mvn could not fetch org.neo4j:neo4j:{NEO4J_VERSION} (exit {res.returncode}); Maven Central "
                    f"(or a mirror in ~/.m2/settings.xml) must be reachable:\n{tail}"
                )
            jars = sorted(p.name for p in (tmp / "lib").glob("*.jar"))
            (tmp / _MARKER).write_text(json.dumps({"version": NEO4J_VERSION, "jars": jars}, indent=1))
            os.chmod(tmp, 0o755)  # mkdtemp makes it 0700; the cache is meant to be shared
            if root.exists():  # a stale dir without marker: never complete, safe to replace
                shutil.rmtree(root)
            os.replace(tmp, root)
            log.info("Neo4j %s installed (%d jars) in %.0fs", NEO4J_VERSION, len(jars), time.monotonic() - t0)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return root / "lib"

