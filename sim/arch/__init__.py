"""Architecture model of HyFlexPIM: mapper, timing, energy, area and baselines.

Entry points: :func:`evaluate` (one design point), :func:`plan` (placement only),
:func:`array_cycles` (one array, cycle-level, comparable with the RTL),
:func:`run_sweep` (CSV + plots). Parameters: constraints/hyflexpim_params.json.
"""

from .params import Params, load_params, default_params, PARAMS_FILE
from .models import Transformer, PRESETS, get_model, load_model_file
from .timing import array_cycles, plane_cycles, vector_time, first_result_time
from .mapper import (kept_rank, slc_count, map_matrix, load_slc_map, plan, Plan, SlcSpec,
                     FitError, DESIGNS)
from .evaluate import evaluate, ENERGY_KEYS
from .sweep import run_sweep, SWEEP_MODELS, SWEEP_SEQS, SWEEP_SLC

__all__ = ["Params", "load_params", "default_params", "PARAMS_FILE", "Transformer", "PRESETS",
           "get_model", "load_model_file", "array_cycles", "plane_cycles", "vector_time",
           "first_result_time", "kept_rank", "slc_count", "map_matrix", "load_slc_map", "plan",
           "Plan", "SlcSpec", "FitError", "DESIGNS", "evaluate", "ENERGY_KEYS", "run_sweep",
           "SWEEP_MODELS", "SWEEP_SEQS", "SWEEP_SLC"]
