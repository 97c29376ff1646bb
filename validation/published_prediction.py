"""The record every published-row prediction fills (:class:`Prediction`) and what the kernel
and serving evaluators share: hwsim dtypes for the rows' names, the profile kind, the ShareGPT
lengths the serving rows assume. Split from :mod:`validation.published_eval`."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from hwsim.profiles.hardware import HardwareProfile

PREDICTED = "predicted"
SEED = 0
NO_BAND_DATASHEET = (
    "not scored: a datasheet-rung band is the transfer band built from these rows (in-sample); "
    "its held-out coverage is the transfer-band table"
)
NO_BAND_SERVING = "no band: the serving simulator gives a point value only"

# ShareGPT lengths: Kwon et al. 2023, "Efficient Memory Management for Large Language Model
# Serving with PagedAttention" (SOSP '23, arXiv 2309.06180), Fig. 11: ShareGPT mean input
# 161.31 and mean output 337.99 tokens (Alpaca 19.31 / 58.45; the text's "8.4x longer input
# prompts and 5.8x longer outputs on average"; the figure itself was not re-read here, the four
# means agree with those two ratios: 161.31 / 19.31 = 8.35, 337.99 / 58.45 = 5.78). The paper
# gives means, not a spread, so the
# lengths are fixed at the means (rounded): a median-TTFT prediction misses the spread of
# prompt lengths. Its tokenizer and sampling are not sglang.bench_serving's.
SHAREGPT_LENGTHS = {"prompt_tokens": 161, "output_tokens": 338}
SHAREGPT_SOURCE = (
    "ShareGPT lengths fixed at the means of Kwon et al. 2023 (vLLM/PagedAttention, arXiv "
    "2309.06180, Fig. 11): 161 prompt and 338 output tokens; no spread"
)

# Rows whose model has no profile of its own but the same layer shapes as one (the row's notes
# say so: Llama 3 8B/70B have the Llama 3.1 architecture apart from RoPE scaling and context
# length, which a 128-token prompt never reaches).
MODEL_SUBSTITUTES = {"LLAMA 3 (8B)": "llama-3.1-8b", "LLAMA 3 (70B)": "llama-3.1-70b"}

# dtype names as the rows print them -> hwsim dtypes
_DTYPES = {
    "fp8": "fp8",
    "fp8_e4m3fn": "fp8",
    "fp8_fnuz": "fp8",
    "bf16": "bf16",
    "fp16": "fp16",
    "fp32": "fp32",
}


@dataclass
class Prediction:
    """One row: published vs predicted, the error, and what priced it (or why nothing could)."""

    id: str
    kind: str
    hardware: str | None
    engine: str | None
    metric: str
    unit: str
    published: float
    predicted: float | None = None
    error: float | None = None  # predicted / published - 1
    rung: str | None = None
    profile: str | None = None  # the hardware profile that priced it
    status: str = PREDICTED
    notes: list[str] = field(default_factory=list)
    # p10-p90 band of the prediction in the row's unit (a calibrated or measured kernel rung);
    # None where hwsim gives none (datasheet rungs, communication, the serving simulator)
    low: float | None = None
    high: float | None = None
    band: str | None = None  # why there is no band, where there is none
    # a TPOT row: (op name, kind, share of hwsim's decode step time) of each distinct op, at
    # the simulation's median decode batch; kind: the published kernel kind whose rows say how
    # far such an op is off ('kernel': every kernel row); read by validation.op_correlation
    op_shares: list[tuple[str, str, float]] | None = None

    @property
    def in_band(self) -> bool | None:
        """Whether the published value lies in [low, high]; None without a band."""
        if self.low is None or self.high is None:
            return None
        return self.low <= self.published <= self.high

    @property
    def ok(self) -> bool:
        return self.status == PREDICTED

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class NotPredictable(Exception):
    """hwsim cannot express the row; the message is the reason."""


def _profile_kind(hw: HardwareProfile) -> str:
    return "calibrated" if hw.calibration is not None else "datasheet"


def _dtype(raw: str | None, default: str) -> str:
    if raw is None:
        return default
    if raw not in _DTYPES:
        raise NotPredictable(f"dtype {raw!r} has no hwsim equivalent")
    return _DTYPES[raw]
