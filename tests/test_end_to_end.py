"""The end-to-end reference decoder (validation/end_to_end.py) on the CPU, tiny shapes."""

import csv

import pytest

torch = pytest.importorskip("torch")

from validation import end_to_end as e2e  # noqa: E402

TINY = e2e.Shapes(layers=2, d=64, heads=4, kv_heads=2, head_dim=16, ffn=96, vocab=101)


def test_kv_cache_decode_matches_a_longer_prefill():
    """Prefill S tokens then decode token S+1 from the cache == prefill of all S+1 tokens."""
    model = e2e.Decoder(TINY, max_context=32, device="cpu", dtype=torch.float32)
    tokens = torch.randint(0, TINY.vocab, (3, 9), generator=torch.Generator().manual_seed(0))
    model.allocate_cache(3, 9)
    with torch.inference_mode():
        full = model.forward(tokens, 0)
        model.allocate_cache(3, 9)
        model.forward(tokens[:, :8], 0)
        step = model.forward(tokens[:, 8:], 8)
    assert torch.allclose(full, step, rtol=1e-4, atol=1e-5)
    assert full.shape == (3, TINY.vocab)


def test_gqa_shares_kv_heads():
    """With 2 query heads per KV head, a decoder built with kv_heads == heads differs."""
    a = e2e.Decoder(TINY, max_context=8, device="cpu", dtype=torch.float32)
    assert a.layers[0]["wqkv"].shape == ((4 + 2 * 2) * 16, 64)


def test_main_writes_rows_for_every_shape(tmp_path, monkeypatch):
    monkeypatch.setattr(e2e, "shapes_of", lambda model, layers: TINY)
    monkeypatch.setattr(e2e, "PREFILL", ((1, 16), (2, 8)))
    monkeypatch.setattr(e2e, "DECODE", ((2, 16), (1, 64)))
    assert e2e.main(["--out", str(tmp_path), "--warmup", "1", "--repeats", "3"]) == 0
    rows = list(csv.DictReader((tmp_path / "end_to_end.csv").open()))
    assert [(r["phase"], r["batch"], r["context"]) for r in rows] == [
        ("prefill", "1", "16"),
        ("prefill", "2", "8"),
        ("decode", "2", "16"),
        ("decode", "1", "64"),
    ]
    assert all(float(r["p10_s"]) <= float(r["median_s"]) <= float(r["p90_s"]) for r in rows)
    assert (tmp_path / "end_to_end.json").exists()


def test_non_dense_models_are_refused():
    with pytest.raises(SystemExit, match="dense gated attention"):
        e2e.shapes_of("mixtral-8x7b", None)
