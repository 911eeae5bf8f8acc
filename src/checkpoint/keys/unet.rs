//! The UNet's spellings: diffusers (`down_blocks.1.attentions.0...`, canonical) and the
//! SGM/LDM single file (`input_blocks.4.1...` under `model.diffusion_model.`).
//!
//! Block correspondence, as in diffusers' `convert_ldm_unet_checkpoint` and stable-diffusion.cpp,
//! with `L` = layers per block:
//! `down_blocks.i.resnets.j` = `input_blocks.{1 + i(L+1) + j}.0`, its attention `.1`;
//! `down_blocks.i.downsamplers.0.conv` = `input_blocks.{(i+1)(L+1)}.0.op`;
//! `mid_block.resnets.0 / attentions.0 / resnets.1` = `middle_block.0 / 1 / 2`;
//! `up_blocks.i.resnets.j` = `output_blocks.{i(L+1) + j}.0`, its attention `.1`;
//! `up_blocks.i.upsamplers.0.conv` = `output_blocks.{i(L+1) + L}.{1, or 2 after an attention}.conv`.

use super::{spelled, Layout, Probe, Rows};
use crate::unet::UnetConfig;

/// Modules outside the blocks, in the single-file spelling.
const FIXED_SINGLE_FILE: &[(&str, &str)] = &[
    ("time_embedding.linear_1", "time_embed.0"),
    ("time_embedding.linear_2", "time_embed.2"),
    ("add_embedding.linear_1", "label_emb.0.0"),
    ("add_embedding.linear_2", "label_emb.0.2"),
    ("conv_in", "input_blocks.0.0"),
    ("conv_norm_out", "out.0"),
    ("conv_out", "out.2"),
];

/// Resnet leaves in the single-file spelling.
const RESNET_SINGLE_FILE: &[(&str, &str)] = &[
    ("norm1", "in_layers.0"),
    ("conv1", "in_layers.2"),
    ("time_emb_proj", "emb_layers.1"),
    ("norm2", "out_layers.0"),
    ("conv2", "out_layers.3"),
    ("conv_shortcut", "skip_connection"),
];

/// Block prefixes of one layout, for a UNet with `layers` resnets per down block.
struct Spelling {
    layout: Layout,
    layers: usize,
}

impl Spelling {
    fn fixed(&self, name: &'static str) -> &'static str {
        match self.layout {
            Layout::Diffusers => name,
            Layout::SingleFile => spelled(FIXED_SINGLE_FILE, name),
        }
    }

    fn resnet_leaf(&self, name: &'static str) -> &'static str {
        match self.layout {
            Layout::Diffusers => name,
            Layout::SingleFile => spelled(RESNET_SINGLE_FILE, name),
        }
    }

    fn input_block(&self, level: usize, j: usize) -> usize {
        1 + level * (self.layers + 1) + j
    }

    fn output_block(&self, level: usize, j: usize) -> usize {
        level * (self.layers + 1) + j
    }

    fn down_resnet(&self, level: usize, j: usize) -> String {
        match self.layout {
            Layout::Diffusers => format!("down_blocks.{level}.resnets.{j}"),
            Layout::SingleFile => format!("input_blocks.{}.0", self.input_block(level, j)),
        }
    }

    fn down_attention(&self, level: usize, j: usize) -> String {
        match self.layout {
            Layout::Diffusers => format!("down_blocks.{level}.attentions.{j}"),
            Layout::SingleFile => format!("input_blocks.{}.1", self.input_block(level, j)),
        }
    }

    fn downsampler(&self, level: usize) -> String {
        match self.layout {
            Layout::Diffusers => format!("down_blocks.{level}.downsamplers.0.conv"),
            Layout::SingleFile => format!("input_blocks.{}.0.op", (level + 1) * (self.layers + 1)),
        }
    }

    fn mid_resnet(&self, k: usize) -> String {
        match self.layout {
            Layout::Diffusers => format!("mid_block.resnets.{k}"),
            Layout::SingleFile => format!("middle_block.{}", 2 * k),
        }
    }

    fn mid_attention(&self) -> String {
        match self.layout {
            Layout::Diffusers => "mid_block.attentions.0".into(),
            Layout::SingleFile => "middle_block.1".into(),
        }
    }

    fn up_resnet(&self, level: usize, j: usize) -> String {
        match self.layout {
            Layout::Diffusers => format!("up_blocks.{level}.resnets.{j}"),
            Layout::SingleFile => format!("output_blocks.{}.0", self.output_block(level, j)),
        }
    }

    fn up_attention(&self, level: usize, j: usize) -> String {
        match self.layout {
            Layout::Diffusers => format!("up_blocks.{level}.attentions.{j}"),
            Layout::SingleFile => format!("output_blocks.{}.1", self.output_block(level, j)),
        }
    }

    fn upsampler(&self, level: usize, has_attention: bool) -> String {
        match self.layout {
            Layout::Diffusers => format!("up_blocks.{level}.upsamplers.0.conv"),
            Layout::SingleFile => format!(
                "output_blocks.{}.{}.conv",
                self.output_block(level, self.layers),
                if has_attention { 2 } else { 1 }
            ),
        }
    }
}

/// Detects the UNet architecture from its tensors. `pooled_dim` is the pooled text embedding
/// width (bigG's projection), which with the `add_embedding` input width gives the
/// sinusoidal width of each `add_time_ids` entry. `head_dim` cannot be seen in shapes.
pub fn detect(
    probe: &Probe,
    layout: Layout,
    head_dim: usize,
    pooled_dim: usize,
) -> Result<UnetConfig, String> {
    let layers = match layout {
        Layout::Diffusers => probe.count(|j| format!("down_blocks.0.resnets.{j}.conv1.weight")),
        Layout::SingleFile => (1..64)
            .find(|n| probe.has(&format!("input_blocks.{n}.0.op.weight")))
            .map_or(0, |n| n - 1),
    };
    if layers == 0 {
        return Err("no resnets found in the first down block".into());
    }
    let sp = Spelling { layout, layers };
    let conv1 = |block: String| format!("{block}.{}.weight", sp.resnet_leaf("conv1"));
    let depth = |attention: String| {
        probe.count(|k| format!("{attention}.transformer_blocks.{k}.norm1.weight"))
    };

    let levels = probe.count(|i| conv1(sp.down_resnet(i, 0)));
    if levels == 0 {
        probe.dim(&conv1(sp.down_resnet(0, 0)), 0)?; // names the missing first resnet
    }
    let block_out_channels = (0..levels)
        .map(|i| probe.dim(&conv1(sp.down_resnet(i, 0)), 0))
        .collect::<Result<Vec<_>, _>>()?;
    let transformer_depth: Vec<usize> = (0..levels)
        .map(|i| depth(sp.down_attention(i, 0)))
        .collect();
    let transformer_depth_up: Vec<usize> =
        (0..levels).map(|i| depth(sp.up_attention(i, 0))).collect();
    let mid_transformer_depth = depth(sp.mid_attention());
    if mid_transformer_depth == 0 {
        return Err("the mid block has no cross-attention transformer".into());
    }
    let first_attention = (0..levels)
        .find(|&i| transformer_depth[i] > 0)
        .map_or_else(|| sp.mid_attention(), |i| sp.down_attention(i, 0));

    let conv_in = format!("{}.weight", sp.fixed("conv_in"));
    let add_embedding = format!("{}.weight", sp.fixed("add_embedding.linear_1"));
    if !probe.has(&add_embedding) {
        return Err(format!(
            "no additional text_time embedding (`{}{add_embedding}`): not an SDXL base-type UNet",
            probe.prefix
        ));
    }
    let addition_embed_dim = probe.dim(&add_embedding, 1)?;
    let time_ids = addition_embed_dim
        .checked_sub(pooled_dim)
        .unwrap_or(usize::MAX);
    if time_ids == usize::MAX || time_ids % 6 != 0 || time_ids == 0 {
        return Err(format!(
            "the text_time embedding takes {addition_embed_dim} inputs, which is not the pooled \
             width {pooled_dim} plus six equal time-id embeddings"
        ));
    }

    Ok(UnetConfig {
        in_channels: probe.dim(&conv_in, 1)?,
        out_channels: probe.dim(&format!("{}.weight", sp.fixed("conv_out")), 0)?,
        block_out_channels,
        layers_per_block: layers,
        transformer_depth,
        transformer_depth_up,
        mid_transformer_depth,
        head_dim,
        context_dim: probe.dim(
            &format!("{first_attention}.transformer_blocks.0.attn2.to_k.weight"),
            1,
        )?,
        time_embed_dim: probe.dim(
            &format!("{}.weight", sp.fixed("time_embedding.linear_1")),
            0,
        )?,
        addition_embed_dim,
        addition_time_embed_dim: time_ids / 6,
        norm_groups: 32,
    })
}

/// Every UNet parameter, canonical name and shape, with its key in `layout`.
pub fn table(cfg: &UnetConfig, layout: Layout) -> Vec<super::Row> {
    let sp = Spelling {
        layout,
        layers: cfg.layers_per_block,
    };
    let ch = &cfg.block_out_channels;
    let mut rows = Rows::default();
    let embeddings = [
        ("time_embedding.linear_1", ch[0]),
        ("time_embedding.linear_2", cfg.time_embed_dim),
        ("add_embedding.linear_1", cfg.addition_embed_dim),
        ("add_embedding.linear_2", cfg.time_embed_dim),
    ];
    for (c, inp) in embeddings {
        rows.linear(c, sp.fixed(c), cfg.time_embed_dim, inp, true);
    }
    rows.conv("conv_in", sp.fixed("conv_in"), ch[0], cfg.in_channels, 3);
    down_rows(&mut rows, cfg, &sp);
    mid_rows(&mut rows, cfg, &sp);
    up_rows(&mut rows, cfg, &sp);
    rows.norm("conv_norm_out", sp.fixed("conv_norm_out"), ch[0]);
    rows.conv("conv_out", sp.fixed("conv_out"), cfg.out_channels, ch[0], 3);
    rows.0
}

/// The down blocks: resnets, their transformers where the level has them, the downsamplers.
fn down_rows(rows: &mut Rows, cfg: &UnetConfig, sp: &Spelling) {
    let leaf = |name| sp.resnet_leaf(name);
    let temb = Some(cfg.time_embed_dim);
    for (level, &width) in cfg.block_out_channels.iter().enumerate() {
        let depth = cfg.transformer_depth[level];
        for j in 0..cfg.layers_per_block {
            let cin = if j == 0 {
                cfg.down_in_channels(level)
            } else {
                width
            };
            let c = format!("down_blocks.{level}.resnets.{j}");
            rows.resnet(&c, &sp.down_resnet(level, j), &leaf, cin, width, temb);
            if depth > 0 {
                let c = format!("down_blocks.{level}.attentions.{j}");
                let f = sp.down_attention(level, j);
                transformer(rows, &c, &f, width, depth, cfg.context_dim);
            }
        }
        if level + 1 < cfg.levels() {
            let c = format!("down_blocks.{level}.downsamplers.0.conv");
            rows.conv(&c, &sp.downsampler(level), width, width, 3);
        }
    }
}

/// The mid block: two resnets around a transformer, at the deepest width.
fn mid_rows(rows: &mut Rows, cfg: &UnetConfig, sp: &Spelling) {
    let leaf = |name| sp.resnet_leaf(name);
    let deepest = cfg.block_out_channels[cfg.levels() - 1];
    for k in 0..2 {
        let c = format!("mid_block.resnets.{k}");
        let temb = Some(cfg.time_embed_dim);
        rows.resnet(&c, &sp.mid_resnet(k), &leaf, deepest, deepest, temb);
    }
    let (c, f) = ("mid_block.attentions.0", sp.mid_attention());
    transformer(
        rows,
        c,
        &f,
        deepest,
        cfg.mid_transformer_depth,
        cfg.context_dim,
    );
}

/// The up blocks, deepest first: resnets reading the skips, transformers, upsamplers.
fn up_rows(rows: &mut Rows, cfg: &UnetConfig, sp: &Spelling) {
    let leaf = |name| sp.resnet_leaf(name);
    let temb = Some(cfg.time_embed_dim);
    for level in 0..cfg.levels() {
        let width = cfg.up_channels(level);
        let depth = cfg.transformer_depth_up[level];
        for j in 0..=cfg.layers_per_block {
            let cin = cfg.up_resnet_in_channels(level, j);
            let c = format!("up_blocks.{level}.resnets.{j}");
            rows.resnet(&c, &sp.up_resnet(level, j), &leaf, cin, width, temb);
            if depth > 0 {
                let c = format!("up_blocks.{level}.attentions.{j}");
                let f = sp.up_attention(level, j);
                transformer(rows, &c, &f, width, depth, cfg.context_dim);
            }
        }
        if level + 1 < cfg.levels() {
            let c = format!("up_blocks.{level}.upsamplers.0.conv");
            rows.conv(&c, &sp.upsampler(level, depth > 0), width, width, 3);
        }
    }
}

/// A spatial transformer (`Transformer2DModel`, linear projections): the same leaf names in
/// both layouts.
fn transformer(rows: &mut Rows, c: &str, f: &str, width: usize, depth: usize, context: usize) {
    let inner = 4 * width;
    rows.norm(&format!("{c}.norm"), &format!("{f}.norm"), width);
    rows.linear(
        &format!("{c}.proj_in"),
        &format!("{f}.proj_in"),
        width,
        width,
        true,
    );
    for k in 0..depth {
        let (c, f) = (
            format!("{c}.transformer_blocks.{k}"),
            format!("{f}.transformer_blocks.{k}"),
        );
        for (attn, kv_width) in [("attn1", width), ("attn2", context)] {
            let (c, f) = (format!("{c}.{attn}"), format!("{f}.{attn}"));
            rows.linear(
                &format!("{c}.to_q"),
                &format!("{f}.to_q"),
                width,
                width,
                false,
            );
            rows.linear(
                &format!("{c}.to_k"),
                &format!("{f}.to_k"),
                width,
                kv_width,
                false,
            );
            rows.linear(
                &format!("{c}.to_v"),
                &format!("{f}.to_v"),
                width,
                kv_width,
                false,
            );
            rows.linear(
                &format!("{c}.to_out.0"),
                &format!("{f}.to_out.0"),
                width,
                width,
                true,
            );
        }
        for norm in ["norm1", "norm2", "norm3"] {
            rows.norm(&format!("{c}.{norm}"), &format!("{f}.{norm}"), width);
        }
        let (geglu, out) = (format!("{c}.ff.net.0.proj"), format!("{c}.ff.net.2"));
        rows.linear(
            &geglu,
            &format!("{f}.ff.net.0.proj"),
            2 * inner,
            width,
            true,
        );
        rows.linear(&out, &format!("{f}.ff.net.2"), width, inner, true);
    }
    rows.linear(
        &format!("{c}.proj_out"),
        &format!("{f}.proj_out"),
        width,
        width,
        true,
    );
}
