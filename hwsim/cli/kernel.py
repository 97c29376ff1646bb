"""``hwsim kernel <name>``: what would one kernel take on a device (point value, band, rung)."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.table import Table

from hwsim.cli.common import console, handle_errors, print_json
from hwsim.errors import HwsimError
from hwsim.format import fmt_bytes, fmt_flops, fmt_range, fmt_time
from hwsim.units import UnitError, parse_quantity

HARDWARE = typer.Option(..., "--hardware", help="hardware id or YAML path (e.g. h100-sxm)")
MEASUREMENTS = typer.Option(
    None, "--measurements", help="measurements directory for the measured rung (optional)"
)
RUNG = typer.Option(
    "auto", "--rung", help="auto | measured | calibrated | datasheet | speed_of_light"
)
JSON = typer.Option(False, "--json", help="print one JSON object")
DTYPE = typer.Option("bf16", "--dtype", help="fp32 | tf32 | bf16 | fp16 | fp8 | int8")


def _show(
    kernel: str, hardware: str, measurements: Path | None, rung: str, json_out: bool, **params
) -> None:
    from hwsim.perf.ladder import kernel_time

    t = kernel_time(hardware, kernel, measurements=measurements, rung=rung, **params)
    if json_out:
        print_json(t.to_dict())
        return
    shape = " ".join(f"{k}={v}" for k, v in t.params.items())
    table = Table(
        title=f"{kernel} {shape} on {t.hardware}", title_justify="left", show_header=False
    )
    table.add_column(style="bold")
    table.add_column()
    table.add_row("time", fmt_time(t.time_s))
    table.add_row("band (p10-p90)", fmt_range(t.low_s, t.high_s))
    table.add_row("rung", t.rung)
    for name, why in t.refused.items():
        table.add_row(f"  {name} refused", why)
    table.add_row("bound", t.bound)
    if t.flops:
        table.add_row("FLOPs", f"{fmt_flops(t.flops)} ({fmt_flops(t.flops / t.time_s)}/s achieved)")
    table.add_row(
        "bytes moved", f"{fmt_bytes(t.bytes_moved)} ({fmt_bytes(t.bytes_moved / t.time_s)}/s)"
    )
    console.print(table)


def _bytes(text: str) -> int:
    try:
        value = parse_quantity(text, "bytes")
    except UnitError as exc:
        raise HwsimError(f"--bytes: {exc}") from None
    if value <= 0 or value != int(value):
        raise HwsimError(f"--bytes: {text!r} must be a positive whole number of bytes")
    return int(value)


def register(app: typer.Typer) -> None:
    kernel = typer.Typer(
        help="Time one kernel on a device: point value, p10-p90 band and the predictor rung.",
        no_args_is_help=True,
    )
    app.add_typer(kernel, name="kernel")

    @kernel.command("gemm")
    @handle_errors
    def gemm(
        m: int = typer.Option(..., "--m", help="rows of A and C (tokens)"),
        n: int = typer.Option(..., "--n", help="columns of W and C (output features)"),
        k: int = typer.Option(..., "--k", help="inner dimension (input features)"),
        dtype: str = DTYPE,
        hardware: str = HARDWARE,
        measurements: Path | None = MEASUREMENTS,
        rung: str = RUNG,
        json_out: bool = JSON,
    ) -> None:
        """C[m, n] = A[m, k] @ W[k, n]."""
        _show("gemm", hardware, measurements, rung, json_out, m=m, n=n, k=k, dtype=dtype)

    @kernel.command("attention-prefill")
    @handle_errors
    def attention_prefill(
        seq_len: int = typer.Option(..., "--seq-len", help="prompt tokens per sequence"),
        heads: int = typer.Option(..., "--heads", help="query heads"),
        kv_heads: int | None = typer.Option(None, "--kv-heads", help="KV heads (default: heads)"),
        head_dim: int = typer.Option(128, "--head-dim"),
        batch: int = typer.Option(1, "--batch"),
        causal: bool = typer.Option(True, "--causal/--no-causal"),
        dtype: str = DTYPE,
        hardware: str = HARDWARE,
        measurements: Path | None = MEASUREMENTS,
        rung: str = RUNG,
        json_out: bool = JSON,
    ) -> None:
        """Fused attention over whole prompts (FlashAttention-style I/O)."""
        _show(
            "attention_prefill",
            hardware,
            measurements,
            rung,
            json_out,
            batch=batch,
            heads=heads,
            kv_heads=kv_heads or heads,
            seq_len=seq_len,
            head_dim=head_dim,
            causal=causal,
            dtype=dtype,
        )

    @kernel.command("attention-decode")
    @handle_errors
    def attention_decode(
        context_len: int = typer.Option(..., "--context-len", help="KV-cache tokens per sequence"),
        heads: int = typer.Option(..., "--heads", help="query heads"),
        kv_heads: int | None = typer.Option(None, "--kv-heads", help="KV heads (default: heads)"),
        head_dim: int = typer.Option(128, "--head-dim"),
        batch: int = typer.Option(1, "--batch"),
        dtype: str = DTYPE,
        hardware: str = HARDWARE,
        measurements: Path | None = MEASUREMENTS,
        rung: str = RUNG,
        json_out: bool = JSON,
    ) -> None:
        """One new query per sequence against its KV cache."""
        _show(
            "attention_decode",
            hardware,
            measurements,
            rung,
            json_out,
            batch=batch,
            heads=heads,
            kv_heads=kv_heads or heads,
            context_len=context_len,
            head_dim=head_dim,
            dtype=dtype,
        )

    @kernel.command("copy")
    @handle_errors
    def copy(
        size: str = typer.Option(..., "--bytes", help="buffer size: 1073741824, 1 GiB, 512 MB"),
        dtype: str = DTYPE,
        hardware: str = HARDWARE,
        measurements: Path | None = MEASUREMENTS,
        rung: str = RUNG,
        json_out: bool = JSON,
    ) -> None:
        """Device-memory copy: the buffer is read once and written once."""
        _show("copy", hardware, measurements, rung, json_out, bytes=_bytes(size), dtype=dtype)

    @kernel.command("norm")
    @handle_errors
    def norm(
        tokens: int = typer.Option(..., "--tokens"),
        hidden: int = typer.Option(..., "--hidden"),
        dtype: str = DTYPE,
        hardware: str = HARDWARE,
        measurements: Path | None = MEASUREMENTS,
        rung: str = RUNG,
        json_out: bool = JSON,
    ) -> None:
        """RMSNorm of tokens x hidden (bandwidth-bound)."""
        _show(
            "norm",
            hardware,
            measurements,
            rung,
            json_out,
            tokens=tokens,
            hidden=hidden,
            dtype=dtype,
        )
