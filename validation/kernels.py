"""The measured kernels: torch (and, on a GPU, Triton) implementations of hwsim's kernels.

Each :class:`Case` names an hwsim kernel (:mod:`hwsim.perf.kernels`), an implementation
(``variant``) and the kernel's parameters, so the predictor prices exactly the measured work.
:func:`prepare` returns a :class:`Prepared` kernel: ``step()`` runs one call on the next set
of rotated random inputs and ``check()`` compares one call against a float64 reference.

Variants: ``torch.mm`` (GEMM; fp8 through ``torch._scaled_mm``), ``torch.sdpa`` (attention with
torch's own backend choice) and ``torch.sdpa.{math,efficient,flash}`` (one backend forced via
``torch.nn.attention.sdpa_kernel``), ``torch.copy``, ``torch.rms_norm`` and
``torch.layer_norm`` (a fused norm with RMSNorm's traffic, for backends where torch's RMSNorm is
not fused, e.g. the CPU), ``triton.matmul``,
``triton.attention`` (:mod:`validation.triton_kernels`). All-reduce lives in
:func:`all_reduce_timings` (one process per GPU).
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F

from hwsim.perf.kernels import kernel_params
from validation.harness import Device, InputPool, Rotation, check_close

TORCH_DTYPES = {
    "fp32": torch.float32,
    "tf32": torch.float32,
    "bf16": torch.bfloat16,
    "fp16": torch.float16,
    "fp8": getattr(torch, "float8_e4m3fn", None),
}

SDPA_BACKENDS = {"math": "MATH", "efficient": "EFFICIENT_ATTENTION", "flash": "FLASH_ATTENTION"}


@dataclass(frozen=True)
class Case:
    """One shape of one kernel implementation to measure."""

    kernel: str
    variant: str
    params: dict[str, Any] = field(hash=False)

    def __post_init__(self):
        object.__setattr__(self, "params", kernel_params(self.kernel, self.params))

    @property
    def stack(self) -> str:
        return self.variant.split(".", 1)[0]

    def label(self) -> str:
        shape = " ".join(f"{k}={_short(v)}" for k, v in self.params.items())
        return f"{self.kernel} [{self.variant}] {shape}"


def _short(v: Any) -> str:
    if isinstance(v, bool):
        return "T" if v else "F"
    if isinstance(v, int) and v >= 2**20 and v % 2**20 == 0:
        return f"{v // 2**20}Mi"
    if isinstance(v, int) and v >= 2**10 and v % 2**10 == 0:
        return f"{v // 2**10}Ki"
    return str(v)


@dataclass(frozen=True)
class Prepared:
    step: Callable[[], Any]
    check: Callable[[], float]
    context: Callable[[], Any] = contextlib.nullcontext


BUILDERS: dict[str, Callable[[Case, Device, InputPool], Prepared]] = {}


def builder(kernel: str) -> Callable:
    def deco(fn):
        if kernel in BUILDERS:
            raise RuntimeError(f"kernel builder {kernel!r} registered twice")
        BUILDERS[kernel] = fn
        return fn

    return deco


def prepare(case: Case, device: Device, pool: InputPool) -> Prepared:
    try:
        build = BUILDERS[case.kernel]
    except KeyError:
        raise ValueError(f"no torch implementation of kernel {case.kernel!r}") from None
    return build(case, device, pool)


def torch_dtype(name: str) -> torch.dtype:
    dt = TORCH_DTYPES.get(name)
    if dt is None:
        raise ValueError(f"dtype {name!r} is not available in this torch build")
    return dt


def _tf32(dtype: str):
    """fp32 GEMMs on a GPU run as TF32 only when asked; 'tf32' asks, 'fp32' forbids."""

    @contextlib.contextmanager
    def ctx():
        if not torch.cuda.is_available():
            yield
            return
        old = torch.backends.cuda.matmul.allow_tf32
        torch.backends.cuda.matmul.allow_tf32 = dtype == "tf32"
        try:
            yield
        finally:
            torch.backends.cuda.matmul.allow_tf32 = old

    return ctx


# -- GEMM ------------------------------------------------------------------------------------
@builder("gemm")
def _gemm(case: Case, device: Device, pool: InputPool) -> Prepared:
    """C = A @ W^T with W stored out x in (the nn.Linear layout): m x k times k x n."""
    p = case.params
    m, n, k, dtype = p["m"], p["n"], p["k"], p["dtype"]
    ins = pool.slots(torch_dtype(dtype), [(m, k), (n, k)])
    out_dtype = torch.bfloat16 if dtype == "fp8" else torch_dtype(dtype)
    outs = pool.outputs(out_dtype, [(m, n)], len(ins))
    if case.variant == "torch.mm" and dtype == "fp8":
        one = torch.ones((), device=device.torch_device)

        def run(i: int) -> None:
            a, w = ins[i]
            outs[i][0].copy_(
                torch._scaled_mm(a, w.t(), scale_a=one, scale_b=one, out_dtype=torch.bfloat16)
            )
    elif case.variant == "torch.mm":

        def run(i: int) -> None:
            a, w = ins[i]
            torch.mm(a, w.t(), out=outs[i][0])
    elif case.variant == "triton.matmul":
        from validation import triton_kernels

        def run(i: int) -> None:
            a, w = ins[i]
            triton_kernels.matmul(a, w.t(), out=outs[i][0])
    else:
        raise ValueError(f"unknown gemm variant {case.variant!r}")

    def check() -> float:
        with _tf32(dtype)():
            run(0)
        a, w = ins[0]
        r, c = min(m, 64), min(n, 64)
        ref = a[:r].double() @ w[:c].double().t()
        return check_close(outs[0][0][:r, :c], ref, dtype, case.label())

    rot = Rotation(len(ins))
    return Prepared(lambda: run(rot.next()), check, _tf32(dtype))


# -- attention -------------------------------------------------------------------------------
def _sdpa_context(variant: str):
    if variant in ("torch.sdpa", "triton.attention"):
        return contextlib.nullcontext
    backend_name = SDPA_BACKENDS.get(variant.removeprefix("torch.sdpa."))
    if backend_name is None:
        raise ValueError(f"unknown attention variant {variant!r}")
    from torch.nn.attention import SDPBackend, sdpa_kernel

    backend = getattr(SDPBackend, backend_name)
    return lambda: sdpa_kernel(backend)


def _attention(case: Case, pool: InputPool, q_len: int, kv_len: int, causal: bool) -> Prepared:
    p = case.params
    b, h, hk, d, dtype = p["batch"], p["heads"], p["kv_heads"], p["head_dim"], p["dtype"]
    td = torch_dtype(dtype)
    ins = pool.slots(td, [(b, h, q_len, d), (b, hk, kv_len, d), (b, hk, kv_len, d)])
    results: list[Any] = [None]
    if case.variant == "triton.attention":
        from validation import triton_kernels

        def run(i: int) -> None:
            q, k, v = ins[i]
            results[0] = triton_kernels.attention(q, k, v, causal=causal)
    else:
        gqa = {"enable_gqa": True} if h != hk else {}

        def run(i: int) -> None:
            q, k, v = ins[i]
            results[0] = F.scaled_dot_product_attention(q, k, v, is_causal=causal, **gqa)

    context = _sdpa_context(case.variant)

    def check() -> float:
        with context():
            run(0)
        q, k, v = ins[0]
        rows = torch.arange(max(0, q_len - 64), q_len)  # the last queries see every key
        err = 0.0
        for head in sorted({0, h - 1}):  # the reference runs on the host, in float64
            kv = head // (h // hk)
            qh = q[0, head].cpu()[rows].double()
            scores = qh @ k[0, kv].cpu().double().t() / math.sqrt(d)
            if causal:
                keys = torch.arange(kv_len)
                offset = kv_len - q_len  # bottom-right aligned, as torch's is_causal for q == kv
                scores = scores.masked_fill(keys[None, :] > rows[:, None] + offset, float("-inf"))
            ref = torch.softmax(scores, dim=-1) @ v[0, kv].cpu().double()
            out = results[0][0, head].cpu()[rows]
            err = max(err, check_close(out, ref, dtype, case.label()))
        return err

    rot = Rotation(len(ins))
    return Prepared(lambda: run(rot.next()), check, context)


@builder("attention_prefill")
def _attention_prefill(case: Case, device: Device, pool: InputPool) -> Prepared:
    s = case.params["seq_len"]
    return _attention(case, pool, s, s, case.params["causal"])


@builder("attention_decode")
def _attention_decode(case: Case, device: Device, pool: InputPool) -> Prepared:
    return _attention(case, pool, 1, case.params["context_len"], False)


# -- bandwidth kernels -----------------------------------------------------------------------
@builder("copy")
def _copy(case: Case, device: Device, pool: InputPool) -> Prepared:
    td = torch_dtype(case.params["dtype"])
    numel = case.params["bytes"] // torch.empty((), dtype=td).element_size()
    ins = pool.slots(td, [(numel,)])
    outs = pool.outputs(td, [(numel,)], len(ins))

    def run(i: int) -> None:
        outs[i][0].copy_(ins[i][0])

    def check() -> float:
        run(0)
        if not torch.equal(outs[0][0], ins[0][0]):
            from validation.harness import KernelCheckError

            raise KernelCheckError(f"{case.label()}: the copy differs from its source; not timed")
        return 0.0

    rot = Rotation(len(ins))
    return Prepared(lambda: run(rot.next()), check)


@builder("norm")
def _norm(case: Case, device: Device, pool: InputPool) -> Prepared:
    t, hidden, dtype = case.params["tokens"], case.params["hidden"], case.params["dtype"]
    ins = pool.slots(torch_dtype(dtype), [(t, hidden), (hidden,)])
    results: list[Any] = [None]
    eps = 1e-6

    if case.variant == "torch.rms_norm":

        def run(i: int) -> None:
            x, w = ins[i]
            results[0] = F.rms_norm(x, (hidden,), w, eps=eps)

        def reference(x64, w64):
            return x64 * torch.rsqrt(x64.pow(2).mean(-1, keepdim=True) + eps) * w64
    elif case.variant == "torch.layer_norm":  # fused on every torch backend; RMSNorm's traffic

        def run(i: int) -> None:
            x, w = ins[i]
            results[0] = F.layer_norm(x, (hidden,), w, None, eps=eps)

        def reference(x64, w64):
            centred = x64 - x64.mean(-1, keepdim=True)
            return centred * torch.rsqrt(centred.pow(2).mean(-1, keepdim=True) + eps) * w64
    else:
        raise ValueError(f"unknown norm variant {case.variant!r}")

    def check() -> float:
        run(0)
        x, w = ins[0]
        ref = reference(x[:64].double(), w.double())
        return check_close(results[0][:64], ref, dtype, case.label())

    rot = Rotation(len(ins))
    return Prepared(lambda: run(rot.next()), check)


# -- all-reduce (one process per GPU) --------------------------------------------------------
def all_reduce_timings(sizes_bytes: list[int], repeats: int = 20) -> dict[int, list[float]]:
    """Seconds per bf16 all-reduce of each size over every visible GPU (NCCL), from rank 0.

    Returns {} on a machine with fewer than 2 GPUs: nothing to measure.
    """
    world = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if world < 2:
        return {}
    import tempfile

    import torch.multiprocessing as mp

    with tempfile.TemporaryDirectory() as tmp:
        mp.spawn(_all_reduce_worker, args=(world, sizes_bytes, repeats, tmp), nprocs=world)
        return torch.load(f"{tmp}/timings.pt")


def _all_reduce_worker(rank: int, world: int, sizes: list[int], repeats: int, tmp: str) -> None:
    import torch.distributed as dist

    torch.cuda.set_device(rank)
    dist.init_process_group(
        "nccl", init_method=f"file://{tmp}/rendezvous", rank=rank, world_size=world
    )
    probe = torch.full((1024,), float(rank + 1), device=f"cuda:{rank}")
    dist.all_reduce(probe)
    if not torch.allclose(probe, torch.full_like(probe, world * (world + 1) / 2)):
        raise RuntimeError(f"all-reduce check failed on rank {rank}: got {probe[0].item()}")
    out: dict[int, list[float]] = {}
    for size in sizes:
        x = torch.randn(size // 2, dtype=torch.bfloat16, device=f"cuda:{rank}")
        for _ in range(5):
            dist.all_reduce(x)
            x.div_(world)  # keep values bounded; outside the timed region below
        samples = []
        for _ in range(repeats):
            dist.barrier()
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            dist.all_reduce(x)
            end.record()
            end.synchronize()
            samples.append(start.elapsed_time(end) / 1e3)
            x.div_(world)
        out[size] = samples
    if rank == 0:
        torch.save(out, f"{tmp}/timings.pt")
    dist.destroy_process_group()
