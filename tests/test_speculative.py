"""Speculative decoding (hwsim.inference.speculative): tokens per verify step by hand, the
verify step as a (k+1)-token decode, the draft cost, TPOT and speed-up, batch effects, errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from hwsim.errors import HwsimError, InfeasibleError
from hwsim.inference.deployment import make_deployment
from hwsim.inference.engine import decode_step_cost, make_forward
from hwsim.inference.memory import weight_bytes_per_gpu
from hwsim.inference.speculative import (
    EAGLE,
    MEDUSA,
    PUBLISHED_ACCEPTANCE,
    DraftHeads,
    acceptance_curve,
    speculative_decode,
    speculative_sweep,
    tokens_per_step,
)
from hwsim.inference.speculative_file import main, run_file
from hwsim.model.graph import forward_ops
from hwsim.perf.ladder import price_op

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "speculative-llama.yaml"
TARGET, DRAFT, HW = "llama-3.1-70b", "llama-3.1-8b", "h100-sxm"


# -- tokens per verify step ------------------------------------------------------------------


def test_iid_tokens_per_step_by_hand():
    # (1 - 0.8^5) / (1 - 0.8) = (1 - 0.32768) / 0.2 = 3.3616
    assert tokens_per_step(0.8, 4) == pytest.approx(3.3616, abs=1e-12)
    assert tokens_per_step(0.5, 1) == pytest.approx(1.5)  # 1 + 0.5
    assert tokens_per_step(0.0, 7) == 1.0  # every proposal rejected: the target's own token
    assert tokens_per_step(0.9, 0) == 1.0  # k = 0 is plain decoding


def test_curve_tokens_per_step_by_hand():
    # 1 + a1 + a1 a2 + a1 a2 a3 = 1 + 0.9 + 0.45 + 0.09
    assert tokens_per_step([0.9, 0.5, 0.2], 3) == pytest.approx(2.44)
    assert tokens_per_step([0.9, 0.5, 0.2], 2) == pytest.approx(2.35)  # first k positions only
    assert tokens_per_step([1.0, 1.0], 2) == 3.0  # certain acceptance: k + 1
    # a flat curve is the i.i.d. formula
    assert tokens_per_step([0.8] * 4, 4) == pytest.approx(tokens_per_step(0.8, 4))


def test_published_acceptances_are_sourced_and_resolve():
    assert PUBLISHED_ACCEPTANCE
    for name, p in PUBLISHED_ACCEPTANCE.items():
        assert p.name == name and "et al." in p.source
        assert all(0.0 <= a <= 1.0 for a in p.curve)
        assert acceptance_curve(name, len(p.curve) if not p.iid else 3)
    assert tokens_per_step("leviathan-t5xxl-t5small-ende-greedy", 7) == pytest.approx(
        (1 - 0.75**8) / 0.25
    )
    eagle = tokens_per_step("eagle-llama2chat70b-mtbench", 4)
    assert eagle == pytest.approx(
        1 + 0.75 + 0.75 * 0.69 + 0.75 * 0.69 * 0.65 + 0.75 * 0.69 * 0.65 * 0.64
    )


@pytest.mark.parametrize(
    "acceptance",
    [
        1.0,
        -0.1,
        1.5,
        float("nan"),
        float("inf"),
        "no-such-pair",
        [0.5, 1.2],
        [0.5, -0.1],
        True,
        None,
    ],
)
def test_bad_acceptance_is_a_clear_error(acceptance):
    with pytest.raises(InfeasibleError):
        acceptance_curve(acceptance, 2)


@pytest.mark.parametrize("k", [-1, 1.5, "3", None, True])
def test_bad_k_is_a_clear_error(k):
    with pytest.raises(InfeasibleError, match="k"):
        tokens_per_step(0.5, k)


def test_a_curve_shorter_than_k_is_refused():
    with pytest.raises(InfeasibleError, match="covers 2 positions"):
        tokens_per_step([0.8, 0.7], 3)
    with pytest.raises(InfeasibleError, match="covers 4 positions"):
        speculative_decode(TARGET, "eagle", HW, 5, "eagle-llama2chat70b-mtbench", tp=4)


# -- the priced mechanism --------------------------------------------------------------------


@pytest.fixture(scope="module")
def dep():
    return make_deployment(TARGET, HW, tp=4)


@pytest.mark.parametrize("batch,context", [(1, 2048), (32, 512), (256, 8192)])
def test_k_zero_is_plain_decode(dep, batch, context):
    r = speculative_decode(TARGET, DRAFT, HW, 0, 0.7, batch, context, tp=4)
    plain = float(decode_step_cost(dep, batch, context).time_s)
    assert r.baseline_tpot_s == pytest.approx(plain, rel=1e-12)
    assert r.tpot_s == pytest.approx(plain, rel=1e-12)
    assert r.speedup == pytest.approx(1.0) and r.tokens_per_step == 1.0
    assert r.t_draft_total_s == 0.0 and r.draft_weight_bytes_per_gpu == 0.0


def test_verify_is_a_k_plus_one_token_decode_with_logits_for_every_position(dep):
    k, batch, context = 4, 8, 1024
    r = speculative_decode(TARGET, DRAFT, HW, k, 0.7, batch, context, tp=4)
    fw = make_forward(dep, "decode", batch, k + 1, context + k)
    ops = forward_ops(fw, dep.pp)
    expected = 0.0
    for op in ops:
        if op.name == "lm_head":  # the graph's lm_head covers one position per sequence
            assert float(op.flops) == pytest.approx(2.0 * batch * 8192 * 128256 / 4)
            from dataclasses import replace

            op = replace(
                op,
                flops=op.flops * (k + 1),
                act_read_bytes=op.act_read_bytes * (k + 1),
                act_write_bytes=op.act_write_bytes * (k + 1),
            )
        expected += float(np.sum(price_op(dep.hardware, op).total_s))
    assert r.t_verify_s == pytest.approx(expected, rel=1e-12)
    assert r.t_verify_s > r.baseline_tpot_s


def test_draft_model_cost_is_k_sequential_decode_steps(dep):
    k, batch, context = 3, 4, 2000
    r = speculative_decode(TARGET, DRAFT, HW, k, 0.7, batch, context, tp=4)
    draft_dep = make_deployment(DRAFT, HW, tp=4)
    steps = [float(decode_step_cost(draft_dep, batch, context + i).time_s) for i in range(k)]
    assert r.t_draft_total_s == pytest.approx(sum(steps), rel=1e-12)
    assert r.t_draft_s == pytest.approx(sum(steps) / k, rel=1e-12)
    assert r.draft_weight_bytes_per_gpu == pytest.approx(weight_bytes_per_gpu(draft_dep))
    # a draft on one GPU: its own tp
    one = speculative_decode(TARGET, DRAFT, HW, k, 0.7, batch, context, draft_tp=1, tp=4)
    solo = make_deployment(DRAFT, HW, tp=1)
    assert one.t_draft_s == pytest.approx(
        np.mean([float(decode_step_cost(solo, batch, context + i).time_s) for i in range(k)])
    )


def test_tpot_and_speedup_formula():
    r = speculative_decode(TARGET, DRAFT, HW, 4, 0.8, 1, 2048, tp=4)
    assert r.tokens_per_step == pytest.approx(3.3616)
    assert r.tpot_s == pytest.approx((4 * r.t_draft_s + r.t_verify_s) / 3.3616)
    assert r.speedup == pytest.approx(r.baseline_tpot_s / r.tpot_s)
    assert r.tokens_per_s == pytest.approx(1 / r.tpot_s)
    assert r.speedup > 1.3  # memory-bound at batch 1: the verify costs about one step
    assert r.verify_cost_ratio < 1.05 and r.verify_bound == "memory"


def test_more_acceptance_is_never_slower():
    alphas = [0.0, 0.2, 0.5, 0.7, 0.9, 0.99]
    for batch in (1, 64):
        tpots = [
            speculative_decode(TARGET, DRAFT, HW, 4, a, batch, 2048, tp=4).tpot_s for a in alphas
        ]
        assert all(b <= a for a, b in zip(tpots, tpots[1:]))


def test_large_batches_make_the_verify_step_expensive():
    sweep = speculative_sweep(TARGET, DRAFT, HW, [4], 0.75, [1, 16, 256], 2048, tp=4)
    small, mid, large = sweep.results
    assert small.verify_cost_ratio < mid.verify_cost_ratio < large.verify_cost_ratio
    assert small.verify_cost_ratio < 1.05
    assert large.verify_cost_ratio > 2.0 and large.verify_bound == "compute"
    assert small.speedup > mid.speedup > large.speedup
    assert large.speedup < 1.0  # compute-bound: speculation costs more than it returns


def test_sweep_over_k_finds_the_best_k():
    ks = list(range(0, 9))
    sweep = speculative_sweep(TARGET, DRAFT, HW, ks, 0.75, [1, 512], 512, tp=4)
    for batch in (1, 512):
        rows = [r for r in sweep.results if r.batch == batch]
        assert [r.k for r in rows] == ks
        best = sweep.best(batch)
        assert best.tpot_s == min(r.tpot_s for r in rows)
    assert 0 < sweep.best(1).k < 8  # an interior optimum: E saturates, draft cost grows with k
    assert sweep.best(512).k == 0  # compute-bound: plain decoding wins
    # the sweep prices exactly what one call does
    one = speculative_decode(TARGET, DRAFT, HW, 3, 0.75, 1, 512, tp=4)
    assert sweep.results[3].tpot_s == pytest.approx(one.tpot_s, rel=1e-12)
    assert len(sweep.to_records()) == 18


def test_draft_heads_cost_and_weights(dep):
    batch, context = 2, 4096
    eagle = speculative_decode(TARGET, EAGLE, HW, 3, 0.8, batch, context, tp=4)
    by_name = speculative_decode(TARGET, "eagle", HW, 3, 0.8, batch, context, tp=4)
    assert eagle.tpot_s == by_name.tpot_s and eagle.draft == "heads:eagle"
    draft_model = speculative_decode(TARGET, DRAFT, HW, 3, 0.8, batch, context, tp=4)
    assert eagle.t_draft_s < draft_model.t_draft_s  # one layer + LM head < an 8B model
    # heads with nothing in them cost nothing; the cost adds up from its parts
    empty = DraftHeads("none", layers=0.0, dense_d2=0.0, lm_heads=0.0)
    free = speculative_decode(TARGET, empty, HW, 3, 0.8, batch, context, tp=4)
    assert free.t_draft_total_s == 0.0
    two = DraftHeads("two-layers", layers=2.0, dense_d2=0.0, lm_heads=0.0)
    one = DraftHeads("one-layer", layers=1.0, dense_d2=0.0, lm_heads=0.0)
    t2 = speculative_decode(TARGET, two, HW, 1, 0.8, batch, context, tp=4).t_draft_s
    t1 = speculative_decode(TARGET, one, HW, 1, 0.8, batch, context, tp=4).t_draft_s
    assert t2 == pytest.approx(2 * t1)
    assert t1 == pytest.approx(float(decode_step_cost(dep, batch, context).time_s) / 80, rel=0.1)
    # Medusa holds one head (with its own LM-head-sized projection) per position
    m2 = speculative_decode(TARGET, MEDUSA, HW, 2, 0.8, 1, 2048, tp=4).draft_weight_bytes_per_gpu
    m4 = speculative_decode(TARGET, MEDUSA, HW, 4, 0.8, 1, 2048, tp=4).draft_weight_bytes_per_gpu
    assert m4 == pytest.approx(2 * m2)
    per_head = (8192**2 + 8192 * 128256) / 4 * 2  # bf16, tp 4
    assert m2 == pytest.approx(2 * per_head)
    e2 = speculative_decode(TARGET, EAGLE, HW, 2, 0.8, 1, 2048, tp=4).draft_weight_bytes_per_gpu
    e4 = speculative_decode(TARGET, EAGLE, HW, 4, 0.8, 1, 2048, tp=4).draft_weight_bytes_per_gpu
    assert e2 == e4 > 0  # one head reused for every position
    with pytest.raises(InfeasibleError, match="layers"):
        DraftHeads("bad", layers=-1.0)


def test_bad_inputs_of_the_priced_call():
    with pytest.raises(InfeasibleError, match="vocabulary"):
        speculative_decode(TARGET, "llama-2-7b", HW, 2, 0.7, tp=4)  # 32000 vs 128256 tokens
    with pytest.raises(InfeasibleError, match="batch"):
        speculative_decode(TARGET, DRAFT, HW, 2, 0.7, 0, tp=4)
    with pytest.raises(InfeasibleError, match="context"):
        speculative_decode(TARGET, DRAFT, HW, 2, 0.7, 1, 2.5, tp=4)
    with pytest.raises(InfeasibleError, match="alpha"):
        speculative_decode(TARGET, DRAFT, HW, 2, 1.0, tp=4)
    with pytest.raises(InfeasibleError, match=">= 0"):
        speculative_decode(TARGET, DRAFT, HW, -1, 0.5, tp=4)
    with pytest.raises(InfeasibleError, match="empty"):
        speculative_sweep(TARGET, DRAFT, HW, [], 0.5, tp=4)
    with pytest.raises(InfeasibleError, match="unknown deployment setting"):
        speculative_decode(TARGET, DRAFT, HW, 2, 0.5, tpp=4)


def test_the_example_file_runs(capsys):
    model, heads = run_file(EXAMPLE)
    assert {r.batch for r in model.results} >= {1, 256}
    assert model.best(1).speedup > 1.0 and heads.best(1).speedup > model.best(1).speedup
    assert {r.draft for r in heads.results} == {"heads:eagle"}
    assert max(r.k for r in heads.results) == 4
    assert main([str(EXAMPLE)]) == 0
    out = capsys.readouterr().out
    assert "best k at batch 1" in out and "speed-up" in out


def test_a_bad_example_file_is_an_error_not_a_traceback(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    head = "target: llama-3.1-70b\nhardware: h100-sxm\n"
    bad.write_text(head + "candidates: [{draft: eagle, acceptance: 0.7}]\nsurprise: 1\n")
    with pytest.raises(HwsimError, match="unknown keys"):
        run_file(bad)
    bad.write_text(head + "candidates: [{draft: eagle}]\n")
    with pytest.raises(HwsimError, match="candidates.0.*missing keys"):
        run_file(bad)
    assert main([str(bad)]) == 2
    assert "error:" in capsys.readouterr().err
    assert main([]) == 2
