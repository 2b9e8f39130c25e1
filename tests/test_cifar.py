"""CIFAR-10 loaders on tiny fake archives in both published formats, and the restricted
unpickler."""

from __future__ import annotations

import io
import os
import pickle
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch

from abm.fl import Federation, load_dataset, partition, split_validation
from abm.fl.cifar import (
    CifarDataError,
    CifarFormatError,
    UnsafeArchiveError,
    UnsafePickleError,
    load_cifar10,
    path_problem,
    safe_pickle_loads,
)
from abm.fl.shapley import all_masks

PER_BATCH = 4  # 5 train batches x 4 + 4 test = 24 records


def _records(seed: int, n: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 10, size=n).astype(np.int64)
    images = rng.integers(0, 256, size=(n, 3072), dtype=np.uint8)
    return images, labels


def _batches() -> dict[str, tuple[np.ndarray, np.ndarray]]:
    out = {f"data_batch_{i}": _records(i, PER_BATCH) for i in range(1, 6)}
    out["test_batch"] = _records(99, PER_BATCH)
    return out


def _bin_bytes(images: np.ndarray, labels: np.ndarray) -> bytes:
    rec = np.concatenate([labels.astype(np.uint8)[:, None], images], axis=1)
    return rec.tobytes()


def _py_bytes(name: str, images: np.ndarray, labels: np.ndarray, protocol: int = 2) -> bytes:
    d = {
        b"batch_label": f"{name} of fake".encode(),
        b"labels": [int(v) for v in labels],
        b"data": images,
        b"filenames": [f"img_{i}.png".encode() for i in range(len(labels))],
    }
    return pickle.dumps(d, protocol=protocol)


def write_bin_dir(root: Path) -> Path:
    d = root / "cifar-10-batches-bin"
    d.mkdir(parents=True)
    for name, (x, y) in _batches().items():
        (d / f"{name}.bin").write_bytes(_bin_bytes(x, y))
    (d / "batches.meta.txt").write_text("airplane\nautomobile\n")
    return d


def write_py_dir(root: Path, protocol: int = 2) -> Path:
    d = root / "cifar-10-batches-py"
    d.mkdir(parents=True)
    for name, (x, y) in _batches().items():
        (d / name).write_bytes(_py_bytes(name, x, y, protocol))
    return d


def make_tar(folder: Path, out: Path) -> Path:
    with tarfile.open(out, "w:gz") as tf:
        tf.add(folder, arcname=folder.name)
    return out


def expected(split: str) -> tuple[np.ndarray, np.ndarray]:
    b = _batches()
    names = {
        "train": [f"data_batch_{i}" for i in range(1, 6)],
        "test": ["test_batch"],
        "all": [*(f"data_batch_{i}" for i in range(1, 6)), "test_batch"],
    }[split]
    x = np.concatenate([b[n][0] for n in names]).reshape(-1, 3, 32, 32)
    y = np.concatenate([b[n][1] for n in names])
    return x, y


@pytest.mark.parametrize("fmt", ["bin", "py"])
@pytest.mark.parametrize("where", ["folder", "parent", "tar"])
def test_loads_both_formats_from_every_path_form(tmp_path, fmt, where):
    folder = write_bin_dir(tmp_path) if fmt == "bin" else write_py_dir(tmp_path)
    path = {
        "folder": folder,
        "parent": tmp_path,
        "tar": make_tar(folder, tmp_path / f"cifar-10-{fmt}.tar.gz"),
    }[where]
    for split in ("train", "test", "all"):
        x, y = load_cifar10(path, split=split)
        ex, ey = expected(split)
        assert x.dtype == np.uint8 and x.shape == ex.shape
        assert y.dtype == np.int64
        np.testing.assert_array_equal(x, ex)
        np.testing.assert_array_equal(y, ey)


def test_binary_record_layout(tmp_path):
    """1 label byte, then 1024 red, 1024 green, 1024 blue bytes (row-major 32x32)."""
    img = np.zeros((3, 32, 32), np.uint8)
    img[0, 0, 1] = 11  # red, row 0, col 1
    img[1, 2, 0] = 22  # green, row 2, col 0
    img[2, 31, 31] = 33
    rec = bytes([7]) + img.tobytes()
    d = tmp_path / "cifar-10-batches-bin"
    d.mkdir()
    (d / "test_batch.bin").write_bytes(rec)
    x, y = load_cifar10(tmp_path, split="test")
    assert y.tolist() == [7]
    assert x[0, 0, 0, 1] == 11 and x[0, 1, 2, 0] == 22 and x[0, 2, 31, 31] == 33


@pytest.mark.parametrize("protocol", [0, 1, 2, 3, 4, 5])
def test_restricted_unpickler_reads_numpy_at_every_protocol(protocol):
    x, y = _records(3, 5)
    out = safe_pickle_loads(_py_bytes("b", x, y, protocol))
    np.testing.assert_array_equal(out[b"data"], x)
    assert out[b"labels"] == y.tolist()
    arr = safe_pickle_loads(pickle.dumps(np.arange(6, dtype=np.int64), protocol=protocol))
    np.testing.assert_array_equal(arr, np.arange(6))


def test_python2_style_numpy_core_names_are_accepted():
    """The published files name numpy.core.multiarray._reconstruct (numpy 1 / Python 2)."""
    data = pickle.dumps({b"data": np.ones((2, 3), np.uint8)}, protocol=2)
    legacy = data.replace(b"numpy._core.multiarray", b"numpy.core.multiarray")
    assert legacy != data
    np.testing.assert_array_equal(safe_pickle_loads(legacy)[b"data"], np.ones((2, 3)))


class _Evil:
    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_malicious_pickle_is_refused_without_running_anything(tmp_path):
    marker = tmp_path / "pwned"
    payload = pickle.dumps({b"data": _Evil(str(marker)), b"labels": []}, protocol=2)
    with pytest.raises(UnsafePickleError, match=r"refusing to load global (posix|os|nt)\.system"):
        safe_pickle_loads(payload)
    assert not marker.exists()
    # ... and through the loader, as a tampered batch file
    d = tmp_path / "cifar-10-batches-py"
    d.mkdir()
    (d / "test_batch").write_bytes(payload)
    with pytest.raises(UnsafePickleError):
        load_cifar10(tmp_path, split="test")
    assert not marker.exists()


@pytest.mark.parametrize(
    "payload",
    [
        pickle.dumps(eval, protocol=2),  # builtins.eval
        pickle.dumps(io.BytesIO, protocol=4),
        pickle.dumps(np.load, protocol=4),
        b"cbuiltins\nexec\n(S'import os'\ntR.",
        b"cnumpy\nload\n(S'x'\ntR.",
    ],
)


def test_other_globals_are_refused(payload):
    with pytest.raises(UnsafePickleError):
        safe_pickle_loads(payload)


def test_object_arrays_are_refused():
    payload = pickle.dumps(np.array([1, "a"], dtype=object), protocol=2)
    with pytest.raises(UnsafePickleError):
        safe_pickle_loads(payload)


def test_unsafe_tar_member_paths_are_refused(tmp_path):
    x, y = _records(1, 2)
    blob = _bin_bytes(x, y)
    for bad in ("../test_batch.bin", "/abs/test_batch.bin", "a/../../test_batch.bin"):
        out = tmp_path / "evil.tar.gz"
        with tarfile.open(out, "w:gz") as tf:
            info = tarfile.TarInfo(bad)
            info.size = len(blob)
            tf.addfile(info, io.BytesIO(blob))
        with pytest.raises(UnsafeArchiveError, match="refusing"):
            load_cifar10(out, split="test")


def test_linked_batch_members_are_refused(tmp_path):
    out = tmp_path / "link.tar"
    with tarfile.open(out, "w") as tf:
        info = tarfile.TarInfo("cifar-10-batches-bin/test_batch.bin")
        info.type = tarfile.SYMTYPE
        info.linkname = "/etc/passwd"
        tf.addfile(info)
    with pytest.raises(UnsafeArchiveError, match="not a regular file"):
        load_cifar10(out, split="test")


def test_missing_or_wrong_paths_say_what_was_expected(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"data_batch_1\.bin"):
        load_cifar10(tmp_path / "nope")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(CifarFormatError, match=r"cifar-10-batches-py"):
        load_cifar10(empty)
    notar = tmp_path / "x.tar.gz"
    notar.write_bytes(b"not a tar")
    with pytest.raises(CifarFormatError, match="expected CIFAR-10"):
        load_cifar10(notar)
    with pytest.raises(ValueError, match="split"):
        load_cifar10(empty, split="validation")


def test_corrupt_files_are_reported(tmp_path):
    d = tmp_path / "cifar-10-batches-bin"
    d.mkdir()
    (d / "test_batch.bin").write_bytes(b"\x01" * 100)
    with pytest.raises(CifarFormatError, match="3073-byte"):
        load_cifar10(tmp_path, split="test")
    d2 = tmp_path / "p" / "cifar-10-batches-py"
    d2.mkdir(parents=True)
    (d2 / "test_batch").write_bytes(pickle.dumps({b"labels": [1]}, protocol=2))
    with pytest.raises(CifarFormatError, match="data"):
        load_cifar10(d2, split="test")


def test_only_train_batches_present_for_test_split(tmp_path):
    d = tmp_path / "cifar-10-batches-bin"
    d.mkdir()
    x, y = _records(1, 3)
    (d / "data_batch_1.bin").write_bytes(_bin_bytes(x, y))
    assert load_cifar10(tmp_path)[0].shape == (3, 3, 32, 32)
    with pytest.raises(CifarFormatError, match="test_batch"):
        load_cifar10(tmp_path, split="test")


def test_load_dataset_cifar10_and_a_cnn_round(tmp_path):
    folder = write_py_dir(tmp_path)
    rng = np.random.default_rng(0)
    ds = load_dataset("cifar10", rng=rng, path=str(folder), split="all")
    assert ds.X.shape == (24, 3, 32, 32) and ds.X.dtype == np.float32
    assert ds.n_classes == 10 and ds.name == "cifar10"
    assert abs(float(ds.X.mean())) < 1e-4  # standardised per channel
    sub = load_dataset("cifar10", rng=rng, path=str(folder), n_samples=10, standardize=False)
    assert len(sub) == 10 and sub.X.min() >= 0 and sub.X.max() <= 1
    with pytest.raises(ValueError, match="path: required"):
        load_dataset("cifar10", rng=rng)

    train, val = split_validation(ds, 0.25, rng)
    parts = partition(train.y, 3, scheme="iid", rng=rng)
    fed = Federation(
        train, parts, val, ["honest", "free_rider", "honest"], model="cnn", hidden=8,
        batch_size=4, seed=0,
    )
    res = fed.run_round()
    assert res.updates.shape == (3, fed.n_params)
    masks = all_masks(3)
    np.testing.assert_array_equal(res.game(masks), res.game.evaluate_naive(masks))
    assert torch.all(res.updates[1] == 0)


def test_batch_files_larger_than_a_batch_are_refused_before_reading(tmp_path):
    from abm.fl.cifar import MAX_BATCH_BYTES, RECORD_BYTES, CifarDataError

    d = tmp_path / "cifar-10-batches-bin"
    d.mkdir()
    with open(d / "data_batch_1.bin", "wb") as f:  # sparse: nothing is written or read
        f.truncate(MAX_BATCH_BYTES + RECORD_BYTES)
    with pytest.raises(CifarFormatError, match="more than a CIFAR-10 batch"):
        load_cifar10(tmp_path)
    assert issubclass(UnsafePickleError, CifarDataError)
    assert issubclass(CifarDataError, ValueError)


def test_a_corrupt_pickle_is_a_format_error_naming_the_file(tmp_path):
    d = tmp_path / "cifar-10-batches-py"
    d.mkdir()
    (d / "test_batch").write_bytes(b"\x80\x02}q\x00(X\x04")  # cut short
    with pytest.raises(CifarFormatError, match=r"test_batch: not a readable pickle"):
        load_cifar10(tmp_path, split="test")


@pytest.mark.parametrize("compression", ["gz", "bz2", "xz"])
def test_every_cut_of_a_compressed_archive_is_a_cifar_data_error_naming_the_file(
        tmp_path, compression):
    """A compressed copy cut anywhere (a download stopped half-way): the cheap check of
    `wsf validate` (`path_problem`) answers or says what is wrong, never raises, and the
    loader raises CifarDataError naming the file; never EOFError, zlib or lzma errors."""
    whole = tmp_path / f"whole.tar.{compression}"
    with tarfile.open(whole, f"w:{compression}") as tf:
        folder = write_bin_dir(tmp_path / "src")
        tf.add(folder, arcname=folder.name)
    data = whole.read_bytes()
    # (a cut in the compressed trailer alone loses no batch: tarfile stops at the last one)
    for cut in (1, 10, 64, 512, len(data) // 100, len(data) // 2, len(data) * 9 // 10):
        path = tmp_path / f"cut{cut}.tar.{compression}"
        path.write_bytes(data[:cut])
        problem = path_problem(str(path))
        assert problem is None or "archive" in problem, problem
        with pytest.raises(CifarDataError, match=str(path)):
            load_cifar10(path)
