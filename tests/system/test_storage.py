"""The storage seam on a local root (README, Tables and files in object storage): a root that does
not exist or a scheme minilake
does not know is a one-line error and nothing is created; a file is published whole or not at
all. (The same operations on S3 are tests/system/test_s3.py's.)"""

from __future__ import annotations

import pytest
from support.commands import minilake

from minilake.lake import storage


@pytest.mark.parametrize("command", [["run"], ["split"], ["status"], ["reset"], ["marts"],
                                     ["sql", "SELECT 1"], ["export", "customer"]])
def test_a_mistyped_local_root_is_one_line_and_is_not_created(command, tmp_path):
    missing = tmp_path / "typo" / "root"
    done = minilake(*command, "--root", str(missing))
    assert done.returncode == 2
    assert done.stderr.strip() == (f"minilake {command[0]}: root {missing} does not exist; give "
                                   f"the folder that holds landing_zone/ (or an "
                                   f"s3://bucket/prefix)")
    assert not (tmp_path / "typo").exists()


@pytest.mark.parametrize("root", ["s3x://lake/x", "gs://lake/x", "ftp://host/x"])
def test_an_unknown_scheme_is_one_line_and_nothing_is_created(root, tmp_path):
    done = minilake("run", "--root", root, cwd=tmp_path)
    assert done.returncode == 2
    scheme = root.split("://")[0]
    assert done.stderr.strip() == (f"minilake run: root {root}: minilake does not know the "
                                   f"scheme {scheme!r}; a root is a local folder or "
                                   f"s3://bucket/prefix")
    assert list(tmp_path.iterdir()) == []


def test_a_file_is_published_whole_or_not_at_all(tmp_path):
    target = tmp_path / "reports" / "r.csv"
    storage.write_bytes(target, b"first")
    with pytest.raises(RuntimeError), storage.publish(target) as out:
        out.write(b"half of the sec")
        raise RuntimeError("killed while writing")
    assert target.read_bytes() == b"first"
    assert sorted(p.name for p in target.parent.iterdir()) == ["r.csv"]


def test_a_local_move_renames_and_a_tree_is_listed_sorted(tmp_path):
    (tmp_path / "a" / "b").mkdir(parents=True)
    (tmp_path / "a" / "b" / "2.txt").write_text("2")
    (tmp_path / "a" / "1.txt").write_text("1")
    assert [p.relative_to(tmp_path).as_posix() for p in storage.tree(tmp_path / "a")] == [
        "a/1.txt", "a/b/2.txt"]
    assert storage.files(tmp_path / "nowhere") == []
    storage.move(tmp_path / "a" / "1.txt", tmp_path / "c" / "1.txt")
    assert (tmp_path / "c" / "1.txt").read_text() == "1"
    assert not (tmp_path / "a" / "1.txt").exists()
    assert storage.create_exclusive(tmp_path / "lease", b"x")
    assert not storage.create_exclusive(tmp_path / "lease", b"y")
    assert (tmp_path / "lease").read_bytes() == b"x"


def test_a_held_roots_kept_listing_follows_what_this_process_writes_in_the_folder(tmp_path):
    """Under a held root, a folder listed to be kept (the archive's, for the run state:
    minilake.lake.unchanged) is kept as listed, then with what this process publishes, moves
    and removes in it: it then equals the folder listed again. Another process's change is
    not in it. A folder not there is kept as empty; nothing is kept unless asked, nor outside
    a held root."""
    from minilake.lake.lock import hold

    root = tmp_path / "root"
    folder = root / "archive" / "customer"
    folder.mkdir(parents=True)
    for name in ("b.csv", "d.csv"):
        (folder / name).write_bytes(b"x" * len(name))
    (folder / "link").symlink_to(folder / "b.csv")
    (root / "landing.csv").write_bytes(b"landed")
    (folder / ".c.csv.partial").write_bytes(b"half")       # what a run killed mid-write left
    key = str(folder)
    with hold(root, "test") as claim:
        storage.entries(folder)
        assert key not in claim.listings                               # not asked to keep
        regular, odd = storage.entries(folder, keep=True)
        assert odd == [("link", "symbolic link")]
        assert claim.listings[key] == ({n: (s, m) for n, s, m in regular}, dict(odd))
        storage.write_bytes(folder / "a.csv", b"new")                  # added
        storage.write_bytes(folder / "b.csv", b"rewritten")            # changed
        storage.move(folder / "d.csv", folder / "e.csv")               # renamed
        storage.move(root / "landing.csv", folder / "f.csv")           # moved in
        storage.remove(folder / "link")                                # an odd entry gone
        storage.write_bytes(folder / "c.csv", b"again")   # over a killed write's partial file
        kept = claim.listings.pop(key)
        regular, odd = storage.entries(folder)
        assert kept == ({n: (s, m) for n, s, m in regular}, dict(odd))
        assert sorted(kept[0]) == ["a.csv", "b.csv", "c.csv", "e.csv", "f.csv"] and odd == []
        (folder / "g.csv").write_bytes(b"someone else's")             # not through storage
        storage.entries(folder, keep=True)
        (folder / "h.csv").write_bytes(b"someone else's, later")
        assert "g.csv" in claim.listings[key][0] and "h.csv" not in claim.listings[key][0]
        storage.entries(root / "archive" / "sales", keep=True)         # not there
        assert claim.listings[str(root / "archive" / "sales")] == ({}, {})
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    storage.entries(outside, keep=True)
    assert str(outside) not in claim.listings
