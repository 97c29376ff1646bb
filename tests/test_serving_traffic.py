"""Traffic model: length distributions, arrival processes, sessions, trace and histogram files."""

import math

import numpy as np
import pytest
from pydantic import ValidationError

from hwsim.errors import HwsimError, ProfileError
from hwsim.serving import (
    DailyRate,
    Lognormal,
    Requests,
    TraceArrivals,
    TrafficSpec,
    Uniform,
    lognormal_params,
    sample_requests,
)
from hwsim.serving.distributions import Z95


def poisson_spec(rate=10.0, prompt=None, output=None, **extra) -> TrafficSpec:
    return TrafficSpec.model_validate(
        {
            "arrivals": {"kind": "poisson", "rate": {"kind": "constant", "rate_per_s": rate}},
            "prompt_tokens": prompt or {"kind": "lognormal", "mean": 800, "p95": 2400},
            "output_tokens": output or {"kind": "uniform", "low": 10, "high": 300},
            **extra,
        }
    )


# --- length distributions -----------------------------------------------------------------
@pytest.mark.parametrize(("mean", "p95"), [(1000.0, 3000.0), (200.0, 260.0), (50.0, 150.0)])
def test_lognormal_closed_form_reproduces_mean_and_p95(mean, p95):
    mu, sigma = lognormal_params(mean, p95)
    assert math.exp(mu + sigma**2 / 2) == pytest.approx(mean, rel=1e-12)
    assert math.exp(mu + Z95 * sigma) == pytest.approx(p95, rel=1e-12)


@pytest.mark.parametrize(("mean", "p95"), [(1000.0, 3000.0), (200.0, 260.0), (50.0, 150.0)])
def test_lognormal_sampler_matches_spec_within_two_percent(mean, p95):
    x = Lognormal(mean=mean, p95=p95).sample(400_000, np.random.default_rng(3))
    assert x.dtype == np.int64 and x.min() >= 1
    assert x.mean() == pytest.approx(mean, rel=0.02)
    assert np.percentile(x, 95) == pytest.approx(p95, rel=0.02)


@pytest.mark.parametrize("p95", [900.0, 1000.0, 4000.0])
def test_lognormal_rejects_impossible_p95(p95):
    with pytest.raises(ValidationError, match="p95"):
        Lognormal(mean=1000.0, p95=p95)


def test_lognormal_max_value_clips():
    x = Lognormal(mean=1000.0, p95=3000.0, max_value=2000).sample(10_000, np.random.default_rng(0))
    assert x.max() == 2000


def test_uniform_is_inclusive_and_validated():
    x = Uniform(low=3, high=5).sample(10_000, np.random.default_rng(0))
    assert set(np.unique(x).tolist()) == {3, 4, 5}
    with pytest.raises(ValidationError, match="high"):
        Uniform(low=5, high=3)


def test_bare_integer_means_fixed_length():
    r = sample_requests(poisson_spec(prompt=100, output=7), 50, seed=0)
    assert set(r.prompt_tokens.tolist()) == {100} and set(r.output_tokens.tolist()) == {7}


def test_empirical_histogram_frequencies(tmp_path):
    path = tmp_path / "hist.csv"
    path.write_text("value,weight\n10,1\n100,3\n1000,0\n")
    spec = poisson_spec(prompt={"kind": "empirical", "file": str(path)})
    assert spec.prompt_tokens.mean == pytest.approx(77.5)
    x = sample_requests(spec, 40_000, seed=1).prompt_tokens
    assert set(np.unique(x).tolist()) == {10, 100}
    assert np.mean(x == 100) == pytest.approx(0.75, abs=0.01)


def test_bad_histogram_names_file_line_and_column(tmp_path):
    path = tmp_path / "hist.csv"
    path.write_text("value,weight\n10,1\n12.5,3\n")
    with pytest.raises(ProfileError) as info:
        poisson_spec(prompt={"kind": "empirical", "file": str(path)})
    msg = str(info.value)
    assert str(path) in msg and "line 3" in msg and "column 1 'value'" in msg


# --- traces ------------------------------------------------------------------------------
def test_trace_is_read_sorted_and_used_whole(tmp_path):
    path = tmp_path / "trace.csv"
    path.write_text("arrival_s,prompt_tokens,output_tokens\n2.0,10,5\n0.5,20,6\n\n1.0,30,7\n")
    spec = TrafficSpec.model_validate({"arrivals": {"kind": "trace", "file": str(path)}})
    r = sample_requests(spec)
    assert r.arrival_s.tolist() == [0.5, 1.0, 2.0]
    assert r.prompt_tokens.tolist() == [20, 30, 10]
    assert r.output_tokens.tolist() == [6, 7, 5]
    assert len(sample_requests(spec, 2)) == 2
    with pytest.raises(HwsimError, match="trace has 3"):
        sample_requests(spec, 4)


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ("0.0,10,5\n1.0,abc,5\n", ["line 3", "column 2 'prompt_tokens'", "'abc'"]),
        ("0.0,10,5\n1.0,10,0\n", ["line 3", "column 3 'output_tokens'", "integer >= 1"]),
        ("-1.0,10,5\n", ["line 2", "column 1 'arrival_s'", ">= 0"]),
        ("0.0,10\n", ["line 2", "2 cells, expected 3"]),
    ],
)
def test_bad_trace_names_file_line_and_column(tmp_path, body, expected):
    path = tmp_path / "bad_trace.csv"
    path.write_text("arrival_s,prompt_tokens,output_tokens\n" + body)
    with pytest.raises(ProfileError) as info:
        TrafficSpec.model_validate({"arrivals": {"kind": "trace", "file": str(path)}})
    msg = str(info.value)
    assert str(path) in msg
    for part in expected:
        assert part in msg


def test_trace_header_and_missing_file_errors(tmp_path):
    path = tmp_path / "hdr.csv"
    path.write_text("time,prompt_tokens,output_tokens\n0,1,1\n")
    with pytest.raises(ProfileError, match="line 1: header"):
        TraceArrivals(file=str(path))
    with pytest.raises(ProfileError, match="file not found"):
        TraceArrivals(file=str(tmp_path / "missing.csv"))


def test_trace_forbids_length_distributions(tmp_path):
    path = tmp_path / "trace.csv"
    path.write_text("arrival_s,prompt_tokens,output_tokens\n0,1,1\n")
    with pytest.raises(ValidationError, match="whole requests"):
        TrafficSpec.model_validate(
            {"arrivals": {"kind": "trace", "file": str(path)}, "prompt_tokens": 5}
        )


# --- arrival processes -------------------------------------------------------------------
def test_poisson_interarrivals_are_exponential_at_the_rate():
    r = sample_requests(poisson_spec(rate=25.0), 200_000, seed=5)
    gaps = np.diff(r.arrival_s)
    assert gaps.mean() == pytest.approx(1 / 25.0, rel=0.01)
    assert gaps.std() / gaps.mean() == pytest.approx(1.0, abs=0.01)  # exponential: CV = 1


def test_daily_profile_hourly_counts_follow_the_rates():
    rate = {"kind": "daily", "peak_rate_per_s": 2.0, "peak_hour": 15, "start_hour": 6}
    spec = poisson_spec()
    spec = TrafficSpec.model_validate(
        {**spec.model_dump(), "arrivals": {"kind": "poisson", "rate": rate}}
    )
    assert spec.peak_rate_per_s == 2.0
    r = sample_requests(spec, 400_000, seed=2)
    whole_days = int(r.arrival_s[-1] // 86400)
    t = r.arrival_s[r.arrival_s < whole_days * 86400]
    observed = np.bincount(((t // 3600).astype(int) + 6) % 24, minlength=24) / (whole_days * 3600)
    expected = spec.arrivals.rate.hourly_rates_per_s
    assert expected.argmax() == 15 and expected.max() == 2.0
    np.testing.assert_allclose(observed, expected, rtol=0.05)


def test_daily_profile_needs_exactly_one_shape():
    with pytest.raises(ValidationError, match="exactly one"):
        DailyRate(peak_rate_per_s=1.0)
    with pytest.raises(ValidationError, match="24 values"):
        DailyRate(peak_rate_per_s=1.0, hourly_multipliers=[1.0] * 23)
    d = DailyRate.model_validate({"peak_rate_per_s": 4.0, "hourly_multipliers": [1.0] * 23 + [2.0]})
    assert d.hourly_rates_per_s[-1] == 4.0 and d.hourly_rates_per_s[0] == 2.0


def test_at_rate_gives_constant_rate():
    spec = poisson_spec(rate=3.0).at_rate(7.5)
    assert spec.peak_rate_per_s == 7.5


# --- sessions ----------------------------------------------------------------------------
def session_spec(prefix_caching: bool) -> TrafficSpec:
    return poisson_spec(
        rate=5.0,
        sessions={
            "turns": {"kind": "uniform", "low": 1, "high": 6},
            "think_time_s": "20 s",
            "prefix_caching": prefix_caching,
        },
    )


def test_sessions_resend_history_and_report_it_as_cached():
    r = sample_requests(session_spec(prefix_caching=True), 20_000, seed=4)
    assert np.all(np.diff(r.arrival_s) >= 0)
    turns_seen = 0
    for sid in np.unique(r.session_id)[:500]:
        idx = np.flatnonzero(r.session_id == sid)
        p, o, c = r.prompt_tokens[idx], r.output_tokens[idx], r.cached_prefix_tokens[idx]
        assert c[0] == 0
        np.testing.assert_array_equal(c[1:], p[:-1] + o[:-1])  # history = previous prompt + answer
        assert np.all(p > c)  # each turn adds a new prompt of >= 1 token
        turns_seen += len(idx)
    assert turns_seen > 500  # sessions really have several turns


def test_sessions_without_prefix_caching_report_nothing_cached():
    r = sample_requests(session_spec(prefix_caching=False), 2_000, seed=4)
    assert not r.cached_prefix_tokens.any()
    assert len(np.unique(r.session_id)) < len(r)


def test_session_request_rate_is_the_spec_rate_in_steady_state():
    r = sample_requests(session_spec(prefix_caching=False), 60_000, seed=8)
    t = r.arrival_s
    window = (t > 500) & (t < t[-1] - 500)  # skip the ramp-up and the truncated tail
    assert window.sum() / (t[-1] - 1000) == pytest.approx(5.0, rel=0.03)


# --- determinism and validation ----------------------------------------------------------
@pytest.mark.parametrize("sessions", [False, True])
def test_same_seed_same_requests_different_seed_different(sessions):
    spec = session_spec(True) if sessions else poisson_spec()
    a, b, c = (sample_requests(spec, 3_000, seed=s) for s in (11, 11, 12))
    for name in (
        "arrival_s",
        "prompt_tokens",
        "output_tokens",
        "session_id",
        "cached_prefix_tokens",
    ):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name))
    assert not np.array_equal(a.arrival_s, c.arrival_s)
    assert not np.array_equal(a.prompt_tokens, c.prompt_tokens)


def test_specs_are_strict_and_frozen():
    with pytest.raises(ValidationError, match="valid number"):
        poisson_spec(rate="10")  # strict: no str -> float coercion
    with pytest.raises(ValidationError, match="Extra inputs"):
        poisson_spec(burstiness=2)
    spec = poisson_spec()
    with pytest.raises(ValidationError):
        spec.prompt_tokens = None


def test_think_time_accepts_units():
    spec = poisson_spec(sessions={"turns": 2, "think_time_s": "1500 ms"})
    assert spec.sessions.think_time_s == 1.5
    with pytest.raises(ValidationError, match="unit"):
        poisson_spec(sessions={"turns": 2, "think_time_s": "3 parsecs"})


def test_requests_validate_their_arrays():
    with pytest.raises(HwsimError, match="non-decreasing"):
        Requests.from_arrays([1.0, 0.5], [1, 1], [1, 1])
    with pytest.raises(HwsimError, match="cached_prefix_tokens"):
        Requests.from_arrays([0.0], [5], [1], cached_prefix_tokens=[5])
    with pytest.raises(HwsimError, match=">= 1"):
        Requests.from_arrays([0.0], [0], [1])
    r = Requests.from_arrays([0.0], [5], [1])
    assert not r.arrival_s.flags.writeable
