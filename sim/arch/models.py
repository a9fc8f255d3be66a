"""Transformer shapes: built-in presets and small config files (JSON or TOML).

A model is a stack of identical layers. Each layer has the static matrices (``y = x @ W``,
W of shape inputs x outputs)

    q, k, v   hidden x (heads * head_dim), hidden x (kv_heads * head_dim) (twice)
    o         (heads * head_dim) x hidden
    ffn1      hidden x ffn            (the up projection)
    gate      hidden x ffn            (only with ffn_act = "swiglu")
    ffn2      ffn x hidden            (the down projection)

and the run-time products of attention (QK^T, softmax, SV) on the digital PIM.
Embeddings, the classifier and the LM head are outside the model (see docs).

Config file keys (JSON object or TOML table at top level)::

    name      string (default: the file stem)
    layers    integer in 1..1024 (MAX_LAYERS)
    hidden    integer in 1..65536 (MAX_WIDTH)
    heads     integer in 1..1024 dividing hidden (unless head_dim is given)
    ffn       integer in 1..262144 (MAX_FFN)
    kind      "encoder" or "decoder"
    kv_heads  optional, divides heads (grouped-query attention), default heads
    head_dim  optional, 1..1024, default hidden // heads
    ffn_act   optional, "gelu" (default) or "swiglu"
    norm      optional, "layernorm" (default) or "rmsnorm"
"""

import json
from dataclasses import dataclass
from pathlib import Path

from ...base import check_choice, check_int
from .params import read_text

__all__ = ["Transformer", "PRESETS", "preset_names", "get_model", "load_model_file",
           "MAX_LAYERS", "MAX_WIDTH", "MAX_FFN", "MAX_HEADS"]

KINDS = ("encoder", "decoder")
ACTS = ("gelu", "swiglu")
NORMS = ("layernorm", "rmsnorm")
ROLES = ("q", "k", "v", "o", "ffn1", "gate", "ffn2")

#: Upper bounds of a model's sizes: a few times the largest published transformers
#: (126 layers, hidden 16384, FFN 53248, 128 heads), so that every count the model makes
#: stays small and exact (the per-layer tables hold at most MAX_LAYERS entries).
MAX_LAYERS = 1024
MAX_WIDTH = 65536
MAX_FFN = 262144
MAX_HEADS = 1024


@dataclass(frozen=True)
class Transformer:
    name: str
    layers: int
    hidden: int
    heads: int
    ffn: int
    kind: str = "encoder"
    kv_heads: int = None
    head_dim: int = None
    ffn_act: str = "gelu"
    norm: str = "layernorm"

    def __post_init__(self):
        if not isinstance(self.name, str) or not self.name.strip():
            raise ValueError(f"name must be a non-empty string, not {self.name!r}")
        check_int("layers", self.layers, 1, MAX_LAYERS)
        check_int("hidden", self.hidden, 1, MAX_WIDTH)
        check_int("heads", self.heads, 1, MAX_HEADS)
        check_int("ffn", self.ffn, 1, MAX_FFN)
        check_choice("kind", self.kind, KINDS)
        check_choice("ffn_act", self.ffn_act, ACTS)
        check_choice("norm", self.norm, NORMS)
        if self.head_dim is None:
            if self.hidden % self.heads:
                raise ValueError(f"heads must divide hidden ({self.hidden}) when head_dim is not given, "
                                 f"not {self.heads!r}")
            object.__setattr__(self, "head_dim", self.hidden // self.heads)
        check_int("head_dim", self.head_dim, 1, 1024)
        if self.heads * self.head_dim > MAX_WIDTH:
            raise ValueError(f"heads x head_dim must be at most {MAX_WIDTH}, not "
                             f"{self.heads} x {self.head_dim}")
        if self.kv_heads is None:
            object.__setattr__(self, "kv_heads", self.heads)
        check_int("kv_heads", self.kv_heads, 1, self.heads)
        if self.heads % self.kv_heads:
            raise ValueError(f"kv_heads must divide heads ({self.heads}), not {self.kv_heads!r}")

    @property
    def d_q(self):
        return self.heads * self.head_dim

    @property
    def d_kv(self):
        return self.kv_heads * self.head_dim

    @property
    def causal(self):
        return self.kind == "decoder"

    def matrices(self):
        """Static matrices of one layer: ``{role: (inputs m, outputs n)}`` in data-flow order."""
        h = self.hidden
        mats = {"q": (h, self.d_q), "k": (h, self.d_kv), "v": (h, self.d_kv),
                "o": (self.d_q, h), "ffn1": (h, self.ffn)}
        if self.ffn_act == "swiglu":
            mats["gate"] = (h, self.ffn)
        mats["ffn2"] = (self.ffn, h)
        return mats

    def steps(self):
        """Data-flow of one layer: groups of matrices that run side by side, and 'attention'."""
        ffn_in = ["ffn1", "gate"] if self.ffn_act == "swiglu" else ["ffn1"]
        return [["q", "k", "v"], "attention", ["o"], ffn_in, ["ffn2"]]

    def weights_per_layer(self):
        return sum(m * n for m, n in self.matrices().values())

    def to_dict(self):
        return {k: getattr(self, k) for k in ("name", "layers", "hidden", "heads", "ffn", "kind",
                                               "kv_heads", "head_dim", "ffn_act", "norm")}


PRESETS = {
    "bert-base": Transformer("bert-base", 12, 768, 12, 3072, "encoder"),
    "bert-large": Transformer("bert-large", 24, 1024, 16, 4096, "encoder"),
    "gpt2": Transformer("gpt2", 12, 768, 12, 3072, "decoder"),
    "llama-3.2-1b": Transformer("llama-3.2-1b", 16, 2048, 32, 8192, "decoder", kv_heads=8,
                                head_dim=64, ffn_act="swiglu", norm="rmsnorm"),
    "vit-base": Transformer("vit-base", 12, 768, 12, 3072, "encoder"),
}
_ALIASES = {"gpt2-small": "gpt2", "gpt-2": "gpt2", "gpt-2-small": "gpt2",
            "llama3.2-1b": "llama-3.2-1b", "llama-1b": "llama-3.2-1b", "vit-b": "vit-base",
            "vit-b/16": "vit-base", "bert-b": "bert-base", "bert-l": "bert-large"}


def preset_names():
    return list(PRESETS)


def load_model_file(path):
    """A :class:`Transformer` from a JSON (``.json``) or TOML (``.toml``) config file."""
    path = Path(path)
    text = read_text(path, "model config", missing=f"model config file not found: {path}")
    try:
        if path.suffix.lower() == ".toml":
            import tomllib
            data = tomllib.loads(text)
        else:
            data = json.loads(text)
    except Exception as exc:  # json.JSONDecodeError, tomllib.TOMLDecodeError
        raise ValueError(f"model config {path}: malformed ({exc})") from None
    if not isinstance(data, dict):
        raise ValueError(f"model config {path}: top level must be an object/table")
    allowed = {"name", "layers", "hidden", "heads", "ffn", "kind", "kv_heads", "head_dim",
               "ffn_act", "norm"}
    unknown = sorted(set(data) - allowed)
    if unknown:
        raise ValueError(f"model config {path}: unknown key(s) {', '.join(unknown)}; "
                         f"allowed: {', '.join(sorted(allowed))}")
    missing = [k for k in ("layers", "hidden", "heads", "ffn", "kind") if k not in data]
    if missing:
        raise ValueError(f"model config {path}: missing key(s) {', '.join(missing)}")
    data = dict(data)
    data.setdefault("name", path.stem)
    try:
        return Transformer(**data)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"model config {path}: {exc}") from None


def get_model(name_or_path):
    """A preset by name (case-insensitive, a few aliases) or a config file path."""
    if isinstance(name_or_path, Transformer):
        return name_or_path
    key = str(name_or_path).strip().lower()
    key = _ALIASES.get(key, key)
    if key in PRESETS:
        return PRESETS[key]
    p = Path(str(name_or_path))
    if p.suffix.lower() in (".json", ".toml") or p.is_dir():
        return load_model_file(p)
    raise ValueError(f"unknown model {name_or_path!r}; presets: {', '.join(PRESETS)} "
                     f"(or a .json / .toml config file)")
