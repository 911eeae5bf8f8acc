//! Uploading a model's parameters from a [`WeightSource`], one tensor at a time straight from
//! the memory map (host RAM peaks at about one tensor), in the stored dtype unless asked
//! otherwise. Bytes that already are the device tensor's go up without a copy; the rest are
//! transformed and converted on the host first.

use std::collections::BTreeSet;

use burn::module::Param;
use burn::tensor::{AllocationProperty, Bytes, DType, Device, Tensor, TensorData};
use half::f16;

use super::{Dtype, StoredParam, WeightError, WeightSource};
use crate::device::{AdapterInfo, AttentionKernel, Gpu, Precision};

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

impl WeightDtype {
    /// The dtype for `precision` on `adapter` (compute follows the weights).
    pub fn for_precision(precision: Precision, adapter: &AdapterInfo) -> Self {
        Self::f16_if(precision.use_f16(adapter))
    }

    /// The dtype for `precision` on `gpu`, which also avoids f16 where the self-test found it
    /// wrong, and what to tell the user about the choice ([`Gpu::use_f16`]).
    pub fn for_gpu(precision: Precision, gpu: &Gpu) -> (Self, Option<String>) {
        let (f16, note) = gpu.use_f16(precision);
        (Self::f16_if(f16), note)
    }

    fn f16_if(f16: bool) -> Self {
        if f16 {
            WeightDtype::F16
        } else {
            WeightDtype::F32
        }
    }

    /// The dtype a stored float tensor gets on the device; `None` for non-float dtypes.
    fn on_device(self, stored: Dtype) -> Option<DType> {
        match (self, stored) {
            _ if !stored.is_float() => None,
            (WeightDtype::F16, _) => Some(DType::F16),
            (WeightDtype::F32, _) | (WeightDtype::AsStored, Dtype::F32 | Dtype::F64) => {
                Some(DType::F32)
            }
            // bf16 and fp8: wgpu computes in neither.
            (WeightDtype::AsStored, _) => Some(DType::F16),
        }
    }
}

/// Told of every parameter as it is uploaded: its canonical name, shape, and the device tensor
/// (flattened). For progress reports, and for checking what reached the device.
pub type Observer<'a> = dyn FnMut(&str, &[usize], Tensor<1>) + 'a;

/// One model's weights, handed out by canonical name to the module constructors, which record
/// what they took so [`build`] can check that the model used every parameter of the source.
pub struct Weights<'a, 'o> {
    source: &'a dyn WeightSource,
    device: &'a Device,
    attention: AttentionKernel,
    dtype: WeightDtype,
    taken: BTreeSet<String>,
    observe: &'a mut Observer<'o>,
}

impl Weights<'_, '_> {
    /// How the model's attention layers run on this device (chosen once, at load).
    pub fn attention_kernel(&self) -> AttentionKernel {
        self.attention
    }

    /// Whether the source has a parameter of this canonical name.
    pub fn has(&self, name: &str) -> bool {
        self.source.get(name).is_some()
    }

    fn model_error(&self, reason: String) -> WeightError {
        WeightError::Model {
            source_name: self.source.describe(),
            reason,
        }
    }

    /// Uploads the parameter `name` to the device in the model's dtype.
    pub fn param<const D: usize>(&mut self, name: &str) -> Result<Param<Tensor<D>>, WeightError> {
        self.param_in(name, self.dtype)
    }

    /// Uploads the parameter `name` in f32 whatever the model's dtype: for the small
    /// parameters a layer always computes with in f32 (normalisation scales and shifts), so
    /// no call casts them.
    pub fn param_f32<const D: usize>(
        &mut self,
        name: &str,
    ) -> Result<Param<Tensor<D>>, WeightError> {
        self.param_in(name, WeightDtype::F32)
    }

    fn param_in<const D: usize>(
        &mut self,
        name: &str,
        dtype: WeightDtype,
    ) -> Result<Param<Tensor<D>>, WeightError> {
        let p = self
            .source
            .get(name)
            .ok_or_else(|| self.model_error(format!("no key-table row for `{name}`")))?;
        if p.shape.len() != D {
            return Err(self.model_error(format!(
                "`{name}` has rank {}, the module wants {D}",
                p.shape.len()
            )));
        }
        let data = self.data(&p, dtype)?;
        let dtype = data.dtype();
        let tensor = Tensor::<D>::from_data(data, (self.device, dtype));
        let numel = p.shape.iter().product::<usize>();
        (self.observe)(name, p.shape, tensor.clone().reshape([numel]));
        self.taken.insert(name.to_string());
        Ok(Param::from_tensor(tensor))
    }

    /// The parameter's data in the dtype it gets on the device: the mapped bytes themselves when
    /// they already are that, else transformed and converted on the host.
    fn data(&self, p: &StoredParam, dtype: WeightDtype) -> Result<TensorData, WeightError> {
        let no_data = || self.model_error(format!("`{}` has no data (header only)", p.key));
        let unsupported = || WeightError::UnsupportedDtype {
            path: p.file.path().to_path_buf(),
            name: p.key.to_string(),
            dtype: p.info.dtype.name().to_string(),
        };
        let stored = p.info.dtype;
        let want = dtype.on_device(stored).ok_or_else(unsupported)?;
        if p.transform.keeps_bytes() && is_same(stored, want) {
            let shared = p.file.shared_bytes(p.info).ok_or_else(no_data)?;
            let bytes = Bytes::from_shared(shared, AllocationProperty::File);
            return Ok(TensorData::from_bytes(bytes, p.shape.to_vec(), want));
        }
        let bytes = p.file.bytes(p.info).ok_or_else(no_data)?;
        let bytes = p.transform.apply(bytes, &p.info.shape, stored.size());
        let bytes = convert(bytes, stored, want).ok_or_else(unsupported)?;
        Ok(TensorData::from_bytes_vec(bytes, p.shape.to_vec(), want))
    }
}

/// Builds a model from `source` with `module`, its constructor, and checks that the model took
/// every parameter the source holds.
pub fn build<M>(
    source: &dyn WeightSource,
    gpu: &Gpu,
    dtype: WeightDtype,
    observe: &mut Observer,
    module: impl FnOnce(&mut Weights) -> Result<M, WeightError>,
) -> Result<M, WeightError> {
    let mut weights = Weights {
        source,
        device: &gpu.device,
        attention: gpu.attention,
        dtype,
        taken: BTreeSet::new(),
        observe,
    };
    let built = module(&mut weights)?;
    let names = source.names();
    match names.iter().find(|n| !weights.taken.contains(**n)) {
        Some(left) => Err(weights.model_error(format!("the module tree does not use `{left}`"))),
        None => Ok(built),
    }
}

/// Fails before any upload if one parameter of `source`, in the dtype it gets on the device, is
/// larger than the adapter's largest buffer (lavapipe: 128 MiB, which bigG's token embedding
/// exceeds in f32).
pub fn check_fits(
    source: &dyn WeightSource,
    dtype: WeightDtype,
    adapter: &AdapterInfo,
) -> Result<(), WeightError> {
    let max = adapter.max_tensor_bytes();
    for name in source.names() {
        let Some(p) = source.get(name) else { continue };
        let Some(want) = dtype.on_device(p.info.dtype) else {
            continue; // refused with its own error when loading
        };
        let bytes = (p.shape.iter().product::<usize>() * want.size()) as u64;
        if bytes > max {
            return Err(WeightError::TooLargeForAdapter {
                name: format!("{}.{name}", source.model_name()),
                dtype: format!("{want:?}").to_lowercase(),
                bytes,
                max,
                adapter: adapter.name.clone(),
            });
        }
    }
    Ok(())
}

/// Whether `stored` bytes already are `want` bytes.
fn is_same(stored: Dtype, want: DType) -> bool {
    matches!(
        (stored, want),
        (Dtype::F16, DType::F16) | (Dtype::F32, DType::F32)
    )
}

/// Converts little-endian float bytes from `stored` to `want` (f16 or f32).
fn convert(bytes: Vec<u8>, stored: Dtype, want: DType) -> Option<Vec<u8>> {
    if is_same(stored, want) {
        return Some(bytes);
    }
    let values = stored.to_f32(&bytes)?;
    Some(match want {
        DType::F16 => values
            .iter()
            .flat_map(|v| f16::from_f32(*v).to_le_bytes())
            .collect(),
        _ => values.iter().flat_map(|v| v.to_le_bytes()).collect(),
    })
}
