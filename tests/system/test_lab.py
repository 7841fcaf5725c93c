"""The notebooks in JupyterLab (issue 35): ``minilake lab`` (what ``make lab`` runs) serves the
root's notebooks on 127.0.0.1 with the lab extra, and says so in one line without it."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import urllib.request

from conftest import REPO
from support.commands import start
from support.seaweed import free_port


def test_minilake_lab_serves_the_workbook_on_127_0_0_1(tmp_path):
    port = free_port()
    env = {name: str(tmp_path / name) for name in
           ("JUPYTER_CONFIG_DIR", "JUPYTER_DATA_DIR", "JUPYTER_RUNTIME_DIR")}
    root = tmp_path / "root"            # a copy: the checkout is never served, nor written
    root.mkdir()
    for name in ("workbook.ipynb", "reload.ipynb"):
        shutil.copy(REPO / name, root / name)
    process = start("lab", "--root", str(root), "--port", str(port), "--no-browser",
                    env={**env, "HOME": str(tmp_path)}, fresh=True)   # stderr read as it runs
    try:
        deadline, said = time.monotonic() + 180, ""
        os.set_blocking(process.stderr.fileno(), False)
        while not (found := re.search(r"http://127\.0\.0\.1:\d+/lab\?token=(\w+)", said)):
            assert process.poll() is None, said
            assert time.monotonic() < deadline, f"JupyterLab did not come up in 180 s: {said}"
            try:
                said += os.read(process.stderr.fileno(), 1 << 16).decode("utf-8", "replace")
            except BlockingIOError:
                time.sleep(0.2)
        url = f"http://127.0.0.1:{port}/api/contents/workbook.ipynb?token={found.group(1)}"
        with urllib.request.urlopen(url, timeout=60) as answer:
            notebook = json.loads(answer.read())
        assert notebook["type"] == "notebook" and notebook["name"] == "workbook.ipynb"
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=60)


def test_without_the_extra_lab_is_one_line(tmp_path):
    code = ("import sys; sys.modules['jupyterlab'] = None; from unittest import mock\n"
            "import minilake.apps.notebooks as n; from minilake.apps.cli import main\n"
            "with mock.patch('shutil.which', return_value=None), "
            "mock.patch('pathlib.Path.exists', return_value=False):\n"
            f"    sys.exit(main(['lab', '--root', {str(tmp_path)!r}]))")
    (tmp_path / "landing_zone").mkdir()
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 2 and "requirements-lab.txt" in done.stderr, done.stderr
    assert len(done.stderr.strip().splitlines()) == 1
