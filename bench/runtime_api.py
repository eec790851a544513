"""A minimal AWS Lambda Runtime API for benchmarks (one function process at a time).

It starts the function process itself so that it can time the cold start: `spawn()` notes
the clock just before fork/exec, the first `GET /2018-06-01/runtime/invocation/next` notes
the end of init. `invoke()` hands one event to the waiting function and returns when the
function has posted its response (wall time = post → response body fully received).
`peak_rss_kib()` reads VmHWM from /proc/PID/status while the process is still alive.

Every small response would otherwise wait ~40 ms for a delayed ACK: the handler sets
TCP_NODELAY (``disable_nagle_algorithm``).
"""

from __future__ import annotations

import http.server
import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
import uuid

FUNCTION_ARN = "arn:aws:lambda:us-east-1:123456789012:function:imagebuilder-reaper"
PREFIX = "/2018-06-01/runtime"
DEADLINE_S = 15 * 60  # generous, so the function's deadline margin never interferes

# Every child process started here or by bench.py, so that an exit (or SIGTERM) stops them all.
CHILDREN: "list[subprocess.Popen]" = []


def kill_children() -> None:
    for proc in CHILDREN:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


class Invocation:
    def __init__(self, payload: bytes):
        self.request_id = str(uuid.uuid4())
        self.payload = payload
        self.deadline_ms = int((time.time() + DEADLINE_S) * 1000)
        self.t_posted = 0.0      # perf_counter when the event was made available
        self.t_picked = 0.0      # perf_counter when the function received it
        self.t_resp_head = 0.0   # perf_counter when the response request's headers arrived
        self.t_resp = 0.0        # perf_counter when the response body was fully read
        self.kind = None         # "response" | "error"
        self.body = b""
        self.done = threading.Event()


class RuntimeApi:
    """One Runtime API endpoint on 127.0.0.1:<ephemeral port>."""

    def __init__(self, function_arn: str = FUNCTION_ARN):
        self.function_arn = function_arn
        self.pending: "queue.Queue[Invocation]" = queue.Queue()
        self.by_id: dict[str, Invocation] = {}
        self.next_times: list[float] = []
        self.first_next = threading.Event()
        self.init_error: bytes | None = None
        self.closing = False
        self.proc: subprocess.Popen | None = None
        self.t_spawn = 0.0
        api = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True

            def log_message(self, *args):  # quiet
                pass

            def _read_body(self) -> bytes:
                if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                    chunks = []
                    while True:
                        size = int(self.rfile.readline().split(b";")[0].strip(), 16)
                        if size == 0:
                            while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                                pass
                            return b"".join(chunks)
                        chunks.append(self.rfile.read(size))
                        self.rfile.readline()
                n = int(self.headers.get("Content-Length") or 0)
                return self.rfile.read(n) if n else b""

            def _reply(self, status: int, body: bytes = b"", headers: dict | None = None):
                self.send_response(status)
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if body:
                    self.wfile.write(body)

            def do_GET(self):
                if self.path != PREFIX + "/invocation/next":
                    return self._reply(404, b'{"errorMessage":"not found"}')
                api.next_times.append(time.perf_counter())
                api.first_next.set()
                while True:
                    try:
                        inv = api.pending.get(timeout=0.2)
                        break
                    except queue.Empty:
                        if api.closing:
                            # The function is about to be stopped; leave it blocked.
                            return
                inv.t_picked = time.perf_counter()
                self._reply(200, inv.payload, {
                    "Content-Type": "application/json",
                    "Lambda-Runtime-Aws-Request-Id": inv.request_id,
                    "Lambda-Runtime-Deadline-Ms": str(inv.deadline_ms),
                    "Lambda-Runtime-Invoked-Function-Arn": api.function_arn,
                    "Lambda-Runtime-Trace-Id": "Root=1-00000000-000000000000000000000000;Sampled=0",
                })

            def do_POST(self):
                t_head = time.perf_counter()
                body = self._read_body()
                t_end = time.perf_counter()
                if self.path == PREFIX + "/init/error":
                    api.init_error = body
                    api.first_next.set()
                    return self._reply(202, b'{"status":"OK"}')
                parts = self.path[len(PREFIX):].strip("/").split("/")
                if len(parts) == 3 and parts[0] == "invocation" and parts[2] in ("response", "error"):
                    inv = api.by_id.get(parts[1])
                    if inv is None:
                        return self._reply(400, b'{"errorMessage":"unknown request id"}')
                    inv.t_resp_head, inv.t_resp = t_head, t_end
                    inv.kind, inv.body = parts[2], body
                    inv.done.set()
                    return self._reply(202, b'{"status":"OK"}')
                return self._reply(404, b'{"errorMessage":"not found"}')

        class Server(http.server.ThreadingHTTPServer):
            daemon_threads = True

            def handle_error(self, request, client_address):
                # A stopped function leaves its keep-alive connection reset: not an error here.
                if not isinstance(sys.exc_info()[1], ConnectionError):
                    super().handle_error(request, client_address)

        self.server = Server(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.address = "127.0.0.1:%d" % self.server.server_address[1]
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self._thread.start()

    # -- the function process -------------------------------------------------------------

    def spawn(self, argv: list[str], env: dict[str, str], log_path: str | None = None) -> None:
        full_env = dict(env)
        full_env["AWS_LAMBDA_RUNTIME_API"] = self.address
        out = open(log_path, "ab") if log_path else subprocess.DEVNULL
        self.t_spawn = time.perf_counter()
        self.proc = subprocess.Popen(argv, env=full_env, stdin=subprocess.DEVNULL,
                                     stdout=out, stderr=subprocess.STDOUT)
        CHILDREN.append(self.proc)
        if log_path:
            out.close()

    def wait_ready(self, timeout: float = 60.0) -> float:
        """Seconds from spawn to the first GET /next; raises if init failed or the process died."""
        deadline = time.monotonic() + timeout
        while not self.first_next.wait(0.05):
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError("function exited during init with status %s" % self.proc.returncode)
            if time.monotonic() > deadline:
                raise TimeoutError("function did not ask for an event within %.0f s" % timeout)
        if self.init_error is not None:
            raise RuntimeError("function reported an init error: %s" % self.init_error[:500].decode(errors="replace"))
        return self.next_times[0] - self.t_spawn

    def invoke(self, event, timeout: float = 900.0) -> Invocation:
        payload = event if isinstance(event, (bytes, bytearray)) else json.dumps(event).encode()
        inv = Invocation(bytes(payload))
        self.by_id[inv.request_id] = inv
        inv.t_posted = time.perf_counter()
        self.pending.put(inv)
        if not inv.done.wait(timeout):
            raise TimeoutError("no response within %.0f s" % timeout)
        return inv

    def status(self) -> dict[str, int]:
        """VmHWM / VmRSS (KiB) of the live function process."""
        out = {}
        with open("/proc/%d/status" % self.proc.pid) as f:
            for line in f:
                if line.startswith(("VmHWM:", "VmRSS:")):
                    key, val = line.split(":", 1)
                    out[key] = int(val.split()[0])
        return out

    def cpu_seconds(self) -> float:
        """On-CPU time of all the process's threads so far (schedstat, ns resolution): unlike
        the wall-clock init time, it hardly moves when other work competes for the cores."""
        total = 0
        task_dir = "/proc/%d/task" % self.proc.pid
        for tid in os.listdir(task_dir):
            try:
                with open("%s/%s/schedstat" % (task_dir, tid)) as f:
                    total += int(f.read().split()[0])
            except OSError:
                pass
        return total / 1e9

    def stop(self) -> None:
        self.closing = True
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait()
        self.server.shutdown()
        self.server.server_close()
