"""Training estimates: memory per GPU, step time, throughput (MFU / HFU) and run cost.

:func:`train` prices one layout (tensor / context / pipeline / data / expert parallelism, ZeRO
stage, activation recomputation, sequence parallelism, bf16 or fp8); :func:`search` lists the
layouts of a GPU count that fit, ranked by step time; :func:`train_curriculum` prices a run in
stages. Layer 4 (beside :mod:`hwsim.inference`): it builds on the op descriptors of
:mod:`hwsim.model` and the pricing of :mod:`hwsim.perf`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from hwsim.lean import lazy_names

# public name -> module that defines it; loaded on first use (PEP 562 module ``__getattr__``),
# so that importing one submodule (the CLI reads TrainingSpec's fields for its flags) does not
# import the whole training stack
_LAZY = {
    "Candidate": "hwsim.training.api",
    "evaluate": "hwsim.training.api",
    "search": "hwsim.training.api",
    "train": "hwsim.training.api",
    "CurriculumResult": "hwsim.training.curriculum",
    "train_curriculum": "hwsim.training.curriculum",
    "UnsupportedModelError": "hwsim.training.layout",
    "TrainingResult": "hwsim.training.results",
    "TrainingSpec": "hwsim.training.spec",
}

if TYPE_CHECKING:
    from hwsim.training.api import Candidate, evaluate, search, train
    from hwsim.training.curriculum import CurriculumResult, train_curriculum
    from hwsim.training.layout import UnsupportedModelError
    from hwsim.training.results import TrainingResult
    from hwsim.training.spec import TrainingSpec


__getattr__, __dir__ = lazy_names(globals(), _LAZY)

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
