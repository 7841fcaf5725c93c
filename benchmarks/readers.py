"""The readers alone (raw file -> text columns), this checkout against an earlier commit.

    .venv/bin/python benchmarks/readers.py --scale 100 [--against REV] [--repeat 5]

Generates a world (``minilake generate --landing-only``, a quarter of the addresses with CRLF
inside, as in ``run.py``), then reads every file with each source's reader, in a child process
per code version and alternately (``--repeat`` rounds), and prints per source the median
seconds of each version and their ratio. The first day's sales are also written as a JSON
array (numbers as JSON numbers, as an API delivers them) and read by the JSON reader:
``sales.json``. ``--against`` (default: the commit before issue 12's
reader change) is checked out into a temporary git worktree; only its ``src/`` is imported.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SAMPLE_CUSTOMERS = 5000

CHILD = """
import json, sys, time
from pathlib import Path
from minilake.formats.readers import read_json_array
from minilake.contract.sources import SOURCES
folder, out = Path(sys.argv[1]), {}
for path in sorted(folder.iterdir()):
    for source in SOURCES.values():
        if source.file_date(path.name):
            name, read = source.name, source.read
        elif path.name == "sales.json":
            name, read = "sales.json", lambda p: read_json_array(p, SOURCES["sales"].columns)
        else:
            continue
        began = time.perf_counter()
        rows = read(path).rows_read
        out.setdefault(name, [0.0, 0])
        out[name][0] += time.perf_counter() - began
        out[name][1] += rows
print(json.dumps(out))
"""


def sales_as_json(landing: Path, out: Path) -> None:
    """The first day's sales as an API would deliver them: ids as text, numbers as numbers."""
    import pyarrow.csv as pacsv

    first = sorted(landing.glob("sales_*.txt"))[0]
    names = ["sale_id", "customer_id", "product_id", "quantity", "price_per_unit",
             "total_price", "sale_date"]
    table = pacsv.read_csv(first, read_options=pacsv.ReadOptions(column_names=names),
                           parse_options=pacsv.ParseOptions(delimiter="~"),
                           convert_options=pacsv.ConvertOptions(
                               column_types={"sale_id": "string", "sale_date": "string"}))
    with out.open("w", encoding="utf-8") as handle:
        handle.write("[\n")
        for i, record in enumerate(table.to_pylist()):
            handle.write((",\n" if i else "") + json.dumps(record))
        handle.write("\n]\n")


def read_all(src: Path, landing: Path) -> dict[str, list]:
    done = subprocess.run([sys.executable, "-c", CHILD, str(landing)], check=True,
                          capture_output=True, text=True, env={"PYTHONPATH": str(src)})
    return json.loads(done.stdout)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=float, default=100)
    parser.add_argument("--days", type=int, default=7)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--against", default="6dec220",
                        help="the commit to compare with (default: before issue 12)")
    parser.add_argument("--crlf-addresses", default="0.25")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="minilake-readers-") as work:
        world, old = Path(work) / "world", Path(work) / "old"
        subprocess.run([sys.executable, "-m", "minilake", "generate", "--root", str(world),
                        "--customers", str(int(SAMPLE_CUSTOMERS * args.scale)),
                        "--days", str(args.days), "--landing-only",
                        "--crlf-addresses", args.crlf_addresses], check=True)
        sales_as_json(world / "landing_zone", world / "landing_zone" / "sales.json")
        subprocess.run(["git", "-C", str(REPO), "worktree", "add", "--detach", str(old),
                        args.against], check=True, capture_output=True)
        try:
            versions = {"this checkout": REPO / "src", args.against: old / "src"}
            seconds: dict[str, dict[str, list[float]]] = {v: {} for v in versions}
            rows = {}
            for _ in range(args.repeat):
                for version, src in versions.items():
                    for source, (took, n) in read_all(src, world / "landing_zone").items():
                        seconds[version].setdefault(source, []).append(took)
                        rows[source] = n
        finally:
            subprocess.run(["git", "-C", str(REPO), "worktree", "remove", "--force", str(old)],
                           check=True)
    new, base = seconds["this checkout"], seconds[args.against]
    print(f"readers at {args.scale:g}x, {args.days} days, medians of {args.repeat} "
          f"alternate rounds (seconds summed over the files of each source)")
    print(f"{'source':>10} {'rows':>12} {args.against:>12} {'this':>8} {'ratio':>6}")
    for source in sorted(new):
        a, b = statistics.median(base[source]), statistics.median(new[source])
        print(f"{source:>10} {rows[source]:>12,} {a:>12.2f} {b:>8.2f} {b / a:>6.2f}")
    a = statistics.median(sum(r) for r in zip(*base.values(), strict=True))
    b = statistics.median(sum(r) for r in zip(*new.values(), strict=True))
    print(f"{'all':>10} {sum(rows.values()):>12,} {a:>12.2f} {b:>8.2f} {b / a:>6.2f}")
    for version, per in seconds.items():
        print(f"  {version} runs: " + "; ".join(
            f"{s} {[round(x, 2) for x in v]}" for s, v in sorted(per.items())))


if __name__ == "__main__":
    main()
