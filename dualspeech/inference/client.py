"""A stdlib client of ``bin/serve`` and a server subprocess on a free loopback port.

Why: the server tests and ``bench serve`` talk to a real server over HTTP the way a user's
program would; the standard library's ``http.client`` keeps one connection alive per client
(one client per thread), so no extra HTTP package is needed.
"""
from __future__ import annotations

import base64
import http.client
import json
import secrets
import socket
import subprocess
import sys
import time
from pathlib import Path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Client:
    """One keep-alive connection to the server at ``127.0.0.1:port``; not thread-safe."""

    def __init__(self, port: int, host: str = "127.0.0.1", timeout: float = 120.0):
        self.host, self.port, self.timeout = host, port, timeout
        self._conn = None

    def request(self, method: str, path: str, body: bytes | None = None,
                headers: dict | None = None) -> tuple[int, bytes]:
        try:
            return self._send(method, path, body, headers or {})
        except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError):
            self.close()            # a kept-alive connection the server closed: reconnect once
            return self._send(method, path, body, headers or {})

    def _send(self, method, path, body, headers) -> tuple[int, bytes]:
        if self._conn is None:
            self._conn = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)
        self._conn.request(method, path, body=body, headers=headers)
        resp = self._conn.getresponse()
        data = resp.read()
        if resp.getheader("connection", "").lower() == "close":
            self.close()
        return resp.status, data

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def get_json(self, path: str) -> dict:
        status, data = self.request("GET", path)
        if status != 200:
            raise RuntimeError(f"GET {path}: {status} {data[:200]!r}")
        return json.loads(data)

    def post(self, task: str, fields: dict, audio: dict | None = None,
             speech: str = "url") -> tuple[int, dict]:
        """JSON request: ``fields`` as they are, ``audio`` {role: file bytes} as base64."""
        body = {**fields, **{k: base64.b64encode(v).decode() for k, v in (audio or {}).items()}}
        status, data = self.request("POST", f"/v1/{task}?speech={speech}",
                                    json.dumps(body).encode(),
                                    {"Content-Type": "application/json"})
        return status, json.loads(data)

    def post_stream(self, task: str, fields: dict, audio: dict | None = None
                    ) -> tuple[int, list[tuple[float, bytes]]]:
        """``post`` with ``?speech=stream``: the body's pieces as they arrive, each with the
        seconds since the request was sent (a refusal: one piece, its JSON)."""
        body = {**fields, **{k: base64.b64encode(v).decode() for k, v in (audio or {}).items()}}
        self.close()                 # a fresh connection: nothing of another answer is pending
        conn = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)
        try:
            t0 = time.perf_counter()
            conn.request("POST", f"/v1/{task}?speech=stream", body=json.dumps(body).encode(),
                         headers={"Content-Type": "application/json"})
            resp, pieces = conn.getresponse(), []
            while piece := resp.read1(1 << 16):
                pieces.append((time.perf_counter() - t0, piece))
            return resp.status, pieces
        finally:
            conn.close()

    def post_form(self, task: str, fields: dict, audio: dict | None = None) -> tuple[int, dict]:
        """multipart/form-data request, as a browser sends it: ``audio`` as file parts."""
        boundary = secrets.token_hex(12)
        parts = [f'--{boundary}\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n'
                 f"{v}\r\n".encode() for k, v in fields.items()]
        parts += [f'--{boundary}\r\nContent-Disposition: form-data; name="{k}"; '
                  f'filename="{k}.wav"\r\nContent-Type: audio/wav\r\n\r\n'.encode() + v + b"\r\n"
                  for k, v in (audio or {}).items()]
        body = b"".join(parts) + f"--{boundary}--\r\n".encode()
        status, data = self.request("POST", f"/v1/{task}", body, {
            "Content-Type": f"multipart/form-data; boundary={boundary}"})
        return status, json.loads(data)


class ServerProcess:
    """``python -m dualspeech.bin.serve --model DIR [args]`` on a free loopback port, its log in
    ``log``; ``with`` waits for ``/health`` (``start_timeout``) and stops the server after."""

    def __init__(self, model_dir: str | Path, args: list[str] | tuple = (), log: Path | None = None,
                 start_timeout: float = 180.0):
        self.model_dir, self.args, self.log = Path(model_dir), list(args), log
        self.start_timeout, self.port, self.proc = start_timeout, free_port(), None

    def __enter__(self) -> "ServerProcess":
        out = open(self.log, "w") if self.log else subprocess.DEVNULL
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "dualspeech.bin.serve", "--model", str(self.model_dir),
             "--host", "127.0.0.1", "--port", str(self.port), *self.args],
            stdout=out, stderr=subprocess.STDOUT)
        deadline, client = time.monotonic() + self.start_timeout, Client(self.port, timeout=5)
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"the server exited with code {self.proc.returncode}"
                                   + (f"; see {self.log}" if self.log else ""))
            try:
                client.get_json("/health")
                return self
            except (OSError, RuntimeError):
                if time.monotonic() > deadline:
                    self.__exit__()
                    raise TimeoutError(f"the server did not answer /health within "
                                       f"{self.start_timeout:g} s") from None
                time.sleep(0.3)
            finally:
                client.close()

    def __exit__(self, *exc) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
