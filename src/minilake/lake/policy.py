"""A root's history policy (docs/guarantees.md, docs/history.md): how long table versions are kept.

By default every version of every table is kept for ever: a small shop's lake is small, and
time travel by version is what an audit asks for. A root may set a retention in ``minilake.toml``
at its top::

    [history]
    keep_days = 90          # or "forever" (the default)

Then versions older than that may be removed — never sooner, and only by the run's history
step, which says what it removed. The policy is written into every table minilake makes, as
Delta table properties, so that no library or tool acting on its own defaults removes history:
delta-rs, for one, deletes log entries older than 30 days at a checkpoint when a table sets
nothing (``delta.logRetentionDuration`` defaults to 30 days, ``delta.enableExpiredLogCleanup``
to true).
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass

from minilake.lake import storage

FILE = "minilake.toml"
FOREVER_DAYS = 365_000      # what "for ever" is written as where Delta wants a duration


@dataclass(frozen=True)
class Policy:
    keep_days: int | None = None        # None: for ever

    def properties(self) -> dict[str, str]:
        """The table properties that hold the policy: log entries (and so versions) and the
        files of removed versions are kept ``keep_days``, and nothing removes them on its own
        (minilake's history step does, and says so)."""
        days = f"interval {FOREVER_DAYS if self.keep_days is None else self.keep_days} days"
        return {"delta.enableExpiredLogCleanup": "false", "delta.logRetentionDuration": days,
                "delta.deletedFileRetentionDuration": days}

    def holds(self, configuration: dict[str, str]) -> bool:
        """Whether a table's properties are this policy's."""
        return all(configuration.get(k) == v for k, v in self.properties().items())

    def describe(self) -> str:
        return ("every version kept" if self.keep_days is None
                else f"versions kept {self.keep_days} day(s)")


class PolicyError(ValueError):
    """A ``minilake.toml`` that does not say a policy minilake can follow."""


def settings_text(root) -> str | None:
    """The text of the root's settings file, ``minilake.toml`` (its history policy here, the
    sources' contracts: docs/contracts.md); None if it has none."""
    try:
        return (root / FILE).read_text(encoding="utf-8")
    except FileNotFoundError:
        return None


def of(root) -> Policy:
    """The policy ``root`` declares (its ``minilake.toml``), the default if it declares none."""
    path = root / FILE
    text = settings_text(root)
    if text is None:
        return Policy()
    where = f"{storage.uri(path) if not storage.is_local(path) else path}"
    try:
        settings = tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        raise PolicyError(f"{where}: not TOML: {error}") from None
    history = settings.get("history", {})
    if not isinstance(history, dict):
        raise PolicyError(f"{where}: [history] must be a table, e.g. keep_days = 90")
    unknown = sorted(set(history) - {"keep_days"})
    if unknown:
        raise PolicyError(f"{where}: [history] has no setting {unknown[0]!r} (only keep_days)")
    days = history.get("keep_days", "forever")
    if days == "forever":
        return Policy()
    if isinstance(days, bool) or not isinstance(days, int) or days < 0:
        raise PolicyError(f"{where}: [history] keep_days must be a whole number of days "
                          f"(0 or more) or \"forever\", not {days!r}")
    return Policy(days)


def of_table(path) -> Policy:
    """The policy of the root a table (``ROOT/tables/…``) lies under."""
    text = str(path)
    if "/tables/" not in text:
        return Policy()
    base = text.rsplit("/tables/", 1)[0]
    for parent in [path, *path.parents]:
        if str(parent) == base:
            return of(parent)
    return Policy()
