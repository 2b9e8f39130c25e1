"""CIFAR-10 from a local copy, in either published archive format. Nothing is downloaded.

Accepted ``path`` forms:

- a directory holding the batch files themselves (the contents of ``cifar-10-batches-bin/``
  or ``cifar-10-batches-py/``), or a parent directory holding one of those folders;
- the archive itself (``cifar-10-binary.tar.gz`` or ``cifar-10-python.tar.gz``, any
  ``.tar``/``.tar.gz``/``.tgz``): read in memory with :mod:`tarfile`, nothing is extracted
  to disk, and an archive with an unsafe member path (absolute, ``..``) or whose batch
  members are links is refused.

Formats:

- binary version: ``data_batch_1.bin`` .. ``data_batch_5.bin`` and ``test_batch.bin``; each
  record is 1 label byte followed by 3072 pixel bytes (1024 red, 1024 green, 1024 blue,
  row-major 32x32).
- python version: ``data_batch_1`` .. ``data_batch_5`` and ``test_batch``, each a pickled
  dict with keys ``b'batch_label'``, ``b'labels'`` (list of ints), ``b'data'`` (uint8
  ``(10000, 3072)``) and ``b'filenames'``. It is loaded with :class:`RestrictedUnpickler`,
  which resolves only the globals that such a file needs (numpy array and dtype
  reconstruction, and ``_codecs.encode`` that Python 3 uses for bytes at protocol <= 2);
  any other global raises :class:`UnsafePickleError` before anything is called.

``load_cifar10(path, split="train")`` returns ``(images uint8 (n, 3, 32, 32), labels int64)``.
``split`` is ``train`` (every ``data_batch_*`` present, in order), ``test`` or ``all``.

Every way a copy can be unusable raises a :class:`CifarDataError` (a ``ValueError``) whose
message names the file: a refused pickle (:class:`UnsafePickleError`), an unsafe archive
(:class:`UnsafeArchiveError`), or anything else (:class:`CifarFormatError`: a corrupt pickle,
a truncated or corrupt archive, a file of the wrong size). Sizes are checked before anything
is read: a batch file or archive member larger than a CIFAR-10 batch can be
(:data:`MAX_BATCH_BYTES`), or an archive whose members add up to more than the whole set
(:data:`MAX_ARCHIVE_BYTES`), is refused, so a small archive that would unpack to gigabytes
costs nothing.
"""

from __future__ import annotations

import io
import lzma
import os
import pickle
import posixpath
import re
import tarfile
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

try:  # numpy >= 2
    from numpy._core.multiarray import _reconstruct as _np_reconstruct
    from numpy._core.numeric import _frombuffer as _np_frombuffer
except ImportError:  # pragma: no cover - numpy 1.x
    from numpy.core.multiarray import _reconstruct as _np_reconstruct
    from numpy.core.numeric import _frombuffer as _np_frombuffer

__all__ = [
    "MAX_ARCHIVE_BYTES",
    "MAX_BATCH_BYTES",
    "CifarDataError",
    "CifarFormatError",
    "RestrictedUnpickler",
    "UnsafeArchiveError",
    "UnsafePickleError",
    "load_cifar10",
    "parse_binary_batch",
    "parse_python_batch",
    "path_problem",
    "safe_pickle_loads",
]

RECORD_BYTES = 1 + 3072
BIN_DIR = "cifar-10-batches-bin"
PY_DIR = "cifar-10-batches-py"
TRAIN_BATCHES = tuple(f"data_batch_{i}" for i in range(1, 6))
TEST_BATCH = "test_batch"
SPLITS = ("train", "test", "all")
#: A published batch holds 10,000 images: 10,000 x 3073 = 30,730,000 bytes in the binary
#: version, ~31.0 MB pickled in the python version (pixels, labels and file names). A
#: larger batch file or archive member is refused before it is read.
MAX_BATCH_BYTES = 32_000_000
#: The whole set unpacks to ~185 MB in either version (6 batches plus metadata); an archive
#: whose members declare more is refused while its headers are read.
MAX_ARCHIVE_BYTES = 256_000_000
#: Members an archive may list (the published ones hold 8).
MAX_ARCHIVE_MEMBERS = 10_000

EXPECTED = (
    "expected CIFAR-10 in one of the published formats: a directory holding "
    "data_batch_1.bin..data_batch_5.bin and test_batch.bin (binary version, "
    f"'{BIN_DIR}/') or data_batch_1..data_batch_5 and test_batch (python version, "
    f"'{PY_DIR}/'), or a parent directory of either folder, or the .tar.gz archive itself"
)


class CifarDataError(ValueError):
    """A local CIFAR-10 copy cannot be used; the message names the file and why."""


class UnsafePickleError(pickle.UnpicklingError, CifarDataError):
    """A pickle asked for a global that the CIFAR-10 python format does not need."""


class UnsafeArchiveError(CifarDataError):
    """A tar archive has a member path that could escape its folder, or a linked batch."""


class CifarFormatError(CifarDataError):
    """A file does not hold what the CIFAR-10 format says it should (corrupt, truncated,
    too large)."""


# ------------------------------------------------------------------------------------------
# Restricted unpickling
# ------------------------------------------------------------------------------------------


def _safe_reconstruct(subtype: Any, shape: Any, dtype: Any) -> np.ndarray:
    if subtype is not np.ndarray:
        raise UnsafePickleError("array reconstruction allowed for numpy.ndarray only")
    return _np_reconstruct(subtype, shape, dtype)


def _safe_dtype(*args: Any) -> np.dtype:
    dt = np.dtype(*args)
    if dt.hasobject:
        raise UnsafePickleError("object dtypes are not allowed")
    return dt


def _safe_frombuffer(buf: Any, dtype: Any, shape: Any, order: Any, *rest: Any) -> np.ndarray:
    if not isinstance(buf, bytes | bytearray | memoryview | pickle.PickleBuffer):
        raise UnsafePickleError("array buffer must be bytes")
    if np.dtype(dtype).hasobject:
        raise UnsafePickleError("object dtypes are not allowed")
    return _np_frombuffer(buf, dtype, shape, order, *rest)


def _safe_codecs_encode(obj: Any, encoding: str = "utf-8", errors: str = "strict") -> bytes:
    # Python 3 pickles bytes at protocol <= 2 as _codecs.encode(str, 'latin1').
    if not isinstance(obj, str) or encoding not in ("latin1", "latin-1", "iso-8859-1"):
        raise UnsafePickleError("_codecs.encode is allowed only for latin-1 text")
    return obj.encode("latin-1", errors)


_ALLOWED: dict[tuple[str, str], Callable[..., Any] | type] = {
    ("numpy.core.multiarray", "_reconstruct"): _safe_reconstruct,
    ("numpy._core.multiarray", "_reconstruct"): _safe_reconstruct,
    ("numpy.core.numeric", "_frombuffer"): _safe_frombuffer,
    ("numpy._core.numeric", "_frombuffer"): _safe_frombuffer,
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): _safe_dtype,
    ("_codecs", "encode"): _safe_codecs_encode,
}


class RestrictedUnpickler(pickle.Unpickler):
    """Unpickler for the CIFAR-10 python batches: ``find_class`` resolves only numpy array
    and dtype reconstruction (both the ``numpy.core`` names of old pickles and the
    ``numpy._core`` names of numpy >= 2) and latin-1 ``_codecs.encode``; every other global
    raises :class:`UnsafePickleError` without importing anything."""

    def find_class(self, module: str, name: str) -> Any:
        try:
            return _ALLOWED[(module, name)]
        except KeyError:
            raise UnsafePickleError(
                f"refusing to load global {module}.{name}: a CIFAR-10 python batch holds only "
                "dicts, lists, bytes, ints and numpy uint8 arrays (the file may have been "
                "tampered with)"
            ) from None

    def persistent_load(self, pid: Any) -> Any:
        raise UnsafePickleError("persistent ids are not allowed")


def safe_pickle_loads(data: bytes) -> Any:
    """Unpickle ``data`` with :class:`RestrictedUnpickler` (``encoding='bytes'`` as the
    Python 2 era CIFAR-10 files need)."""
    return RestrictedUnpickler(io.BytesIO(data), encoding="bytes").load()


# ------------------------------------------------------------------------------------------
# Batch parsers
# ------------------------------------------------------------------------------------------


def parse_binary_batch(data: bytes, source: str = "<bytes>") -> tuple[np.ndarray, np.ndarray]:
    """Records of 1 label byte + 3072 pixel bytes -> ``(images (n,3,32,32) uint8, labels)``."""
    if len(data) == 0 or len(data) % RECORD_BYTES != 0:
        raise CifarFormatError(
            f"{source}: size {len(data)} is not a positive multiple of the {RECORD_BYTES}-byte "
            "CIFAR-10 binary record (1 label byte + 3072 pixel bytes)"
        )
    rec = np.frombuffer(data, dtype=np.uint8).reshape(-1, RECORD_BYTES)
    labels = rec[:, 0].astype(np.int64)
    if labels.max() > 9:
        raise CifarFormatError(f"{source}: label byte {int(labels.max())} outside 0..9")
    images = rec[:, 1:].reshape(-1, 3, 32, 32).copy()
    return images, labels


def _get(d: dict, key: str) -> Any:
    if key.encode() in d:
        return d[key.encode()]
    if key in d:
        return d[key]
    raise CifarFormatError(f"missing key {key!r}")


def parse_python_batch(data: bytes, source: str = "<bytes>") -> tuple[np.ndarray, np.ndarray]:
    """A pickled python-version batch -> ``(images (n,3,32,32) uint8, labels int64)``,
    loaded with the restricted unpickler."""
    try:
        obj = safe_pickle_loads(data)
    except UnsafePickleError as e:
        raise UnsafePickleError(f"{source}: {e}") from None
    except Exception as e:  # a corrupt pickle can raise almost any exception type
        # The exception may quote the file's bytes: repr keeps the message on one line.
        raise CifarFormatError(
            f"{source}: not a readable pickle ({type(e).__name__}: {repr(str(e))[1:-1][:200]})"
        ) from None
    if not isinstance(obj, dict):
        raise CifarFormatError(f"{source}: expected a pickled dict, got {type(obj).__name__}")
    try:
        raw = _get(obj, "data")
        labels = _get(obj, "labels")
    except CifarFormatError as e:
        raise CifarFormatError(f"{source}: {e}") from None
    if not isinstance(raw, np.ndarray) or raw.dtype != np.uint8 or raw.ndim != 2 or (
        raw.shape[1] != 3072
    ):
        raise CifarFormatError(f"{source}: b'data' must be a uint8 array of shape (n, 3072)")
    labels = np.asarray(labels)
    if labels.dtype.kind not in "iu" or labels.shape != (raw.shape[0],):
        raise CifarFormatError(f"{source}: b'labels' must hold {raw.shape[0]} integers")
    if labels.size and (labels.min() < 0 or labels.max() > 9):
        raise CifarFormatError(f"{source}: labels outside 0..9")
    return raw.reshape(-1, 3, 32, 32).copy(), labels.astype(np.int64)


# ------------------------------------------------------------------------------------------
# Locating the files
# ------------------------------------------------------------------------------------------


def _wanted(split: str) -> tuple[str, ...]:
    if split == "train":
        return TRAIN_BATCHES
    if split == "test":
        return (TEST_BATCH,)
    return (*TRAIN_BATCHES, TEST_BATCH)


def _dir_source(root: Path) -> tuple[str, dict[str, Path]] | None:
    """Find batch files in ``root`` or its ``cifar-10-batches-{bin,py}`` folders.
    Returns ``(format, {batch_name: path})``."""
    for cand in (root, root / BIN_DIR, root / PY_DIR):
        if not cand.is_dir():
            continue
        binf = {n: cand / f"{n}.bin" for n in (*TRAIN_BATCHES, TEST_BATCH)}
        binf = {n: p for n, p in binf.items() if p.is_file()}
        if binf:
            return "binary", binf
        pyf = {n: cand / n for n in (*TRAIN_BATCHES, TEST_BATCH)}
        pyf = {n: p for n, p in pyf.items() if p.is_file()}
        if pyf:
            return "python", pyf
    return None


_MEMBER_RE = re.compile(r"^(data_batch_[1-5]|test_batch)(\.bin)?$")


def _check_member_name(name: str) -> None:
    norm = name.replace("\\", "/")
    if norm.startswith("/") or re.match(r"^[A-Za-z]:", norm):
        raise UnsafeArchiveError(f"archive member {name!r} has an absolute path; refusing")
    if ".." in posixpath.normpath(norm).split("/") or ".." in norm.split("/"):
        raise UnsafeArchiveError(f"archive member {name!r} escapes its folder; refusing")


#: What a truncated or corrupt (compressed) archive raises while it is read.
_ARCHIVE_ERRORS = (tarfile.TarError, EOFError, zlib.error, lzma.LZMAError, OSError)


def _tar_source(path: Path, split: str) -> tuple[str, dict[str, bytes]]:
    try:
        return _read_tar(path, split)
    except CifarDataError:
        raise
    except _ARCHIVE_ERRORS as e:
        raise CifarFormatError(
            f"{path}: not a readable tar archive, or a truncated or corrupt one "
            f"({type(e).__name__}: {str(e)[:200]}); {EXPECTED}"
        ) from None


def _members(tf: tarfile.TarFile, path: Path) -> list[tarfile.TarInfo]:
    """The archive's members, their declared sizes checked before any data is read."""
    members: list[tarfile.TarInfo] = []
    total = 0
    while (m := tf.next()) is not None:
        _check_member_name(m.name)
        total += m.size
        if len(members) >= MAX_ARCHIVE_MEMBERS or total > MAX_ARCHIVE_BYTES:
            raise CifarFormatError(
                f"{path}: the archive lists more than CIFAR-10 holds (over "
                f"{MAX_ARCHIVE_MEMBERS:,} members or {MAX_ARCHIVE_BYTES // 10**6} MB "
                f"unpacked); refusing to unpack it"
            )
        members.append(m)
    return members


def _read_tar(path: Path, split: str) -> tuple[str, dict[str, bytes]]:
    try:
        tf = tarfile.open(path, mode="r:*")  # noqa: SIM115 (closed by the with below)
    except tarfile.TarError as e:
        raise CifarFormatError(f"{path}: not a readable tar archive ({e}); {EXPECTED}") from None
    with tf:
        members = _members(tf, path)
        found: dict[str, dict[str, tarfile.TarInfo]] = {"binary": {}, "python": {}}
        for m in members:
            base = posixpath.basename(m.name.replace("\\", "/"))
            mt = _MEMBER_RE.match(base)
            if not mt:
                continue
            if not m.isfile():
                raise UnsafeArchiveError(
                    f"archive member {m.name!r} is not a regular file (link or device); refusing"
                )
            fmt = "binary" if mt.group(2) else "python"
            found[fmt].setdefault(mt.group(1), m)
        fmt = "binary" if found["binary"] else "python" if found["python"] else None
        if fmt is None:
            raise CifarFormatError(f"{path}: the archive holds no CIFAR-10 batch; {EXPECTED}")
        out: dict[str, bytes] = {}
        for name in _wanted(split):
            m = found[fmt].get(name)
            if m is None:
                continue
            _check_size(f"{path}:{m.name}", m.size)
            f = tf.extractfile(m)
            if f is None:  # pragma: no cover - isfile() checked above
                raise CifarFormatError(f"{path}: cannot read member {m.name!r}")
            out[name] = f.read()
            if len(out[name]) != m.size:
                raise CifarFormatError(f"{path}: member {m.name!r} is truncated")
        return fmt, out


def _check_size(source: str, size: int) -> None:
    if size > MAX_BATCH_BYTES:
        raise CifarFormatError(
            f"{source}: {size:,} bytes, more than a CIFAR-10 batch of 10,000 images can hold "
            f"({MAX_BATCH_BYTES:,}); refusing to read it"
        )


def _read_batch_file(path: Path) -> bytes:
    _check_size(str(path), path.stat().st_size)
    return path.read_bytes()


#: File names of the batches, binary and python versions.
_BATCH_FILES = tuple(f"{name}{ext}" for ext in (".bin", "")
                     for name in (*TRAIN_BATCHES, TEST_BATCH))


def path_problem(path: str | None) -> str | None:
    """What is wrong with `path` as a local CIFAR-10 copy, or None when it looks usable.

    Cheap checks only (no batch is read): a folder must hold training batches itself or in
    `cifar-10-batches-bin/` or `cifar-10-batches-py/`; a file must be a tar archive
    (`tarfile.is_tarfile` reads its first header). The loader checks the contents.
    """
    if not path:
        return "no path given"
    p = Path(path).expanduser()
    try:
        if p.is_dir():
            for folder in (p, p / BIN_DIR, p / PY_DIR):
                if any((folder / name).is_file() for name in _BATCH_FILES):
                    return None
            return ("the folder holds no CIFAR-10 batch (data_batch_1.bin .. test_batch.bin, "
                    "or data_batch_1 .. test_batch), neither itself nor in "
                    "cifar-10-batches-bin/ or cifar-10-batches-py/")
        if p.is_file():
            try:
                if tarfile.is_tarfile(p):
                    return None
            except (EOFError, zlib.error, lzma.LZMAError, tarfile.TarError) as exc:
                # `is_tarfile` reads through the compression: a gzip, bzip2 or xz stream cut
                # before its first header raises the decompressor's error.
                return (f"a truncated or corrupt compressed archive ({type(exc).__name__}: "
                        f"{str(exc)[:120]})")
            return "this is a file but not a tar archive (.tar, .tar.gz, .tgz)"
    except OSError as exc:
        return f"cannot be read ({exc.strerror or exc})"
    return "no such file or folder" if not p.exists() else "not a regular file or folder"


def load_cifar10(path: str | os.PathLike, *, split: str = "train") -> tuple[np.ndarray, np.ndarray]:
    """Load CIFAR-10 images ``(n, 3, 32, 32) uint8`` and labels ``(n,) int64`` from a local
    copy (see the module docstring for the accepted forms)."""
    if split not in SPLITS:
        raise ValueError(f"load_cifar10: split must be one of {', '.join(SPLITS)}, got {split!r}")
    p = Path(path).expanduser()
    if not p.exists():
        raise FileNotFoundError(f"CIFAR-10 path {str(p)!r} does not exist; {EXPECTED}")

    blobs: dict[str, bytes]
    if p.is_dir():
        src = _dir_source(p)
        if src is None:
            raise CifarFormatError(f"{p}: holds no CIFAR-10 batch file; {EXPECTED}")
        fmt, files = src
        blobs = {n: _read_batch_file(files[n]) for n in _wanted(split) if n in files}
    else:
        fmt, blobs = _tar_source(p, split)
    if not blobs:
        raise CifarFormatError(
            f"{p}: no batch for split {split!r} (looked for "
            f"{', '.join(_wanted(split))} in the {fmt} format); {EXPECTED}"
        )
    parse = parse_binary_batch if fmt == "binary" else parse_python_batch
    parts = [parse(blobs[n], f"{p}:{n}") for n in _wanted(split) if n in blobs]
    images = np.concatenate([a for a, _ in parts])
    labels = np.concatenate([b for _, b in parts])
    return images, labels
