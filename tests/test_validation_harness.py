"""The timing harness: fake clocks (wall and CUDA-event paths), a controlled sleep, input
pools, reference checks, and a tiny real run of each torch kernel."""

from __future__ import annotations

import time

import pytest

from hwsim.errors import HwsimError
from validation.harness import (
    Device,
    EventTimer,
    GraphReplayTimer,
    InputPool,
    KernelCheckError,
    Timing,
    TimingPolicy,
    WallTimer,
    check_close,
    make_timer,
    physical_cores,
    pool_bytes_for,
    time_kernel,
)


class FakeClock:
    """A clock that only moves when the workload says so."""

    def __init__(self):
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_wall_timer_times_a_known_workload_with_a_fake_clock():
    clock = FakeClock()
    syncs = []

    def work():
        clock.now += 0.004  # every call takes exactly 4 ms

    timer = WallTimer(clock, synchronize=lambda: syncs.append(clock.now))
    policy = TimingPolicy(
        warmup_calls=3,
        warmup_s=0.0,
        min_sample_s=0.01,
        budget_s=1.0,
        min_repeats=5,
        max_repeats=40,
        rounds=1,
    )
    timing = time_kernel(work, timer, policy)
    assert timing.median_s == pytest.approx(0.004)
    assert timing.p10_s == pytest.approx(0.004) and timing.iqr_s == pytest.approx(0.0)
    assert timing.inner == 3  # ceil(10 ms / 4 ms) calls per sample
    assert timing.repeats == 40  # 1 s budget / 12 ms samples = 83, capped at 40
    assert len(syncs) == 2 * (3 + 40)  # a synchronise before and after every reading


def test_samples_give_median_and_spread():
    t = Timing(samples_s=tuple(float(x) for x in range(1, 11)), inner=1)
    assert t.median_s == 5.5 and t.repeats == 10
    assert t.p10_s == pytest.approx(1.9) and t.p90_s == pytest.approx(9.1)
    assert t.iqr_s == pytest.approx(4.5)


class FakeEvent:
    """Stands in for torch.cuda.Event: records the fake GPU clock; elapsed_time in ms."""

    log: list[str] = []

    def __init__(self, clock: FakeClock):
        self.clock, self.t = clock, None

    def record(self):
        self.t = self.clock.now
        FakeEvent.log.append("record")

    def synchronize(self):
        FakeEvent.log.append("sync")

    def elapsed_time(self, end: FakeEvent) -> float:
        assert self.t is not None and end.t is not None, "read before both events recorded"
        assert FakeEvent.log[-1] == "sync", "end event read before it was synchronised"
        return (end.t - self.t) * 1e3


def test_event_timer_uses_events_and_synchronises_before_reading():
    clock = FakeClock()
    FakeEvent.log = []

    def kernel():
        clock.now += 2e-5  # 20 us of device time per launch

    timer = EventTimer(lambda: FakeEvent(clock))
    assert timer.time(kernel, 5) == pytest.approx(1e-4)
    assert FakeEvent.log == ["record", "record", "sync"]
    timing = time_kernel(kernel, timer, TimingPolicy(min_sample_s=1e-4, budget_s=0.01, rounds=1))
    assert timing.median_s == pytest.approx(2e-5)
    assert timing.inner == 5


def test_graph_replay_timer_times_one_replay_of_the_captured_calls():
    """Device time only: what the host does per call (here 30 us of dispatch, which eager
    timing of a 20 us kernel would measure) is paid at capture, never in a reading."""
    clock = FakeClock()
    FakeEvent.log = []
    captures, ran = [], []

    def kernel():
        ran.append(1)

    def capture(step, calls):
        captures.append((step, calls))
        for _ in range(calls):  # recording: the host dispatches every call once
            clock.now += 3e-5
            step()

        def replay():  # the device runs the calls back to back, no host in between
            clock.now += 2e-5 * calls

        return replay

    timer = GraphReplayTimer(lambda: FakeEvent(clock), capture)
    assert timer.time(kernel, 5) == pytest.approx(1e-4)
    assert timer.time(kernel, 5) == pytest.approx(1e-4)
    assert captures == [(kernel, 5)] and len(ran) == 5  # captured once, replayed twice
    assert FakeEvent.log[-3:] == ["record", "record", "sync"]
    timing = time_kernel(kernel, timer, TimingPolicy(min_sample_s=1e-4, budget_s=0.01, rounds=1))
    assert timing.median_s == pytest.approx(2e-5)  # the kernel's 20 us, not the host's 30
    assert [c for _, c in captures] == [5, 1]  # the warm-up's single call, then its inner 5

    def other():
        pass

    timer.time(other, 5)  # a new step gets its own graphs; the last step's are dropped
    assert captures[-1] == (other, 5) and list(timer._replays) == [5]


def test_graph_timing_needs_a_cuda_device():
    with pytest.raises(HwsimError, match="not a CUDA device"):
        make_timer(Device("cpu", "test"), "graph")
    with pytest.raises(HwsimError, match="allowed events, graph"):
        make_timer(Device("cpu", "test"), "wall")
    assert isinstance(make_timer(Device("cpu", "test")), WallTimer)


def test_controlled_sleep_is_timed_within_tolerance():
    policy = TimingPolicy(
        warmup_calls=1,
        warmup_s=0.0,
        min_sample_s=0.0,
        budget_s=0.03,
        min_repeats=5,
        max_repeats=5,
        rounds=1,
    )
    timing = time_kernel(lambda: time.sleep(0.005), WallTimer(), policy)
    assert 0.005 <= timing.median_s < 0.005 + 0.01  # sleep may overshoot, never undershoot


def test_non_monotonic_clock_is_reported():
    from hwsim.errors import HwsimError

    with pytest.raises(HwsimError, match="non-positive"):
        time_kernel(lambda: None, WallTimer(lambda: 1.0), TimingPolicy(rounds=1, max_inner=2))


def test_rounds_split_the_budget():
    one = TimingPolicy(budget_s=0.3, min_repeats=9, max_repeats=120, rounds=3).per_round()
    assert one.budget_s == pytest.approx(0.1) and one.min_repeats == 3 and one.rounds == 1


def test_pool_rotates_random_inputs_larger_than_the_cache():
    torch = pytest.importorskip("torch")
    pool = InputPool("cpu", pool_bytes=pool_bytes_for(1 << 20))  # 2 MiB pool for a 1 MiB "LLC"
    sets = pool.slots(torch.float32, [(64, 64), (64,)])
    assert len(sets) * (64 * 64 + 64) * 4 >= 2 << 20
    first, second = sets[0][0], sets[1][0]
    assert first.data_ptr() != second.data_ptr()
    assert (second.data_ptr() - first.data_ptr()) % (64 * 4) == 0  # cache-line aligned sets
    assert bool((first != 0).all()) and not torch.equal(first, second)  # random, never zeros
    big = pool.slots(torch.bfloat16, [(1024, 1024)])
    assert len(big) == 2  # a set larger than the pool still rotates over two copies


def test_check_close_rejects_a_broken_kernel():
    torch = pytest.importorskip("torch")
    ref = torch.randn(8, 8, dtype=torch.float64)
    assert check_close(ref.float(), ref, "fp32", "ok") < 1e-6
    with pytest.raises(KernelCheckError, match="not timed"):
        check_close(ref.float() * 1.1, ref, "fp32", "broken")
    with pytest.raises(KernelCheckError, match="NaN"):
        check_close(torch.full((8, 8), float("nan")), ref, "fp32", "nan")


def test_physical_cores_is_positive():
    assert physical_cores() >= 1


def test_triton_kernels_import_skips_cleanly_without_a_gpu():
    from validation.suite import triton_available

    torch = pytest.importorskip("torch")
    if torch.cuda.is_available():
        pytest.skip("a GPU is present")
    assert triton_available() is False
    with pytest.raises(ImportError, match="triton|CUDA"):
        import validation.triton_kernels  # noqa: F401


@pytest.mark.parametrize(
    ("kernel", "variant", "params"),
    [
        ("gemm", "torch.mm", {"m": 8, "n": 64, "k": 32, "dtype": "fp32"}),
        ("gemm", "torch.mm", {"m": 4, "n": 64, "k": 128, "dtype": "bf16"}),
        (
            "attention_prefill",
            "torch.sdpa",
            {
                "batch": 1,
                "heads": 4,
                "kv_heads": 2,
                "seq_len": 96,
                "head_dim": 64,
                "causal": True,
                "dtype": "fp32",
            },
        ),
        (
            "attention_prefill",
            "torch.sdpa.math",
            {
                "batch": 1,
                "heads": 2,
                "kv_heads": 2,
                "seq_len": 64,
                "head_dim": 64,
                "causal": False,
                "dtype": "bf16",
            },
        ),
        (
            "attention_decode",
            "torch.sdpa",
            {
                "batch": 2,
                "heads": 4,
                "kv_heads": 1,
                "context_len": 128,
                "head_dim": 64,
                "dtype": "fp32",
            },
        ),
        ("copy", "torch.copy", {"bytes": 4096, "dtype": "fp32"}),
        ("norm", "torch.rms_norm", {"tokens": 8, "hidden": 256, "dtype": "bf16"}),
        ("norm", "torch.layer_norm", {"tokens": 8, "hidden": 256, "dtype": "fp32"}),
    ],
)
def test_real_torch_kernels_pass_their_reference_check(kernel, variant, params):
    pytest.importorskip("torch")
    from validation.harness import Device
    from validation.kernels import Case
    from validation.suite import measure_case

    pool = InputPool("cpu", pool_bytes=1 << 20)
    policy = TimingPolicy(warmup_calls=1, warmup_s=0.0, budget_s=0.005, min_repeats=3, rounds=1)
    timing = measure_case(
        Case(kernel, variant, params), Device("cpu", "test"), pool, WallTimer(), policy
    )
    assert timing.repeats >= 3 and timing.median_s > 0


def test_a_broken_kernel_is_skipped_not_timed(monkeypatch):
    pytest.importorskip("torch")
    from validation import kernels as vk
    from validation.harness import Device
    from validation.suite import run_suite

    real = vk.BUILDERS["copy"]

    def broken(case, device, pool):
        prepared = real(case, device, pool)

        def check():
            raise KernelCheckError(f"{case.label()}: wrong answer; not timed")

        return vk.Prepared(prepared.step, check)

    monkeypatch.setitem(vk.BUILDERS, "copy", broken)
    cases = [
        vk.Case("copy", "torch.copy", {"bytes": 4096, "dtype": "fp32"}),
        vk.Case("norm", "torch.layer_norm", {"tokens": 4, "hidden": 64, "dtype": "fp32"}),
    ]
    policy = TimingPolicy(warmup_calls=1, warmup_s=0.0, budget_s=0.006, min_repeats=3, rounds=2)
    result = run_suite(
        cases, Device("cpu", "test"), policy=policy, pool_bytes=1 << 20, progress=False
    )
    assert [m.kernel for m in result.measurements] == ["norm"]
    assert result.skipped and "wrong answer" in result.skipped[0][1]
    assert result.measurements[0].repeats >= 4  # samples pooled over both rounds


def test_a_kernel_that_fails_to_build_is_skipped_with_its_reason(monkeypatch):
    """A compile error (Triton raises its own exception types) skips that case only."""
    pytest.importorskip("torch")
    from validation import kernels as vk
    from validation.harness import Device
    from validation.suite import run_suite

    class CompilationError(Exception):
        pass

    def fails(case, device, pool):
        raise CompilationError("at 12:4: unsupported layout")

    monkeypatch.setitem(vk.BUILDERS, "copy", fails)
    cases = [
        vk.Case("copy", "torch.copy", {"bytes": 4096, "dtype": "fp32"}),
        vk.Case("norm", "torch.layer_norm", {"tokens": 4, "hidden": 64, "dtype": "fp32"}),
    ]
    policy = TimingPolicy(warmup_calls=1, warmup_s=0.0, budget_s=0.004, min_repeats=2, rounds=1)
    result = run_suite(
        cases, Device("cpu", "test"), policy=policy, pool_bytes=1 << 20, progress=False
    )
    assert [m.kernel for m in result.measurements] == ["norm"]
    assert "unsupported layout" in result.skipped[0][1]


def test_no_case_starts_after_the_deadline():
    pytest.importorskip("torch")
    import time

    from validation import kernels as vk
    from validation.harness import Device
    from validation.suite import run_suite

    cases = [
        vk.Case("norm", "torch.layer_norm", {"tokens": 4, "hidden": 64, "dtype": "fp32"}),
        vk.Case("copy", "torch.copy", {"bytes": 4096, "dtype": "fp32"}),
    ]
    policy = TimingPolicy(warmup_calls=1, warmup_s=0.0, budget_s=0.004, min_repeats=2, rounds=1)
    result = run_suite(
        cases,
        Device("cpu", "test"),
        policy=policy,
        pool_bytes=1 << 20,
        progress=False,
        deadline_s=time.perf_counter() - 1.0,
    )
    assert result.measurements == []
    assert [reason for _, reason in result.skipped] == ["deadline: not measured"] * 2


def test_device_run_groups_partition_the_cuda_sweep_in_priority_order(monkeypatch):
    pytest.importorskip("torch")
    from validation import device_run, suite

    monkeypatch.setattr(suite, "fp8_supported", lambda: True)
    monkeypatch.setattr(suite, "triton_available", lambda: True)
    cases = suite.plan_cuda(quick=False)
    groups = device_run.grouped(cases)
    flat = [c for _, group in groups for c in group]
    assert sorted(map(id, flat)) == sorted(map(id, cases))  # each case exactly once
    names = [name for name, group in groups if group]
    assert names[0] == "gemm torch" and "other" not in names
    assert all(c.stack == "triton" for c in dict(groups)["triton"])


@pytest.mark.parametrize(
    ("kind", "name", "expected"),
    [
        ("cuda", "NVIDIA H100 80GB HBM3", "h100-sxm"),
        ("cuda", "NVIDIA H100 PCIe", "h100-pcie"),
        ("cuda", "NVIDIA H200", "h200-sxm"),
        ("cuda", "NVIDIA A100-SXM4-40GB", "a100-40gb-sxm"),
        ("cuda", "NVIDIA A100-SXM4-80GB", "a100-80gb-sxm"),
        ("cuda", "NVIDIA L40S", "l40s"),
        ("cuda", "NVIDIA L4", "l4"),
        ("cuda", "AMD Instinct MI300X", "mi300x"),
        ("cpu", "AMD EPYC 7B13", "cpu"),
    ],
)
def test_device_names_map_to_profiles_through_their_match_lists(kind, name, expected):
    """The longest `match:` fragment wins (H100 PCIe over H100, L40S over L4)."""
    from hwsim.profiles.device_match import profile_for_device

    assert profile_for_device(kind, name) == expected


def test_an_unknown_gpu_names_the_fix():
    from hwsim.errors import HwsimError
    from hwsim.profiles.device_match import profile_for_device

    with pytest.raises(HwsimError, match="no shipped hardware profile matches.*--base-profile"):
        profile_for_device("cuda", "Imaginary GPU 9000")


# -- adaptive repeats ------------------------------------------------------------------------
class ScriptedTimer:
    """A timer whose n-th reading is ``durations(n)`` per call (warm-up readings included)."""

    def __init__(self, durations):
        self.durations, self.readings = durations, 0

    def time(self, step, calls: int) -> float:
        step()
        self.readings += 1
        return self.durations(self.readings) * calls


def _adaptive(**kw) -> TimingPolicy:
    base = dict(
        warmup_calls=1,
        warmup_s=0.0,
        min_sample_s=0.0,
        budget_s=1.0,
        min_repeats=8,
        max_repeats=200,
        rounds=1,
        target_ci=0.02,
    )
    return TimingPolicy(**{**base, **kw})


def test_median_rel_ci_is_the_notch_half_width_over_the_median():
    from validation.harness import median_rel_ci

    samples = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0]  # IQR 4, median 5
    assert median_rel_ci(samples) == pytest.approx(1.57 * 4 / 3 / 5)
    assert median_rel_ci([1.0, 1.0]) == float("inf")  # too few to say
    assert median_rel_ci([2.0] * 20) == 0.0


def test_adaptive_sampling_stops_once_the_median_is_stable():
    timer = ScriptedTimer(lambda n: 1e-3)  # every call 1 ms: stable from the first samples
    timing = time_kernel(lambda: None, timer, _adaptive())
    assert timing.repeats == 8  # min_repeats, far short of the 1 s budget
    fixed = time_kernel(lambda: None, ScriptedTimer(lambda n: 1e-3), _adaptive(target_ci=0.0))
    assert fixed.repeats == 200  # not adaptive: samples until the budget (max_repeats here)


def test_adaptive_sampling_of_a_noisy_kernel_runs_to_the_budget():
    timer = ScriptedTimer(lambda n: 1e-3 if n % 2 else 2e-3)  # IQR ~ median: never stable
    timing = time_kernel(lambda: None, timer, _adaptive(budget_s=0.15))
    assert 0.15 <= sum(timing.samples_s) < 0.15 + 2e-3  # stopped by the budget
    assert timing.rel_ci > 0.02


def test_a_kernel_slower_than_its_warm_up_stops_at_the_overrun_cap():
    from validation.harness import MIN_SAMPLES, OVERRUN

    # warm-up sees 1 ms calls, then another process's load makes each call take 50 ms
    timer = ScriptedTimer(lambda n: 1e-3 if n == 1 else 0.05)
    policy = _adaptive(budget_s=0.04, min_repeats=10)
    timing = time_kernel(lambda: None, timer, policy)
    assert timing.repeats == MIN_SAMPLES  # short of min_repeats: 3 x 50 ms >= 2 x 40 ms
    assert sum(timing.samples_s) >= OVERRUN * policy.budget_s


def test_per_round_splits_the_minimum_over_the_required_rounds():
    one = TimingPolicy(
        budget_s=0.24, min_repeats=10, max_repeats=120, rounds=3, target_ci=0.02, min_rounds=2
    ).per_round()
    assert one.min_repeats == 5 and one.budget_s == pytest.approx(0.08)
    assert one.max_repeats == 40 and one.rounds == 1 and one.target_ci == 0.02


def _suite_cases():
    from validation import kernels as vk

    return [vk.Case("norm", "torch.layer_norm", {"tokens": 4, "hidden": 64, "dtype": "fp32"})]


def test_a_stable_case_skips_the_optional_rounds():
    pytest.importorskip("torch")
    from validation.harness import Device
    from validation.suite import run_suite

    policy = _adaptive(min_repeats=8, rounds=3, min_rounds=2, budget_s=3.0)
    steady = run_suite(
        _suite_cases(),
        Device("cpu", "test"),
        policy=policy,
        pool_bytes=1 << 16,
        timer=ScriptedTimer(lambda n: 1e-3),
        progress=False,
    )
    assert steady.measurements[0].repeats == 8  # 4 in each of the 2 required rounds
    noisy = ScriptedTimer(lambda n: 1e-3 if n % 2 else 2e-3)
    rows = run_suite(
        _suite_cases(),
        Device("cpu", "test"),
        policy=policy,
        pool_bytes=1 << 16,
        timer=noisy,
        progress=False,
    ).measurements
    per_round_cap = policy.per_round().max_repeats
    assert rows[0].repeats == 3 * per_round_cap  # never stable: every round, each to its cap


def test_no_optional_round_starts_after_its_time_limit():
    pytest.importorskip("torch")
    from validation.harness import Device
    from validation.suite import run_suite

    policy = _adaptive(rounds=3, min_rounds=2, budget_s=3.0, optional_rounds_until_s=0.0)
    rows = run_suite(
        _suite_cases(),
        Device("cpu", "test"),
        policy=policy,
        pool_bytes=1 << 16,
        timer=ScriptedTimer(lambda n: 1e-3 if n % 2 else 2e-3),
        progress=False,
    ).measurements
    assert rows[0].repeats == 2 * policy.per_round().max_repeats  # the required rounds only


def test_a_growing_pool_keeps_its_random_prefix_and_grows_geometrically():
    torch = pytest.importorskip("torch")
    pool = InputPool("cpu", pool_bytes=1 << 12)
    small = pool.slots(torch.float32, [(256,)], n=2)
    head = small[0][0].clone()
    big = pool.slots(torch.float32, [(300,)], n=2)  # 600 elements > the 512 held
    buf = pool._random[torch.float32]
    assert buf.numel() >= int(InputPool.GROWTH * 512)
    assert torch.equal(big[0][0][:256], head)  # the old numbers kept, not redrawn
    assert bool((buf != 0).all())  # the new tail is random too, never zeros


def test_the_quick_cpu_sweep_times_only_the_norm_variant_the_fit_keeps():
    from validation.suite import plan_cpu

    quick = {c.variant for c in plan_cpu(True) if c.kernel == "norm"}
    full = {c.variant for c in plan_cpu(False) if c.kernel == "norm"}
    assert quick == {"torch.layer_norm"}
    assert full == {"torch.layer_norm", "torch.rms_norm"}
