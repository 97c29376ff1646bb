"""Speculative decoding priced by hwsim: speed-up vs k, vs batch, and against published runs.

1. Llama 3.1 70B (TP 4, H100 SXM) with Llama 3.1 8B as the draft at alpha 0.75 (LaMDA
   137B / 8B, Leviathan et al. 2023 Table 3): speed-up vs k at batch 1, and vs batch.
2. EAGLE on LLaMA2-Chat 70B, the paper's own setup (Li et al. 2024, arXiv 2401.15077:
   4 x A100 40G, MT-bench, temperature 0): its published speed-ups at batch 1-4 (its batch
   table: 3.01x, 2.81x, 2.50x, 2.40x; mean acceptance length tau 3.81 with its draft tree,
   per-position acceptance 0.75 / 0.69 / 0.65 / 0.64) against hwsim's llama-2-70b (the same
   architecture) at TP 4 on a100-40gb-sxm with EAGLE heads: once as a chain of k = 4 with
   the published curve (E = 2.82), once with the tree's tau (a flat curve whose E is 3.81).
3. Chen et al. 2023 (arXiv 2302.01318, Table 1): Chinchilla 70B with a 4B draft on 16 TPU v4,
   K = 4, batch 1: target 14.1 ms/token, draft 1.8 ms/token (c = 0.128), speed-ups 1.92x
   (XSum, nucleus) - 2.46x (HumanEval). hwsim's c for 70B / 8B on H100 TP 4 and the alpha
   Chen's speed-ups imply through TPOT = (K c + 1) t / E.

Run: python -m benchmarks.bench_speculative
"""

from __future__ import annotations

import time

from hwsim.inference.speculative import (
    EAGLE,
    speculative_decode,
    speculative_sweep,
    tokens_per_step,
)

EAGLE_PUBLISHED = {1: 3.01, 2: 2.81, 3: 2.50, 4: 2.40}  # LLaMA2-Chat 70B, MT-bench, T = 0
EAGLE_TAU = 3.81
CHEN_C = 1.8 / 14.1
CHEN_SPEEDUPS = {"XSum nucleus": 1.92, "XSum greedy": 2.01, "HumanEval nucleus": 2.46}


def flat_alpha_for(e: float, k: int) -> float:
    """The i.i.d. alpha whose E over k proposals equals ``e`` (bisection)."""
    lo, hi = 0.0, 1.0 - 1e-12
    for _ in range(100):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if tokens_per_step(mid, k) < e else (lo, mid)
    return (lo + hi) / 2


def section_k_and_batch() -> None:
    print("1. llama-3.1-70b (TP 4, h100-sxm), draft llama-3.1-8b (TP 4), alpha 0.75, context 2048")
    batches = [1, 8, 32, 128, 256]
    sweep = speculative_sweep(
        "llama-3.1-70b", "llama-3.1-8b", "h100-sxm", range(0, 9), 0.75, batches, 2048, tp=4
    )
    print(f"{'k':>3} " + " ".join(f"{'b=' + str(b):>8}" for b in (1, 8, 32, 128, 256)))
    for k in range(0, 9):
        row = [r for r in sweep.results if r.k == k]
        print(f"{k:>3} " + " ".join(f"{r.speedup:>7.2f}x" for r in row))
    print(
        f"{'best':>4}" + " ".join(f"{'k=' + str(sweep.best(b).k):>8}" for b in (1, 8, 32, 128, 256))
    )
    ratios = [
        f"b={r.batch} {r.verify_cost_ratio:.2f} ({r.verify_bound})"
        for r in sweep.results
        if r.k == 4
    ]
    print("verify step / plain step at k = 4: " + ", ".join(ratios))
    one = speculative_decode("llama-3.1-70b", "llama-3.1-8b", "h100-sxm", 1, 0.75, 1, 2048, tp=4)
    print(f"draft / target step time c = {one.t_draft_s / one.baseline_tpot_s:.3f}")
    print()


def section_eagle() -> None:
    print("2. EAGLE, LLaMA2-Chat 70B on 4 x A100 40G, MT-bench, T = 0 (Li et al. 2024)")
    flat = flat_alpha_for(EAGLE_TAU, 4)
    chain_e = tokens_per_step("eagle-llama2chat70b-mtbench", 4)
    print(
        f"   chain E (k = 4, published curve) = {chain_e:.2f}; tree tau = {EAGLE_TAU} "
        f"(flat alpha {flat:.3f} at k = 4)"
    )
    print(f"{'batch':>5} {'published':>9} {'hwsim chain':>11} {'hwsim E=tau':>11}")
    for batch, published in EAGLE_PUBLISHED.items():
        common = ("llama-2-70b", EAGLE, "a100-40gb-sxm", 4)
        chain = speculative_decode(*common, "eagle-llama2chat70b-mtbench", batch, 1024, tp=4)
        tree = speculative_decode(*common, flat, batch, 1024, tp=4)
        print(f"{batch:>5} {published:>8.2f}x {chain.speedup:>10.2f}x {tree.speedup:>10.2f}x")
    print()


def section_chen() -> None:
    print("3. Chen et al. 2023: Chinchilla 70B + 4B draft, 16 TPU v4, K = 4, batch 1")
    print(f"   published c = 1.8 / 14.1 = {CHEN_C:.3f}")
    for task, s in CHEN_SPEEDUPS.items():
        e = s * (4 * CHEN_C + 1)  # TPOT = (K c + 1) t / E with t_verify ~ t
        alpha = flat_alpha_for(e, 4)
        ours = speculative_decode(
            "llama-3.1-70b", "llama-3.1-8b", "h100-sxm", 4, alpha, 1, 2048, tp=4
        )
        c = ours.t_draft_s / ours.baseline_tpot_s
        print(
            f"   {task:<18} speed-up {s:.2f}x -> E {e:.2f}, alpha {alpha:.2f}; hwsim 70B/8B "
            f"H100 TP 4 at that alpha: {ours.speedup:.2f}x (c {c:.3f})"
        )
    print()


def main() -> None:
    t0 = time.perf_counter()
    section_k_and_batch()
    section_eagle()
    section_chen()
    print(f"({time.perf_counter() - t0:.2f} s)")


if __name__ == "__main__":
    main()
