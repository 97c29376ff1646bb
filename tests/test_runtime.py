"""The engine runtime model (hwsim.profiles.runtime): multi-step scheduling, host overheads per
scheduling decision and per request, CUDA graphs; in the simulator, the analytic planner, the
step model and the published-row harness."""

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from hwsim.errors import HwsimError
from hwsim.inference.deployment import make_deployment
from hwsim.inference.engine import decode_step_cost, prefill_cost
from hwsim.planner.analytic import runtime_terms
from hwsim.planner.plan import simulate as plan_simulate
from hwsim.planner.step_model import EngineStepModel
from hwsim.profiles.deployment import DeploymentSpec
from hwsim.profiles.runtime import ENGINE_DEFAULTS, ENGINES, RuntimeSpec
from hwsim.profiles.scenario import load_scenario
from hwsim.serving import SchedulerConfig
from hwsim.serving import simulate as run_sim
from hwsim.serving.traffic import ClosedLoopRequests, Requests

DECODE_S, PREFILL_PER_TOKEN_S = 0.01, 1e-4
EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


class FakeStep:
    """A decode-only iteration takes DECODE_S; prefill tokens add PREFILL_PER_TOKEN_S each."""

    def iteration_time_s(self, new_tokens, context_after):
        prefill = int(new_tokens[new_tokens > 1].sum())
        return DECODE_S + PREFILL_PER_TOKEN_S * prefill


def open_loop(n=40, rate=20.0, seed=3, prompt=64, output=17):
    rng = np.random.default_rng(seed)
    arrivals = np.cumsum(rng.exponential(1 / rate, n))
    return Requests.from_arrays(arrivals, np.full(n, prompt), np.full(n, output))


def config(**over):
    return SchedulerConfig(kv_capacity_tokens=200_000, max_num_seqs=64, **over)


def records_equal(a, b):
    for name in ("arrival_s", "admitted_s", "first_token_s", "finish_s", "preemptions"):
        np.testing.assert_array_equal(getattr(a.records, name), getattr(b.records, name))
    np.testing.assert_array_equal(a.trace.duration_s, b.trace.duration_s)
    np.testing.assert_array_equal(a.trace.start_s, b.trace.start_s)


# -- the spec ----------------------------------------------------------------------------------
def test_default_runtime_is_kernel_only_and_every_default_has_a_source():
    assert DeploymentSpec().runtime == RuntimeSpec()
    assert RuntimeSpec().is_kernel_only
    for engine in ENGINES:
        rt = RuntimeSpec(engine=engine)
        for name, default in ENGINE_DEFAULTS[engine].items():
            assert getattr(rt, name) == default.value
            assert len(default.source) > 20 and rt.source_of(name) == default.source
    vllm = RuntimeSpec(engine="vllm", num_scheduler_steps=8)
    assert vllm.num_scheduler_steps == 8 and vllm.iteration_overhead_s == 4e-3
    assert vllm.source_of("num_scheduler_steps") == "given"


def test_scenario_yaml_runtime_section_validates(tmp_path):
    path = tmp_path / "s.yaml"
    path.write_text(
        "model: llama-2-7b\nhardware: a100-80gb-sxm\n"
        "deployment: {runtime: {engine: vllm, num_scheduler_steps: 8}}\n"
    )
    rt = load_scenario(path).deployment.runtime
    assert (rt.engine, rt.num_scheduler_steps, rt.cuda_graphs) == ("vllm", 8, True)


@pytest.mark.parametrize(
    "runtime, fragments",
    [
        ("{engine: vlm}", ["runtime.engine", "'vllm'", "'sglang'", "'trtllm'", "'generic'"]),
        ("{num_scheduler_steps: 0}", ["runtime.num_scheduler_steps", "greater than or equal"]),
        ("{iteration_overhead_s: -1.0}", ["runtime.iteration_overhead_s", "greater than"]),
        ("{cuda_graph: true}", ["runtime.cuda_graph", "unknown field"]),
    ],
)
def test_bad_runtime_values_give_clean_errors(tmp_path, runtime, fragments):
    path = tmp_path / "bad.yaml"
    path.write_text(
        f"model: llama-2-7b\nhardware: a100-80gb-sxm\ndeployment: {{runtime: {runtime}}}\n"
    )
    with pytest.raises(HwsimError) as info:
        load_scenario(path)
    message = str(info.value)
    assert "bad.yaml" in message
    for fragment in fragments:
        assert fragment in message


# -- the simulator -----------------------------------------------------------------------------
def test_one_step_without_overheads_is_todays_scheduler():
    explicit = dict(num_scheduler_steps=1, iteration_overhead_s=0.0, request_overhead_s=0.0)
    reqs = open_loop()
    records_equal(
        run_sim(reqs, FakeStep(), config()), run_sim(reqs, FakeStep(), config(**explicit))
    )
    closed = ClosedLoopRequests.from_arrays(np.full(30, 64), np.full(30, 9), clients=5)
    records_equal(
        run_sim(closed, FakeStep(), config()), run_sim(closed, FakeStep(), config(**explicit))
    )


def test_the_generic_runtime_reproduces_the_planner_simulation():
    sc = {
        "model": "llama-2-7b",
        "hardware": "a100-80gb-sxm",
        "traffic": {
            "arrivals": {"kind": "poisson", "rate": {"kind": "constant", "rate_per_s": 4}},
            "prompt_tokens": 128,
            "output_tokens": 32,
        },
    }
    plain, _ = plan_simulate(sc, n_requests=60, seed=1)
    generic, _ = plan_simulate(
        {**sc, "deployment": {"runtime": {"engine": "generic"}}}, n_requests=60, seed=1
    )
    records_equal(plain, generic)


@pytest.mark.parametrize("policy", ["chunked", "unchunked"])
def test_multi_step_blocks(policy):
    k, h = 4, 0.37 * PREFILL_PER_TOKEN_S  # not a multiple of a prefill token: recognisable
    reqs = open_loop()
    one = run_sim(reqs, FakeStep(), config(policy=policy, iteration_overhead_s=h))
    res = run_sim(
        reqs, FakeStep(), config(policy=policy, num_scheduler_steps=k, iteration_overhead_s=h)
    )
    rec, trace = res.records, res.trace
    assert rec.completed.all()
    # a block's first iteration (a scheduling decision) carries the overhead; no block runs
    # more than k iterations, and only a block's first iteration has prefill tokens
    fraction = ((trace.duration_s - DECODE_S) / PREFILL_PER_TOKEN_S) % 1.0
    first = np.isclose(fraction, 0.37, atol=1e-6)
    assert (first | np.isclose(fraction, 0.0, atol=1e-6) | np.isclose(fraction, 1.0)).all()
    has_prefill = trace.num_tokens > trace.num_seqs
    starts = np.flatnonzero(first)
    assert starts[0] == 0
    assert np.diff(np.append(starts, len(trace))).max() <= k
    assert set(np.flatnonzero(has_prefill)) <= set(starts)
    # admissions happen only at block starts
    block_start_s = set(trace.start_s[starts].tolist())
    assert set(rec.admitted_s.tolist()) <= block_start_s
    # a decoding request's tokens come out k at a time, at its block's end
    for r in range(len(rec)):
        times = res.timeline.token_times_s(r)
        assert len(times) == rec.output_tokens[r]
        _, counts = np.unique(times[1:], return_counts=True)
        assert counts.max() == k and (counts <= k).all()
    assert (np.unique(res.timeline.decode_step_end_s, return_counts=True)[1] <= k).all()
    # TTFT rises (a request waits for the running block), scheduling decisions fall
    assert np.mean(rec.ttft_s) > np.mean(one.records.ttft_s)
    assert first.sum() < len(one.trace)


def test_iteration_overhead_adds_n_iterations_times_the_overhead():
    n, h = 24, 2.5e-3
    reqs = Requests.from_arrays(np.zeros(n), np.full(n, 100), np.full(n, 12))
    base = run_sim(reqs, FakeStep(), config(max_num_batched_tokens=512))
    more = run_sim(reqs, FakeStep(), config(max_num_batched_tokens=512, iteration_overhead_s=h))
    assert len(more.trace) == len(base.trace)
    busy = more.trace.duration_s.sum() - base.trace.duration_s.sum()
    assert busy == pytest.approx(len(base.trace) * h, rel=1e-12)
    np.testing.assert_allclose(more.trace.duration_s - base.trace.duration_s, h, rtol=1e-9)


def test_request_overhead_shifts_every_ttft_by_exactly_that():
    c = 0.037
    reqs = open_loop()
    base = run_sim(reqs, FakeStep(), config())
    late = run_sim(reqs, FakeStep(), config(request_overhead_s=c))
    np.testing.assert_array_equal(late.records.arrival_s, base.records.arrival_s)
    np.testing.assert_allclose(late.records.ttft_s, base.records.ttft_s + c, rtol=0, atol=1e-9)
    np.testing.assert_allclose(late.records.tpot_s, base.records.tpot_s, rtol=1e-9)


# -- the step model (CUDA graphs) -------------------------------------------------------------
def test_cuda_graphs_drop_the_launch_overhead_of_decode_only_iterations_fast_and_reference():
    dep = make_deployment("llama-2-7b", "a100-80gb-sxm", runtime={"cuda_graphs": True})
    eager = EngineStepModel(make_deployment("llama-2-7b", "a100-80gb-sxm"))
    graphs = EngineStepModel(dep)
    assert graphs.fast_path_active and graphs.graph_saving_s > 0
    rng = np.random.default_rng(0)
    for b in (1, 7, 64, 200):
        new, ctx = np.ones(b, dtype=np.int64), rng.integers(10, 4000, b).astype(np.int64)
        fast, ref = graphs.iteration_time_s(new, ctx), graphs._reference_iteration_time_s(new, ctx)
        assert fast == pytest.approx(ref, rel=1e-12)
        want = eager.iteration_time_s(new, ctx) - graphs.graph_saving_s
        assert fast == pytest.approx(want, rel=1e-12)
    # past the largest captured batch a decode step runs eagerly: the launches are paid
    capped = EngineStepModel(
        make_deployment(
            "llama-2-7b",
            "a100-80gb-sxm",
            runtime={"cuda_graphs": True, "cuda_graph_max_batch": 64},
        )
    )
    for b, saved in ((64, True), (65, False)):
        new, ctx = np.ones(b, dtype=np.int64), np.full(b, 1000, dtype=np.int64)
        want = eager.iteration_time_s(new, ctx) - (graphs.graph_saving_s if saved else 0.0)
        assert capped.iteration_time_s(new, ctx) == pytest.approx(want, rel=1e-12)
        ref = capped._reference_iteration_time_s(new, ctx)
        assert capped.iteration_time_s(new, ctx) == pytest.approx(ref, rel=1e-12)
    terms = runtime_terms(capped.dep)
    np.testing.assert_allclose(
        terms.decode_step_s(np.array([0.02, 0.02]), np.array([64, 65])),
        [0.02 - graphs.graph_saving_s, 0.02],
    )
    new = np.array([1, 1, 300], dtype=np.int64)
    ctx = np.array([500, 900, 300], dtype=np.int64)
    assert graphs.iteration_time_s(new, ctx) == pytest.approx(
        graphs._reference_iteration_time_s(new, ctx), rel=1e-12
    )
    assert graphs.iteration_time_s(new, ctx) == pytest.approx(
        eager.iteration_time_s(new, ctx), rel=1e-12
    )


# -- analytic vs simulated -----------------------------------------------------------------
def test_multi_step_analytic_terms_match_the_simulation_at_vanishing_load():
    """As tests/test_planner.py's vanishing-load check, with k = 4, host overhead per
    decision and per request: the lone request's TTFT is its prefill plus one overhead plus
    the request overhead, and its TPOT is the analytic decode step, kernels + h / k."""
    k, h, c = 4, 3e-3, 0.02
    runtime = {"num_scheduler_steps": k, "iteration_overhead_s": h, "request_overhead_s": c}
    dep = make_deployment("llama-2-7b", "a100-80gb-sxm", runtime=runtime)
    model = EngineStepModel(dep)
    prompt, output = 300, 41  # 40 decode steps: 10 blocks of 4
    reqs = Requests.from_arrays(np.array([0.0, 100.0]), np.full(2, prompt), np.full(2, output))
    cfg = SchedulerConfig(kv_capacity_tokens=100_000, max_num_batched_tokens=4096, **runtime)
    rec = run_sim(reqs, model, cfg).records
    t_pf = float(prefill_cost(dep, 1, prompt).time_s)
    np.testing.assert_allclose(rec.ttft_s, t_pf + h + c, rtol=1e-9)
    decode = [
        model.iteration_time_s(np.array([1]), np.array([prompt + i])) for i in range(1, output)
    ]
    np.testing.assert_allclose(rec.e2e_s - rec.ttft_s, sum(decode) + (output - 1) / k * h)
    terms = runtime_terms(dep)
    decode_s = float(decode_step_cost(dep, 1, prompt + output / 2).time_s)
    analytic_tpot = terms.decode_step_s(decode_s, 1)
    assert float(np.mean(rec.tpot_s)) == pytest.approx(analytic_tpot, rel=2e-3)
    assert terms.ttft_extra_s(analytic_tpot) == pytest.approx(c + k * analytic_tpot / 2)


def test_multi_step_block_wait_matches_the_analytic_term_under_load():
    """Poisson arrivals into a busy decode batch: the mean TTFT rise from k = 1 to k = 4 is
    the analytic wait for a block boundary, ~k t_dec / 2 (minus the k = 1 residual t_dec / 2),
    within 25% (the prefill iterations, themselves single steps, shorten the blocks)."""
    k = 4
    reqs = open_loop(n=400, rate=30.0, seed=5, prompt=16, output=65)
    one = run_sim(reqs, FakeStep(), config(policy="chunked"))
    four = run_sim(reqs, FakeStep(), config(policy="chunked", num_scheduler_steps=k))
    rise = np.mean(four.records.ttft_s[100:]) - np.mean(one.records.ttft_s[100:])
    assert rise == pytest.approx((k - 1) * DECODE_S / 2, rel=0.25)


# -- the published-row harness ----------------------------------------------------------------
def test_published_rows_map_their_engine_and_own_flags_to_the_runtime():
    from validation.published_prediction import Prediction
    from validation.published_serving import _runtime

    def row(engine, notes, version=None):
        return SimpleNamespace(engine=engine, notes=notes, engine_version=version)

    def out():
        return Prediction("x", "serving", None, None, "m", "ms", 1.0)

    notes = "vLLM launched with --num-scheduler-steps 10; SGLang with --disable-radix-cache"
    assert _runtime(row("vLLM", notes), out()) == {"engine": "vllm", "num_scheduler_steps": 10}
    assert _runtime(row("SGLang", notes), out()) == {"engine": "sglang"}
    assert _runtime(row("vLLM", "--enforce-eager"), out()) == {
        "engine": "vllm",
        "cuda_graphs": False,
    }
    assert _runtime(row("TensorRT-LLM", None), out()) == {"engine": "trtllm"}
    old_trt = {"engine": "trtllm", "cuda_graphs": False}  # the TensorRT backend (before 1.0)
    assert _runtime(row("TensorRT-LLM", None, "0.17.post1.dev"), out()) == old_trt
    assert _runtime(row(None, notes), out()) == {}


def test_estimate_prices_the_runtime_as_the_planner_does():
    """hwsim.estimate's TPOT is the kernels' decode step less the launches a graph replay saves
    plus the host overhead per step (h / k); its TTFT adds the request overhead. The generic
    engine changes nothing."""
    import hwsim
    from hwsim.inference.deployment import make_deployment
    from hwsim.inference.runtime_terms import runtime_terms

    args = dict(batch=32, prompt_len=1000, gen_len=100)
    plain = hwsim.estimate("llama-3.1-8b", "h100-sxm", **args)
    same = hwsim.estimate("llama-3.1-8b", "h100-sxm", runtime={"engine": "generic"}, **args)
    assert same.latency.tpot_s == plain.latency.tpot_s
    rt = {"engine": "vllm", "num_scheduler_steps": 8, "request_overhead_s": 0.002}
    vllm = hwsim.estimate("llama-3.1-8b", "h100-sxm", runtime=rt, **args)
    terms = runtime_terms(make_deployment("llama-3.1-8b", "h100-sxm", runtime=rt))
    assert terms.decode_overhead_s == pytest.approx(4e-3 / 8)  # vLLM RFC #6854: 4 ms a call
    expected = plain.latency.tpot_s - terms.graph_saving_s + 4e-3 / 8
    assert vllm.latency.tpot_s == pytest.approx(expected, rel=1e-12)
    assert vllm.latency.ttft_s == pytest.approx(plain.latency.ttft_s + 0.002, rel=1e-12)
    # vLLM captures decode graphs up to batch 256: a batch of 300 pays its launches
    big = dict(args, batch=np.array([256, 300]))
    plain_big = hwsim.estimate("llama-3.1-8b", "h100-sxm", **big)
    vllm_big = hwsim.estimate("llama-3.1-8b", "h100-sxm", runtime=rt, **big)
    saved = np.array([terms.graph_saving_s, 0.0])
    np.testing.assert_allclose(
        vllm_big.latency.tpot_s, plain_big.latency.tpot_s - saved + 4e-3 / 8, rtol=1e-12
    )


def test_the_runtime_describes_itself_with_its_sources():
    sglang = RuntimeSpec(engine="sglang", cuda_graphs=False).describe()
    assert sglang.startswith("Engine runtime: sglang: ")
    assert "prefill_first=True (SGLang scheduler" in sglang  # the default names its source
    assert "cuda_graphs=False (given)" in sglang  # a value the user changed says so
    for name in ENGINE_DEFAULTS["sglang"]:
        assert f"{name}=" in sglang
    assert "kernel-only" in RuntimeSpec().describe()
    given = RuntimeSpec(engine="generic", cuda_graphs=True).describe()  # not kernel-only now
    assert given.startswith("Engine runtime: generic: ") and "cuda_graphs=True (given)" in given


def test_the_plan_states_its_runtime_and_policy():
    from hwsim.planner.plan import assumptions, summarise_workload, traffic_of

    sc = load_scenario(EXAMPLES / "chat-service.yaml")
    sc = sc.model_copy(update={"deployment": DeploymentSpec(runtime={"engine": "sglang"})})
    notes = assumptions(sc, summarise_workload(traffic_of(sc)))
    assert any("the scenario's deployment runs 'prefill_first'" in n for n in notes)
    assert RuntimeSpec(engine="sglang").describe() in notes
