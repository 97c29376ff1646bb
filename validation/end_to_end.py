"""End-to-end check: time a whole dense decoder (random weights) and compare with hwsim.

    python -m validation.end_to_end --model llama-3.1-8b --out OUT

Builds a Llama-style decoder from an hwsim model profile (RMSNorm, fused QKV projection,
RoPE, GQA attention through ``scaled_dot_product_attention`` over a pre-allocated KV cache,
SwiGLU MLP, last-position logits: the ops :mod:`hwsim.model.graph` prices) with random bf16
weights, then times prefill (batch B, prompt S) and one decode step (batch B, context C) with
CUDA events: warm-up, repeats, median. Decode is timed eagerly and replayed from a CUDA graph
(how serving engines remove per-kernel launch gaps). Writes ``end_to_end.csv`` with a
metadata sidecar; ``benchmarks/bench_end_to_end.py`` compares it with hwsim's predictions.

Dense gated-FFN attention models only (what the check needs); it runs on the CPU too, with
``--layers`` to shrink the model, so the code path is tested without a GPU.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from hwsim.model.load import load_model
from validation.harness import Device, Timing, make_timer

PREFILL = ((1, 512), (1, 2048), (4, 2048), (1, 8192), (16, 1024))
DECODE = ((1, 2048), (8, 2048), (32, 2048), (64, 2048), (16, 8192), (1, 32768))
FIELDS = ("phase", "mode", "batch", "tokens", "context", "median_s", "p10_s", "p90_s", "repeats")


@dataclass
class Shapes:
    layers: int
    d: int
    heads: int
    kv_heads: int
    head_dim: int
    ffn: int
    vocab: int


def shapes_of(model_id: str, layers: int | None) -> Shapes:
    m = load_model(model_id)
    if m.ffn.type != "gated" or m.ffn.moe is not None or m.mixer.get("kind") != "attention":
        raise SystemExit(f"{model_id}: the end-to-end check builds dense gated attention models")
    return Shapes(
        layers or m.n_layers,
        m.d_model,
        m.n_heads,
        m.n_kv_heads,
        m.head_dim,
        m.ffn.intermediate_size,
        m.vocab_size,
    )


class Decoder:
    """Random-weight decoder; ``forward(tokens, pos)`` runs S new tokens at cache offset pos."""

    def __init__(self, s: Shapes, max_context: int, device: str, dtype):
        g = torch.Generator(device=device).manual_seed(0)
        self.generator, self.device = g, device

        def w(*shape):
            return torch.empty(*shape, device=device, dtype=dtype).normal_(0, 0.02, generator=g)

        self.s, self.dtype = s, dtype
        qkv = (s.heads + 2 * s.kv_heads) * s.head_dim
        self.embed = w(s.vocab, s.d)
        self.layers = [
            dict(
                wqkv=w(qkv, s.d),
                wo=w(s.d, s.heads * s.head_dim),
                w_gate_up=w(2 * s.ffn, s.d),
                w_down=w(s.d, s.ffn),
                n1=torch.ones(s.d, device=device, dtype=dtype),
                n2=torch.ones(s.d, device=device, dtype=dtype),
            )
            for _ in range(s.layers)
        ]
        self.final_norm = torch.ones(s.d, device=device, dtype=dtype)
        self.lm_head = w(s.vocab, s.d)
        self.k_cache = self.v_cache = None
        inv = 1.0 / (500000.0 ** (torch.arange(0, s.head_dim, 2, device=device) / s.head_dim))
        angles = torch.outer(torch.arange(max_context, device=device, dtype=torch.float32), inv)
        self.cos = torch.cat([angles.cos()] * 2, -1).to(dtype)
        self.sin = torch.cat([angles.sin()] * 2, -1).to(dtype)

    def allocate_cache(self, batch: int, context: int) -> None:
        """A KV cache of random values for ``batch`` sequences of ``context`` tokens."""
        self.k_cache = self.v_cache = None
        if self.device.startswith("cuda"):
            torch.cuda.empty_cache()
        s = self.s
        shape = (s.layers, batch, s.kv_heads, context, s.head_dim)
        self.k_cache = torch.empty(shape, device=self.device, dtype=self.dtype).normal_(
            generator=self.generator
        )
        self.v_cache = torch.empty_like(self.k_cache).normal_(generator=self.generator)

    def _rope(self, x, pos: int, n: int):
        cos, sin = self.cos[pos : pos + n], self.sin[pos : pos + n]
        half = x.shape[-1] // 2
        rotated = torch.cat([-x[..., half:], x[..., :half]], -1)
        return x * cos + rotated * sin

    def forward(self, tokens: torch.Tensor, pos: int) -> torch.Tensor:
        s = self.s
        b, n = tokens.shape
        x = self.embed[tokens]
        for i, lw in enumerate(self.layers):
            h = F.rms_norm(x, (s.d,), lw["n1"], eps=1e-5)
            qkv = h @ lw["wqkv"].t()
            q, k, v = qkv.split(
                [s.heads * s.head_dim, s.kv_heads * s.head_dim, s.kv_heads * s.head_dim], -1
            )
            q = self._rope(q.view(b, n, s.heads, s.head_dim).transpose(1, 2), pos, n)
            k = self._rope(k.view(b, n, s.kv_heads, s.head_dim).transpose(1, 2), pos, n)
            self.k_cache[i, :b, :, pos : pos + n] = k
            self.v_cache[i, :b, :, pos : pos + n] = v.view(b, n, s.kv_heads, s.head_dim).transpose(
                1, 2
            )
            keys = self.k_cache[i, :b, :, : pos + n]
            values = self.v_cache[i, :b, :, : pos + n]
            a = F.scaled_dot_product_attention(q, keys, values, is_causal=n > 1, enable_gqa=True)
            x = x + a.transpose(1, 2).reshape(b, n, -1) @ lw["wo"].t()
            h = F.rms_norm(x, (s.d,), lw["n2"], eps=1e-5)
            gate, up = (h @ lw["w_gate_up"].t()).chunk(2, -1)
            x = x + (F.silu(gate) * up) @ lw["w_down"].t()
        last = F.rms_norm(x[:, -1], (s.d,), self.final_norm, eps=1e-5)
        return (last @ self.lm_head.t()).float()


def time_call(fn, device: str, warmup: int, repeats: int) -> tuple[float, float, float, int]:
    """Median / p10 / p90 seconds of fn(): the harness's timers (CUDA events on a GPU, a
    synchronised clock on the CPU), one call per sample after ``warmup`` calls."""
    dev = Device("cuda" if device.startswith("cuda") else "cpu", device)
    timer = make_timer(dev)
    for _ in range(warmup):
        fn()
    t = Timing(tuple(timer.time(fn, 1) for _ in range(repeats)), 1)
    return t.median_s, t.p10_s, t.p90_s, t.repeats


def check_logits(logits: torch.Tensor, what: str) -> None:
    if not bool(torch.isfinite(logits).all()):
        raise RuntimeError(f"{what}: logits have NaN/inf; the decoder is broken, not timed")


def run(args) -> list[dict]:
    device = "cuda" if torch.cuda.is_available() else "cpu"
    dtype = torch.bfloat16
    s = shapes_of(args.model, args.layers)
    prefill = [p for p in PREFILL if p[0] * p[1] <= args.max_tokens]
    decode = [d for d in DECODE if d[0] * d[1] <= args.max_kv_tokens]
    max_ctx = max([c for _, c in prefill + decode]) + 1
    model = Decoder(s, max_ctx, device, dtype)
    gen = torch.Generator(device=device).manual_seed(1)
    rows: list[dict] = []
    with torch.inference_mode():
        for b, n in prefill:
            tokens = torch.randint(0, s.vocab, (b, n), generator=gen, device=device)
            model.allocate_cache(b, n)
            check_logits(model.forward(tokens, 0), f"prefill {b}x{n}")
            t = time_call(lambda t=tokens: model.forward(t, 0), device, args.warmup, args.repeats)
            rows.append(_row("prefill", "eager", b, n, n, t))
            print(rows[-1], flush=True)
        for b, ctx in decode:
            tokens = torch.randint(0, s.vocab, (b, 1), generator=gen, device=device)
            model.allocate_cache(b, ctx)
            pos = ctx - 1  # the step sees ctx keys, itself included (hwsim's convention)
            check_logits(model.forward(tokens, pos), f"decode {b}@{ctx}")
            t = time_call(
                lambda t=tokens, p=pos: model.forward(t, p), device, args.warmup, args.repeats
            )
            rows.append(_row("decode", "eager", b, 1, ctx, t))
            print(rows[-1], flush=True)
            if device == "cuda":
                rows += _graph_row(model, tokens, pos, b, ctx, args)
    return rows


def _graph_row(model, tokens, pos, b, ctx, args) -> list[dict]:
    """One decode step captured in a CUDA graph and timed by replay (skipped if capture fails)."""
    try:
        stream = torch.cuda.Stream()
        stream.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(stream):
            for _ in range(2):
                model.forward(tokens, pos)
        torch.cuda.current_stream().wait_stream(stream)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            model.forward(tokens, pos)
        t = time_call(graph.replay, "cuda", args.warmup, args.repeats)
    except RuntimeError as exc:
        print(f"decode {b}@{ctx}: CUDA graph capture failed ({exc}); eager only", flush=True)
        return []
    row = _row("decode", "cuda_graph", b, 1, ctx, t)
    print(row, flush=True)
    return [row]


def _row(phase, mode, b, n, ctx, t) -> dict:
    median, p10, p90, repeats = t
    return dict(
        phase=phase,
        mode=mode,
        batch=b,
        tokens=n,
        context=ctx,
        median_s=median,
        p10_s=p10,
        p90_s=p90,
        repeats=repeats,
    )


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="llama-3.1-8b")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--layers", type=int, default=None, help="fewer layers (CPU smoke runs)")
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--repeats", type=int, default=15)
    ap.add_argument("--max-tokens", type=int, default=16384, help="largest prefill B x S")
    ap.add_argument("--max-kv-tokens", type=int, default=131072, help="largest decode B x C")
    args = ap.parse_args(argv)
    rows = run(args)
    args.out.mkdir(parents=True, exist_ok=True)
    with open(args.out / "end_to_end.csv", "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=FIELDS)
        writer.writeheader()
        writer.writerows(rows)
    meta = {
        "model": args.model,
        "layers": args.layers or load_model(args.model).n_layers,
        "device_name": torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu",
        "torch_version": torch.__version__,
        "dtype": "bf16",
        "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "warmup": args.warmup,
        "repeats": args.repeats,
    }
    (args.out / "end_to_end.json").write_text(json.dumps(meta, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
