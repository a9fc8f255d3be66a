"""Architecture model of HyFlexPIM: mapper, timing, energy, area and baselines.

Entry points: :func:`evaluate` (one design point), :func:`plan` (placement only),
:func:`array_cycles` (one array, cycle-level, comparable with the RTL),
:func:`run_sweep` (CSV + plots), :func:`run_report` (the published evaluation's
comparisons). Parameters: constraints/hyflexpim_params.json, constraints/baselines.json.
"""

from .params import Params, load_params, default_params, PARAMS_FILE, BASELINES_FILE
from .models import Transformer, PRESETS, get_model, load_model_file
from .timing import array_cycles, plane_cycles, vector_time, first_result_time
from .mapper import (kept_rank, slc_count, map_matrix, load_slc_map, plan, Plan, SlcSpec,
                     FitError, DESIGNS, PIM_DESIGNS)
from .evaluate import evaluate, ENERGY_KEYS
from .workloads import WORKLOADS, workload
from .sweep import run_sweep, SWEEP_MODELS, SWEEP_SEQS, SWEEP_SLC
from .report import run_report, report_rows

__all__ = ["Params", "load_params", "default_params", "PARAMS_FILE", "BASELINES_FILE",
           "Transformer", "PRESETS", "get_model", "load_model_file", "array_cycles",
           "plane_cycles", "vector_time", "first_result_time", "kept_rank", "slc_count",
           "map_matrix", "load_slc_map", "plan", "Plan", "SlcSpec", "FitError", "DESIGNS",
           "PIM_DESIGNS", "evaluate", "ENERGY_KEYS", "WORKLOADS", "workload", "run_sweep",
           "SWEEP_MODELS", "SWEEP_SEQS", "SWEEP_SLC", "run_report", "report_rows"]
