"""Real local servers for the end-to-end tests and the offline main job, and a way to run Meltano.

Each server is a real process on a free loopback port: the Graph API sandbox (`tap-meta-ads-sandbox`), the
GCS emulator (`gcp-storage-emulator`, which speaks the GCS JSON API) and PostgreSQL (Debian's server,
`initdb` + `pg_ctl` in a temporary directory). Readiness is polled with a bounded deadline; every server
is stopped by its own process id. Only the standard library is used, so this runs in the tap's venv.
`.ci/setup` installs the tools found here.
"""

from __future__ import annotations

import contextlib
import glob
import json
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
TOOLS = ROOT / ".ci" / ".tools"
MELTANO = TOOLS / "meltano" / "bin" / "meltano"
GCS_EMULATOR = TOOLS / "gcs-emulator" / "bin" / "gcp-storage-emulator"
SANDBOX = ROOT / ".venv" / "bin" / "tap-meta-ads-sandbox"
SANDBOX_TOKEN = "sandbox-token"
STARTUP_SECONDS = 30.0


class ServerError(RuntimeError):
    """A local server did not start or answer as expected."""


def require(path: Path) -> Path:
    """Return `path` if it exists; otherwise say how to get it."""
    if not path.exists():
        raise ServerError(f"{path} is missing: run `bash .ci/setup` first")
    return path


def free_port() -> int:
    """A TCP port that was free a moment ago on 127.0.0.1."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_until(
    check: Callable[[], bool], what: str, proc: subprocess.Popen[Any] | None = None, timeout: float = STARTUP_SECONDS
) -> None:
    """Poll `check` until it is true; fail when `proc` exits first or the deadline passes."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise ServerError(f"{what}: the process exited with code {proc.returncode}")
        with contextlib.suppress(OSError, urllib.error.URLError, ServerError):
            if check():
                return
        time.sleep(0.05)
    raise ServerError(f"{what}: not ready after {timeout:.0f}s")


def http_json(method: str, url: str, body: object | None = None, timeout: float = 10.0) -> Any:
    """One HTTP request with a JSON body/answer (stdlib only)."""
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method=method, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=timeout) as response:
        raw = response.read()
    return json.loads(raw) if raw else None


def _stop(proc: subprocess.Popen[Any], timeout: float = 10.0) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout)


class Sandbox:
    """The Graph API sandbox as a subprocess (`tap-meta-ads-sandbox`), with its control endpoints."""

    def __init__(
        self,
        accounts: dict[str, int],
        *,
        log_dir: Path,
        extra_args: tuple[str, ...] = (),
        executable: Path = SANDBOX,
    ) -> None:
        """Start `executable` (the repository's sandbox, or one installed elsewhere) on a free port."""
        self.accounts = accounts
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        spec = ",".join(f"{acct}:{n}" for acct, n in accounts.items())
        self._log = (log_dir / f"sandbox-{self.port}.log").open("wb")
        self.proc = subprocess.Popen(
            [
                str(require(executable)),
                "--host",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--accounts",
                spec,
                "--token",
                SANDBOX_TOKEN,
                *extra_args,
            ],
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        wait_until(lambda: bool(self.control("GET", "health")["ok"]), "sandbox", self.proc)

    def control(self, method: str, path: str, body: object | None = None) -> Any:
        return http_json(method, f"{self.url}/_sandbox/{path}", body)

    def truth(self, account_id: str, statuses: list[str] | tuple[str, ...] | None = None) -> list[dict[str, Any]]:
        """Every ad (all fields) the Graph API shows for the account under these effective statuses."""
        query = ""
        if statuses is not None:
            query = "?" + urllib.parse.urlencode({"effective_status": json.dumps(list(statuses))})
        return list(self.control("GET", f"truth/act_{account_id}/ads{query}")["data"])

    def mutate(self, account_id: str, **counts: int) -> Any:
        return self.control("POST", "mutate", {"account_id": account_id, **counts})

    def advance_clock(self, seconds: float) -> None:
        self.control("POST", "clock", {"advance_seconds": seconds})

    def stop(self) -> None:
        _stop(self.proc)
        self._log.close()


class GcsEmulator:
    """gcp-storage-emulator in memory on a free port, with a default bucket, and a small JSON-API client."""

    def __init__(self, bucket: str, *, log_dir: Path, port: int | None = None) -> None:
        self.bucket = bucket
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._log_dir = log_dir
        self.proc: subprocess.Popen[bytes] | None = None
        self.start()

    def start(self) -> None:
        """(Re)start the server on the same port: in memory, so it starts empty but for the bucket."""
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            [
                str(require(GCS_EMULATOR)),
                "start",
                "--host=127.0.0.1",
                f"--port={self.port}",
                "--in-memory",
                f"--default-bucket={self.bucket}",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()
        wait_until(lambda: self.bucket_exists(self.bucket), "GCS emulator", self.proc)

    @property
    def log_path(self) -> Path:
        return self._log_dir / f"gcs-emulator-{self.port}.log"

    def writers_opened(self) -> int:
        """How many write streams target-gcs opened so far, from the emulator's request log.

        smart_open (under target-gcs) checks the bucket when it opens a stream; the data itself is only
        sent when 50 MiB are buffered or the stream is closed.
        """
        return self.log_path.read_text(errors="replace").count(f"GET /storage/v1/b/{self.bucket}?fields=name")

    def stop(self) -> None:
        if self.proc is not None:
            _stop(self.proc)

    def kill(self) -> None:
        """Stop the server at once, as a crash or a network cut would."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)

    def bucket_exists(self, bucket: str) -> bool:
        try:
            http_json("GET", f"{self.url}/storage/v1/b/{bucket}", timeout=2)
        except urllib.error.HTTPError as exc:
            if exc.code == 404:
                return False
            raise
        return True

    def object_names(self, prefix: str = "") -> list[str]:
        names: list[str] = []
        token = None
        while True:
            query = {"prefix": prefix, **({"pageToken": token} if token else {})}
            page = http_json("GET", f"{self.url}/storage/v1/b/{self.bucket}/o?{urllib.parse.urlencode(query)}")
            names.extend(item["name"] for item in page.get("items", []))
            token = page.get("nextPageToken")
            if not token:
                return sorted(names)

    def read(self, name: str) -> bytes:
        quoted = urllib.parse.quote(name, safe="")
        with urllib.request.urlopen(
            f"{self.url}/download/storage/v1/b/{self.bucket}/o/{quoted}?alt=media", timeout=30
        ) as response:
            return bytes(response.read())

    def records(self, name: str) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.read(name).splitlines() if line.strip()]


def _as_postgres_user() -> list[str]:
    """PostgreSQL refuses to run as root: as root, run its tools as the `postgres` system user."""
    if os.geteuid() != 0:
        return []
    try:
        pwd.getpwnam("postgres")
    except KeyError as exc:
        raise ServerError("running as root but there is no `postgres` user (apt-get install postgresql)") from exc
    return ["runuser", "-u", "postgres", "--"]


def postgres_bin(name: str) -> str:
    """A PostgreSQL server binary from Debian's package (newest major version installed)."""
    candidates = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"), key=lambda p: int(Path(p).parts[-3]))
    if candidates:
        return candidates[-1]
    found = shutil.which(name)
    if found:
        return found
    raise ServerError(f"PostgreSQL's {name} is missing: run `bash .ci/setup` first")


class Postgres:
    """A throwaway PostgreSQL server: its own data directory, socket directory and free port; trust auth."""

    user = "postgres"
    database = "postgres"

    def __init__(self) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="tap-meta-ads-pg-"))
        self.port = free_port()
        runas = _as_postgres_user()
        if runas:
            shutil.chown(self.dir, user="postgres", group="postgres")
        data = self.dir / "data"
        subprocess.run(
            [
                *runas,
                postgres_bin("initdb"),
                "-D",
                str(data),
                "-U",
                self.user,
                "-A",
                "trust",
                "-E",
                "UTF8",
                "--no-sync",
            ],
            check=True,
            capture_output=True,
        )
        self._pg_ctl = [*runas, postgres_bin("pg_ctl"), "-D", str(data)]
        subprocess.run(
            [
                *self._pg_ctl,
                "-l",
                str(self.dir / "server.log"),
                "-w",
                "-t",
                str(int(STARTUP_SECONDS)),
                "-o",
                f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1 -c fsync=off",
                "start",
            ],
            check=True,
            capture_output=True,
        )
        wait_until(lambda: self.query("select 1") == [["1"]], "PostgreSQL")

    def query(self, sql: str) -> list[list[str]]:
        """Rows of a query through psql, each a list of column texts."""
        out = subprocess.run(
            [
                postgres_bin("psql"),
                "-h",
                "127.0.0.1",
                "-p",
                str(self.port),
                "-U",
                self.user,
                "-d",
                self.database,
                "-AtX",
                "-F",
                "\t",
                "-v",
                "ON_ERROR_STOP=1",
                "-c",
                sql,
            ],
            check=True,
            capture_output=True,
            text=True,
        ).stdout
        return [line.split("\t") for line in out.splitlines()]

    def stop(self) -> None:
        subprocess.run([*self._pg_ctl, "-m", "immediate", "-w", "stop"], check=False, capture_output=True)
        shutil.rmtree(self.dir, ignore_errors=True)


class Meltano:
    """Runs the real `meltano` CLI in the repository's project, with its own system database (state)."""

    def __init__(self, workdir: Path, env: dict[str, str], project: Path = ROOT) -> None:
        self.workdir = workdir
        self.project = project
        self.env = {
            **os.environ,
            "MELTANO_SEND_ANONYMOUS_USAGE_STATS": "false",
            "MELTANO_DATABASE_URI": f"sqlite:///{workdir / 'meltano.db'}",
            "MELTANO_ENVIRONMENT": "sandbox",
            "NO_COLOR": "1",
            **env,
        }

    def __call__(self, *args: str, timeout: float = 600, check: bool = True) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run(
            [str(require(MELTANO)), *args],
            cwd=self.project,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        if check and proc.returncode != 0:
            raise AssertionError(f"meltano {' '.join(args)} exited {proc.returncode}:\n{proc.stderr[-6000:]}")
        return proc

    def popen(self, *args: str) -> subprocess.Popen[str]:
        return subprocess.Popen(
            [str(require(MELTANO)), *args],
            cwd=self.project,
            env=self.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    def state(self, state_id: str) -> dict[str, Any] | None:
        """`meltano state get`: the stored state, or None when there is none."""
        proc = self("state", "get", state_id, check=False)
        if proc.returncode != 0:
            if "does not exist" in proc.stderr or "No state" in proc.stderr:
                return None
            raise AssertionError(f"meltano state get {state_id} exited {proc.returncode}:\n{proc.stderr[-3000:]}")
        text = proc.stdout.strip()
        return json.loads(text) if text else None


@contextlib.contextmanager
def running(server: Any) -> Iterator[Any]:
    """Stop a started server whatever happens."""
    try:
        yield server
    finally:
        server.stop()


class Relay:
    """A loopback HTTP relay in front of a real server; a test hook sees every request first.

    The hook gets (method, path) and returns None to forward the request, or (status, json_body) to
    answer it itself (e.g. a bucket that refuses writes). It may also block, which is how a test holds
    the tap in the middle of a run. Each request is answered on its own connection (HTTP/1.0 style).
    """

    def __init__(self, upstream_port: int, hook: Callable[[str, str], tuple[int, object] | None] | None = None) -> None:
        import http.client
        import http.server
        import threading

        relay = self
        self.requests: list[tuple[str, str]] = []
        self.hook = hook

        class Handler(http.server.BaseHTTPRequestHandler):
            def _relay(self) -> None:
                relay.requests.append((self.command, self.path))
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else None
                answer = relay.hook(self.command, self.path) if relay.hook else None
                if answer is not None:
                    status, doc = answer
                    payload = json.dumps(doc).encode()
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(payload)))
                    self.end_headers()
                    self.wfile.write(payload)
                    return
                upstream = http.client.HTTPConnection("127.0.0.1", upstream_port, timeout=60)
                try:
                    headers = {k: v for k, v in self.headers.items() if k.lower() not in {"connection", "host"}}
                    upstream.request(self.command, self.path, body=body, headers=headers)
                    response = upstream.getresponse()
                    payload = response.read()
                except OSError:
                    self.send_error(502, "upstream unreachable")
                    return
                finally:
                    upstream.close()
                # The upstream's own Date header passes through: the tap reads the sandbox's clock from it.
                self.send_response_only(response.status, response.reason)
                for key, value in response.getheaders():
                    if key.lower() not in {"connection", "transfer-encoding", "content-length"}:
                        self.send_header(key, value)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _relay

            def log_message(self, format: str, *args: object) -> None:
                return

        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.port = int(self._server.server_address[1])
        self.url = f"http://127.0.0.1:{self.port}"
        self._thread = threading.Thread(target=self._server.serve_forever, name="relay", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
