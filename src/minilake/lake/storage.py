"""The storage seam (docs/guarantees.md): a root is a local folder or ``s3://bucket/prefix``.

Every path minilake handles is a :class:`upath.UPath` (fsspec's pathlib): a local root gives
plain local paths, an S3 root gives paths on ``s3fs``. What pathlib cannot say the same way on
both is here: publishing a file whole (a local write goes to a partial file renamed into place;
an S3 object appears whole with its PUT), moving (a rename; on S3 a copy, then a delete),
comparing, deleting a folder, creating an object only if absent (the lock's lease), and the
settings each library needs to reach the same place: delta-rs's ``storage_options`` and
pyarrow's filesystem for Parquet.

S3 settings come from the usual environment: ``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY``,
``AWS_SESSION_TOKEN``, ``AWS_REGION`` (or ``AWS_DEFAULT_REGION``), and ``AWS_ENDPOINT_URL`` for
an S3-compatible store (an ``http://`` endpoint is used as given).

Longer than most because it is the only place that knows two filesystems: each operation is
written here for both, side by side.
"""

from __future__ import annotations

import contextlib
import filecmp
import fnmatch
import hashlib
import mmap
import os
import shutil
import stat as stat_module
import tempfile
from collections.abc import Iterator
from pathlib import Path, PurePath
from typing import IO, TYPE_CHECKING, Protocol
from urllib.parse import urlsplit

from minilake.crashpoints import crashpoint

if TYPE_CHECKING:                # imported when an S3 root is used: a local run does without
    from upath import UPath

SCHEMES = ("s3",)

class Holder(Protocol):
    """A command holding a root in this process (minilake.lake.lock's claim)."""

    def fence(self, doing: str) -> None:
        """Stop before ``doing`` unless the root is still this process's."""

    def forget(self, folder: str) -> None:
        """Let go of what it knows of the tables and folders at or under ``folder``
        (removed)."""

    # each local folder :func:`entries` was asked to keep for it, by path: its regular files
    # (name -> size, modification time in ns) and anything else (name -> kind), as listed,
    # then as this process changed them (:func:`_noted`)
    listings: dict[str, tuple[dict[str, tuple[int, int]], dict[str, str]]]


# root -> the command holding it, set by minilake.lake.lock while it does: every write below
# goes through its fence first (docs/guarantees.md), a folder removed is told to it, and the
# folders it lists to keep are kept for it (minilake.lake.unchanged)
holders: dict[str, Holder] = {}


def _held(text: str) -> tuple[str, Holder] | None:
    """(root, holder) of the held root ``text`` is or lies under, if any."""
    for root, holder in list(holders.items()):
        if text == root or text.startswith(root + "/"):
            return root, holder
    return None


def _fence(path: UPath | Path, doing: str) -> None:
    """Stop (the holder's ``LeaseLost``) before ``doing`` ``path`` unless the root it lies
    under is still this process's; nothing to check outside a held root."""
    if not holders:
        return
    text = str(path)
    held = _held(text)
    if held is not None and text != held[0]:
        held[1].fence(f"{doing} {text[len(held[0]) + 1:]}")


def _noted(path: Path, now: os.stat_result | None) -> None:
    """A file this process has just written (``now``: its status) or removed (None), in the
    holder's kept listing of its folder, if it keeps one: the listing is then the folder as
    the run read it and changed it. (Another process's change stays unseen there.)"""
    if not holders:
        return
    folder, name = os.path.split(str(path))
    held = _held(folder)
    known = held[1].listings.get(folder) if held is not None else None
    if known is None:
        return
    regular, odd = known
    odd.pop(name, None)
    if now is None:
        regular.pop(name, None)
    else:
        regular[name] = (now.st_size, now.st_mtime_ns)


class StorageError(ValueError):
    """A root that cannot be used: unknown scheme, missing, unreachable, or refused."""


def s3_settings() -> dict[str, str]:
    """The S3 settings of the environment (never printed: they hold the secret key)."""
    env = os.environ
    return {k: v for k, v in {
        "endpoint": env.get("AWS_ENDPOINT_URL_S3") or env.get("AWS_ENDPOINT_URL", ""),
        "key": env.get("AWS_ACCESS_KEY_ID", ""),
        "secret": env.get("AWS_SECRET_ACCESS_KEY", ""),
        "token": env.get("AWS_SESSION_TOKEN", ""),
        "region": env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION") or "us-east-1",
    }.items() if v}


# The root's first look (:func:`locate`) makes two requests at most, not botocore's five with
# back-off: an endpoint that nothing answers (a typo, a server not started) is said in a second
# or two, not in six to twelve (s3fs's own retries of a malformed answer stay). The run's own
# requests keep botocore's retries.
CHECK_ATTEMPTS = 2


def _s3_path(uri: str, attempts: int | None = None) -> UPath:
    from upath import UPath  # on first use: start-up stays light

    s = s3_settings()
    options = {"use_listings_cache": False,      # other writers (delta-rs, arrow) add files
               "client_kwargs": {"region_name": s["region"]}}
    if attempts is not None:
        options["config_kwargs"] = {"retries": {"total_max_attempts": attempts}}
    if "endpoint" in s:
        options["endpoint_url"] = s["endpoint"]
    for name in ("key", "secret", "token"):
        if name in s:
            options[name] = s[name]
    return UPath(uri, **options)


def where(path: UPath | Path | str) -> str:
    """The bucket and endpoint of an S3 path, for error messages; a local path as it is."""
    if is_local(path):
        return str(path)
    bucket = urlsplit(str(path)).netloc
    endpoint = s3_settings().get("endpoint", "AWS's default endpoint")
    return f"bucket {bucket!r} at {endpoint}"


def locate(root: str | Path | UPath, create: bool = False) -> UPath | Path:
    """The root as a path, checked: it must exist (a local folder, or an S3 prefix holding at
    least one object), unless ``create``. Nothing is created here."""
    if not isinstance(root, str | PurePath):        # a path on S3 already
        return root
    text = str(root)
    scheme = urlsplit(text).scheme if "://" in text else ""
    if scheme == "":
        path = Path(text).resolve()
        if not create and not path.is_dir():
            what = "is not a folder" if path.exists() else "does not exist"
            raise StorageError(f"root {path} {what}; give the folder that holds landing_zone/ "
                               f"(or an s3://bucket/prefix)")
        return path
    if scheme not in SCHEMES:
        raise StorageError(f"root {text}: minilake does not know the scheme {scheme!r}; a root "
                           f"is a local folder or s3://bucket/prefix")
    path = _s3_path(text.rstrip("/"))
    bucket = urlsplit(text).netloc
    if not bucket:
        raise StorageError(f"root {text}: no bucket named; a root is s3://bucket/prefix")
    looked = _s3_path(text.rstrip("/"), attempts=CHECK_ATTEMPTS)
    try:
        looked.fs.info(bucket)
        found = create or _holds_anything(looked)
    except FileNotFoundError:
        raise StorageError(f"root {text}: no {where(path)}") from None
    except PermissionError as e:
        raise StorageError(f"root {text}: {where(path)} refused the credentials "
                           f"(AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY): {_short(e)}") from None
    except Exception as e:             # noqa: BLE001 - botocore's errors are not OSErrors
        raise StorageError(f"root {text}: cannot reach {where(path)}: {_short(e)}") from None
    if not found:
        raise StorageError(f"root {text} does not exist: nothing under that prefix in "
                           f"{where(path)}; upload landing_zone/ there first")
    return path


def _holds_anything(path: UPath) -> bool:
    """Whether any object lies under the prefix (one listing request, one level)."""
    try:
        return bool(path.fs.ls(path.path, detail=False))
    except FileNotFoundError:
        return False


def _short(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return text[0] if text else type(error).__name__


def as_path(text: str | Path) -> UPath | Path:
    """A file or folder named by the user (a local path or an ``s3://`` URI), unchecked."""
    if not isinstance(text, str) or "://" not in text:
        return Path(text).resolve()
    if not text.startswith("s3://"):
        raise StorageError(f"{text}: minilake does not know the scheme "
                           f"{urlsplit(text).scheme!r}; use a local path or s3://bucket/key")
    return _s3_path(text)


def is_local(path: UPath | Path | str) -> bool:
    """A local path (a ``pathlib`` path, or text without a scheme), not one on S3."""
    if isinstance(path, str):
        return "://" not in path
    return isinstance(path, PurePath)


def uri(path: UPath | Path) -> str:
    """What delta-rs and DuckDB take: a local path, or ``s3://bucket/key``."""
    return str(path) if is_local(path) else f"s3://{path.path}"


def delta_options(path: UPath | Path) -> dict[str, str] | None:
    """delta-rs's storage options for ``path`` (None for a local path). Commits on S3 are
    conditional writes (``If-None-Match``): two writers cannot both win a version, so no
    locking provider or unsafe rename is needed."""
    if is_local(path):
        return None
    s = s3_settings()
    options = {"AWS_REGION": s["region"]}
    if "endpoint" in s:
        options["AWS_ENDPOINT_URL"] = s["endpoint"]
        if s["endpoint"].startswith("http://"):
            options["AWS_ALLOW_HTTP"] = "true"
    for name, option in (("key", "AWS_ACCESS_KEY_ID"), ("secret", "AWS_SECRET_ACCESS_KEY"),
                         ("token", "AWS_SESSION_TOKEN")):
        if name in s:
            options[option] = s[name]
    return options


def arrow(path: UPath | Path):
    """(pyarrow filesystem, path on it) for reading and writing Parquet at ``path``: Arrow's
    own local or S3 filesystem, so that no Python runs inside a read (see delta.dataset)."""
    import pyarrow.fs as pafs  # on first use: start-up stays light

    if is_local(path):
        return pafs.LocalFileSystem(), str(path)
    s = s3_settings()
    endpoint = urlsplit(s.get("endpoint", ""))
    fs = pafs.S3FileSystem(access_key=s.get("key"), secret_key=s.get("secret"),
                           session_token=s.get("token"), region=s["region"],
                           endpoint_override=endpoint.netloc or None,
                           scheme=endpoint.scheme or "https")
    return fs, path.path


def mkdirs(path: UPath | Path) -> None:
    """A folder and its parents (nothing to do on S3, where folders are key prefixes)."""
    if is_local(path):
        Path(path).mkdir(parents=True, exist_ok=True)


@contextlib.contextmanager
def publish(path: UPath | Path, mode: str = "wb", **kwargs) -> Iterator[IO]:
    """A file to write ``path`` through, seen by readers whole or not at all: locally a
    partial file renamed into place, on S3 a local scratch file uploaded as one object when
    the block ends (memory stays flat however large the file). An error in the block leaves
    ``path`` as it was."""
    if is_local(path):
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_name(f".{path.name}.partial")    # one writer per root (the lock)
        try:
            with partial.open(mode, **kwargs) as handle:
                yield handle
            _fence(path, "writing")
            os.replace(partial, path)
            _noted(path, path.lstat())
        finally:
            partial.unlink(missing_ok=True)
            _noted(partial, None)           # one a killed run left, if the listing had it
        return
    with tempfile.TemporaryDirectory(prefix="minilake-upload-") as scratch:
        local = Path(scratch) / path.name
        with local.open(mode, **kwargs) as handle:
            yield handle
        _fence(path, "writing")
        path.fs.put_file(str(local), path.path)


def write_bytes(path: UPath | Path, data: bytes) -> None:
    """``path`` holds ``data``, published whole."""
    with publish(path) as handle:
        handle.write(data)


def move(source: UPath | Path, target: UPath | Path) -> None:
    """``source`` to ``target`` (replacing it): a rename locally; on S3 a copy, then a delete,
    so that a crash in between leaves both (the caller recognises the copy)."""
    _fence(target, "moving a file to")
    if is_local(source) and is_local(target):
        Path(target).parent.mkdir(parents=True, exist_ok=True)
        os.replace(source, target)
        _noted(Path(source), None)
        _noted(Path(target), Path(target).lstat())
        return
    if is_local(source):                    # a local scratch file published to the bucket
        target.fs.put_file(str(source), target.path)
    else:
        source.fs.copy(source.path, target.path)
    crashpoint("storage.copied")
    remove(source)


def copy(source: UPath | Path, target: UPath | Path) -> None:
    """``source``'s bytes to ``target``, published whole (either may be local or on S3)."""
    if is_local(source) and is_local(target):
        with publish(target) as out, Path(source).open("rb") as handle:
            shutil.copyfileobj(handle, out, 1 << 20)
        return
    with source.open("rb") as handle:
        write_bytes(target, handle.read())


def same_bytes(a: UPath | Path, b: UPath | Path) -> bool:
    if is_local(a) and is_local(b):
        return filecmp.cmp(a, b, shallow=False)
    if a.stat().st_size != b.stat().st_size:
        return False
    return sha256(a) == sha256(b)


def sha256(path: UPath | Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def remove(path: UPath | Path) -> None:
    """A file, if it is there."""
    _fence(path, "removing")
    if is_local(path):
        Path(path).unlink(missing_ok=True)
        _noted(Path(path), None)
    else:
        with contextlib.suppress(FileNotFoundError):
            path.fs.rm_file(path.path)


def remove_tree(path: UPath | Path) -> None:
    """A folder and everything under it, if it is there."""
    _fence(path, "removing")
    text = str(path).rstrip("/")
    if (held := _held(text)) is not None:
        held[1].forget(text)
    if is_local(path):
        shutil.rmtree(path, ignore_errors=True)
    else:
        with contextlib.suppress(FileNotFoundError):
            path.fs.rm(path.path, recursive=True)


def listing(folder: UPath | Path, pattern: str = "*") -> list[tuple[UPath | Path, int, int]]:
    """(path, size in bytes, modification time in ns) of the files directly in ``folder``
    matching ``pattern`` (none if it is not there), sorted: one listing request on S3, not one
    per file."""
    return scan(folder, pattern)[0]


def irregular(folder: UPath | Path, pattern: str = "*") -> list[tuple[UPath | Path, str]]:
    """The entries directly in ``folder`` that are not regular files, and what each is (a
    symbolic link, a folder, a FIFO, a socket, a device): minilake reads only regular files
    inside the root, and follows no link."""
    return scan(folder, pattern)[1]


_KINDS = [(stat_module.S_ISLNK, "symbolic link"), (stat_module.S_ISDIR, "folder"),
          (stat_module.S_ISFIFO, "FIFO"), (stat_module.S_ISSOCK, "socket"),
          (stat_module.S_ISCHR, "character device"), (stat_module.S_ISBLK, "block device")]


def scan(folder: UPath | Path, pattern: str = "*"
         ) -> tuple[list[tuple[UPath | Path, int, int]], list[tuple[UPath | Path, str]]]:
    """:func:`listing` and :func:`irregular` of ``folder`` from one look at it (one request
    on S3; locally one ``lstat`` per entry: a symbolic link is not followed, so a link pointing
    outside the root, a dangling one or a loop is seen as the link it is)."""
    regular, odd = entries(folder, pattern)
    return ([(folder / name, size, mtime_ns) for name, size, mtime_ns in regular],
            [(folder / name, kind) for name, kind in odd])


def entries(folder: UPath | Path, pattern: str = "*", keep: bool = False
            ) -> tuple[list[tuple[str, int, int]], list[tuple[str, str]]]:
    """:func:`scan` by name: (name, size, modification time in ns) of each regular file, and
    (name, kind) of anything else, sorted by name; no path made per file, for folders that
    grow with the lake's age (an archive of three years: 3,300 files, every run). ``keep``:
    a local folder listed whole under a held root is kept for its holder, a folder not there
    as empty (``Holder.listings``)."""
    if not is_local(folder):
        found = folder.fs.glob(f"{folder.path}/{pattern}", detail=True)
        named = sorted((name.rsplit("/", 1)[-1], info) for name, info in found.items())
        return ([(name, int(info["size"]), _mtime_ns(info))
                 for name, info in named if info.get("type") == "file"],
                [(name, "folder") for name, info in named if info.get("type") == "directory"])
    regular, odd = [], []
    held = _held(str(folder)) if keep and holders and pattern == "*" else None
    try:
        with os.scandir(folder) as listed:
            found = [e for e in listed if fnmatch.fnmatchcase(e.name, pattern)]
    except (FileNotFoundError, NotADirectoryError):
        if held is not None:
            held[1].listings[str(folder)] = ({}, {})
        return [], []
    for entry in found:
        try:
            st = entry.stat(follow_symlinks=False)
        except FileNotFoundError:           # gone since the listing
            continue
        if stat_module.S_ISREG(st.st_mode):
            regular.append((entry.name, st.st_size, st.st_mtime_ns))
        else:
            odd.append((entry.name, next((k for test, k in _KINDS if test(st.st_mode)),
                                         "special file")))
    regular.sort()
    odd.sort()
    if held is not None:
        held[1].listings[str(folder)] = ({n: (size, mtime_ns) for n, size, mtime_ns in regular},
                                         dict(odd))
    return regular, odd


def files(folder: UPath | Path, pattern: str = "*") -> list[UPath | Path]:
    """The files directly in ``folder`` matching ``pattern`` (none if it is not there), sorted."""
    return [path for path, _, _ in listing(folder, pattern)]


def names(folder: UPath | Path, pattern: str = "*") -> list[str]:
    """The names of the regular files directly in ``folder`` matching ``pattern`` (none if it
    is not there), sorted: :func:`files` without a path or an ``lstat`` per file (locally,
    the kind of each entry comes with the folder's listing), for folders that grow with the
    lake's age (a page per run)."""
    if not is_local(folder):
        return [path.name for path in files(folder, pattern)]
    try:
        with os.scandir(folder) as entries:
            return sorted(e.name for e in entries if fnmatch.fnmatchcase(e.name, pattern)
                          and e.is_file(follow_symlinks=False))
    except (FileNotFoundError, NotADirectoryError):
        return []


def tree(folder: UPath | Path) -> list[UPath | Path]:
    """Every file under ``folder``, sorted (none if it is not there)."""
    if is_local(folder):              # regular files only; no link followed (os.walk's default)
        found = []
        for base, _, names in os.walk(folder):
            for name in names:
                path = Path(base) / name
                if stat_module.S_ISREG(path.lstat().st_mode):
                    found.append(path)
        return sorted(found)
    names = folder.fs.find(folder.path, withdirs=False, detail=False)
    return sorted(folder.joinpath(n[len(folder.path):].lstrip("/")) for n in names)


def create_exclusive(path: UPath | Path, data: bytes) -> str | None:
    """Write ``path`` only if nothing is there (``If-None-Match: *`` on S3, ``O_EXCL``
    locally). Returns what identifies the write (the object's ETag on S3; the path locally),
    or None if something was there."""
    if is_local(path):
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            return None
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        return str(path)
    try:
        return path.fs.pipe_file(path.path, data, mode="create")["ETag"]
    except OSError as e:
        if _precondition_failed(e):
            return None
        raise


def replace_if(path: UPath, data: bytes, etag: str) -> str | None:
    """Overwrite the S3 object ``path`` only if it is still the version ``etag``
    (``If-Match``); the new ETag, or None if another writer changed or removed it."""
    try:
        return path.fs.pipe_file(path.path, data, IfMatch=etag)["ETag"]
    except OSError as e:               # FileNotFoundError included: removed meanwhile
        if isinstance(e, FileNotFoundError) or _precondition_failed(e):
            return None
        raise


def etag(path: UPath) -> str | None:
    """An S3 object's ETag, or None if there is none."""
    try:
        return path.fs.info(path.path)["ETag"]
    except FileNotFoundError:
        return None


def read_with_etag(path: UPath) -> tuple[bytes, str] | None:
    """An S3 object's bytes and ETag, or None if there is none."""
    try:
        info = path.fs.info(path.path)
        return path.fs.cat_file(path.path), info["ETag"]
    except FileNotFoundError:
        return None


def _precondition_failed(error: OSError) -> bool:
    text = str(error)
    return "pre-condition" in text or "precondition" in text.lower() or "412" in text


def stat(path: UPath | Path) -> tuple[int, int]:
    """(size in bytes, modification time in ns) of a file."""
    if is_local(path):
        result = os.stat(path)
        return result.st_size, result.st_mtime_ns
    info = path.fs.info(path.path)
    return int(info["size"]), _mtime_ns(info)


def _mtime_ns(info: dict) -> int:
    modified = info.get("LastModified") or info.get("mtime")
    return int(modified.timestamp() * 1_000_000_000) if modified is not None else 0


class Mapped:
    """A non-empty file's bytes as an Arrow buffer (memory-mapped locally, read whole from
    S3), whose pages can be let go once read (``release_before``): a mapped page once read
    counts in the process's resident memory until the file is unmapped (or the kernel needs
    the page), so reading a 1.2 GB file whole held 1.2 GB beside what was parsed from it. A
    page let go and read again is read again from the page cache or the disk: nothing changes
    but the time. Where ``madvise`` is missing (Windows), pages are kept."""

    def __init__(self, path: UPath | Path):
        import pyarrow as pa  # on first use: start-up stays light

        self._map = None
        if is_local(path):
            with open(path, "rb") as handle:
                self._map = mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ)
            self.data = pa.py_buffer(self._map)
        else:
            self.data = pa.py_buffer(path.fs.cat_file(path.path))
        self._released = 0

    def rewind(self) -> None:
        """The file is read again from its start: its pages are let go again as it goes."""
        self._released = 0

    def release_before(self, end: int) -> None:
        """Let the whole pages before byte ``end`` go from memory."""
        if self._map is None or not hasattr(mmap, "MADV_DONTNEED"):
            return
        end -= end % mmap.PAGESIZE
        if end > self._released:
            self._map.madvise(mmap.MADV_DONTNEED, self._released, end - self._released)
            self._released = end
