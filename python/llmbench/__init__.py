"""llmbench: a benchmark harness for LLM inference servers.

Measure throughput, time to first token, inter-token latency and cost per million tokens
of vLLM, TGI, any OpenAI-compatible server, or the built-in scripted server, from a
notebook, a script or the `llmbench` command.

Example:
    >>> import llmbench
    >>> target = llmbench.OpenAI("http://localhost:8000", model="meta-llama/Llama-2-7b-chat-hf")
    >>> res = llmbench.run_sweep(target, batch_sizes=[1, 8, 32], out_dir="results/metrics_study")
    >>> res.summary
"""

from . import baseline, datasets, records, stats
from ._core import __version__
from .ab import ab
from .ab_analysis import ABResult, compare_ab
from .cluster import RayCluster
from .columns.client_health import ClientLimitWarning
from .columns.kv import model_arch
from .compare import compare, comparison_table
from .config import SweepSpec, dump_config, load_config, parse_config, save_config
from .errors import (
    InvalidArgumentError,
    LlmbenchError,
    ModelError,
    NvmlUnavailableError,
    ResultsIOError,
    ResultsNotSaved,
    RunFailedWarning,
    SweepInterrupted,
    TargetError,
    TokenizerError,
    UnreachableError,
)
from .plots import batch_size_axis
from .pricing import GPU_PRICES_USD_PER_HOUR, gpu_price
from .prompts import default_prompts, load_prompts
from .results import Results
from .sim import SimConfig, SimServer
from .slo import SLO
from .studies.calibrate import Calibration, calibrate
from .studies.capacity import CapacityResult, find_capacity
from .studies.kv_cache import kv_cache_study
from .sweep import (
    DEFAULT_BATCH_SIZES,
    arrival_schedule,
    prompt_order,
    run_sweep,
    run_sweep_async,
)
from .sweep_options import SweepOptions
from .targets import TGI, OpenAI, Target, Timeouts
from .telemetry import GpuSampler, MetricsScraper, list_gpus

__all__ = [
    "DEFAULT_BATCH_SIZES",
    "GPU_PRICES_USD_PER_HOUR",
    "SLO",
    "TGI",
    "ABResult",
    "Calibration",
    "CapacityResult",
    "ClientLimitWarning",
    "GpuSampler",
    "InvalidArgumentError",
    "LlmbenchError",
    "MetricsScraper",
    "ModelError",
    "NvmlUnavailableError",
    "OpenAI",
    "RayCluster",
    "Results",
    "ResultsIOError",
    "ResultsNotSaved",
    "RunFailedWarning",
    "SimConfig",
    "SimServer",
    "SweepInterrupted",
    "SweepOptions",
    "SweepSpec",
    "Target",
    "TargetError",
    "Timeouts",
    "TokenizerError",
    "UnreachableError",
    "__version__",
    "ab",
    "arrival_schedule",
    "baseline",
    "batch_size_axis",
    "calibrate",
    "compare",
    "compare_ab",
    "comparison_table",
    "datasets",
    "default_prompts",
    "dump_config",
    "find_capacity",
    "gpu_price",
    "kv_cache_study",
    "list_gpus",
    "load_config",
    "load_prompts",
    "model_arch",
    "parse_config",
    "prompt_order",
    "records",
    "run_sweep",
    "run_sweep_async",
    "save_config",
    "stats",
]
