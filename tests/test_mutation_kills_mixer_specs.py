"""Mutation-kill tests of the state and latent mixers' specs: the smallest legal shapes are
accepted (every bound is inclusive) and shapes without a default must be given."""

from __future__ import annotations

import pytest
from mixer_op_tables import BF16, one_forward

from hwsim.model.mixers import build_mixer
from hwsim.profiles.loader import load_model_profile


def _fw(model, phase, new, ctx, *, tp=2, act=BF16, compute="bf16", sram=228 * 1024):
    return one_forward(model, phase, new, ctx, tp=tp, act=act, compute=compute, sram=sram)


RWKV7_MODEL = load_model_profile("rwkv-7")


# -- the smallest legal shapes are accepted (every bound is inclusive) -------------------------
@pytest.mark.parametrize(
    "spec",
    [
        {"kind": "mamba", "d_state": 1, "d_conv": 1, "expand": 1, "dt_rank": 1}
        | {"state_dtype_bits": 1, "conv_state_dtype_bits": 1},
        {"kind": "mamba2", "d_state": 1, "d_conv": 1, "expand": 1, "headdim": 1}
        | {"ngroups": 1, "chunk_size": 1, "state_dtype_bits": 1, "conv_state_dtype_bits": 1},
        {"kind": "mla", "q_lora_rank": 1, "kv_lora_rank": 1, "qk_nope_head_dim": 1}
        | {"qk_rope_head_dim": 0, "v_head_dim": 1},
        {"kind": "rwkv", "head_size": 1, "ffn_size": 1, "decay_lora_rank": 1, "a_lora_rank": 1}
        | {"v_lora_rank": 1, "gate_lora_rank": 1, "state_dtype_bits": 1}
        | {"shift_state_dtype_bits": 1},
        {"kind": "rwkv", "version": 6, "ffn_size": 1, "mix_lora_rank": 1, "decay_lora_rank": 1},
    ],
    ids=lambda s: s["kind"],
)
def test_smallest_shapes_are_accepted(spec):
    m = build_mixer(spec)
    for key, value in spec.items():
        assert getattr(m, key) == value


# -- shapes without a default must be given ----------------------------------------------------
MLA_SPEC = {"kind": "mla", "kv_lora_rank": 8, "qk_nope_head_dim": 4, "qk_rope_head_dim": 0}
MLA_SPEC |= {"v_head_dim": 4}


@pytest.mark.parametrize(
    "spec, field",
    [
        *[({k: v for k, v in MLA_SPEC.items() if k != f}, f) for f in list(MLA_SPEC)[1:]],
        ({"kind": "rwkv", "decay_lora_rank": 1, "a_lora_rank": 1, "v_lora_rank": 1}, "ffn_size"),
    ],
)
def test_shapes_without_defaults_are_required(spec, field):
    with pytest.raises(ValueError, match=rf"^mixer\.{field}: Field required"):
        build_mixer(spec)


@pytest.mark.parametrize(
    "spec, field",
    [
        (MLA_SPEC | {"q_lora_rank": 0}, "q_lora_rank"),
        *[
            (RWKV7_MODEL.mixer | {f: 0}, f)
            for f in ("decay_lora_rank", "a_lora_rank", "v_lora_rank", "gate_lora_rank")
        ],
        (
            {"kind": "rwkv", "version": 6, "ffn_size": 8, "decay_lora_rank": 1, "mix_lora_rank": 0},
            "mix_lora_rank",
        ),
    ],
)
def test_optional_ranks_are_still_positive(spec, field):
    # A LoRA rank may be absent (null) but never 0: a rank-0 LoRA is no LoRA.
    with pytest.raises(ValueError, match=rf"^mixer\.{field}\b.*greater than or equal to 1"):
        build_mixer(spec)
