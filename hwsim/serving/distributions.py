"""Integer-valued distributions for token counts and turns per session (all values >= 1).

Four kinds, chosen by ``kind`` in YAML:

- ``fixed``: always ``value``.
- ``uniform``: integers in ``[low, high]``, both inclusive.
- ``lognormal``: given the mean and the 95th percentile of the underlying continuous
  lognormal, rounded to the nearest integer and clipped to ``[1, max_value]``.
- ``empirical``: a histogram file (CSV with header ``value,weight``).

Lognormal from (mean, p95), closed form. With X = exp(mu + sigma * Z), Z ~ N(0, 1):
    mean = exp(mu + sigma**2 / 2),   p95 = exp(mu + z95 * sigma),   z95 = 1.6448536...
Subtracting the logs gives sigma**2 / 2 - z95 * sigma + ln(p95 / mean) = 0, so
    sigma = z95 - sqrt(z95**2 - 2 * ln(p95 / mean)),   mu = ln(mean) - sigma**2 / 2.
The smaller root is taken (the larger one, sigma > z95, puts the median far below the mean
and is not a length distribution anyone means). A solution exists iff
    mean < p95 <= mean * exp(z95**2 / 2) ~= 3.87 * mean.
Rounding to integers moves the mean by well under one token for realistic values.
"""

from __future__ import annotations

import math
from typing import Annotated, Any, Literal

import numpy as np
from pydantic import BaseModel, Field, PrivateAttr, model_validator

from hwsim.serving.csvio import read_histogram
from hwsim.serving.fields import SPEC_CONFIG

Z95 = 1.6448536269514722  # scipy.stats.norm.ppf(0.95)
MAX_P95_OVER_MEAN = math.exp(Z95**2 / 2)


def lognormal_params(mean: float, p95: float) -> tuple[float, float]:
    """(mu, sigma) of the lognormal with the given mean and 95th percentile (see module doc)."""
    if not mean > 0:
        raise ValueError(f"mean must be > 0, got {mean}")
    ratio = p95 / mean
    if not 1.0 < ratio <= MAX_P95_OVER_MEAN:
        raise ValueError(
            f"a lognormal with mean {mean:g} needs mean < p95 <= {MAX_P95_OVER_MEAN:.3f} * mean "
            f"(= {mean * MAX_P95_OVER_MEAN:g}), got p95 = {p95:g}"
        )
    sigma = Z95 - math.sqrt(Z95**2 - 2.0 * math.log(ratio))
    return math.log(mean) - sigma**2 / 2.0, sigma


class Fixed(BaseModel):
    """Every request the same; 0 is allowed for output tokens (a prefill-only job: embedding,
    scoring, reranking), not for prompts (the traffic spec checks)."""

    model_config = SPEC_CONFIG
    kind: Literal["fixed"] = "fixed"
    value: int = Field(ge=0)

    @property
    def mean(self) -> float:
        return float(self.value)

    def sample(self, n: int, rng: np.random.Generator) -> np.ndarray:
        return np.full(n, self.value, dtype=np.int64)


class Uniform(BaseModel):
    model_config = SPEC_CONFIG
    kind: Literal["uniform"] = "uniform"
    low: int = Field(ge=1)
    high: int = Field(ge=1)

    @model_validator(mode="after")
    def _ordered(self) -> Uniform:
        if self.high < self.low:
            raise ValueError(f"high ({self.high}) must be >= low ({self.low})")
        return self

    @property
    def mean(self) -> float:
        return (self.low + self.high) / 2.0

    def sample(self, n: int, rng: np.random.Generator) -> np.ndarray:
        return rng.integers(self.low, self.high + 1, size=n, dtype=np.int64)


class Lognormal(BaseModel):
    model_config = SPEC_CONFIG
    kind: Literal["lognormal"] = "lognormal"
    mean: float = Field(gt=0)
    p95: float = Field(gt=0)
    max_value: int | None = Field(default=None, ge=1)

    @model_validator(mode="after")
    def _solvable(self) -> Lognormal:
        lognormal_params(self.mean, self.p95)  # raises ValueError with the allowed range
        return self

    @property
    def mu_sigma(self) -> tuple[float, float]:
        return lognormal_params(self.mean, self.p95)

    def sample(self, n: int, rng: np.random.Generator) -> np.ndarray:
        mu, sigma = self.mu_sigma
        x = np.rint(rng.lognormal(mu, sigma, size=n))
        upper = np.inf if self.max_value is None else self.max_value
        return np.clip(x, 1, upper).astype(np.int64)


class Empirical(BaseModel):
    """Histogram file: CSV ``value,weight``. A relative path is taken as given (relative to the
    working directory); scenario loaders should resolve it against the scenario file first."""

    model_config = SPEC_CONFIG
    kind: Literal["empirical"] = "empirical"
    file: str
    _values: np.ndarray = PrivateAttr()
    _probs: np.ndarray = PrivateAttr()

    def model_post_init(self, context: Any) -> None:
        self._values, self._probs = read_histogram(self.file)  # fail at load, not at sampling

    @property
    def mean(self) -> float:
        return float(np.dot(self._values, self._probs))

    def sample(self, n: int, rng: np.random.Generator) -> np.ndarray:
        return rng.choice(self._values, size=n, p=self._probs)


IntDistribution = Annotated[Fixed | Uniform | Lognormal | Empirical, Field(discriminator="kind")]


def shorthand(raw: Any) -> Any:
    """A bare integer in YAML (``output_tokens: 128``) means ``{kind: fixed, value: 128}``."""
    if isinstance(raw, int) and not isinstance(raw, bool):
        return {"kind": "fixed", "value": raw}
    return raw
