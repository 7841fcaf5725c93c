"""Imported once by the fork server of :mod:`support.forked`: what every forked run would
import first. pandera's first validation imports hypothesis when it is installed (only for
the suite); the command line keeps it out (``run_and_exit``), and so does this."""

import importlib
import sys

from support.forked import HEAVY

sys.modules.setdefault("hypothesis", None)
for name in HEAVY:
    importlib.import_module(name)
