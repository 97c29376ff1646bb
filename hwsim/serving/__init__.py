"""Serving simulation: traffic model and a continuous-batching discrete-event simulator.

Independent of the performance engine: iteration time comes from any object satisfying
:class:`~hwsim.serving.simulator.StepTimeModel`.
"""

from hwsim.serving.arrivals import (
    ConcurrencyArrivals,
    ConstantRate,
    DailyRate,
    PoissonArrivals,
    TraceArrivals,
)
from hwsim.serving.benchmark import BenchmarkSummary, benchmark_summary
from hwsim.serving.distributions import Empirical, Fixed, Lognormal, Uniform, lognormal_params
from hwsim.serving.kv_blocks import blocks_for_tokens, kv_capacity_tokens
from hwsim.serving.metrics import (
    LittlesLawCheck,
    ServingSummary,
    Slo,
    littles_law_check,
    slo_attainment,
    summarize,
)
from hwsim.serving.records import IterationTrace, RequestRecords, SimulationResult, TokenTimeline
from hwsim.serving.scheduler import SchedulerConfig
from hwsim.serving.simulator import StepTimeModel, simulate
from hwsim.serving.traffic import (
    ClosedLoopRequests,
    Requests,
    SessionSpec,
    TrafficSpec,
    sample_requests,
)

__all__ = [
    "BenchmarkSummary",
    "ClosedLoopRequests",
    "ConcurrencyArrivals",
    "ConstantRate",
    "DailyRate",
    "Empirical",
    "Fixed",
    "IterationTrace",
    "LittlesLawCheck",
    "Lognormal",
    "PoissonArrivals",
    "RequestRecords",
    "Requests",
    "SchedulerConfig",
    "ServingSummary",
    "SessionSpec",
    "SimulationResult",
    "Slo",
    "StepTimeModel",
    "TokenTimeline",
    "TraceArrivals",
    "TrafficSpec",
    "Uniform",
    "benchmark_summary",
    "blocks_for_tokens",
    "kv_capacity_tokens",
    "littles_law_check",
    "lognormal_params",
    "sample_requests",
    "simulate",
    "slo_attainment",
    "summarize",
]
