"""Headless notebook runs (nbclient) for `make run` and the tests."""

from __future__ import annotations

import contextlib
import os
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path

import nbformat

from minilake.lake import logs, storage
from minilake.lake.layout import Layout
from minilake.lake.lock import hold

VERDICT = re.compile(r"^\S+: (matches|DIFFERS: .*)$")


@dataclass
class Executed:
    notebook: nbformat.NotebookNode
    verdicts: list[str]
    errors: list[str]

    @property
    def ok(self) -> bool:
        return not self.errors and all(v.endswith(": matches") for v in self.verdicts)


def execute(path: str | Path, root: str | Path = ".", out: str | Path | None = None,
            timeout: int = 1800) -> Executed:
    """Run a notebook with ``root`` as its working folder (an S3 root: a scratch folder, the
    root given to the notebook in ``MINILAKE_ROOT``); save it (and an HTML export) into
    ``out`` if given. Errors are collected, not raised, so the saved notebook shows them."""
    from jupyter_client import KernelManager  # on first use: start-up stays light
    from nbclient import NotebookClient

    path = path if hasattr(path, "read_text") else Path(path)
    notebook = nbformat.reads(path.read_text(encoding="utf-8"), as_version=4)
    erased = _erasures(root) if out is not None else 0
    with tempfile.TemporaryDirectory(prefix="minilake-kernel-") as sockets, \
            _environment(MINILAKE_ROOT=str(root)):
        workdir = str(root) if storage.is_local(root) else sockets
        # IPC sockets keep the kernel's channels off the network (and ipykernel quiet).
        kernel = KernelManager(kernel_name="python3", transport="ipc",
                               ip=str(Path(sockets) / "kernel"))
        client = NotebookClient(notebook, km=kernel, timeout=timeout, allow_errors=True,
                                resources={"metadata": {"path": workdir}})
        try:
            client.execute()
        finally:                       # a kernel manager we pass in is ours to shut down
            if kernel.has_kernel:
                kernel.shutdown_kernel(now=False)
    verdicts, errors = [], []
    for cell in notebook.cells:
        for output in cell.get("outputs", []):
            if output.get("output_type") == "error":
                errors.append(f"{output['ename']}: {output['evalue']}")
            elif output.get("output_type") == "stream" and output.get("name") == "stdout":
                verdicts += [line for line in output["text"].splitlines() if VERDICT.match(line)]
    if out is not None:
        out = out if hasattr(out, "joinpath") else Path(out)
        if not _save(notebook, path, out, root, erased):
            errors.append("not saved: an erasure request was applied while the notebook ran, "
                          "so its outputs may show erased data; run it again")
    return Executed(notebook, verdicts, errors)


def _erasures(root) -> int:
    """How many erasure-log rows the root has (0 without one)."""

    return len(logs.read_erasure_log(Layout.of(root)))


def _save(notebook, path: Path, out, root, erased: int) -> bool:
    """Save the executed notebook and its HTML export, holding the root (no erasure can
    run meanwhile), unless an erasure was applied while it ran (False)."""
    import logging  # on first use: start-up stays light

    from nbconvert import HTMLExporter  # on first use: start-up stays light

    with hold(Layout.of(root).root, "workbook"):
        if _erasures(root) != erased:
            return False
        storage.write_bytes(out / path.name, nbformat.writes(notebook).encode("utf-8"))
        logging.getLogger("traitlets").setLevel(logging.ERROR)   # "alternative text missing"
        html, _ = HTMLExporter().from_notebook_node(notebook)
        storage.write_bytes(out / path.with_suffix(".html").name, html.encode("utf-8"))
    return True


@contextlib.contextmanager
def _environment(**values: str):
    """Environment variables set for the block (the kernel, a child process, inherits them)."""
    before = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in before.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def lab_command(root: str | Path = ".", port: int = 8888, browser: bool = True) -> list[str]:
    """The command that opens the notebooks in JupyterLab (the optional extra ``lab``):
    listening on 127.0.0.1 only, fetching nothing (no update check, no news feed, no
    extension catalogue), in the root's folder."""
    import shutil  # on first use: start-up stays light
    import sys

    jupyter = Path(sys.executable).with_name("jupyter")
    if not jupyter.exists() and shutil.which("jupyter") is None:
        raise ModuleNotFoundError("JupyterLab is not installed", name="jupyterlab")
    return [str(jupyter) if jupyter.exists() else "jupyter", "lab",
            "--ServerApp.ip=127.0.0.1", f"--ServerApp.port={port}",
            f"--ServerApp.root_dir={Path(root).resolve()}",
            "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
            "--LabApp.news_url=None", "--LabApp.extension_manager=readonly",
            *(["--allow-root"] if os.geteuid() == 0 else []),   # a container's user
            *([] if browser else ["--no-browser"])]
