"""The ``prefill_first`` policy (SGLang's scheduler) and how a deployment's runtime picks it:
prefill-only iterations while there is prefill work, decode-only ones otherwise. The exact
iteration-by-iteration behaviour is cross-checked against the slow reference simulator in
test_serving_simulator.py; here, what distinguishes it from ``chunked``."""

import numpy as np
import pytest

from hwsim.planner.plan import simulate as plan_simulate
from hwsim.profiles.deployment import DeploymentSpec
from hwsim.serving import Requests, SchedulerConfig, simulate
from hwsim.serving.policies import PrefillFirstPolicy, policy_for
from hwsim.serving.scheduler import deployment_scheduler_fields

try:
    from serving_support import LinearStepTimeModel
except ImportError:  # tests/ imported as a package
    from tests.serving_support import LinearStepTimeModel

MODEL = LinearStepTimeModel(fixed_s=2e-3, per_new_token_s=2e-5, per_context_token_s=0.0)
BUDGET = 1024


def long_prompt_behind_a_decode() -> Requests:
    """A short request decoding, then a 4000-token prompt arriving while it decodes."""
    return Requests.from_arrays([0.0, 0.05], [10, 4000], [200, 5])


def run(policy: str) -> tuple:
    cfg = SchedulerConfig(kv_capacity_tokens=100_000, max_num_batched_tokens=BUDGET, policy=policy)
    return simulate(long_prompt_behind_a_decode(), MODEL, cfg)


def test_prefill_first_is_registered_and_chunks():
    assert policy_for("prefill_first") is PrefillFirstPolicy
    assert SchedulerConfig(kv_capacity_tokens=1000, policy="prefill_first").chunked_prefill


def test_prefill_chunks_run_without_the_decodes():
    first, mixed = run("prefill_first"), run("chunked")
    chunk_rows = first.trace.num_tokens > first.trace.num_seqs  # a chunk of > 1 token
    mixed_rows = mixed.trace.num_tokens > mixed.trace.num_seqs
    # ceil(4000 / 1024) = 4 prefill-only iterations of the long prompt alone (+ the short
    # request's own prefill at t = 0), while chunked runs the decode inside each of them
    assert np.count_nonzero(chunk_rows) == np.count_nonzero(mixed_rows) == 1 + 4
    assert (first.trace.num_seqs[chunk_rows] == 1).all()
    assert (mixed.trace.num_seqs[mixed_rows][1:] == 2).all()
    # the long prompt gets the whole budget, so its first token comes sooner; the short
    # request's decodes wait out those iterations, so it finishes later
    ttft_first, ttft_mixed = (r.records.ttft_s[1] for r in (first, mixed))
    assert ttft_first < ttft_mixed
    assert first.records.finish_s[0] > mixed.records.finish_s[0]
    # every prompt token prefilled once and every output token but the last decoded once
    for res in (first, mixed):
        rec = res.records
        assert res.trace.num_tokens.sum() == (rec.prompt_tokens + rec.output_tokens - 1).sum()


def test_without_overlap_prefill_first_is_chunked():
    # requests that never overlap: every iteration is prefill-only or decode-only anyway
    arrivals = np.arange(6) * 10.0
    req = Requests.from_arrays(arrivals, np.full(6, 3000), np.full(6, 40))
    cfg = {"kv_capacity_tokens": 100_000, "max_num_batched_tokens": BUDGET}
    a = simulate(req, MODEL, SchedulerConfig(**cfg, policy="prefill_first"))
    b = simulate(req, MODEL, SchedulerConfig(**cfg, policy="chunked"))
    np.testing.assert_array_equal(a.records.finish_s, b.records.finish_s)
    np.testing.assert_array_equal(a.trace.duration_s, b.trace.duration_s)


@pytest.mark.parametrize(
    "runtime, chunked, policy",
    [
        ({"engine": "sglang"}, True, "prefill_first"),
        ({"engine": "sglang"}, False, "unchunked"),  # no chunks: prefill-only iterations first
        ({"engine": "sglang", "prefill_first": False}, True, "chunked"),  # --enable-mixed-chunk
        ({"engine": "vllm"}, True, "chunked"),
        ({"engine": "trtllm"}, True, "chunked"),
        ({"engine": "generic"}, True, "chunked"),
        ({"engine": "vllm", "prefill_first": True}, True, "prefill_first"),
    ],
)
def test_the_runtime_picks_the_policy(runtime, chunked, policy):
    spec = DeploymentSpec(runtime=runtime, chunked_prefill=chunked)
    cfg = SchedulerConfig(kv_capacity_tokens=10_000, **deployment_scheduler_fields(spec))
    assert cfg.policy_name == policy


def test_a_scenario_on_sglang_simulates_prefill_first():
    scenario = {
        "model": "llama-2-7b",
        "hardware": "a100-80gb-sxm",
        "traffic": {
            "arrivals": {"kind": "poisson", "rate": {"kind": "constant", "rate_per_s": 6}},
            "prompt_tokens": 2000,
            "output_tokens": 64,
        },
    }
    runs = {}
    for name, runtime in (
        ("sglang", {"engine": "sglang"}),
        ("sglang mixed", {"engine": "sglang", "prefill_first": False}),  # --enable-mixed-chunk
        ("vllm", {"engine": "vllm"}),
    ):
        sc = {**scenario, "deployment": {"runtime": runtime}}
        runs[name], _ = plan_simulate(sc, n_requests=80, seed=2)
    assert runs["sglang"].config.policy_name == "prefill_first"
    assert runs["sglang mixed"].config.policy_name == "chunked"
    assert runs["vllm"].config.policy_name == "chunked"
    # the same engine but for the policy: 2000-token prompts at 6/s overlap running decodes,
    # and prefill-only iterations stall them
    first, mixed = runs["sglang"].records, runs["sglang mixed"].records
    assert np.median(first.tpot_s) > np.median(mixed.tpot_s)
