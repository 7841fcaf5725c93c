"""The command line (docs/guarantees.md): a thin argparse layer over the public API.

Every command prints one-line outcomes; bad data never produces a traceback, only a line naming
the file and the problem, and a non-zero exit status.

Longer than most because every command's options are declared here, beside a handler of a
few lines that calls the public API.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import logging
import os
import sys

# Arrow's allocator (mimalloc) hands freed pages back to the system at once instead of after
# a delay (1 s): a file's pipeline frees and allocates gigabytes in bursts (a 1000x week's
# peak 0.3 GB lower, for about a tenth more time: benchmarks/README.md). Read once, when
# pyarrow loads, so set by the program before anything imports it; a setting in the
# environment wins (MIMALLOC_PURGE_DELAY=1000 is mimalloc's own default). A Python user of
# the library sets it the same way if they want it.
os.environ.setdefault("MIMALLOC_PURGE_DELAY", "0")

import minilake  # noqa: E402
from minilake.defaults import SAMPLE


def _date(text: str) -> dt.date:
    try:
        return dt.date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a date (YYYY-MM-DD): {text!r}") from None


def _share(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"not a share between 0 and 1: {text!r}")
    return value


def _version(text: str) -> int:
    if not text.isdigit():
        raise argparse.ArgumentTypeError(f"not a table version (0, 1, 2, …): {text!r}")
    return int(text)


def _positive(text: str) -> int:
    if not text.isdigit() or int(text) == 0:
        raise argparse.ArgumentTypeError(f"not a positive whole number: {text!r}")
    return int(text)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="minilake", description="A notebook-driven "
                                     "mini-lakehouse: landing zone -> archive -> SCD2 tables.")
    parser.add_argument("-v", "--verbose", action="store_true", help="log every step")
    parser.add_argument("--version", action="version", version=f"minilake {_own_version()}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, help: str, root: str = "the lake: a folder minilake made (init, "
                "generate, or this repository), or s3://bucket/prefix (AWS_* settings from the "
                "environment; default: the current folder)") -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help, description=help)
        p.add_argument("--root", default=".", help=root)
        # -v after the command too; SUPPRESS keeps a -v given before it
        p.add_argument("-v", "--verbose", action="store_true", default=argparse.SUPPRESS,
                       help="log every step")
        return p

    command("init", "make ROOT a minilake root: landing_zone/ and minilake.toml (the history "
            "policy, every version kept); nothing else is created")

    for name, help in [("run", "split, then ingest"),
                       ("ingest", "apply archived files not yet applied to the tables")]:
        p = command(name, help)
        p.add_argument("--allow-mass-delete", action="store_true", help="apply a snapshot "
                       "even if it expires more than half of the current keys")
        p.add_argument("--engine", choices=["local", "dask"], default="local",
                       help="where each file's work runs: here (default) or on a Dask cluster")
        p.add_argument("--cluster", default=None, metavar="ADDRESS", help="the Dask "
                       "scheduler, e.g. tcp://host:8786 (default: a LocalCluster here)")
        p.add_argument("--ranges", type=_positive, default=None, help="key ranges per file "
                       "with --engine dask (default: the cluster's worker threads)")
        if name == "run":
            command("split", "move landing files into archive/<source>/")
    p = command("status", "per source: files, last date, rows, errors; then each table "
                "version and the file(s) it came from")
    p.add_argument("--brief", action="store_true", help="the summary only, no versions")
    p.add_argument("--json", action="store_true", help="all of it as one JSON document")
    p = command("vacuum", "remove data files no table version refers to (left by a killed "
                "run or a lost Dask worker)")
    p.add_argument("--dry-run", action="store_true", help="list them, remove nothing")
    command("maintain", "compact small files (data unchanged), checkpoint, and clean up within "
            "the history policy (a run does it by itself past a threshold)")
    p = command("rebuild", "replay archive/ into fresh tables and swap them in atomically")
    p.add_argument("source", nargs="?", default=None, help="one source (default: all)")
    p.add_argument("--allow-mass-delete", action="store_true",
                   help="apply a snapshot even if it expires more than half of the current keys")
    p = command("replay-rejects", "apply corrected rows as the delivery they correct: its good "
                "rows and these delivered again under its name, then run (docs/quality.md)")
    p.add_argument("corrections", help="the corrected rows, a file in the delivery's form (CSV "
                   "with its header, JSON array, ~ lines)")
    p.add_argument("--delivery", required=True, metavar="NAME",
                   help="the archived delivery they correct, e.g. customer_20241016.csv")
    p = command("report", "write the docs/formats.md and MIDP-307 reports as CSV, with verdicts "
                "against final_results/ where it exists")
    p.add_argument("--until", type=_date, default=None, help="last sale date (default: all)")
    p.add_argument("--out", default=None, help="folder for the CSVs (default: ROOT/reports)")
    command("reset", "move archived/quarantined files back to landing_zone/ and delete the "
            "generated folders (what reload.ipynb does)")
    p = command("lab", "open the notebooks in JupyterLab on 127.0.0.1, offline (the optional "
                "extra: pip install -r requirements-lab.txt, or make lab)")
    p.add_argument("--port", type=int, default=8888, help="port (default 8888; 0: a free one)")
    p.add_argument("--no-browser", action="store_true", help="print the URL, open nothing")
    p = command("workbook", "execute workbook.ipynb headless; save it and an HTML export "
                "under reports/; print the verdicts")
    p.add_argument("--notebook", default="workbook.ipynb")

    p = command("pull", "fetch one day of a source from an HTTP API (docs/formats.md) into "
                "landing_zone/; the token comes from MINILAKE_API_TOKEN")
    p.add_argument("source", help="customer, product or sales")
    p.add_argument("--date", type=_date, required=True, help="the day, YYYY-MM-DD")
    p.add_argument("--url", default=None, help="the API's base URL (default: MINILAKE_API_URL)")
    p = command("export", "write a table as Avro, Parquet or CSV for the systems downstream")
    p.add_argument("table", help="customer, product, sales, or another table under tables/")
    when = p.add_mutually_exclusive_group()
    when.add_argument("--as-of", type=_date, default=None,
                      help="only the versions valid on that date")
    when.add_argument("--current", action="store_true", help="only the current versions")
    p.add_argument("--version", type=_version, default=None,
                   help="the table as of that Delta version (see status)")
    p.add_argument("--format", choices=["avro", "parquet", "csv"], default=None,
                   help="default: from --out's extension, else avro")
    p.add_argument("--out", default=None, help="the file to write (default: "
                   "ROOT/exports/<table>[_as_of_D|_current][_vN].<format>)")
    command("marts", "recompute every data mart (README.md, marts and SQL) for every month")
    p = command("sql", "one read-only SQL query (DuckDB) over the tables, their _current views, "
                "<table>_as_of('YYYY-MM-DD') and the marts")
    p.add_argument("query", help="one SELECT")
    p.add_argument("--format", choices=["table", "csv", "json"], default="table")
    p.add_argument("--known-at", default=None, metavar="WHEN", help="every table as it "
                   "stood then: YYYY-MM-DD (the end of that day) or YYYY-MM-DDTHH:MM[:SS], UTC")
    p = command("serve", "the job server: jobs and tables over HTTP; clients send "
                "'Authorization: Bearer $MINILAKE_SERVER_TOKEN'")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default: "
                   "127.0.0.1, this machine only)")
    p.add_argument("--port", type=int, default=8000, help="port (default 8000; 0: a free one)")
    p = command("serve-sample-api", "serve the deliveries under ROOT in the pull protocol "
                "(to try pull); MINILAKE_API_TOKEN, if set, is required of clients")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default: "
                   "127.0.0.1, this machine only)")
    p.add_argument("--port", type=int, default=8765, help="port (default 8765; 0: a free one)")
    p.add_argument("--page-size", type=_positive, default=1000, help="records per page")

    p = command("generate", "write a sample world: landing files, broken day, references",
                root="a local folder to write the world into, made if missing (default: the "
                "current folder); to start an S3 root, upload its landing_zone/ (README)")
    p.add_argument("--start", type=_date, default=SAMPLE["start"],
                   help=f"the first day, YYYY-MM-DD (default {SAMPLE['start']})")
    p.add_argument("--days", type=_positive, default=SAMPLE["days"],
                   help=f"how many days of deliveries (default {SAMPLE['days']})")
    p.add_argument("--customers", type=_positive, default=SAMPLE["customers"],
                   help=f"customers on day one; sales scale with them (default "
                   f"{SAMPLE['customers']})")
    p.add_argument("--seed", type=int, default=SAMPLE["seed"],
                   help=f"the same seed gives the same files, byte for byte (default "
                   f"{SAMPLE['seed']})")
    p.add_argument("--landing-only", action="store_true",
                   help="only landing_zone/ (no broken day, no final_results/)")
    p.add_argument("--steady", action="store_true",
                   help="constant daily volumes (for measuring cost against history)")
    p.add_argument("--drift", action="store_true",
                   help="the sources' columns change mid-way: customers gain a loyalty tier, "
                        "products a creation time, then lose their descriptions "
                        "(docs/contracts.md)")
    p.add_argument("--crlf-addresses", type=_share, default=0.0, metavar="SHARE",
                   help="share of customers whose address holds CRLF, not LF (default 0)")
    return parser


def _print(lines: list[str]) -> None:
    for line in lines:
        print(line)


def main(argv: list[str] | None = None) -> int:
    return _guarded(build_parser().parse_args(argv))


def _own_version() -> str:
    from importlib.metadata import (  # on first use: start-up stays light
        PackageNotFoundError,
        version,
    )

    try:
        return version("minilake")
    except PackageNotFoundError:          # run from a checkout that was not installed
        return "(not installed)"


def _guarded(args: argparse.Namespace) -> int:
    from minilake.lake.lock import RootBusy  # on first use: start-up stays light
    from minilake.lake.storage import StorageError
    from minilake.load import EngineError
    from minilake.stopping import Interrupted, on_signals

    # a server stops on its own signals (uvicorn's), a notebook's kernel on the kernel's
    stoppable = args.command not in ("serve", "serve-sample-api", "workbook", "lab")
    try:
        with on_signals() if stoppable else contextlib.nullcontext():
            return _main(args)
    except Interrupted as stopped:
        print(f"minilake {args.command}: {stopped}", file=sys.stderr)
        return stopped.exit_status
    except (RootBusy, StorageError, FileNotFoundError, ValueError, EngineError) as error:
        print(f"minilake {args.command}: {error}", file=sys.stderr)
        return 2
    except ModuleNotFoundError as error:          # an optional extra not installed
        print(f"minilake {args.command}: {_missing_extra(error)}", file=sys.stderr)
        return 2


EXTRAS = {"distributed": ("dask engine", "requirements-dist.txt", "dist"),
          "dask": ("dask engine", "requirements-dist.txt", "dist"),
          "jupyterlab": ("notebook front end", "requirements-lab.txt", "lab")}


def _missing_extra(error: ModuleNotFoundError) -> str:
    """One line for a module of an optional extra that is not installed."""
    top = (error.name or "").split(".")[0]
    if top not in EXTRAS:
        raise error
    what, pins, extra = EXTRAS[top]
    return (f"the {what} needs the optional extra '{extra}': pip install -r {pins} "
            f"(make test installs it)")


def _say(line: str) -> None:
    """A line of a command's outcome, written at once (a scheduler's log shows each file as
    it is done, not all at the end)."""
    print(line, flush=True)


def run_and_exit() -> None:
    """The program (``minilake``, ``python -m minilake``): what :func:`main` does, then exit
    without the interpreter's teardown (an unexpected exception still exits the usual way).

    Unloading pandas and pyarrow at exit (``pyarrow.dataset``'s static state above all) takes
    about 0.3 s, a tenth of a run on the sample week. By the time ``main`` returns every file
    is closed, every commit made and every thread joined, so only the standard streams and the
    log handlers need flushing. ``workbook`` exits the usual way: its kernel is a child
    process with clean-up of its own."""
    # pandera's first validation imports hypothesis, when it is installed, to register data
    # synthesis strategies. Here it is installed only for the test suite (same .venv), the
    # program never synthesises data, and the import costs ~0.3 s of a 2 s sample run: an
    # entry of None in sys.modules makes it fail at once, pandera's "no hypothesis" path.
    sys.modules.setdefault("hypothesis", None)
    args = build_parser().parse_args()
    try:
        code = _guarded(args)
    except BrokenPipeError:        # the reader went away (| head): nothing more to say
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        os._exit(141)
    if args.command == "workbook":
        raise SystemExit(code)
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def _main(args: argparse.Namespace) -> int:
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    progress = sys.stderr.isatty()
    if args.command == "generate":
        minilake.generate(args.root, start=args.start, days=args.days, customers=args.customers,
                          seed=args.seed, landing_only=args.landing_only, steady=args.steady,
                          crlf_addresses=args.crlf_addresses, progress=progress,
                          drift=args.drift)
        return 0
    if args.command == "split":
        _print(minilake.split(args.root).lines())
        return 0
    if args.command == "vacuum":
        found = minilake.vacuum(args.root, dry_run=args.dry_run)
        verb = "would remove" if args.dry_run else "removed"
        _print([f"{name}: {verb} {len(files)} file(s) no version refers to"
                + "".join(f"\n  {f}" for f in files) for name, files in found.items()])
        return 0
    if args.command == "maintain":
        minilake.maintain(args.root, say=_say)
        return 0
    if args.command == "run" and _nothing_to_do(args.root):
        _print(["split: 0 file(s) archived", "ingest: nothing new in archive/"])
        return 0
    if args.command in ("run", "ingest", "rebuild", "replay-rejects"):
        if args.command == "replay-rejects":
            result = minilake.replay_rejects(args.corrections, args.delivery, args.root,
                                             progress=progress, say=_say)
        elif args.command == "rebuild":
            result = minilake.rebuild(args.source, args.root,
                                      allow_mass_delete=args.allow_mass_delete, progress=progress,
                                      say=_say)
        else:
            call = minilake.run if args.command == "run" else minilake.ingest
            result = call(args.root, allow_mass_delete=args.allow_mass_delete, progress=progress,
                          engine=args.engine, cluster=args.cluster, ranges=args.ranges, say=_say)
        quarantined = (result.quarantined if args.command in ("ingest", "rebuild")
                       else result.ingest.quarantined)
        if quarantined:
            print(f"{len(quarantined)} file(s) quarantined; see quarantine/*/*.reason.txt",
                  file=sys.stderr)
            return 1
        return 0
    if args.command == "pull":
        return _pull(args, progress)
    if args.command == "export":
        result = minilake.export(args.table, args.out, format=args.format, as_of=args.as_of,
                                 version=args.version, current=args.current, root=args.root,
                                 progress=progress)
        print(result.line())
        return 0
    if args.command == "marts":
        written = minilake.marts(args.root)
        print("marts: " + (", ".join(f"{n}: {r} rows" for n, r in written.items())
                           or "nothing to compute yet (no customer, product and sales tables)"))
        return 0
    if args.command == "sql":
        if args.format == "json":             # exact: ids as text, dates as dates (jsontext)
            from minilake.formats.jsontext import records  # on first use: start-up stays light
            from minilake.outbound.query import sql_table

            print(records(sql_table(args.query, args.root, known_at=args.known_at), indent=1))
            return 0
        import pandas as pd  # on first use: start-up stays light

        frame = minilake.sql(args.query, args.root, known_at=args.known_at)
        if args.format == "csv":
            print(frame.to_csv(index=False), end="")
        elif args.format == "json":
            print(frame.to_json(orient="records", date_format="iso", indent=1))
        else:
            with pd.option_context("display.width", 250, "display.max_columns", 50,
                                   "display.max_rows", 500):
                print(frame.to_string(index=False))
        return 0
    if args.command == "serve":
        from minilake.apps.server import serve  # on first use: start-up stays light

        serve(args.root, host=args.host, port=args.port)
        return 0
    if args.command == "serve-sample-api":
        from minilake.generate.sample_api import serve  # on first use: start-up stays light

        serve(args.root, host=args.host, port=args.port, page_size=args.page_size)
        return 0
    if args.command == "init":
        made = minilake.init(args.root)
        print(f"init: {made}")
        return 0
    if args.command == "status" and args.json:
        print(_status_json(args.root))
        return 0
    if args.command == "status":
        import pandas as pd  # on first use: start-up stays light

        with pd.option_context("display.width", 250, "display.max_columns", 30,
                               "display.max_colwidth", 90):
            print(minilake.status(args.root).to_string(index=False))
            erased = minilake.erasures(args.root)
            if len(erased):
                print("\nerasure requests (docs/guarantees.md): table versions before "
                      "history_from_version were purged; time travel by date is unchanged")
                print(erased.to_string(index=False))
            pulled = minilake.pulls(args.root)
            if len(pulled):
                print("\npulled from an API (docs/formats.md)")
                print(pulled[["source", "file_date", "url", "pages", "records", "outcome",
                              "finished_at"]].to_string(index=False))
            if not args.brief:
                from minilake.contract.sources import SOURCES  # on first use: start-up stays light

                for name in SOURCES:
                    history = minilake.versions(name, args.root)
                    if len(history):
                        print(f"\n{name}: table versions")
                        print(history.to_string(index=False))
        return 0
    if args.command == "report":
        return _report(args)
    if args.command == "reset":
        _print(minilake.reset(args.root).lines())
        return 0
    if args.command == "workbook":
        return _workbook(args)
    if args.command == "lab":
        from minilake.apps.notebooks import lab_command  # on first use: start-up stays light

        command = lab_command(args.root, args.port, browser=not args.no_browser)
        os.execv(command[0], command)          # JupyterLab in this process's place
    raise AssertionError(args.command)


def _status_json(root: str) -> str:
    """``status`` as one JSON document: the sources, erasures, pulls and each source's
    versions (what the text form shows)."""
    import json  # on first use: start-up stays light

    from minilake.contract.sources import SOURCES  # on first use: start-up stays light

    def records(frame) -> list[dict]:
        return json.loads(frame.to_json(orient="records", date_format="iso"))

    return json.dumps({"sources": records(minilake.status(root)),
                       "erasures": records(minilake.erasures(root)),
                       "pulls": records(minilake.pulls(root)),
                       "versions": {name: records(minilake.versions(name, root))
                                    for name in SOURCES}}, indent=1)


def _pull(args: argparse.Namespace, progress: bool) -> int:
    from minilake.inbound.pull import PullError  # on first use: start-up stays light

    try:
        result = minilake.pull(args.source, args.date, args.root, args.url, progress=progress)
    except PullError as error:
        print(f"minilake pull: {error}", file=sys.stderr)
        return 1
    print(result.line(), file=sys.stdout if result.ok else sys.stderr)
    return 0 if result.ok else 1


def _nothing_to_do(root: str) -> bool:
    """The root is as the last run that ended well left it (``minilake.lake.unchanged``): say so
    without loading the pipeline. Checked again holding the lock (a run may be under way)."""
    from pathlib import Path  # on first use: start-up stays light

    from minilake.lake.lock import hold  # on first use: start-up stays light
    from minilake.lake.unchanged import nothing_to_do

    if not nothing_to_do(root):
        return False
    with hold(Path(root).resolve(), "run"):
        return nothing_to_do(root)


def _report(args: argparse.Namespace) -> int:
    from minilake.lake.layout import Layout  # on first use: start-up stays light
    from minilake.outbound import reports

    frames = reports.write_reports(args.root, args.until, args.out)
    out = args.out or Layout.of(args.root).reports
    print(f"report: {len(frames)} report(s) written to {out}")
    covered = reports.covered_until(args.root)
    if covered is None:
        return 0
    until = args.until or covered
    if args.until is None:         # the lake may hold later days (the broken day, say)
        print(f"report: compared with final_results/ up to {covered}, the last day it covers")
    verdicts = [reports.check(name, args.root, until=until,
                              frame=frame if args.until is not None else None)
                for name, frame in frames.items()]
    _print([str(v) for v in verdicts])
    return 0 if all(v.matches for v in verdicts) else 1


def _workbook(args: argparse.Namespace) -> int:
    from pathlib import Path  # on first use: start-up stays light

    from minilake.apps.notebooks import execute  # on first use: start-up stays light
    from minilake.lake.layout import Layout

    layout = Layout.of(args.root)
    notebook = Path(args.notebook)
    if not notebook.is_absolute():
        notebook = layout.root / args.notebook
    print(f"workbook: executing {notebook.name} in {layout.root} ...", flush=True)
    done = execute(notebook, layout.root, out=layout.reports)
    _print(done.verdicts)
    _print([f"error in a cell: {e}" for e in done.errors])
    print(f"workbook: saved {layout.reports / notebook.name} and its .html")
    if not done.ok:
        print("workbook: a report does not match or a cell failed", file=sys.stderr)
        return 1
    return 0
