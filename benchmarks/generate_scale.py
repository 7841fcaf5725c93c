"""Time and peak memory of the generator at scale (issue 2: 1,000,000 customers x 7 days).

    .venv/bin/python benchmarks/generate_scale.py [--customers N] [--days N]

Runs ``python -m minilake generate --landing-only`` in a child process into a temporary folder
and prints wall time, peak RSS of that process and the bytes written.
"""

from __future__ import annotations

import argparse
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=1_000_000)
    parser.add_argument("--days", type=int, default=7)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as root:
        began = time.perf_counter()
        subprocess.run([sys.executable, "-m", "minilake", "generate", "--root", root,
                        "--customers", str(args.customers), "--days", str(args.days),
                        "--landing-only"], check=True)
        seconds = time.perf_counter() - began
        peak_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
        size = sum(p.stat().st_size for p in Path(root).rglob("*") if p.is_file())
    print(f"generate: {args.customers:,} customers x {args.days} days: {seconds:.1f} s, "
          f"peak RSS {peak_mb:,.0f} MB, {size / 1e9:.2f} GB written")


if __name__ == "__main__":
    main()
