"""Training estimates: memory per GPU, step time, throughput (MFU / HFU) and run cost.

:func:`train` prices one layout (tensor / context / pipeline / data / expert parallelism, ZeRO
stage, activation recomputation, sequence parallelism, bf16 or fp8); :func:`search` lists the
layouts of a GPU count that fit, ranked by step time; :func:`train_curriculum` prices a run in
stages. Layer 4 (beside :mod:`hwsim.inference`): it builds on the op descriptors of
:mod:`hwsim.model` and the pricing of :mod:`hwsim.perf`.
"""

from __future__ import annotations

from hwsim.training.api import Candidate, evaluate, search, train
from hwsim.training.curriculum import CurriculumResult, train_curriculum
from hwsim.training.layout import UnsupportedModelError
from hwsim.training.results import TrainingResult
from hwsim.training.spec import TrainingSpec

__all__ = [
    "Candidate",
    "CurriculumResult",
    "TrainingResult",
    "TrainingSpec",
    "UnsupportedModelError",
    "evaluate",
    "search",
    "train",
    "train_curriculum",
]
