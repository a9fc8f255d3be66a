"""Per-layer rank chosen by a learned soft threshold on the singular values.

An option beyond the paper (``--rank-select soft-threshold``), our reading of the idea of
dynamic-rank SVD compression (arXiv 2411.10543, read at abstract level only): instead of
the fixed ``r = floor(m n / (m + n))`` for every matrix, each factored layer keeps all
``min(m, n)`` ranks behind a differentiable mask, learns one threshold during
fine-tuning, and a parameter-budget penalty decides how the ranks are shared between
layers. After fine-tuning the masks are hard-thresholded; every layer becomes a plain
:class:`~.svd.SVDLinear` of its own rank ``r_l`` and the rest of the flow (rank scores,
policies, mapping file, noise evaluation) is unchanged.

Exactly (docs/algorithm.md, "Soft-threshold rank"):

* layer ``l`` (m x n) starts as the full SVD (rank ``R = min(m, n)``, variant ``ab``:
  ``A = U S``, ``B = V^T``; or ``usv``) with one learnable log-threshold ``theta_l``;
* ``s_i = ||F1[:, i]|| ||F2[i, :]||`` (the current singular value, :meth:`sv_scores`,
  detached), mask ``g_i = sigmoid((log s_i - theta_l) / T)``; the layer computes
  ``y = ((x F1) * g) F2 + bias`` (``usv``: ``S * g`` in place of ``S``);
* ``theta_l`` starts halfway (in log) between ``s_{r-1}`` and ``s_r`` with ``r`` the
  fixed rank, so the soft model starts close to the fixed-rank truncation;
* loss = task loss + ``lambda * (P_soft / P_budget - 1)^2`` with the soft parameter
  count ``P_soft = sum_l (m_l + n_l) sum_i g_i`` (a rank costs m + n parameters and
  m + n multiply-accumulates per input vector); ``P_budget`` defaults to the fixed-rank
  flow's ``sum_l r_l (m_l + n_l)`` (never more than the original ``sum_l m_l n_l``);
* only ``theta_l`` receives the penalty's gradient (``s_i`` is detached); the factors
  are trained by the task loss through the masked product, so the rank scores keep
  their definition;
* hard threshold: rank ``i`` is kept when ``g_i > 0.5`` (``s_i > exp(theta_l)``), at
  least one per layer; if the kept ranks still cost more than the budget, the kept
  ranks with the smallest logit ``(log s_i - theta_l) / T`` over the whole model are
  dropped until the budget holds. The kept factors absorb their mask value
  (``F1[:, i] * g_i``), the dropped ranks are removed.
"""

import math

from ._torch import torch, nn
from .rank import svd_rank
from .svd import SVDLinear, static_linears, _set_module

__all__ = ["RANK_SELECT", "SoftRankConfig", "SoftRankSVDLinear", "soft_layers",
           "factorize_soft", "rank_cost", "dense_params", "fixed_budget", "budget_for",
           "budget_penalty", "threshold_groups", "harden", "check_rank_select"]

RANK_SELECT = ("fixed", "soft-threshold")


def check_rank_select(v):
    if v not in RANK_SELECT:
        raise ValueError(f"rank selection must be one of {', '.join(RANK_SELECT)}, not {v!r}")
    return v


class SoftRankConfig:
    """Knobs of the soft-threshold rank selection (checked here, used by the flow).

    ``temperature`` T of the mask (log units, > 0); ``penalty`` lambda (>= 0);
    ``threshold_lr`` AdamW learning rate of the thresholds (> 0, no weight decay);
    ``budget``: parameter budget as a fraction of the original parameters of the
    factored matrices, in (0, 1], or ``None`` for the fixed-rank flow's budget.
    """

    def __init__(self, temperature=0.1, penalty=10.0, threshold_lr=0.02, budget=None):
        for name, v, lo_open in (("temperature", temperature, True), ("penalty", penalty, False),
                                 ("threshold_lr", threshold_lr, True)):
            ok = isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
            if not ok or (v <= 0 if lo_open else v < 0):
                rng = "> 0" if lo_open else ">= 0"
                raise ValueError(f"{name} must be a finite number {rng}, not {v!r}")
        if budget is not None and (isinstance(budget, bool) or not isinstance(budget, (int, float))
                                   or not 0 < budget <= 1):
            raise ValueError(f"budget must be a fraction in (0, 1] or None, not {budget!r}")
        self.temperature, self.penalty = float(temperature), float(penalty)
        self.threshold_lr = float(threshold_lr)
        self.budget = None if budget is None else float(budget)

    def as_dict(self):
        return dict(temperature=self.temperature, penalty=self.penalty,
                    threshold_lr=self.threshold_lr, budget=self.budget)


class SoftRankSVDLinear(SVDLinear):
    """:class:`SVDLinear` with all ``min(m, n)`` ranks behind a learned soft mask."""

    def __init__(self, m, n, rank, variant="ab", bias=True, temperature=0.1):
        super().__init__(m, n, rank, variant, bias)
        self.theta = nn.Parameter(torch.zeros(()))
        self.temperature = float(temperature)

    @classmethod
    def from_linear(cls, linear, variant="ab", rank=None, temperature=0.1):
        m, n = linear.weight.shape[1], linear.weight.shape[0]
        full = SVDLinear.from_linear(linear, variant, rank=min(m, n))
        mod = cls(m, n, full.rank, variant, bias=linear.bias is not None, temperature=temperature)
        mod.load_state_dict(full.state_dict(), strict=False)
        r = svd_rank(m, n) if rank is None else int(rank)
        ls = mod.log_sv()
        with torch.no_grad():
            if r < len(ls):
                mod.theta.fill_(float(0.5 * (ls[r - 1] + ls[r])))
            else:
                mod.theta.fill_(float(ls[-1]) - 5 * mod.temperature)
        return mod

    def log_sv(self):
        """``log s_i`` of the current factors (detached)."""
        return torch.log(self.sv_scores().float().clamp_min(1e-30))

    def mask(self):
        return torch.sigmoid((self.log_sv() - self.theta) / self.temperature)

    def logits(self):
        with torch.no_grad():
            return ((self.log_sv() - self.theta) / self.temperature).double()

    def soft_rank(self):
        return self.mask().sum()

    def factors(self):
        g = self.mask()
        if self.variant == "ab":
            return self.A * g, self.B
        return self.U, (self.S * g)[:, None] * self.V

    def forward(self, x):
        g = self.mask()
        if self.variant == "ab":
            y = ((x @ self.A) * g) @ self.B
        else:
            y = ((x @ self.U) * (self.S * g)) @ self.V
        return y if self.bias is None else y + self.bias

    def hardened(self, keep):
        """A plain :class:`SVDLinear` with the ranks ``keep`` (mask folded into them)."""
        keep = torch.as_tensor(sorted(int(i) for i in keep), dtype=torch.long)
        out = SVDLinear(self.m, self.n, len(keep), self.variant, bias=self.bias is not None)
        with torch.no_grad():
            g = self.mask()[keep]
            if self.variant == "ab":
                out.A.copy_(self.A[:, keep] * g)
                out.B.copy_(self.B[keep])
            else:
                out.U.copy_(self.U[:, keep])
                out.S.copy_(self.S[keep] * g)
                out.V.copy_(self.V[keep])
            if self.bias is not None:
                out.bias.copy_(self.bias)
        return out

    def extra_repr(self):
        return super().extra_repr() + f", soft threshold T={self.temperature:g}"


def soft_layers(model):
    return {n: m for n, m in model.named_modules() if isinstance(m, SoftRankSVDLinear)}


def factorize_soft(model, variant="ab", include_head=False, temperature=0.1):
    """Replace each static linear of ``model`` (in place) by a :class:`SoftRankSVDLinear`."""
    done = []
    for name, lin in static_linears(model, include_head).items():
        if isinstance(lin, SVDLinear):
            continue
        _set_module(model, name, SoftRankSVDLinear.from_linear(lin, variant,
                                                               temperature=temperature))
        done.append(name)
    return done


def rank_cost(layer):
    """Parameters (and MACs per input vector) of one rank of a factored layer: m + n."""
    return layer.m + layer.n


def dense_params(layers):
    """Weights of the original (unfactored) matrices: ``sum m n``."""
    return sum(l.m * l.n for l in layers.values())


def fixed_budget(layers):
    """Parameters of the fixed-rank flow: ``sum floor(m n / (m + n)) (m + n)``."""
    return sum(svd_rank(l.m, l.n) * rank_cost(l) for l in layers.values())


def budget_for(layers, fraction=None):
    """Parameter budget: the fixed-rank flow's, or ``floor(fraction * dense)``."""
    return fixed_budget(layers) if fraction is None else int(fraction * dense_params(layers))


def budget_penalty(layers, budget, weight):
    """``weight * (P_soft / budget - 1)^2`` (a tensor), P_soft the soft parameter count."""
    p = sum(rank_cost(l) * l.soft_rank() for l in layers.values())
    return weight * (p / budget - 1.0) ** 2


def threshold_groups(model, cfg, lr, weight_decay):
    """AdamW parameter groups: the thresholds at ``cfg.threshold_lr`` without decay."""
    th = [l.theta for l in soft_layers(model).values()]
    ids = {id(p) for p in th}
    rest = [p for p in model.parameters() if p.requires_grad and id(p) not in ids]
    return [dict(params=rest, lr=lr, weight_decay=weight_decay),
            dict(params=th, lr=cfg.threshold_lr, weight_decay=0.0)]


@torch.no_grad()
def harden(model, budget):
    """Hard-threshold every :class:`SoftRankSVDLinear` of ``model`` (in place, module doc).

    Returns ``{name: kept rank indices}`` (sorted, in the candidate order). Raises
    ``ValueError`` if even one rank per layer exceeds ``budget``.
    """
    layers = soft_layers(model)
    if not layers:
        raise ValueError("the model has no soft-threshold layers to harden")
    floor = sum(rank_cost(l) for l in layers.values())
    if floor > budget:
        raise ValueError(f"budget must allow one rank per layer ({floor} parameters), "
                         f"not {budget}")
    logit = {n: l.logits() for n, l in layers.items()}
    keep = {}
    for n, lg in logit.items():
        k = set(int(i) for i in torch.nonzero(lg > 0).flatten())
        keep[n] = k or {int(torch.argmax(lg))}
    cost = sum(len(keep[n]) * rank_cost(l) for n, l in layers.items())
    if cost > budget:
        cand = sorted((float(logit[n][i]), n, i) for n in layers for i in keep[n])
        for _, n, i in cand:
            if cost <= budget:
                break
            if len(keep[n]) == 1:
                continue
            keep[n].discard(i)
            cost -= rank_cost(layers[n])
    out = {}
    for n, l in layers.items():
        out[n] = sorted(keep[n])
        _set_module(model, n, l.hardened(out[n]))
    return out
