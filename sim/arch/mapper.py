"""Mapper: static matrices onto analog arrays, layers onto PUs and chips.

Matrix -> tile groups
    A static matrix W (m inputs x n outputs) is SVD-factored (``svd=True``, HyFlexPIM)
    into A (m x r) and B (r x n), ``r = floor(m n / (m + n))``
    (:func:`hyflexpim.models.rank.svd_rank`). Rank ``i`` is column ``i`` of A
    and row ``i`` of B. The ranks stored in SLC (``k`` of them) form one SLC group of
    each factor, the others one MLC group: A.slc (m x k), A.mlc (m x (r - k)),
    B.slc (k x n), B.mlc ((r - k) x n). Without SVD (``svd=False``: the SLC-only design,
    or the weight-magnitude baseline) the SLC share is a set of output neurons of W.
    Ranks can be permuted freely, so only ``k`` matters for the array count; the rank
    indices are kept for the placement listing.

Tile group -> arrays
    An array (64 x 128) holds 64 inputs x 16 neurons (SLC) or 32 neurons (MLC)
    (``hyflexpim.models.encoding.neurons_per_array``). A group of ``rows`` inputs and
    ``neurons`` outputs needs ``ceil(rows / 64) * ceil(neurons / npa)`` arrays; the
    mode is per array (SLC and MLC are never mixed in one array). Row chunks give INT32
    partial sums that are added digitally.

Layer -> PUs -> chips
    A layer copy of A arrays needs ``g = ceil(A / 12288)`` PUs (tensor parallel when
    ``g > 1``). With ``pus_per_layer = P >= g`` the layer has ``floor(P / g)`` copies
    that split the tokens, each spread over ``P / copies`` PUs (whose digital PIM, SFUs
    and buses it uses); when ``g = 1`` each PU also holds ``floor(12288 / A)`` replicas
    of the layer in its spare arrays. Default P: the largest that keeps the chip count. A chip holds
    ``floor(24 / P)`` layers (pipeline), ``ceil(layers / that)`` chips make one
    pipeline, and spare chips hold further pipelines (data parallel).

Digital PIM capacity (per PU; 8 x 256 x 1024 x 1024 bits = 256 MiB)
    Q, K, V (INT8) of the layer at the sequence length (the KV cache for decoders,
    times the batch), plus the INT8 attention probabilities of a block of query
    rows (all rows when they fit). A PU that cannot hold Q/K/V and one row block is an
    error.
"""

import functools
import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path

from ...models.encoding import neurons_per_array, slices_per_weight
from ...models.rank import svd_rank
from .models import ROLES, get_model
from .params import default_params

__all__ = ["kept_rank", "slc_count", "TileGroup", "MatrixMap", "LayerMap", "SlcSpec",
           "load_slc_map", "map_matrix", "map_layer", "Plan", "plan", "DESIGNS", "FitError"]

DESIGNS = ("hyflexpim", "slc-only", "non-pim", "nmp")


class FitError(ValueError):
    """The model cannot be placed on the hardware asked for."""


def kept_rank(m, n):
    """``floor(m n / (m + n))``: the factors have no more parameters than W."""
    return svd_rank(m, n)


def _check_fraction(name, f):
    if isinstance(f, bool) or not isinstance(f, (int, float)) or not 0.0 <= f <= 1.0:
        raise ValueError(f"{name} must be a number in [0, 1], not {f!r}")
    return float(f)


def slc_count(fraction, total):
    """SLC ranks (or neurons) for a fraction: ``ceil(fraction * total)`` (0 for 0)."""
    fraction = _check_fraction("SLC fraction", fraction)
    return min(total, math.ceil(fraction * total - 1e-9)) if fraction > 0 else 0


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

    @property
    def npa(self):
        return neurons_per_array(self.mode, self.array_cols)

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
        return self.neurons * slices_per_weight(self.mode) * self.row_chunks

    @property
    def partial_adds(self):
        """INT32 additions per vector to combine the row chunks of every neuron."""
        return self.neurons * (self.row_chunks - 1)


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


def map_matrix(role, m, n, *, svd=True, k_slc=0, rank=None, slc_indices=None, rows=64, cols=128):
    """Tile groups of one static matrix with ``k_slc`` SLC ranks (or neurons without SVD)."""
    key = (role, m, n, svd, k_slc, rank, None if slc_indices is None else tuple(slc_indices), rows, cols)
    mm = _MATRIX_CACHE.get(key)
    if mm is None:
        if len(_MATRIX_CACHE) > 4096:
            _MATRIX_CACHE.clear()
        mm = _MATRIX_CACHE[key] = _map_matrix(role, m, n, svd, k_slc, rank, slc_indices, rows, cols)
    return mm


_MATRIX_CACHE = {}


def _map_matrix(role, m, n, svd, k_slc, rank, slc_indices, rows, cols):
    r = (kept_rank(m, n) if rank is None else rank) if svd else n
    if svd and not 1 <= r <= min(m, n):
        raise ValueError(f"rank of {role} must be in 1..{min(m, n)}, not {r!r}")
    if not 0 <= k_slc <= r:
        raise ValueError(f"SLC ranks of {role} must be in 0..{r}, not {k_slc!r}")
    total = r
    if slc_indices is None:
        idx, rest = range(k_slc), range(k_slc, total)
    else:
        idx = tuple(sorted(slc_indices))
        sidx = set(idx)
        rest = tuple(i for i in range(total) if i not in sidx)
    mk = lambda fac, mode, rw, nn, ii: TileGroup(role, fac, mode, rw, nn, ii, rows, cols)
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
        self.fraction = _check_fraction("slc", self.fraction)

    def entry(self, layer, role):
        return self.overrides.get((layer, role)) or self.overrides.get((None, role)) or {}


def _resolve_name(name, entry):
    if "role" in entry or "layer" in entry:
        role = entry.get("role")
        layer = entry.get("layer")
        if role not in ROLES:
            raise ValueError(f"mapping entry {name!r}: role must be one of {', '.join(ROLES)}, not {role!r}")
        if layer is not None and (isinstance(layer, bool) or not isinstance(layer, int) or layer < 0):
            raise ValueError(f"mapping entry {name!r}: layer must be a non-negative integer, not {layer!r}")
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


def load_slc_map(path_or_dict, fraction=0.0):
    """An :class:`SlcSpec` from a mapping JSON file (or an already loaded dict).

    Accepted format (docs/architecture.md, "Mapping file")::

        {"matrices": {NAME: {"shape": [m, n], "rank": r, "slc_ranks": [i, ...]}, ...}}

    ``slc_fraction`` may replace ``slc_ranks``; ``shape``/``rank`` are optional and checked;
    the top level may also be the ``matrices`` object itself.
    """
    if isinstance(path_or_dict, dict):
        data, src = path_or_dict, "<dict>"
    else:
        p = Path(path_or_dict)
        if not p.is_file():
            raise FileNotFoundError(f"mapping file not found: {p}")
        try:
            data = json.loads(p.read_text())
        except json.JSONDecodeError as exc:
            raise ValueError(f"mapping file {p}: malformed JSON ({exc.msg}, line {exc.lineno})") from None
        src = str(p)
    if not isinstance(data, dict):
        raise ValueError(f"mapping file {src}: top level must be a JSON object")
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
        if "slc_fraction" in e:
            _check_fraction(f"slc_fraction of {name!r}", e["slc_fraction"])
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
        if "rank" in e and (isinstance(e["rank"], bool) or not isinstance(e["rank"], int) or e["rank"] < 1):
            raise ValueError(f"mapping entry {name!r}: rank must be a positive integer, not {e['rank']!r}")
        key = _resolve_name(name, e)
        if key is None:
            spec.ignored.append(name)
            continue
        layer, role = key
        roles = ("q", "k", "v") if role == "qkv" else (role,)
        for rl in roles:
            spec.overrides[(layer, rl)] = dict(e, _name=name, _fused=role == "qkv")
    return spec


def _matrix_from_spec(model, layer, role, m, n, spec, design, p):
    if design == "slc-only":
        return map_matrix(role, m, n, svd=False, k_slc=n, rows=p.rows, cols=p.cols)
    e = spec.entry(layer, role)
    svd = bool(e.get("svd", spec.svd))
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
        return map_matrix(role, m, n, svd=svd, k_slc=len(sr), rank=total, slc_indices=sr,
                          rows=p.rows, cols=p.cols)
    if "slc_ranks" in e:  # fused c_attn / qkv: apply its SLC share to q, k and v
        r_f = e.get("rank") or (kept_rank(*e["shape"]) if "shape" in e else None)
        if r_f is None:
            raise ValueError(f"mapping entry {name!r}: a fused QKV entry with slc_ranks needs rank or shape")
        frac = min(1.0, len(e["slc_ranks"]) / r_f)
    else:
        frac = e.get("slc_fraction", spec.fraction)
    return map_matrix(role, m, n, svd=svd, k_slc=slc_count(frac, total), rank=total if svd else None,
                      rows=p.rows, cols=p.cols)


@dataclass(frozen=True)
class LayerMap:
    index: int
    matrices: dict  # role -> MatrixMap

    @functools.cached_property
    def arrays(self):
        return sum(mm.arrays for mm in self.matrices.values())

    def arrays_by_mode(self):
        out = {"slc": 0, "mlc": 0}
        for mm in self.matrices.values():
            for k, v in mm.arrays_by_mode().items():
                out[k] += v
        return out


def map_layer(model, layer, spec, design="hyflexpim", params=None):
    p = params or default_params()
    mats = {}
    for role, (m, n) in model.matrices().items():
        mats[role] = _matrix_from_spec(model, layer, role, m, n, spec, design, p)
    return LayerMap(layer, mats)


# ---- the plan ------------------------------------------------------------------------

@dataclass
class Plan:
    model: object
    design: str
    seq: int
    batch: int
    layers: list
    g: int                    # PUs per layer copy
    pus_per_layer: int        # P
    copies: int               # P // g
    replicas: list            # in-PU replicas per layer (1 when g > 1)
    layers_per_chip: int
    chips_per_pipeline: int
    chips: int
    pipelines: int
    digital: dict
    params: object = field(repr=False)

    @property
    def arrays_per_layer(self):
        return [lm.arrays for lm in self.layers]

    def summary(self):
        p = self.params
        per_pu = []
        for lm, rep in zip(self.layers, self.replicas):
            used = lm.arrays * rep * self.copies
            per_pu.append(used / self.pus_per_layer)
        modes = {"slc": 0, "mlc": 0}
        for lm, rep in zip(self.layers, self.replicas):
            for k, v in lm.arrays_by_mode().items():
                modes[k] += v * rep * self.copies * self.pipelines
        total_pus = self.chips * p.pus_per_chip
        used_pus = self.pipelines * self.pus_per_layer * self.model.layers
        arr_used = sum(modes.values())
        return {
            "arrays_per_layer_copy": self.layers[0].arrays if len(set(self.arrays_per_layer)) == 1
            else self.arrays_per_layer,
            "arrays_slc": modes["slc"], "arrays_mlc": modes["mlc"],
            "arrays_available": total_pus * p.arrays_per_pu,
            "array_utilisation": arr_used / (total_pus * p.arrays_per_pu),
            "arrays_per_pu_max": max(per_pu), "modules_per_pu_max": math.ceil(max(per_pu) / p.arrays_per_module),
            "pus_per_layer_copy": self.g, "pus_per_layer": self.pus_per_layer,
            "layer_copies": self.copies, "replicas_per_pu": min(self.replicas) if self.g == 1 else 1,
            "layers_per_chip": self.layers_per_chip, "chips_per_pipeline": self.chips_per_pipeline,
            "chips": self.chips, "pipelines": self.pipelines, "pus_used": used_pus, "pus_total": total_pus,
            "digital": self.digital,
        }

    def placement(self):
        """Tile groups of pipeline 0 with their first array: (chip, PU, module, array)."""
        p = self.params
        C, M = p.arrays_per_pu, p.arrays_per_module
        out = []
        for li, (lm, rep) in enumerate(zip(self.layers, self.replicas)):
            chip = li // self.layers_per_chip
            pu0 = (li % self.layers_per_chip) * self.pus_per_layer
            for copy in range(self.copies):
                for r in range(rep):
                    off = (copy * (self.pus_per_layer // self.copies) * C) + (r * lm.arrays if self.g == 1 else 0)
                    for role, mm in lm.matrices.items():
                        for gr in mm.groups:
                            a = off
                            out.append({
                                "layer": li, "copy": copy, "replica": r, "matrix": role, "factor": gr.factor,
                                "mode": gr.mode, "rows": gr.rows, "neurons": gr.neurons,
                                "indices": list(gr.indices), "arrays": gr.arrays,
                                "row_chunks": gr.row_chunks, "col_chunks": gr.col_chunks,
                                "chip": chip, "pu": pu0 + a // C, "module": (a % C) // M, "array": a % M,
                            })
                            off += gr.arrays
        return out


def _pos_int(name, v, allow_none=False):
    if v is None and allow_none:
        return None
    if isinstance(v, bool) or not isinstance(v, int) or v < 1:
        raise ValueError(f"{name} must be a positive integer, not {v!r}")
    return v


def digital_usage(model, seq, batch, share, params, rows_total=None):
    """Bytes on one PU's digital PIM for one layer; ``share`` = fraction of heads on the PU.

    Returns a dict with the bytes of Q, K, V (KV cache), the score rows per block and
    the capacity; raises :class:`FitError` when Q/K/V and one row block do not fit.
    """
    cap = params.digital_bits_per_pu // 8
    rows_total = seq if rows_total is None else rows_total
    kv = batch * seq * 2 * model.d_kv * share
    q = batch * rows_total * model.d_q * share
    heads = model.heads * share
    row_bytes = batch * heads * seq            # INT8 probabilities of one query row (all heads)
    free = cap - kv - q
    if free < row_bytes:
        raise FitError(f"sequence length {seq} (batch {batch}) does not fit the digital PIM: "
                       f"Q/K/V need {int(kv + q):,} B and one score row {int(row_bytes):,} B of "
                       f"{cap:,} B per PU")
    rows_block = int(min(rows_total, free // row_bytes))
    return {"capacity_bytes": cap, "qkv_bytes": int(kv + q), "kv_cache_bytes": int(kv),
            "score_rows_per_block": rows_block, "score_bytes": int(rows_block * row_bytes),
            "used_fraction": (kv + q + rows_block * row_bytes) / cap}


def plan(model, seq, slc=0.1, design="hyflexpim", *, slc_map=None, svd=True, chips=None,
         pus_per_layer=None, batch=1, gen=None, params=None):
    """Place ``model`` at sequence length ``seq``; see the module docstring for the rules."""
    p = params or default_params()
    model = get_model(model)
    if design not in ("hyflexpim", "slc-only"):
        raise ValueError(f"design must be 'hyflexpim' or 'slc-only' for the PIM mapper, not {design!r}")
    _pos_int("seq", seq)
    _pos_int("batch", batch)
    _pos_int("chips", chips, allow_none=True)
    _pos_int("pus_per_layer", pus_per_layer, allow_none=True)
    if slc_map is None:
        spec = SlcSpec(slc)
    elif isinstance(slc_map, SlcSpec):
        spec = slc_map
    else:
        spec = load_slc_map(slc_map, slc)
    spec.svd = svd
    for (layer, _role) in spec.overrides:
        if layer is not None and layer >= model.layers:
            raise ValueError(f"mapping file names layer {layer}, but {model.name} has layers 0..{model.layers - 1}")
    if any(layer is not None for (layer, _r) in spec.overrides):
        layers = [map_layer(model, i, spec, design, p) for i in range(model.layers)]
    else:                                   # every layer maps the same way
        layers = [map_layer(model, 0, spec, design, p)] * model.layers
    C = p.arrays_per_pu
    a_max = max(lm.arrays for lm in layers)
    g = math.ceil(a_max / C)
    if g > p.pus_per_chip:
        raise FitError(f"one layer of {model.name} needs {a_max:,} arrays = {g} PUs, more than the "
                       f"{p.pus_per_chip} PUs of a chip")
    min_chips = math.ceil(model.layers / (p.pus_per_chip // g))
    if pus_per_layer is None:
        budget = chips if chips is not None else min_chips
        P = g
        while P < p.pus_per_chip and math.ceil(model.layers / (p.pus_per_chip // (P + 1))) <= budget:
            P += 1
    else:
        P = pus_per_layer
        if P < g:
            raise FitError(f"pus_per_layer must be at least {g} for {model.name} "
                           f"({a_max:,} arrays per layer = {g} PUs), not {P}")
        if P > p.pus_per_chip:
            raise ValueError(f"pus_per_layer must be in 1..{p.pus_per_chip}, not {P}")
    lpc = p.pus_per_chip // P
    cpp = math.ceil(model.layers / lpc)
    if chips is None:
        chips = cpp
    elif chips < cpp:
        raise FitError(f"{model.name} needs {cpp} chip(s) with {P} PU(s) per layer "
                       f"({lpc} layers per chip), not {chips}")
    replicas = [max(1, C // lm.arrays) if g == 1 else 1 for lm in layers]
    copies = P // g
    if model.causal:
        gen = seq // 2 if gen is None else gen
        if isinstance(gen, bool) or not isinstance(gen, int) or not 0 <= gen < seq:
            raise ValueError(f"gen must be an integer in 0..{seq - 1} (tokens generated within seq), not {gen!r}")
    # Digital PIM: each copy holds the full K/V; heads are split over the PUs of a copy.
    rows = math.ceil(seq / copies)
    dig = digital_usage(model, seq, batch if model.causal else 1, 1.0 / (P // copies), p, rows_total=rows)
    return Plan(model, design, seq, batch, layers, g, P, copies, replicas, lpc, cpp, chips,
                chips // cpp, dig, p)
