"""R lazy-load reader and data loaders (models/rdata.py, models/datasets.py)."""

import gzip
import lzma
import struct
import zlib

import numpy as np
import pytest

from hyflexpim.models import rdata, datasets as ds


# --- a small independent writer of R's XDR serialisation (format version 3) ---------
def _i(v):
    return struct.pack(">i", v)


def _hdr():
    return b"X\n" + _i(3) + _i(0x040202) + _i(0x030500) + _i(5) + b"UTF-8"


def _char(s):
    if s is None:
        return _i(9) + _i(-1)
    b = s.encode()
    return _i(9 | (1 << 15)) + _i(len(b)) + b        # CHARSXP, UTF-8 flag


def _attrs(pairs):
    out = b""
    for tag, val in pairs:
        out += _i(2 | (1 << 10)) + _i(1) + _char(tag) + val   # LISTSXP with tag, SYMSXP
    return out + _i(254)


def _vec(t, n, body, attrs=None):
    flags = t | ((1 << 9) if attrs else 0)
    return _i(flags) + _i(n) + body + (_attrs(attrs) if attrs else b"")


def _ints(v, attrs=None):
    return _vec(13, len(v), b"".join(_i(x) for x in v), attrs)


def _reals(v):
    return _vec(14, len(v), b"".join(struct.pack(">d", x) for x in v))


def _strs(v, attrs=None):
    return _vec(16, len(v), b"".join(_char(s) for s in v), attrs)


def _list(items, names):
    return _vec(19, len(items), b"".join(items), [("names", _strs(names))])


def _compact_intseq(n, start):
    info = (_i(2) + _i(1) + _char("compact_intseq") + _i(2) + _i(1) + _char("base")
            + _i(2) + _ints([13]) + _i(254))
    return _i(238) + info + _reals([n, start, 1]) + _i(254)


def test_unserialize_types():
    NA = -2 ** 31
    df = _list([_ints([1, 2, NA], [("levels", _strs(["great", "other"]))]),
                _strs(["a", None, "ü"]), _compact_intseq(3, 5)], ["f", "s", "seq"])
    obj = rdata.unserialize(_hdr() + df)
    assert obj.names() == ["f", "s", "seq"]
    assert list(obj.get("seq").values) == [5, 6, 7]
    t = rdata.as_table(obj)
    assert t["f"] == ["great", "other", None]
    assert t["s"] == ["a", None, "ü"]
    with pytest.raises(rdata.RDataError, match=r"^only the XDR serialisation format"):
        rdata.unserialize(b"A\n" + _i(3))


@pytest.mark.parametrize("kind", ["Z", "1", "0", "zlib"])
def test_lazy_load_db(tmp_path, kind):
    objs = {"alpha": _hdr() + _strs(["x", "y"]), "beta": _hdr() + _reals([1.5, -2.0])}
    rdb, index = b"", {}
    for name, raw in objs.items():
        if kind == "Z":
            c = lzma.LZMACompressor(format=lzma.FORMAT_RAW, filters=[
                {"id": lzma.FILTER_LZMA2, "preset": 6}])
            body = b"Z" + c.compress(raw) + c.flush()
        elif kind == "1":
            body = b"1" + zlib.compress(raw)
        elif kind == "0":
            body = b"0" + raw
        else:
            body = zlib.compress(raw)
        blob = struct.pack(">I", len(raw)) + body
        index[name] = (len(rdb), len(blob))
        rdb += blob
    variables = _list([_ints(list(v)) for v in index.values()], list(index))
    rdx = _list([variables, _list([], []), _ints([3])], ["variables", "references", "compressed"])
    (tmp_path / "Rdata.rdb").write_bytes(rdb)
    (tmp_path / "Rdata.rdx").write_bytes(gzip.compress(_hdr() + rdx))
    db = rdata.LazyLoadDB(tmp_path / "Rdata")
    assert db.names() == ["alpha", "beta"]
    assert db.load("alpha").values == ["x", "y"]
    assert list(db.load("beta").values) == [1.5, -2.0]
    with pytest.raises(KeyError):
        db.load("gamma")


def test_read_idx(tmp_path):
    a = np.arange(24, dtype=np.uint8).reshape(2, 3, 4)
    raw = bytes([0, 0, 8, 3]) + struct.pack(">3I", 2, 3, 4) + a.tobytes()
    (tmp_path / "x.gz").write_bytes(gzip.compress(raw))
    assert np.array_equal(ds.read_idx(tmp_path / "x.gz"), a)
    (tmp_path / "y").write_bytes(raw[:-1])
    with pytest.raises(ValueError, match=r"expected 24 elements, found 23$"):
        ds.read_idx(tmp_path / "y")


def test_char_vocab_and_split():
    v = ds.CharVocab("hello world")
    assert v.decode(v.encode("low hole")) == "low hole"
    assert v.encode("z")[0] == 0
    tr, te = ds.split_indices(10, 0.3, seed=1)
    assert sorted(np.concatenate([tr, te])) == list(range(10)) and len(te) == 3


def test_missing_package_names_setup_script(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"run scripts/setup.d/30-datasets.sh"):
        ds.load_fine_foods(root=tmp_path)


def _have(pkg):
    return (ds.debdata_dir() / pkg / ".done").exists()


@pytest.mark.skipif(not _have("r-cran-modeldata"), reason="run scripts/setup.d/30-datasets.sh")
def test_fine_foods_real():
    (tt, yt), (te, ye) = ds.load_fine_foods()
    assert len(tt) == len(yt) == 4000 and len(te) == len(ye) == 1000
    assert set(np.unique(yt)) == {0, 1} and all(isinstance(t, str) for t in tt[:50])


@pytest.mark.skipif(not _have("r-cran-janeaustenr"), reason="run scripts/setup.d/30-datasets.sh")
def test_austen_real():
    books = ds.load_austen()
    assert len(books) == 6 and books["prideprejudice"].startswith("PRIDE AND PREJUDICE")
    assert "Elizabeth" in books["prideprejudice"]


@pytest.mark.skipif(not _have("dataset-fashion-mnist"), reason="run scripts/setup.d/30-datasets.sh")
def test_fashion_real():
    (xt, yt), (xe, ye) = ds.load_fashion(limit_train=100, limit_test=50)
    assert xt.shape == (100, 28, 28) and xe.shape == (50, 28, 28)
    assert 0 <= xt.min() and xt.max() <= 1 and set(np.unique(yt)) <= set(range(10))
