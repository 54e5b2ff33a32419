"""A loopback HTTP server that answers as the Hugging Face hub and Google Drive do, for the
download tests: no test touches the network.

Plain files: ``GET /PATH``. Hub: ``HEAD|GET /ORG/NAME/resolve/REVISION/PATH`` with X-Repo-Commit, ETag, X-Linked-Size and
byte ranges. Drive: ``/embeddedfolderview?id=FOLDER`` (a folder's links), ``/uc?id=FILE&...``
(a file, or for `confirm` files the confirmation page whose download-form leads to
``/download?id=FILE&confirm=t&uuid=...``). `cut` makes the next transfer of a file stop after
a given number of bytes, as a dropped connection does. Every request is logged.
"""

from __future__ import annotations

import hashlib
import sys
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse


class _QuietServer(ThreadingHTTPServer):
    def handle_error(self, request, client_address) -> None:
        """A client that hangs up mid-answer (a download refused or cut short on purpose) is what
        the tests make happen, not an error to print."""
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


@dataclass
class Logged:
    method: str
    path: str
    range: str | None


@dataclass
class WeightsServer:
    """Serves `hub_files` (URL path -> bytes), `drive_files` (folder id -> {name: (file id,
    bytes)}) and plain `files` (URL path -> bytes, as a release page serves them)."""

    files: dict[str, bytes] = field(default_factory=dict)
    hub_files: dict[str, bytes] = field(default_factory=dict)
    commits: dict[str, str] = field(default_factory=dict)
    drive_files: dict[str, dict[str, tuple[str, bytes]]] = field(default_factory=dict)
    confirm: set[str] = field(default_factory=set)
    cuts: dict[str, int] = field(default_factory=dict)
    log: list[Logged] = field(default_factory=list)

    def start(self) -> str:
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:
                pass

            def do_HEAD(self) -> None:
                server._answer(self, body=False)

            def do_GET(self) -> None:
                server._answer(self, body=True)

        self._http = _QuietServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self._http.serve_forever, daemon=True).start()
        return f"http://127.0.0.1:{self._http.server_address[1]}"

    def stop(self) -> None:
        self._http.shutdown()
        self._http.server_close()

    def hub(self, repo: str, revision: str, files: dict[str, bytes]) -> None:
        for path, data in files.items():
            self.hub_files[f"/{repo}/resolve/{revision}/{path}"] = data
        self.commits[repo] = revision

    def drive(self, folder: str, files: dict[str, bytes], confirm: tuple[str, ...] = ()) -> None:
        self.drive_files[folder] = {name: (hashlib.sha1(name.encode()).hexdigest()[:28], data)
                                    for name, data in files.items()}
        self.confirm |= {self.drive_files[folder][name][0] for name in confirm}

    def cut(self, name_or_path: str, after: int) -> None:
        """The next transfer of this hub path or Drive file name stops after `after` bytes."""
        self.cuts[name_or_path] = after

    def gets(self, fragment: str) -> list[Logged]:
        return [entry for entry in self.log if entry.method == "GET" and fragment in entry.path]

    def _answer(self, handler: BaseHTTPRequestHandler, body: bool) -> None:
        url = urlparse(handler.path)
        query = {k: v[0] for k, v in parse_qs(url.query).items()}
        self.log.append(Logged(handler.command, handler.path, handler.headers.get("Range")))
        if url.path in self.hub_files:
            repo = url.path.split("/resolve/")[0].strip("/")
            data = self.hub_files[url.path]
            headers = {"X-Repo-Commit": self.commits[repo], "ETag": f'"{hashlib.sha256(data).hexdigest()}"',
                       "X-Linked-Size": str(len(data))}
            return self._send_file(handler, data, headers, body, url.path)
        if url.path in self.files:
            return self._send_file(handler, self.files[url.path], {}, body, url.path)
        if url.path == "/embeddedfolderview" and query.get("id") in self.drive_files:
            links = "".join(f'<div class="flip-entry"><a href="https://drive.google.com/file/d/{file_id}/view?usp=drive_web" '
                            f'target="_blank"><div class="flip-entry-title">{name}</div></a></div>'
                            for name, (file_id, _) in self.drive_files[query["id"]].items())
            return self._send_page(handler, f"<html><head><title>OSDFace</title></head><body>{links}</body></html>")
        for files in self.drive_files.values():
            for name, (file_id, data) in files.items():
                if query.get("id") != file_id:
                    continue
                if url.path == "/uc" and file_id in self.confirm:
                    form = (f'<form id="download-form" action="/download" method="get">'
                            f'<input type="hidden" name="id" value="{file_id}">'
                            f'<input type="hidden" name="confirm" value="t">'
                            f'<input type="hidden" name="uuid" value="0f0f"></form>')
                    return self._send_page(handler, f"<html><body>Virus scan warning{form}</body></html>")
                if url.path in ("/uc", "/download"):
                    headers = {"Content-Disposition": f'attachment; filename="{name}"'}
                    return self._send_file(handler, data, headers, body, name)
        handler.send_response(404)
        handler.send_header("X-Error-Code", "EntryNotFound" if "/resolve/" in url.path else "NotFound")
        handler.send_header("Content-Length", "0")
        handler.end_headers()

    def _send_page(self, handler: BaseHTTPRequestHandler, page: str) -> None:
        data = page.encode()
        handler.send_response(200)
        handler.send_header("Content-Type", "text/html; charset=utf-8")
        handler.send_header("Content-Length", str(len(data)))
        handler.end_headers()
        handler.wfile.write(data)

    def _send_file(self, handler: BaseHTTPRequestHandler, data: bytes, headers: dict[str, str], body: bool,
                   key: str) -> None:
        start = 0
        wanted = handler.headers.get("Range")
        if wanted:
            start = int(wanted.removeprefix("bytes=").split("-")[0])
            if start >= len(data):
                handler.send_response(416)
                handler.send_header("Content-Length", "0")
                handler.end_headers()
                return
        handler.send_response(206 if wanted else 200)
        handler.send_header("Content-Type", "application/octet-stream")
        handler.send_header("Accept-Ranges", "bytes")
        if wanted:
            handler.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        for name, value in headers.items():
            handler.send_header(name, value)
        handler.send_header("Content-Length", str(len(data) - start))
        handler.end_headers()
        if not body:
            return
        cut = self.cuts.pop(key, None)
        handler.wfile.write(data[start:cut] if cut is not None else data[start:])
        if cut is not None:
            handler.wfile.flush()
            handler.close_connection = True
