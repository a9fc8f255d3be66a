"""Minimal reader of R lazy-load databases (``.rdb`` / ``.rdx``) and R serialisation.

R packages ship their data sets as a lazy-load database: ``Rdata.rdx`` is a
gzip-compressed serialised R list ``list(variables=, references=, compressed=)`` whose
``variables`` map each object name to ``c(offset, length)`` in ``Rdata.rdb``. Each
entry there is a 4-byte big-endian uncompressed length followed by the compressed
serialisation of the object: plain zlib (compress = 1), or a one-byte type ``'1'``
(zlib), ``'2'`` (bzip2), ``'Z'`` (raw LZMA2, what R calls xz) or ``'0'`` (stored)
followed by the payload (compress = 2, 3).

The serialisation is R's XDR format (``X\\n``, versions 2 and 3). Supported types:
NULL, symbols, pairlists, character, logical, integer, double, complex and raw vectors,
generic lists, attributes, references, and the ALTREP classes found in package data
(compact integer / real sequences, wrapped and deferred-string vectors). Environments,
closures and byte code are not (an ``RDataError`` names the type).

Python values: ``RVector`` (a list or NumPy array with ``.attrs``), ``None`` for NULL
and NA strings, ``RSymbol`` for symbols. :func:`as_table` turns a data frame into a
dict of columns.
"""

import bz2
import gzip
import lzma
import struct
import zlib
from pathlib import Path

import numpy as np

__all__ = ["RDataError", "RSymbol", "RVector", "unserialize", "read_rds", "LazyLoadDB",
           "as_table"]

NA_INTEGER = -2 ** 31


class RDataError(ValueError):
    """The bytes are not an R serialisation this reader understands."""


class RSymbol(str):
    """An R symbol (name)."""


class RVector:
    """An R vector: ``values`` (list or NumPy array), ``rtype`` and ``attrs`` (dict)."""

    def __init__(self, values, rtype, attrs=None):
        self.values = values
        self.rtype = rtype
        self.attrs = attrs or {}

    def __len__(self):
        return len(self.values)

    def __getitem__(self, i):
        return self.values[i]

    def names(self):
        n = self.attrs.get("names")
        return list(n.values) if n is not None else None

    def get(self, name):
        """Element of a named list by name."""
        names = self.names() or []
        if name not in names:
            raise KeyError(name)
        return self.values[names.index(name)]

    def __repr__(self):
        return f"RVector({self.rtype}, len={len(self.values)}, attrs={list(self.attrs)})"


_NILVALUE, _REFSXP, _GLOBALENV, _UNBOUND, _MISSINGARG, _BASENAMESPACE = 254, 255, 253, 252, 251, 250
_NAMESPACESXP, _PACKAGESXP, _PERSISTSXP, _EMPTYENV, _BASEENV = 249, 248, 247, 242, 241
_ATTRLANGSXP, _ATTRLISTSXP, _ALTREP = 240, 239, 238
_SYM, _LIST, _CLO, _ENV, _PROM, _LANG, _CHAR, _LGL, _INT, _REAL, _CPLX, _STR = \
    1, 2, 3, 4, 5, 6, 9, 10, 13, 14, 15, 16
_DOT, _VEC, _EXPR, _RAW, _S4 = 17, 19, 20, 24, 25


class _Reader:
    def __init__(self, data):
        self.b = memoryview(data)
        self.p = 0
        self.refs = []

    def int(self):
        v = struct.unpack_from(">i", self.b, self.p)[0]
        self.p += 4
        return v

    def bytes(self, n):
        v = bytes(self.b[self.p:self.p + n])
        if len(v) != n:
            raise RDataError("truncated R serialisation")
        self.p += n
        return v

    def length(self):
        n = self.int()
        if n == -1:
            hi, lo = self.int(), self.int()
            n = (hi << 32) + lo
        return n

    def header(self):
        fmt = self.bytes(2)
        if fmt != b"X\n":
            raise RDataError(f"only the XDR serialisation format is supported, not {fmt!r}")
        version = self.int()
        self.int(), self.int()
        if version == 3:
            self.bytes(self.int())
        elif version != 2:
            raise RDataError(f"unsupported serialisation version {version}")

    def item(self):
        flags = self.int()
        t = flags & 0xFF
        has_attr, has_tag = bool(flags & (1 << 9)), bool(flags & (1 << 10))
        if t == _NILVALUE:
            return None
        if t in (_EMPTYENV, _BASEENV, _GLOBALENV, _UNBOUND, _MISSINGARG, _BASENAMESPACE):
            return None
        if t == _REFSXP:
            idx = flags >> 8
            if idx == 0:
                idx = self.int()
            return self.refs[idx - 1]
        if t == _PERSISTSXP:
            self.int()
            v = [self.item() for _ in range(self.int())]
            self.refs.append(v)
            return v
        if t in (_NAMESPACESXP, _PACKAGESXP):
            self.int()
            v = RVector([self.item() for _ in range(self.int())], "namespace")
            self.refs.append(v)
            return v
        if t == _SYM:
            v = RSymbol(self.item() or "")
            self.refs.append(v)
            return v
        if t == _ALTREP:
            return self._altrep()
        if t in (_LIST, _LANG, _CLO, _PROM, _DOT, _ATTRLANGSXP, _ATTRLISTSXP):
            attrs = self._attrs() if has_attr else {}
            tag = self.item() if has_tag else None
            car = self.item()
            cdr = self.item()
            cells = [(tag, car)] + (cdr.values if isinstance(cdr, RVector) and cdr.rtype == "pairlist" else [])
            return RVector(cells, "pairlist", attrs)
        if t == _CHAR:
            n = self.int()
            return None if n == -1 else self.bytes(n).decode("utf-8", errors="replace")
        if t in (_LGL, _INT):
            n = self.length()
            v = np.frombuffer(self.bytes(4 * n), dtype=">i4").astype(np.int64)
            v = RVector(v, "logical" if t == _LGL else "integer")
        elif t == _REAL:
            n = self.length()
            v = RVector(np.frombuffer(self.bytes(8 * n), dtype=">f8").astype(np.float64), "double")
        elif t == _CPLX:
            n = self.length()
            a = np.frombuffer(self.bytes(16 * n), dtype=">f8").astype(np.float64)
            v = RVector(a[0::2] + 1j * a[1::2], "complex")
        elif t == _STR:
            n = self.length()
            v = RVector([self.item() for _ in range(n)], "character")
        elif t in (_VEC, _EXPR):
            n = self.length()
            v = RVector([self.item() for _ in range(n)], "list")
        elif t == _RAW:
            n = self.length()
            v = RVector(np.frombuffer(self.bytes(n), dtype=np.uint8).copy(), "raw")
        elif t == _S4:
            v = RVector([], "S4")
        else:
            raise RDataError(f"R type {t} (environment, closure or byte code) is not supported")
        if has_attr:
            v.attrs = self._attrs()
        return v

    def _attrs(self):
        pl = self.item()
        return {str(tag): val for tag, val in pl.values} if pl is not None else {}

    def _altrep(self):
        info = self.item()
        state = self.item()
        attr = self.item()
        cls = str(info.values[0][1])
        if cls == "compact_intseq":
            n, start, step = (int(x) for x in state.values)
            v = RVector(start + step * np.arange(n, dtype=np.int64), "integer")
        elif cls == "compact_realseq":
            n, start, step = state.values
            v = RVector(start + step * np.arange(int(n), dtype=np.float64), "double")
        elif cls.startswith("wrap_"):
            inner = state.values[0]
            v = RVector(inner.values, inner.rtype, dict(inner.attrs))
        elif cls == "deferred_string":
            arg = state.values[0][1] if state.rtype == "pairlist" else state.values[0]
            vals = arg.values
            if arg.rtype == "integer":
                vals = [None if x == NA_INTEGER else str(int(x)) for x in vals]
            else:
                vals = [None if np.isnan(x) else repr(float(x)) for x in vals]
            v = RVector(vals, "character")
        else:
            raise RDataError(f"ALTREP class {cls!r} is not supported")
        if attr is not None:
            v.attrs = {str(tag): val for tag, val in attr.values}
        return v


def unserialize(data):
    """The R object serialised (XDR) in ``data`` (bytes)."""
    r = _Reader(data)
    r.header()
    return r.item()


def read_rds(path):
    """An ``.rds`` file (gzip, or uncompressed) as an R object."""
    raw = Path(path).read_bytes()
    if raw[:2] == b"\x1f\x8b":
        raw = gzip.decompress(raw)
    return unserialize(raw)


def _decompress(blob):
    n = struct.unpack(">I", blob[:4])[0]
    body = blob[4:]
    if body[:1] in (b"\x78",):
        out = zlib.decompress(body)
    else:
        kind, payload = body[:1], body[1:]
        if kind == b"Z":
            dec = lzma.LZMADecompressor(format=lzma.FORMAT_RAW, filters=[
                {"id": lzma.FILTER_LZMA2, "preset": 9 | lzma.PRESET_EXTREME}])
            out = dec.decompress(payload)
        elif kind == b"2":
            out = bz2.decompress(payload)
        elif kind == b"1":
            out = zlib.decompress(payload)
        elif kind == b"0":
            out = payload
        else:
            raise RDataError(f"unknown lazy-load compression type {kind!r}")
    if len(out) != n:
        raise RDataError(f"lazy-load entry decompressed to {len(out)} bytes, expected {n}")
    return out


class LazyLoadDB:
    """An R lazy-load database: ``LazyLoadDB("…/data/Rdata")`` (path without extension).

    ``names()`` lists the objects; ``load(name)`` reads one.
    """

    def __init__(self, stem):
        self.stem = Path(stem)
        rdx, rdb = self.stem.with_suffix(".rdx"), self.stem.with_suffix(".rdb")
        for p in (rdx, rdb):
            if not p.is_file():
                raise FileNotFoundError(f"lazy-load database file {p} not found")
        self._rdb = rdb
        index = read_rds(rdx)
        variables = index.get("variables")
        self._index = {name: tuple(int(x) for x in variables.values[i].values)
                       for i, name in enumerate(variables.names())}

    def names(self):
        return sorted(self._index)

    def load(self, name):
        if name not in self._index:
            raise KeyError(f"object {name!r} not in {self.stem} (has {', '.join(self.names())})")
        off, n = self._index[name]
        with open(self._rdb, "rb") as f:
            f.seek(off)
            blob = f.read(n)
        return unserialize(_decompress(blob))


def as_table(df):
    """A data frame (R list with names) as ``{column: list or ndarray}``; factors as strings."""
    if not isinstance(df, RVector) or df.rtype != "list":
        raise RDataError("not a data frame (R list)")
    out = {}
    for name, col in zip(df.names(), df.values):
        vals = col.values
        levels = col.attrs.get("levels")
        if levels is not None:
            vals = [None if x == NA_INTEGER else levels.values[int(x) - 1] for x in vals]
        out[name] = vals
    return out
