"""Whole models on the chip: the project's PyTorch models loaded into the golden model.

:func:`from_torch` turns a :class:`~.tiny_models.MiniLMClassifier` or
:class:`~.tiny_models.TinyTransformer` (plain, or factored by :mod:`.svd`) and its
SLC/MLC mapping (:mod:`.redistribute`) into a :class:`ChipTransformer`: every block on
the chip (:class:`~.transformer.ChipLayer`), the host parts in float (embeddings,
MiniLM's embedding layer norm, the final layer norm of pre-LN models, pooling and the
head). :func:`evaluate` runs a task's test set through it.
"""

import numpy as np

from ..base import check_int
from ._torch import torch
from .fp16 import ops as _ops
from .redistribute import unpack_mask
from .svd import SVDLinear, static_linears
from .tiny_models import MiniLMClassifier, TinyTransformer
from .transformer import (ChipFormats, Noise, Rows, Run, AnalogMatrix, AnalogLinear,
                          LayerConfig, ChipLayer, KVCache, quantize)

__all__ = ["ChipTransformer", "from_torch", "evaluate", "outputs", "linear_specs"]


def _np(t):
    return t.detach().double().cpu().numpy()


def linear_specs(layer, entry):
    """``[(matrix, mode spec), ...]`` of one static linear and its mapping entry: the
    factors A (columns = ranks) and B (rows = ranks) of an :class:`~.svd.SVDLinear`
    with the entry's ``slc_ranks``; the weight of a plain linear, SLC where the entry's
    ``slc_mask`` says (or all SLC with ``slc_fraction`` 1), else MLC."""
    if isinstance(layer, SVDLinear):
        f1, f2 = (_np(f) for f in layer.factors())
        if entry and entry.get("rank") not in (None, layer.rank):
            raise ValueError(f"mapping has rank {entry.get('rank')}, the model {layer.rank}")
        slc = {int(i) for i in (entry or {}).get("slc_ranks", [])}
        modes = ["slc" if i in slc else "mlc" for i in range(layer.rank)]
        return [(f1, ("cols", modes)), (f2, ("rows", modes))]
    w = _np(layer.weight).T
    if entry and entry.get("rank") is not None:
        raise ValueError("mapping is for a factored layer, the model's is not")
    if entry and "slc_mask" in entry:
        return [(w, ("mask", unpack_mask(entry["slc_mask"], w.shape)))]
    return [(w, "slc" if (entry or {}).get("slc_fraction", 0) >= 1 else "mlc")]


class ChipTransformer:
    """A model whose blocks run on the chip. ``chip(x)`` gives the logits (a torch
    tensor) of the model's input ``x`` (token ids or images), like the torch model.

    ``layers``: :class:`~.transformer.ChipLayer` list; ``model``: the torch model (for
    its host parts); ``formats``; ``stats``: counters summed over calls.
    """

    def __init__(self, model, layers, formats):
        self.model, self.layers, self.formats = model, layers, formats
        self.minilm = isinstance(model, MiniLMClassifier)
        self.stats = {}

    def eval(self):
        return self

    # ---- host --------------------------------------------------------------------------
    def embed(self, x):
        """Host: ``(h, key_mask)``: float64 (B, T, D) embeddings and the real-token mask
        (None: every token). MiniLM batches are cut after their last real token,
        rounded up to a multiple of ``formats.row_pad`` (padding only ever fills
        masked keys, so the result does not change)."""
        m = self.model
        with torch.no_grad():
            if self.minilm:
                mask = x != 0
                used = int(mask.any(0).nonzero().max()) + 1 if mask.any() else 1
                T = min(x.shape[1], -(-used // self.formats.row_pad) * self.formats.row_pad)
                x, mask = x[:, :T], mask[:, :T]
                h = m.tok(x) + m.posemb(torch.arange(T))[None] + m.typ.weight[0]
                return _np(m.ln_emb(h)), mask.numpy()
            if m.kind == "image":
                B, H, W = x.shape
                p = m.patch
                x = x.reshape(B, H // p, p, W // p, p).permute(0, 1, 3, 2, 4).reshape(B, -1, p * p)
            h = m.embed(x) + m.pos[:, :x.shape[1]]
            return _np(h), None

    def head(self, h, mask):
        """Host: logits of the last layer's output ``h`` (float64 (B, T, D))."""
        m = self.model
        with torch.no_grad():
            t = torch.from_numpy(h).float()
            if self.minilm:
                mk = torch.from_numpy(mask).unsqueeze(-1).float()
                return m.head((t * mk).sum(1) / mk.sum(1).clamp(min=1))
            t = m.ln(t)
            return m.head(t) if m.kind == "lm" else m.head(t.mean(1))

    # ---- chip --------------------------------------------------------------------------
    def hidden(self, h, mask=None, caches=None, run=None):
        """The blocks on ``h`` (float (B, T, D) embeddings): the last layer's output,
        dequantised (float64). ``caches``: one :class:`~.transformer.KVCache` per layer
        (decoder steps; ``mask`` then covers the cached tokens too)."""
        run = run or Run(self.formats)
        x = np.asarray(h, dtype=np.float64)
        if self.formats.chip("transport"):
            x = quantize(_ops.from_float(x), run)
        for i, layer in enumerate(self.layers):
            x = layer.forward(x, run, key_mask=mask,
                              cache=None if caches is None else caches[i])
        for k, v in run.stats.items():
            self.stats[k] = self.stats.get(k, 0) + v
        return _ops.to_float(x.value(run.f)) if isinstance(x, Rows) else x

    def new_caches(self, capacity=None):
        cap = capacity or self.layers[0].config.max_seq
        return [KVCache(cap) for _ in self.layers]

    def __call__(self, x):
        h, mask = self.embed(x)
        return self.head(self.hidden(h, mask), mask)


def _layer_config(blk, max_seq):
    fc1 = blk.ffn.fc1
    ffn = fc1.n if isinstance(fc1, SVDLinear) else fc1.out_features
    return LayerConfig(dim=blk.ln1.normalized_shape[0], heads=blk.attn.heads, ffn=ffn,
                       post_ln=bool(blk.post_ln), causal=bool(blk.attn.causal),
                       eps=float(blk.ln1.eps), max_seq=max_seq)


def from_torch(model, mapping=None, formats=ChipFormats(), noise=Noise()):
    """A :class:`ChipTransformer` of ``model`` (MiniLM or a tiny model, plain or
    factored) with the SLC/MLC ``mapping`` (a dict of :func:`~.redistribute.build_mapping`;
    None: every matrix MLC) programmed with ``noise``."""
    if not isinstance(model, (MiniLMClassifier, TinyTransformer)):
        raise ValueError(f"model must be a MiniLMClassifier or TinyTransformer, not "
                         f"{type(model).__name__}")
    if not isinstance(formats, ChipFormats):
        raise ValueError(f"formats must be a ChipFormats, not {formats!r}")
    if not isinstance(noise, Noise):
        raise ValueError(f"noise must be a Noise, not {noise!r}")
    model = model.eval()
    layers = static_linears(model)
    entries = (mapping or {}).get("matrices")
    if entries is not None:
        extra = [k for k in entries if k not in layers]
        if extra:
            raise ValueError(f"mapping names matrices the model does not have: {extra[:3]}")
    lin, index = {}, 0
    for name, layer in layers.items():
        entry = None if entries is None else entries.get(name)
        try:
            specs = linear_specs(layer, entry)
        except ValueError as exc:
            raise ValueError(f"{name}: {exc}") from None
        if entry and "shape" in entry:
            shape = [specs[0][0].shape[0], specs[-1][0].shape[1]]
            if list(entry["shape"]) != shape:
                raise ValueError(f"mapping for {name} has shape {entry['shape']}, the "
                                 f"model {shape}")
        mats = [AnalogMatrix(w, sp, formats, noise, index + i) for i, (w, sp) in enumerate(specs)]
        index += len(mats)
        bias = None if layer.bias is None else _np(layer.bias)
        lin[name] = AnalogLinear(name, mats, bias)
    max_seq = (model.config["max_pos"] if isinstance(model, MiniLMClassifier)
               else model.pos.shape[1])
    chip_layers = []
    for i, blk in enumerate(model.blocks):
        p = f"blocks.{i}."
        ls = {n: lin[p + ("attn." if n in ("q", "k", "v", "proj") else "ffn.") + n]
              for n in ChipLayer.NAMES}
        chip_layers.append(ChipLayer(_layer_config(blk, max_seq), ls,
                                     (_np(blk.ln1.weight), _np(blk.ln1.bias)),
                                     (_np(blk.ln2.weight), _np(blk.ln2.bias))))
    return ChipTransformer(model, chip_layers, formats)


def _lengths(x):
    if x.dtype in (torch.int64, torch.int32) and x.ndim == 2:
        return (x != 0).sum(1).numpy()
    return np.zeros(len(x), dtype=np.int64)


def _batches_by_length(n, x, batch_size):
    order = np.argsort(_lengths(x), kind="stable")
    return [torch.from_numpy(order[i:i + batch_size]) for i in range(0, n, batch_size)]


def evaluate(chip, batches, metric, *, batch_size=16, limit=None, progress=None):
    """``(sum, count)`` of ``metric(chip, x, y)`` over the examples of ``batches()``
    (the first ``limit``), run ``batch_size`` at a time, token inputs sorted by length
    (the sums do not depend on the order). ``progress(done, total)`` is called after
    each batch."""
    batch_size = check_int("batch_size", batch_size, 1, 4096)
    xs, ys = zip(*batches())
    x, y = torch.cat(xs), torch.cat(ys)
    if limit is not None:
        limit = check_int("limit", limit, 1)
        x, y = x[:limit], y[:limit]
    tot, cnt, done = 0.0, 0, 0
    for j in _batches_by_length(len(x), x, batch_size):
        s, c = metric(chip, x[j], y[j])
        tot += float(s)
        cnt += int(c)
        done += len(j)
        if progress is not None:
            progress(done, len(x))
    return tot, cnt


def outputs(model, x, *, batch_size=16, progress=None):
    """The outputs (a float64 array, in the order of ``x``) of ``model`` (a
    :class:`ChipTransformer` or any callable giving a torch tensor) for the inputs
    ``x``, run ``batch_size`` at a time, token inputs sorted by length."""
    batch_size = check_int("batch_size", batch_size, 1, 4096)
    out, done = None, 0
    for j in _batches_by_length(len(x), x, batch_size):
        with torch.no_grad():
            o = model(x[j]).double().numpy()
        if out is None:
            out = np.zeros((len(x),) + o.shape[1:])
        out[j.numpy()] = o
        done += len(j)
        if progress is not None:
            progress(done, len(x))
    return out
