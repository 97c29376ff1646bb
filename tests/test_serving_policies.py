"""Scheduling-policy registry: lookup errors, the policy/chunked_prefill rule, duplicate names,
and a policy registered here (outside hwsim) driving the simulator."""

import numpy as np
import pytest
from pydantic import ValidationError

from hwsim.errors import HwsimError
from hwsim.serving import Requests, SchedulerConfig, TrafficSpec, sample_requests, simulate
from hwsim.serving.policies import (
    POLICIES,
    ChunkedPrefillPolicy,
    SchedulingPolicy,
    UnchunkedPrefillFirstPolicy,
    policy_for,
    register_policy,
)

try:
    from serving_support import LinearStepTimeModel
except ImportError:  # tests/ imported as a package
    from tests.serving_support import LinearStepTimeModel

MODEL = LinearStepTimeModel()


@pytest.fixture
def scratch_registry():
    """Whatever a test registers is gone afterwards."""
    saved = dict(POLICIES)
    yield POLICIES
    POLICIES.clear()
    POLICIES.update(saved)


def requests(n=300, seed=0) -> Requests:
    spec = TrafficSpec.model_validate(
        {
            "arrivals": {"kind": "poisson", "rate": {"kind": "constant", "rate_per_s": 30.0}},
            "prompt_tokens": {"kind": "lognormal", "mean": 300, "p95": 900},
            "output_tokens": {"kind": "lognormal", "mean": 100, "p95": 300},
        }
    )
    return sample_requests(spec, n, seed=seed)


def assert_same_result(a, b):
    for name in ("admitted_s", "first_token_s", "finish_s", "preemptions", "status"):
        np.testing.assert_array_equal(getattr(a.records, name), getattr(b.records, name))
    for name in ("start_s", "duration_s", "kv_blocks_used", "num_seqs", "num_tokens"):
        np.testing.assert_array_equal(getattr(a.trace, name), getattr(b.trace, name))


# --- lookup -----------------------------------------------------------------------------
def test_builtin_policies_are_registered():
    assert policy_for("chunked") is ChunkedPrefillPolicy
    assert policy_for("unchunked") is UnchunkedPrefillFirstPolicy
    assert ChunkedPrefillPolicy.chunked_prefill and not UnchunkedPrefillFirstPolicy.chunked_prefill


def test_unknown_policy_name_lists_the_allowed_ones():
    with pytest.raises(HwsimError, match=r"unknown scheduling policy 'fifo'; allowed: chunked, "):
        policy_for("fifo")
    with pytest.raises(
        ValidationError, match=r"'fifo'; allowed: chunked, prefill_first, unchunked"
    ):
        SchedulerConfig(kv_capacity_tokens=10_000, policy="fifo")
    with pytest.raises(
        ValidationError, match=r"'fifo'; allowed: chunked, prefill_first, unchunked"
    ):
        SchedulerConfig.model_validate(
            {"kv_capacity_tokens": 10_000, "policy": "fifo", "chunked_prefill": False}
        )


# --- policy vs chunked_prefill ------------------------------------------------------------
def test_policy_name_defaults_from_chunked_prefill():
    assert SchedulerConfig(kv_capacity_tokens=10_000).policy_name == "chunked"
    cfg = SchedulerConfig(kv_capacity_tokens=10_000, chunked_prefill=False)
    assert cfg.policy is None and cfg.policy_name == "unchunked"


def test_an_explicit_policy_sets_chunked_prefill():
    cfg = SchedulerConfig(kv_capacity_tokens=10_000, policy="unchunked")
    assert cfg.policy_name == "unchunked" and cfg.chunked_prefill is False
    cfg = SchedulerConfig.model_validate({"kv_capacity_tokens": 10_000, "policy": "chunked"})
    assert cfg.policy_name == "chunked" and cfg.chunked_prefill is True
    # Agreeing is fine too.
    SchedulerConfig(kv_capacity_tokens=10_000, policy="unchunked", chunked_prefill=False)


def test_a_policy_contradicting_chunked_prefill_is_an_error():
    with pytest.raises(ValidationError, match="does not chunk prefills but chunked_prefill=True"):
        SchedulerConfig(kv_capacity_tokens=10_000, policy="unchunked", chunked_prefill=True)
    with pytest.raises(ValidationError, match="chunks prefills but chunked_prefill=False"):
        SchedulerConfig(kv_capacity_tokens=10_000, policy="chunked", chunked_prefill=False)


def test_budget_rule_follows_the_policy():
    # max_num_batched_tokens < max_num_seqs is only invalid when prefills are chunked.
    small = {"kv_capacity_tokens": 10_000, "max_num_seqs": 512, "max_num_batched_tokens": 256}
    SchedulerConfig(**small, policy="unchunked")
    with pytest.raises(ValidationError, match="max_num_seqs"):
        SchedulerConfig(**small, policy="chunked")


@pytest.mark.parametrize("chunked", [True, False])
def test_named_policy_runs_like_the_chunked_prefill_flag(chunked):
    req = requests()
    base = {"kv_capacity_tokens": 6_000, "max_num_seqs": 32, "max_num_batched_tokens": 1024}
    by_flag = SchedulerConfig(**base, chunked_prefill=chunked)
    by_name = SchedulerConfig(**base, policy="chunked" if chunked else "unchunked")
    a, b = simulate(req, MODEL, by_flag), simulate(req, MODEL, by_name)
    assert a.records.preemptions.sum() > 0  # the run exercises preemption too
    assert_same_result(a, b)


# --- registration -----------------------------------------------------------------------
def test_registry_refuses_a_duplicate_name(scratch_registry):
    class Another(SchedulingPolicy):
        name = "chunked"
        chunked_prefill = True

    with pytest.raises(RuntimeError, match="'chunked' registered twice"):
        register_policy(Another)
    assert policy_for("chunked") is ChunkedPrefillPolicy


def test_registry_refuses_a_class_without_its_own_name(scratch_registry):
    class Unnamed(ChunkedPrefillPolicy):  # inherits name "chunked": must set its own
        pass

    with pytest.raises(TypeError, match="must set its own `name`"):
        register_policy(Unnamed)

    class NoFlag(SchedulingPolicy):
        name = "test-no-flag"

    with pytest.raises(TypeError, match="chunked_prefill"):
        register_policy(NoFlag)
    assert "test-no-flag" not in POLICIES


def test_a_registered_policy_drives_the_simulator(scratch_registry):
    @register_policy
    class Counting(ChunkedPrefillPolicy):
        name = "test-counting"
        calls = 0

        def schedule(self, engine, new_buf, ctx_buf):
            type(self).calls += 1
            return super().schedule(engine, new_buf, ctx_buf)

    req = requests()
    cfg = SchedulerConfig(kv_capacity_tokens=50_000, policy="test-counting")
    assert cfg.chunked_prefill is True and cfg.policy_name == "test-counting"
    res = simulate(req, MODEL, cfg)
    assert Counting.calls == len(res.trace) > 0  # called once per iteration
    assert_same_result(res, simulate(req, MODEL, SchedulerConfig(kv_capacity_tokens=50_000)))


def test_a_tiny_new_policy_is_one_small_class(scratch_registry):
    @register_policy
    class OneAtATime(SchedulingPolicy):
        """Serve one request at a time: its whole prompt in one iteration, then its decodes."""

        name = "test-one-at-a-time"
        chunked_prefill = False

        def schedule(self, engine, new_buf, ctx_buf):
            if engine.n_dec:
                n = engine.schedule_decodes(ctx_buf)
                return n, n, n, 0
            ps = engine.admit_next()  # nothing runs, so the head fits (else it was rejected)
            chunk = ps.prompt_tokens - ps.tokens_in_kv
            ps.tokens_in_kv = ps.prompt_tokens
            new_buf[0], ctx_buf[0] = chunk, ps.tokens_in_kv
            return 1, chunk, 0, 1

    req = requests(n=40)
    res = simulate(req, MODEL, SchedulerConfig(kv_capacity_tokens=50_000, policy=OneAtATime.name))
    rec = res.records
    assert rec.completed.all() and res.trace.num_seqs.max() == 1
    # Strictly one after another: each request is admitted no earlier than the last finished.
    order = np.argsort(rec.admitted_s, kind="stable")
    assert np.all(rec.admitted_s[order][1:] >= rec.finish_s[order][:-1])
    # Every prompt token is prefilled and every output token but the last decoded, once.
    assert res.trace.num_tokens.sum() == (rec.prompt_tokens + rec.output_tokens - 1).sum()


def test_a_policy_that_schedules_nothing_is_reported(scratch_registry):
    @register_policy
    class Idle(SchedulingPolicy):
        name = "test-idle"
        chunked_prefill = True

        def schedule(self, engine, new_buf, ctx_buf):
            return 0, 0, 0, 0

    req = Requests.from_arrays([0.0], [10], [5])
    cfg = SchedulerConfig(kv_capacity_tokens=1000, policy="test-idle")
    with pytest.raises(HwsimError, match="policy 'test-idle' scheduled nothing"):
        simulate(req, MODEL, cfg)
