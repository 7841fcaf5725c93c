"""The sample world (README.md, the sample world): a model of the shop's three source systems, day
by day, and its
ground truth (``world.py``), and the docs/formats.md API serving it (``sample_api.py``).

This module is light: the generator (numpy, pandas, pyarrow, Faker) loads when it is called,
so that the rest of minilake never pays for it. Every name of ``world.py`` is reachable from
here as before (``from minilake.generate import World``).
"""

from __future__ import annotations

import datetime as dt
import importlib
from pathlib import Path

from minilake.defaults import SAMPLE


def generate(root: str | Path = ".", start: str | dt.date = SAMPLE["start"],
             days: int = SAMPLE["days"], customers: int = SAMPLE["customers"],
             seed: int = SAMPLE["seed"], landing_only: bool = False, steady: bool = False,
             crlf_addresses: float = 0.0, progress: bool = False, drift: bool = False):
    """Write ``days`` days of landing files into ``root/landing_zone`` (and, unless
    ``landing_only``, the broken day and ``final_results/``): see :func:`world.generate`."""
    world = importlib.import_module("minilake.generate.world")
    return world.generate(root, start, days, customers, seed, landing_only, steady,
                          crlf_addresses, progress, drift)


def __getattr__(name: str) -> object:
    if name.startswith("__"):
        raise AttributeError(name)
    return getattr(importlib.import_module("minilake.generate.world"), name)
