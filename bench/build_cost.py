"""What a cold build costs: wall time and peak memory of the whole build process tree.

Runs one cargo command in an empty target directory (so nothing is reused) and samples, every
200 ms, the summed resident memory (VmRSS) of cargo and every process under it (rustc, the
linker, build scripts). The peak of that sum is what a machine must have free; the largest
single process is printed too (what `/usr/bin/time -v` would report).

    python3 bench/build_cost.py [--keep] -- cargo build --release -p imagebuilder-reaper

Figures only: nothing here asserts. `scripts/build-cost` runs the usual set.
"""

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time


def children_map() -> dict[int, list[int]]:
    kids: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                # pid (comm) state ppid …; comm may hold spaces or parentheses.
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        kids.setdefault(ppid, []).append(int(entry))
    return kids


def rss_kib(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def tree(root: int) -> list[int]:
    kids = children_map()
    out, todo = [], [root]
    while todo:
        pid = todo.pop()
        out.append(pid)
        todo.extend(kids.get(pid, []))
    return out


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--keep", action="store_true", help="keep the target directory")
    ap.add_argument("--label", default="")
    ap.add_argument("command", nargs="+")
    args = ap.parse_args()

    target = tempfile.mkdtemp(prefix="build-cost-")
    env = dict(os.environ, CARGO_TARGET_DIR=target)
    start = time.monotonic()
    proc = subprocess.Popen(args.command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    peak_sum = peak_one = 0
    while proc.poll() is None:
        sizes = [rss_kib(p) for p in tree(proc.pid)]
        peak_sum = max(peak_sum, sum(sizes))
        peak_one = max([peak_one, *sizes])
        time.sleep(0.2)
    wall = time.monotonic() - start
    stderr = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
    if not args.keep:
        shutil.rmtree(target, ignore_errors=True)
    if proc.returncode != 0:
        sys.stderr.write(stderr[-4000:])
        print(f"build-cost: {' '.join(args.command)} failed ({proc.returncode})")
        return proc.returncode
    label = args.label or " ".join(args.command)
    print(
        f"| {label} | {int(wall // 60)} min {int(wall % 60):02d} s | "
        f"{peak_sum / 1024 / 1024:.2f} GiB | {peak_one / 1024 / 1024:.2f} GiB |"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
