"""The workloads of the published evaluation (DESIGN.md s6), one per model.

Each names its model, its sequence length and how the tokens are processed: GLUE on
BERT (maximum sequence length 128), WikiText-2 on GPT-2 (1024, all tokens of a sequence
at once, as for perplexity), PTB on Llama-3.2-1B (100, likewise), CIFAR-10 on ViT-Base
(224 x 224 images in 16 x 16 patches: 196 patches + the class token = 197 tokens).
Decoding (tokens one by one) stays available through ``gen`` of :func:`.evaluate`.
"""

from dataclasses import dataclass

from ...base import check_choice

__all__ = ["Workload", "WORKLOADS", "workload", "MODEL_WORKLOAD"]


@dataclass(frozen=True)
class Workload:
    name: str
    dataset: str
    models: tuple
    seq: int
    gen: int = 0            # decoders: tokens generated one by one (0: all at once)

    def model_seq(self, model):
        return self.seq


WORKLOADS = {
    "glue": Workload("glue", "GLUE", ("bert-base", "bert-large"), 128),
    "wikitext2": Workload("wikitext2", "WikiText-2", ("gpt2",), 1024),
    "ptb": Workload("ptb", "PTB", ("llama-3.2-1b",), 100),
    "cifar10": Workload("cifar10", "CIFAR-10", ("vit-base",), (224 // 16) ** 2 + 1),
}

#: The workload each preset is evaluated on.
MODEL_WORKLOAD = {m: w.name for w in WORKLOADS.values() for m in w.models}


def workload(name):
    """The :class:`Workload` called ``name`` (glue, wikitext2, ptb, cifar10)."""
    return WORKLOADS[check_choice("workload", name, tuple(WORKLOADS))]
