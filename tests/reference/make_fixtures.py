#!/usr/bin/env python3
"""Builds the tiny random-weight SDXL-topology fixtures the Rust tests load.

Never run in CI. Regenerate with the pinned environment:

    python3 -m venv ~/refenv
    ~/refenv/bin/pip install -r tests/reference/requirements.txt
    ~/refenv/bin/python tests/reference/make_fixtures.py

Writes, under tests/fixtures/:
  tiny-sdxl/                 a diffusers folder (model_index.json, unet/, vae/, text_encoder/,
                             text_encoder_2/, scheduler/), weights as *.fp16.safetensors
  tiny-sdxl.safetensors      the same weights as one single file in the original SGM/LDM layout
                             (model.diffusion_model.*, conditioner.embedders.{0,1}.*,
                             first_stage_model.*), written by our own converter below and proven
                             by converting it back with diffusers' own single-file code.

The topology is SDXL's (three UNet levels: DownBlock2D + two CrossAttnDownBlock2D, a cross-attention
mid block, two CrossAttnUpBlock2D + UpBlock2D, text_time additional embedding, CLIP-L with
quick_gelu and OpenCLIP-bigG-style encoder with gelu and a projection, both with the full
49,408-token vocabulary, a 4-level VAE) with small widths. Heads are 8 wide instead of SDXL's 64;
the single file says so in its metadata (`sdxl_wgpu.head_dim`), which the engine reads.
"""

import json
import os
import sys
from pathlib import Path

import torch
from diffusers import AutoencoderKL, EulerDiscreteScheduler, UNet2DConditionModel
from diffusers.loaders import single_file_utils as sfu
from safetensors.torch import load_file, save_file
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

ROOT = Path(__file__).resolve().parents[1] / "fixtures"
FOLDER = ROOT / "tiny-sdxl"
SINGLE = ROOT / "tiny-sdxl.safetensors"
HEAD_DIM = 8
VOCAB = 49408

CLIP_L = dict(
    vocab_size=VOCAB, hidden_size=16, intermediate_size=40, num_hidden_layers=4,
    num_attention_heads=16 // HEAD_DIM, max_position_embeddings=77, hidden_act="quick_gelu",
    bos_token_id=49406, eos_token_id=49407, pad_token_id=49407, projection_dim=16,
)
BIG_G = dict(
    vocab_size=VOCAB, hidden_size=32, intermediate_size=72, num_hidden_layers=4,
    num_attention_heads=32 // HEAD_DIM, max_position_embeddings=77, hidden_act="gelu",
    bos_token_id=49406, eos_token_id=49407, pad_token_id=1, projection_dim=24,
)
UNET_CHANNELS = (32, 64, 64)
ADD_TIME_DIM = 16
UNET = dict(
    sample_size=16,
    in_channels=4,
    out_channels=4,
    down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
    up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
    block_out_channels=UNET_CHANNELS,
    layers_per_block=2,
    transformer_layers_per_block=(1, 1, 2),
    attention_head_dim=tuple(c // HEAD_DIM for c in UNET_CHANNELS),
    cross_attention_dim=CLIP_L["hidden_size"] + BIG_G["hidden_size"],
    use_linear_projection=True,
    addition_embed_type="text_time",
    addition_time_embed_dim=ADD_TIME_DIM,
    projection_class_embeddings_input_dim=BIG_G["projection_dim"] + 6 * ADD_TIME_DIM,
    norm_num_groups=32,
)
VAE = dict(
    in_channels=3,
    out_channels=3,
    down_block_types=("DownEncoderBlock2D",) * 4,
    up_block_types=("UpDecoderBlock2D",) * 4,
    block_out_channels=(32, 32, 64, 64),
    layers_per_block=2,
    latent_channels=4,
    norm_num_groups=32,
    sample_size=64,
    scaling_factor=0.13025,
)


def rerandomise(module: torch.nn.Module, seed: int) -> None:
    """Every parameter random, none zero: diffusers zero-initialises some (proj_out, conv_out)."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in sorted(module.named_parameters()):
            if p.ndim >= 2:
                fan_in = p[0].numel()
                p.copy_(torch.randn(p.shape, generator=gen) / fan_in**0.5)
            elif "norm" in name and name.endswith("weight"):
                p.copy_(1.0 + 0.1 * torch.randn(p.shape, generator=gen))
            else:
                p.copy_(0.1 * torch.randn(p.shape, generator=gen))


# ---------------------------------------------------------------------------------------------
# Our diffusers -> single-file converter. Written by loops over the architecture, independently
# of the Rust tables; diffusers' own loader proves it below.

RESNET_UNET = [("norm1", "in_layers.0"), ("conv1", "in_layers.2"), ("time_emb_proj", "emb_layers.1"),
               ("norm2", "out_layers.0"), ("conv2", "out_layers.3"), ("conv_shortcut", "skip_connection")]
RESNET_VAE = [("norm1", "norm1"), ("conv1", "conv1"), ("norm2", "norm2"), ("conv2", "conv2"),
              ("conv_shortcut", "nin_shortcut")]
VAE_ATTN = [("group_norm", "norm"), ("to_q", "q"), ("to_k", "k"), ("to_v", "v"), ("to_out.0", "proj_out")]


def unet_prefix_map(levels: int, layers: int):
    """(diffusers prefix, ldm prefix) for every UNet block."""
    m = [("time_embedding.linear_1", "time_embed.0"), ("time_embedding.linear_2", "time_embed.2"),
         ("add_embedding.linear_1", "label_emb.0.0"), ("add_embedding.linear_2", "label_emb.0.2"),
         ("conv_in", "input_blocks.0.0"), ("conv_norm_out", "out.0"), ("conv_out", "out.2"),
         ("mid_block.resnets.0", "middle_block.0"), ("mid_block.attentions.0", "middle_block.1"),
         ("mid_block.resnets.1", "middle_block.2")]
    for i in range(levels):
        for j in range(layers):
            n = 1 + i * (layers + 1) + j
            m.append((f"down_blocks.{i}.resnets.{j}", f"input_blocks.{n}.0"))
            m.append((f"down_blocks.{i}.attentions.{j}", f"input_blocks.{n}.1"))
        m.append((f"down_blocks.{i}.downsamplers.0.conv", f"input_blocks.{(i + 1) * (layers + 1)}.0.op"))
        for j in range(layers + 1):
            n = i * (layers + 1) + j
            m.append((f"up_blocks.{i}.resnets.{j}", f"output_blocks.{n}.0"))
            m.append((f"up_blocks.{i}.attentions.{j}", f"output_blocks.{n}.1"))
    return m


def convert_unet(sd, levels, layers, has_attn_up):
    out = {}
    pmap = sorted(unet_prefix_map(levels, layers), key=lambda p: -len(p[0]))
    for key, value in sd.items():
        if key.startswith("up_blocks.") and ".upsamplers.0.conv." in key:
            i = int(key.split(".")[1])
            slot = 2 if has_attn_up[i] else 1
            n = i * (layers + 1) + layers
            out[f"output_blocks.{n}.{slot}.conv." + key.rsplit(".", 1)[1]] = value
            continue
        for d, l in pmap:
            if key.startswith(d + "."):
                rest = key[len(d) + 1:]
                if ".resnets." in d or d.startswith("mid_block.resnets"):
                    leaf, param = rest.split(".", 1)
                    rest = dict(RESNET_UNET)[leaf] + "." + param
                out[l + "." + rest] = value
                break
        else:
            raise KeyError(f"unmapped unet key {key}")
    return {"model.diffusion_model." + k: v for k, v in out.items()}


def convert_vae(sd, levels, layers):
    out = {}
    pmap = [("encoder.conv_in", "encoder.conv_in"), ("encoder.conv_norm_out", "encoder.norm_out"),
            ("encoder.conv_out", "encoder.conv_out"), ("decoder.conv_in", "decoder.conv_in"),
            ("decoder.conv_norm_out", "decoder.norm_out"), ("decoder.conv_out", "decoder.conv_out"),
            ("quant_conv", "quant_conv"), ("post_quant_conv", "post_quant_conv")]
    resnets = []
    for part, mid in (("encoder", "encoder.mid"), ("decoder", "decoder.mid")):
        resnets += [(f"{part}.mid_block.resnets.0", f"{mid}.block_1"), (f"{part}.mid_block.resnets.1", f"{mid}.block_2")]
    for i in range(levels):
        for j in range(layers):
            resnets.append((f"encoder.down_blocks.{i}.resnets.{j}", f"encoder.down.{i}.block.{j}"))
        pmap.append((f"encoder.down_blocks.{i}.downsamplers.0.conv", f"encoder.down.{i}.downsample.conv"))
        for j in range(layers + 1):
            resnets.append((f"decoder.up_blocks.{i}.resnets.{j}", f"decoder.up.{levels - 1 - i}.block.{j}"))
        pmap.append((f"decoder.up_blocks.{i}.upsamplers.0.conv", f"decoder.up.{levels - 1 - i}.upsample.conv"))
    for key, value in sd.items():
        for part in ("encoder", "decoder"):
            pre = f"{part}.mid_block.attentions.0."
            if key.startswith(pre):
                rest = key[len(pre):]
                for d, l in VAE_ATTN:
                    if rest.startswith(d + "."):
                        if value.ndim == 2:
                            value = value[:, :, None, None]  # linear -> 1x1 conv
                        out[f"{part}.mid.attn_1.{l}." + rest[len(d) + 1:]] = value
                        break
                break
        else:
            for d, l in sorted(resnets, key=lambda p: -len(p[0])):
                if key.startswith(d + "."):
                    leaf, param = key[len(d) + 1:].split(".", 1)
                    out[l + "." + dict(RESNET_VAE)[leaf] + "." + param] = value
                    break
            else:
                for d, l in pmap:
                    if key.startswith(d + "."):
                        out[l + key[len(d):]] = value
                        break
                else:
                    raise KeyError(f"unmapped vae key {key}")
    return {"first_stage_model." + k: v for k, v in out.items()}


def convert_clip_l(sd):
    return {"conditioner.embedders.0.transformer." + k: v for k, v in sd.items()}


def convert_big_g(sd, layers):
    p = "conditioner.embedders.1.model."
    out = {
        p + "token_embedding.weight": sd["text_model.embeddings.token_embedding.weight"],
        p + "positional_embedding": sd["text_model.embeddings.position_embedding.weight"],
        p + "ln_final.weight": sd["text_model.final_layer_norm.weight"],
        p + "ln_final.bias": sd["text_model.final_layer_norm.bias"],
        p + "text_projection": sd["text_projection.weight"].T.contiguous(),
        p + "logit_scale": torch.tensor(4.6052, dtype=sd["text_projection.weight"].dtype),
    }
    for l in range(layers):
        h = f"text_model.encoder.layers.{l}."
        o = f"{p}transformer.resblocks.{l}."
        for kind in ("weight", "bias"):
            out[o + f"attn.in_proj_{kind}"] = torch.cat(
                [sd[h + f"self_attn.{x}_proj.{kind}"] for x in "qkv"], dim=0)
            out[o + f"attn.out_proj.{kind}"] = sd[h + f"self_attn.out_proj.{kind}"]
            out[o + f"ln_1.{kind}"] = sd[h + f"layer_norm1.{kind}"]
            out[o + f"ln_2.{kind}"] = sd[h + f"layer_norm2.{kind}"]
            out[o + f"mlp.c_fc.{kind}"] = sd[h + f"mlp.fc1.{kind}"]
            out[o + f"mlp.c_proj.{kind}"] = sd[h + f"mlp.fc2.{kind}"]
    return out


# ---------------------------------------------------------------------------------------------


def state_dict(module):
    # transformers keeps position_ids as a non-persistent buffer: not in the state dict.
    return {k: v.detach().clone().contiguous() for k, v in module.state_dict().items()}


def main() -> int:
    torch.manual_seed(0)
    unet = UNet2DConditionModel(**UNET)
    vae = AutoencoderKL(**VAE)
    te1 = CLIPTextModel(CLIPTextConfig(**CLIP_L))
    te2 = CLIPTextModelWithProjection(CLIPTextConfig(**BIG_G))
    for seed, m in enumerate((unet, vae, te1, te2)):
        rerandomise(m, 1000 + seed)
        m.to(torch.float16)

    FOLDER.mkdir(parents=True, exist_ok=True)
    unet.save_pretrained(FOLDER / "unet", variant="fp16")
    vae.save_pretrained(FOLDER / "vae", variant="fp16")
    te1.save_pretrained(FOLDER / "text_encoder", variant="fp16")
    te2.save_pretrained(FOLDER / "text_encoder_2", variant="fp16")
    EulerDiscreteScheduler(
        beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", num_train_timesteps=1000,
        steps_offset=1, timestep_spacing="leading", prediction_type="epsilon",
    ).save_pretrained(FOLDER / "scheduler")
    (FOLDER / "model_index.json").write_text(json.dumps({
        "_class_name": "StableDiffusionXLPipeline",
        "_diffusers_version": "0.35.2",
        "force_zeros_for_empty_prompt": True,
        "scheduler": ["diffusers", "EulerDiscreteScheduler"],
        "text_encoder": ["transformers", "CLIPTextModel"],
        "text_encoder_2": ["transformers", "CLIPTextModelWithProjection"],
        "tokenizer": [None, None],
        "tokenizer_2": [None, None],
        "unet": ["diffusers", "UNet2DConditionModel"],
        "vae": ["diffusers", "AutoencoderKL"],
    }, indent=2) + "\n")

    sds = {"unet": state_dict(unet), "vae": state_dict(vae), "te1": state_dict(te1), "te2": state_dict(te2)}
    levels = len(UNET_CHANNELS)
    has_attn_up = [t.startswith("CrossAttn") for t in UNET["up_block_types"]]
    single = {}
    single.update(convert_unet(sds["unet"], levels, UNET["layers_per_block"], has_attn_up))
    single.update(convert_vae(sds["vae"], len(VAE["block_out_channels"]), VAE["layers_per_block"]))
    single.update(convert_clip_l(sds["te1"]))
    single.update(convert_big_g(sds["te2"], BIG_G["num_hidden_layers"]))
    save_file(single, SINGLE, metadata={
        "sdxl_wgpu.head_dim": str(HEAD_DIM),
        "modelspec.architecture": "stable-diffusion-xl-v1-base",
        "modelspec.title": "tiny random-weight SDXL topology (sdxl-wgpu test fixture)",
    })

    # Prove the converter with diffusers' own single-file conversion code.
    ckpt = load_file(SINGLE)
    back = {
        "unet": sfu.convert_ldm_unet_checkpoint(ckpt, dict(unet.config)),
        "vae": sfu.convert_ldm_vae_checkpoint(ckpt, dict(vae.config)),
        "te1": sfu.convert_ldm_clip_checkpoint(ckpt),
        "te2": sfu.convert_open_clip_checkpoint(te2, ckpt, prefix="conditioner.embedders.1.model."),
    }
    ok = True
    for name, original in sds.items():
        converted = back[name]
        if set(converted) != set(original):
            print(f"{name}: key sets differ: only ours {sorted(set(original) - set(converted))[:5]}, "
                  f"only diffusers {sorted(set(converted) - set(original))[:5]}")
            ok = False
            continue
        for k, v in original.items():
            c = converted[k].reshape(v.shape) if converted[k].numel() == v.numel() else converted[k]
            if c.shape != v.shape or not torch.equal(c, v):
                print(f"{name}: {k} differs")
                ok = False
        print(f"{name}: {len(original)} tensors round-trip exactly")
    total = sum(os.path.getsize(p) for p in FOLDER.rglob("*") if p.is_file())
    print(f"wrote {SINGLE} ({SINGLE.stat().st_size} bytes) and {FOLDER} ({total} bytes)")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
