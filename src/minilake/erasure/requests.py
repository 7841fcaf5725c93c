"""The erasure stage (docs/architecture.md): each pending erasure request applied in file-date
order, before any other delivery of the run — resolved, staged, put in place, the customer
table rebuilt (by the load stage) and its earlier versions purged, the marts recomputed (by the
outbound stage) and theirs purged, the rejected rows read again from the rewritten error
reports and theirs purged, logged; and the customer files not applied yet scrubbed of the
customers erased before them. A killed run finishes a request the next time."""

from __future__ import annotations

import datetime as dt
import logging
from typing import TYPE_CHECKING

from minilake import stopping
from minilake.contract.sources import ERASURE_REQUESTS, SOURCES, of_root
from minilake.crashpoints import crashpoint
from minilake.erasure import plan as erasure_plan
from minilake.erasure import scrub
from minilake.lake import delta, logs, storage
from minilake.lake.layout import KEPT, MARTS, Layout
from minilake.lake.logs import Ledger
from minilake.load import rejects
from minilake.load.ingest import (
    Delivery,
    FileOutcome,
    Progress,
    Quarantined,
    archived,
    check_file,
    ingest_source,
    log_row,
    not_applied,
    quarantine,
    write_report,
)
from minilake.outbound import marts

if TYPE_CHECKING:
    from minilake.load.distributed import Engine

log = logging.getLogger(__name__)


def apply_requests(layout: Layout, ingest_log: logs.IngestLog, ledger: Ledger,
                    allow_mass_delete: bool, bar: Progress, engine: Engine | None = None
                    ) -> list[FileOutcome]:
    """Apply pending erasure request files in file-date order (finishing one a killed run
    started), each ending with the customer table rebuilt from the rewritten archive."""
    source = ERASURE_REQUESTS
    pending = not_applied(layout, source, archived(layout, source, ledger), ledger)
    staged = layout.scratch("erasure")
    for folder in sorted({p.relative_to(staged).parts[0] for p in storage.tree(staged)}):
        if not (layout.archive(source.name) / folder).exists() or \
                folder not in {d.name for d in pending}:
            storage.remove_tree(staged / folder)   # its request was logged applied: done
    outcomes = []
    bar.add(len(pending))
    for delivery in pending:
        stopping.check(f"applying {source.name}/{delivery.name}")
        outcomes += _apply_one(layout, ingest_log, delivery, allow_mass_delete, bar, engine)
        bar.step(source, delivery.name)
    return outcomes


def _apply_one(layout: Layout, ingest_log: logs.IngestLog, delivery: Delivery,
               allow_mass_delete: bool, bar: Progress, engine: Engine | None = None
               ) -> list[FileOutcome]:
    source, name = ERASURE_REQUESTS, delivery.name
    logged = logs.read_erasure_log(layout)
    logged = logged[logged["request_file"] == name]
    # a request resent with other content (a second request of that date) is applied too:
    # the erasure log's rows of its name from before its earlier content was logged applied
    # are that content's, not this one's (a run killed after logging this one's erasure
    # left rows after it)
    earlier = logs.read_log(layout)
    earlier = earlier.loc[(earlier["source"] == source.name) & (earlier["file"] == name)
                          & (earlier["status"] == "applied")
                          & (earlier["sha256"] != delivery.sha256), "finished_at"]
    if len(earlier) and len(logged):
        logged = logged[logged["erased_at"] > earlier.max()]
    plan = erasure_plan.manifest(layout, name)
    if plan is None and not len(logged):
        try:
            checked = check_file(source, delivery)
        except Quarantined as reason:
            return bar.tell([quarantine(layout, ingest_log, source, delivery, str(reason))])
        good = checked.rows.good
        ids = {int(i) for i in good.column("customer_id").drop_null().to_pylist()}
        emails = {e for e in good.column("email").to_pylist() if e}
        plan = erasure_plan.plan(layout, name, ids, emails)
        crashpoint("erasure.planned")
    outcomes = []
    if plan is not None and not len(logged) and not plan.anyone:
        # nobody it names is known: nothing to rewrite, rebuild or purge (the ids are
        # logged all the same, so that a later delivery of them is stored erased)
        log.warning("erasure %s: nobody it names is known under the root; nothing changed",
                    name)
        _log_erasure(layout, plan, None)
        crashpoint("erasure.logged")
    elif plan is not None and not len(logged):
        erasure_plan.put_in_place(layout, plan)
        ids = set(plan.ids)
        personal = scrub.customer_contract(layout).personal
        said = scrub.scrub_outputs(layout, ids, scrub.personal_values(layout, ids, personal),
                                   personal)
        for line in said:
            log.warning("erasure %s: %s", name, line)
        crashpoint("erasure.outputs_scrubbed")
        note = f"erasure requested by {name}"
        customer = layout.table("customer")
        # A killed run may have rebuilt the table and logged its files already: its commit
        # says so (the purge keeps it: history then starts there), and nothing is pending.
        ledger = Ledger(logs.read_log(layout))
        pending = not_applied(layout, SOURCES["customer"],
                           archived(layout, SOURCES["customer"], ledger), ledger)
        if delta.exists(customer) and (pending or note not in set(
                delta.versions(customer)["note"])):
            outcomes += ingest_source(layout, ingest_log, of_root(layout.root)["customer"],
                                       ledger, allow_mass_delete, bar, rebuild=note,
                                       erased=frozenset(plan.archived()), engine=engine)
        crashpoint("erasure.rebuilt")
        kept = erasure_plan.purge_history(customer) if delta.exists(customer) else None
        crashpoint("erasure.purged")
        # the marts hold names: recomputed from the erased tables, their history purged
        marts.refresh(layout.root)
        for mart in (*MARTS, *KEPT):
            if delta.exists(layout.mart(mart)):
                erasure_plan.purge_history(layout.mart(mart))
        crashpoint("erasure.marts_purged")
        # and so do the rejected rows: the replayed files' reports again, the rest purged
        rejects.sync(layout)
        if delta.exists(layout.rejects):
            erasure_plan.purge_history(layout.rejects)
        crashpoint("erasure.rejects_purged")
        _log_erasure(layout, plan, kept)
        crashpoint("erasure.logged")
    resolved = {e: set(found) for e, found in plan.resolved.items()} if plan else {}
    text = delivery.path.read_text(encoding="utf-8-sig")
    rewritten = scrub.rewrite_request(text, resolved)
    if rewritten != text:
        storage.write_bytes(delivery.path, rewritten.encode("utf-8"))
        crashpoint("erasure.request_rewritten")
    final = Delivery.at(delivery.path)
    try:
        checked = check_file(source, final)
    except Quarantined as reason:         # cannot happen to a file that read before
        return outcomes + bar.tell([quarantine(layout, ingest_log, source, final,
                                                str(reason))])
    outcome = FileOutcome(source.name, name, "applied", rows_read=checked.rows_read,
                          rows_loaded=checked.rows.good.num_rows,
                          rows_rejected=checked.rows.rows_rejected,
                          note=_erased_note(plan))
    write_report(checked.rows.bad, layout.error_report(source.name,
                                                            source.report_stamp(name)))
    ingest_log.append([log_row(source, final, outcome, checked.clock)])
    crashpoint("erasure.request_logged")
    storage.remove_tree(erasure_plan.staging(layout, name))
    return outcomes + bar.tell([outcome])


def _log_erasure(layout: Layout, plan: erasure_plan.Plan, kept: int | None) -> None:
    """The request's rows of the erasure log: each id it named (and found, or not), each
    email that named nobody; ids and counts only, never personal data (docs/guarantees.md)."""
    now = dt.datetime.now(dt.UTC)
    found = set(plan.found)
    rows = [{"request_file": plan.request, "customer_id": i,
             "named_by": plan.how.get(str(i), "") + ("" if i in found else " (not found)"),
             "versions_rewritten": plan.versions.get(str(i), 0),
             "files_rewritten": len(plan.files) if i in found else 0,
             "history_from_version": kept, "erased_at": now} for i in plan.ids]
    rows += [{"request_file": plan.request, "customer_id": None, "named_by": "email (no match)",
              "versions_rewritten": 0, "files_rewritten": 0, "history_from_version": kept,
              "erased_at": now}] * plan.unmatched
    logs.append_erasure_log(layout, rows)


def _erased_note(plan: erasure_plan.Plan | None) -> str:
    """What a request did, for its line: how many customers it erased, and whom it named
    that the root does not hold."""
    if plan is None:
        return "0 customer(s) erased"
    unknown = len(plan.ids) - len(plan.found) + plan.unmatched
    note = f"{len(plan.found)} customer(s) erased"
    if unknown:
        note += f"; {unknown} named nobody known"
    return note + ("" if plan.anyone else "; nothing changed")


def scrub_pending(layout: Layout, ledger: Ledger, deliveries: list[Delivery]
                  ) -> list[Delivery]:
    """Customer files not applied yet (of ``deliveries``, the archived ones) lose the rows of
    customers erased before (docs/guarantees.md). Returns the archived customer files as they
    are now."""
    erased = logs.read_erasure_log(layout)["customer_id"].dropna()
    if not len(erased):
        return deliveries
    ids = {int(i) for i in erased}
    rewritten: dict[str, Delivery] = {}
    contract = scrub.customer_contract(layout)
    for delivery in not_applied(layout, SOURCES["customer"], deliveries, ledger):
        new = scrub.scrub_file(delivery.path, ids, contract)
        if new is not None:
            storage.write_bytes(delivery.path, new)
            rewritten[delivery.name] = Delivery.at(delivery.path, new)
            log.warning("customer/%s: rows of erased customers erased before it is applied",
                        delivery.name)
    # as a listing would give them, the archive not listed again (3,300 files at three years):
    # less a file not_applied just moved to quarantine/ (logged so, its move left undone)
    return [rewritten.get(d.name, d) for d in deliveries
            if ledger.status(d.name, d.sha256) != "quarantined" or d.path.exists()]
