"""Data sets of the accuracy flows, all read from local files (no network at run time).

* ``digits``: scikit-learn's shipped 8 x 8 digits (1797 images, 10 classes).
* ``fashion``: Fashion-MNIST (28 x 28, 10 classes, 60000 + 10000) from the Debian package
  ``dataset-fashion-mnist`` (IDX files, gzip).
* ``fine_foods``: the ``small_fine_foods`` Amazon reviews (4000 train, 1000 test; label
  ``great`` vs ``other``) from the Debian package ``r-cran-modeldata`` (an R lazy-load
  database, read by :mod:`.rdata`).
* ``austen``: the six novels of the Debian package ``r-cran-janeaustenr`` (lines of text).

The Debian packages are unpacked by ``scripts/setup.d/30-datasets.sh`` into
``$HYFLEXPIM_DEBDATA`` (default ``~/.cache/hyflexpim/debdata``); :func:`debdata_dir`
finds them and a missing package gives a ``FileNotFoundError`` naming the script.
"""

import gzip
import os
import struct
from pathlib import Path

import numpy as np

from .rdata import LazyLoadDB, as_table

__all__ = ["debdata_dir", "cache_dir", "read_idx", "load_digits", "load_fashion",
           "load_fine_foods", "load_austen", "CharVocab", "split_indices"]

AUSTEN_BOOKS = ("sensesensibility", "prideprejudice", "mansfieldpark", "emma",
                "northangerabbey", "persuasion")


def cache_dir():
    """``$HYFLEXPIM_CACHE`` or ``~/.cache/hyflexpim`` (checkpoints, unpacked data)."""
    return Path(os.environ.get("HYFLEXPIM_CACHE", Path.home() / ".cache" / "hyflexpim"))


def debdata_dir():
    return Path(os.environ.get("HYFLEXPIM_DEBDATA", cache_dir() / "debdata"))


def _pkg_path(pkg, rel, root=None):
    p = Path(root or debdata_dir()) / pkg / rel
    if not p.exists():
        raise FileNotFoundError(
            f"{p} not found: run scripts/setup.d/30-datasets.sh to unpack Debian package {pkg}")
    return p


def read_idx(path):
    """An IDX file (the MNIST format, optionally gzip) as a NumPy array."""
    raw = Path(path).read_bytes()
    if raw[:2] == b"\x1f\x8b":
        raw = gzip.decompress(raw)
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0:
        raise ValueError(f"{path} is not an IDX file")
    dtypes = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
    if raw[2] not in dtypes:
        raise ValueError(f"{path}: unknown IDX element type {raw[2]:#x}")
    nd = raw[3]
    shape = struct.unpack_from(f">{nd}I", raw, 4)
    data = np.frombuffer(raw, dtype=dtypes[raw[2]], offset=4 + 4 * nd)
    if data.size != int(np.prod(shape)):
        raise ValueError(f"{path}: expected {int(np.prod(shape))} elements, found {data.size}")
    return data.reshape(shape)


def split_indices(n, test_fraction, seed=0):
    """A seeded random split of ``range(n)``: (train indices, test indices)."""
    perm = np.random.default_rng(seed).permutation(n)
    k = int(round(n * test_fraction))
    return perm[k:], perm[:k]


def load_digits(seed=0):
    """scikit-learn's digits: ((x_train, y_train), (x_test, y_test)); x float32 in [0, 1],
    shape (N, 8, 8); a seeded 75/25 split."""
    from sklearn.datasets import load_digits as _ld
    d = _ld()
    x = (d.images / 16.0).astype(np.float32)
    y = d.target.astype(np.int64)
    tr, te = split_indices(len(y), 0.25, seed)
    return (x[tr], y[tr]), (x[te], y[te])


def load_fashion(root=None, limit_train=None, limit_test=None):
    """Fashion-MNIST: ((x_train, y_train), (x_test, y_test)), x float32 in [0, 1] (N, 28, 28)."""
    base = "usr/share/datasets/fashion-mnist"
    out = []
    for split, lim in (("train", limit_train), ("t10k", limit_test)):
        x = read_idx(_pkg_path("dataset-fashion-mnist", f"{base}/{split}-images-idx3-ubyte.gz", root))
        y = read_idx(_pkg_path("dataset-fashion-mnist", f"{base}/{split}-labels-idx1-ubyte.gz", root))
        if lim is not None:
            x, y = x[:lim], y[:lim]
        out.append(((x / 255.0).astype(np.float32), y.astype(np.int64)))
    return tuple(out)


def _rdata(pkg, name, root=None):
    stem = _pkg_path(pkg, f"usr/lib/R/site-library/{pkg.replace('r-cran-', '')}/data/Rdata.rdx", root)
    return LazyLoadDB(stem.with_suffix(""))


def load_fine_foods(root=None):
    """``small_fine_foods``: ((texts, labels), (texts, labels)), label 1 = ``great``."""
    db = _rdata("r-cran-modeldata", "modeldata", root)
    out = []
    for name in ("training_data", "testing_data"):
        t = as_table(db.load(name))
        texts = [s or "" for s in t["review"]]
        labels = np.array([1 if s == "great" else 0 for s in t["score"]], dtype=np.int64)
        out.append((texts, labels))
    return tuple(out)


def load_austen(root=None, books=AUSTEN_BOOKS):
    """The novels as ``{book: text}`` (lines joined with newlines)."""
    db = _rdata("r-cran-janeaustenr", "janeaustenr", root)
    return {b: "\n".join(s or "" for s in db.load(b).values) for b in books}


class CharVocab:
    """Character vocabulary of a text; unknown characters map to index 0 (``\\0``)."""

    def __init__(self, text):
        self.chars = ["\0"] + sorted(set(text) - {"\0"})
        self.index = {c: i for i, c in enumerate(self.chars)}

    def __len__(self):
        return len(self.chars)

    def encode(self, text):
        return np.array([self.index.get(c, 0) for c in text], dtype=np.int64)

    def decode(self, ids):
        return "".join(self.chars[int(i)] for i in ids)
