"""Reports, the comparison with final_results/, and the notebooks (issue 4)."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import REPO

import minilake
from minilake.apps.notebooks import execute
from minilake.outbound import reports

UNTIL = "2024-10-15"
GENERATED = ["archive", "tables", "error_reports", "reports", "quarantine"]


def digests(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def checkout(committed, tmp_path_factory) -> Path:
    """A copy of the repository as checked out: data folders and both notebooks."""
    root = tmp_path_factory.mktemp("checkout")
    for name in ("landing_zone", "samples", "final_results"):
        shutil.copytree(committed / name, root / name)
    for name in ("workbook.ipynb", "reload.ipynb"):
        shutil.copy(REPO / name, root / name)
    return root


# the tests of the one workbook_run (a module fixture: one worker makes it, not each)
WORKBOOK = pytest.mark.xdist_group("workbook_run")


@pytest.fixture(scope="module")
def workbook_run(checkout):
    done = execute(checkout / "workbook.ipynb", checkout, out=checkout / "reports")
    frames = {n: pd.read_csv(checkout / "reports" / f"{n}.csv", dtype=str)
              for n in reports.MIDP_307}
    frames |= {n: reports.build(n, checkout, UNTIL) for n in reports.REPORTS[:3]}
    return done, frames


@WORKBOOK
def test_workbook_runs_without_errors_and_every_verdict_matches(workbook_run, checkout):
    done, _ = workbook_run
    assert done.errors == []
    assert done.verdicts == [f"{n}: matches" for n in reports.REPORTS] + [
        "expected_errors: matches"]
    assert (checkout / "reports" / "workbook.html").stat().st_size > 10_000
    for name in reports.MIDP_307:
        assert (checkout / "reports" / f"{name}.csv").exists()


@WORKBOOK
def test_the_numbers_behind_both_charts_equal_final_results(workbook_run, checkout):
    _, frames = workbook_run
    growth = pd.read_csv(checkout / "final_results" / "customer_growth.csv")
    assert frames["customer_growth"]["date"].tolist() == growth["date"].tolist()
    assert frames["customer_growth"]["customers"].tolist() == growth["customers"].tolist()
    split = pd.read_csv(checkout / "final_results" / "sales_by_membership.csv")
    mine = frames["sales_by_membership"]
    assert mine["sale_date"].tolist() == split["sale_date"].tolist()
    for column in ("active", "inactive"):
        assert np.allclose(mine[column], split[column], atol=0.01)


@WORKBOOK
def test_midp_307_files_equal_the_references(workbook_run, checkout):
    _, frames = workbook_run
    for name in reports.MIDP_307:
        ref = pd.read_csv(checkout / "final_results" / f"{name}.csv", dtype=str)
        pd.testing.assert_frame_equal(frames[name], ref)


@WORKBOOK
def test_comparison_names_the_cell_that_differs(workbook_run, checkout, tmp_path):
    ref = pd.read_csv(checkout / "final_results" / "product_sale_breakdown.csv", dtype=str)
    renamed = ref.columns[4]
    changed = tmp_path / "final_results"
    shutil.copytree(checkout / "final_results", changed)
    ref.rename(columns={renamed: renamed + " Renamed"}).to_csv(
        changed / "product_sale_breakdown.csv", index=False)
    frame = reports.build("product_sale_breakdown", checkout, UNTIL)
    verdict = reports.compare(frame, pd.read_csv(changed / "product_sale_breakdown.csv",
                                                 dtype=str), "product_sale_breakdown")
    assert not verdict.matches
    assert renamed in verdict.detail and renamed + " Renamed" in verdict.detail
    # and a single changed money cell is named with its row and both values
    ref.loc[3, renamed] = f"{float(ref.loc[3, renamed]) + 0.05:.2f}"
    verdict = reports.compare(frame, ref, "product_sale_breakdown")
    assert verdict.detail.startswith(f"1 cell(s): row 4 {renamed}: ")
    assert str(verdict).startswith("product_sale_breakdown: DIFFERS")
    ref.loc[3, renamed] = f"{float(ref.loc[3, renamed]) - 0.045:.2f}"     # within a cent
    assert reports.compare(frame, ref, "product_sale_breakdown").matches


@WORKBOOK
def test_reload_then_workbook_again_gives_identical_reports(workbook_run, checkout,
                                                           sample_root):
    _, first = workbook_run
    again = execute(checkout / "workbook.ipynb", checkout)        # from the top, no reset
    assert again.ok, again.verdicts + again.errors
    reload = execute(checkout / "reload.ipynb", checkout)
    assert reload.errors == []
    # the folders as committed, which are exactly the generator's sample (test_generate)
    assert digests(checkout / "landing_zone") == digests(sample_root / "landing_zone")
    assert digests(checkout / "samples") == digests(sample_root / "samples")
    for name in GENERATED:
        assert not (checkout / name).exists(), name
    third = execute(checkout / "workbook.ipynb", checkout, out=checkout / "reports")
    assert third.ok, third.verdicts + third.errors
    for name in reports.MIDP_307:
        pd.testing.assert_frame_equal(
            pd.read_csv(checkout / "reports" / f"{name}.csv", dtype=str), first[name])
    for name in reports.REPORTS[:3]:
        pd.testing.assert_frame_equal(reports.build(name, checkout, UNTIL), first[name])


def test_report_cli_writes_csvs_with_verdicts(repo_copy, tmp_path):
    from support.commands import minilake as minilake_cli

    assert minilake.run(repo_copy).ok
    out = tmp_path / "out"
    done = minilake_cli("report", "--root", str(repo_copy), "--until", UNTIL, "--out", str(out))
    assert done.returncode == 0, done.stderr
    assert sorted(p.stem for p in out.iterdir()) == sorted(reports.REPORTS)
    assert done.stdout.count(": matches") == len(reports.REPORTS)
    money = (out / "sales_by_membership.csv").read_text().splitlines()[1].split(",")[1]
    assert money.split(".")[1].__len__() == 2, "money with two decimals"
