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

import io
import os
import re
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest
from conftest import REPO

pytestmark = [pytest.mark.xdist_group("readme"), pytest.mark.long]
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
    """The files of git's HEAD, as committed: not the working tree, where ``make run`` has
    moved the sample week out of landing_zone/ (a fresh clone, as the README assumes)."""
    tree = subprocess.run(["git", "-C", str(REPO), "archive", "HEAD"], capture_output=True,
                          check=True).stdout
    into.mkdir(parents=True, exist_ok=True)
    with tarfile.open(fileobj=io.BytesIO(tree)) as archive:
        archive.extractall(into, filter="data")
    return into


def environment(home: Path) -> dict[str, str]:
    """A shell after ``source .venv/bin/activate``, with nothing of the test session's."""
    venv = Path(sys.executable).parent
    keep = {k: v for k, v in os.environ.items()
            if not k.startswith(("MINILAKE_", "AWS_", "AIRFLOW", "PYTEST", "COV_"))}
    return {**keep, "PATH": f"{venv}{os.pathsep}{keep.get('PATH', '')}",
            "VIRTUAL_ENV": str(venv.parent), "HOME": str(home), "PYTHONFAULTHANDLER": "1"}


def test_every_sh_and_python_block_of_the_readme_works_as_typed(tmp_path):
    root = clone(tmp_path / "clone")
    code = blocks((root / "README.md").read_text(encoding="utf-8"))
    runnable = [(kind, block) for kind, block in code if kind in ("sh", "python")]
    assert len(runnable) >= 8, "the README's runnable blocks"
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
