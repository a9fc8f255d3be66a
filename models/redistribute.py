"""SLC/MLC selection policies and the mapping file (format in docs/algorithm.md).

Policies (one interface, :func:`select_slc`):

* ``gradient`` (the method): ranks of each factored matrix sorted by their gradient
  score (:mod:`.svd`, ``grad``, or ``grad_last_s`` for the paper's score), highest first.
* ``rank``: largest singular values first (``||A_i|| ||B_i||`` of the current factors).
* ``random``: ranks in a seeded random order (control).
* ``magnitude``: no SVD: the individual weights of the unfactored matrix with the
  largest ``|w|``.

The top ``round(k * count / 100)`` ranks (or weights) of every matrix are SLC.
"""

import json
import math
import re
from pathlib import Path

import numpy as np

__all__ = ["POLICIES", "FORMAT", "arch_place", "check_policy", "check_slc_percent", "slc_count",
           "select_slc", "build_mapping", "pack_mask", "unpack_mask", "save_mapping",
           "load_mapping"]

POLICIES = ("gradient", "rank", "magnitude", "random")
FORMAT = "hyflexpim-slc-mapping"
VERSION = 1


def check_policy(policy):
    if policy not in POLICIES:
        raise ValueError(f"policy must be one of {', '.join(POLICIES)}, not {policy!r}")
    return policy


def check_slc_percent(k):
    try:
        v = float(k)
    except (TypeError, ValueError):
        raise ValueError(f"SLC rate k must be a number in [0, 100], not {k!r}") from None
    if not (math.isfinite(v) and 0 <= v <= 100):
        raise ValueError(f"SLC rate k must be in [0, 100], not {k!r}")
    return v


def slc_count(k, total):
    """Number of SLC items for rate ``k`` percent of ``total``: round half up."""
    return min(total, int(math.floor(check_slc_percent(k) * total / 100.0 + 0.5)))


def _check_seed(seed):
    from ..base import check_int
    return check_int("seed", seed, 0)


def _order(policy, score, seed):
    if policy == "random":
        return np.random.default_rng(seed).permutation(len(score))
    return np.argsort(-np.asarray(score, dtype=np.float64), kind="stable")


def select_slc(policy, k, *, score=None, weights=None, seed=0):
    """SLC selection of one matrix.

    SVD policies (``gradient``, ``rank``, ``random``) take ``score`` (one value per rank,
    the policy's own: gradient score or singular value; any for random) and return the
    sorted list of SLC rank indices. ``magnitude`` takes ``weights`` (m x n) and returns a
    boolean mask of SLC weights (ties broken by position).
    """
    check_policy(policy)
    _check_seed(seed)
    if policy == "magnitude":
        if weights is None:
            raise ValueError("policy 'magnitude' needs the weights")
        w = np.abs(np.asarray(weights, dtype=np.float64)).ravel()
        c = slc_count(k, w.size)
        mask = np.zeros(w.size, dtype=bool)
        mask[np.argsort(-w, kind="stable")[:c]] = True
        return mask.reshape(np.shape(weights))
    if score is None:
        raise ValueError(f"policy {policy!r} needs a score per rank")
    c = slc_count(k, len(score))
    return sorted(int(i) for i in _order(policy, score, seed)[:c])


def pack_mask(mask):
    """Bool (m x n) mask as hex of ``numpy.packbits`` (row-major, MSB first)."""
    return np.packbits(np.asarray(mask, dtype=bool).ravel()).tobytes().hex()


def unpack_mask(text, shape):
    m, n = shape
    bits = np.unpackbits(np.frombuffer(bytes.fromhex(text), dtype=np.uint8))
    if len(bits) < m * n or len(bits) >= m * n + 8:
        raise ValueError(f"slc_mask has {len(bits)} bits, expected {m * n} for shape {list(shape)}")
    return bits[:m * n].reshape(m, n).astype(bool)


_ROLE_OF = {"attn.q": "q", "attn.k": "k", "attn.v": "v", "attn.proj": "o",
            "ffn.fc1": "ffn1", "ffn.fc2": "ffn2"}


def arch_place(name):
    """``{"layer": i, "role": r}`` of a model-zoo matrix name (``blocks.<i>.attn.q``, ...)
    for the architecture mapper (sim/arch/mapper.py), or ``{}`` for other names."""
    mt = re.fullmatch(r"(?:.*\.)?blocks\.(\d+)\.(attn\.(?:q|k|v|proj)|ffn\.fc[12])", name)
    return dict(layer=int(mt.group(1)), role=_ROLE_OF[mt.group(2)]) if mt else {}


def build_mapping(policy, k, *, layers, scores=None, seed=0, task=None, score_kind="grad",
                  variant="ab", extra=None):
    """The mapping dict of one model for ``policy`` at rate ``k`` percent.

    ``layers``: ``{name: layer}``: :class:`~.svd.SVDLinear` for SVD policies, unfactored
    ``nn.Linear`` for ``magnitude``. ``scores``: ``{name: per-rank scores}`` for
    ``gradient``.
    """
    from .svd import SVDLinear
    check_policy(policy)
    k = check_slc_percent(k)
    _check_seed(seed)
    mats = {}
    for i, (name, layer) in enumerate(layers.items()):
        if policy == "magnitude":
            if isinstance(layer, SVDLinear):
                raise ValueError("policy 'magnitude' maps unfactored layers, not SVD factors")
            W = layer.weight.detach().double().numpy().T
            mask = select_slc("magnitude", k, weights=W)
            mats[name] = dict(**arch_place(name), shape=list(W.shape), rank=None, policy=policy,
                              slc_fraction=float(mask.mean()), slc_count=int(mask.sum()),
                              slc_mask=pack_mask(mask))
            continue
        if not isinstance(layer, SVDLinear):
            raise ValueError(f"policy {policy!r} needs factored layers; {name} is not")
        if policy == "gradient":
            if scores is None or name not in scores:
                raise ValueError(f"policy 'gradient' needs scores for {name}")
            sc = np.asarray(scores[name], dtype=np.float64)
        else:
            sc = layer.sv_scores().numpy()
        if len(sc) != layer.rank:
            raise ValueError(f"{name}: {len(sc)} scores for rank {layer.rank}")
        ranks = select_slc(policy, k, score=sc, seed=seed * 7919 + i)
        mats[name] = dict(**arch_place(name), shape=[layer.m, layer.n], rank=layer.rank,
                          policy=policy,
                          slc_fraction=len(ranks) / layer.rank, slc_count=len(ranks),
                          slc_ranks=ranks,
                          factors=dict(A=dict(shape=[layer.m, layer.rank], slc="columns"),
                                       B=dict(shape=[layer.rank, layer.n], slc="rows")),
                          scores=[float(s) for s in sc])
    out = dict(format=FORMAT, version=VERSION, task=task, policy=policy, slc_percent=k,
               score=score_kind if policy == "gradient" else None, variant=variant,
               seed=seed, matrices=mats)
    if extra:
        out.update(extra)
    return out


def save_mapping(mapping, path):
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(json.dumps(mapping, indent=1))
    return p


def load_mapping(path):
    """Read and check a mapping file; ``ValueError`` if it is not one."""
    p = Path(path)
    if p.is_dir():
        raise ValueError(f"mapping file {p} is a folder, not a file")
    try:
        d = json.loads(p.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise ValueError(f"mapping file {p} is not JSON: {e}") from None
    except UnicodeDecodeError as e:
        raise ValueError(f"mapping file {p} is not UTF-8 text (byte 0x{e.object[e.start]:02x} "
                         f"at offset {e.start})") from None
    except FileNotFoundError:
        raise FileNotFoundError(f"mapping file {p} not found") from None
    except OSError as e:
        raise ValueError(f"cannot read the mapping file {p}: {e.strerror or e}") from None
    if not isinstance(d, dict) or d.get("format") != FORMAT:
        raise ValueError(f"mapping file {p} is not a {FORMAT} file")
    if d.get("version") != VERSION:
        raise ValueError(f"mapping file {p} has version {d.get('version')!r}, expected {VERSION}")
    check_policy(d.get("policy"))
    check_slc_percent(d.get("slc_percent"))
    if not isinstance(d.get("matrices"), dict):
        raise ValueError(f"mapping file {p} has no 'matrices' object")
    return d
