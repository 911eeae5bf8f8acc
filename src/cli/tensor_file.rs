//! f32 tensors in safetensors files, for the commands that exchange tensors with other tools:
//! `encode --output` and `generate --dump` write them, `decode --latents` and
//! `generate --init-noise` read them.

use std::collections::HashMap;
use std::path::Path;

use anyhow::{bail, Context};
use burn::tensor::Tensor;
use safetensors::tensor::TensorView;
use safetensors::Dtype;
use sdxl_wgpu::pipeline::{MAX_BATCH, MAX_LATENT_SHAPE, MAX_SIDE};
use sdxl_wgpu::weights::SafetensorsFile;

/// A named tensor on the host: shape and f32 values.
pub struct HostTensor {
    pub name: String,
    pub shape: Vec<usize>,
    pub values: Vec<f32>,
}

impl HostTensor {
    /// Reads `t` back from the device.
    pub fn from_device<const D: usize>(name: &str, t: Tensor<D>) -> anyhow::Result<Self> {
        let shape = t.dims().to_vec();
        let values = t
            .try_into_data()
            .map_err(|e| anyhow::anyhow!("reading `{name}` from the device: {e:?}"))?
            .convert::<f32>()
            .try_to_vec::<f32>()
            .map_err(|e| anyhow::anyhow!("reading `{name}` from the device: {e:?}"))?;
        Ok(HostTensor {
            name: name.to_string(),
            shape,
            values,
        })
    }

    /// A host vector as a tensor of `shape`.
    pub fn new(name: &str, shape: Vec<usize>, values: Vec<f32>) -> Self {
        HostTensor {
            name: name.to_string(),
            shape,
            values,
        }
    }
}

/// Writes `tensors` (f32) and string `metadata` to `path`.
pub fn write(
    path: &Path,
    tensors: &[HostTensor],
    metadata: HashMap<String, String>,
) -> anyhow::Result<()> {
    let bytes: Vec<Vec<u8>> = tensors
        .iter()
        .map(|t| t.values.iter().flat_map(|v| v.to_le_bytes()).collect())
        .collect();
    let views = tensors
        .iter()
        .zip(&bytes)
        .map(|(t, raw)| {
            TensorView::new(Dtype::F32, t.shape.clone(), raw).map(|v| (t.name.clone(), v))
        })
        .collect::<Result<Vec<_>, _>>()?;
    safetensors::serialize_to_file(views, Some(metadata), path)
        .with_context(|| format!("writing {}", path.display()))
}

/// A 4-d latent tensor (`[B, C, h, w]`, or `[C, h, w]` read as B = 1) as f32 values: the tensor
/// named `name`, else the first of `preferred` the file has, else the file's only tensor, in any
/// float dtype. Its shape must be within [`MAX_LATENT_SHAPE`] (checked before any value is
/// read), and non-finite values are refused.
pub fn read_4d(
    path: &Path,
    name: Option<&str>,
    preferred: &[&str],
) -> anyhow::Result<([usize; 4], Vec<f32>)> {
    let file = SafetensorsFile::open(path)?;
    let tensors = &file.header().tensors;
    let name = match name {
        Some(n) => n.to_string(),
        None => preferred
            .iter()
            .find(|n| tensors.contains_key(**n))
            .map(|n| n.to_string())
            .or_else(|| {
                (tensors.len() == 1)
                    .then(|| tensors.keys().next().cloned())
                    .flatten()
            })
            .with_context(|| {
                let names: Vec<&String> = tensors.keys().collect();
                format!(
                    "{}: no tensor named {preferred:?} (tensors: {names:?})",
                    path.display()
                )
            })?,
    };
    let info = tensors
        .get(&name)
        .with_context(|| format!("{}: no tensor `{name}`", path.display()))?;
    let shape: [usize; 4] = match *info.shape {
        [b, c, h, w] => [b, c, h, w],
        [c, h, w] => [1, c, h, w],
        ref s => bail!(
            "{}: `{name}` has shape {s:?}, not [B, C, h, w]",
            path.display()
        ),
    };
    if shape.contains(&0) {
        bail!(
            "{}: `{name}` is {shape:?}, which holds no value; every dimension must be 1 or more",
            path.display()
        );
    }
    if shape.iter().zip(MAX_LATENT_SHAPE).any(|(&d, max)| d > max) {
        bail!(
            "{}: `{name}` is {shape:?}; latents are at most {MAX_LATENT_SHAPE:?} ([batch, 4, \
             height/8, width/8] of {MAX_BATCH} images of {MAX_SIDE}x{MAX_SIDE})",
            path.display()
        );
    }
    let values = file
        .bytes(info)
        .and_then(|bytes| info.dtype.to_f32(bytes))
        .with_context(|| {
            format!(
                "{}: `{name}` is {}; it must be a float tensor",
                path.display(),
                info.dtype.name()
            )
        })?;
    if let Some(bad) = values.iter().find(|v| !v.is_finite()) {
        bail!(
            "{}: `{name}` holds a non-finite value ({bad})",
            path.display()
        );
    }
    Ok((shape, values))
}
