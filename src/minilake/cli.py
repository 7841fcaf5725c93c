"""Moved to minilake.apps.cli; this name stays only until nothing imports it (issue 37)."""

import importlib
import sys

sys.modules[__name__] = importlib.import_module("minilake.apps.cli")
