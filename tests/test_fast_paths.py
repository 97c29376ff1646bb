"""The shortcuts the scalar and sweep paths take give the answers the plain computation gives.

Each fast path (scalar length checks, per-shape phase sums, lazily built op rows and decode
op averages, label arrays sized by the labels used, closed-form max context per free-bytes
value) is checked against a brute-force or unoptimised computation of the same quantity.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import hwsim
from hwsim.inference import capacity
from hwsim.inference.deployment import make_deployment
from hwsim.inference.engine import decode_contexts, decode_step_cost, make_forward, mean_decode_cost
from hwsim.inference.estimate import _check_lengths, estimate_deployment
from hwsim.inference.results import Estimate
from hwsim.labels import label_array
from hwsim.perf.roofline import roofline_floor_s


@given(st.lists(st.integers(0, 3), min_size=1, max_size=50))
def test_label_array_is_names_indexed_and_no_wider_than_the_longest_used(index):
    names = ("memory", "memory (not even one sequence fits)", "tpot_slo", "x")
    out = label_array(np.asarray(index), names)
    assert out.tolist() == [names[i] for i in index]
    assert out.dtype.itemsize == 4 * max(len(names[i]) for i in set(index))


def test_scalar_length_fast_path_matches_the_array_checks():
    fast = _check_lengths(8, 2000, 200.0)
    slow = _check_lengths(np.int64(8), np.asarray(2000), np.float32(200))
    for a, b in zip(fast, slow):
        assert a.shape == b.shape == () and float(a) == float(b)
    for bad in (0, -3, 2.5, float("inf"), float("nan")):
        with pytest.raises(hwsim.InfeasibleError):
            _check_lengths(bad, 2000, 200)


def test_scalar_and_one_element_sweep_agree_and_scalars_are_plain_python():
    est = hwsim.estimate("llama-3.1-8b", "h100-sxm", batch=8, prompt_len=2000, gen_len=200)
    sweep = hwsim.estimate("llama-3.1-8b", "h100-sxm", batch=[8], prompt_len=2000, gen_len=200)
    flat, flat_sweep = est.flat(), sweep.flat()
    for key, value in flat.items():
        other = flat_sweep[key]
        if isinstance(other, np.ndarray) and other.shape == (1,):
            other = other[0]
            assert isinstance(value, (float, int, bool, str)), key  # no numpy types
        if isinstance(value, float):
            assert value == pytest.approx(float(other), rel=1e-12), key
        elif not isinstance(value, dict | list):
            assert value == other, key
    # the unvalidated scalar result is still a valid Estimate
    again = Estimate.model_validate(est.model_dump(exclude={"prefill_ops", "decode_ops"}))
    assert again.latency.tpot_s == est.latency.tpot_s


def test_op_rows_are_built_on_first_read_and_sum_to_the_phase_times():
    est = hwsim.estimate("mixtral-8x7b", "h100-sxm", batch=4, prompt_len=1000, gen_len=100, tp=2)
    assert "prefill_ops" not in est.__dict__  # nothing built yet
    assert sum(r.time_s for r in est.prefill_ops) == pytest.approx(est.prefill.time_s, rel=1e-9)
    assert sum(r.time_s for r in est.decode_ops) == pytest.approx(est.latency.tpot_s, rel=1e-9)
    dumped = est.model_dump()
    assert len(dumped["decode_ops"]) == len(est.decode_ops) > 0


@pytest.mark.parametrize("hardware", ["h100-sxm", "h100-sxm-calibrated"])
def test_phase_sums_equal_the_op_by_op_sums_over_a_decode_sample_axis(hardware):
    dep = make_deployment("llama-3.1-8b", hardware, tp=2)
    b = np.array([1.0, 7.0, 64.0])
    ctx = decode_contexts(np.array([100.0, 5000.0, 30000.0]), np.array([10.0, 300.0, 2.0]))
    cost = decode_step_cost(dep, b, ctx)
    brute = np.zeros(ctx.shape)
    for t in cost.op_times:
        brute = brute + t.total_s
    assert cost.time_s.shape == ctx.shape
    np.testing.assert_allclose(cost.time_s, brute, rtol=1e-12)
    comm = sum(t.total_s for t in cost.op_times if t.op.op_class == "communication")
    np.testing.assert_allclose(cost.time_by_bound_s[2], np.broadcast_to(comm, ctx.shape))
    if cost.band_s is not None:  # (a decode band may sit wholly above the point: hwsim's
        # datasheet TPOT is faster than every published one, issue 15's transfer band)
        assert np.all(cost.band_s[1] >= cost.band_s[0])
        assert np.all(cost.band_s[1] >= cost.time_s * (1 - 1e-12))
        floor = sum(roofline_floor_s(dep.hardware, t.op) * t.op.count for t in cost.op_times)
        assert np.all(cost.band_s[0] >= floor * (1 - 1e-12))


def test_lazy_decode_op_averages_match_the_phase_mean():
    dep = make_deployment("llama-3.1-8b", "h100-sxm")
    b, s, g = np.array([2.0, 32.0]), np.array([512.0, 8000.0]), np.array([64.0, 1000.0])
    cost = mean_decode_cost(dep, b, s, g)
    per_op = sum(t.total_s for t in cost.op_times)
    np.testing.assert_allclose(per_op, cost.time_s, rtol=1e-12)


def test_sweep_labels_are_as_narrow_as_the_labels_that_occur():
    dep = make_deployment("llama-3.1-8b", "h100-sxm")
    n = 300_000  # more than one chunk
    rng = np.random.default_rng(3)
    est = estimate_deployment(dep, rng.integers(1, 9, n), rng.integers(16, 4000, n), 64)
    binding = est.capacity.binding_constraint
    assert set(np.unique(binding)) == {"memory"}
    assert binding.dtype.itemsize == 4 * len("memory")
    assert est.prefill.bound.dtype.itemsize <= 4 * len("compute")
    # with an SLO some rows bind on it: the array widens to hold the longer label
    tight = estimate_deployment(dep, rng.integers(1, 400, n), 2000, 64, tpot_slo_s=0.012)
    labels = set(np.unique(tight.capacity.binding_constraint))
    assert "tpot_slo" in labels
    assert all(label in capacity.BINDING for label in labels)


def test_closed_form_max_context_per_free_bytes_matches_the_bisection():
    dep = make_deployment("llama-3.1-8b", "h100-sxm")
    free = np.array([0.0, 1.0, 131072.0 * 3 + 5, 2.5e10, 6.0e10])
    closed = capacity._max_context_per_free(dep, free)
    bisect = capacity._max_context_bisect(dep, 1.0, free)
    np.testing.assert_array_equal(closed, bisect)


@settings(max_examples=30, deadline=None)
@given(st.integers(1, 256), st.integers(1, 40_000), st.integers(1, 4_000))
def test_scalar_estimate_matches_a_sweep_point(batch, prompt, gen):
    dep = make_deployment("llama-3.1-8b", "h100-sxm-calibrated")
    one = estimate_deployment(dep, batch, prompt, gen)
    many = estimate_deployment(dep, np.array([batch, 1]), np.array([prompt, 16]), gen)
    assert one.latency.ttft_s == pytest.approx(many.latency.ttft_s[0], rel=1e-12)
    assert one.latency.tpot_s == pytest.approx(many.latency.tpot_s[0], rel=1e-12)
    assert one.latency.tpot_high_s == pytest.approx(many.latency.tpot_high_s[0], rel=1e-12)
    assert one.capacity.max_context_tokens == many.capacity.max_context_tokens[0]
    assert one.capacity.binding_constraint == many.capacity.binding_constraint[0]


@pytest.mark.parametrize(
    ("model", "hardware", "prompt", "gen"),
    [
        ("llama-2-7b", "a100-40gb-sxm", 2048, 128),
        ("llama-3.1-8b", "l4", 4096, 512),
        ("mixtral-8x7b", "h100-sxm", 16000, 1000),
    ],
)
def test_fits_and_max_batch_are_one_capacity_definition(model, hardware, prompt, gen):
    """Issue 17's fault: max_batch counted one prefill chunk's workspace and memory.fits the
    whole batch's, so a batch below max_batch could 'not fit'. Now fits <=> batch <= max_batch."""
    try:
        dep = make_deployment(model, hardware, tp=2 if model == "mixtral-8x7b" else 1)
    except hwsim.HwsimError as exc:  # pragma: no cover - weights do not fit this device
        pytest.skip(str(exc))
    one = estimate_deployment(dep, 1, prompt, gen)
    top = int(one.capacity.max_batch)
    assert top >= 1
    batch = np.unique(np.clip(np.array([1, top // 2, top - 1, top, top + 1, 2 * top]), 1, None))
    est = estimate_deployment(dep, batch, prompt, gen)
    np.testing.assert_array_equal(est.memory.fits, batch <= top)
    np.testing.assert_array_equal(est.capacity.max_batch, top)


def _as_one_element_arrays(op):
    """``op`` with every size field a 1-element array: what a sweep of one point prices."""
    from dataclasses import fields, replace

    sizes = {
        f.name: np.atleast_1d(np.asarray(getattr(op, f.name), dtype=float))
        for f in fields(op)
        if f.name.endswith(("_bytes", "flops")) and np.ndim(getattr(op, f.name)) == 0
    }
    return replace(op, **sizes)


@pytest.mark.parametrize(
    ("model", "hardware", "tp"),
    [
        ("llama-3.1-8b", "h100-sxm", 1),
        ("llama-3.1-8b", "h100-sxm-calibrated", 1),
        ("mixtral-8x7b", "h100-sxm", 2),
        ("llama-3.1-8b", "tpu-v6e", 1),
        ("qwen2.5-72b", "tpu-v6e", 8),  # intermediate 29,568: padded to the 256-wide MXU
    ],
)
@pytest.mark.parametrize("phase", ["prefill", "decode"])
def test_an_op_priced_in_python_floats_matches_the_same_op_priced_as_an_array(
    model, hardware, tp, phase
):
    """time_op, its band edges and the speed of light take a Python-float path for an op of
    a scalar call; it must give the array path's numbers (same operations, same order)."""
    from hwsim.inference.engine import make_forward
    from hwsim.model.graph import forward_ops
    from hwsim.perf.bands import band_edges_s
    from hwsim.perf.ladder import price_op
    from hwsim.perf.roofline import roofline_floor_s

    dep = make_deployment(model, hardware, tp=tp)
    hw = dep.hardware
    context = 3001.0 if phase == "prefill" else 5000.0
    new = 3001.0 if phase == "prefill" else 1.0
    ops = forward_ops(make_forward(dep, phase, 8.0, new, context), dep.pp)
    assert any(type(op.flops) is float for op in ops)  # the float path is exercised
    for op in ops:
        one, arr = price_op(hw, op), price_op(hw, _as_one_element_arrays(op))
        assert one.rung == arr.rung, op.name
        assert type(one.time_s) is not np.ndarray or op.op_class == "communication"
        for a, b in ((one.time_s, arr.time_s), (one.compute_s, arr.compute_s)):
            assert float(a) == pytest.approx(float(np.ravel(b)[0]), rel=1e-15), op.name
        assert int(one.bound) == int(np.ravel(arr.bound)[0]), op.name
        floor_one = float(roofline_floor_s(hw, op))
        assert floor_one == float(np.ravel(roofline_floor_s(hw, _as_one_element_arrays(op)))[0])
        if op.op_class != "communication" and hw.calibration is not None:
            lo, hi = band_edges_s(hw, one)
            lo_a, hi_a = band_edges_s(hw, arr)
            assert float(lo) == pytest.approx(float(np.ravel(lo_a)[0]), rel=1e-15), op.name
            assert float(hi) == pytest.approx(float(np.ravel(hi_a)[0]), rel=1e-15), op.name
            assert floor_one <= float(lo) <= float(one.time_s) <= float(hi)


BAND_KEYS = ("ttft_low_s", "ttft_high_s", "tpot_low_s", "tpot_high_s", "e2e_low_s", "e2e_high_s")


def test_a_sweep_prices_its_band_only_when_read_and_the_same_chunked_or_not(monkeypatch):
    """The p10-p90 band is computed on first read (a sweep reading point values never pays for
    it); read back, it is the band of each point priced alone, chunked or in one piece."""
    from hwsim.inference import engine, estimate

    calls = []
    original = engine.phase_band_s
    monkeypatch.setattr(engine, "phase_band_s", lambda *a: calls.append(1) or original(*a))
    dep = make_deployment("llama-3.1-8b", "h100-sxm-calibrated")
    b, s, g = (
        np.array([1, 8, 64, 3, 2]),
        np.array([16, 2000, 9000, 512, 7]),
        np.array([1, 0, 300, 5, 2]),
    )
    whole = estimate_deployment(dep, b, s, g)
    assert np.all(np.isfinite(whole.latency.tpot_s[g > 0])) and calls == []
    monkeypatch.setattr(estimate, "CHUNK_POINTS", 2)
    chunked = estimate_deployment(dep, b, s, g)
    assert calls == []
    for key in BAND_KEYS:
        one_by_one = [getattr(estimate_deployment(dep, *p).latency, key) for p in zip(b, s, g)]
        np.testing.assert_array_equal(getattr(whole.latency, key), np.array(one_by_one, float))
        np.testing.assert_array_equal(getattr(chunked.latency, key), getattr(whole.latency, key))
    assert calls and whole.latency.band == chunked.latency.band


@pytest.mark.parametrize(
    ("model", "hardware", "tp"),
    [("llama-3.1-8b", "h100-sxm-calibrated", 1), ("mixtral-8x7b", "h100-sxm", 2)],
)
def test_shared_context_free_ops_price_as_a_cold_build(monkeypatch, model, hardware, tp):
    """Scalar forwards that differ only in context share their context-free ops and those
    ops' prices (hwsim.model.graph._CONTEXT_FREE); each estimate equals the one built cold."""
    from hwsim.model import graph

    calls = [(8, 2001, 200), (8, 5003, 200), (8, 2001, 900), (3, 777, 1)]
    warm = [
        hwsim.estimate(model, hardware, batch=b, prompt_len=s, gen_len=g, tp=tp)
        for b, s, g in calls
    ]
    shared = graph._CONTEXT_FREE
    assert shared  # the scalar forwards were cached
    for (b, s, g), got in zip(calls, warm, strict=True):
        monkeypatch.setattr(graph, "_CONTEXT_FREE", {})
        cold = hwsim.estimate(model, hardware, batch=b, prompt_len=s, gen_len=g, tp=tp)
        assert got.flat() == cold.flat()
    dep = make_deployment(model, hardware, tp=tp)
    a = graph.forward_ops(make_forward(dep, "decode", 8.0, 1.0, 100.0), dep.pp)
    c = graph.forward_ops(make_forward(dep, "decode", 8.0, 1.0, 9000.0), dep.pp)
    shared_ops = [x is y for x, y in zip(a, c, strict=True)]
    assert any(shared_ops) and not all(shared_ops)  # the mixers' ops are built per context
    assert [x.name for x in a] == [y.name for y in c]
