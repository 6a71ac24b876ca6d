#!/usr/bin/env python3
"""A tiny fake SMS gateway for bench/codes.sh: Twilio's Messages API on loopback.

  fake_sms.py PORT ACCOUNT_SID TOKEN_ENV

POST /2010-04-01/Accounts/{ACCOUNT_SID}/Messages.json with HTTP basic auth
ACCOUNT_SID:$TOKEN_ENV answers 201 {"sid": "SM<uuid hex>", "status": "queued"};
a wrong path 404, a wrong or missing auth 401. Nothing of a request (no body,
no number, no code) is logged or kept: only counters, printed as one line
`fake_sms requests=.. created=.. refused=..` at SIGTERM/SIGINT. HTTP/1.1 with
keep-alive (the client pools connections), one thread per connection, TCP_NODELAY.
"""
import base64
import json
import os
import signal
import sys
import threading
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

port, sid, token_env = int(sys.argv[1]), sys.argv[2], sys.argv[3]
auth = "Basic " + base64.b64encode(f"{sid}:{os.environ[token_env]}".encode()).decode()
path = f"/2010-04-01/Accounts/{sid}/Messages.json"
lock = threading.Lock()
counts = {"requests": 0, "created": 0, "refused": 0}


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # TCP_NODELAY, and the answer in one write: http.server writes the headers
    # and the body separately, and on a kept-alive connection Nagle's algorithm
    # then holds the body until the client's delayed ACK — 40 ms per request.
    disable_nagle_algorithm = True

    def log_message(self, *args):  # no request logging at all
        pass

    def answer(self, status, obj):
        body = json.dumps(obj).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self._headers_buffer.append(b"\r\n" + body)  # end_headers' blank line, then the body
        self.flush_headers()

    def do_POST(self):
        n = int(self.headers.get("Content-Length") or 0)
        if n > 0:
            self.rfile.read(n)  # read and drop the form (To, From, Body)
        ok = self.path == path and self.headers.get("Authorization") == auth
        with lock:
            counts["requests"] += 1
            counts["created" if ok else "refused"] += 1
        if self.path != path:
            self.answer(404, {"code": 20404, "message": "not found", "status": 404})
        elif not ok:
            self.answer(401, {"code": 20003, "message": "authenticate", "status": 401})
        else:
            self.answer(201, {"sid": "SM" + uuid.uuid4().hex, "status": "queued"})


class Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 256


srv = Server(("127.0.0.1", port), Handler)


def stop(*_):
    with lock:
        print("fake_sms " + " ".join(f"{k}={v}" for k, v in counts.items()), flush=True)
    os._exit(0)


signal.signal(signal.SIGTERM, stop)
signal.signal(signal.SIGINT, stop)
print(f"fake_sms listening on 127.0.0.1:{port}", flush=True)
srv.serve_forever()
