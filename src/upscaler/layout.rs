//! Which network an upscaler file holds, from its key names and shapes alone, and the exact
//! table from its spelling of each parameter to the canonical one the networks load (the old
//! ESRGAN layout for RRDBNets, `body.N` for the compact network). The rules are spandrel's
//! (`architectures/ESRGAN/__init__.py` and `architectures/Compact/__init__.py` at 0.4.1,
//! <https://github.com/chaiNNer-org/spandrel/tree/v0.4.1/libs/spandrel/spandrel/architectures>):
//! widths, block counts and scale come from shapes; an RRDBNet whose input has 4 or 16 times its
//! output's channels pixel-unshuffles first (Real-ESRGAN's 2x and 1x models).

use std::collections::BTreeMap;

use super::UpscalerError;
use crate::weights::{SafetensorsFile, StoredParam, Transform, WeightSource};

/// The networks this engine runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Arch {
    /// ESRGAN's RRDBNet: `blocks` residual-in-residual dense blocks `width` wide, `stages`
    /// nearest-x2 + conv stages, after a pixel-unshuffle by `unshuffle` (1: none).
    Rrdb {
        width: usize,
        blocks: usize,
        stages: usize,
        unshuffle: usize,
    },
    /// Real-ESRGAN's SRVGGNetCompact: `convs` 3x3 convolutions `width` wide with PReLU, then a
    /// pixel shuffle by the scale, plus the input upsampled by nearest.
    Compact { width: usize, convs: usize },
}

/// What a file holds: the network, its channels and its scale (output side / input side).
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub struct UpscalerInfo {
    pub arch: Arch,
    pub in_channels: usize,
    pub out_channels: usize,
    pub scale: usize,
}

impl UpscalerInfo {
    /// The architecture as spandrel names it, with its size (`ESRGAN 64nf 23nb`).
    pub fn describe(&self) -> String {
        match self.arch {
            Arch::Rrdb {
                width,
                blocks,
                unshuffle,
                ..
            } => {
                let shuffle = if unshuffle > 1 { " unshuffle" } else { "" };
                format!("ESRGAN (RRDBNet) {width}nf {blocks}nb{shuffle}")
            }
            Arch::Compact { width, convs } => {
                format!("Real-ESRGAN compact (SRVGGNet) {width}nf {convs}nc")
            }
        }
    }
}

/// A file's parameters under their canonical names.
pub struct Layout<'a> {
    pub info: UpscalerInfo,
    file: &'a SafetensorsFile,
    /// canonical name -> the file's name
    names: BTreeMap<String, String>,
}

impl WeightSource for Layout<'_> {
    fn model_name(&self) -> &str {
        "upscaler"
    }

    fn describe(&self) -> String {
        format!("{}: {}", self.file.path().display(), self.info.describe())
    }

    fn names(&self) -> Vec<&str> {
        self.names.keys().map(String::as_str).collect()
    }

    fn get(&self, name: &str) -> Option<StoredParam<'_>> {
        let key = self.names.get(name)?;
        let info = self.file.header().tensors.get(key)?;
        Some(StoredParam {
            file: self.file,
            key,
            info,
            transform: Transform::None,
            shape: &info.shape,
        })
    }
}

/// The file's names with a training wrapper's prefix removed: BasicSR saves `params_ema` (the
/// weights' moving average, which inference uses) and `params`; the first found is used.
fn unwrapped(file: &SafetensorsFile) -> BTreeMap<String, String> {
    let keys = file.header().tensors.keys();
    for prefix in ["params_ema.", "params.", "state_dict.", "model_state_dict."] {
        let inner: BTreeMap<String, String> = keys
            .clone()
            .filter_map(|k| Some((k.strip_prefix(prefix)?.to_string(), k.clone())))
            .collect();
        if !inner.is_empty() {
            return inner;
        }
    }
    keys.map(|k| (k.clone(), k.clone())).collect()
}

/// Reads `file`'s layout, or says what the file is instead.
pub fn detect(file: &SafetensorsFile) -> Result<Layout<'_>, UpscalerError> {
    let names = unwrapped(file);
    let has = |k: &str| names.contains_key(k);
    let names = if has("model.0.weight") && has("model.1.sub.0.RDB1.conv1.0.weight") {
        names
    } else if has("conv_first.weight")
        && (has("body.0.rdb1.conv1.weight") || has("RRDB_trunk.0.RDB1.conv1.weight"))
    {
        new_to_old(&names)
    } else if has("body.0.weight") && has("body.1.weight") {
        return compact(file, names);
    } else {
        return Err(UpscalerError::NotAnUpscaler {
            path: file.path().to_path_buf(),
            what: what_it_is(&names),
        });
    };
    rrdb(file, names)
}

/// The shape of the file's tensor under canonical name `name`.
fn shape<'a>(
    file: &'a SafetensorsFile,
    names: &BTreeMap<String, String>,
    name: &str,
) -> Result<&'a [usize], UpscalerError> {
    names
        .get(name)
        .and_then(|k| file.header().tensors.get(k))
        .map(|t| t.shape.as_slice())
        .ok_or_else(|| UpscalerError::Layout {
            path: file.path().to_path_buf(),
            reason: format!("it has no `{name}`"),
        })
}

/// The length of the sequence `prefix.N.*` (1 + the largest N), as spandrel's `get_seq_len`.
fn seq_len(names: &BTreeMap<String, String>, prefix: &str) -> usize {
    names
        .keys()
        .filter_map(|k| {
            k.strip_prefix(prefix)?
                .split('.')
                .next()?
                .parse::<usize>()
                .ok()
        })
        .max()
        .map_or(0, |n| n + 1)
}

fn rrdb(
    file: &SafetensorsFile,
    names: BTreeMap<String, String>,
) -> Result<Layout<'_>, UpscalerError> {
    let bad = |reason: String| UpscalerError::Layout {
        path: file.path().to_path_buf(),
        reason,
    };
    if names.keys().any(|k| k.contains(".conv1x1.")) {
        return Err(bad(
            "it is an ESRGAN+ network (`conv1x1`), which is not supported".into(),
        ));
    }
    let len = seq_len(&names, "model.");
    if len < 5 || (len - 5) % 3 != 0 {
        return Err(bad(format!(
            "its `model.N` sequence has {len} entries, no RRDBNet's"
        )));
    }
    let stages = (len - 5) / 3;
    let blocks = seq_len(&names, "model.1.sub.").saturating_sub(1);
    let first = shape(file, &names, "model.0.weight")?;
    let last = shape(file, &names, &format!("model.{}.weight", len - 1))?;
    let (width, in_channels, out_channels) = (first[0], first[1], last[0]);
    let unshuffle = match in_channels / out_channels.max(1) {
        4 if in_channels == 4 * out_channels => 2,
        16 if in_channels == 16 * out_channels => 4,
        _ => 1,
    };
    let info = UpscalerInfo {
        arch: Arch::Rrdb {
            width,
            blocks,
            stages,
            unshuffle,
        },
        in_channels: in_channels / (unshuffle * unshuffle),
        out_channels,
        scale: (1 << stages) / unshuffle,
    };
    if blocks == 0 || info.scale == 0 {
        return Err(bad("it has no RRDB blocks, or a scale below 1".into()));
    }
    Ok(Layout { info, file, names })
}

/// BasicSR's (Real-ESRGAN's) and BSRGAN's spellings as the old ESRGAN layout: spandrel's
/// `_to_old_arch` table.
fn new_to_old(names: &BTreeMap<String, String>) -> BTreeMap<String, String> {
    let blocks = seq_len(names, "body.").max(seq_len(names, "RRDB_trunk."));
    let stages = (1..)
        .take_while(|s| {
            names.contains_key(&format!("conv_up{s}.weight"))
                || names.contains_key(&format!("upconv{s}.weight"))
        })
        .count();
    let mut old = BTreeMap::new();
    for (name, key) in names {
        let Some((module, kind)) = name.rsplit_once('.') else {
            continue;
        };
        let parts: Vec<&str> = module.split('.').collect();
        let canonical = match parts.as_slice() {
            ["conv_first"] => "model.0".to_string(),
            ["conv_body" | "trunk_conv"] => format!("model.1.sub.{blocks}"),
            ["body" | "RRDB_trunk", n, rdb, conv] => {
                let rdb = rdb.replace("rdb", "RDB");
                format!("model.1.sub.{n}.{rdb}.{conv}.0")
            }
            [up] if up.starts_with("conv_up") || up.starts_with("upconv") => {
                let s: usize = up
                    .trim_start_matches(|c: char| !c.is_ascii_digit())
                    .parse()
                    .unwrap_or(0);
                format!("model.{}", 3 * s)
            }
            ["conv_hr" | "HRconv"] => format!("model.{}", 3 * stages + 2),
            ["conv_last"] => format!("model.{}", 3 * stages + 4),
            _ => format!("unmapped:{module}"), // kept: the build refuses what no layer takes
        };
        old.insert(format!("{canonical}.{kind}"), key.clone());
    }
    old
}

fn compact(
    file: &SafetensorsFile,
    names: BTreeMap<String, String>,
) -> Result<Layout<'_>, UpscalerError> {
    let len = seq_len(&names, "body.");
    let bad = |reason: String| UpscalerError::Layout {
        path: file.path().to_path_buf(),
        reason,
    };
    if len < 3 || len % 2 == 0 {
        return Err(bad(format!(
            "its `body.N` sequence has {len} entries, no compact network's"
        )));
    }
    let first = shape(file, &names, "body.0.weight")?;
    let last = shape(file, &names, &format!("body.{}.weight", len - 1))?;
    let (width, in_channels, shuffled) = (first[0], first[1], last[0]);
    // spandrel's get_scale_and_output_channels: the first of these channel counts that leaves
    // a square scale
    let (scale, out_channels) = [in_channels, 3, 4, 1]
        .into_iter()
        .filter(|&c| c > 0 && shuffled % c == 0)
        .find_map(|c| {
            let s = (shuffled / c).isqrt();
            (s * s == shuffled / c).then_some((s, c))
        })
        .ok_or_else(|| {
            bad(format!(
                "its last layer's {shuffled} channels are no scale's square"
            ))
        })?;
    let info = UpscalerInfo {
        arch: Arch::Compact {
            width,
            convs: (len - 3) / 2,
        },
        in_channels,
        out_channels,
        scale,
    };
    Ok(Layout { info, file, names })
}

/// A short description of a file that is no upscaler, from its key names.
fn what_it_is(names: &BTreeMap<String, String>) -> String {
    let any = |p: &str| names.keys().any(|k| k.contains(p));
    let kind = if any("model.diffusion_model.") || any("down_blocks.") {
        "a diffusion model (checkpoint or UNet)"
    } else if any("lora_") || any(".lora.") || any("hada_") || any("lokr_") {
        "a LoRA or LyCORIS adapter"
    } else if any("encoder.down.") || any("decoder.up.") {
        "a VAE"
    } else if any("layers.0.residual_group") || any("patch_embed") {
        "a transformer upscaler (SwinIR, HAT, DAT, ...), which is not supported"
    } else {
        "no known upscaler layout (ESRGAN, BasicSR / Real-ESRGAN RRDBNet, Real-ESRGAN compact)"
    };
    let first = names
        .keys()
        .next()
        .map_or("none".into(), |k| format!("`{k}`"));
    format!("{kind}; {} tensors, the first {first}", names.len())
}
