"""The mutation check (issue 36): mutmut over the pure core, on a scratch copy of the checkout.

A test suite that passes says little about what it would catch. mutmut changes one operator,
constant or call at a time in the modules below ("a mutant") and runs the tests that reach the
changed function: a mutant that no test notices ("survived") is a change of behaviour the suite
lets through. The score per module is the share of mutants killed.

    .venv/bin/python tools/mutation.py                          # every module below
    .venv/bin/python tools/mutation.py --modules keys ledger    # some of them
    .venv/bin/python tools/mutation.py --with-hostile           # tests/stages/test_hostile.py too
    .venv/bin/python tools/mutation.py --json out.json          # the results, for --again
    .venv/bin/python tools/mutation.py --again out.json         # only what survived then

Why a scratch copy: a mutation tool rewrites source files (mutmut writes ``mutants/`` next to
them, others edit in place), and other people work in this checkout at the same time; so the
files git knows of (tracked, and new ones not ignored) are copied to a folder under the system
temporary folder, the run happens there with ``PYTHONPATH`` at the copy's ``src/``, and the
checkout's ``src/`` is checked unchanged at the end. Not part of ``make test``: a full run takes
about an hour of two cores (docs/testing.md has the figures and the last scores).

Why mutmut 3: it imports the project and pytest once, forks a child per mutant and runs only
the tests that reach the mutated function, so a mutant costs its tests, not a pytest start
(about 3 s here: pandas, pyarrow, pandera). It mutates function bodies only (not module
constants), and whole files: the ledger, one class of ``load/ingest.py``, is had by running
only the mutants whose names are ``Ledger``'s methods.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import re
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
EQUIVALENT = Path(__file__).with_name("mutation_equivalent.toml")


@dataclass(frozen=True)
class Module:
    """A part of the pure core: the file mutmut mutates and which of its mutants are run."""

    path: str
    pattern: str            # fnmatch over mutmut's mutant names


MODULES = {
    "validate": Module("src/minilake/load/validate.py", "minilake.load.validate.*"),
    "scd2": Module("src/minilake/load/scd2.py", "minilake.load.scd2.*"),
    "keys": Module("src/minilake/load/keys.py", "minilake.load.keys.*"),
    "readers": Module("src/minilake/formats/readers.py", "minilake.formats.readers.*"),
    # mutmut names a method's mutants module.xǁClassǁmethod__mutmut_N
    "ledger": Module("src/minilake/lake/logs.py", "minilake.lake.logs.x\u01c1Ledger\u01c1*"),
}

# The unit tests of those modules: a mutant runs those of them that reach its function.
FAST_TESTS = [f"tests/unit/test_{name}.py"
              for name in ("validate", "scd2", "keys", "readers", "ledger", "validate_mutants")]
# 500,000 customers: minutes per run, and the small-block tests cover the same reader code.
TOO_SLOW = ["tests/unit/test_readers.py::"
            "test_a_100x_world_with_crlf_addresses_keeps_every_address"]
# Whole pipeline runs on corrupted files: ~25 s of CPU, the fast subset's ~15 s again.
HOSTILE = "tests/stages/test_hostile.py"

KILLED = {"killed", "timeout"}        # a timeout is a behaviour the tests noticed


def tracked_files(repo: Path) -> list[str]:
    """The files of the checkout git knows of: tracked ones and new ones it does not ignore,
    as they are in the working tree (a file deleted there is skipped)."""
    out = subprocess.run(["git", "-C", str(repo), "ls-files", "-z", "--cached", "--others",
                          "--exclude-standard"], capture_output=True, check=True).stdout
    return sorted({name for name in out.decode().split("\0") if name})


def copy_checkout(repo: Path, scratch: Path) -> None:
    """The checkout's files into ``scratch``: the run never writes next to the real ones."""
    for name in tracked_files(repo):
        source = repo / name
        if source.is_file() and not source.is_symlink():
            target = scratch / name
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target)


def tests_at(repo: Path, scratch: Path, revision: str) -> None:
    """The copy's tests/ as they are at ``revision`` (a score before a change to the tests):
    each file replaced by that revision's, and files it does not have removed."""
    listed = subprocess.run(["git", "-C", str(repo), "ls-tree", "-r", "-z", "--name-only",
                             revision, "tests/"], capture_output=True, check=True).stdout
    names = {n for n in listed.decode().split("\0") if n}
    for path in (scratch / "tests").rglob("*"):
        if path.is_file() and str(path.relative_to(scratch)) not in names:
            path.unlink()
    for name in names:
        shown = subprocess.run(["git", "-C", str(repo), "show", f"{revision}:{name}"],
                               capture_output=True, check=True).stdout
        (scratch / name).parent.mkdir(parents=True, exist_ok=True)
        (scratch / name).write_bytes(shown)


def toml_list(values: list[str]) -> str:
    return "[" + ", ".join(json.dumps(v) for v in values) + "]"


def mutmut_config(scratch: Path, modules: list[str], hostile: bool) -> str:
    """The ``[tool.mutmut]`` table appended to the copy's pyproject.toml (mutmut reads it from
    the folder it runs in; the checkout's own pyproject.toml is left as it is)."""
    def found(test: str) -> str:
        """The test where the copy has it: tests/ of a --tests-at revision older than
        tests/unit/ and tests/stages/ kept every file in tests/ itself."""
        if (scratch / test.split("::")[0]).exists():
            return test
        return "tests/" + test.split("/", 2)[2]

    tests = [found(t) for t in [*FAST_TESTS, *([HOSTILE] if hostile else [])]]
    selection = [t for t in tests if (scratch / t).exists()]
    for test in TOO_SLOW:
        selection += ["--deselect", found(test)]
    return "\n".join([
        "", "[tool.mutmut]",
        'source_paths = ["src/"]',
        f"only_mutate = {toml_list(sorted({MODULES[m].path for m in modules}))}",
        f"pytest_add_cli_args_test_selection = {toml_list(selection)}",
        # no cache folder, no xdist: each mutant is one pytest session in a forked child;
        # Hypothesis does not shrink a failing example (tools/mutation_hypothesis.py)
        'pytest_add_cli_args = ["-p", "no:cacheprovider", "-p", "no:xdist", "-o", "addopts=",'
        ' "-p", "mutation_hypothesis"]',
        # a mutant stopped after 6x its tests' time (+1 s) of CPU: an endless loop is a kill,
        # and mutmut's default (30x) let each of them burn minutes
        "timeout_multiplier = 3.0",
        # workers forked from a server that has only imported and collected the tests: one
        # forked from a process that ran them inherits delta-rs's tokio runtime, which panics
        # in a child ("Forked process detected"), and every mutant the pipeline tests reach
        # would count as killed
        'process_isolation = "forkserver"',
        "use_git_change_detection = false",
        "",
    ])


def source_digest(repo: Path) -> str:
    """One sha256 over the checkout's src/ (names and bytes): the same before and after."""
    digest = hashlib.sha256()
    for path in sorted((repo / "src").rglob("*")):
        if path.is_file() and "__pycache__" not in path.parts:
            digest.update(str(path.relative_to(repo)).encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()


def run_mutmut(scratch: Path, names: list[str], workers: int, log: Path) -> int:
    """``mutmut run`` of the mutants ``names`` (patterns or names) in the copy, its output
    (a progress line redrawn) to ``log``."""
    path = os.pathsep.join([str(scratch / "src"), str(scratch / "tools")])
    # a mutant's session is a forked child that may end before tests/conftest.py removes
    # its temporary folder: they are made inside the copy, and go with it
    temporary = scratch / "tmp"
    temporary.mkdir(exist_ok=True)
    env = {**os.environ, "PYTHONPATH": path, "PYTHONDONTWRITEBYTECODE": "1",
           "TMPDIR": str(temporary)}
    mutmut = Path(sys.executable).with_name("mutmut")
    command = [str(mutmut), "run", "--max-children", str(workers), *names]
    with log.open("wb") as out:
        return subprocess.run(command, cwd=scratch, env=env, stdout=out,
                              stderr=subprocess.STDOUT, check=False).returncode


@dataclass
class Score:
    """One module's mutants: how many, how many killed, and each survivor with its status
    and the change it makes (``file:line  before  ->  after``)."""

    module: str
    mutants: int = 0
    killed: int = 0
    survivors: list[dict] = field(default_factory=list)

    @property
    def percent(self) -> float:
        return 100.0 * self.killed / self.mutants if self.mutants else 100.0

    def count(self, status: str) -> int:
        return sum(s["status"] == status for s in self.survivors)


def read_statuses(scratch: Path, module: Module) -> dict[str, str]:
    """Every mutant of ``module`` and its status, from mutmut's ``.meta`` file."""
    import fnmatch

    from mutmut.stats import status_by_exit_code

    meta = json.loads((scratch / "mutants" / (module.path + ".meta")).read_text())
    return {mutant: status_by_exit_code[code] for mutant, code in meta["exit_code_by_key"].items()
            if fnmatch.fnmatchcase(mutant, module.pattern)}


def read_scores(scratch: Path, modules: list[str], only: set[str] | None = None, *,
                diffs: bool = True) -> list[Score]:
    """Each module's score from the copy a run left (its mutants in ``only``, if given)."""
    scores = []
    for name in modules:
        statuses = read_statuses(scratch, MODULES[name])
        statuses = {m: s for m, s in statuses.items() if only is None or m in only}
        alive = sorted(m for m, s in statuses.items() if s not in KILLED)
        scores.append(Score(name, len(statuses), len(statuses) - len(alive), [
            {"mutant": m, "status": statuses[m],
             "change": describe(scratch, MODULES[name], m) if diffs else ""} for m in alive]))
    return scores


def scores_of(result: dict) -> list[Score]:
    """The scores a run wrote with --json."""
    return [Score(m, s["mutants"], s["killed"], result["survivors"].get(m, []))
            for m, s in result["scores"].items()]


def merged(previous: list[Score], again: list[Score]) -> list[Score]:
    """A run of the earlier survivors only, as a whole run's scores: a mutant the earlier
    tests killed is killed by the same tests now (tests are added, none taken away; examples
    are drawn derandomized), so it stands as killed."""
    rerun = {s.module: s for s in again}
    return [Score(p.module, p.mutants, p.killed + rerun[p.module].killed,
                  rerun[p.module].survivors) for p in previous if p.module in rerun]


@contextlib.contextmanager
def working_directory(path: Path) -> Iterator[None]:
    """mutmut's own helpers read its config and files relative to the current folder."""
    before = Path.cwd()
    os.chdir(path)
    try:
        yield
    finally:
        os.chdir(before)


def changed_lines(diff: str) -> tuple[list[str], list[str]]:
    """The removed and added lines of a mutant's diff, stripped."""
    lines = diff.splitlines()[2:]           # past the ---/+++ header
    return ([line[1:].strip() for line in lines if line.startswith("-")],
            [line[1:].strip() for line in lines if line.startswith("+")])


def line_of(source: list[str], text: str, near: str) -> int | None:
    """The source line (1-based) that reads ``text``, the first after the one defining the
    mutated function ``near`` (a mutant's diff is of its function, without line numbers)."""
    start = next((i for i, line in enumerate(source)
                  if re.match(rf"\s*def {re.escape(near)}\(", line)), 0)
    for i in range(start, len(source)):
        if source[i].strip() == text:
            return i + 1
    return None


def describe(scratch: Path, module: Module, mutant: str) -> str:
    """``file:line  before  ->  after`` for one mutant, from mutmut's own diff."""
    from mutmut.mutation.diff_apply import get_diff_for_mutant
    from mutmut.utils.format_utils import orig_function_and_class_names_from_key

    with working_directory(scratch):
        diff = get_diff_for_mutant(mutant, path=module.path)
    removed, added = changed_lines(diff)
    function, _ = orig_function_and_class_names_from_key(mutant)
    source = (scratch / module.path).read_text().splitlines()
    line = line_of(source, removed[0], function) if removed else None
    where = f"{Path(module.path).name}:{line or '?'}"
    return f"{where}  {' / '.join(removed)}  ->  {' / '.join(added)}"


def equivalents(path: Path = EQUIVALENT) -> dict[str, tuple[str, str]]:
    """Survivors explained as equivalent (or not worth a test): mutant name -> (the change it
    was explained for, why). An entry counts only while the mutant still makes that change:
    mutmut numbers a function's mutants afresh when the function changes."""
    import tomllib

    explained = {}
    for group in tomllib.loads(path.read_text()).values():
        for entry in group["mutants"]:
            name, _, change = entry.partition(" = ")
            explained[name] = (change, group["why"])
    return explained


def explanation(survivor: dict, explained: dict[str, tuple[str, str]]) -> str | None:
    """Why a survivor is left alive, if tools/mutation_equivalent.toml says so for the very
    change it makes (a survivor without a change text, from --no-diffs, is not matched)."""
    change, why = explained.get(survivor["mutant"], (None, None))
    return why if change and change == survivor["change"] else None


def report(scores: list[Score], explained: dict[str, tuple[str, str]]) -> dict:
    """Print the score per module and the surviving mutants; return them for --json. The
    score counts every survivor; "net" leaves out those explained as equivalent."""
    print(f"\n{'module':<10}{'mutants':>9}{'killed':>8}{'survived':>10}{'no tests':>10}"
          f"{'score':>8}{'explained':>11}{'net':>8}")
    result: dict = {"scores": {}, "survivors": {}}
    for s in scores:
        known = sum(explanation(v, explained) is not None for v in s.survivors)
        net = 100.0 * s.killed / (s.mutants - known) if s.mutants > known else 100.0
        print(f"{s.module:<10}{s.mutants:>9}{s.killed:>8}{s.count('survived'):>10}"
              f"{s.count('no tests'):>10}{s.percent:>7.1f}%{known:>11}{net:>7.1f}%")
        result["scores"][s.module] = {"mutants": s.mutants, "killed": s.killed,
                                      "percent": round(s.percent, 1), "explained": known,
                                      "net_percent": round(net, 1)}
        result["survivors"][s.module] = s.survivors
    total, killed = sum(s.mutants for s in scores), sum(s.killed for s in scores)
    print(f"{'all':<10}{total:>9}{killed:>8}{'':>20}{100.0 * killed / max(total, 1):>7.1f}%")
    for s in scores:
        if s.survivors:
            print(f"\nsurviving mutants of {s.module} ({MODULES[s.module].path}):")
        for v in s.survivors:
            why = explanation(v, explained)
            print(f"  {v['mutant']}  [{v['status']}]" + (f"\n      {v['change']}"
                                                        if v["change"] else "")
                  + (f"\n      explained: {why}" if why else ""))
    return result


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--modules", nargs="+", choices=list(MODULES), default=list(MODULES),
                        help="the modules to mutate (default: all)")
    parser.add_argument("--workers", type=int, default=2,
                        help="mutants tested at once (default 2: this machine's cores)")
    parser.add_argument("--with-hostile", action="store_true",
                        help=f"add {HOSTILE} to the tests (about twice as long)")
    parser.add_argument("--no-diffs", action="store_true",
                        help="list surviving mutants by name only")
    parser.add_argument("--keep", type=Path, default=None,
                        help="make the copy here and keep it (mutmut browse/show work in it)")
    parser.add_argument("--json", type=Path, default=None, help="also write the results here")
    parser.add_argument("--tests-at", default=None, metavar="REV",
                        help="run tests/ as at git revision REV (HEAD: the committed tests), "
                             "not as in the working tree")
    parser.add_argument("--again", type=Path, default=None, metavar="JSON",
                        help="run only the mutants that survived the run that wrote JSON "
                             "(with the same src/), and score as a whole run")
    parser.add_argument("--show", type=Path, default=None, metavar="JSON",
                        help="print the report of the run that wrote JSON again (with the "
                             "explanations of tools/mutation_equivalent.toml as they are now)")
    parser.add_argument("--fail-under", type=float, default=None,
                        help="exit 1 if a module's score is below this percentage")
    return parser.parse_args(argv)


def run(args: argparse.Namespace, modules: list[str], names: list[str],
        scratch: Path) -> list[Score] | None:
    """Copy, configure and run mutmut in ``scratch``; the scores of ``names`` (patterns, or
    the names of the mutants to run again), or None if mutmut failed."""
    copy_checkout(REPO, scratch)
    if args.tests_at:
        tests_at(REPO, scratch, args.tests_at)
    with (scratch / "pyproject.toml").open("a") as config:
        config.write(mutmut_config(scratch, modules, args.with_hostile))
    log = scratch / "mutmut.log"
    print(f"mutmut run in {scratch} ({', '.join(modules)}; {args.workers} workers); "
          f"progress: tail -f {log}", flush=True)
    if not names:
        return [Score(m) for m in modules]
    code = run_mutmut(scratch, names, args.workers, log)
    if code != 0:
        print("\n".join(log.read_text(errors="replace").replace("\r", "\n").splitlines()[-40:]))
        print(f"mutmut run failed (exit {code})")
        return None
    only = None if args.again is None else set(names)
    return read_scores(scratch, modules, only, diffs=not args.no_diffs)


def what_to_run(args: argparse.Namespace) -> tuple[list[str], list[str], list[Score] | None]:
    """The modules, the mutants to run (patterns, or the names that survived the run of
    --again) and that run's scores."""
    modules = [m for m in MODULES if m in args.modules]
    if args.again is None:
        return modules, [MODULES[m].pattern for m in modules], None
    previous = json.loads(args.again.read_text())
    if previous.get("src") not in (None, source_digest(REPO)):
        sys.exit(f"--again {args.again}: src/ has changed since; run them all")
    scores = [s for s in scores_of(previous) if s.module in modules]
    return ([s.module for s in scores], [v["mutant"] for s in scores for v in s.survivors],
            scores)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.show:
        report(scores_of(json.loads(args.show.read_text())), equivalents())
        return 0
    modules, names, previous = what_to_run(args)
    before = source_digest(REPO)
    started, cpu = time.monotonic(), resource.getrusage(resource.RUSAGE_CHILDREN)
    if args.keep and args.keep.exists():
        sys.exit(f"--keep {args.keep}: exists; give a new folder")
    scratch = args.keep or Path(tempfile.mkdtemp(prefix="minilake-mutation-"))
    try:
        scores = run(args, modules, names, scratch)
    finally:
        if args.keep is None:
            shutil.rmtree(scratch, ignore_errors=True)
    if scores is None:
        return 2
    result = report(scores if previous is None else merged(previous, scores), equivalents())
    used = resource.getrusage(resource.RUSAGE_CHILDREN)
    minutes = (time.monotonic() - started) / 60
    cpu_minutes = (used.ru_utime + used.ru_stime - cpu.ru_utime - cpu.ru_stime) / 60
    print(f"\nruntime: {minutes:.1f} min wall, {cpu_minutes:.1f} min CPU "
          f"({args.workers} workers)")
    if source_digest(REPO) != before:
        print("the checkout's src/ changed during the run (someone else's edit?)")
    if args.json:
        result.update(runtime_minutes=round(minutes, 1), cpu_minutes=round(cpu_minutes, 1),
                      workers=args.workers, src=before, again=previous is not None,
                      finished=time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()))
        args.json.write_text(json.dumps(result, indent=2, ensure_ascii=False) + "\n")
    low = [m for m, s in result["scores"].items()
           if args.fail_under is not None and s["percent"] < args.fail_under]
    return 1 if low else 0


if __name__ == "__main__":
    sys.exit(main())
