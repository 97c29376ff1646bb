"""Published training runs (``validation/published/training/runs.yaml``) and hwsim's predictions.

    from validation.published_training import compare, load_training_rows
    for c in compare(): print(c.row_id, c.metric, c.published, c.predicted, c.error)

Rows name a shipped model profile or a GPT-style shape (``gpt: {n_layers, d_model,
n_heads}``: Megatron's GPT, learned positions, LayerNorm, biases, tied embeddings, a plain
4h GELU FFN, vocabulary 51,200, as in Narayanan et al. 2021 and Korthikanti et al. 2022;
``vocab``, ``max_positions`` and ``positions: learned | alibi`` override those three). The
loader is strict: unknown fields (in a row, its source or its GPT shape), a source with
neither an arXiv id nor a URL, a missing quote, unknown metrics and duplicate ids are errors.
Metrics are compared as published: ``hardware_tflops_per_gpu`` (Narayanan et al.'s eq. 3
counts the recomputed forward), ``model_tflops_per_gpu``, ``mfu``, ``hfu``, ``step_time_s``,
``model_states_gb_per_gpu`` (weights + gradients + optimizer states per GPU, as in the ZeRO
paper), ``activations_gb_per_gpu`` (the stored activations of the fullest pipeline stage,
hwsim's ``memory.activations_bytes``) and ``memory_gb_per_gpu`` (model states plus stored
activations, hwsim's ``memory.total_bytes``). The unit is in the metric's name: ``_gb_`` is
GB = 1e9 bytes, ``_gib_`` is GiB = 2^30 bytes (``activations_gib_per_gpu``,
``memory_gib_per_gpu``), for sources that print 2^30-byte values; the row's ``assumed`` says
which one its source uses and how that was established.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

FILE = Path(__file__).resolve().parent / "published" / "training" / "runs.yaml"
GPT_VOCAB = 51200
GB, GIB = 1e9, float(2**30)
# memory metrics: (what is measured, bytes per unit)
MEMORY_UNITS = {
    "model_states_gb_per_gpu": ("model_states", GB),
    "activations_gb_per_gpu": ("activations", GB),
    "activations_gib_per_gpu": ("activations", GIB),
    "memory_gb_per_gpu": ("total", GB),
    "memory_gib_per_gpu": ("total", GIB),
}
METRICS = (
    "hardware_tflops_per_gpu",
    "model_tflops_per_gpu",
    "mfu",
    "hfu",
    "step_time_s",
    *MEMORY_UNITS,
)
# metric kinds for the medians of issue 14 ("memory within 5 %, step time / MFU within 10 %")
MEMORY_METRICS = tuple(MEMORY_UNITS)
ACTIVATION_METRICS = tuple(m for m, (what, _) in MEMORY_UNITS.items() if what == "activations")
TOTAL_MEMORY_METRICS = tuple(m for m, (what, _) in MEMORY_UNITS.items() if what == "total")
STEP_METRICS = ("step_time_s",)
UTIL_METRICS = ("mfu", "hfu", "model_tflops_per_gpu", "hardware_tflops_per_gpu")


class Source(BaseModel):
    """Where a row's numbers stand: a paper (arXiv id) or a page (URL), and where in it."""

    model_config = ConfigDict(extra="forbid")
    paper: str
    arxiv: str | None = None
    url: str | None = Field(None, pattern=r"^https://")
    locator: str

    @model_validator(mode="after")
    def _located(self) -> Source:
        if not (self.arxiv or self.url):
            raise ValueError("a source needs an arxiv id or a url")
        return self


class GptShape(BaseModel):
    """A Megatron-style GPT (see :func:`gpt_profile`)."""

    model_config = ConfigDict(extra="forbid")
    n_layers: int = Field(ge=1)
    d_model: int = Field(ge=1)
    n_heads: int = Field(ge=1)
    vocab: int = Field(GPT_VOCAB, ge=1)
    max_positions: int = Field(2048, ge=1)
    positions: Literal["learned", "alibi"] = "learned"


class GptModel(BaseModel):
    model_config = ConfigDict(extra="forbid")
    gpt: GptShape


class TrainingRow(BaseModel):
    model_config = ConfigDict(extra="forbid")
    id: str
    source: Source
    quote: str = Field(min_length=10)
    quote_note: str | None = None
    model: str | GptModel
    hardware: str
    gpus: int = Field(ge=1)
    training: dict[str, Any]
    assumed: str
    published: dict[str, float]
    # why a row is kept but not compared (e.g. its numbers also stand in a reserved table)
    excluded: str | None = None

    @field_validator("published")
    @classmethod
    def _known_metrics(cls, v: dict[str, float]) -> dict[str, float]:
        unknown = sorted(set(v) - set(METRICS))
        if unknown or not v:
            raise ValueError(f"metrics must be among {', '.join(METRICS)}; got {sorted(v)}")
        if any(x <= 0 for x in v.values()):
            raise ValueError("published values must be positive")
        return v


def load_training_rows(path: Path = FILE) -> list[TrainingRow]:
    data = yaml.safe_load(path.read_text())
    rows = [TrainingRow.model_validate(r) for r in data["rows"]]
    ids = [r.id for r in rows]
    dupes = sorted({i for i in ids if ids.count(i) > 1})
    if dupes:
        raise ValueError(f"{path.name}: duplicate row ids {dupes}")
    return rows


def gpt_profile(
    n_layers: int,
    d_model: int,
    n_heads: int,
    row_id: str,
    vocab: int = GPT_VOCAB,
    max_positions: int = 2048,
    positions: str = "learned",
):
    """A Megatron GPT model of the given shape (the papers' Table 1 / Table 3 models)."""
    from hwsim.model.load import model_from_data

    data = {
        "id": f"gpt-{row_id}",
        "name": f"GPT {n_layers}x{d_model}",
        "family": "gpt3",
        "source": "Narayanan et al. 2021 / Korthikanti et al. 2022: GPT (vocabulary 51,200 "
        "unless the row gives another), 4h GELU MLP, learned positions (or ALiBi)",
        "n_layers": n_layers,
        "d_model": d_model,
        "n_heads": n_heads,
        "n_kv_heads": n_heads,
        "head_dim": d_model // n_heads,
        "vocab_size": vocab,
        "tied_embeddings": True,
        "max_position_embeddings": max_positions,
        "position_embedding": positions,
        "norm": "layernorm",
        "norms_per_layer": 2,
        "linear_bias": True,
        "ffn": {"type": "plain", "intermediate_size": 4 * d_model},
        "mixer": {"kind": "attention", "causal": True},
    }
    return model_from_data(data, f"validation/published/training/runs.yaml:{row_id}")


@dataclass(frozen=True)
class Comparison:
    row_id: str
    metric: str
    published: float
    predicted: float

    @property
    def error(self) -> float:
        """Relative error of the prediction: predicted / published - 1."""
        return self.predicted / self.published - 1.0


def predict(row: TrainingRow):
    from hwsim.training import train

    model: Any = row.model
    if isinstance(model, GptModel):
        model = gpt_profile(**model.gpt.model_dump(), row_id=row.id)
    return train(model, row.hardware, row.gpus, **row.training)


def _value(result, metric: str) -> float:
    if metric == "step_time_s":
        return result.step.time_s
    if metric in MEMORY_UNITS:
        what, unit = MEMORY_UNITS[metric]
        mem = result.memory
        nbytes = {
            "model_states": mem.params_bytes + mem.grads_bytes + mem.optimizer_bytes,
            "activations": mem.activations_bytes,
            "total": mem.total_bytes,
        }[what]
        return nbytes / unit
    return float(getattr(result.throughput, metric))


def compare(rows: list[TrainingRow] | None = None) -> list[Comparison]:
    out = []
    for row in rows if rows is not None else load_training_rows():
        if row.excluded:
            continue
        result = predict(row)
        for metric, value in row.published.items():
            out.append(Comparison(row.id, metric, value, _value(result, metric)))
    return out


def median_abs_error(comparisons: list[Comparison], metrics: tuple[str, ...]) -> float:
    errs = [abs(c.error) for c in comparisons if c.metric in metrics]
    return statistics.median(errs) if errs else float("nan")


def main() -> None:
    """``python -m validation.published_training``: every compared row, then the medians."""
    comparisons = compare()
    print(f"{'row':<34}{'metric':<26}{'published':>12}{'hwsim':>12}{'error':>9}")
    for c in comparisons:
        print(
            f"{c.row_id:<34}{c.metric:<26}{c.published:>12.4g}{c.predicted:>12.4g}{c.error:>+9.1%}"
        )
    rows = len({c.row_id for c in comparisons})
    print(f"\n{rows} runs, {len(comparisons)} comparisons; median |error|:")
    for name, metrics in (
        ("memory", MEMORY_METRICS),
        ("step time", STEP_METRICS),
        ("MFU / TFLOP/s", UTIL_METRICS),
    ):
        print(f"  {name:<14} {median_abs_error(comparisons, metrics):.1%}")


if __name__ == "__main__":
    main()
