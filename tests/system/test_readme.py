"""Every command of the README works as typed (issue 35).

The README's ``sh`` and ``python`` blocks are run in their order, on a copy of the clone (the
files git tracks, as they are in the working tree), in a shell whose ``PATH`` starts with the
venv's ``bin/`` (what ``source .venv/bin/activate`` does), after what ``make run`` does beyond
the set-up (the workbook on the sample week). A block fails the test on a non-zero exit status
or a traceback. Blocks marked ``text`` are synopses or need what this machine does not have (a
cloud bucket, a remote cluster, an API on the internet); servers a block starts in the
background are stopped at its end.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import REPO

pytestmark = pytest.mark.xdist_group("readme")
BLOCK = re.compile(r"^```(sh|python|text)?\n(.*?)^```", re.M | re.S)
# a block's background servers go with it, whatever happens
PREAMBLE = "set -eo pipefail\ntrap 'set +e; kill $(jobs -p) 2>/dev/null; wait' EXIT\n"


def blocks(text: str) -> list[tuple[str, str]]:
    """(kind, code) of each fenced block, in order; every block says what it is."""
    found = [(m.group(1), m.group(2)) for m in BLOCK.finditer(text)]
    unmarked = [code.splitlines()[0] for kind, code in found if kind is None]
    assert not unmarked, f"README blocks without sh, python or text: {unmarked}"
    return found


def clone(into: Path) -> Path:
    """The files git tracks, as the working tree has them."""
    names = subprocess.run(["git", "-C", str(REPO), "ls-files", "-z"], capture_output=True,
                           check=True).stdout.decode().split("\0")
    for name in filter(None, names):
        source = REPO / name
        if source.is_file():
            (into / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, into / name)
    return into


def environment(home: Path) -> dict[str, str]:
    """A shell after ``source .venv/bin/activate``, with nothing of the test session's."""
    venv = Path(sys.executable).parent
    keep = {k: v for k, v in os.environ.items()
            if not k.startswith(("MINILAKE_", "AWS_", "AIRFLOW", "PYTEST", "COV_"))}
    return {**keep, "PATH": f"{venv}{os.pathsep}{keep.get('PATH', '')}",
            "VIRTUAL_ENV": str(venv.parent), "HOME": str(home), "PYTHONFAULTHANDLER": "1"}


def test_every_sh_and_python_block_of_the_readme_works_as_typed(tmp_path):
    code = blocks((REPO / "README.md").read_text(encoding="utf-8"))
    runnable = [(kind, block) for kind, block in code if kind in ("sh", "python")]
    assert len(runnable) >= 8, "the README's runnable blocks"
    root = clone(tmp_path / "clone")
    (tmp_path / "home").mkdir()
    env = environment(tmp_path / "home")
    done = subprocess.run(["minilake", "workbook"], cwd=root, env=env, capture_output=True,
                          text=True, timeout=900)
    assert done.returncode == 0, done.stdout + done.stderr           # what make run does
    for n, (kind, block) in enumerate(runnable, 1):
        command = (["bash", "-c", PREAMBLE + block] if kind == "sh"
                   else [sys.executable, "-c", block])
        done = subprocess.run(command, cwd=root, env=env, capture_output=True, text=True,
                              timeout=900)
        said = done.stdout + done.stderr
        assert done.returncode == 0 and "Traceback" not in said, (
            f"README block {n} ({kind}) failed with {done.returncode}:\n{block}\n---\n"
            f"{said[-3000:]}")
