"""Serving metrics on hand-built records and traces, where the answers are known."""

import math

import numpy as np
import pytest
from pydantic import ValidationError

from hwsim.serving import (
    IterationTrace,
    RequestRecords,
    Requests,
    SchedulerConfig,
    Slo,
    littles_law_check,
    simulate,
    summarize,
)
from hwsim.serving.metrics import kv_utilisation, latency_stats, meets_slo, slo_attainment

try:
    from serving_support import LinearStepTimeModel
except ImportError:  # tests/ imported as a package
    from tests.serving_support import LinearStepTimeModel


def records(arrival, first, finish, output, status=None) -> RequestRecords:
    n = len(arrival)
    arrival = np.asarray(arrival, dtype=float)
    return RequestRecords(
        arrival_s=arrival,
        admitted_s=arrival.copy(),
        first_token_s=np.asarray(first, dtype=float),
        finish_s=np.asarray(finish, dtype=float),
        prompt_tokens=np.full(n, 10),
        output_tokens=np.asarray(output),
        cached_prefix_tokens=np.zeros(n, dtype=int),
        preemptions=np.zeros(n, dtype=int),
        status=np.asarray(status or ["completed"] * n),
    )


def test_latency_stats_ignore_nan_and_handle_empty():
    s = latency_stats(np.array([1.0, np.nan, 3.0, 2.0]))
    assert s.count == 3 and s.mean_s == 2.0 and s.p50_s == 2.0
    assert s.p99_s == pytest.approx(np.percentile([1.0, 2.0, 3.0], 99))
    empty = latency_stats(np.array([np.nan]))
    assert empty.count == 0 and math.isnan(empty.p95_s)


def test_tpot_is_per_request_and_undefined_for_one_token():
    rec = records([0.0, 0.0], [1.0, 2.0], [3.0, 2.0], [5, 1])
    np.testing.assert_array_equal(rec.tpot_s, [0.5, np.nan])
    np.testing.assert_array_equal(rec.ttft_s, [1.0, 2.0])
    np.testing.assert_array_equal(rec.e2e_s, [3.0, 2.0])


def test_goodput_counts_requests_meeting_every_threshold():
    rec = records(
        arrival=[0.0, 0.0, 0.0, 0.0, 0.0],
        first=[0.1, 0.5, 0.1, 0.1, np.nan],
        finish=[1.1, 1.5, 3.1, 0.1, np.nan],
        output=[11, 11, 11, 1, 5],
        status=["completed"] * 4 + ["rejected_kv_capacity"],
    )
    # tpot: 0.1, 0.1, 0.3, undefined (met), rejected (never met)
    slo = Slo(ttft_s="200 ms", tpot_s=0.2)
    np.testing.assert_array_equal(meets_slo(rec, slo), [True, False, False, True, False])
    assert meets_slo(rec, Slo(e2e_s=2.0)).tolist() == [True, True, False, True, False]
    with pytest.raises(ValidationError, match="at least one"):
        Slo()


def test_slo_attainment_is_the_joint_per_request_fraction():
    # DistServe's attainment, by hand: per request TTFT = first - arrival and mean TPOT =
    # (finish - first) / (output - 1); a request counts when both hold, a miss otherwise
    rec = records(
        arrival=[0.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0],
        first=[0.125, 1.5, 2.125, 3.5, 4.25, 5.0625, np.nan, 7.1875],
        finish=[1.375, 2.75, 4.625, 6.0, 4.25, 5.0625, np.nan, 8.4375],
        output=[11, 11, 11, 11, 1, 1, 5, 11],
        status=["completed"] * 6 + ["not_served_overload", "completed"],
    )
    # (binary fractions, so the comparisons at the thresholds are exact)
    # TTFT: 1/8, 1/2, 1/8, 1/2, 1/4, 1/16, -, 3/16; TPOT: 1/8, 1/8, 1/4, 1/4, -, -, -, 1/8
    slo = Slo(ttft_s=0.25, tpot_s=0.125)
    met = [True, False, False, False, True, True, False, True]  # 4 of 8, jointly
    assert meets_slo(rec, slo).tolist() == met
    assert slo_attainment(rec, slo) == 0.5
    # each SLO on its own passes more requests than both together
    assert slo_attainment(rec, Slo(ttft_s=0.25)) == 5 / 8
    assert slo_attainment(rec, Slo(tpot_s=0.125)) == 5 / 8
    assert slo_attainment(rec, Slo(ttft_s=1.0, tpot_s=1.0)) == 7 / 8  # the unserved one misses
    assert math.isnan(slo_attainment(records([], [], [], []), slo))


def test_kv_utilisation_is_time_weighted_with_idle_gaps_as_zero():
    trace = IterationTrace(
        start_s=np.array([0.0, 1.0, 4.0]),
        duration_s=np.array([1.0, 1.0, 2.0]),
        kv_blocks_used=np.array([10, 20, 5]),
        num_seqs=np.ones(3, dtype=int),
        num_tokens=np.ones(3, dtype=int),
        num_waiting=np.zeros(3, dtype=int),
        kv_blocks_total=20,
    )
    kv = kv_utilisation(trace, 0.0, 6.0, n_points=3)  # bins [0,2], [2,4], [4,6]
    assert kv.mean_fraction == pytest.approx((10 + 20 + 10) / 6 / 20)
    assert kv.peak_fraction == 1.0
    np.testing.assert_allclose(kv.series_fraction, [0.75, 0.0, 0.25])
    np.testing.assert_allclose(kv.series_time_s, [1.0, 3.0, 5.0])


def test_littles_law_on_a_deterministic_queue():
    arrival = np.arange(100.0)  # one per second, each stays 0.5 s
    rec = records(arrival, arrival + 0.1, arrival + 0.5, np.full(100, 3))
    check = littles_law_check(rec, window_s=(0.0, 100.0))
    assert check.mean_in_system == pytest.approx(0.5)
    assert check.arrival_rate_per_s == pytest.approx(1.0)
    assert check.mean_time_in_system_s == pytest.approx(0.5)
    assert check.relative_error == pytest.approx(0.0, abs=1e-12)


def test_summary_of_a_simulation():
    model = LinearStepTimeModel(fixed_s=0.01, per_new_token_s=1e-4, per_context_token_s=0.0)
    req = Requests.from_arrays([0.0, 100.0, 200.0], [100, 100, 20_000], [11, 11, 5])
    res = simulate(req, model, SchedulerConfig(kv_capacity_tokens=4096, max_num_seqs=8))
    s = summarize(res, Slo(ttft_s=0.05), n_series_points=10)
    assert (s.n_requests, s.n_completed) == (3, 2)
    assert s.rejected == {"rejected_kv_capacity": 1}
    assert s.ttft.count == 2 and s.ttft.mean_s == pytest.approx(0.02)
    assert s.tpot.mean_s == pytest.approx(0.0101)
    assert s.duration_s == pytest.approx(100.0 + 0.02 + 10 * 0.0101)
    assert s.output_tokens_per_s == pytest.approx(22 / s.duration_s)
    assert s.goodput.n_met == 2 and s.goodput.fraction == pytest.approx(2 / 3)
    assert len(s.kv.series_fraction) == 10 and s.kv.peak_fraction > 0
    assert s.preemptions == 0
    assert s.model_dump()["ttft"]["p99_s"] == pytest.approx(0.02)
