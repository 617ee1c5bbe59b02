#!/usr/bin/python3
"""A misbehaving file server for the dataset-download tests (test_fetch, it_fetch).

Listens on 127.0.0.1:PORT and on 127.0.0.2:PORT (the "other host" of the
redirect tests), prints PORT on the first line of stdout once both listen, and
serves the files of --root (plain names only, no folders). The first part of
the path picks a behaviour, the last part names the file:

  /files/NAME            the file; honours "Range: bytes=N-" (206, or 416 past the end)
  /drop-once/NAME        the first request sends the headers of the whole answer and
                         half of its body, then closes the connection; later ones: /files
  /stall-once/NAME       the first request sends the headers of the whole answer and 1000
                         bytes, then keeps the connection open and silent until the
                         client leaves (at most 300 s)
  /norange/NAME          always 200 with the whole file, ignoring Range
  /wrong/NAME            the file with one byte flipped (checksum mismatch)
  /flaky-once/NAME       the first request gets 503; later ones: /files
  /status/CODE/NAME      always HTTP CODE
  /hops/N/NAME           N same-host redirects (relative Location), then /files/NAME
  /redirect-abs/NAME     302 to http://127.0.0.1:PORT/files/NAME
  /redirect-other/NAME   302 to http://127.0.0.2:PORT/files/NAME (must be refused)
  /redirect-loop/NAME    302 to itself, forever
  /huge/NAME             200 with Content-Length 10^12, zeros until the client leaves
  /endless/NAME          200 without a length, zeros until the client leaves

Every request is appended to --log as one JSON line, written before the body:
{"host": "127.0.0.1", "path": ..., "range": "bytes=N-" or null, "status": CODE}.
Only loopback addresses are ever bound.
"""
import argparse
import json
import os
import select
import socket
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

CHUNK = 1 << 16


class Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, addr, state):
        self.state = state
        super().__init__(addr, Handler)


class State:
    def __init__(self, root, log_path):
        self.root = root
        self.log_path = log_path
        self.port = 0
        self.lock = threading.Lock()
        self.seen = set()  # (behaviour, name) of the *-once behaviours already done

    def first_time(self, key):
        with self.lock:
            if key in self.seen:
                return False
            self.seen.add(key)
            return True

    def log(self, entry):
        line = json.dumps(entry) + "\n"
        with self.lock:
            with open(self.log_path, "a") as f:
                f.write(line)
                f.flush()


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt, *args):  # quiet: the JSON log says it all
        pass

    def note(self, status):
        st = self.server.state
        st.log({"host": self.server.server_address[0], "path": self.path,
                "range": self.headers.get("Range"), "status": status})

    def simple(self, status, body=b"", headers=()):
        self.note(status)
        self.send_response(status)
        for k, v in headers:
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def file_bytes(self, name):
        if "/" in name or name.startswith(".") or not name:
            return None
        path = os.path.join(self.server.state.root, name)
        try:
            with open(path, "rb") as f:
                return f.read()
        except OSError:
            return None

    def range_start(self):
        r = self.headers.get("Range")
        if not r or not r.startswith("bytes=") or not r.endswith("-"):
            return None
        try:
            return int(r[len("bytes="):-1])
        except ValueError:
            return None

    def send_file(self, data, honour_range=True, cut=None, stall=False):
        start = self.range_start() if honour_range else None
        if start is not None and start >= len(data):
            self.simple(416, headers=[("Content-Range", "bytes */%d" % len(data))])
            return
        if start is not None:
            status, body = 206, data[start:]
        else:
            status, body = 200, data
        self.note(status)
        self.send_response(status)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(len(body)))
        if status == 206:
            self.send_header("Content-Range", "bytes %d-%d/%d" % (start, len(data) - 1, len(data)))
        self.end_headers()
        if cut is None:
            self.wfile.write(body)
            return
        self.wfile.write(body[:cut])
        self.wfile.flush()
        if stall:
            # silent until the client closes its end (readable with EOF), at most 300 s
            deadline = time.monotonic() + 300
            while time.monotonic() < deadline:
                ready, _, _ = select.select([self.connection], [], [], 1.0)
                if ready:
                    try:
                        if not self.connection.recv(4096):
                            break
                    except OSError:
                        break
        self.close_connection = True
        try:
            self.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    def send_zeros(self, length):
        self.note(200)
        self.send_response(200)
        if length is None:
            self.send_header("Connection", "close")
            self.close_connection = True
        else:
            self.send_header("Content-Length", str(length))
        self.end_headers()
        zeros = bytes(CHUNK)
        try:
            while True:
                self.wfile.write(zeros)
        except OSError:
            self.close_connection = True

    def redirect(self, location, status=302):
        self.simple(status, b"moved\n", [("Location", location)])

    def do_GET(self):
        st = self.server.state
        parts = self.path.split("/")[1:]
        if not parts:
            return self.simple(404)
        mode, name = parts[0], parts[-1]
        if mode == "status" and len(parts) == 3:
            return self.simple(int(parts[1]), b"status\n")
        if mode == "hops" and len(parts) == 3:
            n = int(parts[1])
            return self.redirect("/files/%s" % name if n <= 0 else "/hops/%d/%s" % (n - 1, name))
        if mode == "redirect-abs":
            return self.redirect("http://127.0.0.1:%d/files/%s" % (st.port, name))
        if mode == "redirect-other":
            return self.redirect("http://127.0.0.2:%d/files/%s" % (st.port, name))
        if mode == "redirect-loop":
            return self.redirect(self.path)
        if mode == "huge":
            return self.send_zeros(10 ** 12)
        if mode == "endless":
            return self.send_zeros(None)
        data = self.file_bytes(name)
        if data is None or len(parts) != 2:
            return self.simple(404, b"no such file\n")
        if mode == "files":
            return self.send_file(data)
        if mode in ("drop-once", "stall-once"):
            if st.first_time((mode, name)):
                start = self.range_start() or 0
                if mode == "stall-once":  # little enough for the client's speed average to drop fast
                    return self.send_file(data, cut=min(1000, len(data) - start), stall=True)
                return self.send_file(data, cut=max(1, (len(data) - start) // 2))
            return self.send_file(data)
        if mode == "norange":
            return self.send_file(data, honour_range=False)
        if mode == "wrong":
            bad = bytearray(data)
            bad[len(bad) // 2] ^= 0xFF
            return self.send_file(bytes(bad))
        if mode == "flaky-once":
            if st.first_time((mode, name)):
                return self.simple(503, b"try later\n", [("Retry-After", "1")])
            return self.send_file(data)
        return self.simple(404, b"unknown behaviour\n")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--root", required=True, help="folder of the files to serve")
    ap.add_argument("--log", required=True, help="JSON-lines request log")
    args = ap.parse_args()
    state = State(args.root, args.log)
    open(args.log, "a").close()
    for _ in range(50):  # the same free port on both loopback addresses
        a = Server(("127.0.0.1", 0), state)
        port = a.server_address[1]
        try:
            b = Server(("127.0.0.2", port), state)
            break
        except OSError:
            a.server_close()
    else:
        sys.exit("serve_files: no port free on both 127.0.0.1 and 127.0.0.2")
    state.port = port
    threading.Thread(target=b.serve_forever, daemon=True).start()
    print(port, flush=True)
    a.serve_forever()


if __name__ == "__main__":
    main()
