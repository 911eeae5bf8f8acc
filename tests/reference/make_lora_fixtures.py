#!/usr/bin/env python3
"""Builds the LoRA fixtures for the tiny model in tests/fixtures/lora/ and the diffusers runs
with them (tests/fixtures/lora_reference.safetensors):

- `style_kohya.safetensors`: kohya sd-scripts SDXL format in the single-file (SGM) spelling,
  `lora_unet_input_blocks_4_1_transformer_blocks_0_attn1_to_q`, on every transformer linear layer
  of the UNet and every attention / MLP layer of both text encoders (`lora_te1_`, `lora_te2_`, HF
  names), rank 4, alpha 2, f16.
- `detail_locon.safetensors`: kohya format in the diffusers spelling (`lora_unet_down_blocks_...`),
  UNet only, LoCon on every resnet conv (3x3 down, 1x1 up) plus the self-attention q/v, rank 2,
  no alpha (scale = weight), bf16.
- `peft.safetensors`: diffusers/PEFT format (`unet.*.lora_A.weight`, `text_encoder.*`,
  `text_encoder_2.*`), rank 4, f32.
- `sd15.safetensors`: an SD 1.5-shaped kohya LoRA (`lora_te_`, 768-wide, blocks SDXL lacks): matches
  no layer of an SDXL model.

The reference runs are diffusers' StableDiffusionXLPipeline (f32, Euler, injected noise) after
`load_lora_weights` + `set_adapters(names, weights)`. Never run in CI; run after
make_fixtures.py in the pinned environment:

    ~/refenv/bin/python tests/reference/make_lora_fixtures.py
"""

import json
import re
import sys
import tempfile
from pathlib import Path

import torch
from diffusers import EulerDiscreteScheduler, StableDiffusionXLPipeline
from safetensors import safe_open
from safetensors.torch import save_file

sys.path.insert(0, str(Path(__file__).resolve().parent))
from make_text_fixtures import FOLDER, FIXTURES, tokenizers  # noqa: E402

OUT = FIXTURES / "lora"
SINGLE = FIXTURES / "tiny-sdxl.safetensors"
UNET_PREFIX = "model.diffusion_model."
TRANSFORMER_LINEAR = re.compile(r"transformer_blocks\.\d+\.(attn[12]\.to_(q|k|v|out\.0)|ff\.net\.(0\.proj|2))\.weight$|proj_(in|out)\.weight$")
CLIP_LINEAR = re.compile(r"self_attn\.(q|k|v|out)_proj\.weight$|mlp\.fc[12]\.weight$")

gen = torch.Generator("cpu").manual_seed(2024)


def pair(out_features, in_features, rank, kernel=None, scale=1.0):
    """(down, up) with an effect of a few percent on the tiny model's layers."""
    if kernel is None:
        down = torch.randn(rank, in_features, generator=gen) / in_features ** 0.5
        up = torch.randn(out_features, rank, generator=gen) * scale / rank ** 0.5
    else:
        down = torch.randn(rank, in_features, kernel, kernel, generator=gen) / (in_features * kernel * kernel) ** 0.5
        up = torch.randn(out_features, rank, 1, 1, generator=gen) * scale / rank ** 0.5
    return down, up


def kohya(tensors, name, down, up, alpha, dtype):
    tensors[f"{name}.lora_down.weight"] = down.to(dtype).contiguous()
    tensors[f"{name}.lora_up.weight"] = up.to(dtype).contiguous()
    if alpha is not None:
        tensors[f"{name}.alpha"] = torch.tensor(float(alpha), dtype=dtype)


def clip_layers(folder):
    f = safe_open(str(FOLDER / folder / "model.fp16.safetensors"), "pt")
    return {k[: -len(".weight")]: f.get_slice(k).get_shape() for k in f.keys() if CLIP_LINEAR.search(k)}


def main() -> int:
    OUT.mkdir(exist_ok=True)
    single = safe_open(str(SINGLE), "pt")
    unet_linear = {
        k[len(UNET_PREFIX) : -len(".weight")]: single.get_slice(k).get_shape()
        for k in single.keys()
        if k.startswith(UNET_PREFIX) and TRANSFORMER_LINEAR.search(k)
    }
    te1, te2 = clip_layers("text_encoder"), clip_layers("text_encoder_2")

    # A: kohya, SGM spelling, UNet + both text encoders, rank 4, alpha 2, f16
    a = {}
    for path, (o, i) in sorted(unet_linear.items()):
        kohya(a, "lora_unet_" + path.replace(".", "_"), *pair(o, i, 4, scale=0.4), 2, torch.float16)
    for prefix, layers in (("lora_te1_", te1), ("lora_te2_", te2)):
        for path, (o, i) in sorted(layers.items()):
            kohya(a, prefix + path.replace(".", "_"), *pair(o, i, 4, scale=0.4), 2, torch.float16)
    save_file(a, OUT / "style_kohya.safetensors", metadata={"ss_base_model_version": "sdxl_base_v1-0", "ss_network_dim": "4", "ss_network_alpha": "2"})

    # B: kohya, diffusers spelling, UNet only: LoCon on resnet convs + attn1 q/v, rank 2, no alpha, bf16
    pipe_unet = StableDiffusionXLPipeline.from_pretrained(FOLDER, variant="fp16", torch_dtype=torch.float32).unet
    b = {}
    for name, module in pipe_unet.named_modules():
        if re.search(r"resnets\.\d+\.conv[12]$", name):
            w = module.weight
            kohya(b, "lora_unet_" + name.replace(".", "_"), *pair(w.shape[0], w.shape[1], 2, kernel=3, scale=0.5), None, torch.bfloat16)
        elif re.search(r"attn1\.to_[qv]$", name):
            w = module.weight
            kohya(b, "lora_unet_" + name.replace(".", "_"), *pair(w.shape[0], w.shape[1], 2, scale=0.5), None, torch.bfloat16)
    save_file(b, OUT / "detail_locon.safetensors", metadata={"ss_base_model_version": "sdxl_base_v1-0"})

    # PEFT: diffusers names, rank 4, no alpha (scale = weight)
    p = {}
    for name, module in pipe_unet.named_modules():
        if re.search(r"attn2\.to_(k|v|out\.0)$|ff\.net\.2$", name):
            down, up = pair(module.weight.shape[0], module.weight.shape[1], 4, scale=0.3)
            p[f"unet.{name}.lora_A.weight"], p[f"unet.{name}.lora_B.weight"] = down, up
    for component, layers in (("text_encoder", te1), ("text_encoder_2", te2)):
        for path, (o, i) in sorted(layers.items()):
            if path.endswith(("q_proj", "v_proj")):
                down, up = pair(o, i, 4, scale=0.3)
                p[f"{component}.{path}.lora_A.weight"], p[f"{component}.{path}.lora_B.weight"] = down, up
    save_file(p, OUT / "peft.safetensors")

    # SD 1.5-shaped
    s = {}
    kohya(s, "lora_te_text_model_encoder_layers_0_self_attn_q_proj", *pair(768, 768, 4), 4, torch.float16)
    kohya(s, "lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn2_to_k", *pair(320, 768, 4), 4, torch.float16)
    save_file(s, OUT / "sd15.safetensors", metadata={"ss_base_model_version": "sd_v1"})

    with tempfile.TemporaryDirectory() as d:
        tok, tok_2 = tokenizers(Path(d))
        pipe = StableDiffusionXLPipeline.from_pretrained(
            FOLDER, tokenizer=tok, tokenizer_2=tok_2, variant="fp16", torch_dtype=torch.float32
        )
    pipe.scheduler = EulerDiscreteScheduler.from_config(pipe.scheduler.config)
    request = dict(prompt="1girl, solo, red dress, garden", negative="lowres, worst quality",
                   width=64, height=64, steps=4, cfg=6.0, noise_seed=77)
    noise = torch.randn((1, 4, 8, 8), generator=torch.Generator("cpu").manual_seed(request["noise_seed"]))
    cases = {
        "none": [],
        "style_08": [("style_kohya", 0.8)],
        "style_08_detail_05": [("style_kohya", 0.8), ("detail_locon", 0.5)],
        "detail_10": [("detail_locon", 1.0)],
        "peft_07": [("peft", 0.7)],
    }
    tensors = {"noise": noise}
    base = None
    for case, loras in cases.items():
        pipe.unload_lora_weights()
        for name, _ in loras:
            pipe.load_lora_weights(str(OUT / f"{name}.safetensors"), adapter_name=name)
        if loras:
            pipe.set_adapters([n for n, _ in loras], adapter_weights=[w for _, w in loras])
        with torch.no_grad():
            latents = pipe(
                prompt=request["prompt"], negative_prompt=request["negative"], width=64, height=64,
                num_inference_steps=request["steps"], guidance_scale=request["cfg"], latents=noise.clone(),
                output_type="latent",
            ).images
            image = pipe.vae.decode(latents / pipe.vae.config.scaling_factor).sample
        tensors[f"{case}.final_latents"] = latents.contiguous()
        tensors[f"{case}.image"] = image.contiguous()
        if base is None:
            base = latents
        change = float((latents - base).abs().max() / base.abs().max())
        print(case, "relative change vs no LoRA", round(change, 4))
    meta = {"request": json.dumps(request), "cases": json.dumps({k: [[n, w] for n, w in v] for k, v in cases.items()})}
    save_file(tensors, FIXTURES / "lora_reference.safetensors", metadata=meta)
    for f in sorted(OUT.iterdir()):
        print(f, f.stat().st_size)
    return 0


if __name__ == "__main__":
    sys.exit(main())
