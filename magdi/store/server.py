"""A managed local Neo4j Community server, fetched from Maven Central and run as a plain JVM.

Why: the demo, the CLI and the tests need a real Neo4j without Docker, and the Neo4j tarball host
is not always reachable while Maven Central is. `org.neo4j:neo4j` on Maven Central is the whole
Community server (kernel, Cypher, bolt, procedures such as `db.labels()`); Maven resolves its
runtime classpath once into `${MAGDI_CACHE_DIR:-~/.cache/magdi}/neo4j-<version>/lib` and every
instance runs `java -cp 'lib/*' org.neo4j.server.CommunityEntryPoint` against its own home dir.
The initial password is set the way `neo4j-admin dbms set-initial-password` does it: by running
`org.neo4j.cli.AdminTool` from the same jars before the first start.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import secrets
import signal
import socket
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

import neo4j
from neo4j.exceptions import AuthError, DriverError, Neo4jError

from magdi.errors import UserError
from magdi.processes import free_port
from magdi.store.neo4j_install import (
    NEO4J_VERSION,
    Neo4jInstallError,
    default_cache_dir,
    file_lock,
    find_java,
    install,
    java_version,
)

__all__ = ["NEO4J_VERSION", "ManagedNeo4j", "Neo4jInstallError", "Neo4jStartError", "ServerInfo", "free_port"]

log = logging.getLogger(__name__)

_ENTRY_POINT = "org.neo4j.server.CommunityEntryPoint"
_ADMIN_TOOL = "org.neo4j.cli.AdminTool"
_USER = "neo4j"


class Neo4jStartError(UserError, RuntimeError):
    """The server did not come up; the message carries the tail of its log."""


@dataclass(frozen=True)
class ServerInfo:
    """How to reach a running managed server (what `credentials.json` holds, plus pid and home)."""

    uri: str
    user: str
    password: str | None
    pid: int
    home: Path
    bolt_port: int


def _mib(size: str) -> int:
    m = re.fullmatch(r"(\d+)([kmgt]?)", size.strip().lower())
    if not m:
        raise UserError(f"bad memory size {size!r} (use e.g. 512m or 1g)")
    return int(m.group(1)) * {"k": 1 / 1024, "m": 1, "g": 1024, "t": 1024 * 1024, "": 1 / 2**20}[m.group(2)]


class ManagedNeo4j:
    """One Neo4j server instance living in `home` (conf/, data/, logs/, run/, credentials.json)."""

    def __init__(
        self,
        home: Path,
        *,
        auth: bool = True,
        bolt_port: int | None = None,
        page_cache: str = "64m",
        heap: str = "1g",
        tx_memory_max: str = "512m",
        java: str | None = None,
        cache_dir: Path | None = None,
        startup_timeout: float = 120.0,
        jvm_args: Sequence[str] = (),
    ) -> None:
        """`jvm_args` are appended last, so they override ours (tests pass -XX:TieredStopAtLevel=1:
        C1 only starts ~30% faster, but long Cypher workloads run slower without C2).
        `tx_memory_max` is `db.memory.transaction.max`: one query (e.g. `RETURN range(1, 10^8)`) cannot
        take the heap; it fails with MemoryPoolOutOfMemoryError instead."""
        self.home = Path(home).expanduser().resolve()
        self.auth = auth
        self.bolt_port = bolt_port
        self.page_cache = page_cache
        self.heap = heap
        self.tx_memory_max = tx_memory_max
        self.java = java
        self.cache_dir = Path(cache_dir).expanduser() if cache_dir else default_cache_dir()
        self.startup_timeout = startup_timeout
        self.jvm_args = tuple(jvm_args)
        self.install_timeout = 1800.0
        self.credentials_file = self.home / "credentials.json"
        self.pid_file = self.home / "run" / "neo4j.pid"
        self.log_file = self.home / "logs" / "neo4j.log"
        self.console_log = self.home / "logs" / "console.log"  # JVM stdout/stderr (bad flags, crashes)
        self._proc: subprocess.Popen[bytes] | None = None

    # -- install ---------------------------------------------------------------------------------
    def ensure_installed(self) -> Path:
        """Resolve the server's runtime jars with Maven once (atomic rename, file lock); returns lib/."""
        return install(self.cache_dir, timeout_s=self.install_timeout)

    # -- lifecycle -------------------------------------------------------------------------------
    def start(self) -> ServerInfo:
        """Start (or find already running) the server for this home and wait until bolt answers."""
        with file_lock(self.home / "run" / "lock"):
            running = self.status()
            if running is not None:
                log.info("Neo4j already running for %s (pid %d, %s)", self.home, running.pid, running.uri)
                return running
            pid = self._read_pid()
            if pid is not None and self._alive(pid):  # a second JVM would only fail on the store lock
                raise Neo4jStartError(
                    f"Neo4j pid {pid} of {self.home} is running but bolt does not answer; stop it first "
                    f"(ManagedNeo4j.stop / `magdi db stop`) and see {self.log_file}"
                )
            lib = self.ensure_installed()
            java = self.java or find_java()
            creds = self._read_credentials()
            attempts = 1 if self.bolt_port else 3  # retry with a fresh port if ours was taken meanwhile
            for attempt in range(1, attempts + 1):
                port = self.bolt_port or self._pick_port(creds if attempt == 1 else {})
                try:
                    return self._start_once(java, lib, port, creds)
                except Neo4jStartError as exc:
                    if attempt == attempts or "Address already in use" not in str(exc):
                        raise
                    log.warning("bolt port %d was taken during startup; retrying on another port", port)
        raise AssertionError("unreachable")

    def status(self) -> ServerInfo | None:
        """The running server's info if its pid is alive and its bolt port answers, else None."""
        pid = self._read_pid()
        creds = self._read_credentials()
        if pid is None or not self._alive(pid) or "bolt_port" not in creds:
            return None
        port = int(creds["bolt_port"])
        info = ServerInfo(creds.get("uri") or f"bolt://127.0.0.1:{port}", creds.get("user") or _USER,
                          creds.get("password"), pid, self.home, port)
        try:
            self._probe(info, timeout=5.0)
        except AuthError:
            log.warning("Neo4j pid %d answers but rejects the password in %s", pid, self.credentials_file)
        except (DriverError, Neo4jError, OSError):
            return None
        return info

    def stop(self, timeout: float = 30.0) -> bool:
        """SIGTERM the server (a clean checkpoint), SIGKILL after `timeout`; False if it was not running."""
        with file_lock(self.home / "run" / "lock"):
            pid = self._read_pid()
            if pid is None or not self._alive(pid):
                self.pid_file.unlink(missing_ok=True)
                return False
            log.info("stopping Neo4j pid %d (%s)", pid, self.home)
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
            if not self._wait_exit(pid, timeout):
                log.warning("Neo4j pid %d ignored SIGTERM for %.0fs; sending SIGKILL", pid, timeout)
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
                self._wait_exit(pid, 10.0)
            self.pid_file.unlink(missing_ok=True)
            return True

    def __enter__(self) -> ServerInfo:
        return self.start()

    def __exit__(self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None) -> None:
        self.stop()

    # -- internals -------------------------------------------------------------------------------
    def _start_once(self, java: str, lib: Path, port: int, creds: dict) -> ServerInfo:
        self._write_config(lib, port)  # before the password: AdminTool reads the directories from it
        password = self._prepare_password(java, lib, creds)
        self._write_credentials(port, password)
        cmd = [java, *self._jvm_args(java), "-cp", f"{lib}{os.sep}*", _ENTRY_POINT,
               f"--home-dir={self.home}", f"--config-dir={self.home / 'conf'}"]
        self.log_file.parent.mkdir(parents=True, exist_ok=True)
        log_offset = self.log_file.stat().st_size if self.log_file.exists() else 0
        t0 = time.monotonic()
        with open(self.console_log, "ab") as console:
            console_offset = console.tell()
            self._proc = subprocess.Popen(cmd, cwd=self.home, stdin=subprocess.DEVNULL, stdout=console,
                                          stderr=subprocess.STDOUT, start_new_session=True)
        pid = self._proc.pid
        self.pid_file.write_text(f"{pid}\n")
        info = ServerInfo(f"bolt://127.0.0.1:{port}", _USER, password, pid, self.home, port)
        try:
            self._wait_ready(info, log_offset, console_offset)
        except BaseException:
            self._proc.kill()
            self._proc.wait()
            self.pid_file.unlink(missing_ok=True)
            raise
        log.info("Neo4j %s up in %.1fs: %s (pid %d, home %s)", NEO4J_VERSION, time.monotonic() - t0, info.uri, pid, self.home)
        return info

    def _wait_ready(self, info: ServerInfo, log_offset: int, console_offset: int) -> None:
        assert self._proc is not None
        deadline = time.monotonic() + self.startup_timeout
        while True:
            code = self._proc.poll()
            if code is not None:
                raise Neo4jStartError(f"Neo4j exited with code {code} during startup.\n{self._log_tail(log_offset, console_offset)}")
            try:
                with socket.create_connection(("127.0.0.1", info.bolt_port), timeout=0.5):
                    pass
                self._probe(info, timeout=2.0)
                return
            except AuthError as exc:
                raise Neo4jStartError(f"Neo4j rejected the password in {self.credentials_file}: {exc}") from None
            except (DriverError, Neo4jError, OSError):
                pass
            if time.monotonic() > deadline:
                raise Neo4jStartError(
                    f"Neo4j did not answer on {info.uri} within {self.startup_timeout:.0f}s.\n"
                    f"{self._log_tail(log_offset, console_offset)}"
                )
            time.sleep(0.25)

    @staticmethod
    def _probe(info: ServerInfo, timeout: float) -> None:
        """Bolt handshake + login + `RETURN 1` on the default database (so it is really online)."""
        auth = (info.user, info.password) if info.password else None
        with neo4j.GraphDatabase.driver(info.uri, auth=auth, connection_timeout=timeout,
                                        connection_acquisition_timeout=timeout, max_transaction_retry_time=0) as drv:
            drv.verify_connectivity()
            drv.execute_query("RETURN 1")

    def _prepare_password(self, java: str, lib: Path, creds: dict) -> str | None:
        """Reuse the stored password; before the very first start, set a fresh random one."""
        if not self.auth:
            return None
        password = creds.get("password")
        if (self.home / "data" / "databases" / "system").exists():
            if not password:
                raise Neo4jStartError(
                    f"{self.home} holds a database created without auth (or its credentials.json is lost), "
                    "so its password is unknown; start it with auth=False or delete the directory"
                )
            return str(password)
        password = password or secrets.token_hex(24)  # [0-9a-f]: no leading "-" for the CLI, no URI escaping
        env = {**os.environ, "NEO4J_HOME": str(self.home), "NEO4J_CONF": str(self.home / "conf")}
        res = subprocess.run([java, "-XX:TieredStopAtLevel=1", "-cp", f"{lib}{os.sep}*", _ADMIN_TOOL,
                              "dbms", "set-initial-password", "--", password],  # "--": a stored password may start with "-"
                             env=env, capture_output=True, text=True, timeout=120)
        if res.returncode != 0:
            raise Neo4jStartError(f"setting the initial Neo4j password failed:\n{res.stdout}{res.stderr}")
        return password

    def _jvm_args(self, java: str) -> list[str]:
        """Neo4j's own default JVM flags, minus G1/pre-touch: SerialGC starts faster with a small heap."""
        xms = max(16, min(256, int(_mib(self.heap))))
        args = [f"-Xms{xms}m", f"-Xmx{self.heap}", "-XX:+UseSerialGC", "-XX:+ExitOnOutOfMemoryError",
                "-XX:-OmitStackTraceInFastThrow", "-XX:+UnlockExperimentalVMOptions", "-XX:+TrustFinalNonStaticFields",
                "-Djdk.nio.maxCachedBufferSize=1024", "-Dio.netty.tryReflectionSetAccessible=true",
                "-Dlog4j2.disable.jmx=true", "-Dfile.encoding=UTF-8",
                "--add-opens=java.base/java.nio=ALL-UNNAMED", "--add-opens=java.base/java.io=ALL-UNNAMED",
                "--add-opens=java.base/sun.nio.ch=ALL-UNNAMED", "--enable-native-access=ALL-UNNAMED"]
        if (java_version(java) or 0) >= 23:  # silence sun.misc.Unsafe warnings on unsupported newer Javas
            args.append("--sun-misc-unsafe-memory-access=allow")
        return [*args, *self.jvm_args]

    def _write_config(self, lib: Path, port: int) -> None:
        h = self.home
        for sub in ("conf", "data", "logs", "run", "plugins", "import"):
            (h / sub).mkdir(parents=True, exist_ok=True)
        # The store files are readable by their owner only: Neo4j writes them 0644, and auth protects
        # bolt, not the files, so the folders around them are closed to other local users.
        for folder in (h, h / "data"):
            os.chmod(folder, 0o700)
        conf = {
            "server.default_listen_address": "127.0.0.1",
            "server.default_advertised_address": "127.0.0.1",
            "server.bolt.enabled": "true",
            "server.bolt.listen_address": f"127.0.0.1:{port}",
            "server.bolt.advertised_address": f"127.0.0.1:{port}",
            "server.http.enabled": "false",
            "server.https.enabled": "false",
            "server.memory.pagecache.size": self.page_cache,
            "db.memory.transaction.max": self.tx_memory_max,
            "dbms.usage_report.enabled": "false",
            "dbms.security.auth_enabled": str(self.auth).lower(),
            "server.directories.data": str(h / "data"),
            "server.directories.logs": str(h / "logs"),
            "server.directories.run": str(h / "run"),
            "server.directories.plugins": str(h / "plugins"),
            "server.directories.import": str(h / "import"),
            "server.directories.lib": str(lib),
            # Netty's default 5 s quiet period, paid twice, made every clean stop take ~10 s.
            "internal.dbms.bolt.netty_server_shutdown_quiet_period": "0",
            "internal.dbms.bolt.netty_server_shutdown_timeout": "5s",
        }
        text = "# written by magdi.store.server; edits are overwritten on start\n"
        (h / "conf" / "neo4j.conf").write_text(text + "".join(f"{k}={v}\n" for k, v in conf.items()))

    def _pick_port(self, creds: dict) -> int:
        """Keep the previous port when it is free, so a restarted server keeps its URI."""
        prev = creds.get("bolt_port")
        if isinstance(prev, int):
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s, contextlib.suppress(OSError):
                # as the server's own listener does: connections of the previous run in TIME_WAIT
                # must not make a just-stopped server's port look taken (a new port breaks its URI)
                s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                s.bind(("127.0.0.1", prev))
                return prev
        return free_port()

    def _write_credentials(self, port: int, password: str | None) -> None:
        data = {"uri": f"bolt://127.0.0.1:{port}", "user": _USER, "password": password,
                "bolt_port": port, "auth": self.auth, "neo4j_version": NEO4J_VERSION}
        tmp = self.credentials_file.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            json.dump(data, fh, indent=1)
        os.chmod(tmp, 0o600)  # O_CREAT's mode does not apply to an existing leftover file
        os.replace(tmp, self.credentials_file)

    def _read_credentials(self) -> dict:
        try:
            data = json.loads(self.credentials_file.read_text())
        except (OSError, ValueError):
            return {}
        return data if isinstance(data, dict) else {}

    def _read_pid(self) -> int | None:
        try:
            return int(self.pid_file.read_text().strip())
        except (OSError, ValueError):
            return None

    def _alive(self, pid: int) -> bool:
        """Is `pid` a live (not zombie) Neo4j of this home? Guards against recycled pids on Linux."""
        if self._proc is not None and self._proc.pid == pid:
            return self._proc.poll() is None
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return False  # someone else's process: not ours
        proc = Path(f"/proc/{pid}")
        if proc.is_dir():
            try:
                if proc.joinpath("stat").read_text().rsplit(")", 1)[1].split()[0] == "Z":
                    return False
                cmdline = proc.joinpath("cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                return False
            return _ENTRY_POINT in cmdline and f"--home-dir={self.home}" in cmdline
        return True

    def _wait_exit(self, pid: int, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while self._alive(pid):
            if time.monotonic() > deadline:
                return False
            time.sleep(0.1)
        return True

    def _log_tail(self, log_offset: int, console_offset: int, lines: int = 40) -> str:
        """This run's part of neo4j.log and of the JVM console output, last `lines` lines each."""
        parts = []
        for path, offset in ((self.log_file, log_offset), (self.console_log, console_offset)):
            try:
                with open(path, "rb") as fh:
                    fh.seek(offset)
                    text = fh.read().decode(errors="replace").strip()
            except OSError:
                continue
            if text:
                parts.append(f"--- {path} ---\n" + "\n".join(text.splitlines()[-lines:]))
        return "\n".join(parts) or f"(no log output; see {self.home / 'logs'})"
