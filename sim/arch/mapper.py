"""Mapper: static matrices onto analog arrays, copies of them into the arrays that
remain, layers onto PUs and chips.

Matrix -> tile groups
    A static matrix W (m inputs x n outputs) is SVD-factored (``svd=True``, HyFlexPIM)
    into A (m x r) and B (r x n), ``r = floor(m n / (m + n))``
    (:func:`hyflexpim.models.rank.svd_rank`). Rank ``i`` is column ``i`` of A
    and row ``i`` of B. The ranks stored in SLC (``k`` of them) form one SLC group of
    each factor, the others one MLC group: A.slc (m x k), A.mlc (m x (r - k)),
    B.slc (k x n), B.mlc ((r - k) x n). Without SVD (the SLC-only design, ASADI, or the
    weight-magnitude baseline) the SLC share is a set of output neurons of W.

Tile group -> arrays
    An array (64 x 128) holds 64 inputs x 16 neurons (SLC) or 32 neurons (MLC) of INT8
    weights (``cols / (weight_bits / bits per cell)``). A group of ``rows`` inputs and
    ``neurons`` outputs needs ``ceil(rows / 64) * ceil(neurons / npa)`` arrays; the
    mode is per array. A *column tile* is the ``ceil(rows / 64)`` arrays of one column
    chunk: the unit of placement (its row chunks' INT32 partial sums are added on the
    PU's inner bus; column tiles of one group hold different outputs, so they can sit
    in different PUs without partial sums between them).

Layer -> copies (replication at matrix granularity, placed at tile granularity)
    A layer's matrices form two analog phases, ``qkv`` and ``post`` (:mod:`.schedule`).
    Every tile group of a phase gets the same number of copies ``c`` (a phase is as
    slow as its slowest group, and every group sees every token once); the tokens of a
    sequence are spread over the copies. The mapper enumerates ``(c_qkv, c_post)`` that
    fit the arrays of the layer's ``P`` PUs and keeps the pair of the shortest period
    (:func:`.schedule.layer_period`; ties: fewer arrays), so the stages are balanced by
    their time: with a digital-PIM-bound attention no copies are spent on ``post``.
    Copies are packed PU by PU at column-tile granularity (:func:`pack`).

Layer -> PUs -> chips
    A layer needs ``g`` PUs for one copy of each phase (tensor parallel when
    ``g > 1``). With ``pus_per_layer = P >= g`` its arrays are those of ``P`` PUs and its
    attention heads go round robin over their ``8 P`` digital modules; the PUs exchange
    partial sums over the global bus (DESIGN.md s6: two reductions per layer and token,
    INT32 hidden vector from each of ``P - 1`` PUs and the INT8 result back). A chip
    holds ``floor(24 / P)`` layers (pipeline), ``ceil(layers / that)`` chips make one
    pipeline (the hidden state crosses PCIe between chips), spare chips hold further
    pipelines (data parallel). Default ``P``: the one of the highest throughput within
    the chips given (or the fewest chips the model needs).

Digital PIM capacity (per PU; 8 x 256 x 1024 x 1024 bits = 256 MiB)
    Q, K, V (INT8) of the PU's heads at the sequence length (the KV cache for decoders,
    times the batch; twice with the ``overlap`` schedule), plus the INT8 attention
    probabilities of a block of query rows. A PU that cannot hold Q/K/V and one row
    block is an error.
"""

import functools
import math
import re
from dataclasses import dataclass, field

from ...base import check_bool, check_fraction, check_int
from ...models.encoding import bits_per_cell
from ...models.rank import svd_rank
from .counts import attention_counts, pairs, sfu_inputs_per_token
from .models import ROLES, get_model
from .params import default_params, read_json
from .schedule import LayerStage, layer_period
from .timing import attention_time, first_result_time, sfu_time, vector_time

__all__ = ["kept_rank", "slc_count", "TileGroup", "MatrixMap", "LayerMap", "SlcSpec",
           "load_slc_map", "map_matrix", "map_layer", "Plan", "plan", "DESIGNS", "PIM_DESIGNS",
           "Design", "pim_design", "FitError", "pack", "MAX_SEQ", "MAX_BATCH", "MAX_CHIPS"]

#: Every design the model evaluates; the first four are PIM designs this mapper places.
PIM_DESIGNS = ("hyflexpim", "slc-only", "asadi", "asadi-dagger")
DESIGNS = PIM_DESIGNS + ("sprint", "nmp", "non-pim")

#: Upper bounds of the run-time sizes (the messages state them).
MAX_SEQ = 1 << 20
MAX_BATCH = 1 << 16
MAX_CHIPS = 1 << 16


class FitError(ValueError):
    """The model cannot be placed on the hardware asked for."""


def kept_rank(m, n):
    """``floor(m n / (m + n))``: the factors have no more parameters than W.

    At least 1: a matrix one input or one output wide (for which the formula gives 0)
    keeps one rank, its factors then holding ``m + n`` weights instead of ``m n``.
    """
    return max(1, svd_rank(m, n))


def slc_count(fraction, total):
    """SLC ranks (or neurons) for a fraction: ``ceil(fraction * total)`` (0 for 0)."""
    fraction = check_fraction("SLC fraction", fraction)
    return min(total, math.ceil(fraction * total - 1e-9)) if fraction > 0 else 0


@dataclass(frozen=True)
class Design:
    """How a PIM design maps and runs a layer.

    ``attention_cost`` multiplies the digital PIM's cycles and energy per INT8 product
    (FP32 operands, a sparse attention's density); ``token_keep`` is the fraction of
    tokens processed after token pruning."""
    name: str
    svd: bool
    slc_only: bool
    weight_bits: int = 8
    input_bits: int = 8
    attention_cost: float = 1.0
    token_keep: float = 1.0


def pim_design(name, params=None, svd=True):
    """The :class:`Design` of a PIM design name (``svd`` applies to HyFlexPIM only)."""
    p = params or default_params()
    if name == "hyflexpim":
        return Design("hyflexpim", bool(svd), False)
    if name == "slc-only":
        return Design("slc-only", False, True)
    if name in ("asadi", "asadi-dagger"):
        b = p.baseline
        bits = b("asadi.attention_bits")
        cost = (bits / 8) ** 2 * b("asadi.attention_density")
        keep = b("asadi.token_keep")
        if not 0.0 < keep <= 1.0:
            raise ValueError(f"baseline parameter file: asadi.token_keep must be in (0, 1], not {keep!r}")
        w = int(b("asadi.fp32_operand_bits")) if name == "asadi" else 8
        return Design(name, False, True, w, w, cost, keep)
    raise ValueError(f"design must be one of {', '.join(PIM_DESIGNS)} for the PIM mapper, not {name!r}")


@dataclass(frozen=True)
class TileGroup:
    """Inputs ``rows`` x outputs ``neurons`` of one factor, all in one mode."""
    matrix: str
    factor: str            # "W", "A" or "B"
    mode: str              # "slc" or "mlc"
    rows: int
    neurons: int
    indices: tuple = ()    # SLC/MLC rank (or neuron) indices of this group
    array_rows: int = 64
    array_cols: int = 128
    weight_bits: int = 8

    @property
    def slices(self):
        """Columns per weight: ``weight_bits / bits per cell``."""
        return -(-self.weight_bits // bits_per_cell(self.mode))

    @property
    def npa(self):
        return max(1, self.array_cols // self.slices)

    @property
    def row_chunks(self):
        return math.ceil(self.rows / self.array_rows)

    @property
    def col_chunks(self):
        return math.ceil(self.neurons / self.npa)

    @property
    def arrays(self):
        return self.row_chunks * self.col_chunks

    @property
    def wl_pulses_per_plane(self):
        """Wordlines driven per bit-plane: every array of a row chunk drives its used rows."""
        return self.rows * self.col_chunks

    @property
    def conversions_per_plane(self):
        """Columns converted per bit-plane (only columns that hold weights)."""
        return self.neurons * self.slices * self.row_chunks

    @property
    def partial_adds(self):
        """INT32 additions per vector to combine the row chunks of every neuron."""
        return self.neurons * (self.row_chunks - 1)

    @property
    def bus_bytes(self):
        """Inner-bus bytes per vector: INT8 inputs in, INT32 results out."""
        return self.rows * math.ceil(self.weight_bits / 8) + 4 * self.neurons


@dataclass(frozen=True)
class MatrixMap:
    """The tile groups of one static matrix (``rank`` = r with SVD, n without)."""
    role: str
    m: int
    n: int
    svd: bool
    rank: int              # r (SVD) or n (no SVD)
    k_slc: int
    groups: tuple

    @functools.cached_property
    def arrays(self):
        return sum(g.arrays for g in self.groups)

    @property
    def depth(self):
        """Arrays one vector passes through in sequence (A then B)."""
        return 2 if self.svd else 1

    def arrays_by_mode(self):
        out = {"slc": 0, "mlc": 0}
        for g in self.groups:
            out[g.mode] += g.arrays
        return out


def map_matrix(role, m, n, *, svd=True, k_slc=0, rank=None, slc_indices=None, rows=64, cols=128,
               weight_bits=8):
    """Tile groups of one static matrix with ``k_slc`` SLC ranks (or neurons without SVD)."""
    key = (role, m, n, svd, k_slc, rank, None if slc_indices is None else tuple(slc_indices), rows,
           cols, weight_bits)
    mm = _MATRIX_CACHE.get(key)
    if mm is None:
        if len(_MATRIX_CACHE) > 4096:
            _MATRIX_CACHE.clear()
        mm = _MATRIX_CACHE[key] = _map_matrix(role, m, n, svd, k_slc, rank, slc_indices, rows, cols,
                                              weight_bits)
    return mm


_MATRIX_CACHE = {}


def _map_matrix(role, m, n, svd, k_slc, rank, slc_indices, rows, cols, weight_bits):
    r = (kept_rank(m, n) if rank is None else rank) if svd else n
    if svd and not 1 <= r <= min(m, n):
        raise ValueError(f"rank of {role} must be in 1..{min(m, n)}, not {r!r}")
    if not 0 <= k_slc <= r:
        raise ValueError(f"SLC ranks of {role} must be in 0..{r}, not {k_slc!r}")
    if slc_indices is None:
        idx, rest = range(k_slc), range(k_slc, r)
    else:
        idx = tuple(sorted(slc_indices))
        sidx = set(idx)
        rest = tuple(i for i in range(r) if i not in sidx)
    mk = lambda fac, mode, rw, nn, ii: TileGroup(role, fac, mode, rw, nn, ii, rows, cols, weight_bits)
    groups = []
    if svd:
        for mode, kk, ii in (("slc", k_slc, idx), ("mlc", r - k_slc, rest)):
            if kk:
                groups.append(mk("A", mode, m, kk, ii))
        for mode, kk, ii in (("slc", k_slc, idx), ("mlc", r - k_slc, rest)):
            if kk:
                groups.append(mk("B", mode, kk, n, ii))
    else:
        for mode, kk, ii in (("slc", k_slc, idx), ("mlc", n - k_slc, rest)):
            if kk:
                groups.append(mk("W", mode, m, kk, ii))
    return MatrixMap(role, m, n, svd, r, k_slc, tuple(groups))


# ---- SLC specification: one rate, per-matrix fractions or rank lists from a file -------

_HEURISTICS = [  # (regex on the lower-cased name, role); first match wins
    (r"(gate_proj|\bw1\b.*gate)", "gate"),
    (r"(query|q_proj|\.wq\b|\bq\b)", "q"),
    (r"(key|k_proj|\.wk\b|\bk\b)", "k"),
    (r"(value|v_proj|\.wv\b|\bv\b)", "v"),
    (r"(c_attn|qkv)", "qkv"),
    (r"(attention\.output|o_proj|out_proj|attn\.c_proj|\.wo\b|attention\.proj)", "o"),
    (r"(intermediate|fc1|up_proj|c_fc|\bw3\b)", "ffn1"),
    (r"(down_proj|fc2|mlp\.c_proj|\bw2\b|output\.dense)", "ffn2"),
]
_IGNORED = re.compile(r"(classifier|lm_head|pooler|head\b|embed|wte|wpe)")


@dataclass
class SlcSpec:
    """SLC assignment: a default fraction and per-(layer, role) overrides.

    ``overrides[(layer or None, role)] = dict(rank=, slc_ranks= or slc_fraction=, svd=)``;
    ``layer None`` applies to every layer.
    """
    fraction: float = 0.0
    overrides: dict = field(default_factory=dict)
    ignored: list = field(default_factory=list)
    source: str = ""
    svd: bool = True

    def __post_init__(self):
        self.fraction = check_fraction("slc", self.fraction)

    def entry(self, layer, role):
        return self.overrides.get((layer, role)) or self.overrides.get((None, role)) or {}


def _resolve_name(name, entry):
    if "role" in entry or "layer" in entry:
        role = entry.get("role")
        layer = entry.get("layer")
        if role not in ROLES:
            raise ValueError(f"mapping entry {name!r}: role must be one of {', '.join(ROLES)}, not {role!r}")
        if layer is not None:
            check_int(f"mapping entry {name!r}: layer", layer, 0)
        return layer, role
    mt = re.fullmatch(r"(?:[lL](\d+)|\*)\.(\w+)", name) or re.fullmatch(r"()(\w+)", name)
    if mt and mt.group(2) in ROLES:
        return (int(mt.group(1)) if mt.group(1) else None), mt.group(2)
    low = name.lower()
    if _IGNORED.search(low):
        return None
    lm = re.search(r"(?:layers?|h|blocks?|encoder_layer)[._](\d+)", low)
    for pat, role in _HEURISTICS:
        if re.search(pat, low):
            if not lm:
                raise ValueError(f"mapping entry {name!r}: cannot tell its layer (use 'L<n>.{role}' "
                                 f"or give \"layer\" and \"role\")")
            return int(lm.group(1)), role
    raise ValueError(f"mapping entry {name!r}: cannot tell which matrix it is; name it "
                     f"'L<layer>.<role>' (roles: {', '.join(ROLES)}) or give \"layer\" and \"role\"")


def _check_entry(name, e):
    if "slc_fraction" in e:
        check_fraction(f"slc_fraction of {name!r}", e["slc_fraction"])
    else:
        sr = e["slc_ranks"]
        if not isinstance(sr, list) or any(isinstance(i, bool) or not isinstance(i, int) or i < 0 for i in sr):
            raise ValueError(f"mapping entry {name!r}: slc_ranks must be a list of non-negative integers")
        if len(set(sr)) != len(sr):
            raise ValueError(f"mapping entry {name!r}: slc_ranks has repeated ranks")
    if "shape" in e:
        sh = e["shape"]
        if (not isinstance(sh, list) or len(sh) != 2
                or any(isinstance(v, bool) or not isinstance(v, int) or v < 1 for v in sh)):
            raise ValueError(f"mapping entry {name!r}: shape must be [m, n] of positive integers")
    if "rank" in e:
        check_int(f"mapping entry {name!r}: rank", e["rank"], 1)
    if "svd" in e:
        check_bool(f"svd of {name!r}", e["svd"])


def load_slc_map(path_or_dict, fraction=0.0):
    """An :class:`SlcSpec` from a mapping JSON file (or an already loaded dict).

    Accepted format (docs/architecture.md, "Mapping file")::

        {"matrices": {NAME: {"shape": [m, n], "rank": r, "slc_ranks": [i, ...]}, ...}}

    ``slc_fraction`` may replace ``slc_ranks``; ``shape``/``rank`` are optional and checked;
    the top level may also be the ``matrices`` object itself.

    Raises:
        FileNotFoundError: no such file.
        ValueError: a directory, not UTF-8 or JSON, a bad entry, or a map without any
            entry for a layer's matrix (an empty map, or only ignored names).
    """
    if isinstance(path_or_dict, dict):
        data, src = path_or_dict, "<dict>"
    else:
        data = read_json(path_or_dict, "mapping file")
        src = str(path_or_dict)
    mats = data.get("matrices", data if "matrices" not in data else None)
    if not isinstance(mats, dict):
        raise ValueError(f"mapping file {src}: 'matrices' must be an object of matrix entries")
    spec = SlcSpec(fraction, source=src)
    allowed = {"shape", "rank", "slc_ranks", "slc_fraction", "svd", "layer", "role",
               # written by models/redistribute.py (format "hyflexpim-slc-mapping"), not used here
               "policy", "slc_count", "factors", "scores", "slc_mask"}
    for name, e in mats.items():
        if name in ("format", "model", "version", "_about") and not isinstance(e, dict):
            continue
        if not isinstance(e, dict):
            raise ValueError(f"mapping entry {name!r}: must be an object")
        bad = sorted(set(e) - allowed)
        if bad:
            raise ValueError(f"mapping entry {name!r}: unknown key(s) {', '.join(bad)}; "
                             f"allowed: {', '.join(sorted(allowed))}")
        e = dict(e)
        if "slc_ranks" in e:                 # the rank list wins over a fraction given beside it
            e.pop("slc_fraction", None)
        if "rank" in e and e["rank"] is None:  # unfactored entry (policy 'magnitude')
            e.pop("rank")
            e["svd"] = False
        if "slc_ranks" not in e and "slc_fraction" not in e:
            raise ValueError(f"mapping entry {name!r}: needs slc_ranks or slc_fraction")
        _check_entry(name, e)
        key = _resolve_name(name, e)
        if key is None:
            spec.ignored.append(name)
            continue
        layer, role = key
        roles = ("q", "k", "v") if role == "qkv" else (role,)
        for rl in roles:
            spec.overrides[(layer, rl)] = dict(e, _name=name, _fused=role == "qkv")
    if not spec.overrides:
        what = (f"only entries that are not layer matrices ({', '.join(spec.ignored)})"
                if spec.ignored else "no matrix entries")
        raise ValueError(f"mapping file {src}: {what}; name at least one matrix "
                         f"'L<layer>.<role>' (roles: {', '.join(ROLES)})")
    return spec


def _check_spec_against(model, spec):
    """Every override names a layer and a matrix the model has."""
    mats = model.matrices()
    for (layer, role), e in spec.overrides.items():
        name = e.get("_name", f"L{layer}.{role}")
        if layer is not None and layer >= model.layers:
            raise ValueError(f"mapping entry {name!r}: layer {layer}, but {model.name} has layers "
                             f"0..{model.layers - 1}")
        if role not in mats:
            raise ValueError(f"mapping entry {name!r}: {model.name} has no {role} matrix "
                             f"(its matrices: {', '.join(mats)})")


def _matrix_from_spec(model, layer, role, m, n, spec, design, p):
    kw = dict(rows=p.rows, cols=p.cols, weight_bits=design.weight_bits)
    if design.slc_only:
        return map_matrix(role, m, n, svd=False, k_slc=n, **kw)
    e = spec.entry(layer, role)
    svd = bool(e.get("svd", design.svd))
    name = e.get("_name", f"L{layer}.{role}")
    if "shape" in e and not e.get("_fused"):
        sh = tuple(e["shape"])
        if sh not in ((m, n), (n, m)):
            raise ValueError(f"mapping entry {name!r}: shape {list(sh)} does not match "
                             f"{model.name} {role} ({m} x {n})")
    total = (e.get("rank") or kept_rank(m, n)) if svd else n
    if svd and "rank" in e and not e.get("_fused") and not 1 <= e["rank"] <= min(m, n):
        raise ValueError(f"mapping entry {name!r}: rank must be in 1..{min(m, n)}, not {e['rank']!r}")
    if e.get("_fused") and "rank" in e:
        total = kept_rank(m, n)       # a fused QKV rank list only gives the SLC share
    if "slc_ranks" in e and not e.get("_fused"):
        sr = e["slc_ranks"]
        if any(i >= total for i in sr):
            raise ValueError(f"mapping entry {name!r}: slc_ranks must be in 0..{total - 1}")
        return map_matrix(role, m, n, svd=svd, k_slc=len(sr), rank=total, slc_indices=sr, **kw)
    if "slc_ranks" in e:  # fused c_attn / qkv: apply its SLC share to q, k and v
        r_f = e.get("rank") or (kept_rank(*e["shape"]) if "shape" in e else None)
        if r_f is None:
            raise ValueError(f"mapping entry {name!r}: a fused QKV entry with slc_ranks needs rank or shape")
        frac = min(1.0, len(e["slc_ranks"]) / r_f)
    else:
        frac = e.get("slc_fraction", spec.fraction)
    return map_matrix(role, m, n, svd=svd, k_slc=slc_count(frac, total), rank=total if svd else None, **kw)


def phase_roles(model):
    """``{"qkv": [roles], "post": [roles]}``: the two analog phases of a layer."""
    st = model.steps()
    qkv = list(st[0])
    post = [r for s in st[1:] if s != "attention" for r in s]
    return {"qkv": qkv, "post": post}


@dataclass(frozen=True, eq=False)
class LayerMap:
    index: int
    matrices: dict  # role -> MatrixMap
    phases: dict    # phase -> roles

    @functools.cached_property
    def arrays(self):
        return sum(mm.arrays for mm in self.matrices.values())

    def phase_arrays(self, phase):
        return sum(self.matrices[r].arrays for r in self.phases[phase])

    def phase_groups(self, phase):
        return [g for r in self.phases[phase] for g in self.matrices[r].groups]

    def depth(self, phase):
        """Array stages in series on a token's path through the phase."""
        if phase == "qkv":
            return max(self.matrices[r].depth for r in self.phases["qkv"])
        steps = {}
        for r in self.phases["post"]:          # ffn1 and gate run side by side
            key = "ffn_in" if r in ("ffn1", "gate") else r
            steps[key] = max(steps.get(key, 0), self.matrices[r].depth)
        return sum(steps.values())

    def bus_bytes(self, phase):
        return sum(g.bus_bytes for g in self.phase_groups(phase))

    def arrays_by_mode(self):
        out = {"slc": 0, "mlc": 0}
        for mm in self.matrices.values():
            for k, v in mm.arrays_by_mode().items():
                out[k] += v
        return out


def map_layer(model, layer, spec, design, params=None):
    p = params or default_params()
    if isinstance(design, str):
        design = pim_design(design, p, spec.svd)
    mats = {}
    for role, (m, n) in model.matrices().items():
        mats[role] = _matrix_from_spec(model, layer, role, m, n, spec, design, p)
    return LayerMap(layer, mats, phase_roles(model))


# ---- packing -------------------------------------------------------------------------

def pack(layer_map, copies, pus, arrays_per_pu, listing=False):
    """Place ``copies[phase]`` copies of every tile group of ``layer_map`` into ``pus``
    PUs of ``arrays_per_pu`` arrays, PU by PU, splitting a group only between column
    tiles. Returns the chunks ``(phase, group, copy, first col chunk, col chunks, pu,
    first array)`` (``listing``) or True; None when they do not fit."""
    pu, free = 0, arrays_per_pu
    out = [] if listing else None
    for phase in ("qkv", "post"):
        for copy in range(copies[phase]):
            for g in layer_map.phase_groups(phase):
                rc = g.row_chunks
                if rc > arrays_per_pu:
                    return None
                left, start = g.col_chunks, 0
                while left:
                    fit = free // rc
                    if fit == 0:
                        pu, free = pu + 1, arrays_per_pu
                        if pu >= pus:
                            return None
                        continue
                    k = min(fit, left)
                    if listing:
                        out.append((phase, g, copy, start, k, pu, arrays_per_pu - free))
                    free -= k * rc
                    left -= k
                    start += k
    return out if listing else True


# ---- the plan ------------------------------------------------------------------------

@dataclass
class Plan:
    model: object
    design: str
    seq: int
    batch: int
    gen: int                  # tokens generated one by one (decoders), within seq
    layers: list              # LayerMap per layer
    g: int                    # PUs one copy of a layer needs
    pus_per_layer: int        # P
    copies: list              # {"qkv": c, "post": c} per layer
    layers_per_chip: int
    chips_per_pipeline: int
    chips: int
    pipelines: int
    digital: dict
    schedule: str
    spec: Design
    stages: list = field(repr=False, default=None)   # LayerStage per layer (prefill pass)
    params: object = field(repr=False, default=None)

    @property
    def arrays_per_layer(self):
        return [lm.arrays for lm in self.layers]

    def arrays_used(self, i):
        lm, c = self.layers[i], self.copies[i]
        return c["qkv"] * lm.phase_arrays("qkv") + c["post"] * lm.phase_arrays("post")

    @property
    def prefill_tokens(self):
        return self.seq - self.gen

    def summary(self):
        p = self.params
        modes = {"slc": 0, "mlc": 0}
        for lm, c in zip(self.layers, self.copies):
            for ph in ("qkv", "post"):
                for g in lm.phase_groups(ph):
                    modes[g.mode] += g.arrays * c[ph] * self.pipelines
        total_pus = self.chips * p.pus_per_chip
        used_pus = self.pipelines * self.pus_per_layer * self.model.layers
        arr_used = sum(modes.values())
        per_layer = [lm.arrays for lm in self.layers]
        cq = [c["qkv"] for c in self.copies]
        cp = [c["post"] for c in self.copies]
        return {
            "arrays_per_layer_copy": per_layer[0] if len(set(per_layer)) == 1 else per_layer,
            "arrays_slc": modes["slc"], "arrays_mlc": modes["mlc"],
            "arrays_available": total_pus * p.arrays_per_pu,
            "array_utilisation": arr_used / (total_pus * p.arrays_per_pu),
            "arrays_per_layer_used_max": max(self.arrays_used(i) for i in range(len(self.layers))),
            "pus_per_layer_copy": self.g, "pus_per_layer": self.pus_per_layer,
            "copies_qkv": min(cq), "copies_post": min(cp),
            "layers_per_chip": self.layers_per_chip, "chips_per_pipeline": self.chips_per_pipeline,
            "chips": self.chips, "pipelines": self.pipelines, "pus_used": used_pus, "pus_total": total_pus,
            "schedule": self.schedule, "digital": self.digital,
        }

    def placement(self):
        """Where pipeline 0's tiles are, compactly (layers of one layout share it).

        Returns ``{"layers": [{"layer", "chip", "first_pu", "layout"}], "layouts":
        [{"copies", "pus", "chunks": [{"phase", "copy", "group", "col_chunk",
        "col_chunks", "row_chunks", "arrays", "pu", "module", "array"}]}], "groups":
        [{"matrix", "factor", "mode", "rows", "neurons", "indices"}]}``: a chunk's ``pu``
        counts from its layer's ``first_pu``; ``group`` indexes ``groups``; ``module``
        and ``array`` are its first array in that PU."""
        p = self.params
        C, M = p.arrays_per_pu, p.arrays_per_module
        layers, layouts, groups = [], [], []
        layout_ids, group_ids = {}, {}
        for li, (lm, c) in enumerate(zip(self.layers, self.copies)):
            key = (id(lm), c["qkv"], c["post"])
            if key not in layout_ids:
                chunks = []
                for phase, g, copy, start, k, pu, a in pack(lm, c, self.pus_per_layer, C, listing=True):
                    if id(g) not in group_ids:
                        group_ids[id(g)] = len(groups)
                        groups.append({"matrix": g.matrix, "factor": g.factor, "mode": g.mode,
                                       "rows": g.rows, "neurons": g.neurons, "indices": list(g.indices)})
                    chunks.append({"phase": phase, "copy": copy, "group": group_ids[id(g)],
                                   "col_chunk": start, "col_chunks": k, "row_chunks": g.row_chunks,
                                   "arrays": k * g.row_chunks, "pu": pu, "module": a // M, "array": a % M})
                layout_ids[key] = len(layouts)
                layouts.append({"copies": dict(c), "pus": self.pus_per_layer, "chunks": chunks})
            layers.append({"layer": li, "chip": li // self.layers_per_chip,
                           "first_pu": (li % self.layers_per_chip) * self.pus_per_layer,
                           "layout": layout_ids[key]})
        return {"layers": layers, "layouts": layouts, "groups": groups}


def digital_usage(model, seq, batch, pus, params, rows_total=None, sequences=1):
    """Bytes on one PU's digital PIM for one layer over ``pus`` PUs (heads split).

    Returns a dict with the bytes of Q, K, V (KV cache), the score rows per block and
    the capacity; raises :class:`FitError` when Q/K/V and one row block do not fit.
    """
    cap = params.digital_bits_per_pu // 8
    share = 1.0 / pus
    rows_total = seq if rows_total is None else rows_total
    kv = sequences * batch * seq * 2 * model.d_kv * share
    q = sequences * batch * rows_total * model.d_q * share
    heads = max(1.0, model.heads * share)
    row_bytes = batch * heads * seq            # INT8 probabilities of one query row (its heads)
    free = cap - kv - q
    if free < row_bytes:
        raise FitError(f"sequence length {seq} (batch {batch}) does not fit the digital PIM: "
                       f"Q/K/V need {int(kv + q):,} B and one score row {int(row_bytes):,} B of "
                       f"{cap:,} B per PU")
    rows_block = int(min(rows_total, free // row_bytes))
    return {"capacity_bytes": cap, "qkv_bytes": int(kv + q), "kv_cache_bytes": int(kv),
            "score_rows_per_block": rows_block, "score_bytes": int(rows_block * row_bytes),
            "used_fraction": (kv + q + rows_block * row_bytes) / cap}


def tp_bytes_per_token(model, P):
    """Global-bus bytes per token of a layer on ``P`` tensor-parallel PUs: two reductions
    (after O and after FFN2), each the INT32 partial hidden vector of ``P - 1`` PUs and
    the INT8 result sent back to them (DESIGN.md s6: about 3 KB per PU for GPT-2)."""
    return 2 * (P - 1) * 5 * model.hidden


def layer_stage(model, lm, n, keys, P, design, p):
    """The :class:`~.schedule.LayerStage` of one layer on ``P`` PUs for ``n`` query rows."""
    causal = model.causal
    t_vec = vector_time("mlc", params=p, input_bits=design.input_bits)
    t_first = first_result_time("mlc", params=p, input_bits=design.input_bits)
    att_n = pairs(n, keys, causal)
    cnt = attention_counts(model, n, att_n)
    att = attention_time(model.heads, n, keys, model.head_dim, causal, P * p.digital_modules_per_pu,
                         p, cost=design.attention_cost)
    sfu_att = sfu_time(cnt["softmax_inputs"], pus=P, params=p)
    sfu_post = sfu_time(n * sfu_inputs_per_token(model), pus=P, params=p)
    bus = P * p.bus_bw
    bus_qkv = n * lm.bus_bytes("qkv") / bus
    bus_post = (n * lm.bus_bytes("post") + cnt["bus_bytes"]) / bus
    glob_fill = tp_bytes_per_token(model, P) / p.bus_bw
    return LayerStage(n, causal, lm.depth("qkv"), lm.depth("post"), t_vec, t_first, att, sfu_att,
                      sfu_post, bus_qkv, bus_post, glob_fill)


def choose_copies(lm, st, P, C, schedule):
    """Copies ``{"qkv", "post"}`` of the shortest period that fit ``P`` PUs (ties: fewer
    arrays); None when one copy of each phase does not fit.

    Only the copy counts where ``ceil(n / c)`` changes matter (O(sqrt n) of them); for
    each ``c_qkv`` the post phase gets the fewest copies that reach the shortest period
    the remaining arrays allow (the period does not grow with copies)."""
    aq, ap = lm.phase_arrays("qkv"), lm.phase_arrays("post")
    budget = P * C
    n = max(1, st.n)
    best = None
    cq = 1
    while cq <= n and cq * aq + ap <= budget:
        m = math.ceil(n / cq)                      # tokens per qkv copy; cq is the fewest for m
        cp_max = min(n, (budget - cq * aq) // ap)
        t = layer_period(st, cq, cp_max, schedule)
        lo, hi = 1, cp_max
        while lo < hi:
            mid = (lo + hi) // 2
            if layer_period(st, cq, mid, schedule) <= t * (1 + 1e-12):
                hi = mid
            else:
                lo = mid + 1
        used = cq * aq + lo * ap
        if best is None or t < best[0] * (1 - 1e-12) or (t <= best[0] * (1 + 1e-12) and used < best[1]):
            best = (t, used, {"qkv": cq, "post": lo})
        cq = math.ceil(n / (m - 1)) if m > 1 else n + 1
    if best is None:
        return None
    c = best[2]
    while pack(lm, c, P, C) is None:               # column-tile rounding at PU boundaries
        if c["post"] > 1:
            c = dict(c, post=c["post"] - 1)
        elif c["qkv"] > 1:
            c = dict(c, qkv=c["qkv"] - 1)
        else:
            return None
    return c


def _place(model, layers, n, keys, P, design, p, schedule):
    stages, copies, cache = [], [], {}
    for lm in layers:
        if id(lm) not in cache:
            st = layer_stage(model, lm, n, keys, P, design, p)
            cache[id(lm)] = (st, choose_copies(lm, st, P, p.arrays_per_pu, schedule))
        st, c = cache[id(lm)]
        if c is None:
            return None, None
        stages.append(st)
        copies.append(c)
    return stages, copies


def _pipeline_rate(model, stages, copies, P, lpc, cpp, pipelines, n, p, schedule):
    """Sequences per second of the plan (the mapper's objective)."""
    per = max(layer_period(st, c["qkv"], c["post"], schedule) for st, c in zip(stages, copies))
    glob = min(model.layers, lpc) * n * (tp_bytes_per_token(model, P) + model.hidden) / p.bus_bw
    link = n * model.hidden / p.link_bw if cpp > 1 else 0.0
    return pipelines / max(per, glob, link)


def plan(model, seq, slc=0.1, design="hyflexpim", *, slc_map=None, svd=True, chips=None,
         pus_per_layer=None, batch=1, gen=None, params=None, schedule=None):
    """Place ``model`` at sequence length ``seq``; see the module docstring for the rules.

    ``gen``: decoder tokens generated one by one within ``seq`` (default ``seq // 2``;
    0 = all tokens at once, as for perplexity). ``schedule``: "sequence" or "overlap"
    (default: the parameter file's).
    """
    p = params or default_params()
    model = get_model(model)
    if isinstance(design, Design):
        spec_design = design
    else:
        spec_design = pim_design(design, p, svd)
    seq = check_int("seq", seq, 1, MAX_SEQ)
    batch = check_int("batch", batch, 1, MAX_BATCH)
    if chips is not None:
        chips = check_int("chips", chips, 1, MAX_CHIPS)
    if pus_per_layer is not None:
        pus_per_layer = check_int("pus_per_layer", pus_per_layer, 1, p.pus_per_chip)
    schedule = p.schedule if schedule is None else schedule
    if schedule not in ("sequence", "overlap"):
        raise ValueError(f"schedule must be one of 'sequence', 'overlap', not {schedule!r}")
    if slc_map is None:
        spec = SlcSpec(slc)
    elif isinstance(slc_map, SlcSpec):
        spec = slc_map
    else:
        spec = load_slc_map(slc_map, slc)
    spec.svd = spec_design.svd
    _check_spec_against(model, spec)
    if model.causal:
        gen = seq // 2 if gen is None else gen
        gen = check_int("gen", gen, 0, seq - 1)
    else:
        if gen not in (None, 0):
            raise ValueError(f"gen applies to decoders only ({model.name} is an encoder), not {gen!r}")
        gen = 0
    if any(layer is not None for (layer, _r) in spec.overrides):
        layers = [map_layer(model, i, spec, spec_design, p) for i in range(model.layers)]
    else:                                   # every layer maps the same way
        layers = [map_layer(model, 0, spec, spec_design, p)] * model.layers
    C = p.arrays_per_pu
    one = {"qkv": 1, "post": 1}
    a_max = max(lm.arrays for lm in layers)
    g = math.ceil(a_max / C)
    while g <= p.pus_per_chip and not all(pack(lm, one, g, C) for lm in set(layers)):
        g += 1
    if g > p.pus_per_chip:
        raise FitError(f"one layer of {model.name} needs {a_max:,} arrays, more than the "
                       f"{p.pus_per_chip} PUs of a chip hold ({p.pus_per_chip * C:,})")
    min_chips = math.ceil(model.layers / (p.pus_per_chip // g))
    n = max(1, math.ceil((seq - gen) * spec_design.token_keep))
    keys = max(1, math.ceil(seq * spec_design.token_keep)) if not model.causal else n
    if pus_per_layer is not None:
        if pus_per_layer < g:
            raise FitError(f"pus_per_layer must be at least {g} for {model.name} "
                           f"({a_max:,} arrays per layer = {g} PUs), not {pus_per_layer}")
        candidates = [pus_per_layer]
    else:
        budget = chips if chips is not None else min_chips
        candidates = [P for P in range(g, p.pus_per_chip + 1)
                      if math.ceil(model.layers / (p.pus_per_chip // P)) <= budget]
        if not candidates:
            raise FitError(f"{model.name} needs {min_chips} chip(s) with {g} PU(s) per layer "
                           f"({p.pus_per_chip // g} layers per chip), not {chips}")
    best, error = None, None
    for P in candidates:
        lpc = p.pus_per_chip // P
        cpp = math.ceil(model.layers / lpc)
        total = cpp if chips is None else chips
        if total < cpp:
            raise FitError(f"{model.name} needs {cpp} chip(s) with {P} PU(s) per layer "
                           f"({lpc} layers per chip), not {chips}")
        pipelines = total // cpp
        try:
            dig = digital_usage(model, seq, batch if model.causal else 1, P, p,
                                sequences=2 if schedule == "overlap" else 1)
        except FitError as exc:
            error = error or exc
            continue
        stages, copies = _place(model, layers, n, keys, P, spec_design, p, schedule)
        if stages is None:
            error = error or FitError(f"one layer of {model.name} does not fit {P} PU(s)")
            continue
        rate = _pipeline_rate(model, stages, copies, P, lpc, cpp, pipelines, n, p, schedule)
        if best is None or rate > best[0] * (1 + 1e-9):
            best = (rate, P, lpc, cpp, total, pipelines, dig, stages, copies)
    if best is None:
        raise error
    _, P, lpc, cpp, total, pipelines, dig, stages, copies = best
    return Plan(model, spec_design.name, seq, batch, gen, layers, g, P, copies, lpc, cpp, total,
                pipelines, dig, schedule, spec_design, stages, p)
