"""SVD factorisation of static linear layers, fine-tuning and rank scores (DESIGN.md 5).

Conventions
    The hardware computes ``y = x @ W`` with ``W`` of shape (m, n): m inputs (array
    rows), n outputs. A PyTorch ``nn.Linear`` stores ``weight`` = ``W.T`` (n, m).
    :class:`SVDLinear` keeps its factors in the hardware layout:

    * variant ``"ab"`` (the method): ``A = U_r S_r`` (m x r) and ``B = V_r^T`` (r x n),
      ``y = (x @ A) @ B + bias``; rank ``i`` is column ``i`` of A and row ``i`` of B.
    * variant ``"usv"`` (the authors' simulator): ``U`` (m x r), ``S`` (r), ``V`` (r x n),
      all trainable, ``y = ((x @ U) * S) @ V + bias``; the two matrices the hardware
      stores are ``U`` and ``diag(S) V``.

    :meth:`SVDLinear.factors` returns the two stored matrices in both cases.

Rank
    :func:`svd_rank` ``r = floor(m n / (m + n))`` keeps ``r (m + n) <= m n``: the two
    factors have no more parameters, and no more multiply-accumulates per input vector,
    than ``W`` (biases unchanged).

Rank scores (written down once, used by :mod:`.redistribute`)
    ``grad`` (the method): for every training batch ``t`` of fine-tuning, after the
    backward pass, ``score[i] += sum_j |dL/dF1[j, i]| + sum_k |dL/dF2[i, k]|`` where F1,
    F2 are the trainable factor matrices (A and B; U and V in variant ``usv``, plus
    ``|dL/dS_i|`` there). Accumulated over all batches of all epochs; L is the mean loss
    of the batch.
    ``grad_last_s`` (the authors'): ``|dL/dS_i|`` of the LAST training batch only
    (variant ``usv`` only).
    ``sv`` (for the ``rank`` policy): ``||F1[:, i]|| * ||F2[i, :]||`` (times ``|S_i|`` in
    ``usv``) of the current factors: the singular values right after factorisation.
"""

import math
import re

import numpy as np

from ..base import check_float
from ._torch import torch, nn
from .rank import svd_rank

__all__ = ["svd_rank", "SVDLinear", "static_linears", "factorize_model", "svd_layers",
           "RankScores", "finetune", "score_pass", "evaluate"]

VARIANTS = ("ab", "usv")


class SVDLinear(nn.Module):
    """A linear layer factored by truncated SVD (module doc). Build with :meth:`from_linear`."""

    def __init__(self, m, n, rank, variant="ab", bias=True):
        super().__init__()
        if variant not in VARIANTS:
            raise ValueError(f"variant must be one of {VARIANTS}, not {variant!r}")
        self.m, self.n, self.rank, self.variant = m, n, rank, variant
        if variant == "ab":
            self.A = nn.Parameter(torch.zeros(m, rank))
            self.B = nn.Parameter(torch.zeros(rank, n))
        else:
            self.U = nn.Parameter(torch.zeros(m, rank))
            self.S = nn.Parameter(torch.zeros(rank))
            self.V = nn.Parameter(torch.zeros(rank, n))
        self.bias = nn.Parameter(torch.zeros(n)) if bias else None

    @classmethod
    def from_linear(cls, linear, variant="ab", rank=None):
        W = linear.weight.detach().double().t()          # (m, n), hardware layout
        m, n = W.shape
        r = svd_rank(m, n) if rank is None else int(rank)
        if not 1 <= r <= min(m, n):
            raise ValueError(f"rank must be in 1..{min(m, n)}, not {r!r}")
        U, S, Vh = torch.linalg.svd(W, full_matrices=False)
        mod = cls(m, n, r, variant, bias=linear.bias is not None)
        with torch.no_grad():
            if variant == "ab":
                mod.A.copy_((U[:, :r] * S[:r]).float())
                mod.B.copy_(Vh[:r].float())
            else:
                mod.U.copy_(U[:, :r].float())
                mod.S.copy_(S[:r].float())
                mod.V.copy_(Vh[:r].float())
            if linear.bias is not None:
                mod.bias.copy_(linear.bias.detach())
        return mod

    def factors(self):
        """The two stored matrices (m x r, r x n), as tensors attached to the graph."""
        if self.variant == "ab":
            return self.A, self.B
        return self.U, self.S[:, None] * self.V

    def rank_grad_abs(self):
        """``sum_j |dF1[j,i]| + sum_k |dF2[i,k]|`` (+ ``|dS_i|``) of the current grads."""
        if self.variant == "ab":
            g1, g2, gs = self.A.grad, self.B.grad, None
        else:
            g1, g2, gs = self.U.grad, self.V.grad, self.S.grad
        s = torch.zeros(self.rank, dtype=torch.float64)
        if g1 is not None:
            s += g1.abs().sum(0).double()
        if g2 is not None:
            s += g2.abs().sum(1).double()
        if gs is not None:
            s += gs.abs().double()
        return s

    def sv_scores(self):
        with torch.no_grad():
            if self.variant == "ab":
                return (self.A.norm(dim=0) * self.B.norm(dim=1)).double()
            return (self.S.abs() * self.U.norm(dim=0) * self.V.norm(dim=1)).double()

    def dense_weight(self):
        """``F1 @ F2`` (m x n)."""
        f1, f2 = self.factors()
        return f1 @ f2

    def forward(self, x):
        if self.variant == "ab":
            y = (x @ self.A) @ self.B
        else:
            y = ((x @ self.U) * self.S) @ self.V
        return y if self.bias is None else y + self.bias

    def extra_repr(self):
        return f"m={self.m}, n={self.n}, rank={self.rank}, variant={self.variant!r}"


def static_linears(model, include_head=False):
    """``{name: module}`` of the static linear layers of ``model``, in model order.

    A model may define ``static_linear_pattern`` (a regular expression matched
    against module names; the tiny models of :mod:`.tiny_models` select Q, K, V,
    projection, FFN1 and FFN2) and ``head_names`` (the classifier / LM head). Without
    them every ``nn.Linear`` is static. ``include_head`` adds the head (paper mode).
    Already factored layers (:class:`SVDLinear`) are listed too.
    """
    pat = getattr(model, "static_linear_pattern", None)
    heads = set(getattr(model, "head_names", ()))
    out = {}
    for name, mod in model.named_modules():
        if not isinstance(mod, (nn.Linear, SVDLinear)):
            continue
        if name in heads:
            if include_head:
                out[name] = mod
            continue
        if pat is None or re.fullmatch(pat, name):
            out[name] = mod
    return out


def _set_module(model, name, new):
    parent = model
    parts = name.split(".")
    for p in parts[:-1]:
        parent = getattr(parent, p)
    setattr(parent, parts[-1], new)


def factorize_model(model, variant="ab", include_head=False, names=None, ranks=None):
    """Replace each static linear of ``model`` (in place) by its :class:`SVDLinear`.

    Returns the list of factored names. ``names`` restricts to those layers; ``ranks``
    (``{name: r}``) overrides the rank :func:`svd_rank` of those layers.
    """
    todo = static_linears(model, include_head)
    if names is not None:
        todo = {k: v for k, v in todo.items() if k in set(names)}
    done = []
    for name, lin in todo.items():
        if isinstance(lin, SVDLinear):
            continue
        r = None if ranks is None else ranks.get(name)
        _set_module(model, name, SVDLinear.from_linear(lin, variant, rank=r))
        done.append(name)
    return done


def svd_layers(model):
    return {n: m for n, m in model.named_modules() if isinstance(m, SVDLinear)}


class RankScores:
    """Per-layer rank scores: ``grad`` (accumulated) and ``grad_last_s`` (last batch)."""

    def __init__(self, model):
        self.layers = svd_layers(model)
        self.grad = {n: torch.zeros(m.rank, dtype=torch.float64) for n, m in self.layers.items()}
        self.grad_last_s = {}
        self.batches = 0

    def accumulate(self):
        for n, m in self.layers.items():
            self.grad[n] += m.rank_grad_abs()
            if m.variant == "usv" and m.S.grad is not None:
                self.grad_last_s[n] = m.S.grad.detach().abs().double().clone()
        self.batches += 1

    def as_numpy(self, kind="grad"):
        src = {"grad": self.grad, "grad_last_s": self.grad_last_s}.get(kind)
        if src is None:
            raise ValueError(f"score kind must be 'grad' or 'grad_last_s', not {kind!r}")
        if kind == "grad_last_s" and not src:
            raise ValueError("score 'grad_last_s' needs variant 'usv' and at least one batch")
        return {n: v.numpy().copy() for n, v in src.items()}


def _progress(it, desc, total=None, quiet=False):
    if quiet:
        return it
    from tqdm import tqdm
    return tqdm(it, desc=desc, total=total, leave=False, dynamic_ncols=True)


def finetune(model, batches, loss_fn, epochs=1, lr=1e-3, weight_decay=0.01, scores=None,
             quiet=False, desc="fine-tune", max_batches=None, penalty=None, param_groups=None):
    """Train ``model`` with AdamW. ``batches()`` yields ``(inputs, targets)`` for one epoch.

    ``loss_fn(model, inputs, targets)`` returns the mean loss. When ``scores`` (a
    :class:`RankScores`) is given, every batch's gradients are accumulated into it
    before the optimiser step. ``penalty()`` (optional) returns a term added to each
    batch's loss before the backward pass (the reported loss is the task loss only);
    ``param_groups`` replaces the single AdamW group. Returns the per-epoch mean losses.
    """
    if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 0:
        raise ValueError(f"epochs must be a non-negative integer, not {epochs!r}")
    check_float("lr", lr, 0.0, lo_open=True)
    check_float("weight_decay", weight_decay, 0.0)
    groups = param_groups or [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(groups, lr=lr, weight_decay=weight_decay)
    hist = []
    for ep in range(epochs):
        model.train()
        tot, cnt = 0.0, 0
        bar = _progress(batches(), f"{desc} {ep + 1}/{epochs}", quiet=quiet)
        for bi, (x, y) in enumerate(bar):
            if max_batches is not None and bi >= max_batches:
                break
            opt.zero_grad(set_to_none=True)
            loss = loss_fn(model, x, y)
            (loss if penalty is None else loss + penalty()).backward()
            if scores is not None:
                scores.accumulate()
            opt.step()
            tot += loss.item() * len(y)
            cnt += len(y)
            if not quiet and hasattr(bar, "set_postfix"):
                bar.set_postfix(loss=f"{tot / cnt:.4f}")
        hist.append(tot / max(cnt, 1))
    model.eval()
    return hist


def score_pass(model, batches, loss_fn, max_batches=None, quiet=True):
    """Rank scores of the current model over ``batches()`` without changing it."""
    scores = RankScores(model)
    model.eval()
    for bi, (x, y) in enumerate(_progress(batches(), "scores", quiet=quiet)):
        if max_batches is not None and bi >= max_batches:
            break
        model.zero_grad(set_to_none=True)
        loss_fn(model, x, y).backward()
        scores.accumulate()
    model.zero_grad(set_to_none=True)
    return scores


def top_share(score, fraction):
    """Share of the total score held by the top ``fraction`` of ranks (at least one rank)."""
    s = np.sort(np.asarray(score, dtype=np.float64))[::-1]
    k = max(1, int(math.ceil(fraction * len(s))))
    tot = s.sum()
    return float(s[:k].sum() / tot) if tot > 0 else 0.0


@torch.no_grad()
def evaluate(model, batches, metric_fn):
    """Mean of ``metric_fn(model, x, y)`` (a per-batch sum) over all samples/targets."""
    model.eval()
    tot, cnt = 0.0, 0
    for x, y in batches():
        s, c = metric_fn(model, x, y)
        tot += float(s)
        cnt += int(c)
    if cnt == 0:        # an empty evaluation set has no metric (not 0.0)
        raise ValueError("nothing to evaluate: the evaluation set is empty")
    return tot / cnt
