//! Every tensor of a real SDXL base 1.0 single file (the manifest of its header: name, dtype,
//! shape) maps to a canonical parameter of the detected architecture with a clean report, and
//! the detected architecture is SDXL base. No weights and no GPU needed.

use std::path::Path;

use sdxl_wgpu::checkpoint::Checkpoint;
use sdxl_wgpu::sampling::Prediction;
use sdxl_wgpu::text_encoder::HiddenAct;
use sdxl_wgpu::weights::{Dtype, Header, TensorInfo, Transform};

fn manifest_header() -> Header {
    sdxl_wgpu::checkpoint::manifest_header().0
}

#[test]
fn every_sdxl_base_tensor_maps_with_a_clean_report() {
    let header = manifest_header();
    assert_eq!(header.tensors.len(), 2515);
    let ckpt = Checkpoint::from_header(Path::new("sd_xl_base_1.0.safetensors"), header)
        .expect("the SDXL base manifest opens");
    let report = ckpt.report();
    assert!(
        report.missing.is_empty(),
        "missing: {:?}",
        &report.missing[..report.missing.len().min(5)]
    );
    assert!(
        report.mismatched.is_empty(),
        "mismatched: {:?}",
        &report.mismatched[..report.mismatched.len().min(5)]
    );
    assert!(
        report.unused.is_empty(),
        "unused: {:?}",
        &report.unused[..report.unused.len().min(5)]
    );
    let ignored: Vec<&str> = report.ignored.iter().map(|t| t.key.as_str()).collect();
    assert_eq!(
        ignored,
        [
            "conditioner.embedders.0.transformer.text_model.embeddings.position_ids",
            "conditioner.embedders.1.model.logit_scale",
        ]
    );
    // bigG's 32 fused in_proj weights and biases give 3 canonical parameters each.
    assert_eq!(report.applied, 2515 - 2 + 32 * 2 * 2);
    let count = |t: Transform| {
        report
            .transformed
            .iter()
            .filter(|x| x.transform == t)
            .count()
    };
    assert_eq!(count(Transform::Transpose), 1);
    assert_eq!(report.transformed.len(), 32 * 2 * 3 + 1 + 2 * 4);
    assert_eq!(ckpt.variant.prediction, Prediction::Epsilon);
    assert!(!ckpt.variant.zero_terminal_snr);
}

#[test]
fn detected_architecture_is_sdxl_base() {
    let ckpt = Checkpoint::from_header(Path::new("sd_xl_base_1.0.safetensors"), manifest_header())
        .expect("opens");
    let u = &ckpt.config.unet;
    assert_eq!(u.block_out_channels, [320, 640, 1280]);
    assert_eq!(u.layers_per_block, 2);
    // DownBlock2D has no attention; diffusers' config writes its (unused) depth as 1.
    assert_eq!(u.transformer_depth, [0, 2, 10]);
    assert_eq!(u.transformer_depth_up, [10, 2, 0]);
    assert_eq!(u.mid_transformer_depth, 10);
    assert_eq!(u.context_dim, 2048);
    assert_eq!(u.addition_embed_dim, 2816);
    assert_eq!(u.addition_time_embed_dim, 256);
    assert_eq!(u.time_embed_dim, 1280);
    assert_eq!((u.in_channels, u.out_channels, u.head_dim), (4, 4, 64));
    assert_eq!(u.heads(1280), 20);

    let l = &ckpt.config.text_encoder;
    assert_eq!(
        (l.width, l.layers, l.heads, l.intermediate),
        (768, 12, 12, 3072)
    );
    assert_eq!(
        (l.vocab_size, l.max_positions, l.projection),
        (49408, 77, None)
    );
    assert_eq!(l.activation, HiddenAct::QuickGelu);

    let g = &ckpt.config.text_encoder_2;
    assert_eq!(
        (g.width, g.layers, g.heads, g.intermediate),
        (1280, 32, 20, 5120)
    );
    assert_eq!((g.vocab_size, g.projection), (49408, Some(1280)));
    assert_eq!(g.activation, HiddenAct::Gelu);

    let v = &ckpt.config.vae;
    assert_eq!(v.block_out_channels, [128, 256, 512, 512]);
    assert_eq!(
        (v.layers_per_block, v.latent_channels, v.in_channels),
        (2, 4, 3)
    );
    assert_eq!(v.scaling_factor, 0.13025);

    let params: usize = ckpt.stats().iter().map(|s| s.parameters).sum();
    // SDXL base 1.0: 2.567 B UNet + 123 M CLIP-L + 695 M bigG + 83.7 M VAE.
    assert!((3_400_000_000..3_600_000_000).contains(&params), "{params}");
}

#[test]
fn v_prediction_markers_are_detected() {
    let mut header = manifest_header();
    let marker = TensorInfo {
        dtype: Dtype::F32,
        shape: vec![0],
        start: 0,
        end: 0,
    };
    header.tensors.insert("v_pred".into(), marker.clone());
    header.tensors.insert("ztsnr".into(), marker);
    let ckpt =
        Checkpoint::from_header(Path::new("noobai-vpred.safetensors"), header).expect("opens");
    assert_eq!(ckpt.variant.prediction, Prediction::V);
    assert!(ckpt.variant.zero_terminal_snr);
    assert!(ckpt.report().is_clean());
    assert_eq!(
        ckpt.variant.to_string(),
        "SDXL base-type, v-prediction, zero terminal SNR"
    );
}

/// SDXL base at 1024x1024 (128x128 latents), batch 1: about 6.7 TFLOP per UNet forward pass (the
/// figure commonly quoted, ~3.35 T multiply-adds), counted from the detected architecture.
#[test]
fn sdxl_base_unet_flops_at_1024() {
    let cfg = Checkpoint::sdxl_base_manifest()
        .expect("manifest")
        .config
        .unet;
    let flops = cfg.forward_flops(1, 128, 128, 77);
    eprintln!("SDXL base UNet, 1024x1024, batch 1: {flops:.4e} FLOP");
    assert!((6.0e12..7.5e12).contains(&flops), "{flops:e}");
    // quadratic self-attention makes it grow faster than the pixels
    let at_2048 = cfg.forward_flops(1, 256, 256, 77);
    assert!(at_2048 > 4.0 * flops, "{at_2048:e}");
    assert_eq!(cfg.forward_flops(2, 128, 128, 77), 2.0 * flops);
}
