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
use crate::device::Gpu;
use crate::text_encoder::{ClipTextModel, TextEncoders};
use crate::unet::Unet;
use crate::vae::AutoencoderKl;

/// The dtype weights get on the device.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum WeightDtype {
    /// As stored: f16 and f32 unchanged, bf16 and fp8 as f16 (wgpu computes in neither), f64
    /// as f32.
    #[default]
    AsStored,
    F16,
    F32,
}

/// Told of every tensor as it is uploaded: its component, canonical name, shape, and the
/// device tensor (flattened). For progress reports, and for checking what reached the device.
pub type Observer<'a> = dyn FnMut(Component, &str, &[usize], Tensor<1>) + 'a;

/// The four models of an SDXL checkpoint, on a device.
#[derive(Debug)]
pub struct SdxlModels {
    pub unet: Unet,
    pub text_encoders: TextEncoders,
    pub vae: AutoencoderKl,
}

/// The weights of one component, handed out by canonical name to the module constructors.
pub struct ComponentWeights<'a, 'o> {
    checkpoint: &'a Checkpoint,
    component: Component,
    device: &'a Device,
    dtype: WeightDtype,
    taken: BTreeSet<String>,
    observe: &'a mut Observer<'o>,
}

impl ComponentWeights<'_, '_> {
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
        let unsupported = || CheckpointError::UnsupportedWeightDtype {
            path: file.path().to_path_buf(),
            name: r.key.clone(),
            dtype: r.info.dtype.name().to_string(),
        };
        let want = device_dtype(r.info.dtype, self.dtype).ok_or_else(unsupported)?;
        let bytes_as_stored = matches!(r.transform, Transform::None | Transform::Squeeze1x1)
            && is_same(r.info.dtype, want);
        let data = if bytes_as_stored {
            let shared = file.shared_bytes(&r.info).ok_or_else(no_data)?;
            let bytes = Bytes::from_shared(shared, AllocationProperty::File);
            TensorData::from_bytes(bytes, r.shape.clone(), want)
        } else {
            let bytes = file.bytes(&r.info).ok_or_else(no_data)?;
            tensor_data(bytes, r, want).ok_or_else(unsupported)?
        };
        let dtype = data.dtype();
        let tensor = Tensor::<D>::from_data(data, (self.device, dtype));
        let numel = r.shape.iter().product::<usize>();
        (self.observe)(
            self.component,
            name,
            &r.shape,
            tensor.clone().reshape([numel]),
        );
        self.taken.insert(name.to_string());
        Ok(Param::from_tensor(tensor))
    }

    /// Checks that the modules took every parameter of the table.
    fn finish(self) -> Result<(), CheckpointError> {
        let resolved = self.checkpoint.resolved(self.component);
        match resolved.keys().find(|k| !self.taken.contains(*k)) {
            Some(left) => Err(self.internal(format!("the module tree does not use `{left}`"))),
            None => Ok(()),
        }
    }
}

impl Checkpoint {
    /// Uploads every component onto `gpu`. Fails, uploading nothing, unless the report has no
    /// missing or mismatched tensors and every tensor fits the adapter's largest buffer.
    pub fn load(&self, gpu: &Gpu, dtype: WeightDtype) -> Result<SdxlModels, CheckpointError> {
        self.load_observed(gpu, dtype, &mut |_, _, _, _| {})
    }

    /// [`Checkpoint::load`], telling `observe` of every tensor uploaded.
    pub fn load_observed(
        &self,
        gpu: &Gpu,
        dtype: WeightDtype,
        observe: &mut Observer,
    ) -> Result<SdxlModels, CheckpointError> {
        self.ensure_complete()?;
        self.check_fits(&Component::ALL, gpu, dtype)?;
        let device = &gpu.device;
        let cfg = &self.config;
        Ok(SdxlModels {
            unet: self.build(Component::Unet, device, dtype, observe, |w| {
                Unet::load(&cfg.unet, w)
            })?,
            text_encoders: self.text_encoders(device, dtype, observe)?,
            vae: self.build(Component::Vae, device, dtype, observe, |w| {
                AutoencoderKl::load(&cfg.vae, w)
            })?,
        })
    }

    /// Uploads only the two text encoders (what prompt encoding needs).
    pub fn load_text_encoders(
        &self,
        gpu: &Gpu,
        dtype: WeightDtype,
    ) -> Result<TextEncoders, CheckpointError> {
        self.ensure_complete()?;
        self.check_fits(
            &[Component::TextEncoder, Component::TextEncoder2],
            gpu,
            dtype,
        )?;
        self.text_encoders(&gpu.device, dtype, &mut |_, _, _, _| {})
    }

    /// Fails before any upload if one tensor of `components`, in the dtype it gets on the
    /// device, is larger than the adapter's largest buffer (lavapipe: 128 MiB, which bigG's
    /// token embedding exceeds in f32).
    fn check_fits(
        &self,
        components: &[Component],
        gpu: &Gpu,
        dtype: WeightDtype,
    ) -> Result<(), CheckpointError> {
        let max = gpu.adapter.max_tensor_bytes();
        for &component in components {
            for (name, r) in self.resolved(component) {
                let Some(want) = device_dtype(r.info.dtype, dtype) else {
                    continue; // refused with its own error when loading
                };
                let bytes = (r.shape.iter().product::<usize>() * want.size()) as u64;
                if bytes > max {
                    return Err(CheckpointError::TooLargeForAdapter {
                        name: format!("{}.{name}", component.name()),
                        dtype: format!("{want:?}").to_lowercase(),
                        bytes,
                        max,
                        adapter: gpu.adapter.name.clone(),
                    });
                }
            }
        }
        Ok(())
    }

    /// Uploads only the VAE (what decoding latents needs).
    pub fn load_vae(
        &self,
        gpu: &Gpu,
        dtype: WeightDtype,
    ) -> Result<AutoencoderKl, CheckpointError> {
        self.ensure_complete()?;
        self.check_fits(&[Component::Vae], gpu, dtype)?;
        let cfg = &self.config.vae;
        self.build(
            Component::Vae,
            &gpu.device,
            dtype,
            &mut |_, _, _, _| {},
            |w| AutoencoderKl::load(cfg, w),
        )
    }

    fn text_encoders(
        &self,
        device: &Device,
        dtype: WeightDtype,
        observe: &mut Observer,
    ) -> Result<TextEncoders, CheckpointError> {
        let cfg = &self.config;
        Ok(TextEncoders {
            text_encoder: self.build(Component::TextEncoder, device, dtype, observe, |w| {
                ClipTextModel::load(&cfg.text_encoder, w)
            })?,
            text_encoder_2: self.build(Component::TextEncoder2, device, dtype, observe, |w| {
                ClipTextModel::load(&cfg.text_encoder_2, w)
            })?,
        })
    }

    /// Builds one component's module from its weights and checks it took all of them.
    fn build<M>(
        &self,
        component: Component,
        device: &Device,
        dtype: WeightDtype,
        observe: &mut Observer,
        module: impl FnOnce(&mut ComponentWeights) -> Result<M, CheckpointError>,
    ) -> Result<M, CheckpointError> {
        let mut weights = ComponentWeights {
            checkpoint: self,
            component,
            device,
            dtype,
            taken: BTreeSet::new(),
            observe,
        };
        let built = module(&mut weights)?;
        weights.finish()?;
        Ok(built)
    }
}

/// The dtype a stored float tensor gets on the device; `None` for non-float dtypes.
fn device_dtype(stored: Dtype, target: WeightDtype) -> Option<DType> {
    match (target, stored) {
        _ if !stored.is_float() => None,
        (WeightDtype::F16, _) => Some(DType::F16),
        (WeightDtype::F32, _) | (WeightDtype::AsStored, Dtype::F32 | Dtype::F64) => {
            Some(DType::F32)
        }
        // bf16 and fp8: wgpu computes in neither.
        (WeightDtype::AsStored, _) => Some(DType::F16),
    }
}

/// Whether `stored` bytes already are `want` bytes.
fn is_same(stored: Dtype, want: DType) -> bool {
    matches!(
        (stored, want),
        (Dtype::F16, DType::F16) | (Dtype::F32, DType::F32)
    )
}

/// The canonical tensor's data: the stored bytes transformed and converted to `want`.
/// `None` for a dtype we cannot decode.
fn tensor_data(bytes: &[u8], r: &Resolved, want: DType) -> Option<TensorData> {
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
    Some(TensorData::from_bytes_vec(
        convert(bytes, stored, want)?,
        r.shape.clone(),
        want,
    ))
}

/// Converts little-endian float bytes from `stored` to `want` (f16 or f32).
fn convert(bytes: Vec<u8>, stored: Dtype, want: DType) -> Option<Vec<u8>> {
    if is_same(stored, want) {
        return Some(bytes);
    }
    let values = to_f32(&bytes, stored)?;
    Some(match want {
        DType::F16 => values
            .iter()
            .flat_map(|v| f16::from_f32(*v).to_le_bytes())
            .collect(),
        _ => values.iter().flat_map(|v| v.to_le_bytes()).collect(),
    })
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
        Dtype::F8E4M3 => bytes.iter().map(|&b| f8_e4m3fn(b)).collect(),
        // e5m2 is the high byte of an f16.
        Dtype::F8E5M2 => bytes
            .iter()
            .map(|&b| f16::from_bits(u16::from(b) << 8).to_f32())
            .collect(),
        _ => return None,
    })
}

/// PyTorch's `float8_e4m3fn`: 1 sign, 4 exponent (bias 7), 3 mantissa bits; no infinities,
/// `S.1111.111` is NaN; the largest value is 448.
fn f8_e4m3fn(b: u8) -> f32 {
    let sign = if b & 0x80 != 0 { -1.0 } else { 1.0 };
    let (exp, mantissa) = (i32::from((b >> 3) & 0xf), f32::from(b & 0x7));
    if exp == 0xf && mantissa == 7.0 {
        return f32::NAN;
    }
    sign * match exp {
        0 => mantissa / 8.0 * 2f32.powi(-6),
        _ => (1.0 + mantissa / 8.0) * 2f32.powi(exp - 7),
    }
}

/// NaN and infinity counts of a stored float tensor (zero for other dtypes).
pub(crate) fn count_non_finite(bytes: &[u8], dtype: Dtype) -> (usize, usize) {
    to_f32(bytes, dtype).map_or((0, 0), |values| {
        let nan = values.iter().filter(|v| v.is_nan()).count();
        let inf = values.iter().filter(|v| v.is_infinite()).count();
        (nan, inf)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fp8_values_decode_as_pytorch_defines_them() {
        let e4m3 = [
            (0x00, 0.0),
            (0x38, 1.0),
            (0x3c, 1.5),
            (0x40, 2.0),
            (0xb8, -1.0),
            (0x01, 2f32.powi(-9)),
            (0x08, 2f32.powi(-6)),
            (0x7e, 448.0),
        ];
        for (byte, value) in e4m3 {
            assert_eq!(f8_e4m3fn(byte), value, "e4m3 {byte:#04x}");
        }
        assert!(f8_e4m3fn(0x7f).is_nan() && f8_e4m3fn(0xff).is_nan());
        let e5m2 = to_f32(&[0x3c, 0xc0, 0x7c, 0x01], Dtype::F8E5M2).expect("float");
        assert_eq!(e5m2[..3], [1.0, -2.0, f32::INFINITY]);
        assert_eq!(e5m2[3], 2f32.powi(-16));
    }
}
