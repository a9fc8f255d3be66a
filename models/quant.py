"""INT8 execution of the static linears, noise-free or under RRAM noise.

Quantisation (hardware modes ``int8``, ``fast``, ``faithful``)
    * Weights: every stored matrix (the factors A and B of an :class:`~.svd.SVDLinear`,
      or W of a plain linear) is quantised symmetrically to INT8 in [-127, 127] with one
      scale per OUTPUT column (``granularity="channel"``, default; the digital
      rescaling after the array handles it) or one per matrix (``"tensor"``):
      ``scale = max|w| / 127``.
    * Activations: each input vector (one token) of each stored matrix is quantised
      dynamically, symmetrically per vector: ``sx = max|x| / 127``, ``xq = round(x/sx)``.
      The INT32 result is rescaled by ``sx * scale[col]``; between the two factors the
      intermediate vector is re-quantised the same way; the bias is added in float.

Backends
    ``float``     the float layer (reference).
    ``int8``      exact integer products ``xq @ q`` (no noise, no ADC).
    ``fast``      ``xq @ w'`` with the noisy real-valued weights of
                  :func:`~.noise.effective_weights` (one programming per seed; the same
                  per-cell statistics as the crossbar model for every device), plus
                  the device's read noise per output (:func:`~.noise.read_noise_outputs`).
    ``faithful``  every product run by the golden array model,
                  ``program_matrix(q, modes, device=, seed=).run(xq)``: bit-serial inputs,
                  bit slices, SAR ADC with saturation, shift-and-add; programmed once per
                  seed and cached. A per-weight SLC mask (magnitude policy) is programmed
                  as two matrices, the SLC part on SLC arrays and the rest on MLC arrays,
                  whose outputs are added.
    ``paper``     the authors' simulator: per-tensor INT8 with the second-largest clip,
                  2-bit group noise on MLC ranks (:func:`~.noise.paper_group_noise`),
                  activations in float, no ADC.

Noise: :func:`set_noise` picks the device (:func:`~.device.load_device`; the default
NeuRRAM one-day fit when only ``ber`` is given), the offset removal and the seed.
Matrix ``i`` of the model (in model order, factor by factor) is programmed with seed
``seed * 1_000_003 + i``. With read noise, the vectors of a programmed matrix are
numbered in the order the model reads them (the counter restarts at each programming).
"""

import copy

import numpy as np

from ._torch import torch, nn
from .array import program_matrix, resolve_device
from .device import check_offset
from .crossbar import sigma_from_ber, DEFAULT_MLC_BER
from .noise import (effective_weights, read_noise_outputs, paper_quantize, paper_group_noise,
                    as_device)
from .svd import SVDLinear, static_linears

__all__ = ["BACKENDS", "quantize_weight", "quantize_activations", "StoredMatrix", "HwLinear",
           "to_hardware", "set_noise", "hw_layers"]

BACKENDS = ("float", "int8", "fast", "faithful", "paper")
SEED_STRIDE = 1_000_003


def quantize_weight(w, granularity="channel"):
    """Symmetric INT8 of ``w`` (m x n): (q int64, scale (n,)) with ``w ~ q * scale``."""
    w = np.asarray(w, dtype=np.float64)
    if granularity == "channel":
        mx = np.abs(w).max(axis=0)
    elif granularity == "tensor":
        mx = np.full(w.shape[1], np.abs(w).max())
    else:
        raise ValueError(f"granularity must be 'channel' or 'tensor', not {granularity!r}")
    scale = np.where(mx > 0, mx / 127.0, 1.0)
    return np.clip(np.rint(w / scale), -127, 127).astype(np.int64), scale


def quantize_activations(x):
    """Per-vector symmetric INT8 of ``x`` (B, m) tensor: (xq float64 integers, sx (B, 1))."""
    x = x.double()
    sx = x.abs().amax(dim=1, keepdim=True) / 127.0
    sx = torch.where(sx > 0, sx, torch.ones_like(sx))
    return torch.clamp(torch.round(x / sx), -127, 127), sx


class StoredMatrix:
    """One matrix as the hardware stores it, with its SLC/MLC assignment.

    ``modes`` is ``("cols", list of n modes)``, ``("rows", list of m modes)`` or
    ``("mask", bool m x n SLC mask)``.
    """

    def __init__(self, w, modes, granularity="channel", paper=False):
        self.w = np.asarray(w, dtype=np.float64)
        self.m, self.n = self.w.shape
        self.layout, self.spec = modes
        if paper:
            self.q, s = paper_quantize(self.w)
            self.scale = np.full(self.n, 1.0 / s)
        else:
            self.q, self.scale = quantize_weight(self.w, granularity)
        self._cache = {}
        self._vectors = 0

    def slc_mask(self):
        if self.layout == "cols":
            return np.broadcast_to(np.array([m == "slc" for m in self.spec])[None, :], self.q.shape)
        if self.layout == "rows":
            return np.broadcast_to(np.array([m == "slc" for m in self.spec])[:, None], self.q.shape)
        return np.asarray(self.spec, dtype=bool)

    def _mode_kwargs(self):
        if self.layout == "cols":
            return dict(col_modes=self.spec)
        if self.layout == "rows":
            return dict(row_modes=self.spec)
        return dict(slc_mask=self.spec)

    def weights_for(self, backend, seed, device, paper_std, offset="reference",
                    split="twos-complement"):
        """The stored weights of one programming (cached): a float tensor, or for
        ``faithful`` the list of programmed matrices. ``device``: a Device, a legacy
        sigma (number) or None (ideal)."""
        dev = as_device(device)
        key = (backend, seed, dev, paper_std, offset, split)
        if key not in self._cache:
            self._cache.clear()
            self._vectors = 0
            rng = np.random.default_rng(seed)
            if backend == "fast":
                wq = effective_weights(self.q, dev, rng, offset=offset, **self._mode_kwargs())
            elif backend == "paper":
                wq = (paper_group_noise(self.q, ~self.slc_mask(), paper_std, rng, split)
                      if paper_std else self.q)
            elif backend == "faithful":
                wq = self._program(seed, dev, offset)
            else:
                wq = self.q
            self._cache[key] = wq if backend == "faithful" else torch.from_numpy(
                np.asarray(wq, dtype=np.float64))
        return self._cache[key]

    def _program(self, seed, dev, offset):
        kw = dict(device=dev, offset=offset, saturation="allow")
        if self.layout == "cols":
            return [program_matrix(self.q, self.spec, seed=seed, **kw)]
        if self.layout == "rows":
            return [program_matrix(self.q, "mlc", row_modes=self.spec, seed=seed, **kw)]
        mask = np.asarray(self.spec, dtype=bool)
        progs = []
        if mask.any():
            progs.append(program_matrix(np.where(mask, self.q, 0), "slc", seed=seed, **kw))
        if not mask.all():
            progs.append(program_matrix(np.where(mask, 0, self.q), "mlc",
                                        seed=seed + SEED_STRIDE // 2, **kw))
        return progs

    def matmul(self, x, backend, seed, device, paper_std, stats=None, offset="reference",
               split="twos-complement"):
        """``x`` (B, m) float tensor -> (B, n) float64 tensor through ``backend``."""
        scale = torch.from_numpy(self.scale)
        w = self.weights_for(backend, seed, device, paper_std, offset, split)
        if backend == "paper":
            return x.double() @ (w * scale)
        xq, sx = quantize_activations(x)
        if backend == "faithful":
            xi = xq.numpy().astype(np.int64)
            y = np.zeros((xi.shape[0], self.n), dtype=np.int64)
            for prog in w:
                y += prog.run(xi, first_vector=self._vectors)
                if stats is not None:
                    stats["saturated"] = stats.get("saturated", 0) + prog.saturated(
                        xi, first_vector=self._vectors)
                    stats["conversions"] = stats.get("conversions", 0) + \
                        8 * xi.shape[0] * sum(t.crossbar.shape[1] for t in prog.tiles)
            self._vectors += xi.shape[0]
            yi = torch.from_numpy(y.astype(np.float64))
        else:
            yi = xq @ w
            dev = as_device(device)
            if backend == "fast" and dev is not None and dev.has_read_noise:
                rng = np.random.default_rng([seed, self._vectors])
                self._vectors += xq.shape[0]
                yi = yi + torch.from_numpy(read_noise_outputs(
                    xq.numpy().astype(np.int64), self.q, dev, rng, offset=offset,
                    **self._mode_kwargs()))
        return yi * sx * scale


class HwLinear(nn.Module):
    """A static linear executed by a backend (module doc). Built by :func:`to_hardware`."""

    def __init__(self, name, matrices, bias, index):
        super().__init__()
        self.name, self.matrices, self.index = name, matrices, index
        self.register_buffer("bias", None if bias is None else bias.detach().clone())
        self.backend, self.seed, self.sigma, self.paper_std = "int8", 0, 0.0, 0.0
        self.device, self.offset, self.paper_split = None, "reference", "twos-complement"
        self.stats = None

    def forward(self, x):
        shape = x.shape
        h = x.detach().reshape(-1, shape[-1])      # inference only
        if self.backend == "float":
            for mat in self.matrices:
                h = h.double() @ torch.from_numpy(mat.w)
        else:
            for i, mat in enumerate(self.matrices):
                s = self.seed * SEED_STRIDE + self.index + i
                h = mat.matmul(h, self.backend, s, self.device, self.paper_std, self.stats,
                               self.offset, self.paper_split)
        h = h.to(x.dtype)
        if self.bias is not None:
            h = h + self.bias
        return h.reshape(*shape[:-1], h.shape[-1])


def _modes_for(entry, layer, kind):
    """StoredMatrix mode specs of ``layer`` from its mapping ``entry``."""
    if isinstance(layer, SVDLinear):
        r = layer.rank
        slc = set(int(i) for i in entry.get("slc_ranks", []))
        modes = ["slc" if i in slc else "mlc" for i in range(r)]
        return [("cols", modes), ("rows", modes)]
    m, n = layer.weight.shape[1], layer.weight.shape[0]
    if "slc_mask" in entry:
        from .redistribute import unpack_mask
        return [("mask", unpack_mask(entry["slc_mask"], (m, n)))]
    mode = "slc" if entry.get("slc_fraction", 0) >= 1 else "mlc"
    return [("cols", [mode] * n)]


def to_hardware(model, mapping, backend="int8", granularity="channel", include_head=False):
    """A deep copy of ``model`` whose mapped static linears are :class:`HwLinear`.

    ``mapping`` is the dict of :func:`~.redistribute.build_mapping` (or ``None``: every
    static linear, all MLC). Matrices are checked against the mapping's shapes.
    """
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {', '.join(BACKENDS)}, not {backend!r}")
    model = copy.deepcopy(model).eval()
    paper = backend == "paper"
    entries = (mapping or {}).get("matrices")
    layers = static_linears(model, include_head=include_head or bool(
        entries and any(k in getattr(model, "head_names", ()) for k in entries)))
    if entries is not None:
        missing = [k for k in entries if k not in layers]
        if missing:
            raise ValueError(f"mapping names matrices the model does not have: {missing[:3]}")
    index = 0
    for name, layer in layers.items():
        if entries is not None and name not in entries:
            continue
        entry = entries[name] if entries is not None else {}
        if isinstance(layer, SVDLinear):
            f1, f2 = (f.detach().double().numpy() for f in layer.factors())
            shape = (layer.m, layer.n)
            if entries is not None and entry.get("rank") != layer.rank:
                raise ValueError(f"mapping for {name} has rank {entry.get('rank')}, "
                                 f"the model {layer.rank}")
            mats = [f1, f2]
        else:
            W = layer.weight.detach().double().numpy().T
            shape = W.shape
            if entries is not None and entry.get("rank") is not None:
                raise ValueError(f"mapping for {name} is for a factored layer, the model's is not")
            mats = [W]
        if entries is not None and list(entry.get("shape", shape)) != list(shape):
            raise ValueError(f"mapping for {name} has shape {entry.get('shape')}, "
                             f"the model {list(shape)}")
        specs = _modes_for(entry, layer, backend)
        stored = [StoredMatrix(w, sp, granularity, paper) for w, sp in zip(mats, specs)]
        hw = HwLinear(name, stored, layer.bias, index)
        hw.backend = backend
        index += len(stored)
        parent = model
        parts = name.split(".")
        for p in parts[:-1]:
            parent = getattr(parent, p)
        setattr(parent, parts[-1], hw)
    return model


def hw_layers(model):
    return [m for m in model.modules() if isinstance(m, HwLinear)]


def set_noise(model, seed=0, ber=None, sigma=None, paper_std=None, backend=None, stats=None,
              *, device=None, offset="reference", read_noise=None, paper_split="twos-complement"):
    """Set the noise of every :class:`HwLinear`: a programming ``seed``; the device as
    :func:`~.array.program_matrix` selects it from ``device``, ``ber`` (re-calibrates
    the device, the default NeuRRAM one-day fit when no device is given), ``sigma``
    (the legacy multiplicative model) and ``read_noise``; none of them: noise off.
    ``offset``: G_off removal (``reference`` or ``nominal``). ``paper_std`` for the
    paper backend (default 0.025 when noise is on) with its ``paper_split``."""
    dev, s, _ = resolve_device(device, ber, sigma, None, read_noise)
    check_offset(offset)
    for m in hw_layers(model):
        m.seed, m.sigma, m.device, m.offset = int(seed), s, dev, offset
        m.paper_std = float(paper_std) if paper_std is not None else 0.0
        m.paper_split = paper_split
        m.stats = stats
        if backend is not None:
            if backend not in BACKENDS:
                raise ValueError(f"backend must be one of {', '.join(BACKENDS)}, not {backend!r}")
            m.backend = backend
    return model


def default_sigma():
    """The legacy multiplicative model's sigma at the 4.04% MLC BER."""
    return sigma_from_ber(DEFAULT_MLC_BER, "mlc")
