"""Deliver a world's files in a given order, a few per run (a helper for test_history)."""

from __future__ import annotations

import logging
import shutil
import tempfile
from pathlib import Path

import pandas as pd

import minilake


def table_contents(root: Path) -> dict[str, pd.DataFrame]:
    """Each source's table, every version, in a canonical row order."""
    out = {}
    for source in ("customer", "product", "sales"):
        frame = minilake.read_table(source, root=root)
        out[source] = frame.sort_values([frame.columns[0], frame.columns[1], "effective_from"]
                                        if source == "customer" else
                                        [frame.columns[1] if source == "product" else
                                         "sale_id", "effective_from"]).reset_index(drop=True)
    return out


def deliver(files: list[str], batches: list[int]) -> dict[str, pd.DataFrame]:
    """Copy ``files`` into a fresh root's landing zone ``batches[i]`` at a time, running
    minilake after each batch; return the tables."""
    logging.disable(logging.WARNING)
    with tempfile.TemporaryDirectory(prefix="arrivals-") as folder:   # removed, pass or fail
        root = Path(folder)
        (root / "landing_zone").mkdir()
        start = 0
        for size in batches:
            for name in files[start:start + size]:
                shutil.copy(name, root / "landing_zone")
            start += size
            assert minilake.run(root).ok
        return table_contents(root)
