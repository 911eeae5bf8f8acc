//! The adapter set: for each adapted layer, the low-rank deltas of every active LoRA, uploaded
//! and validated. Built whole from a list of files; any failure returns an error and builds
//! nothing, so the engine keeps its previous set. The models apply the deltas at run time
//! through [`Adapt`] views (`nn/low_rank.rs`); base weights are never modified.
//!
//! A layer's output gains `sum_i scale_i * up_i(down_i(x))` with `scale = weight * alpha / rank`
//! (alpha missing: `scale = weight`), as kohya and PEFT define it. The LoRAs on one layer are
//! joined at build into one delta of their summed rank, `[up_1 up_2] [down_1; down_2]`: one pair
//! of matmuls per layer however many LoRAs are active.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;

use burn::tensor::{Device, FloatDType, Tensor, TensorData};

use super::{LayerId, LoraError, LoraFile, LoraModule, LoraSpec, LoraTable};
use crate::checkpoint::Component;
use crate::nn::{channels_last, Adapt, LayerDeltas, LowRankDelta};
use crate::text_encoder::TextAdapters;

/// The active adapters: per model, layer path -> deltas, in the order the LoRAs were given.
#[derive(Clone, Debug, Default)]
pub struct AdapterSet {
    layers: BTreeMap<Component, LayerDeltas>,
    specs: Vec<LoraSpec>,
}

/// What building found in one file.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct FileReport {
    pub path: PathBuf,
    /// Adapted layers per component.
    pub matched: BTreeMap<Component, usize>,
    /// Modules that match no layer (warned about; an error when nothing matches).
    pub unmatched: Vec<String>,
    /// Tensors of unknown kinds (DoRA scales, LyCORIS LoHa/LoKr factors, ...), not applied.
    pub unrecognised: Vec<String>,
}

/// What a build found, file by file.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize)]
pub struct BuildReport {
    pub files: Vec<FileReport>,
}

impl AdapterSet {
    /// The empty set (no LoRA).
    pub fn none() -> Self {
        AdapterSet::default()
    }

    /// Reads, validates and uploads (in `dtype`, the models' compute dtype) every LoRA of
    /// `specs` for the model `table` describes.
    /// Everything is checked before anything is uploaded; on error nothing is kept.
    pub fn build(
        specs: &[LoraSpec],
        table: &LoraTable,
        device: &Device,
        dtype: FloatDType,
    ) -> Result<(AdapterSet, BuildReport), LoraError> {
        // plan everything on the host first
        let mut planned: Vec<(LayerId, HostDelta)> = Vec::new();
        let mut report = BuildReport::default();
        for spec in specs {
            let file = LoraFile::open(&spec.path)?;
            let (deltas, file_report) = plan_file(&file, spec, table, dtype)?;
            planned.extend(deltas);
            report.files.push(file_report);
        }
        let mut joined: BTreeMap<LayerId, Vec<HostDelta>> = BTreeMap::new();
        for (layer, delta) in planned {
            let deltas = joined.entry(layer).or_default();
            match deltas.pop() {
                Some(last) if last.joins(&delta) => deltas.push(last.join(delta)),
                Some(last) => deltas.extend([last, delta]),
                None => deltas.push(delta),
            }
        }
        let mut layers: BTreeMap<Component, LayerDeltas> = BTreeMap::new();
        for (layer, deltas) in joined {
            let uploaded = deltas.into_iter().map(|d| d.upload(device, dtype));
            layers
                .entry(layer.component)
                .or_default()
                .insert(layer.path, uploaded.collect());
        }
        Ok((
            AdapterSet {
                layers,
                specs: specs.to_vec(),
            },
            report,
        ))
    }

    /// Validates one LoRA against the model `table` describes (everything [`AdapterSet::build`]
    /// checks for a model computing in f16, the usual case) without uploading anything.
    pub fn check(spec: &LoraSpec, table: &LoraTable) -> Result<FileReport, LoraError> {
        let file = LoraFile::open(&spec.path)?;
        plan_file(&file, spec, table, FloatDType::F16).map(|(_, report)| report)
    }

    /// What `component`'s forward pass consults.
    pub fn scope(&self, component: Component) -> Adapt<'_> {
        Adapt::new(self.layers.get(&component))
    }

    /// What the text encoders' forward passes consult.
    pub fn text(&self) -> TextAdapters<'_> {
        TextAdapters {
            text_encoder: self.scope(Component::TextEncoder),
            text_encoder_2: self.scope(Component::TextEncoder2),
        }
    }

    /// The deltas on `layer` (empty when it is not adapted).
    pub fn deltas(&self, layer: &LayerId) -> &[LowRankDelta] {
        self.scope(layer.component).deltas(&layer.path)
    }

    /// Adapted layers.
    pub fn len(&self) -> usize {
        self.layers.values().map(LayerDeltas::len).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.layers.is_empty()
    }

    /// The LoRAs this set was built from.
    pub fn specs(&self) -> &[LoraSpec] {
        &self.specs
    }
}

/// A delta on the host, validated: shapes and values with the scale folded into `up`.
struct HostDelta {
    down_shape: Vec<usize>,
    down: Vec<f32>,
    up_shape: Vec<usize>,
    up: Vec<f32>,
}

impl HostDelta {
    /// Whether `other` can share this delta's matmuls: the same kind and the same shapes but
    /// for the rank (a LoCon's 3x3 down cannot join a 1x1 one).
    fn joins(&self, other: &HostDelta) -> bool {
        self.down_shape[1..] == other.down_shape[1..]
            && self.up_shape[0] == other.up_shape[0]
            && self.up_shape[2..] == other.up_shape[2..]
    }

    /// One delta of rank `r1 + r2` equal to the sum of both: `up_1 down_1 x + up_2 down_2 x =
    /// [up_1 up_2] [down_1; down_2] x`.
    fn join(mut self, other: HostDelta) -> HostDelta {
        let (r1, r2) = (self.down_shape[0], other.down_shape[0]);
        // down [r, in (, kh, kw)]: the second's rows after the first's
        self.down.extend(other.down);
        self.down_shape[0] = r1 + r2;
        // up [out, r (, 1, 1)]: each output row is the first's row, then the second's
        let up = self
            .up
            .chunks_exact(r1)
            .zip(other.up.chunks_exact(r2))
            .flat_map(|(a, b)| a.iter().chain(b))
            .copied()
            .collect();
        self.up = up;
        self.up_shape[1] = r1 + r2;
        self
    }

    fn upload(self, device: &Device, dtype: FloatDType) -> LowRankDelta {
        // f16 compute: upload f16 (half the bytes, no cast kernel)
        let data = |values: Vec<f32>, shape: Vec<usize>| match dtype {
            FloatDType::F16 => TensorData::new(
                values
                    .into_iter()
                    .map(half::f16::from_f32)
                    .collect::<Vec<_>>(),
                shape,
            ),
            _ => TensorData::new(values, shape),
        };
        let (down, up) = (
            data(self.down, self.down_shape),
            data(self.up, self.up_shape),
        );
        match down.shape().len() {
            2 => LowRankDelta::Linear {
                down: Tensor::<2>::from_data(down, device).cast(dtype),
                up: Tensor::<2>::from_data(up, device).cast(dtype),
            },
            _ => LowRankDelta::Conv {
                down: channels_last(Tensor::<4>::from_data(down, device).cast(dtype)),
                up: Tensor::<4>::from_data(up, device).cast(dtype),
            },
        }
    }
}

/// Hints for a file that matches nothing, by its module names.
fn no_match_hint(file: &LoraFile) -> &'static str {
    let names = || file.modules.iter().map(|m| m.name.as_str());
    if names().any(|n| n.starts_with("lora_te_")) {
        " — `lora_te_` names a single text encoder: an SD 1.x/2.x LoRA, not SDXL"
    } else if names().any(|n| n.starts_with("lora_unet_") || n.starts_with("unet.")) {
        " — its layer names or shapes belong to another architecture (an SD 1.x/2.x LoRA?)"
    } else {
        ""
    }
}

/// The largest LoRA weight, either sign (A1111 sets none; 0.5 to 1 is usual, a few styles want 2).
pub const MAX_LORA_WEIGHT: f32 = 10.0;

/// A LoRA's weights are finite and within [`MAX_LORA_WEIGHT`]: checked before its file is read,
/// and by callers that want to refuse a request before loading anything.
pub fn check_weights(spec: &LoraSpec) -> Result<(), LoraError> {
    for weight in [spec.unet_weight, spec.text_encoder_weight] {
        if !weight.is_finite() || weight.abs() > MAX_LORA_WEIGHT {
            return Err(LoraError::Weight {
                path: spec.path.clone(),
                weight,
                max: MAX_LORA_WEIGHT,
            });
        }
    }
    Ok(())
}

fn plan_file(
    file: &LoraFile,
    spec: &LoraSpec,
    table: &LoraTable,
    dtype: FloatDType,
) -> Result<(Vec<(LayerId, HostDelta)>, FileReport), LoraError> {
    let path = file.path().to_path_buf();
    check_weights(spec)?;
    if file.modules.is_empty() {
        return Err(LoraError::Empty { path });
    }
    let mut deltas = Vec::new();
    let mut matched: BTreeMap<Component, usize> = BTreeMap::new();
    let mut unmatched = Vec::new();
    let mut adapted: HashMap<&LayerId, &str> = HashMap::new();
    for module in &file.modules {
        let Some(target) = table.get(&module.name) else {
            unmatched.push(module.name.clone());
            continue;
        };
        if let Some(first) = adapted.insert(&target.layer, &module.name) {
            return Err(LoraError::Collision {
                path,
                layer: format!("{:?} {}", target.layer.component, target.layer.path),
                first: first.to_string(),
                second: module.name.clone(),
            });
        }
        let weight = match target.layer.component {
            Component::Unet => spec.unet_weight,
            _ => spec.text_encoder_weight,
        };
        let delta = plan_module(file, module, &target.weight_shape, weight, dtype)?;
        *matched.entry(target.layer.component).or_default() += 1;
        if weight != 0.0 {
            // a part at weight 0 adds nothing: checked like the rest, never uploaded or run
            deltas.push((target.layer.clone(), delta));
        }
    }
    if matched.is_empty() {
        return Err(LoraError::NoMatch {
            hint: no_match_hint(file),
            path,
            modules: file.modules.len(),
            example: file.modules[0].name.clone(),
        });
    }
    Ok((
        deltas,
        FileReport {
            path,
            matched,
            unmatched,
            unrecognised: file.unrecognised.clone(),
        },
    ))
}

/// Checks one module against the layer's weight shape and folds `weight * alpha / rank` into
/// its up matrix.
fn plan_module(
    file: &LoraFile,
    module: &LoraModule,
    layer: &[usize],
    weight: f32,
    dtype: FloatDType,
) -> Result<HostDelta, LoraError> {
    let shape_error = |reason: String| LoraError::Shape {
        path: file.path().to_path_buf(),
        module: module.name.clone(),
        reason,
    };
    let (down_shape, up_shape) =
        expected_shapes(&module.down.shape, &module.up.shape, layer).map_err(shape_error)?;
    let rank = down_shape[0];
    let alpha = match &module.alpha {
        None => rank as f32,
        Some(t) => {
            let values = file.values(t)?;
            match values.as_slice() {
                [a] => *a,
                _ => {
                    return Err(shape_error(format!(
                        "alpha has {} values, expected one",
                        values.len()
                    )))
                }
            }
        }
    };
    let scale = weight * alpha / rank as f32;
    let down = file.values(&module.down)?;
    let up: Vec<f32> = file
        .values(&module.up)?
        .into_iter()
        .map(|v| v * scale)
        .collect();
    // what the compute dtype holds: a scaled value past it would be infinite on the device
    let (name, max) = match dtype {
        FloatDType::F16 => ("f16", f32::from(half::f16::MAX)),
        _ => ("f32", f32::MAX),
    };
    let largest = down.iter().chain(&up).fold(0f32, |m, v| m.max(v.abs()));
    if largest.is_nan() || largest > max {
        return Err(LoraError::Overflow {
            path: file.path().to_path_buf(),
            module: module.name.clone(),
            value: largest,
            dtype: name,
            max,
        });
    }
    Ok(HostDelta {
        down_shape,
        down,
        up_shape,
        up,
    })
}

/// The shapes a module's down and up tensors must have to adapt a layer of weight shape
/// `layer`, as they will be uploaded: linear `[r, in]` / `[out, r]` (1x1-conv spellings
/// `[r, in, 1, 1]` accepted), conv `[r, in, kh, kw]` / `[out, r, 1, 1]`.
fn expected_shapes(
    down: &[usize],
    up: &[usize],
    layer: &[usize],
) -> Result<(Vec<usize>, Vec<usize>), String> {
    let squeeze = |s: &[usize]| match s {
        [a, b, 1, 1] => vec![*a, *b],
        other => other.to_vec(),
    };
    match layer {
        [out, inp] => {
            let (d, u) = (squeeze(down), squeeze(up));
            match (d.as_slice(), u.as_slice()) {
                ([r, i], [o, r2]) if i == inp && o == out && r == r2 && *r > 0 => Ok((d, u)),
                _ => Err(format!(
                    "down {down:?} / up {up:?} do not fit a linear layer of [{out}, {inp}] (expected [rank, {inp}] / [{out}, rank])"
                )),
            }
        }
        [out, inp, kh, kw] => match (down, up) {
            ([r, i, dh, dw], [o, r2, 1, 1])
                if i == inp && o == out && r == r2 && *r > 0 && (dh, dw) == (kh, kw) =>
            {
                Ok((down.to_vec(), up.to_vec()))
            }
            _ => Err(format!(
                "down {down:?} / up {up:?} do not fit a convolution of [{out}, {inp}, {kh}, {kw}] (expected [rank, {inp}, {kh}, {kw}] / [{out}, rank, 1, 1])"
            )),
        },
        other => Err(format!("the layer's weight has shape {other:?}")),
    }
}
