"""Array arguments of hwsim.estimate broadcast like numpy and agree with scalar calls."""

import numpy as np
import pytest

import hwsim
from hwsim.errors import InfeasibleError

MODEL, HW = "llama-2-7b", "a100-80gb-sxm"


def scalar(batch, prompt, gen):
    est = hwsim.estimate(MODEL, HW, batch=batch, prompt_len=prompt, gen_len=gen)
    return est.latency.ttft_s, est.latency.tpot_s


@pytest.mark.parametrize("n", [1, 3, 4, 5])  # 4 = the engine's decode-sample count
def test_a_1d_batch_equals_scalar_calls(n):
    """Regression: a length-4 batch used to broadcast against the decode-sample axis."""
    batch = np.array([1, 8, 64, 128, 3][:n])
    est = hwsim.estimate(MODEL, HW, batch=batch, prompt_len=700, gen_len=90)
    for i, b in enumerate(batch):
        ttft, tpot = scalar(int(b), 700, 90)
        assert est.latency.ttft_s[i] == pytest.approx(ttft, rel=1e-12)
        assert est.latency.tpot_s[i] == pytest.approx(tpot, rel=1e-12)


@pytest.mark.parametrize(
    ("batch_shape", "prompt_shape"),
    [((3,), (3,)), ((3, 1), (1, 4)), ((1, 4), (3, 1)), ((3, 1), (4,)), ((4,), (3, 1))],
)
def test_grids_equal_scalar_calls(batch_shape, prompt_shape):
    rng = np.random.default_rng(0)
    batch = rng.integers(1, 65, size=batch_shape)
    prompt = rng.integers(16, 4000, size=prompt_shape)
    gen = 64
    est = hwsim.estimate(MODEL, HW, batch=batch, prompt_len=prompt, gen_len=gen)
    b, p = np.broadcast_arrays(batch, prompt)
    assert est.latency.tpot_s.shape == b.shape
    for idx in np.ndindex(b.shape):
        ttft, tpot = scalar(int(b[idx]), int(p[idx]), gen)
        assert est.latency.ttft_s[idx] == pytest.approx(ttft, rel=1e-12)
        assert est.latency.tpot_s[idx] == pytest.approx(tpot, rel=1e-12)


def test_shapes_that_do_not_broadcast_are_named():
    with pytest.raises(InfeasibleError, match=r"batch \(3,\), prompt_len \(2,\)"):
        hwsim.estimate(MODEL, HW, batch=np.array([1, 2, 3]), prompt_len=np.array([10, 20]))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"batch": 2.5}, "batch must be whole numbers"),
        ({"prompt_len": np.array([10, 10.5])}, "prompt_len must be whole numbers"),
        ({"gen_len": float("nan")}, "gen_len must be finite"),
        ({"batch": float("inf")}, "batch must be finite"),
        ({"batch": np.array([])}, "batch is an empty array"),
        ({"batch": "eight"}, "batch must be a number"),
    ],
)
def test_bad_lengths_are_refused(kwargs, message):
    with pytest.raises(InfeasibleError, match=message):
        hwsim.estimate(MODEL, HW, **kwargs)


def test_a_chunked_sweep_equals_the_one_pass_sweep(monkeypatch):
    """Large sweeps are priced in chunks to keep memory per point flat; the numbers must be
    exactly those of one pass."""
    from hwsim.inference import estimate as estimate_module

    rng = np.random.default_rng(3)
    batch = rng.integers(1, 257, (35, 100))
    prompt = rng.integers(16, 32_768, (35, 100))
    gen = rng.integers(1, 4_096, (1, 100))
    whole = hwsim.estimate(MODEL, HW, batch=batch, prompt_len=prompt, gen_len=gen)
    monkeypatch.setattr(estimate_module, "CHUNK_POINTS", 1_000)  # 3,500 points: 4 chunks
    chunked = hwsim.estimate(MODEL, HW, batch=batch, prompt_len=prompt, gen_len=gen)
    for section in ("latency", "memory", "capacity", "prefill", "decode", "throughput"):
        a, b = getattr(whole, section), getattr(chunked, section)
        for key in type(a).model_fields:
            if getattr(a, key) is None:
                assert getattr(b, key) is None
                continue
            x = np.broadcast_to(getattr(a, key), (35, 100))
            y = np.broadcast_to(getattr(b, key), (35, 100))
            np.testing.assert_array_equal(x, y, err_msg=f"{section}.{key}")
