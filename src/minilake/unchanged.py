"""Moved to minilake.lake.unchanged; this name stays only until nothing imports it (issue 37)."""

import importlib
import sys

sys.modules[__name__] = importlib.import_module("minilake.lake.unchanged")
