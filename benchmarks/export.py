"""Exporting the sales table (every version) at two scales: rows per second and peak memory.

    .venv/bin/python benchmarks/export.py --scales 10 100 [--format avro] [--days 7]

For each scale it generates a week (``minilake generate --landing-only``), applies it with
``python -m minilake run``, then runs ``python -m minilake export sales`` in a child process and
prints the rows written, the seconds, rows per second and the child's peak RSS. The export is
streamed in record batches, so peak memory should stay flat while the table grows tenfold.
"""

from __future__ import annotations

import argparse
import datetime as dt
import platform
import sys
import tempfile
from pathlib import Path

from run import CRLF_ADDRESSES, SAMPLE_CUSTOMERS, run_child


def one_scale(scale: float, days: int, work: Path, python: str, fmt: str) -> dict:
    root = work / f"x{scale:g}"
    run_child([python, "-m", "minilake", "generate", "--root", str(root), "--landing-only",
               "--days", str(days), "--customers", str(int(SAMPLE_CUSTOMERS * scale)),
               "--crlf-addresses", CRLF_ADDRESSES])
    run_child([python, "-m", "minilake", "run", "--root", str(root)])
    out = work / f"sales_x{scale:g}.{fmt}"
    seconds, peak = run_child([python, "-m", "minilake", "export", "sales", "--format", fmt,
                               "--out", str(out), "--root", str(root)])
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
    from minilake.lake.layout import Layout
    from minilake.load.datafiles import row_counts

    _, rows = row_counts(Layout.of(root).table("sales"))
    return {"scale": scale, "rows": rows, "seconds": seconds, "peak": peak,
            "mb": out.stat().st_size / 2**20}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scales", type=float, nargs="+", default=[10, 100])
    parser.add_argument("--days", type=int, default=7)
    parser.add_argument("--format", default="avro", choices=["avro", "parquet", "csv"])
    args = parser.parse_args()
    print(f"# {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC, {platform.node()}, "
          f"python {platform.python_version()}, export --format {args.format}")
    print(f"{'scale':>6} {'rows':>12} {'seconds':>8} {'rows/s':>10} {'peak MB':>8} "
          f"{'file MB':>8}")
    with tempfile.TemporaryDirectory(prefix="minilake-export-") as work:
        for scale in args.scales:
            r = one_scale(scale, args.days, Path(work), sys.executable, args.format)
            print(f"{r['scale']:>5g}x {r['rows']:>12,} {r['seconds']:>8.1f} "
                  f"{r['rows'] / r['seconds']:>10,.0f} {r['peak']:>8,.0f} {r['mb']:>8,.0f}",
                  flush=True)


if __name__ == "__main__":
    main()
