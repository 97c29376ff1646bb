"""Working + long-term memory (issue 17): the recent part of the corpus in the prompt, the older
part retrieved from, the model optionally served with a sliding window; compared with the
whole corpus in context and plain RAG, per query; the example and its plot."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from hwsim.cli.main import app
from hwsim.rag import compare_rag

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "working-plus-long-term-memory.yaml"
SPEC = {
    "corpus_tokens": 1_000_000,
    "chunk_tokens": 512,
    "top_k": 8,
    "question_tokens": 64,
    "index": {"kind": "hnsw"},
    "search_hardware": "h100-sxm",
    "working_memory": {"recent_tokens": 8192, "window": 8192},
}
KV_PER_TOKEN = 131_072  # Llama 3.1 8B: 32 layers x 8 KV heads x 128 x 2 (K, V) x 2 B


def _compare(spec=SPEC, **kw):
    return compare_rag("llama-3.1-8b", "h100-sxm", spec, gen_len=256, **kw)


def test_the_prompt_is_recent_tokens_plus_retrieved_chunks():
    c = _compare()
    wm = c.working_memory
    assert wm is not None and [a.name for a in c.approaches] == [
        "long context",
        "RAG",
        "working + long-term memory",
    ]
    assert wm.prompt_tokens == 8192 + 8 * 512 + 64
    assert c.rag.prompt_tokens == 8 * 512 + 64
    assert c.long_context.prompt_tokens == 1_000_000 + 64


def test_a_window_caps_the_cache_at_its_keys():
    """8,192-key window: the batch-1 cache holds 8,192 tokens however long the prompt
    (12,352 + 256 generated), 8,192 x 131,072 B; RAG's unwindowed cache holds all
    4,160 + 256 tokens."""
    c = _compare()
    assert c.working_memory.kv_cache_bytes == 8192 * KV_PER_TOKEN
    assert c.rag.kv_cache_bytes == (4160 + 256) * KV_PER_TOKEN
    plain = _compare({**SPEC, "working_memory": {"recent_tokens": 8192}})
    assert plain.working_memory.kv_cache_bytes == (12_352 + 256) * KV_PER_TOKEN


def test_only_the_older_part_is_indexed():
    """(1,000,000 - 8,192) / 512 -> 1,938 chunks of older history against RAG's 1,954: a
    smaller index; a corpus no longer than the recent part needs no retrieval at all."""
    c = _compare()
    wm, rag = c.working_memory, c.rag
    assert 0 < wm.search_device_bytes < rag.search_device_bytes
    small = _compare(corpus_tokens=np.array([4000.0, 8192.0, 8193.0]))
    wm = small.working_memory
    assert list(wm.search_s[:2]) == [0.0, 0.0] and wm.search_s[2] > 0
    assert list(wm.prompt_tokens) == [4000 + 64, 8192 + 64, 8192 + 1 * 512 + 64]
    # with nothing to retrieve it is the long-context prompt, priced by the windowed model
    assert wm.prompt_tokens[0] == small.long_context.prompt_tokens[0]


def test_it_fits_where_the_whole_history_does_not():
    c = _compare()
    assert not c.long_context.fits and c.rag.fits and c.working_memory.fits
    assert c.rag.ttft_s < c.working_memory.ttft_s < c.long_context.ttft_s
    assert c.working_memory.cost_per_query_usd < c.long_context.cost_per_query_usd


def test_cli_example_prints_three_columns_json_and_plot(tmp_path):
    runner = CliRunner()
    out = runner.invoke(app, ["rag", str(EXAMPLE), "--json"])
    assert out.exit_code == 0, out.output
    data = json.loads(out.output)
    assert data["working_memory"]["name"] == "working + long-term memory"
    assert data["working_memory_estimate"]["config"]["model"].endswith("window=8192]")
    plot = tmp_path / "wm.png"
    out = runner.invoke(app, ["rag", str(EXAMPLE), "--plot", str(plot)])
    assert out.exit_code == 0, out.output
    assert "recent + retrieved" in out.output
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    again = runner.invoke(app, ["rag", str(EXAMPLE), "--plot", str(plot)])
    assert again.exit_code == 2  # nothing the user wrote is overwritten without --force


def test_cli_flags_add_the_approach():
    out = CliRunner().invoke(
        app,
        [
            "rag",
            "--model",
            "llama-3.1-8b",
            "--hardware",
            "h100-sxm",
            "--corpus-tokens",
            "200k",
            "--recent-tokens",
            "16k",
            "--json",
        ],
    )
    assert out.exit_code == 0, out.output
    wm = json.loads(out.output)["working_memory"]
    assert wm["prompt_tokens"] == 16_000 + 8 * 512 + 64


@pytest.mark.parametrize("bad", [{"recent_tokens": 0}, {"window": -1}, {"recnt_tokens": 5}])
def test_bad_working_memory_fields_are_refused(bad):
    from hwsim.errors import ProfileError

    with pytest.raises(ProfileError, match="working_memory"):
        _compare({**SPEC, "working_memory": bad})
