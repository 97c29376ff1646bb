"""The published comparison set (validation/published/) loads, spans enough hardware and engines,
points at real profiles, quotes its numbers, and rejects bad files with clear errors."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from validation.published_set import (
    DEFAULT_FOLDER,
    PublishedRow,
    PublishedSetError,
    load_published,
    quote_contains_value,
    value_digits,
)

REPO = Path(__file__).resolve().parents[1]
SHIPPED_ROWS_FLOOR = 103  # the count reached when the set was built; lower means rows were lost

# sources reserved for independent evaluation (validation/published/README.md, "Excluded")
FORBIDDEN_SOURCE_FRAGMENTS = (
    "aiconfigurator",
    "vidur",
    "perf-overview",
    "perf_overview",
    "mlperf",
    "mlcommons",
    "gpt-fast",
    "dao-ailab/flash-attention",
    "arxiv.org/abs/2205.14135",
    "arxiv.org/abs/2307.08691",
    "arxiv.org/abs/2407.08608",
    "llm-foundry",
    "torchtitan",
    "nvidia/nemo",
    "megatron-lm",
)


@pytest.fixture(scope="module")
def rows() -> list[PublishedRow]:
    return load_published()


def _profile_ids(folder: str) -> set[str]:
    ids = set()
    for path in (REPO / folder).glob("*.yaml"):
        doc = yaml.safe_load(path.read_text(encoding="utf-8"))
        assert doc["id"] == path.stem, f"{path}: id {doc['id']!r} != file name"
        ids.add(doc["id"])
    return ids


def test_shipped_set_loads_with_the_count_reached(rows: list[PublishedRow]) -> None:
    assert len(rows) >= SHIPPED_ROWS_FLOOR
    assert len({r.id for r in rows}) == len(rows)
    assert {p.name for p in DEFAULT_FOLDER.glob("*.yaml")} >= {
        "kernels.yaml",
        "collectives.yaml",
        "serving.yaml",
    }


def test_spans_gpus_engines_and_kinds(rows: list[PublishedRow]) -> None:
    gpus = {r.hardware_profile for r in rows if r.hardware_profile}
    assert len(gpus) >= 4, gpus
    engines = {r.engine for r in rows if r.engine}
    assert len(engines) >= 2, engines
    kinds = {r.kind for r in rows}
    assert {"gemm", "bandwidth", "allreduce", "serving"} <= kinds
    # both halves of the brief: kernel-level and end-to-end rows
    assert sum(r.kind == "serving" for r in rows) >= 20
    assert sum(r.kind in {"gemm", "bandwidth", "allreduce"} for r in rows) >= 20


def test_claimed_profiles_exist(rows: list[PublishedRow]) -> None:
    hardware = _profile_ids("hardware_profiles")
    models = _profile_ids("model_profiles")
    for r in rows:
        if r.hardware_profile is not None:
            assert r.hardware_profile in hardware, (
                f"{r.id}: no hardware profile {r.hardware_profile}"
            )
            assert (REPO / "hardware_profiles" / f"{r.hardware_profile}.yaml").is_file()
        if r.model_profile is not None:
            assert r.model_profile in models, f"{r.id}: no model profile {r.model_profile}"
            assert (REPO / "model_profiles" / f"{r.model_profile}.yaml").is_file()


def test_every_quote_contains_its_value(rows: list[PublishedRow]) -> None:
    for r in rows:
        # independent of the loader's helper: digits of the shortest decimal form, commas dropped
        text = f"{r.value:.6f}".rstrip("0").rstrip(".")
        assert text in r.quote.replace(",", ""), f"{r.id}: {text!r} not in quote {r.quote!r}"
        assert quote_contains_value(r)


def test_value_digits_forms() -> None:
    assert value_digits(1745.0) == "1745"
    assert value_digits(72.45) == "72.45"
    assert value_digits(2.9) == "2.9"
    assert value_digits(17179869184.0) == "17179869184"


def test_rows_are_complete_and_sourced(rows: list[PublishedRow]) -> None:
    for r in rows:
        assert r.source.url.startswith("https://"), r.id
        assert r.quote.strip() and r.source.locator.strip(), r.id
        if r.kind in {"serving", "latency"}:
            assert r.engine and (r.model_profile or r.model_published), r.id
            assert r.workload.tp is not None, r.id
        if r.kind == "gemm":
            assert r.workload.dtype and r.workload.m and r.workload.n and r.workload.k, r.id
        if r.kind == "allreduce":
            assert r.num_devices >= 2, r.id
        if r.hardware_profile is None:
            assert r.hardware_published, r.id


def test_no_forbidden_sources(rows: list[PublishedRow]) -> None:
    for r in rows:
        url = r.source.url.lower()
        for fragment in FORBIDDEN_SOURCE_FRAGMENTS:
            assert fragment not in url, f"{r.id}: source {url} is reserved ({fragment})"


# --- bad input gives clear errors ----------------------------------------------------------


def _good_row(row_id: str = "gemm-test-row") -> dict[str, Any]:
    return {
        "id": row_id,
        "kind": "gemm",
        "hardware_profile": "h100-sxm",
        "hardware_published": "NVIDIA H100 SXM",
        "workload": {"dtype": "bf16", "m": 4096, "n": 4096, "k": 4096},
        "metric": "gemm_tflops",
        "value": 700.5,
        "unit": "TFLOP/s",
        "source": {
            "url": "https://example.org/gemm",
            "title": "an example page",
            "locator": "Table 1",
        },
        "quote": "| 4096 | 4096 | 4096 | 700.5 |",
    }


def _write(folder: Path, name: str, rows: list[dict[str, Any]]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text(yaml.safe_dump({"rows": rows}, sort_keys=False), encoding="utf-8")
    return path


def test_good_minimal_file_loads(tmp_path: Path) -> None:
    _write(tmp_path, "a.yaml", [_good_row()])
    (row,) = load_published(tmp_path)
    assert row.value == 700.5 and row.num_devices == 1


def test_duplicate_id_across_files(tmp_path: Path) -> None:
    _write(tmp_path, "a.yaml", [_good_row("dup-id")])
    _write(tmp_path, "b.yaml", [_good_row("dup-id")])
    with pytest.raises(PublishedSetError, match=r"b\.yaml.*'dup-id'.*'id'.*duplicate.*a\.yaml"):
        load_published(tmp_path)


def test_duplicate_id_within_a_file(tmp_path: Path) -> None:
    _write(tmp_path, "a.yaml", [_good_row("same"), _good_row("same")])
    with pytest.raises(PublishedSetError, match=r"a\.yaml.*'same'.*duplicate"):
        load_published(tmp_path)


def test_missing_source(tmp_path: Path) -> None:
    bad = _good_row("no-source")
    del bad["source"]
    _write(tmp_path, "x.yaml", [bad])
    with pytest.raises(PublishedSetError, match=r"x\.yaml: row 'no-source' \(#0\): field 'source'"):
        load_published(tmp_path)


def test_missing_source_url(tmp_path: Path) -> None:
    bad = _good_row("no-url")
    del bad["source"]["url"]
    _write(tmp_path, "x.yaml", [bad])
    with pytest.raises(PublishedSetError, match=r"'no-url'.*field 'source\.url'"):
        load_published(tmp_path)


def test_missing_quote(tmp_path: Path) -> None:
    bad = _good_row("no-quote")
    del bad["quote"]
    _write(tmp_path, "x.yaml", [bad])
    with pytest.raises(PublishedSetError, match=r"'no-quote'.*field 'quote'"):
        load_published(tmp_path)


@pytest.mark.parametrize(
    ("where", "field"),
    [("row", "value_tflops"), ("workload", "workload.batch"), ("source", "source.page")],
)
def test_extra_field_is_rejected(tmp_path: Path, where: str, field: str) -> None:
    bad = _good_row("extra-field")
    target = bad if where == "row" else bad[where]
    target[field.split(".")[-1]] = 1
    _write(tmp_path, "x.yaml", [bad])
    with pytest.raises(
        PublishedSetError, match=rf"'extra-field'.*field '{re.escape(field)}'.*xtra"
    ):
        load_published(tmp_path)


def test_non_positive_value(tmp_path: Path) -> None:
    bad = _good_row("zero")
    bad["value"] = 0
    bad["quote"] = "value 0"
    _write(tmp_path, "x.yaml", [bad])
    with pytest.raises(PublishedSetError, match=r"'zero'.*field 'value'.*greater than 0"):
        load_published(tmp_path)


def test_quote_without_the_value_is_rejected(tmp_path: Path) -> None:
    bad = _good_row("misquoted")
    bad["quote"] = "| 4096 | 4096 | 4096 | 705.0 |"
    _write(tmp_path, "x.yaml", [bad])
    with pytest.raises(PublishedSetError, match=r"'misquoted'.*quote does not contain.*'700\.5'"):
        load_published(tmp_path)


def test_unit_must_fit_kind(tmp_path: Path) -> None:
    bad = _good_row("wrong-unit")
    bad["unit"] = "GB/s"
    _write(tmp_path, "x.yaml", [bad])
    with pytest.raises(
        PublishedSetError, match=r"'wrong-unit'.*unit 'GB/s' does not fit kind 'gemm'"
    ):
        load_published(tmp_path)


def test_unknown_unit(tmp_path: Path) -> None:
    bad = _good_row("odd-unit")
    bad["unit"] = "TFLOPS"
    _write(tmp_path, "x.yaml", [bad])
    with pytest.raises(PublishedSetError, match=r"'odd-unit'.*field 'unit'"):
        load_published(tmp_path)


def test_serving_row_needs_engine_and_model(tmp_path: Path) -> None:
    bad = _good_row("serving-no-engine")
    bad.update(kind="serving", unit="ms", metric="median_ttft", model_published="some/model")
    bad["workload"] = {"tp": 1}
    _write(tmp_path, "x.yaml", [bad])
    with pytest.raises(PublishedSetError, match=r"'serving-no-engine'.*needs an engine"):
        load_published(tmp_path)


def test_row_without_id_is_named_by_index(tmp_path: Path) -> None:
    bad = _good_row()
    del bad["id"]
    _write(tmp_path, "x.yaml", [_good_row("first"), bad])
    with pytest.raises(PublishedSetError, match=r"x\.yaml: row #1: field 'id'"):
        load_published(tmp_path)


def test_bad_top_level(tmp_path: Path) -> None:
    (tmp_path / "x.yaml").write_text("- just\n- a list\n", encoding="utf-8")
    with pytest.raises(PublishedSetError, match=r"x\.yaml: top level must be a mapping"):
        load_published(tmp_path)
    (tmp_path / "x.yaml").write_text("rows: []\nextra: 1\n", encoding="utf-8")
    with pytest.raises(PublishedSetError, match=r"unknown top-level keys \['extra'\]"):
        load_published(tmp_path)


def test_empty_or_missing_folder(tmp_path: Path) -> None:
    with pytest.raises(PublishedSetError, match="no \\*.yaml files"):
        load_published(tmp_path)
    with pytest.raises(PublishedSetError, match="not a folder"):
        load_published(tmp_path / "missing")
