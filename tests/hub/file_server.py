"""A file server on 127.0.0.1 for the download tests: Range requests, a Hub-like resolve route, fault injection.

    with FileServer() as server:
        server.files["/wav2lip-gan/wav2lip_gan.pth"] = Path("...")        # or bytes
        server.faults["/wav2lip-gan/wav2lip_gan.pth"] = ["drop:1000000"]  # first request: close after 1 MB
        urlopen(server.url + "/wav2lip-gan/wav2lip_gan.pth")

A fault list is consumed one entry per request: "404", "500", "drop:N" (send the full Content-Length header, then
only N bytes, then close), "short:N" (serve only the first N bytes, honestly: a truncated file). `server.requests`
records (method, path, Range header) of every request. Paths under `/<owner>/<repo>/resolve/<revision>/<file>`
also answer as the Hugging Face Hub does for `hf_hub_download` (ETag and X-Repo-Commit headers), so `HF_ENDPOINT`
can point at the server.
"""

import hashlib
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

HUB_RESOLVE = re.compile(r"^/(?:models/)?([^/]+/[^/]+)/resolve/([^/]+)/(.+)$")
FAKE_COMMIT = "0123456789abcdef0123456789abcdef01234567"


class _Handler(BaseHTTPRequestHandler):
    server_version = "talkface-test/1"

    def log_message(self, *args):  # keep the test output clean
        pass

    def _body(self, path):
        value = self.server.owner.files.get(path)
        if value is None:
            match = HUB_RESOLVE.match(path)
            if match:
                value = self.server.owner.files.get(f"/hub/{match.group(1)}/{match.group(3)}")
        if isinstance(value, Path):
            value = value.read_bytes()
        return value

    def _serve(self, head: bool):
        owner = self.server.owner
        path = self.path.split("?", 1)[0]
        owner.requests.append((self.command, path, self.headers.get("Range")))
        faults = owner.faults.get(path)
        fault = faults.pop(0) if faults else None
        body = self._body(path)
        if fault in ("404", "500") or body is None:
            code = int(fault) if fault in ("404", "500") else 404
            self.send_response(code)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        if fault and fault.startswith("short:"):
            body = body[: int(fault.split(":")[1])]
        start, status = 0, 200
        range_header = self.headers.get("Range")
        if range_header and range_header.startswith("bytes="):
            start = int(range_header[len("bytes="):].split("-")[0])
            if start >= len(body):
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{len(body)}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            status = 206
        payload = body[start:]
        self.send_response(status)
        self.send_header("Content-Length", str(len(payload)))
        self.send_header("Accept-Ranges", "bytes")
        if status == 206:
            self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
        if HUB_RESOLVE.match(path):
            self.send_header("ETag", f'"{hashlib.sha256(body).hexdigest()}"')
            self.send_header("X-Repo-Commit", FAKE_COMMIT)
        self.end_headers()
        if head:
            return
        if fault and fault.startswith("drop:"):
            payload = payload[: int(fault.split(":")[1])]
            self.wfile.write(payload)
            self.wfile.flush()
            self.close_connection = True
            return
        self.wfile.write(payload)

    def do_GET(self):
        self._serve(head=False)

    def do_HEAD(self):
        self._serve(head=True)


class FileServer:
    def __init__(self):
        self.files, self.faults, self.requests = {}, {}, []
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self._httpd.daemon_threads = True
        self._httpd.owner = self
        self.url = f"http://127.0.0.1:{self._httpd.server_address[1]}"
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._httpd.shutdown()
        self._httpd.server_close()

    def gets(self, path: str) -> list:
        """The Range headers of the GET requests for `path`, in order (None: no Range)."""
        return [rng for method, p, rng in self.requests if method == "GET" and p == path]
