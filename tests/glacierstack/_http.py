"""Real servers on 127.0.0.1 for the tests: a static file server with HTTP range requests and an
optional required header, and a STAC API (``rustac serve``) over a list of items.

Both are started by a test fixture and stopped afterwards; nothing here is mocked.
"""

from __future__ import annotations

import contextlib
import json
import re
import shutil
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

_RANGE = re.compile(r"^bytes=(\d*)-(\d*)$")


@dataclass
class FileServer:
    """Handle on a file server process: its URL, its required header and its request log.

    The server runs in its own process (``python _http.py ROOT CONTROL_DIR``): GDAL calls
    that hold the GIL (pyogrio) would otherwise deadlock with a server thread of the test.
    """

    root: Path
    control: Path
    url: str = ""

    @property
    def required_header(self) -> tuple[str, str] | None:
        p = self.control / "header.json"
        return tuple(json.loads(p.read_text())) if p.is_file() else None  # type: ignore[return-value]

    @required_header.setter
    def required_header(self, value: tuple[str, str] | None) -> None:
        p = self.control / "header.json"
        if value is None:
            p.unlink(missing_ok=True)
        else:
            p.write_text(json.dumps(list(value)))

    @property
    def log(self) -> list[tuple[str, int, bool]]:
        """``(path, status, had the required header)`` per request so far."""
        p = self.control / "log.jsonl"
        lines = p.read_text().splitlines() if p.is_file() else []
        return [tuple(json.loads(x)) for x in lines]  # type: ignore[misc]

    def clear_log(self) -> None:
        (self.control / "log.jsonl").unlink(missing_ok=True)


def _handler(state: FileServer) -> type[SimpleHTTPRequestHandler]:
    lock = threading.Lock()

    class Handler(SimpleHTTPRequestHandler):
        def __init__(self, *a, **kw):
            super().__init__(*a, directory=str(state.root), **kw)

        def log_message(self, format, *args):  # noqa: A002 - quiet test output
            pass

        def _authorised(self) -> bool:
            required = state.required_header
            return required is None or self.headers.get(required[0]) == required[1]

        def _send(self, head_only: bool) -> None:
            ok = self._authorised()
            path = Path(self.translate_path(self.path))
            status = 401 if not ok else 200 if path.is_file() else 404
            with lock, (state.control / "log.jsonl").open("a") as f:
                f.write(json.dumps([self.path, status, ok]) + "\n")
            if status != 200:
                self.send_error(status)
                return
            data = path.read_bytes()
            rng = _RANGE.match(self.headers.get("Range", "") or "")
            start, end = 0, len(data) - 1
            if rng and (rng.group(1) or rng.group(2)):
                if rng.group(1):
                    start = int(rng.group(1))
                    end = min(int(rng.group(2) or end), len(data) - 1)
                else:  # suffix range: the last N bytes
                    start = max(len(data) - int(rng.group(2)), 0)
                self.send_response(206)
                self.send_header("Content-Range", f"bytes {start}-{end}/{len(data)}")
            else:  # no range, or a multi-range we answer with the whole file (allowed by RFC 9110)
                self.send_response(200)
            self.send_header("Accept-Ranges", "bytes")
            self.send_header("Content-Length", str(max(end - start + 1, 0)))
            self.send_header("Content-Type", "application/octet-stream")
            self.end_headers()
            if not head_only:
                self.wfile.write(data[start : end + 1])

        def do_GET(self):  # noqa: N802
            self._send(head_only=False)

        def do_HEAD(self):  # noqa: N802
            self._send(head_only=True)

    return Handler


def _serve(root: Path, control: Path) -> None:
    state = FileServer(root=root, control=control)
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler(state))
    httpd.daemon_threads = True
    (control / "port.tmp").write_text(str(httpd.server_address[1]))
    (control / "port.tmp").rename(control / "port")
    httpd.serve_forever()


@contextlib.contextmanager
def file_server(root: Path, control: Path) -> Iterator[FileServer]:
    """Serve ``root`` over HTTP with range requests on a free port of 127.0.0.1 (own process)."""
    control.mkdir(parents=True, exist_ok=True)
    proc = subprocess.Popen([sys.executable, __file__, str(root), str(control)])
    try:
        deadline = time.monotonic() + 30
        while not (control / "port").is_file():
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"file server did not start (exit code {proc.poll()})")
            time.sleep(0.05)
        state = FileServer(root=root, control=control)
        state.url = f"http://127.0.0.1:{(control / 'port').read_text()}"
        yield state
    finally:
        _stop(proc)


def _stop(proc: subprocess.Popen) -> None:
    """Terminate a server process, killing it if it does not exit within 10 s."""
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rustac_executable() -> str | None:
    """Path of the ``rustac`` CLI (``pip install rustac``), or None.

    The interpreter's own ``bin`` folder is searched first: ``make test`` runs the venv's pytest
    without activating the venv, so its scripts are not on ``PATH``.
    """
    here = Path(sys.executable).parent
    return shutil.which("rustac", path=str(here)) or shutil.which("rustac")


@contextlib.contextmanager
def stac_api(items: list[dict], workdir: Path) -> Iterator[str]:
    """A STAC API (``rustac serve``, in-memory backend) serving ``items``; yields its URL."""
    exe = rustac_executable()
    assert exe is not None, "rustac is not installed (pip install rustac)"
    path = workdir / "items.json"
    path.write_text(json.dumps({"type": "FeatureCollection", "features": items}))
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    log = (workdir / "rustac.log").open("w")
    proc = subprocess.Popen(
        [exe, "serve", "--create-collections", "-a", f"127.0.0.1:{port}", str(path)],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                with urllib.request.urlopen(f"{url}/collections", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(
                        f"rustac serve did not start: {(workdir / 'rustac.log').read_text()}"
                    ) from None
                time.sleep(0.1)
        yield url
    finally:
        _stop(proc)
        log.close()


if __name__ == "__main__":
    _serve(Path(sys.argv[1]), Path(sys.argv[2]))
