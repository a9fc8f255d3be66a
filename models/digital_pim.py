"""Digital PIM module: SLC RRAM arrays that multiply INT8 operands by in-memory NOR.

The micro-architecture is documented in ``docs/digital_pim.md``; this module is its
behavioural and golden model, shared with the RTL controller
(:mod:`hyflexpim.rtl.digital_pim`) and its cocotb testbench.

Array model (:class:`DigitalArray`): ``rows x cols`` single-level cells (0 = HRS,
1 = LRS), optionally ``arrays`` of them driven in lockstep (one operation, one row, one
column range, data per array). Operations, one clock cycle each:

* ``write(row, col, bits)``: write cells ``col .. col + n - 1`` of ``row``;
* ``nor(row, a, b, out, n)``: MAGIC NOR inside one row, ``n`` gates in parallel:
  ``cell[out + k] &= ~(cell[a + k] | cell[b + k])``. MAGIC can only switch an output
  cell from 1 to 0, so the outputs must have been preset to 1 (checked, ``strict``);
  the output range may not overlap an operand range (the operands may coincide: NOT);
* ``read(row, col, n)``: sense cells ``col .. col + n - 1``.

Every write pulse on a cell (a write, and the NOR evaluation on its output cells) adds
one to the cell's ``writes`` counter; ``flips`` counts the pulses that changed the
state (the two bounds of the wear, see the endurance section of the documentation).

Module model: the layout of the INT8 operands in rows and columns, the 5-cycle row step
(write A, write B, preset OUT, NOR, read OUT) that makes the 64 partial-product bits of
an INT8 x INT8 product with 64 NORs (3 columns each), and the shift-and-add that turns
the bits into products. Public API:

* :func:`matmul` -- INT8 (p x q) @ INT8 (q x r) -> INT32 through the NOR-level model;
* :func:`cycles` -- the module cycles of that product (:func:`run_cycles` per row);
* :func:`scores`, :func:`context`, :func:`attention_head` -- one head's attention
  products ``Q K^T`` (causal mask option) and ``P V``, with :func:`scores_cycles`,
  :func:`context_cycles`;
* :class:`DigitalPimModule` -- the module with its KV cache, command by command as
  the RTL controller (append K/V rows, scores of one query, context of one P row);
* :func:`command_cycles`, :func:`head_command_cycles` -- the controller's cycles per
  command (header to next header: operand beats, run, drain, reduction, result beats)
  and per head;
* :func:`writes_per_inference` -- the wear accounting behind the endurance figures.
"""

import math
from dataclasses import dataclass

import numpy as np

from ..base import check_bool, check_choice, check_int, check_pow2

__all__ = [
    "ELEMENT_BITS", "NORS_PER_PRODUCT", "COLS_PER_NOR", "STEP_WRITES", "STEP_CYCLES",
    "MASKED", "product_weights", "DigitalArray", "Layout", "DigitalPimModule",
    "matmul", "cycles", "run_cycles", "scores", "context", "attention_head",
    "scores_cycles", "context_cycles", "published_products_per_cycle", "writes_per_inference",
    "COMMANDS", "DRAIN_CYCLES", "command_cycles", "head_command_cycles",
]

#: Bits of one operand (INT8, two's complement).
ELEMENT_BITS = 8
#: NOR operations per INT8 x INT8 product: one per partial-product bit a_i AND b_j.
NORS_PER_PRODUCT = ELEMENT_BITS * ELEMENT_BITS
#: Columns one NOR uses in a row: two operand cells and one output cell.
COLS_PER_NOR = 3
#: Write cycles of one row step: write A group, write B group, preset OUT group, NOR.
STEP_WRITES = 4
#: Cycles of one row step: the four writes and the read of the OUT group.
STEP_CYCLES = STEP_WRITES + 1
#: Score of a key the causal mask hides (the most negative INT32).
MASKED = -(1 << 31)

_INT8 = (-128, 127)


def product_weights():
    """``w[i, j]``: weight of the partial-product bit ``a_i AND b_j`` in ``a * b``.

    Two's complement: bit 7 of an INT8 weighs ``-2**7``, so
    ``w[i, j] = s_i * s_j * 2**(i + j)`` with ``s_7 = -1`` and ``s_i = 1`` otherwise.
    """
    s = np.array([1] * (ELEMENT_BITS - 1) + [-1], dtype=np.int64)
    e = np.arange(ELEMENT_BITS)
    return (s[:, None] * s[None, :]) << (e[:, None] + e[None, :])


_W = product_weights().reshape(-1)      # slot order 8 * i + j


def _check_int8(name, x):
    a = np.asarray(x)
    if a.dtype.kind not in "iu" and not (a.dtype.kind == "b"):
        raise ValueError(f"{name} must hold integers, not {a.dtype}")
    a = a.astype(np.int64)
    if a.size and (a.min() < _INT8[0] or a.max() > _INT8[1]):
        raise ValueError(f"{name} must hold INT8 values in -128..127, "
                         f"not {a.min()}..{a.max()}")
    return a


def _element_bits(x):
    """Bits (LSB first) of INT8 values ``x``: shape ``x.shape + (8,)``, uint8."""
    u = np.asarray(x, dtype=np.int64) & 0xFF
    return ((u[..., None] >> np.arange(ELEMENT_BITS)) & 1).astype(np.uint8)


# ============================================================================ array model

class DigitalArray:
    """SLC RRAM arrays of ``rows x cols`` cells, ``arrays`` of them in lockstep.

    Every cell starts at 0 (HRS after forming) and unwritten. Data arguments are 0/1
    arrays of shape ``(n,)`` (the same bits in every array) or ``(arrays, n)``;
    :meth:`read` returns ``(n,)`` for a single array, ``(arrays, n)`` otherwise. ``en``
    (``(arrays,)`` booleans, default all) selects the arrays a write or NOR acts on.

    Counters: ``writes`` and ``flips`` (per cell, ``(arrays, rows, cols)``), ``ops``
    (operations issued: one clock cycle each) and ``op_counts`` per kind.

    Raises:
        ParameterTypeError, ValueError: a bad geometry, row, column range, data shape,
            non-binary data, an operand/output overlap, or (``strict``) a NOR on an
            operand cell never written or an output cell not preset to 1.
    """

    def __init__(self, rows=1024, cols=1024, arrays=1, *, strict=True):
        self._rows = check_int("rows", rows, 1, 1 << 16)
        self._cols = check_int("cols", cols, 1, 1 << 16)
        self._arrays = check_int("arrays", arrays, 1, 4096)
        self._strict = check_bool("strict", strict)
        shape = (arrays, rows, cols)
        self.cells = np.zeros(shape, dtype=np.uint8)
        self.written = np.zeros(shape, dtype=bool)
        self.writes = np.zeros(shape, dtype=np.int64)
        self.flips = np.zeros(shape, dtype=np.int64)
        self.ops = 0
        self.op_counts = {"write": 0, "nor": 0, "read": 0}

    rows = property(lambda self: self._rows)
    cols = property(lambda self: self._cols)
    arrays = property(lambda self: self._arrays)
    strict = property(lambda self: self._strict)

    # ---------------------------------------------------------------- checks
    def _row(self, row):
        return check_int("row", row, 0, self._rows - 1)

    def _range(self, name, col, n):
        col = check_int(name, col, 0, self._cols - 1)
        n = check_int("count", n, 1, self._cols - col)
        return col, n

    def _en(self, en):
        if en is None:
            return np.ones(self._arrays, dtype=bool)
        e = np.asarray(en)
        if e.shape != (self._arrays,) or e.dtype.kind not in "biu" or (e.size and (e.min() < 0 or e.max() > 1)):
            raise ValueError(f"en must be {self._arrays} booleans (one per array), "
                             f"not {np.asarray(en)!r}")
        return e.astype(bool)

    def _bits(self, bits, n=None):
        b = np.asarray(bits)
        if b.dtype.kind not in "biu":
            raise ValueError(f"bits must be 0 or 1, not {b.dtype} data")
        if b.size and (b.min() < 0 or b.max() > 1):
            bad = b[(b < 0) | (b > 1)].reshape(-1)[0]
            raise ValueError(f"bits must be 0 or 1, not {int(bad)}")
        if b.ndim == 1:
            b = np.broadcast_to(b, (self._arrays, b.shape[0]))
        if b.ndim != 2 or b.shape[0] != self._arrays or b.shape[1] < 1:
            raise ValueError(f"bits must have shape (n,) or ({self._arrays}, n), "
                             f"not {np.asarray(bits).shape}")
        if n is not None and b.shape[1] != n:
            raise ValueError(f"bits must hold {n} values, not {b.shape[1]}")
        return b.astype(np.uint8)

    # ---------------------------------------------------------------- operations
    def write(self, row, col, bits, en=None):
        """Write ``bits`` into cells ``col .. col + len(bits) - 1`` of ``row`` (one cycle)."""
        row = self._row(row)
        b = self._bits(bits)
        col, n = self._range("col", col, b.shape[1])
        e = self._en(en)
        sl = (e, row, slice(col, col + n))
        old = self.cells[sl]
        self.flips[sl] += old != b[e]
        self.writes[sl] += 1
        self.cells[sl] = b[e]
        self.written[sl] = True
        self._count("write")

    def nor(self, row, a, b, out, n, en=None):
        """MAGIC NOR of columns ``a + k`` and ``b + k`` into ``out + k``, ``k < n`` (one cycle)."""
        row = self._row(row)
        n = check_int("count", n, 1, self._cols)
        for name, c in (("a", a), ("b", b), ("out", out)):
            self._range(name, c, n)
        for name, c in (("a", a), ("b", b)):
            if c < out + n and out < c + n:
                raise ValueError(
                    f"NOR output columns {out}..{out + n - 1} overlap operand columns "
                    f"{name} = {c}..{c + n - 1}")
        e = self._en(en)
        cells = self.cells[e, row]
        ins = cells[:, a:a + n] | cells[:, b:b + n]
        if self._strict:
            w = self.written[e, row]
            for name, c in (("a", a), ("b", b)):
                if not w[:, c:c + n].all():
                    k = int(np.argwhere(~w[:, c:c + n])[0][1])
                    raise ValueError(f"NOR operand {name}: column {c + k} of row {row} "
                                     f"was never written")
            if not cells[:, out:out + n].all():
                k = int(np.argwhere(cells[:, out:out + n] == 0)[0][1])
                raise ValueError(f"NOR output column {out + k} of row {row} is not preset "
                                 f"to 1 (MAGIC can only switch an output from 1 to 0)")
        sl = (e, row, slice(out, out + n))
        new = self.cells[sl] & (1 - ins)
        self.flips[sl] += self.cells[sl] != new
        self.writes[sl] += 1
        self.cells[sl] = new
        self.written[sl] = True
        self._count("nor")

    def read(self, row, col, n):
        """Sense cells ``col .. col + n - 1`` of ``row`` (one cycle); unwritten cells read 0."""
        row = self._row(row)
        col, n = self._range("col", col, n)
        self._count("read")
        out = self.cells[:, row, col:col + n].copy()
        return out[0] if self._arrays == 1 else out

    def _count(self, kind):
        self.ops += 1
        self.op_counts[kind] += 1


# ============================================================================ layout

def step_windows(slots):
    """Most products one row step of ``slots`` NOR slots touches (slots at any offset
    modulo 64 in the product stream): ``floor((slots + 62) / 64) + 1``."""
    return (slots + NORS_PER_PRODUCT - 2) // NORS_PER_PRODUCT + 1


@dataclass(frozen=True)
class Layout:
    """Where everything lives in the arrays of one module (docs/digital_pim.md, 2).

    Columns of a compute row: group A ``[0, S)``, group B ``[S, 2S)``, group OUT
    ``[2S, 3S)`` with ``S = cols // 3`` NOR slots (published: 341; column 1023 spare).
    Rows: per head a K region then a V region of ``region_rows`` storage rows each
    (INT8 elements packed 8 cells each, ``cols // 8`` per row), then the compute rows,
    used round robin (wear levelling).

    Raises:
        ParameterTypeError, ValueError: a parameter out of its range (the message names
            it and the range): ``arrays`` 1..1024, ``cols`` a power of two in 16..4096,
            ``head_dim`` ``windows``..1024, ``max_seq`` 1..65536, ``heads`` 1..64,
            ``rows`` at least the storage rows + 1 (at most 65536).
    """
    arrays: int = 256
    rows: int = 1024
    cols: int = 1024
    head_dim: int = 64
    max_seq: int = 1024
    heads: int = 1

    def __post_init__(self):
        check_int("arrays", self.arrays, 1, 1024)
        check_pow2("cols", self.cols, 16, 4096)
        check_int("head_dim", self.head_dim, self.windows, 1024)
        check_int("max_seq", self.max_seq, 1, 1 << 16)
        check_int("heads", self.heads, 1, 64)
        check_int("rows", self.rows, self.storage_rows + 1, 1 << 16)

    @property
    def slots(self):
        """NOR slots per row (``cols // 3``)."""
        return self.cols // COLS_PER_NOR

    @property
    def elements_per_row(self):
        """INT8 elements per storage row (``cols // 8``)."""
        return self.cols // ELEMENT_BITS

    @property
    def windows(self):
        return step_windows(self.slots)

    @property
    def tokens_per_array(self):
        return -(-self.max_seq // self.arrays)

    @property
    def region_rows(self):
        return -(-self.tokens_per_array * self.head_dim // self.elements_per_row)

    @property
    def storage_rows(self):
        return 2 * self.heads * self.region_rows

    @property
    def compute_rows(self):
        return self.rows - self.storage_rows

    def k_base(self, head):
        return 2 * head * self.region_rows

    def v_base(self, head):
        return self.k_base(head) + self.region_rows


# ============================================================================ engine

class _Engine:
    """The sequencing shared by the KV-cache module and :func:`matmul`: operand storage,
    the product run (fetch reads, row steps, shift-and-add) and the compute-row pointer."""

    def __init__(self, bank, slots, elements_per_row, first_compute_row):
        self.bank = bank
        self.S, self.E = slots, elements_per_row
        self.first, self.next_row = first_compute_row, 0

    def store(self, base, pos, elems, en):
        """Write INT8 ``elems`` (``(arrays, n)`` or ``(n,)``) at element positions
        ``pos .. pos + n - 1`` of the region at row ``base``, one write per storage row
        touched, in the arrays ``en``."""
        elems = np.asarray(elems)
        n = elems.shape[-1]
        k = 0
        while k < n:
            p = pos + k
            row, off = divmod(p, self.E)
            seg = min(n - k, self.E - off)
            bits = _element_bits(elems[..., k:k + seg]).reshape(*elems.shape[:-1], -1)
            self.bank.write(base + row, ELEMENT_BITS * off, bits, en)
            k += seg

    def run(self, base, M, stream, valid):
        """One product run: ``M`` products per array, stationary element ``m`` of array
        ``a`` at position ``m`` of the region at ``base``, streamed element
        ``stream[a, m]``; array ``a`` takes part in the steps whose first product is
        below ``valid[a]``. Returns the products ``(arrays, M)`` as the shift-and-add
        units make them from the bits read (0 where an array sat a step out)."""
        bank, S, E = self.bank, self.S, self.E
        A = bank.arrays
        total = NORS_PER_PRODUCT * M
        vals = np.zeros((A, M), dtype=np.int64)
        fetched, loaded = {}, -1
        for s0 in range(0, total, S):
            used = min(S, total - s0)
            slot = np.arange(s0, s0 + used)
            m = slot // NORS_PER_PRODUCT
            i = (slot // ELEMENT_BITS) % ELEMENT_BITS
            j = slot % ELEMENT_BITS
            last_row = int(m[-1]) // E
            while loaded < last_row:            # operand fetch: one read per storage row
                loaded += 1
                fetched[loaded] = bank.read(base + loaded, 0, ELEMENT_BITS * E).reshape(A, E, ELEMENT_BITS)
                fetched.pop(loaded - 2, None)
            stat = np.stack([fetched[r] for r in range(int(m[0]) // E, last_row + 1)], 1)
            stat = stat.reshape(A, -1, ELEMENT_BITS)
            sbit = stat[:, m - (int(m[0]) // E) * E, i]
            tbit = ((stream[:, m] & 0xFF) >> j) & 1
            en = int(m[0]) < np.asarray(valid)
            row = self.first + self.next_row
            self.next_row = (self.next_row + 1) % (bank.rows - self.first)
            bank.write(row, 0, 1 - sbit, en)                 # W1: A group, NOT stationary
            bank.write(row, S, (1 - tbit).astype(np.uint8), en)   # W2: B group, NOT streamed
            bank.write(row, 2 * S, np.ones(used, dtype=np.uint8), en)   # W3: preset OUT
            bank.nor(row, 0, S, 2 * S, used, en)            # W4: OUT = a_i AND b_j
            out = bank.read(row, 2 * S, used)               # R: to the shift-and-add units
            out = out.reshape(A, used) * en[:, None]
            contrib = out.astype(np.int64) * _W[slot % NORS_PER_PRODUCT]
            starts = np.flatnonzero(np.r_[True, m[1:] != m[:-1]])
            vals[:, m[starts]] += np.add.reduceat(contrib, starts, axis=1)
        return vals


def run_cycles(M, *, cols=1024):
    """Cycles of one product run of ``M`` products per array: ``5 * ceil(64 M / S)``
    row-step cycles plus ``ceil(M / E)`` operand-fetch reads (``S = cols // 3`` NOR
    slots per row, ``E = cols // 8`` elements per storage row)."""
    M = check_int("M", M, 0)
    cols = check_int("cols", cols, 16)
    S, E = cols // COLS_PER_NOR, cols // ELEMENT_BITS
    return STEP_CYCLES * -(-NORS_PER_PRODUCT * M // S) + -(-M // E)


# ============================================================================ KV-cache module

class DigitalPimModule:
    """One digital PIM module with its KV cache, command by command as the RTL.

    Tokens are striped over the arrays (token ``t`` in array ``t % arrays``, local index
    ``u = t // arrays``); element ``e`` of token ``u`` at position ``u * head_dim + e``
    of the head's K (V) region. Cycles of each command are counted in ``bank.ops``
    (one operation per cycle).

    Raises:
        ValueError: see :class:`Layout`; a full cache, a bad head, bad ``n_keys``, or
            operands of the wrong shape or range.
    """

    def __init__(self, arrays=256, rows=1024, cols=1024, head_dim=64, max_seq=1024, heads=1,
                 *, strict=True):
        self.layout = Layout(arrays, rows, cols, head_dim, max_seq, heads)
        self.bank = DigitalArray(rows, cols, arrays, strict=strict)
        lay = self.layout
        self._engine = _Engine(self.bank, lay.slots, lay.elements_per_row, lay.storage_rows)
        self.lengths = [0] * heads

    def _head(self, head):
        return check_int("head", head, 0, self.layout.heads - 1)

    def clear(self, head=0):
        """Empty the KV cache of ``head`` (no array operation)."""
        self.lengths[self._head(head)] = 0

    def append(self, k, v, head=0):
        """Append the K and V rows of ``n`` tokens (``(n, head_dim)`` INT8 each): per token
        its K row then its V row, each one write per storage row touched, in the token's
        array only (decoder: one token per call; encoder: the whole sequence)."""
        lay, h = self.layout, self._head(head)
        d = lay.head_dim
        k, v = _check_int8("k", k), _check_int8("v", v)
        if k.ndim == 1:
            k, v = k[None], v[None]
        if k.shape != v.shape or k.ndim != 2 or k.shape[1] != d:
            raise ValueError(f"k and v must both have shape (n, {d}), not {k.shape} and {v.shape}")
        if self.lengths[h] + k.shape[0] > lay.max_seq:
            raise ValueError(f"KV cache of head {h} holds at most {lay.max_seq} tokens: "
                             f"{self.lengths[h]} + {k.shape[0]} do not fit")
        for kr, vr in zip(k, v):
            t = self.lengths[h]
            u, a = divmod(t, lay.arrays)
            en = np.arange(lay.arrays) == a
            for base, row in ((lay.k_base(h), kr), (lay.v_base(h), vr)):
                self._engine.store(base, u * d, np.broadcast_to(row, (lay.arrays, d)), en)
            self.lengths[h] = t + 1

    def _n_keys(self, n_keys, h):
        length = self.lengths[h]
        if length == 0:
            raise ValueError(f"KV cache of head {h} is empty")
        if n_keys is None:
            return length
        return check_int("n_keys", n_keys, 1, length)

    def scores(self, q, n_keys=None, head=0):
        """``q . K[t]`` for every cached token ``t`` (INT32, ``(length,)``); keys ``t >=
        n_keys`` are not computed and read :data:`MASKED` (causal mask: ``n_keys =
        position + 1``)."""
        lay, h = self.layout, self._head(head)
        d, A = lay.head_dim, lay.arrays
        n = self._n_keys(n_keys, h)
        q = _check_int8("q", q)
        if q.shape != (d,):
            raise ValueError(f"q must have shape ({d},), not {q.shape}")
        U = -(-n // A)
        stream = np.broadcast_to(np.tile(q, U), (A, U * d))
        valid = np.minimum(U, np.maximum(0, -(-(n - np.arange(A)) // A))) * d
        prods = self._engine.run(lay.k_base(h), U * d, stream, valid)
        per_token = prods.reshape(A, U, d).sum(axis=2)          # (array, u)
        out = np.full(self.lengths[h], MASKED, dtype=np.int64)
        t = (np.arange(U)[None, :] * A + np.arange(A)[:, None])
        keep = t < n
        out[t[keep]] = per_token[keep]
        return out

    def context(self, p, n_keys=None, head=0):
        """``sum_t p[t] V[t]`` (INT32, ``(head_dim,)``) over the tokens ``t < n_keys``
        (``p``: ``(length,)`` INT8; entries from ``n_keys`` on are ignored)."""
        lay, h = self.layout, self._head(head)
        d, A = lay.head_dim, lay.arrays
        n = self._n_keys(n_keys, h)
        p = _check_int8("p", p)
        if p.shape != (self.lengths[h],):
            raise ValueError(f"p must have shape ({self.lengths[h]},), not {p.shape}")
        U = -(-n // A)
        pp = np.zeros(U * A, dtype=np.int64)
        pp[:n] = p[:n]
        stream = np.repeat(pp.reshape(U, A).T, d, axis=1)       # (array, u * d + e)
        valid = np.minimum(U, np.maximum(0, -(-(n - np.arange(A)) // A))) * d
        prods = self._engine.run(lay.v_base(h), U * d, stream, valid)
        return prods.reshape(A, U, d).sum(axis=(0, 1))

    def scores_cycles(self, n_keys):
        """Cycles of :meth:`scores` (and of :meth:`context`) with ``n_keys`` keys."""
        return run_cycles(-(-n_keys // self.layout.arrays) * self.layout.head_dim,
                          cols=self.layout.cols)


# ============================================================================ public API

def _matmul_shapes(a, b):
    a, b = _check_int8("a", a), _check_int8("b", b)
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[0]:
        raise ValueError(f"a (p x q) and b (q x r) do not match: {a.shape} and {b.shape}")
    return a, b


def _split_m(q, r, arrays, split):
    """Products per array per row of ``a`` for each split."""
    return {"cols": -(-r // arrays) * q, "rows": -(-q // arrays) * r}[split]


def _choose_split(p, q, r, arrays, cols, split):
    check_choice("split", split, ("auto", "cols", "rows"))
    if split != "auto":
        return split
    c = {s: run_cycles(_split_m(q, r, arrays, s), cols=cols) for s in ("cols", "rows")}
    return "rows" if c["rows"] < c["cols"] else "cols"


def cycles(p, q, r, arrays=256, *, cols=1024, split="auto"):
    """Module cycles of an INT8 (p x q) @ (q x r) product, ``b`` stored, ``a`` streamed.

    ``split="cols"``: the columns of ``b`` are striped over the arrays (column ``c`` in
    array ``c % arrays``; each array makes whole dot products: ``K^T`` in ``Q K^T``);
    ``"rows"``: its rows (row ``k`` in array ``k % arrays``; the arrays' partial sums are
    added by the module's shift-and-add units: ``V`` in ``P V``); ``"auto"``: the one
    with fewer cycles (``"cols"`` on a tie), the choice :func:`matmul` makes. Each row of
    ``a`` is one product run of :func:`run_cycles`. Storing ``b`` is not counted.
    """
    p = check_int("p", p, 0)
    q = check_int("q", q, 1)
    r = check_int("r", r, 1)
    arrays = check_int("arrays", arrays, 1, 1024)
    cols = check_pow2("cols", cols, 16, 4096)
    s = _choose_split(p, q, r, arrays, cols, split)
    return p * run_cycles(_split_m(q, r, arrays, s), cols=cols)


def matmul(a, b, *, arrays=16, cols=1024, split="auto", stats=False):
    """INT32 product of INT8 ``a`` (p x q) and INT8 ``b`` (q x r) through the NOR model.

    ``b`` is written into the storage rows of ``arrays`` arrays of ``cols`` columns
    (split as :func:`cycles`), every row of ``a`` is streamed through one product run;
    every partial-product bit is a MAGIC NOR in the array model and the shift-and-add
    adds the bits read. Equal to ``a @ b`` in exact integer arithmetic. With
    ``stats=True`` returns ``(result, info)``, ``info`` holding ``split``, ``cycles``
    (operations of the product runs, equal to :func:`cycles`), ``store_cycles``,
    ``max_writes`` (most write pulses on one cell) and the ``bank``.
    """
    a, b = _matmul_shapes(a, b)
    arrays = check_int("arrays", arrays, 1, 1024)
    cols = check_pow2("cols", cols, 16, 4096)
    check_bool("stats", stats)
    p, q = a.shape
    r = b.shape[1]
    s = _choose_split(p, q, r, arrays, cols, split)
    E = cols // ELEMENT_BITS
    M = _split_m(q, r, arrays, s)
    storage = -(-M // E)
    bank = DigitalArray(storage + 16, cols, arrays)
    eng = _Engine(bank, cols // COLS_PER_NOR, E, storage)
    A = arrays
    if s == "cols":
        V = -(-r // A)
        bb = np.zeros((q, V * A), dtype=np.int64)
        bb[:, :r] = b
        stat = bb.T.reshape(V, A, q).transpose(1, 0, 2).reshape(A, V * q)   # [a, v*q + k]
        valid = np.array([len(range(x, r, A)) * q for x in range(A)])
    else:
        U = -(-q // A)
        bb = np.zeros((U * A, r), dtype=np.int64)
        bb[:q] = b
        stat = bb.reshape(U, A, r).transpose(1, 0, 2).reshape(A, U * r)     # [a, u*r + c]
        valid = np.array([len(range(x, q, A)) * r for x in range(A)])
    eng.store(0, 0, stat, None)
    store_ops = bank.ops
    out = np.zeros((p, r), dtype=np.int64)
    for x in range(p):
        if s == "cols":
            stream = np.broadcast_to(np.tile(a[x], V), (A, M))
            prods = eng.run(0, M, stream, valid)
            out[x] = prods.reshape(A, V, q).sum(axis=2).T.reshape(-1)[:r]
        else:
            aa = np.zeros(U * A, dtype=np.int64)
            aa[:q] = a[x]
            stream = np.repeat(aa.reshape(U, A).T, r, axis=1)
            prods = eng.run(0, M, stream, valid)
            out[x] = prods.reshape(A, U, r).sum(axis=(0, 1))
    if not stats:
        return out
    return out, {"split": s, "cycles": bank.ops - store_ops, "store_cycles": store_ops,
                 "max_writes": int(bank.writes.max()), "bank": bank}


def _positions(n_queries, seq):
    if n_queries > seq:
        raise ValueError(f"more queries ({n_queries}) than keys ({seq})")
    return np.arange(seq - n_queries, seq)


def scores(q, k, causal=False, *, arrays=16, cols=1024):
    """``Q K^T`` of one head (INT32, ``(p, seq)``) on a :class:`DigitalPimModule`.

    ``q``: ``(p, d)`` INT8, ``k``: ``(seq, d)`` INT8. Query ``i`` is token
    ``seq - p + i`` (the last ``p`` tokens); with ``causal`` it sees keys ``t <= seq - p
    + i`` and the others read :data:`MASKED`.
    """
    q, k = _check_int8("q", q), _check_int8("k", k)
    check_bool("causal", causal)
    if q.ndim != 2 or k.ndim != 2 or q.shape[1] != k.shape[1]:
        raise ValueError(f"q (p x d) and k (seq x d) do not match: {q.shape} and {k.shape}")
    mod = _head_module(k.shape[0], k.shape[1], arrays, cols)
    mod.append(k, np.zeros_like(k))
    pos = _positions(q.shape[0], k.shape[0])
    return np.stack([mod.scores(qi, pi + 1 if causal else None) for qi, pi in zip(q, pos)])


def context(p, v, causal=False, *, arrays=16, cols=1024):
    """``P V`` of one head (INT32, ``(p_rows, d)``): ``p`` ``(p_rows, seq)`` INT8,
    ``v`` ``(seq, d)`` INT8; with ``causal`` row ``i`` uses tokens ``t <= seq - p_rows +
    i`` only (the masked probabilities are ignored)."""
    p, v = _check_int8("p", p), _check_int8("v", v)
    check_bool("causal", causal)
    if p.ndim != 2 or v.ndim != 2 or p.shape[1] != v.shape[0]:
        raise ValueError(f"p (rows x seq) and v (seq x d) do not match: {p.shape} and {v.shape}")
    mod = _head_module(v.shape[0], v.shape[1], arrays, cols)
    mod.append(np.zeros_like(v), v)
    pos = _positions(p.shape[0], v.shape[0])
    return np.stack([mod.context(pi, t + 1 if causal else None) for pi, t in zip(p, pos)])


def _head_module(seq, d, arrays, cols):
    """A one-head module just large enough for ``seq`` tokens (16 compute rows)."""
    region = -(-(-(-seq // arrays)) * d // (cols // ELEMENT_BITS))
    return DigitalPimModule(arrays, 2 * region + 16, cols, d, seq, 1)


def attention_head(q, k, v, probs, causal=False, *, arrays=16, cols=1024):
    """One head: ``S = Q K^T`` (:func:`scores`), ``P = probs(S)`` (the SFU's softmax and
    requantisation, given by the caller: INT32 ``(p, seq)`` with :data:`MASKED` entries ->
    INT8 ``(p, seq)``), ``O = P V`` (:func:`context`). Returns ``(S, P, O)``."""
    s = scores(q, k, causal, arrays=arrays, cols=cols)
    pm = _check_int8("probs(S)", probs(s))
    if pm.shape != s.shape:
        raise ValueError(f"probs(S) must have shape {s.shape}, not {pm.shape}")
    return s, pm, context(pm, v, causal, arrays=arrays, cols=cols)


def _query_keys(n_queries, seq, causal):
    pos = _positions(n_queries, seq)
    return pos + 1 if causal else np.full(n_queries, seq)


def scores_cycles(n_queries, seq, head_dim, causal=False, *, arrays=256, cols=1024):
    """Module cycles of :func:`scores` (equal to :func:`cycles` ``(p, d, seq)`` with
    ``split="cols"`` when not causal): one product run of ``ceil(n_keys / arrays) *
    head_dim`` products per query."""
    check_int("head_dim", head_dim, 1)
    check_int("arrays", arrays, 1, 1024)
    return int(sum(run_cycles(-(-int(n) // arrays) * head_dim, cols=cols)
                   for n in _query_keys(n_queries, seq, causal)))


def context_cycles(n_queries, seq, head_dim, causal=False, *, arrays=256, cols=1024):
    """Module cycles of :func:`context`: the same runs as :func:`scores_cycles`
    (``ceil(n_keys / arrays)`` tokens of ``head_dim`` products per array); equal to
    :func:`cycles` ``(p, seq, d)`` with ``split="rows"`` when not causal."""
    return scores_cycles(n_queries, seq, head_dim, causal, arrays=arrays, cols=cols)


# ============================================================================ controller commands

#: The controller's commands (``rtl.digital_pim.Cmd``), by name.
COMMANDS = ("clear", "append", "scores", "context")
#: Cycles the controller spends after a product run before its results are in the
#: output FIFO: the two shift-and-add stages and the state change (DRAIN).
DRAIN_CYCLES = 3


def _storage_rows_touched(first, n, per_row):
    """Storage rows that elements ``first .. first + n - 1`` touch (``per_row`` a row)."""
    return (first + n - 1) // per_row - first // per_row + 1


def command_cycles(cmd, arg=0, length=0, *, arrays=256, cols=1024, head_dim=64, lanes=64,
                   max_seq=1024):
    """Cycles of one controller command, from the cycle its header beat is taken to the
    cycle the next header can be taken, with every input beat offered at once and the
    result stream always ready (``rtl.digital_pim``; its cocotb test asserts equality).

    ``cmd``: one of :data:`COMMANDS`; ``arg``: the header's argument (APPEND: tokens;
    SCORES / CONTEXT: ``n_keys``, 0 or more than the length meaning all); ``length``:
    the head's cache length when the header is taken. With ``L = lanes``, ``A =
    arrays``, ``d = head_dim``, ``E = cols // 8``, ``U = ceil(n_keys / A)``:

    * CLEAR: 1; APPEND: ``1 + sum over tokens t (2 ceil(d / L) + 2 rows(t))`` (``rows``:
      storage rows the token's ``d`` elements at ``(t // A) d`` touch; 1 on a full cache);
    * SCORES: ``1 + ceil(d / L) + run_cycles(U d) + 3 + ceil(length / A) - U + 1``
      (header, q beats, the run, the shift-and-add drain, the masked beats; 1 + 1 in
      place of the run and drain on an empty cache);
    * CONTEXT: ``1 + ceil(length / L) + run_cycles(U d) + 3 + (log2 A + 1) + ceil(d / A)``
      (the last terms: the reduction of the arrays' partial vectors, a tree of log2 A
      steps on the accumulators' adders, and the result beats; ``1`` in place of the p
      beats, run and drain on an empty cache).

    Raises:
        ParameterTypeError, ValueError: ``cmd`` not a command, a parameter out of its
            range (as :class:`Layout`, ``arrays`` a power of two; ``lanes`` 1..1024),
            ``length`` not in
            0..``max_seq``, ``arg`` negative or above ``max_seq``.
    """
    cmd = check_choice("cmd", cmd, COMMANDS)
    check_pow2("arrays", arrays, 1, 1024)
    check_pow2("cols", cols, 16, 4096)
    check_int("head_dim", head_dim, 1, 1024)
    check_int("lanes", lanes, 1, 1024)
    check_int("max_seq", max_seq, 1, 1 << 16)
    check_int("length", length, 0, max_seq)
    check_int("arg", arg, 0, max_seq)
    A, d, L, E = arrays, head_dim, lanes, cols // ELEMENT_BITS
    if cmd == "clear" or (cmd == "append" and arg == 0):
        return 1
    if cmd == "append":
        total = 1
        for t in range(length, length + arg):
            rows = 1 if t >= max_seq else _storage_rows_touched((t // A) * d, d, E)
            total += 2 * -(-d // L) + 2 * rows
        return total
    n = length if arg == 0 or arg > length else arg
    U = -(-n // A)
    run = run_cycles(U * d, cols=cols) + DRAIN_CYCLES if U else 1
    if cmd == "scores":
        return 1 + -(-d // L) + run + -(-length // A) - U + 1
    return 1 + -(-length // L) + run + A.bit_length() + -(-d // A)


def head_command_cycles(queries, keys, head_dim, causal=False, *, arrays=256, cols=1024,
                        lanes=64):
    """Controller cycles of one head's attention on one module, command by command: the
    APPEND of the ``queries`` new tokens' K and V rows (the cache holds ``keys -
    queries`` tokens before), then per query a SCORES and a CONTEXT command over the
    ``keys`` cached tokens (``causal``: query ``i`` of token ``keys - queries + i``
    sees ``i + 1`` ... keys, ``n_keys = position + 1``). The sum of
    :func:`command_cycles`; the SFU's softmax between SCORES and CONTEXT is not counted
    here. The cache holds the ``keys`` tokens (``max_seq = keys``)."""
    check_int("keys", keys, 1, 1 << 16)
    check_int("queries", queries, 0, keys)
    check_bool("causal", causal)
    kw = dict(arrays=arrays, cols=cols, head_dim=head_dim, lanes=lanes, max_seq=keys)
    total = command_cycles("append", queries, keys - queries, **kw) if queries else 0
    per = {}                    # a query's cycles depend on ceil(n_keys / arrays) only
    for n in _query_keys(queries, keys, causal):
        arg = int(n) if causal else 0
        u = -(-arg // arrays)
        if u not in per:
            per[u] = (command_cycles("scores", arg, keys, **kw)
                      + command_cycles("context", arg, keys, **kw))
        total += per[u]
    return total


def published_products_per_cycle(arrays=256, cols=1024):
    """The published peak: ``arrays * cols / (64 * 3) / 5`` (273.07 for 256 x 1024)."""
    return arrays * cols / (NORS_PER_PRODUCT * COLS_PER_NOR) / STEP_CYCLES


def writes_per_inference(*, heads, head_dim, seq, causal, modules=8, arrays=256,
                         rows=1024, cols=1024, max_seq=None):
    """Wear of one inference on the most loaded module of a PU that runs one layer.

    The layer's heads go round robin over the PU's ``modules`` modules; every query of
    the ``seq`` tokens makes one scores run and one context run (``causal``: query ``i``
    over keys ``0..i``). Returns a dict: ``steps`` (row steps per array of that module),
    ``compute_rows``, ``out_writes`` (write pulses per OUT cell and inference: preset +
    NOR per step, spread over the compute rows), ``operand_writes`` (per A/B cell),
    ``kv_writes`` (per storage cell: 1 per token). The compute row advances by one
    every step, so a row takes ``ceil(steps / compute_rows)`` steps at most: the two
    figures are that bound (a cell of a partly used last step is written less).
    Every PU runs its own layer on its own arrays, so the number of layers does not
    change the wear of one PU.
    """
    heads_here = -(-heads // modules)
    lay = Layout(arrays, rows, cols, head_dim, max_seq or seq, heads_here)
    S = lay.slots
    steps = 0
    for n in _query_keys(seq, seq, causal):
        M = -(-int(n) // arrays) * head_dim
        steps += 2 * -(-NORS_PER_PRODUCT * M // S)
    steps *= heads_here
    cr = lay.compute_rows
    per_row = -(-steps // cr)
    return {"steps": steps, "compute_rows": cr, "out_writes": 2 * per_row,
            "operand_writes": per_row, "kv_writes": 1}
