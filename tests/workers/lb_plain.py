"""Test load_balancer worker on the standard library's http.server: same routes as lb_fastapi.py.

GET /whoami, POST /echo, GET /stream?n=N (chunked; the 2nd line only after POST /release),
and GET /ping on $PORT_HEALTH (503 until READY_AFTER_S seconds after start, then 200).
"""

import json
import os
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

STARTED = time.monotonic()
READY_AFTER_S = float(os.environ.get("READY_AFTER_S", "0"))
WORKER = os.environ.get("RUNPOD_POD_ID", "?")
released = threading.Event()


def is_healthy():
    return time.monotonic() - STARTED >= READY_AFTER_S


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, format, *args):  # keep the worker log quiet
        pass

    def _json(self, status, body, extra=None):
        raw = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(raw)))
        for key, value in (extra or {}).items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(raw)

    def do_GET(self):
        url = urlsplit(self.path)
        if url.path == "/whoami":
            self._json(200, {"worker": WORKER, "pid": os.getpid(), "healthy": is_healthy()})
        elif url.path == "/stream":
            n = int(parse_qs(url.query).get("n", ["3"])[0])
            released.clear()
            self.send_response(200)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Transfer-Encoding", "chunked")
            self.send_header("X-Worker-Pid", str(os.getpid()))
            self.end_headers()
            for i in range(n):
                if i == 1:
                    released.wait()
                data = f"line {i} from {WORKER}\n".encode()
                self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
                self.wfile.flush()
            self.wfile.write(b"0\r\n\r\n")
        else:
            self._json(404, {"error": "not found"})

    def do_POST(self):
        url = urlsplit(self.path)
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        if url.path == "/echo":
            headers = {k.lower(): v for k, v in self.headers.items()}
            self._json(200, {"worker": WORKER, "body": body.decode(), "headers": headers, "query": url.query})
        elif url.path == "/release":
            released.set()
            self._json(200, {"released": True})
        else:
            self._json(404, {"error": "not found"})


class Health(BaseHTTPRequestHandler):
    def log_message(self, format, *args):
        pass

    def do_GET(self):
        ok = self.path == "/ping" and is_healthy()
        raw = json.dumps({"status": "healthy" if ok else "initializing"}).encode()
        self.send_response(200 if ok else 503)
        self.send_header("Content-Length", str(len(raw)))
        self.end_headers()
        self.wfile.write(raw)


health = ThreadingHTTPServer(("127.0.0.1", int(os.environ["PORT_HEALTH"])), Health)
threading.Thread(target=health.serve_forever, daemon=True).start()
ThreadingHTTPServer(("127.0.0.1", int(os.environ["PORT"])), Handler).serve_forever()
