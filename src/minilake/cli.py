"""The command line (SPEC §6): a thin argparse layer over the public API."""

from __future__ import annotations

import argparse
import datetime as dt
import logging
import sys

import minilake
from minilake.generate import SAMPLE


def _date(text: str) -> dt.date:
    try:
        return dt.date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a date (YYYY-MM-DD): {text!r}") from None


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="minilake", description=__doc__)
    parser.add_argument("-v", "--verbose", action="store_true", help="log every step")
    sub = parser.add_subparsers(dest="command", required=True)

    def command(name: str, help: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help)
        p.add_argument("--root", default=".", help="folder laid out like the repository")
        return p

    p = command("generate", "write a sample world: landing files, broken day, references")
    p.add_argument("--start", type=_date, default=SAMPLE["start"])
    p.add_argument("--days", type=int, default=SAMPLE["days"])
    p.add_argument("--customers", type=int, default=SAMPLE["customers"],
                   help="customers on day one (sales scale with them)")
    p.add_argument("--seed", type=int, default=SAMPLE["seed"])
    p.add_argument("--landing-only", action="store_true",
                   help="only landing_zone/ (no broken day, no final_results/)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    if args.command == "generate":
        minilake.generate(args.root, start=args.start, days=args.days, customers=args.customers,
                          seed=args.seed, landing_only=args.landing_only,
                          progress=sys.stderr.isatty())
    return 0
