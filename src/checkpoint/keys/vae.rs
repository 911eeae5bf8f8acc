//! The VAE's spellings: diffusers (`encoder.down_blocks.0.resnets.0...`, canonical; older
//! folders name the attention `query/key/value/proj_attn`) and the LDM single file
//! (`first_stage_model.encoder.down.0.block.0...`), whose decoder levels count from the image
//! side (`decoder.up.{levels-1-i}` = `decoder.up_blocks.i`) and whose mid-block attention
//! uses 1x1 convolutions, as in diffusers' `convert_ldm_vae_checkpoint`.

use super::{spelled, Layout, Probe, Rows};
use crate::vae::{VaeConfig, SDXL_SCALING_FACTOR};
use crate::weights::Transform;

/// Resnet leaves in the single-file spelling.
const RESNET_SINGLE_FILE: &[(&str, &str)] = &[("conv_shortcut", "nin_shortcut")];

/// Modules outside the blocks, in the single-file spelling.
const FIXED_SINGLE_FILE: &[(&str, &str)] = &[
    ("encoder.conv_norm_out", "encoder.norm_out"),
    ("decoder.conv_norm_out", "decoder.norm_out"),
];

/// Mid-block attention norm: (canonical, single file, deprecated diffusers).
const ATTENTION_NORM: (&str, &str, &str) = ("group_norm", "norm", "group_norm");

/// Mid-block attention projections: (canonical, single file, deprecated diffusers).
const ATTENTION: &[(&str, &str, &str)] = &[
    ("to_q", "q", "query"),
    ("to_k", "k", "key"),
    ("to_v", "v", "value"),
    ("to_out.0", "proj_out", "proj_attn"),
];

/// How a VAE's keys are spelled.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VaeSpelling {
    SingleFile,
    Diffusers,
    /// A diffusers folder saved before the attention rename (`query`, `key`, ...).
    DiffusersDeprecatedAttention,
}

impl VaeSpelling {
    /// The spelling of a VAE stored in `layout`, telling the two diffusers variants apart.
    pub fn of(probe: &Probe, layout: Layout) -> VaeSpelling {
        match layout {
            Layout::SingleFile => VaeSpelling::SingleFile,
            Layout::Diffusers if probe.has("encoder.mid_block.attentions.0.query.weight") => {
                VaeSpelling::DiffusersDeprecatedAttention
            }
            Layout::Diffusers => VaeSpelling::Diffusers,
        }
    }

    fn single_file(self) -> bool {
        self == VaeSpelling::SingleFile
    }

    fn fixed(self, name: &'static str) -> &'static str {
        if self.single_file() {
            spelled(FIXED_SINGLE_FILE, name)
        } else {
            name
        }
    }

    fn resnet_leaf(self, name: &'static str) -> &'static str {
        if self.single_file() {
            spelled(RESNET_SINGLE_FILE, name)
        } else {
            name
        }
    }

    fn encoder_resnet(self, level: usize, j: usize) -> String {
        if self.single_file() {
            format!("encoder.down.{level}.block.{j}")
        } else {
            format!("encoder.down_blocks.{level}.resnets.{j}")
        }
    }

    fn downsampler(self, level: usize) -> String {
        if self.single_file() {
            format!("encoder.down.{level}.downsample.conv")
        } else {
            format!("encoder.down_blocks.{level}.downsamplers.0.conv")
        }
    }

    /// Decoder level `level` counted from the latent side, as diffusers does.
    fn decoder_resnet(self, levels: usize, level: usize, j: usize) -> String {
        if self.single_file() {
            format!("decoder.up.{}.block.{j}", levels - 1 - level)
        } else {
            format!("decoder.up_blocks.{level}.resnets.{j}")
        }
    }

    fn upsampler(self, levels: usize, level: usize) -> String {
        if self.single_file() {
            format!("decoder.up.{}.upsample.conv", levels - 1 - level)
        } else {
            format!("decoder.up_blocks.{level}.upsamplers.0.conv")
        }
    }

    fn mid_resnet(self, part: &str, k: usize) -> String {
        if self.single_file() {
            format!("{part}.mid.block_{}", k + 1)
        } else {
            format!("{part}.mid_block.resnets.{k}")
        }
    }

    fn mid_attention(self, part: &str) -> String {
        if self.single_file() {
            format!("{part}.mid.attn_1")
        } else {
            format!("{part}.mid_block.attentions.0")
        }
    }

    /// Picks this spelling's name from a `(canonical, single file, deprecated diffusers)` row.
    fn pick(self, names: (&'static str, &'static str, &'static str)) -> &'static str {
        match self {
            VaeSpelling::SingleFile => names.1,
            VaeSpelling::Diffusers => names.0,
            VaeSpelling::DiffusersDeprecatedAttention => names.2,
        }
    }
}

/// Detects the VAE architecture from its tensors.
pub fn detect(probe: &Probe, spelling: VaeSpelling) -> Result<VaeConfig, String> {
    let conv1 = |block: String| format!("{block}.{}.weight", spelling.resnet_leaf("conv1"));
    let levels = probe.count(|i| conv1(spelling.encoder_resnet(i, 0)));
    if levels == 0 {
        probe.dim(&conv1(spelling.encoder_resnet(0, 0)), 0)?; // names the missing first resnet
    }
    Ok(VaeConfig {
        in_channels: probe.dim("encoder.conv_in.weight", 1)?,
        latent_channels: probe.dim("post_quant_conv.weight", 0)?,
        block_out_channels: (0..levels)
            .map(|i| probe.dim(&conv1(spelling.encoder_resnet(i, 0)), 0))
            .collect::<Result<_, _>>()?,
        layers_per_block: probe.count(|j| conv1(spelling.encoder_resnet(0, j))),
        norm_groups: 32,
        scaling_factor: SDXL_SCALING_FACTOR,
    })
}

/// Every VAE parameter with its key in `spelling`.
pub fn table(cfg: &VaeConfig, spelling: VaeSpelling) -> Vec<super::Row> {
    let sp = spelling;
    let leaf = |name| sp.resnet_leaf(name);
    let ch = &cfg.block_out_channels;
    let levels = cfg.levels();
    let (first, deepest, z) = (ch[0], ch[levels - 1], cfg.latent_channels);
    let mut rows = Rows::default();

    rows.conv(
        "encoder.conv_in",
        "encoder.conv_in",
        first,
        cfg.in_channels,
        3,
    );
    for level in 0..levels {
        for j in 0..cfg.layers_per_block {
            let cin = if j == 0 {
                ch[level.saturating_sub(1)]
            } else {
                ch[level]
            };
            let c = format!("encoder.down_blocks.{level}.resnets.{j}");
            rows.resnet(
                &c,
                &sp.encoder_resnet(level, j),
                &leaf,
                cin,
                ch[level],
                None,
            );
        }
        if level + 1 < levels {
            let c = format!("encoder.down_blocks.{level}.downsamplers.0.conv");
            rows.conv(&c, &sp.downsampler(level), ch[level], ch[level], 3);
        }
    }
    mid_block(&mut rows, sp, "encoder", deepest);
    rows.norm(
        "encoder.conv_norm_out",
        sp.fixed("encoder.conv_norm_out"),
        deepest,
    );
    rows.conv("encoder.conv_out", "encoder.conv_out", 2 * z, deepest, 3);
    rows.conv("quant_conv", "quant_conv", 2 * z, 2 * z, 1);
    rows.conv("post_quant_conv", "post_quant_conv", z, z, 1);

    rows.conv("decoder.conv_in", "decoder.conv_in", deepest, z, 3);
    mid_block(&mut rows, sp, "decoder", deepest);
    for level in 0..levels {
        let width = cfg.decoder_channels(level);
        for j in 0..=cfg.layers_per_block {
            let cin = match (j, level) {
                (0, 0) => deepest,
                (0, _) => cfg.decoder_channels(level - 1),
                _ => width,
            };
            let c = format!("decoder.up_blocks.{level}.resnets.{j}");
            rows.resnet(
                &c,
                &sp.decoder_resnet(levels, level, j),
                &leaf,
                cin,
                width,
                None,
            );
        }
        if level + 1 < levels {
            let c = format!("decoder.up_blocks.{level}.upsamplers.0.conv");
            rows.conv(&c, &sp.upsampler(levels, level), width, width, 3);
        }
    }
    rows.norm(
        "decoder.conv_norm_out",
        sp.fixed("decoder.conv_norm_out"),
        first,
    );
    rows.conv(
        "decoder.conv_out",
        "decoder.conv_out",
        cfg.in_channels,
        first,
        3,
    );
    rows.0
}

/// Two resnets around a single-head attention, at the deepest width.
fn mid_block(rows: &mut Rows, sp: VaeSpelling, part: &str, width: usize) {
    let leaf = |name| sp.resnet_leaf(name);
    for k in 0..2 {
        let c = format!("{part}.mid_block.resnets.{k}");
        rows.resnet(&c, &sp.mid_resnet(part, k), &leaf, width, width, None);
    }
    let (c, f) = (
        format!("{part}.mid_block.attentions.0"),
        sp.mid_attention(part),
    );
    let norm = ATTENTION_NORM;
    rows.norm(
        &format!("{c}.{}", norm.0),
        &format!("{f}.{}", sp.pick(norm)),
        width,
    );
    let transform = if sp.single_file() {
        Transform::Squeeze1x1
    } else {
        Transform::None
    };
    for &names in ATTENTION {
        let (cn, fname) = (
            format!("{c}.{}", names.0),
            format!("{f}.{}", sp.pick(names)),
        );
        rows.param(
            format!("{cn}.weight"),
            format!("{fname}.weight"),
            vec![width, width],
            transform,
        );
        rows.param(
            format!("{cn}.bias"),
            format!("{fname}.bias"),
            vec![width],
            Transform::None,
        );
    }
}
