"""Shared fixtures: sample worlds generated into temporary folders, never the checked-out ones."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings
from support import forked

from minilake.generate import SAMPLE, generate

REPO = Path(__file__).resolve().parents[1]
# Dask workers (the session's LocalCluster, a run's own, a worker its nanny starts again) are
# forked from a server that has imported the libraries once (distributed's own choice for its
# test suite), not spawned as interpreters that import them each: ~3 s of CPU a worker. Real
# processes either way; a user's runs keep Dask's default.
os.environ.setdefault("DASK_DISTRIBUTED__WORKER__MULTIPROCESSING_METHOD", "forkserver")

# Property tests: a fixed, quick set of examples by default; HYPOTHESIS_PROFILE=deep for a long
# run (tests that ask for more examples ask for a multiple of the profile's).
settings.register_profile("ci", max_examples=40, deadline=None, derandomize=True,
                          database=None, suppress_health_check=list(HealthCheck))
settings.register_profile("deep", max_examples=1000, deadline=None, database=None,
                          suppress_health_check=list(HealthCheck))
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


@pytest.fixture(scope="session", autouse=True)
def temporary_folder_of_the_session(tmp_path_factory) -> Iterator[None]:
    """The system temporary folder, for the tests and every process they start, is one of the
    session's own, removed at its end: what a run killed on purpose could not remove (an S3
    upload's scratch folder), a pull's staging folder for an S3 root and a Dask cluster's
    scratch space go with it. A short path beside the system's, not inside pytest's folders:
    a notebook kernel's sockets are files in it, and a socket's path is at most 107 bytes."""
    import tempfile

    tmp_path_factory.getbasetemp()          # pytest's own folders stay where pytest keeps them
    folder = tempfile.mkdtemp(prefix="minilake-tests-")
    before = os.environ.get("TMPDIR"), tempfile.tempdir
    os.environ["TMPDIR"], tempfile.tempdir = folder, folder
    try:
        yield
    finally:
        if before[0] is None:
            del os.environ["TMPDIR"]
        else:
            os.environ["TMPDIR"] = before[0]
        tempfile.tempdir = before[1]
        try:
            forked.stop()                   # its socket is in the folder
        finally:
            shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(scope="session")
def sample_root(tmp_path_factory) -> Path:
    """The repository's sample world (README, The sample world), generated afresh with its fixed
    arguments."""
    root = tmp_path_factory.mktemp("sample")
    generate(root, **SAMPLE)
    return root


@pytest.fixture(scope="session")
def small_root(tmp_path_factory) -> Path:
    """A small world (300 customers, 4 days) for tests that run the pipeline many times."""
    root = tmp_path_factory.mktemp("small")
    generate(root, start="2024-10-09", days=4, customers=300, seed=7)
    return root


COMMITTED = ("landing_zone", "samples", "final_results")


@pytest.fixture(scope="session")
def committed(tmp_path_factory) -> Path:
    """The repository's committed data folders as committed, whatever the checkout's state
    (``make run`` leaves the sample week in archive/; a user's own files may lie in
    landing_zone/ or quarantine/): taken from git's HEAD. Outside a git checkout, the
    checkout's folders, with what ``make run`` moved put back by ``reset``."""
    import subprocess
    import tarfile

    import minilake

    root = tmp_path_factory.mktemp("committed")
    try:
        tree = subprocess.run(["git", "-C", str(REPO), "archive", "HEAD", *COMMITTED],
                              capture_output=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        tree = None
    if tree is not None:
        import io

        with tarfile.open(fileobj=io.BytesIO(tree)) as archive:
            archive.extractall(root, filter="data")
        return root
    for name in (*COMMITTED, "archive", "quarantine"):
        if (REPO / name).is_dir():
            shutil.copytree(REPO / name, root / name)
    minilake.reset(root)
    return root


@pytest.fixture
def repo_copy(committed, tmp_path) -> Path:
    """A temporary copy of the repository's committed data folders."""
    for name in ("landing_zone", "samples", "final_results"):
        shutil.copytree(committed / name, tmp_path / name)
    return tmp_path


@pytest.fixture(scope="session")
def httpserver_listen_address() -> tuple[str, int]:
    """pytest-httpserver on 127.0.0.1 only, on a free port."""
    return ("127.0.0.1", 0)


@pytest.fixture(scope="session")
def s3(tmp_path_factory):
    """A SeaweedFS server on 127.0.0.1 for the session (tests/support/seaweed.py), started by the
    first test that needs it; the S3 tests are two xdist groups, so at most one per worker."""
    from support import seaweed

    server = seaweed.start(tmp_path_factory.mktemp("seaweedfs"))
    yield server
    seaweed.stop(server)


@pytest.fixture
def s3_env(s3, monkeypatch):
    """The bucket's settings in this process's environment (for in-process calls)."""
    for name, value in s3.env.items():
        monkeypatch.setenv(name, value)
    return s3


def pytest_runtest_setup(item: pytest.Item) -> None:
    """Tests that share a server are one ``xdist_group``, run on one worker (``--dist
    loadgroup``, as ``make test`` asks). pytest-xdist 3.8 with pytest 9.2 ignores the groups
    without a word (pytest-xdist issue 1386; requirements-test.txt pins pytest 9.1.1): each
    such test then fails, saying so, rather than every group's servers starting on every
    worker unnoticed."""
    if (item.config.getoption("loadgroup", default=False)
            and item.get_closest_marker("xdist_group") and "@" not in item.nodeid):
        pytest.fail("--dist loadgroup did not group this xdist_group test: a pytest / "
                    "pytest-xdist mismatch (pytest-xdist issue 1386); see "
                    "requirements-test.txt", pytrace=False)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "long: a test of a minute or so, handed out first")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Tests marked ``long`` first, the rest in their order. ``--dist loadgroup`` hands each
    worker the groups of several tests first, then the rest in this order: a long test left
    to the end keeps one worker busy while the other waits (the README test, 86 s, began
    645 s into a 735 s session and the other worker stood idle for its last 40 s)."""
    items.sort(key=lambda item: item.get_closest_marker("long") is None)
