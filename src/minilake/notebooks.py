"""Headless notebook runs (nbclient) for `make run` and the tests."""

from __future__ import annotations

import re
import tempfile
from dataclasses import dataclass
from pathlib import Path

import nbformat

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
    """Run a notebook with ``root`` as its working folder; save it (and an HTML export) into
    ``out`` if given. Errors are collected, not raised, so the saved notebook shows them."""
    from jupyter_client import KernelManager
    from nbclient import NotebookClient

    notebook = nbformat.read(Path(path), as_version=4)
    with tempfile.TemporaryDirectory(prefix="minilake-kernel-") as sockets:
        # IPC sockets keep the kernel's channels off the network (and ipykernel quiet).
        kernel = KernelManager(kernel_name="python3", transport="ipc",
                               ip=str(Path(sockets) / "kernel"))
        client = NotebookClient(notebook, km=kernel, timeout=timeout, allow_errors=True,
                                resources={"metadata": {"path": str(root)}})
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
        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        nbformat.write(notebook, out / Path(path).name)
        import logging

        from nbconvert import HTMLExporter

        logging.getLogger("traitlets").setLevel(logging.ERROR)   # "alternative text missing"

        html, _ = HTMLExporter().from_notebook_node(notebook)
        (out / Path(path).with_suffix(".html").name).write_text(html, encoding="utf-8")
    return Executed(notebook, verdicts, errors)
