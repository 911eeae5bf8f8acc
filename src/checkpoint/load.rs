//! Uploading a checkpoint's tensors into the model modules, one tensor at a time straight from
//! the memory map (host RAM peaks at about one tensor), in the stored dtype unless asked
//! otherwise. Transforms are byte slices except for the one small transpose of bigG's
//! `text_projection`.

use std::collections::BTreeSet;

use burn::module::Param;
use burn::tensor::{AllocationProperty, Bytes, DType, Device, Tensor, TensorData};
use half::{bf16, f16};

use super::error::CheckpointError;
use super::keys::Transform;
use super::safetensors_file::Dtype;
use super::{Checkpoint, Component, Resolved};
use crate::text_encoder::ClipTextModel;
use crate::unet::Unet;
use crate::vae::AutoencoderKl;

/// The dtype weights get on the device.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum WeightDtype {
    /// As stored: f16 and f32 unchanged, bf16 as f16 (wgpu cannot compute in bf16), f64 as f32.
    #[default]
    AsStored,
    F16,
    F32,
}

/// Every tensor uploaded while loading a component, by canonical name, flattened; kept only
/// when asked for, to check what reached the device.
pub type Uploaded = Vec<(String, Vec<usize>, Tensor<1>)>;

/// The weights of one component, handed out by canonical name to the module constructors.
pub struct ComponentWeights<'a> {
    checkpoint: &'a Checkpoint,
    component: Component,
    device: &'a Device,
    dtype: WeightDtype,
    taken: BTreeSet<String>,
    uploaded: Option<Uploaded>,
}

impl<'a> ComponentWeights<'a> {
    fn new(
        checkpoint: &'a Checkpoint,
        component: Component,
        device: &'a Device,
        dtype: WeightDtype,
        keep: bool,
    ) -> Self {
        ComponentWeights {
            checkpoint,
            component,
            device,
            dtype,
            taken: BTreeSet::new(),
            uploaded: keep.then(Vec::new),
        }
    }

    /// Whether the architecture has a parameter of this canonical name.
    pub fn has(&self, name: &str) -> bool {
        self.checkpoint.resolved(self.component).contains_key(name)
    }

    fn internal(&self, reason: String) -> CheckpointError {
        CheckpointError::Architecture {
            path: self.checkpoint.path().to_path_buf(),
            component: self.component.describe(),
            reason,
        }
    }

    /// Uploads the parameter `name` to the device.
    pub fn param<const D: usize>(
        &mut self,
        name: &str,
    ) -> Result<Param<Tensor<D>>, CheckpointError> {
        let resolved = self.checkpoint.resolved(self.component);
        let r = resolved
            .get(name)
            .ok_or_else(|| self.internal(format!("no key-table row for `{name}`")))?;
        if r.shape.len() != D {
            return Err(self.internal(format!(
                "`{name}` has rank {}, the module wants {D}",
                r.shape.len()
            )));
        }
        let file = self.checkpoint.file(r.file);
        let no_data = || self.internal(format!("`{}` has no data (header-only checkpoint)", r.key));
        let stored = r.info.dtype;
        let zero_copy = matches!(r.transform, Transform::None | Transform::Squeeze1x1)
            && matches!(
                (self.dtype, stored),
                (WeightDtype::AsStored | WeightDtype::F16, Dtype::F16)
                    | (WeightDtype::AsStored | WeightDtype::F32, Dtype::F32)
            );
        let data = if zero_copy {
            let shared = file.shared_bytes(&r.info).ok_or_else(no_data)?;
            let dtype = if stored == Dtype::F16 {
                DType::F16
            } else {
                DType::F32
            };
            let bytes = Bytes::from_shared(shared, AllocationProperty::File);
            Some(TensorData::from_bytes(bytes, r.shape.clone(), dtype))
        } else {
            tensor_data(file.bytes(&r.info).ok_or_else(no_data)?, r, self.dtype)
        };
        let data = data.ok_or_else(|| CheckpointError::UnsupportedWeightDtype {
            path: file.path().to_path_buf(),
            name: r.key.clone(),
            dtype: r.info.dtype.name().to_string(),
        })?;
        let dtype = data.dtype();
        let tensor = Tensor::<D>::from_data(data, (self.device, dtype));
        if let Some(uploaded) = &mut self.uploaded {
            let numel = r.shape.iter().product::<usize>();
            uploaded.push((
                name.to_string(),
                r.shape.clone(),
                tensor.clone().reshape([numel]),
            ));
        }
        self.taken.insert(name.to_string());
        Ok(Param::from_tensor(tensor))
    }

    /// Checks that the modules took every parameter of the table.
    fn finish(self) -> Result<Option<Uploaded>, CheckpointError> {
        let resolved = self.checkpoint.resolved(self.component);
        if let Some(left) = resolved.keys().find(|k| !self.taken.contains(*k)) {
            return Err(self.internal(format!("the module tree does not use `{left}`")));
        }
        Ok(self.uploaded)
    }
}

impl Checkpoint {
    /// Builds a component's module from its weights on `device`, optionally keeping a handle on
    /// every uploaded tensor.
    pub fn load_component<M>(
        &self,
        component: Component,
        device: &Device,
        dtype: WeightDtype,
        keep_uploaded: bool,
        build: impl FnOnce(&mut ComponentWeights) -> Result<M, CheckpointError>,
    ) -> Result<(M, Option<Uploaded>), CheckpointError> {
        self.ensure_complete()?;
        let mut weights = ComponentWeights::new(self, component, device, dtype, keep_uploaded);
        let module = build(&mut weights)?;
        Ok((module, weights.finish()?))
    }

    pub fn load_unet(&self, device: &Device, dtype: WeightDtype) -> Result<Unet, CheckpointError> {
        let cfg = &self.config.unet;
        Ok(self
            .load_component(Component::Unet, device, dtype, false, |w| {
                Unet::load(cfg, w)
            })?
            .0)
    }

    /// CLIP-L (`Component::TextEncoder`) or bigG (`Component::TextEncoder2`).
    pub fn load_text_encoder(
        &self,
        component: Component,
        device: &Device,
        dtype: WeightDtype,
    ) -> Result<ClipTextModel, CheckpointError> {
        let cfg = match component {
            Component::TextEncoder => &self.config.text_encoder,
            Component::TextEncoder2 => &self.config.text_encoder_2,
            other => {
                return Err(CheckpointError::Architecture {
                    path: self.path().to_path_buf(),
                    component: other.describe(),
                    reason: "is not a text encoder".into(),
                })
            }
        };
        let build = |w: &mut ComponentWeights| ClipTextModel::load(cfg, w);
        Ok(self
            .load_component(component, device, dtype, false, build)?
            .0)
    }

    pub fn load_vae(
        &self,
        device: &Device,
        dtype: WeightDtype,
    ) -> Result<AutoencoderKl, CheckpointError> {
        let cfg = &self.config.vae;
        Ok(self
            .load_component(Component::Vae, device, dtype, false, |w| {
                AutoencoderKl::load(cfg, w)
            })?
            .0)
    }
}

/// The canonical tensor's data: the stored bytes transformed and converted to the target dtype.
/// `None` for a dtype we cannot load as a float weight.
fn tensor_data(bytes: &[u8], r: &Resolved, target: WeightDtype) -> Option<TensorData> {
    let stored = r.info.dtype;
    let size = stored.size();
    let bytes: Vec<u8> = match r.transform {
        Transform::None | Transform::Squeeze1x1 => bytes.to_vec(),
        Transform::SplitRows { index, parts } => {
            let part = bytes.len() / parts;
            bytes[index * part..(index + 1) * part].to_vec()
        }
        Transform::Transpose => {
            // stored [rows, cols] -> canonical [cols, rows]
            let (rows, cols) = (r.info.shape[0], r.info.shape[1]);
            let mut out = vec![0u8; bytes.len()];
            for i in 0..rows {
                for j in 0..cols {
                    let (from, to) = ((i * cols + j) * size, (j * rows + i) * size);
                    out[to..to + size].copy_from_slice(&bytes[from..from + size]);
                }
            }
            out
        }
    };
    let (bytes, dtype) = convert(bytes, stored, target)?;
    Some(TensorData::from_bytes_vec(bytes, r.shape.clone(), dtype))
}

/// Converts little-endian float bytes from `stored` to the dtype `target` asks for.
fn convert(bytes: Vec<u8>, stored: Dtype, target: WeightDtype) -> Option<(Vec<u8>, DType)> {
    let want = match (target, stored) {
        (WeightDtype::F16, _) | (WeightDtype::AsStored, Dtype::F16 | Dtype::BF16) => DType::F16,
        (WeightDtype::F32, _) | (WeightDtype::AsStored, Dtype::F32 | Dtype::F64) => DType::F32,
        _ => return None,
    };
    let keep = matches!(
        (stored, want),
        (Dtype::F16, DType::F16) | (Dtype::F32, DType::F32)
    );
    if keep {
        return Some((bytes, want));
    }
    let values = to_f32(&bytes, stored)?;
    let out = match want {
        DType::F16 => values
            .iter()
            .flat_map(|v| f16::from_f32(*v).to_le_bytes())
            .collect(),
        _ => values.iter().flat_map(|v| v.to_le_bytes()).collect(),
    };
    Some((out, want))
}

/// Decodes little-endian float bytes as f32 values; `None` for non-float dtypes and fp8.
fn to_f32(bytes: &[u8], dtype: Dtype) -> Option<Vec<f32>> {
    Some(match dtype {
        Dtype::F16 => bytes
            .chunks_exact(2)
            .map(|b| f16::from_le_bytes([b[0], b[1]]).to_f32())
            .collect(),
        Dtype::BF16 => bytes
            .chunks_exact(2)
            .map(|b| bf16::from_le_bytes([b[0], b[1]]).to_f32())
            .collect(),
        Dtype::F32 => bytes
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect(),
        Dtype::F64 => bytes
            .chunks_exact(8)
            .map(|b| f64::from_le_bytes(b.try_into().unwrap_or([0; 8])) as f32)
            .collect(),
        _ => return None,
    })
}

/// NaN and infinity counts of a stored float tensor (zero for other dtypes).
pub(crate) fn count_non_finite(bytes: &[u8], dtype: Dtype) -> (usize, usize) {
    let check =
        |nan: bool, inf: bool, acc: (usize, usize)| (acc.0 + nan as usize, acc.1 + inf as usize);
    match dtype {
        Dtype::F16 => bytes.chunks_exact(2).fold((0, 0), |acc, b| {
            let v = f16::from_le_bytes([b[0], b[1]]);
            check(v.is_nan(), v.is_infinite(), acc)
        }),
        Dtype::BF16 => bytes.chunks_exact(2).fold((0, 0), |acc, b| {
            let v = bf16::from_le_bytes([b[0], b[1]]);
            check(v.is_nan(), v.is_infinite(), acc)
        }),
        Dtype::F32 => bytes.chunks_exact(4).fold((0, 0), |acc, b| {
            let v = f32::from_le_bytes([b[0], b[1], b[2], b[3]]);
            check(v.is_nan(), v.is_infinite(), acc)
        }),
        Dtype::F64 => bytes.chunks_exact(8).fold((0, 0), |acc, b| {
            let v = f64::from_le_bytes(b.try_into().unwrap_or([0; 8]));
            check(v.is_nan(), v.is_infinite(), acc)
        }),
        _ => (0, 0),
    }
}
