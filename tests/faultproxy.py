"""A fault-injecting HTTP/1.1 proxy in front of the real Elasticsearch node, for faults the node
cannot produce on demand: a stream of whole-request 429s, item-level 429s on documents that were in
fact indexed, a response lost after the request was executed, refused connections for a while.

Every request is really forwarded to (and executed by) the real node unless the active fault says
otherwise, so the documents that end up in the index are the real node's work.

    with FaultProxy("http://127.0.0.1:9200") as proxy:
        proxy.reject_bulk(5)            # the next 5 `_bulk` requests get a 429, not forwarded
        proxy.drop_bulk_responses(2)    # the next 2 are executed, then the client's connection is cut
        proxy.item_429(3)               # the next 3 are executed, then every 2nd item is reported as 429
        proxy.refuse_for(4.0)           # nobody can connect for 4 s (and open connections are cut)
        proxy.fake_version = "7.17.9"   # `GET /` answers with this version number
        url = proxy.url
"""
from __future__ import annotations

import http.client
import json
import socket
import socketserver
import threading
import time
from urllib.parse import urlsplit


class _Handler(socketserver.BaseRequestHandler):
    def handle(self):
        proxy: FaultProxy = self.server.proxy  # type: ignore[attr-defined]
        sock = self.request
        proxy._track(sock, True)
        upstream = http.client.HTTPConnection(proxy.upstream_host, proxy.upstream_port, timeout=120)
        reader = sock.makefile("rb")
        try:
            while True:
                request = _read_request(reader)
                if request is None:
                    return
                method, target, headers, body = request
                if proxy.refusing():
                    return
                fault = proxy._take_fault(method, target)
                if fault == "reject":
                    payload = json.dumps({"error": {"type": "es_rejected_execution_exception",
                                                    "reason": "injected by tests/faultproxy.py"},
                                          "status": 429}).encode()
                    _send_response(sock, 429, "Too Many Requests", {"content-type": "application/json"}, payload)
                    continue
                fwd_headers = {k: v for k, v in headers if k.lower() not in ("connection", "keep-alive", "host")}
                upstream.request(method, target, body=body, headers=fwd_headers)
                resp = upstream.getresponse()
                data = resp.read()
                proxy.forwarded += 1
                if fault == "drop":
                    return  # executed by the node, but the client never hears back
                if fault == "item429":
                    data = _item_429(data)
                if proxy.fake_version and method == "GET" and target.split("?", 1)[0] == "/":
                    info = json.loads(data)
                    info["version"]["number"] = proxy.fake_version
                    data = json.dumps(info).encode()
                resp_headers = {k: v for k, v in resp.getheaders()
                                if k.lower() not in ("content-length", "transfer-encoding", "connection")}
                _send_response(sock, resp.status, resp.reason, resp_headers, data)
        except (ConnectionError, OSError, http.client.HTTPException):
            return
        finally:
            proxy._track(sock, False)
            upstream.close()


def _read_request(reader):
    line = reader.readline(65537)
    if not line:
        return None
    method, target, _ = line.decode("latin-1").split(" ", 2)
    headers = []
    length = 0
    while True:
        h = reader.readline(65537)
        if h in (b"\r\n", b"\n", b""):
            break
        name, value = h.decode("latin-1").split(":", 1)
        headers.append((name.strip(), value.strip()))
        if name.strip().lower() == "content-length":
            length = int(value)
    body = reader.read(length) if length else None
    return method, target, headers, body


def _send_response(sock, status, reason, headers, body: bytes):
    head = [f"HTTP/1.1 {status} {reason}"] + [f"{k}: {v}" for k, v in headers.items()]
    head.append(f"Content-Length: {len(body)}")
    sock.sendall(("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + body)


def _item_429(data: bytes) -> bytes:
    """Report every 2nd item of a bulk response as rejected (429) although the node executed it."""
    resp = json.loads(data)
    for i, item in enumerate(resp.get("items", [])):
        if i % 2 == 0:
            op = next(iter(item))
            item[op] = {"_index": item[op].get("_index"), "_id": item[op].get("_id"), "status": 429,
                        "error": {"type": "es_rejected_execution_exception", "reason": "injected by faultproxy"}}
    resp["errors"] = True
    return json.dumps(resp).encode()


class _Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True


class FaultProxy:
    def __init__(self, upstream: str, port: int = 0):
        parts = urlsplit(upstream)
        self.upstream_host, self.upstream_port = parts.hostname, parts.port or 9200
        self._lock = threading.Lock()
        self._faults: list[str] = []
        self._refuse_until = 0.0
        self._sockets: set = set()
        self.forwarded = 0
        self.fake_version: str | None = None
        self.injected: dict[str, int] = {"reject": 0, "drop": 0, "item429": 0, "refused": 0}
        self._server = _Server(("127.0.0.1", port), _Handler)
        self._server.proxy = self
        self.port = self._server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._server.shutdown()
        self._server.server_close()

    # -- faults ----------------------------------------------------------------------------------

    def reject_bulk(self, n: int):
        with self._lock:
            self._faults += ["reject"] * n

    def drop_bulk_responses(self, n: int):
        with self._lock:
            self._faults += ["drop"] * n

    def item_429(self, n: int):
        with self._lock:
            self._faults += ["item429"] * n

    def refuse_for(self, seconds: float):
        """Cut every open connection and refuse new ones (accept-and-close) for `seconds`."""
        with self._lock:
            self._refuse_until = time.monotonic() + seconds
            sockets = list(self._sockets)
        for s in sockets:
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def refusing(self) -> bool:
        if time.monotonic() < self._refuse_until:
            self.injected["refused"] += 1
            return True
        return False

    def pending_faults(self) -> int:
        with self._lock:
            return len(self._faults)

    def _take_fault(self, method: str, target: str) -> str | None:
        if method not in ("POST", "PUT") or not target.split("?", 1)[0].endswith("/_bulk"):
            return None
        with self._lock:
            if not self._faults:
                return None
            fault = self._faults.pop(0)
            self.injected[fault] += 1
            return fault

    def _track(self, sock, add: bool):
        with self._lock:
            (self._sockets.add if add else self._sockets.discard)(sock)
