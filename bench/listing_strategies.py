"""Which listing makes a retention plan faster? Both strategies against the Image Builder
emulator (its own process, `--latency-ms 20`) seeded with a generated build history:

  account  ListImageBuildVersions without imageVersionArn: every build version of the region,
           one nextToken chain (serial by nature);
  version  ListImages (owner=Self, includeDeprecated) pages, serial; each page's image versions
           then get ListImageBuildVersions(imageVersionArn), C at a time, while the next
           ListImages page is fetched.

boto3 clients (urllib3 sets TCP_NODELAY), one per thread, threads = C (the function's
MAX_CONCURRENCY). Prints round trips, wall time and the latency floor of each strategy.
Figures only; nothing asserts on them.

    .venv/bin/python bench/listing_strategies.py --emulator target/release/ib-emulator \
        [--names 500 --versions 4 --builds 5 --concurrency 16 --latency-ms 20]
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import math
import os
import re
import subprocess
import sys
import threading
import time
import urllib.request

import boto3
import botocore.config

REGION = "us-east-1"


def start_emulator(binary: str, latency_ms: int) -> tuple[subprocess.Popen, str]:
    proc = subprocess.Popen([binary, "--port", "0", "--latency-ms", str(latency_ms)],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL)
    line = proc.stdout.readline().decode(errors="replace")
    m = re.search(r"listening on (127\.0\.0\.1:\d+)", line)
    if not m:
        proc.kill()
        raise RuntimeError("emulator did not say where it listens: %r" % line)
    return proc, "http://" + m.group(1)


def control(endpoint: str, method: str, path: str, body: dict | None = None) -> dict:
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(endpoint + path, data=data, method=method,
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=60) as resp:
        return json.loads(resp.read() or b"null")


def history(names: int, versions: int, builds: int) -> dict:
    return {"account": "123456789012", "region": REGION,
            "names": ["bench-image-%03d" % i for i in range(names)],
            "versionsPerName": versions, "buildsPerVersion": builds,
            "start": "2025-06-01T00:00:00.000Z", "stepSeconds": 3600}


class Clients:
    """One boto3 client per thread (clients are thread-safe, but one each keeps the
    connection pools apart, as C independent callers would)."""

    def __init__(self, endpoint: str):
        self.endpoint, self.local = endpoint, threading.local()
        self.session = boto3.session.Session(aws_access_key_id="test", aws_secret_access_key="test",
                                             region_name=REGION)
        self.lock = threading.Lock()

    def get(self):
        c = getattr(self.local, "client", None)
        if c is None:
            with self.lock:  # boto3 session client creation is not thread-safe
                c = self.session.client("imagebuilder", endpoint_url=self.endpoint, config=botocore.config.Config(
                    retries={"mode": "standard", "max_attempts": 5}, max_pool_connections=4))
            self.local.client = c
        return c


def account_wide(clients: Clients) -> tuple[set[str], int]:
    arns, calls, token = set(), 0, None
    client = clients.get()
    while True:
        kw = {"maxResults": 25}
        if token:
            kw["nextToken"] = token
        page = client.list_image_build_versions(**kw)
        calls += 1
        arns.update(s["arn"] for s in page.get("imageSummaryList", []))
        token = page.get("nextToken")
        if not token:
            return arns, calls


def builds_of(clients: Clients, version_arn: str) -> tuple[list[str], int]:
    arns, calls, token = [], 0, None
    client = clients.get()
    while True:
        kw = {"imageVersionArn": version_arn, "maxResults": 25}
        if token:
            kw["nextToken"] = token
        page = client.list_image_build_versions(**kw)
        calls += 1
        arns.extend(s["arn"] for s in page.get("imageSummaryList", []))
        token = page.get("nextToken")
        if not token:
            return arns, calls


def per_version(clients: Clients, pool: concurrent.futures.ThreadPoolExecutor) -> tuple[set[str], int, int]:
    futures, pages, token = [], 0, None
    client = clients.get()
    while True:
        kw = {"owner": "Self", "includeDeprecated": True, "maxResults": 25}
        if token:
            kw["nextToken"] = token
        page = client.list_images(**kw)
        pages += 1
        futures += [pool.submit(builds_of, clients, v["arn"]) for v in page.get("imageVersionList", [])]
        token = page.get("nextToken")
        if not token:
            break
    arns, calls = set(), 0
    for f in futures:
        a, c = f.result()
        arns.update(a)
        calls += c
    return arns, pages, calls


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--emulator", default=os.path.join(os.path.dirname(__file__), "..", "target", "release", "ib-emulator"))
    ap.add_argument("--names", type=int, default=500)
    ap.add_argument("--versions", type=int, default=4)
    ap.add_argument("--builds", type=int, default=5)
    ap.add_argument("--concurrency", type=int, default=16)
    ap.add_argument("--latency-ms", type=int, default=20)
    args = ap.parse_args()
    proc, endpoint = start_emulator(args.emulator, args.latency_ms)
    try:
        seeded = control(endpoint, "POST", "/_emulator/history", history(args.names, args.versions, args.builds))
        L, C = args.latency_ms / 1000, args.concurrency
        print("seeded %s build versions: %d names × %d versions × %d builds; L=%d ms, C=%d" % (
            seeded.get("seeded"), args.names, args.versions, args.builds, args.latency_ms, C))
        clients = Clients(endpoint)
        with concurrent.futures.ThreadPoolExecutor(C) as pool:
            # Warm one client per thread, so neither strategy pays for client creation.
            list(pool.map(lambda _: clients.get(), range(C * 4)))
            clients.get()
            control(endpoint, "POST", "/_emulator/reset-stats", {})
            t = time.perf_counter()
            arns_a, calls_a = account_wide(clients)
            wall_a = time.perf_counter() - t
            stats_a = control(endpoint, "GET", "/_emulator/stats")
            control(endpoint, "POST", "/_emulator/reset-stats", {})
            t = time.perf_counter()
            arns_b, pages_b, calls_b = per_version(clients, pool)
            wall_b = time.perf_counter() - t
            stats_b = control(endpoint, "GET", "/_emulator/stats")
        floor_a = calls_a * L
        floor_b = max(pages_b, math.ceil(calls_b / C)) * L
        print("account  ListImageBuildVersions (no imageVersionArn), serial: %d round trips, %d builds, "
              "wall %.3f s, floor %d × L = %.3f s (ratio %.2f×); emulator max concurrency %s" % (
                  calls_a, len(arns_a), wall_a, calls_a, floor_a, wall_a / floor_a, stats_a.get("maxConcurrency")))
        print("version  ListImages %d pages serial + %d ListImageBuildVersions(imageVersionArn) at C=%d: "
              "%d round trips, %d builds, wall %.3f s, floor max(pages, ceil(calls/C)) × L = %.3f s (ratio %.2f×); "
              "emulator max concurrency %s" % (
                  pages_b, calls_b, C, pages_b + calls_b, len(arns_b), wall_b, floor_b, wall_b / floor_b,
                  stats_b.get("maxConcurrency")))
        if arns_a != arns_b:
            print("WARNING: the strategies listed different builds (%d vs %d)" % (len(arns_a), len(arns_b)))
        print("version / account wall: %.2f" % (wall_b / wall_a))
    finally:
        proc.terminate()
        proc.wait(5)


if __name__ == "__main__":
    sys.exit(main())
