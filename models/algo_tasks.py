"""Tasks of the accuracy flows: model, data, loss and metric, trained checkpoints.

=========  ============================================  ===========================
task       model                                          data, metric
=========  ============================================  ===========================
tiny       random 2-layer transformer (tests)             synthetic images, accuracy
digits     ViT-style, 8x8 images, 2x2 patches, 2 layers   scikit-learn digits, accuracy
fashion    ViT, 28x28 images, 7x7 patches, 4 layers       Fashion-MNIST, accuracy
minilm     pretrained MiniLM-L6 + new head                small_fine_foods, accuracy
austen     character GPT, 4 layers, context 64            Jane Austen novels, eval loss
=========  ============================================  ===========================

Trained base models are cached in ``cache_dir()/checkpoints`` (outside git).
"""

import copy
import hashlib
import json
import time

import numpy as np

from ..base import check_int
from ._torch import torch
from . import datasets as ds
from .svd import finetune
from .tiny_models import TinyTransformer, MiniLMClassifier

__all__ = ["TASKS", "MAX_SEED", "Task", "get_task", "check_task"]

F = torch.nn.functional
TASKS = ("tiny", "digits", "fashion", "minilm", "austen")
#: Largest data-split seed (NumPy's and torch's generators both take 0..2**32-1).
MAX_SEED = 2 ** 32 - 1


def check_task(name):
    if name not in TASKS:
        raise ValueError(f"task must be one of {', '.join(TASKS)}, not {name!r}")
    return name


def _batches(x, y, bs, shuffle, seed=0):
    def gen():
        n = len(y)
        idx = torch.randperm(n, generator=torch.Generator().manual_seed(seed + gen.calls)) \
            if shuffle else torch.arange(n)
        gen.calls += 1
        for i in range(0, n, bs):
            j = idx[i:i + bs]
            yield x[j], y[j]
    gen.calls = 0
    return gen


def _ce(model, x, y):
    return F.cross_entropy(model(x), y)


def _acc(model, x, y):
    return (model(x).argmax(-1) == y).sum(), len(y)


def _lm_loss(model, x, y):
    out = model(x)
    return F.cross_entropy(out.reshape(-1, out.shape[-1]), y.reshape(-1))


def _lm_metric(model, x, y):
    out = model(x)
    return F.cross_entropy(out.reshape(-1, out.shape[-1]).float(), y.reshape(-1),
                           reduction="sum"), y.numel()


class Task:
    """A task instance: ``train``/``eval`` batch generators, ``loss``, ``metric``,
    ``metric_name``, ``higher_is_better``, ``new_model()`` and training settings."""

    def __init__(self, name, *, small=False, eval_limit=None, seed=0):
        self.name, self.small = check_task(name), small
        self.seed = check_int("seed", seed, 0, MAX_SEED)
        if eval_limit is not None:
            eval_limit = check_int("eval_limit", eval_limit, 1)
        #: the arguments that make this task again (``Task(**spec)``: another process)
        self.spec = dict(name=name, small=small, eval_limit=eval_limit, seed=self.seed)
        self.loss, self.metric = _ce, _acc
        self.metric_name, self.higher_is_better = "accuracy", True
        self.train_epochs, self.lr, self.ft_lr, self.bs = 10, 3e-3, 1e-3, 64
        self.max_batches = None
        getattr(self, f"_setup_{name}")()
        if eval_limit is not None:
            self._xe, self._ye = self._xe[:eval_limit], self._ye[:eval_limit]
        self.train = _batches(self._xt, self._yt, self.bs, True, seed)
        self.eval = _batches(self._xe, self._ye, 256, False)

    # ---- tasks ----
    def _setup_tiny(self):
        g = np.random.default_rng(self.seed)
        protos = g.random((4, 8, 8)).astype(np.float32)
        y = g.integers(0, 4, 256)
        x = protos[y] + 0.3 * g.standard_normal((256, 8, 8)).astype(np.float32)
        self._xt, self._yt = torch.from_numpy(x[:192]), torch.from_numpy(y[:192])
        self._xe, self._ye = torch.from_numpy(x[192:]), torch.from_numpy(y[192:])
        self.config = dict(kind="image", image=8, patch=4, classes=4, dim=16, depth=1, heads=2)
        self.train_epochs = 3

    def _setup_digits(self):
        (xt, yt), (xe, ye) = ds.load_digits(seed=self.seed)
        self._xt, self._yt, self._xe, self._ye = map(torch.from_numpy, (xt, yt, xe, ye))
        self.config = dict(kind="image", image=8, patch=2, classes=10, dim=64, depth=2, heads=4)
        self.train_epochs = 15

    def _setup_fashion(self):
        lt, le = (6000, 1000) if self.small else (None, None)
        (xt, yt), (xe, ye) = ds.load_fashion(limit_train=lt, limit_test=le)
        self._xt, self._yt, self._xe, self._ye = map(torch.from_numpy, (xt, yt, xe, ye))
        self.config = dict(kind="image", image=28, patch=7, classes=10, dim=96, depth=4,
                           heads=4, hidden=192)
        self.train_epochs, self.bs = (2 if self.small else 4), 128

    def _setup_austen(self):
        books = ds.load_austen()
        text = "\n".join(books.values())
        vocab = ds.CharVocab(text)
        ctx = 64
        train_txt = "\n".join(v for k, v in books.items() if k != "persuasion")
        eval_txt = books["persuasion"]
        if self.small:
            train_txt, eval_txt = train_txt[:200_000], eval_txt[:20_000]
        t = vocab.encode(train_txt)
        e = vocab.encode(eval_txt)
        g = np.random.default_rng(self.seed)
        n_train = 2000 if self.small else 24_000
        starts = g.integers(0, len(t) - ctx - 1, n_train)
        xt = np.stack([t[s:s + ctx] for s in starts])
        yt = np.stack([t[s + 1:s + ctx + 1] for s in starts])
        es = np.arange(0, len(e) - ctx - 1, ctx)[: (100 if self.small else 1000)]
        xe = np.stack([e[s:s + ctx] for s in es])
        ye = np.stack([e[s + 1:s + ctx + 1] for s in es])
        self._xt, self._yt, self._xe, self._ye = map(torch.from_numpy, (xt, yt, xe, ye))
        self.config = dict(kind="lm", vocab=len(vocab), context=ctx, dim=128, depth=4, heads=4)
        self.loss, self.metric = _lm_loss, _lm_metric
        self.metric_name, self.higher_is_better = "eval loss (nats/char)", False
        self.train_epochs, self.bs = (2 if self.small else 4), 64

    def _setup_minilm(self):
        from tokenizers import Tokenizer
        from .tiny_models import minilm_files
        tok = Tokenizer.from_file(str(minilm_files() / "tokenizer.json"))
        tok.enable_truncation(max_length=128)
        tok.enable_padding(pad_id=0, length=128)
        (tt, yt), (te, ye) = ds.load_fine_foods()
        ntr, nte = (400, 200) if self.small else (2000, 1000)
        g = np.random.default_rng(self.seed)
        it, ie = g.permutation(len(tt))[:ntr], g.permutation(len(te))[:nte]

        def enc(texts):
            return torch.tensor([e.ids for e in tok.encode_batch(
                [t.replace("<br />", " ") for t in texts])], dtype=torch.long)
        self._xt, self._yt = enc([tt[i] for i in it]), torch.from_numpy(yt[it])
        self._xe, self._ye = enc([te[i] for i in ie]), torch.from_numpy(ye[ie])
        self.config = dict(minilm=True, classes=2)
        self.train_epochs, self.lr, self.ft_lr, self.bs = 2, 5e-5, 3e-5, 16

    # ---- models ----
    def new_model(self):
        torch.manual_seed(self.seed)
        if self.config.get("minilm"):
            return MiniLMClassifier.pretrained(classes=2)
        return TinyTransformer(**self.config)

    def key(self):
        h = hashlib.sha1(json.dumps([self.name, self.small, self.seed, self.config,
                                     self.train_epochs, self.lr, len(self._yt)],
                                    sort_keys=True).encode()).hexdigest()[:10]
        return f"{self.name}{'-small' if self.small else ''}-{h}"

    def trained_model(self, cache=True, quiet=False, log=None):
        """The base model trained on the task (cached checkpoint); (model, seconds)."""
        if getattr(self, "_base", None) is not None:
            return copy.deepcopy(self._base), 0.0
        path = ds.cache_dir() / "checkpoints" / f"{self.key()}-base.pt"
        model = self.new_model()
        if cache and path.is_file():
            model.load_state_dict(torch.load(path, weights_only=True))
            return model.eval(), 0.0
        t = time.time()
        finetune(model, self.train, self.loss, epochs=self.train_epochs, lr=self.lr,
                 quiet=quiet, desc=f"train {self.name}")
        dt = time.time() - t
        if cache and self.name != "tiny":
            path.parent.mkdir(parents=True, exist_ok=True)
            torch.save(model.state_dict(), path)
        self._base = copy.deepcopy(model.eval())
        return model.eval(), dt


def get_task(name, **kw):
    return Task(name, **kw)
