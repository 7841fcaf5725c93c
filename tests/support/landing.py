"""Landing files written by hand for small worlds: a products JSON and a sales text file of a
day, in the sources' own formats (docs/formats.md); and files held back from a run."""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path

import minilake


def products_file(root: Path, day: str, rows: list[tuple]) -> None:
    records = [{"name": n, "product_id": p, "price": price, "description": "",
                "creation_date": "2024-01-01"} for p, n, price in rows]
    (root / "landing_zone").mkdir(exist_ok=True)
    path = root / "landing_zone" / f"products_{day.replace('-', '')}.json"
    path.write_text(json.dumps(records, indent=2))


def sales_file(root: Path, day: str, rows: list[tuple]) -> None:
    lines = [f"{s}~111111111111111~P1~{q}~2.50~{t}~{d}" for s, q, t, d in rows]
    (root / "landing_zone").mkdir(exist_ok=True)
    path = root / "landing_zone" / f"sales_{day.replace('-', '')}.txt"
    path.write_bytes("".join(line + "\r\n" for line in lines).encode())


def run_without(root: Path, pattern: str) -> None:
    """``minilake run`` on ``root`` with the landing files matching ``pattern`` (a glob)
    held back, then those files back in the landing zone: they arrive late at the next run."""
    with tempfile.TemporaryDirectory(prefix="held-") as folder:     # removed, pass or fail
        held = [shutil.move(path, Path(folder) / path.name)
                for path in sorted((root / "landing_zone").glob(pattern))]
        assert held, f"no landing file matches {pattern}"
        assert minilake.run(root).ok
        for path in held:
            shutil.move(path, root / "landing_zone" / Path(path).name)
