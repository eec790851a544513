"""imagebuilder-reaper benchmark: the release binary against the Image Builder emulator,
through a Lambda Runtime API harness, compared with the physical limit and with a boto3 loop.

Run it through scripts/bench (which builds what it needs). Prints a table; with --doc PATH
also rewrites the results section of that Markdown file (between the BENCH markers).
"""

from __future__ import annotations

import argparse
import atexit
import datetime
import http.client
import json
import math
import os
import platform
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
import urllib.parse

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from runtime_api import CHILDREN, RuntimeApi, kill_children  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ACCOUNT, REGION = "123456789012", "us-east-1"
FUNCTION_NAME = "imagebuilder-reaper"
MB = 1024 * 1024

# --- emulator ------------------------------------------------------------------------------


def stop_child(proc: subprocess.Popen, log, grace: float) -> None:
    """Terminates a child this bench started (killed if it outlives `grace` seconds) and
    closes its log."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(grace)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    log.close()


class Emulator:
    """One ib-emulator process (started per scenario, so its faults come from its flags)."""

    def __init__(self, argv: list[str], log_path: str):
        self.log = open(log_path, "ab")
        self.proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=self.log, stdin=subprocess.DEVNULL)
        CHILDREN.append(self.proc)
        line = self._first_line(timeout=30)
        m = re.search(r"listening on (127\.0\.0\.1:\d+)", line)
        if not m:
            self.stop()
            raise RuntimeError("emulator did not say where it listens: %r" % line)
        self.address = m.group(1)
        self.endpoint = "http://" + self.address
        threading.Thread(target=self._drain, daemon=True).start()
        self._conn = None

    def _first_line(self, timeout: float) -> str:
        box = []
        t = threading.Thread(target=lambda: box.append(self.proc.stdout.readline().decode(errors="replace")), daemon=True)
        t.start()
        t.join(timeout)
        return box[0] if box else ""

    def _drain(self):
        for chunk in iter(lambda: self.proc.stdout.read(4096), b""):
            self.log.write(chunk)

    def _request(self, method: str, path: str, body: bytes | None = None):
        if self._conn is None:
            host, port = self.address.split(":")
            self._conn = http.client.HTTPConnection(host, int(port), timeout=30)
        try:
            self._conn.request(method, path, body, {"Content-Type": "application/json"} if body is not None else {})
            resp = self._conn.getresponse()
            data = resp.read()
        except (http.client.HTTPException, OSError):
            self._conn.close()
            self._conn = None
            raise
        if resp.status >= 300:
            raise RuntimeError("emulator %s %s: %d %s" % (method, path, resp.status, data[:200]))
        return json.loads(data) if data else None

    def stats(self) -> dict:
        return self._request("GET", "/_emulator/stats")

    def reset_stats(self) -> None:
        self._request("POST", "/_emulator/reset-stats", b"{}")

    def stop(self):
        stop_child(self.proc, self.log, 5)


# --- functions -----------------------------------------------------------------------------


class Function:
    def __init__(self, name: str, argv: list[str], env: dict[str, str]):
        self.name, self.argv, self.env = name, argv, env


def base_env(home: str) -> dict[str, str]:
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": home,  # empty, like a Lambda sandbox: no ~/.aws files to find
        "LANG": "C.UTF-8",
        "AWS_LAMBDA_FUNCTION_NAME": FUNCTION_NAME,
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "128",
        "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
        "AWS_LAMBDA_LOG_GROUP_NAME": "/aws/lambda/" + FUNCTION_NAME,
        "AWS_LAMBDA_LOG_STREAM_NAME": "2026/01/01/[$LATEST]bench",
        "AWS_REGION": REGION,
        "AWS_DEFAULT_REGION": REGION,
        "AWS_ACCESS_KEY_ID": "test",
        "AWS_SECRET_ACCESS_KEY": "test",
    }
    # template.yaml deploys with LoggingConfig.LogFormat JSON, so Lambda sets this.
    env["AWS_LAMBDA_LOG_FORMAT"] = "JSON"
    for k in ("AWS_LAMBDA_LOG_FORMAT", "AWS_LAMBDA_LOG_LEVEL", "RUST_LOG"):
        if os.environ.get("BENCH_" + k):
            env[k] = os.environ["BENCH_" + k]
    return env


def env_list(spec: str) -> dict[str, str]:
    """`K=V,K2=V2` (BENCH_REAPER_ENV): extra environment for the reaper, for experiments."""
    return dict(kv.split("=", 1) for kv in spec.split(",") if "=" in kv)


def arns(n: int, tag: str) -> list[str]:
    # Unique per scenario and run, so every DeleteImage meets an existing (implicit) image.
    return ["arn:aws:imagebuilder:%s:%s:image/bench-%s-%d/1.0.%d/1" % (REGION, ACCOUNT, tag, i // 1000, i % 1000)
            for i in range(n)]


class Run:
    """One cold process, one invocation."""

    def __init__(self, fn: Function, endpoint: str, extra_env: dict[str, str], log_path: str):
        self.api = RuntimeApi()
        env = dict(fn.env)
        env["AWS_ENDPOINT_URL_IMAGEBUILDER"] = endpoint
        env.update(extra_env)
        self.api.spawn(fn.argv, env, log_path)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.api.stop()


def invoke_once(fn, emu, n, extra_env, tag, log_path, poll_stats=False, share=None):
    """Cold start, then one invocation of n ARNs. Returns a dict of measurements. With a
    CpuShare, the process runs the invocation under that CPU quota (init runs free)."""
    emu.reset_stats()
    with Run(fn, emu.endpoint, extra_env, log_path) as run:
        init_s = run.api.wait_ready()
        if share is not None:
            share.add(run.api.proc.pid)
        idle = run.api.status()
        cpu0 = run.api.cpu_seconds()
        poller = StatsPoller(emu, n) if poll_stats else None
        inv = run.api.invoke({"imageBuildVersionArns": arns(n, tag)})
        if poller:
            poller.stop()
        # The function is back on GET /next by now or very soon; VmHWM is the peak either way.
        time.sleep(0.05)
        mem = run.api.status()
        cpu = run.api.cpu_seconds() - cpu0
    stats = emu.stats()
    if inv.kind != "response":
        raise RuntimeError("%s: invocation failed: %s" % (fn.name, inv.body[:1000].decode(errors="replace")))
    report = json.loads(inv.body)
    out = {
        "wall": inv.t_resp - inv.t_posted,
        "init": init_s,
        "idle_hwm_kib": idle.get("VmHWM", 0),
        "hwm_kib": mem.get("VmHWM", 0),
        "cpu": cpu,
        "report": report,
        "report_bytes": len(inv.body),
        "body_transfer": inv.t_resp - inv.t_resp_head,
        "stats": stats,
    }
    if poller and poller.t_all_sent is not None:
        out["tail_from_last_call"] = inv.t_resp_head - poller.t_all_sent
    return out


class StatsPoller:
    """Polls the emulator's call count to find when the last DeleteImage was answered."""

    def __init__(self, emu: Emulator, n: int):
        self.emu, self.n = emu, n
        self.t_all_sent = None
        self._stop = False
        self._conn = http.client.HTTPConnection(*emu.address.split(":"))
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        while not self._stop:
            self._conn.request("GET", "/_emulator/stats")
            st = json.loads(self._conn.getresponse().read())
            # The emulator records a call when its answer is ready, so this counts answered calls.
            done = sum(v for k, v in (st.get("byStatus") or {}).items())
            if done >= self.n:
                self.t_all_sent = time.perf_counter()
                return
            # Poll coarsely (each poll walks the call log) until the end is near.
            time.sleep(0.001 if done >= self.n * 0.97 else 0.02)

    def stop(self):
        self._stop = True
        self.thread.join(2)


def emulator_round_trip(emu: Emulator, n: int = 30):
    host, port = emu.address.split(":")
    conn = http.client.HTTPConnection(host, int(port))
    conn.connect()
    conn.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    times = []
    path = "/DeleteImage?imageBuildVersionArn=" + arns(1, "calibration")[0].replace(":", "%3A").replace("/", "%2F")
    for _ in range(n):
        t = time.perf_counter()
        conn.request("DELETE", path)
        conn.getresponse().read()
        times.append(time.perf_counter() - t)
    conn.close()
    emu.reset_stats()
    return statistics.median(times)


class CpuShare:
    """A cgroup-v1 CPU quota of `mb / 1769` of one CPU — the share Lambda gives a function of
    that memory size — that a function process can be moved into. Removed by close()."""

    ROOT = "/sys/fs/cgroup/cpu"

    def __init__(self, mb: int):
        self.mb = mb
        self.path = os.path.join(self.ROOT, "imagebuilder-reaper-bench-%d-%d" % (os.getpid(), mb))
        os.mkdir(self.path)
        period = 100_000
        with open(os.path.join(self.path, "cpu.cfs_period_us"), "w") as f:
            f.write(str(period))
        with open(os.path.join(self.path, "cpu.cfs_quota_us"), "w") as f:
            f.write(str(int(period * mb / 1769)))

    @classmethod
    def available(cls) -> bool:
        return os.access(cls.ROOT, os.W_OK) and os.path.exists(os.path.join(cls.ROOT, "cpu.cfs_quota_us"))

    def add(self, pid: int) -> None:
        for tid in os.listdir("/proc/%d/task" % pid):
            with open(os.path.join(self.path, "tasks"), "w") as f:
                f.write(tid)

    def close(self) -> None:
        for _ in range(50):
            try:
                os.rmdir(self.path)
                return
            except OSError:
                time.sleep(0.1)


def summary_counts(report: dict) -> str:
    s = report.get("summary") or {}
    keys = [k for k in ("deleted", "alreadyDeleted", "failed", "notAttempted", "rejected") if s.get(k)]
    if s:
        return ", ".join("%s %d" % (k, s[k]) for k in keys) or "nothing"
    return ", ".join("%s %s" % (k, v if not isinstance(v, list) else len(v)) for k, v in report.items())


def attempts_from_report(report: dict) -> list[int]:
    return [r["attempts"] for r in report.get("results") or [] if isinstance(r.get("attempts"), int)]


def run_instances(fn, emu, instances, n, extra_env, tag, log_path):
    """`instances` cold function processes, each invoked at once with its own n ARNs, against
    one emulator. Returns (wall from the first event posted to the last response, emulator
    DeleteImage calls, the invocations)."""
    emu.reset_stats()
    runs = [Run(fn, emu.endpoint, extra_env, log_path) for _ in range(instances)]
    try:
        for r in runs:
            r.api.wait_ready()
        invs = [None] * instances

        def go(i):
            invs[i] = runs[i].api.invoke({"imageBuildVersionArns": arns(n, "%s-%d" % (tag, i))})

        threads = [threading.Thread(target=go, args=(i,)) for i in range(instances)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    finally:
        for r in runs:
            r.__exit__(None, None, None)
    wall = max(i.t_resp for i in invs) - min(i.t_posted for i in invs)
    stats = emu.stats()
    calls = (stats.get("byOperation") or {}).get("DeleteImage", stats.get("calls", 0))
    return wall, calls, invs


def given_up(inv, n: int) -> int:
    """ARNs of one invocation not deleted: failed, not attempted, dead-lettered or handed back
    (a failed invocation gives up all n)."""
    if inv.kind != "response":
        return n
    s = (json.loads(inv.body).get("summary") or {})
    return n - s.get("deleted", 0)


def throttled_of(inv) -> int:
    if inv.kind != "response":
        return 0
    return (json.loads(inv.body).get("summary") or {}).get("throttled", 0)


def measure_rate_limits(reaper, emulator, log_path, run_id, progress):
    """The rows of the service-rate-limit scenarios: (measure, result, goal, verdict)."""
    rows = []
    # (ARNs per instance, instances, R calls/s, MAX_CONCURRENCY, time goal × N/R, calls/ARN goal)
    scenarios = [(2000, 1, 100, 32, 1.15, 1.10), (300, 1, 20, 32, 1.15, 1.10),
                 (500, 4, 100, 32, 1.25, 1.25)]
    for n, k, rate, c, t_goal, c_goal in scenarios:
        emu = emulator("--rate-limit", "DeleteImage=%d" % rate)
        try:
            wall, calls, invs = run_instances(reaper, emu, k, n, {"MAX_CONCURRENCY": str(c), "MAX_ATTEMPTS": "5"},
                                              "rl%d-%d-%s" % (rate, k, run_id), log_path)
        finally:
            emu.stop()
        total = n * k
        ideal = total / rate
        per_arn = calls / total
        lost = sum(given_up(i, n) for i in invs)
        throttled = sum(throttled_of(i) for i in invs)
        progress("rate limit R=%d/s, %d × %d ARNs: %.2f s, %.3f calls/ARN, %d given up" % (
            rate, k, n, wall, per_arn, lost))
        who = "one instance" if k == 1 else "%d instances × %d ARNs sharing it" % (k, n)
        rows.append(("Service rate limit R=%d/s (emulator --rate-limit DeleteImage=%d): N=%d, %s, C=%d, L=20 ms" % (
                         rate, rate, total, who, c),
                     "%s = %.3f× N/R (%s); %.3f DeleteImage calls per ARN; %d throttled; %d given up" % (
                         fmt_s(wall), wall / ideal, fmt_s(ideal), per_arn, throttled, lost),
                     "≤ %.2f× N/R, ≤ %.2f calls/ARN, 0 given up" % (t_goal, c_goal),
                     verdict(wall / ideal <= t_goal and per_arn <= c_goal and lost == 0)))
    return rows


# --- retention plan listing ---------------------------------------------------------------

# The seeded history of the `plan` rows: 500 names × 4 versions × 5 builds = 10,000 builds.
PLAN_NAMES, PLAN_VERSIONS, PLAN_BUILDS = 500, 4, 5
PLAN_EVENT = {"plan": {"keepNewest": 3}}


def plan_history() -> dict:
    return {"account": ACCOUNT, "region": REGION,
            "names": ["bench-image-%03d" % i for i in range(PLAN_NAMES)],
            "versionsPerName": PLAN_VERSIONS, "buildsPerVersion": PLAN_BUILDS,
            "start": "2025-06-01T00:00:00.000Z", "stepSeconds": 3600}


def invoke_event(fn, emu, event, extra_env, log_path):
    """Cold start, then one invocation of `event`: wall, VmHWM, CPU, the response, the
    emulator's stats of the invocation."""
    emu.reset_stats()
    with Run(fn, emu.endpoint, extra_env, log_path) as run:
        run.api.wait_ready()
        cpu0 = run.api.cpu_seconds()
        inv = run.api.invoke(event)
        time.sleep(0.05)
        mem = run.api.status()
        cpu = run.api.cpu_seconds() - cpu0
    stats = emu.stats()
    if inv.kind != "response":
        raise RuntimeError("%s: invocation failed: %s" % (fn.name, inv.body[:1000].decode(errors="replace")))
    return {"wall": inv.t_resp - inv.t_posted, "hwm_kib": mem.get("VmHWM", 0), "cpu": cpu,
            "response": json.loads(inv.body), "bytes": len(inv.body), "stats": stats}


def plan_floor(pages: int, versions: int, c: int, latency: float) -> tuple[float, float]:
    """(the floor of the function's listing, the issue's literal floor ceil(round trips / C)·L).
    The ListImages pages are a token chain: P of them take P·L, and the builds of the last
    page's versions one L more; the versions' listings, C at a time, start one L after the
    first page; and all P + V calls share the C slots. The floor is the largest of the three."""
    literal = math.ceil((pages + versions) / c) * latency
    return max(literal, (pages + 1) * latency, (1 + math.ceil(versions / c)) * latency), literal


def measure_plan(reaper, boto3_python, emu_argv, home, repeat, log_path, elog, progress):
    """The rows of the retention plan listing: the release binary making a plan of 10,000
    builds at C=16 and C=64, and a boto3 Lambda listing the same serially."""
    L = 0.020
    rows, notes = [], []
    emu = Emulator(emu_argv + ["--port", "0", "--latency-ms", "20"], elog)
    try:
        seeded = emu._request("POST", "/_emulator/history", json.dumps(plan_history()).encode())["seeded"]
        rtt = emulator_round_trip(emu)
        what = "%d builds (%d names × %d versions × %d builds)" % (seeded, PLAN_NAMES, PLAN_VERSIONS, PLAN_BUILDS)
        for c in (16, 64):
            runs = []
            for i in range(repeat):
                r = invoke_event(reaper, emu, PLAN_EVENT, {"MAX_CONCURRENCY": str(c), "MAX_ATTEMPTS": "5"}, log_path)
                runs.append(r)
                progress("plan C=%d run %d: %.3f s, calls %s, max concurrency %s, summary %s" % (
                    c, i + 1, r["wall"], r["stats"].get("byOperation"), r["stats"].get("maxConcurrency"),
                    r["response"].get("summary")))
            by_op = runs[-1]["stats"].get("byOperation") or {}
            pages, versions = by_op.get("ListImages", 0), by_op.get("ListImageBuildVersions", 0)
            trips = pages + versions
            floor, literal = plan_floor(pages, versions, c, L)
            walls = [r["wall"] for r in runs]
            med = statistics.median(walls)
            hwm = max(r["hwm_kib"] for r in runs)
            rows.append(("Plan of %s, MAX_CONCURRENCY=%d, L=20 ms" % (what, c),
                         "%s median of %d (min %s, max %s); %d listing round trips (ListImages %d serial pages + "
                         "ListImageBuildVersions %d), emulator max concurrency %s; floor %s → ratio %.3f× "
                         "(the issue's floor ceil(%d/%d)·L = %s → %.3f×; %.3f× the floor at the emulator's measured "
                         "round trip %.2f ms); CPU time %s; response %.2f MB inline, summary %s" % (
                             fmt_s(med), len(walls), fmt_s(min(walls)), fmt_s(max(walls)), trips, pages, versions,
                             runs[-1]["stats"].get("maxConcurrency"), fmt_s(floor), med / floor, trips, c,
                             fmt_s(literal), med / literal, med / (floor / L * rtt), rtt * 1000,
                             fmt_s(statistics.median(r["cpu"] for r in runs)), runs[-1]["bytes"] / MB,
                             json.dumps(runs[-1]["response"].get("summary"), separators=(",", ":"))),
                         "≤ 1.25× floor", verdict(med / floor <= 1.25)))
            rows.append(("Peak RSS (VmHWM), plan of 10,000 builds, MAX_CONCURRENCY=%d" % c,
                         fmt_mb(hwm) + " (max over runs)", "≤ 40 MB", verdict(hwm <= 40 * 1024)))
            if c == 16:
                best = med
        boto3_fn = Function("boto3 plan listing", [boto3_python, os.path.join(ROOT, "bench", "python_runtime.py"),
                                                   "boto3_plan.handler"], base_env(home))
        for strategy, label in (("version", "ListImages + ListImageBuildVersions per version, one call at a time"),
                                ("account", "ListImageBuildVersions without imageVersionArn, page after page")):
            r = invoke_event(boto3_fn, emu, {"strategy": strategy}, {}, log_path)
            calls = r["stats"].get("calls", 0)
            progress("boto3 plan listing (%s): %.3f s, %d calls, %s" % (strategy, r["wall"], calls, r["response"]))
            rows.append(("boto3 Lambda listing the same serially (bench/boto3_plan.py, %s)" % label,
                         "%s; %d calls (%.1f ms per call incl. the 20 ms latency); %d builds; peak RSS %s; "
                         "the reaper (C=16) is %.1f× faster" % (
                             fmt_s(r["wall"]), calls, r["wall"] / max(1, calls) * 1000,
                             r["response"].get("scanned", 0), fmt_mb(r["hwm_kib"]), r["wall"] / best),
                         "(baseline)", "—"))
    finally:
        emu.stop()
    notes.append("Floor: ListImages pages are a nextToken chain (P serial calls), each version's builds one "
                 "ListImageBuildVersions call (V of them, C at a time, started as their page arrives), all P + V "
                 "sharing the C slots: floor = max(ceil((P+V)/C), P+1, 1+ceil(V/C)) · L. At C=16 that is the "
                 "issue's ceil(round trips / C) · L; at C=64 the serial pages decide it.")
    return rows, notes

# --- the in-use guard's cost (BENCH_ONLY=guard) --------------------------------------------
#
# The guard has no off switch (it is a safety check), so "off" is measured as the guard made
# free: the EC2 front (ib-emulator --ec2-upstream, in front of moto) adds the same latency L
# to every EC2 call, except that the guard's own operations get 0 ms in the "free" run. The
# difference between the two runs is what the guard's round trips cost; moto's own time is in
# both runs alike.

# The EC2 operations only the guard calls: the cleanup reads each AMI with DescribeImages
# (which also carries its protection and last launch), the guard adds DescribeImageReferences,
# and DescribeImageAttribute only for a field that DescribeImages left out.
GUARD_OPERATIONS = ("DescribeImageReferences", "DescribeImageAttribute")
EC2_AUTH = ("AWS4-HMAC-SHA256 Credential=test/20260101/%s/ec2/aws4_request, "
            "SignedHeaders=content-type;host;x-amz-date, Signature=00" % REGION)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class MotoServer:
    """moto_server on a free 127.0.0.1 port (moto skips signature checks: static keys do)."""

    def __init__(self, moto_server: str, log_path: str):
        self.port = free_port()
        self.log = open(log_path, "ab")
        # Without moto's ~1,300 built-in AMIs, which every DescribeImages would walk past.
        env = {**os.environ, "MOTO_EC2_LOAD_DEFAULT_AMIS": "false"}
        self.proc = subprocess.Popen([moto_server, "-H", "127.0.0.1", "-p", str(self.port)], env=env,
                                     stdout=self.log, stderr=self.log, stdin=subprocess.DEVNULL)
        CHILDREN.append(self.proc)
        self.url = "http://127.0.0.1:%d" % self.port
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and self.proc.poll() is None:
            try:
                socket.create_connection(("127.0.0.1", self.port), 0.2).close()
                return
            except OSError:
                time.sleep(0.1)
        self.stop()
        raise RuntimeError("moto_server did not start (see %s)" % log_path)

    def stop(self):
        stop_child(self.proc, self.log, 10)


def ec2_query(address: str, action: str, params: dict, conn=None):
    """One EC2 Query call (form POST) to moto or the front; returns (status, body)."""
    host, port = address.split(":")
    own = conn is None
    conn = conn or http.client.HTTPConnection(host, int(port), timeout=60)
    body = "Action=%s&Version=2016-11-15" % action + "".join(
        "&%s=%s" % (k, urllib.parse.quote(str(v), safe="")) for k, v in params.items())
    conn.request("POST", "/", body, {"Content-Type": "application/x-www-form-urlencoded; charset=utf-8",
                                     "X-Amz-Date": "20260101T000000Z", "Authorization": EC2_AUTH})
    resp = conn.getresponse()
    data = resp.read().decode(errors="replace")
    if own:
        conn.close()
    return resp.status, data


def register_amis(moto: MotoServer, n: int, threads: int = 4) -> list[str]:
    """n AMIs in moto (RegisterImage: moto gives each one auto-created snapshot)."""
    out: list = [None] * n

    def work(k):
        conn = http.client.HTTPConnection("127.0.0.1", moto.port, timeout=60)
        for i in range(k, n, threads):
            status, body = ec2_query("127.0.0.1:%d" % moto.port, "RegisterImage",
                                     {"Name": "guard-bench-%d-%d" % (time.time_ns(), i)}, conn)
            m = re.search(r"<imageId>(ami-[0-9a-f]+)</imageId>", body)
            if status != 200 or not m:
                raise RuntimeError("RegisterImage: %d %s" % (status, body[:300]))
            out[i] = m.group(1)
        conn.close()

    workers = [threading.Thread(target=work, args=(k,)) for k in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    if any(a is None for a in out):
        raise RuntimeError("RegisterImage failed for some AMIs")
    return out


def query_round_trip(address: str, action: str, params: dict, n: int = 30) -> float:
    """Median of n sequential calls on one keep-alive connection with TCP_NODELAY."""
    host, port = address.split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=60)
    conn.connect()
    conn.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    times = []
    for _ in range(n):
        t = time.perf_counter()
        status, body = ec2_query(address, action, params, conn)
        times.append(time.perf_counter() - t)
        if status != 200:
            raise RuntimeError("%s: %d %s" % (action, status, body[:300]))
    conn.close()
    return statistics.median(times)


class FrontedEmulator(Emulator):
    """ib-emulator with its EC2 front (`--ec2-upstream`): two addresses, two sets of stats."""

    def __init__(self, argv: list[str], log_path: str):
        self.log = open(log_path, "ab")
        self.proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=self.log, stdin=subprocess.DEVNULL)
        CHILDREN.append(self.proc)
        first, second = self._first_line(timeout=30), self._first_line(timeout=30)
        m = re.search(r"^listening on (127\.0\.0\.1:\d+)", first)
        m2 = re.search(r"^ec2 listening on (127\.0\.0\.1:\d+)", second)
        if not (m and m2):
            self.stop()
            raise RuntimeError("emulator did not say where it listens: %r %r" % (first, second))
        self.address, self.ec2_address = m.group(1), m2.group(1)
        self.endpoint, self.ec2_endpoint = "http://" + self.address, "http://" + self.ec2_address
        threading.Thread(target=self._drain, daemon=True).start()
        self._conn = None

    def _ec2_control(self, method: str, path: str):
        host, port = self.ec2_address.split(":")
        conn = http.client.HTTPConnection(host, int(port), timeout=30)
        conn.request(method, path, b"{}" if method == "POST" else None)
        resp = conn.getresponse()
        data = resp.read()
        conn.close()
        if resp.status >= 300:
            raise RuntimeError("EC2 front %s %s: %d %s" % (method, path, resp.status, data[:200]))
        return json.loads(data) if data else None

    def ec2_stats(self) -> dict:
        return self._ec2_control("GET", "/_ec2/stats")

    def ec2_reset_stats(self) -> None:
        self._ec2_control("POST", "/_ec2/reset-stats")

    def describe_usage(self, amis: list[str]) -> None:
        """The front's DescribeImages gives each AMI protection `disabled` and a launch long ago."""
        host, port = self.ec2_address.split(":")
        conn = http.client.HTTPConnection(host, int(port), timeout=30)
        body = json.dumps({"lastLaunchedTime": "2025-01-01T00:00:00Z", "deregistrationProtection": "disabled"})
        for ami in amis:
            conn.request("POST", "/_ec2/images/" + ami, body, {"Content-Type": "application/json"})
            resp = conn.getresponse()
            data = resp.read()
            if resp.status >= 300:
                raise RuntimeError("EC2 front /_ec2/images/%s: %d %s" % (ami, resp.status, data[:200]))
        conn.close()

    def seed_images(self, image_arns: list[str], amis: list[str]) -> None:
        """Image Builder images whose GetImage outputResources name one AMI each."""
        images = [{"arn": arn, "outputResources": {"amis": [
            {"region": REGION, "image": ami, "name": "guard bench", "accountId": ACCOUNT,
             "state": {"status": "AVAILABLE"}}]}} for arn, ami in zip(image_arns, amis)]
        self._request("POST", "/_emulator/images", json.dumps(images).encode())


def guard_run(reaper, new_emulator, moto, n, c, guard_free, described, tag, log_path):
    """One cold invocation over n fresh images (one fresh AMI each) with the guard's
    operations at 0 ms (guard_free) or at L like every other call. `described`: the front's
    DescribeImages carries each AMI's protection (disabled) and last launch (long ago), as EC2
    does for an AMI once launched; otherwise both are left out (never launched, and moto's
    answer), so the guard asks DescribeImageAttribute for them."""
    flags = []
    if guard_free:
        for op in GUARD_OPERATIONS:
            flags += ["--ec2-latency", "%s=0" % op]
    emu = new_emulator(*flags)
    try:
        amis = register_amis(moto, n)
        if described:
            emu.describe_usage(amis)
        image_arns = arns(n, tag)
        emu.seed_images(image_arns, amis)
        emu.ec2_reset_stats()
        env = {"AWS_ENDPOINT_URL_EC2": emu.ec2_endpoint, "DELETE_OUTPUT_RESOURCES": "amis",
               "MAX_CONCURRENCY": str(c), "MAX_ATTEMPTS": "5"}
        r = invoke_once(reaper, emu, n, env, tag, log_path)
        r["ec2_stats"] = emu.ec2_stats()
    finally:
        emu.stop()
    s = r["report"].get("summary") or {}
    if s.get("deleted") != n:
        raise RuntimeError("guard bench: expected %d deleted, got %s" % (n, s))
    return r


def calls_per_arn(r: dict, n: int) -> dict:
    """Calls per ARN by operation, Image Builder's and EC2's together."""
    ops = dict((r["stats"].get("byOperation") or {}))
    ops.update(r["ec2_stats"].get("byOperation") or {})
    return {op: k / n for op, k in sorted(ops.items())}


def fmt_calls(per_arn: dict) -> str:
    return ", ".join("%s %.2f" % (op, k) for op, k in per_arn.items() if k)


def moto_calls(r: dict) -> int:
    """Requests moto served for one run: every EC2 call but the front's own answers, plus the
    front's reads behind them (DescribeImageReferences: instances and launch templates;
    DescribeImageAttribute: the AMI)."""
    ops = r["ec2_stats"].get("byOperation") or {}
    return sum(ops.values()) + ops.get("DescribeImageReferences", 0)


def guard_scenarios() -> list[tuple[int, bool]]:
    """(MAX_CONCURRENCY, DescribeImages carries the usage fields) pairs, BENCH_GUARD_SCENARIOS
    `C:described|bare,...`."""
    spec = os.environ.get("BENCH_GUARD_SCENARIOS", "4:described,4:bare,16:described")
    out = []
    for item in filter(None, (x.strip() for x in spec.split(","))):
        c, _, kind = item.partition(":")
        out.append((int(c), kind != "bare"))
    return out


def measure_guard(reaper, emu_argv, moto_server, elog, flog, run_id, repeat, progress):
    """Rows of the guard's cost: 1,000 ARNs with one AMI each, guard free vs guard on."""
    n, L = 1000, 0.020
    mlog = os.path.join(os.path.dirname(elog), "moto.log")
    moto = MotoServer(moto_server, mlog)
    rows = []

    def new_emulator(*flags):
        return FrontedEmulator(emu_argv + ["--port", "0", "--latency-ms", "20", "--ec2-upstream", moto.url,
                                           "--ec2-latency-ms", "20", *flags], elog)

    try:
        # Calibration: moto's own round trip, and the front's at L.
        probe = register_amis(moto, 1, 1)[0]
        moto_rtt = query_round_trip("127.0.0.1:%d" % moto.port, "DescribeImages", {"ImageId.1": probe})
        moto_inst_rtt = query_round_trip("127.0.0.1:%d" % moto.port, "DescribeInstances", {})
        emu = new_emulator()
        try:
            front_rtt = query_round_trip(emu.ec2_address, "DescribeImages", {"ImageId.1": probe})
            front_refs_rtt = query_round_trip(emu.ec2_address, "DescribeImageReferences",
                                              {"ImageId.1": probe, "IncludeAllResourceTypes": "true"})
        finally:
            emu.stop()
        progress("guard: moto round trip %.1f ms (DescribeImages), %.1f ms (DescribeInstances); front at L=20 ms "
                 "%.1f ms (DescribeImages), %.1f ms (DescribeImageReferences)" % (
                     moto_rtt * 1000, moto_inst_rtt * 1000, front_rtt * 1000, front_refs_rtt * 1000))
        rows.append(("moto's own round trip (raw HTTP, sequential, median of 30)",
                     "DescribeImages of one AMI %.1f ms; DescribeInstances %.1f ms. Through the EC2 front at "
                     "L=20 ms: DescribeImages %.1f ms, DescribeImageReferences %.1f ms (the front reads instances "
                     "and launch templates from moto for it)" % (
                         moto_rtt * 1000, moto_inst_rtt * 1000, front_rtt * 1000, front_refs_rtt * 1000),
                     "(calibration)", "—"))
        for c, described in guard_scenarios():
            runs = {True: [], False: []}
            for i in range(repeat):
                for free in (True, False):
                    tag = "g%d%s%s-%s-%d" % (c, "d" if described else "b", "f" if free else "o", run_id, i)
                    r = guard_run(reaper, new_emulator, moto, n, c, free, described, tag, flog)
                    runs[free].append(r)
                    progress("guard C=%d %s, %s run %d: %.3f s (%s; calls/ARN %s; most in flight: Image Builder %s, "
                             "EC2 %s)" % (c, "described" if described else "bare", "free" if free else "on", i + 1,
                                          r["wall"], summary_counts(r["report"]), fmt_calls(calls_per_arn(r, n)),
                                          r["stats"].get("maxConcurrency"), r["ec2_stats"].get("maxConcurrency")))
            rows.append(guard_row(n, c, L, described, runs, moto_rtt))
    finally:
        moto.stop()
    return rows


def guard_row(n, c, L, described, runs, moto_rtt):
    """One scenario: guard free vs on, the difference against one round trip per wave."""
    waves = math.ceil(n / c)
    bound = waves * L
    med = {free: statistics.median(r["wall"] for r in runs[free]) for free in (True, False)}
    extra = med[False] - med[True]
    on = runs[False][-1]
    per = calls_per_arn(on, n)
    guard_calls = sum(v for op, v in per.items() if op in GUARD_OPERATIONS)
    busy = moto_calls(on) * moto_rtt
    spread = lambda rs: "" if len(rs) < 2 else " (%s–%s)" % (  # noqa: E731
        fmt_s(min(r["wall"] for r in rs)), fmt_s(max(r["wall"] for r in rs)))
    what = ("DescribeImages carries protection and last launch" if described
            else "DescribeImages leaves protection and last launch out (never launched)")
    # moto serves one request at a time (GIL): when its work alone fills the wall time, the
    # run measures moto, and the injected latency hides behind its queue.
    moto_bound = busy >= 0.8 * med[False]
    return ("Guard cost: N=%d ARNs × 1 AMI, C=%d (MAX_CONCURRENCY), L=20 ms on every call; %s" % (n, c, what),
            "guard free (%s at 0 ms) %s%s, guard on %s%s, median of %d → **%+.3f s = %.1f ms per wave** over "
            "ceil(N/C) = %d waves; one round trip per wave = ceil(N/C)·L = %s; ratio %.2f×. Guard calls per ARN "
            "%.2f; all calls per ARN (on): %s; most in flight: Image Builder %s, EC2 %s; moto's calls × its round "
            "trip ≈ %s of the %s%s" % (
                " and ".join(GUARD_OPERATIONS), fmt_s(med[True]), spread(runs[True]), fmt_s(med[False]),
                spread(runs[False]), len(runs[True]), extra, extra / waves * 1000, waves, fmt_s(bound),
                extra / bound, guard_calls, fmt_calls(per), on["stats"].get("maxConcurrency"),
                on["ec2_stats"].get("maxConcurrency"), fmt_s(busy), fmt_s(med[False]),
                " — moto-bound: this pair measures moto, not the latency" if moto_bound else ""),
            "≤ one round trip per wave (+10 %)", "—" if moto_bound else verdict(extra <= bound * 1.10))


# --- measurements --------------------------------------------------------------------------


def measure_init(fns: list[Function], endpoint: str, starts: int, log_path: str):
    """Cold starts of each function, interleaved (so that load from other work on the machine
    hits every variant alike). Per function: lists of init wall s, init CPU s, idle VmHWM KiB."""
    out = {fn.name: ([], [], []) for fn in fns}
    for _ in range(starts):
        for fn in fns:
            with Run(fn, endpoint, {}, log_path) as run:
                wall = run.api.wait_ready()
                cpu = run.api.cpu_seconds()
                hwm = run.api.status().get("VmHWM", 0)
            out[fn.name][0].append(wall)
            out[fn.name][1].append(cpu)
            out[fn.name][2].append(hwm)
    return out


def cert_variants(workdir: str) -> list[tuple[str, dict[str, str]]]:
    """Environment variants that change what rustls-native-certs reads at init."""
    out = []
    bundle = next((p for p in ("/etc/ssl/certs/ca-certificates.crt", "/etc/pki/tls/certs/ca-bundle.crt")
                   if os.path.exists(p)), None)
    if bundle:
        out.append(("SSL_CERT_FILE=%s (system bundle only, no directory scan)" % bundle,
                    {"SSL_CERT_FILE": bundle, "SSL_CERT_DIR": os.path.join(workdir, "empty-cert-dir")}))
        os.makedirs(os.path.join(workdir, "empty-cert-dir"), exist_ok=True)
    names = ["Amazon_Root_CA_%d.pem" % i for i in range(1, 5)] + [
        "Starfield_Services_Root_Certificate_Authority_-_G2.pem"]
    pems = [os.path.join("/etc/ssl/certs", n) for n in names]
    if all(os.path.exists(p) for p in pems):
        path = os.path.join(workdir, "amazon-roots.pem")
        with open(path, "w") as f:
            for p in pems:
                f.write(open(p).read())
        out.append(("SSL_CERT_FILE=5 Amazon Trust Services roots (what embedding them would cost)",
                    {"SSL_CERT_FILE": path, "SSL_CERT_DIR": os.path.join(workdir, "empty-cert-dir")}))
    return out


def file_size(path: str):
    try:
        return os.path.getsize(path)
    except OSError:
        return None


def is_stripped(path: str) -> str:
    if not shutil.which("file"):
        return ""
    out = subprocess.run(["file", "-b", path], capture_output=True, text=True).stdout
    return "stripped" if ", stripped" in out else ("NOT stripped" if "not stripped" in out else "")


def machine_description() -> str:
    cpu = "unknown CPU"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    mem = ""
    try:
        with open("/proc/meminfo") as f:
            kib = int(f.readline().split()[1])
            mem = "%.1f GiB RAM" % (kib / 1024 / 1024)
    except OSError:
        pass
    load = "load average %s" % " ".join("%.2f" % x for x in os.getloadavg())
    return "%s; nproc %d; %s; %s; %s %s" % (platform.machine(), os.cpu_count() or 0, cpu, mem,
                                           platform.system(), platform.release()) + "; " + load


# --- table ---------------------------------------------------------------------------------


def fmt_s(x):
    return "—" if x is None else ("%.3f s" % x if x >= 1 else "%.1f ms" % (x * 1000))


def fmt_mb(kib):
    return "—" if not kib else "%.1f MB" % (kib / 1024)


def verdict(ok):
    return "—" if ok is None else ("pass" if ok else "MISS")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--reaper", required=True)
    ap.add_argument("--emulator", required=True, help="ib-emulator binary (or a command, space separated)")
    ap.add_argument("--python", default=sys.executable)
    ap.add_argument("--arm64-artifact", default="")
    ap.add_argument("--floor", default="", help="bench/floor.rs built (init calibration)")
    ap.add_argument("--repeat", type=int, default=int(os.environ.get("BENCH_REPEAT", "5")))
    ap.add_argument("--init-starts", type=int, default=int(os.environ.get("BENCH_INIT_STARTS", "15")))
    ap.add_argument("--boto3-repeat", type=int, default=int(os.environ.get("BENCH_BOTO3_REPEAT", "1")))
    ap.add_argument("--workdir", default=os.path.join(ROOT, ".bench"))
    ap.add_argument("--doc", default="")
    ap.add_argument("--moto-server", default=os.path.join(ROOT, ".venv", "bin", "moto_server"),
                    help="moto_server (the guard rows run the EC2 front in front of it)")
    ap.add_argument("--only", default=os.environ.get("BENCH_ONLY", ""),
                    help="comma list of: throughput,boto3,init,throttle,rate,guard,plan,size (default all)")
    args = ap.parse_args()
    only = set(filter(None, args.only.split(",")))
    want = lambda k: not only or k in only  # noqa: E731

    os.makedirs(args.workdir, exist_ok=True)
    home = os.path.join(args.workdir, "home")
    os.makedirs(home, exist_ok=True)
    flog = os.path.join(args.workdir, "function.log")
    elog = os.path.join(args.workdir, "emulator.log")
    for p in (flog, elog):
        open(p, "w").close()

    emu_argv = args.emulator.split()
    L = 0.020
    reaper = Function("imagebuilder-reaper", [args.reaper], {**base_env(home), **env_list(os.environ.get("BENCH_REAPER_ENV", ""))})
    boto3_fn = Function("boto3 loop", [args.python, os.path.join(ROOT, "bench", "python_runtime.py"),
                                       "boto3_function.handler"], base_env(home))
    run_id = datetime.datetime.now().strftime("%H%M%S")
    rows, notes = [], []
    R = {}

    def emulator(*flags):
        return Emulator(emu_argv + ["--port", "0", "--latency-ms", "20", "--implicit-images", *flags], elog)

    def progress(msg):
        print("bench: " + msg, file=sys.stderr, flush=True)

    # 1. throughput vs the physical limit
    if want("throughput") or want("boto3"):
        emu = emulator()
        try:
            # Calibration: what one call costs at the emulator itself (unsigned → 403 after the
            # same injected latency), so the ratio to the limit can be read against it.
            rtt = emulator_round_trip(emu)
            if rtt:
                R["rtt"] = rtt
                rows.append(("Emulator round trip at L=20 ms (raw HTTP, sequential, median of 30)",
                             "%.2f ms → limit with this round trip: N=1000/C=16 %s, N=10000/C=64 %s" % (
                                 rtt * 1000, fmt_s(math.ceil(1000 / 16) * rtt), fmt_s(math.ceil(10000 / 64) * rtt)),
                             "(calibration)", "—"))
            for n, c in ((1000, 16), (10000, 64)):
                if not want("throughput"):
                    break
                limit = math.ceil(n / c) * L
                walls, runs = [], []
                reps = args.repeat if n <= 1000 else max(1, min(args.repeat, 3))
                for i in range(reps):
                    r = invoke_once(reaper, emu, n, {"MAX_CONCURRENCY": str(c), "MAX_ATTEMPTS": "5"},
                                    "t%d-%s-%d" % (n, run_id, i), flog, poll_stats=(n == 10000))
                    walls.append(r["wall"])
                    runs.append(r)
                    progress("N=%d C=%d run %d: %.3f s (%s; emulator max concurrency %s)" % (
                        n, c, i + 1, r["wall"], summary_counts(r["report"]), r["stats"].get("maxConcurrency")))
                med = statistics.median(walls)
                R["wall_%d" % n] = med
                R["runs_%d" % n] = runs
                cpu = statistics.median(r["cpu"] for r in runs)
                rows.append(("Throughput N=%d, C=%d, L=20 ms" % (n, c),
                             "%s median of %d (min %s, max %s); limit ceil(N/C)·L = %s; ratio %.3f×; "
                             "function CPU time %s (%.0f µs per ARN)" % (
                                 fmt_s(med), reps, fmt_s(min(walls)), fmt_s(max(walls)), fmt_s(limit), med / limit,
                                 fmt_s(cpu), cpu / n * 1e6)
                             + ("; %.3f× the limit at the emulator's measured round trip" % (
                                 med / (math.ceil(n / c) * R["rtt"])) if "rtt" in R else ""),
                             "≤ 1.15× limit" if n == 1000 else "(no target; ≤ 1.15× for reference)",
                             verdict(med / limit <= 1.15)))
            if want("boto3"):
                walls = []
                for i in range(args.boto3_repeat):
                    r = invoke_once(boto3_fn, emu, 1000, {}, "b-%s-%d" % (run_id, i), flog)
                    walls.append(r["wall"])
                    progress("boto3 loop N=1000 run %d: %.3f s (%s)" % (i + 1, r["wall"], summary_counts(r["report"])))
                R["boto3_wall"] = statistics.median(walls)
                R["boto3_hwm_kib"] = r["hwm_kib"]
                line = "%s (median of %d); per call %.1f ms incl. the 20 ms latency" % (
                    fmt_s(R["boto3_wall"]), len(walls), R["boto3_wall"] / 1000 * 1000)
                ok = None
                if "wall_1000" in R:
                    speed = R["boto3_wall"] / R["wall_1000"]
                    line += "; reaper is %.1f× faster" % speed
                    ok = speed >= 20
                    # The most any C=16 function can gain over a sequential loop at this latency:
                    ceiling = R["boto3_wall"] / (math.ceil(1000 / 16) * L)
                    notes.append("Speed-up ceiling at L=20 ms, C=16: boto3 wall / physical limit = %.1f× — "
                                 "≥ 20× needs the boto3 loop to spend ≥ 5.2 ms per call on top of the 20 ms latency "
                                 "(it spends %.1f ms here)." % (ceiling, R["boto3_wall"] - 20.0))
                rows.append(("boto3 loop, N=1000 (same harness, emulator)", line, "reaper ≥ 20× faster", verdict(ok)))
        finally:
            emu.stop()

    # Lambda gives a function CPU in proportion to its memory (1,769 MB = one vCPU), so the
    # CPU time measured here bounds the wall time there, whatever the latency.
    for n in (1000, 10000):
        if "runs_%d" % n in R:
            cpu = statistics.median(r["cpu"] for r in R["runs_%d" % n])
            est = "; ".join("%d MB: ≥ %s" % (mb, fmt_s(cpu / (mb / 1769.0))) for mb in (128, 256, 1769))
            rows.append(("Lambda CPU-share floor for N=%d (CPU time ÷ vCPU share)" % n, est,
                         "(estimate: 1,769 MB = 1 vCPU; template.yaml uses 256 MB)", "—"))

    # Throughput under Lambda's CPU share (cgroup quota), where CPU per ARN decides.
    mbs = [int(x) for x in os.environ.get("BENCH_LAMBDA_MEMORY_MB", "256,1769").split(",") if x.strip()]
    if want("throughput") and mbs:
        if not CpuShare.available():
            rows.append(("Throughput under a Lambda CPU share", "skipped: no writable cgroup-v1 cpu controller",
                         "", "—"))
        else:
            emu = emulator()
            try:
                for mb in mbs:
                    share = CpuShare(mb)
                    try:
                        for n, c in ((1000, 16), (10000, 64)):
                            limit = math.ceil(n / c) * L
                            walls = []
                            for i in range(max(1, min(args.repeat, 2))):
                                r = invoke_once(reaper, emu, n, {"MAX_CONCURRENCY": str(c), "MAX_ATTEMPTS": "5"},
                                                "q%d-%d-%s-%d" % (mb, n, run_id, i), flog, share=share)
                                walls.append(r["wall"])
                                progress("CPU share %d MB, N=%d: %.3f s (%s)" % (mb, n, r["wall"],
                                                                                summary_counts(r["report"])))
                            med = statistics.median(walls)
                            rows.append(("Throughput N=%d, C=%d, CPU quota of a %d MB Lambda (%.2f vCPU)" % (
                                n, c, mb, mb / 1769),
                                "%s median of %d; %.2f× the latency limit" % (fmt_s(med), len(walls), med / limit),
                                "(production-like; no target)", "—"))
                    finally:
                        share.close()
            finally:
                emu.stop()

    # 4. peak memory
    if "runs_10000" in R:
        hwm = max(r["hwm_kib"] for r in R["runs_10000"])
        r0 = R["runs_10000"][0]
        rows.append(("Peak RSS (VmHWM), N=10,000 invocation", fmt_mb(hwm) + " (max over runs)", "≤ 30 MB",
                     verdict(hwm <= 30 * 1024)))
        tails = [r.get("tail_from_last_call") for r in R["runs_10000"] if r.get("tail_from_last_call") is not None]
        tail = statistics.median(tails) if tails else None
        xfer = statistics.median(r["body_transfer"] for r in R["runs_10000"])
        rows.append(("Report for N=10,000: size; last DeleteImage answered → response received",
                     "%.2f MB; %s (median; building + serializing + posting the report, of which %s is the "
                     "harness receiving the body)" % (r0["report_bytes"] / MB, fmt_s(tail), fmt_s(xfer)),
                     "milliseconds (≤ 100 ms)", verdict(None if tail is None else tail <= 0.1)))

    # 3. init time (+ idle memory)
    if want("init"):
        # Where the init time goes: the SDK's HTTP client loads the native root certificates
        # while the config is built (validate_base_client_config). rustls-native-certs reads
        # SSL_CERT_FILE / SSL_CERT_DIR when set, so the cost of the system store can be measured
        # from outside: the bundle alone (no per-file directory scan), then just the Amazon roots.
        variants = []
        if os.environ.get("BENCH_INIT_VARIANTS", "1") != "0":
            variants = [Function("reaper, " + label, reaper.argv, {**reaper.env, **extra})
                        for label, extra in cert_variants(args.workdir)]
        emu = emulator()
        try:
            floor = [Function("floor", [args.floor], reaper.env)] if args.floor else []
            res = measure_init([reaper] + variants + floor, emu.endpoint, args.init_starts, flog)
            py = measure_init([boto3_fn], emu.endpoint, max(10, args.init_starts // 2), flog)[boto3_fn.name]
        finally:
            emu.stop()
        inits, cpus, idles = res[reaper.name]
        progress("reaper init: " + ", ".join("%.1f" % (x * 1000) for x in inits) + " ms")
        progress("boto3 init: " + ", ".join("%.0f" % (x * 1000) for x in py[0]) + " ms")
        mi, mp = statistics.median(inits), statistics.median(py[0])
        R["init"], R["py_init"] = mi, mp
        above = ""
        if floor:
            fw, fc, _ = res["floor"]
            above = "; %.1f ms wall / %.1f ms CPU above the spawn floor" % (
                (mi - statistics.median(fw)) * 1000, (statistics.median(cpus) - statistics.median(fc)) * 1000)
        rows.append(("Init: process start → first GET /next, reaper",
                     "%s median of %d (min %s, max %s); CPU time %s%s" % (
                         fmt_s(mi), len(inits), fmt_s(min(inits)), fmt_s(max(inits)), fmt_s(statistics.median(cpus)),
                         above),
                     "≤ 10 ms", verdict(mi <= 0.010)))
        rows.append(("Init: same, boto3 (import boto3 + client at module level)",
                     "%s median of %d (min %s, max %s); CPU time %s; reaper is %.0f× faster (%.0f× in CPU time)" % (
                         fmt_s(mp), len(py[0]), fmt_s(min(py[0])), fmt_s(max(py[0])),
                         fmt_s(statistics.median(py[1])), mp / mi, statistics.median(py[1]) / statistics.median(cpus)),
                     "reaper ≥ 30× faster", verdict(mp / mi >= 30)))
        if floor:
            v, c, _ = res["floor"]
            rows.insert(len(rows) - 1, ("Init floor: process spawn + one GET /next (bench/floor.rs, std only)",
                                        "%s median; CPU time %s — the part of every init figure that is the harness and exec" % (
                                            fmt_s(statistics.median(v)), fmt_s(statistics.median(c))),
                                        "(calibration)", "—"))
        for fn in variants:
            v, c, _ = res[fn.name]
            progress("%s init: %s ms" % (fn.name, ", ".join("%.1f" % (x * 1000) for x in v)))
            rows.append(("Init, " + fn.name,
                         "%s median (%+.1f ms vs default); CPU time %s (%+.1f ms)" % (
                             fmt_s(statistics.median(v)), (statistics.median(v) - mi) * 1000,
                             fmt_s(statistics.median(c)), (statistics.median(c) - statistics.median(cpus)) * 1000),
                         "(diagnostic)", "—"))
        rows.append(("Idle RSS (VmHWM at first GET /next)",
                     "reaper %s; boto3 %s" % (fmt_mb(statistics.median(idles)), fmt_mb(statistics.median(py[2]))),
                     "", "—"))
        if "boto3_hwm_kib" in R:
            rows.append(("Peak RSS, boto3 loop after N=1000", fmt_mb(R["boto3_hwm_kib"]), "", "—"))

    # 6. throttled throughput
    if want("throttle"):
        emu = emulator("--throttle-rate", "0.3")
        try:
            n, c = 1000, 16
            walls, per_arn, rep_att, states = [], [], [], []
            for i in range(max(1, min(args.repeat, 3))):
                r = invoke_once(reaper, emu, n, {"MAX_CONCURRENCY": str(c), "MAX_ATTEMPTS": "10"},
                                "th-%s-%d" % (run_id, i), flog)
                walls.append(r["wall"])
                per_arn.append(r["stats"].get("calls", 0) / n)
                att = attempts_from_report(r["report"])
                if att:
                    rep_att.append((statistics.mean(att), max(att), len(att)))
                states.append(summary_counts(r["report"]))
                progress("throttled run %d: %.3f s, %.2f calls/ARN (%s; by status %s)" % (
                    i + 1, r["wall"], per_arn[-1], states[-1], r["stats"].get("byStatus")))
        finally:
            emu.stop()
        med = statistics.median(walls)
        limit = math.ceil(n / c) * L
        exp_att = 1 / (1 - 0.3)
        line = "%s median of %d (%.2f× the unthrottled limit); emulator calls/ARN %.2f (expected 1/(1−0.3) = %.2f)" % (
            fmt_s(med), len(walls), med / limit, statistics.median(per_arn), exp_att)
        if rep_att:
            line += "; report attempts mean %.2f, max %d over %d ARNs" % rep_att[-1]
        line += "; outcome: " + states[-1]
        rows.append(("Throttled: N=1000, C=16, 30% 429s, MAX_ATTEMPTS=10", line, "(no target)", "—"))

    # 7. a service rate limit: the adaptive limiter against the emulator's token bucket
    rate_rows = []
    if want("rate"):
        rate_rows = measure_rate_limits(reaper, emulator, flog, run_id, progress)

    # 8. a retention plan's listing (its own section of docs/performance.md)
    plan_rows, plan_notes = [], []
    if want("plan"):
        plan_rows, plan_notes = measure_plan(reaper, args.python, emu_argv, home,
                                             int(os.environ.get("BENCH_PLAN_REPEAT", "3")), flog, elog, progress)

    # 9. the in-use guard's cost: the same ARNs with AMIs, the guard's calls free vs at L
    guard_rows = []
    if want("guard"):
        guard_rows = measure_guard(reaper, emu_argv, args.moto_server, elog, flog, run_id,
                                   int(os.environ.get("BENCH_GUARD_REPEAT", "2")), progress)

    # 5. binary size
    if want("size"):
        size = file_size(args.reaper)
        rows.append(("Binary: " + os.path.relpath(args.reaper, ROOT),
                     "%s (%s bytes) %s" % (fmt_mb(size / 1024) if size else "—", size, is_stripped(args.reaper)),
                     "≤ 10 MB stripped", verdict(None if size is None else size <= 10 * MB)))
        if args.arm64_artifact:
            size = file_size(args.arm64_artifact)
            rows.append(("Binary: cargo lambda build --release --arm64 (bootstrap)",
                         "%s (%s bytes) %s" % (fmt_mb(size / 1024) if size else "missing", size,
                                               is_stripped(args.arm64_artifact) if size else ""),
                         "≤ 10 MB stripped", verdict(None if size is None else size <= 10 * MB)))
        else:
            rows.append(("Binary: cargo lambda build --release --arm64 (bootstrap)", "skipped (BENCH_SKIP_ARM64=1)",
                         "≤ 10 MB stripped", "—"))

    if rows:
        table = render(rows)
        print(table)
        for n in notes:
            print("note: " + n)
        if args.doc and not only:
            write_doc(args.doc, table, notes)
        elif args.doc:
            print("bench: BENCH_ONLY run, main results of %s left alone" % os.path.relpath(args.doc, ROOT),
                  file=sys.stderr)
    if rate_rows:
        table = render(rate_rows)
        print(table)
        # Their own section, so a BENCH_ONLY=rate run can refresh them alone.
        if args.doc:
            write_doc(args.doc, table, [], RATE_BEGIN, RATE_END)
    if plan_rows:
        table = render(plan_rows)
        print(table)
        for n in plan_notes:
            print("note: " + n)
        # Their own section, so a BENCH_ONLY=plan run can refresh them alone.
        if args.doc:
            write_doc(args.doc, table, plan_notes, PLAN_BEGIN, PLAN_END)
    if guard_rows:
        table = render(guard_rows)
        print(table)
        # Their own section too, so a BENCH_ONLY=guard run can refresh them alone.
        if args.doc:
            write_doc(args.doc, table, [], GUARD_BEGIN, GUARD_END)


def render(rows) -> str:
    head = ("measure", "result", "target", "")
    lines = ["| %s |" % " | ".join(head), "|---|---|---|---|"]
    for r in rows:
        lines.append("| %s |" % " | ".join(r))
    return "\n".join(lines)


BEGIN, END = "<!-- BENCH:BEGIN (written by scripts/bench) -->", "<!-- BENCH:END -->"
RATE_BEGIN, RATE_END = "<!-- BENCH-RATE:BEGIN (written by scripts/bench) -->", "<!-- BENCH-RATE:END -->"
PLAN_BEGIN, PLAN_END = "<!-- BENCH-PLAN:BEGIN (written by scripts/bench) -->", "<!-- BENCH-PLAN:END -->"
GUARD_BEGIN, GUARD_END = "<!-- BENCH-GUARD:BEGIN (written by scripts/bench) -->", "<!-- BENCH-GUARD:END -->"


def write_doc(path: str, table: str, notes: list[str], begin: str = BEGIN, end: str = END):
    when = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    try:
        rev = subprocess.run(["git", "-C", ROOT, "rev-parse", "--short", "HEAD"], capture_output=True,
                             text=True).stdout.strip()
    except OSError:
        rev = "?"
    block = "\n".join([begin, "", "Last run: %s, commit %s." % (when, rev), "",
                       "Machine: %s." % machine_description(), "", table, ""]
                      + ["- " + n for n in notes] + ["", end])
    text = open(path).read() if os.path.exists(path) else ""
    if begin in text and end in text:
        text = text[:text.index(begin)] + block + text[text.index(end) + len(end):]
    else:
        text = text + ("\n" if text else "") + block + "\n"
    with open(path, "w") as f:
        f.write(text)
    print("bench: results written to %s" % os.path.relpath(path, ROOT), file=sys.stderr)


if __name__ == "__main__":
    atexit.register(kill_children)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    signal.signal(signal.SIGINT, lambda *_: sys.exit(130))
    main()
