//! Building the four models from a checkpoint: each component is a [`WeightSource`] over its
//! resolved tensors (canonical name -> stored tensor and transform), which the models' own
//! constructors load from. Nothing is uploaded unless the report is complete and every tensor
//! fits the adapter's largest buffer.

use burn::tensor::Tensor;

use super::{Checkpoint, CheckpointError, Component};
use crate::device::Gpu;
use crate::text_encoder::{ClipTextModel, TextEncoders};
use crate::unet::Unet;
use crate::vae::{AutoencoderKl, VaePrecision};
use crate::weights::{self, StoredParam, WeightDtype, WeightError, WeightSource, Weights};

/// Told of every tensor as it is uploaded: its component, canonical name, shape, and the
/// device tensor (flattened). For progress reports, and for checking what reached the device.
pub type ComponentObserver<'a> = dyn FnMut(Component, &str, &[usize], Tensor<1>) + 'a;

/// The four models of an SDXL checkpoint, on a device.
#[derive(Debug)]
pub struct SdxlModels {
    pub unet: Unet,
    pub text_encoders: TextEncoders,
    pub vae: AutoencoderKl,
}

/// One component of a checkpoint as the models see it: its parameters by canonical name.
struct ComponentSource<'a> {
    checkpoint: &'a Checkpoint,
    component: Component,
}

impl WeightSource for ComponentSource<'_> {
    fn model_name(&self) -> &str {
        self.component.name()
    }

    fn describe(&self) -> String {
        format!(
            "{}: {}",
            self.checkpoint.path().display(),
            self.component.describe()
        )
    }

    fn names(&self) -> Vec<&str> {
        let resolved = self.checkpoint.resolved(self.component);
        resolved.keys().map(String::as_str).collect()
    }

    fn get(&self, name: &str) -> Option<StoredParam<'_>> {
        let r = self.checkpoint.resolved(self.component).get(name)?;
        Some(StoredParam {
            file: self.checkpoint.file(r.file),
            key: &r.key,
            info: &r.info,
            transform: r.transform,
            shape: &r.shape,
        })
    }
}

impl Checkpoint {
    /// Uploads every component onto `gpu`: the UNet and text encoders in `dtype`, the VAE in
    /// the dtype it computes in by default (f32: an f16 model's VAE weights are converted once
    /// here instead of on every decode). Fails, uploading nothing, unless the report has no
    /// missing or mismatched tensors and every tensor fits the adapter's largest buffer.
    pub fn load(&self, gpu: &Gpu, dtype: WeightDtype) -> Result<SdxlModels, CheckpointError> {
        self.load_observed(gpu, dtype, &mut |_, _, _, _| {})
    }

    /// [`Checkpoint::load`], telling `observe` of every tensor uploaded.
    pub fn load_observed(
        &self,
        gpu: &Gpu,
        dtype: WeightDtype,
        observe: &mut ComponentObserver,
    ) -> Result<SdxlModels, CheckpointError> {
        let vae_dtype = VaePrecision::default().weights();
        let dtypes = Component::ALL.map(|c| {
            (
                c,
                if c == Component::Vae {
                    vae_dtype
                } else {
                    dtype
                },
            )
        });
        self.check_loadable(&dtypes, gpu)?;
        let cfg = &self.config;
        Ok(SdxlModels {
            unet: self.build(Component::Unet, gpu, dtype, observe, |w| {
                Unet::load(&cfg.unet, w)
            })?,
            text_encoders: self.text_encoders(gpu, dtype, observe)?,
            vae: self.build(Component::Vae, gpu, vae_dtype, observe, |w| {
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
        let encoders = [Component::TextEncoder, Component::TextEncoder2].map(|c| (c, dtype));
        self.check_loadable(&encoders, gpu)?;
        self.text_encoders(gpu, dtype, &mut |_, _, _, _| {})
    }

    /// Uploads only the VAE (what decoding latents needs), in the dtype of `precision`.
    pub fn load_vae(
        &self,
        gpu: &Gpu,
        precision: VaePrecision,
    ) -> Result<AutoencoderKl, CheckpointError> {
        let dtype = precision.weights();
        self.check_loadable(&[(Component::Vae, dtype)], gpu)?;
        let cfg = &self.config.vae;
        let mut ignore = |_: Component, _: &str, _: &[usize], _: Tensor<1>| {};
        self.build(Component::Vae, gpu, dtype, &mut ignore, |w| {
            AutoencoderKl::load(cfg, w)
        })
    }

    /// The report is complete, and no tensor of `components` is larger than the adapter's
    /// largest buffer in the dtype it gets on the device.
    fn check_loadable(
        &self,
        components: &[(Component, WeightDtype)],
        gpu: &Gpu,
    ) -> Result<(), CheckpointError> {
        self.ensure_complete()?;
        for &(component, dtype) in components {
            let source = self.source(component);
            weights::check_fits(&source, dtype, &gpu.adapter)?;
        }
        Ok(())
    }

    fn text_encoders(
        &self,
        gpu: &Gpu,
        dtype: WeightDtype,
        observe: &mut ComponentObserver,
    ) -> Result<TextEncoders, CheckpointError> {
        let cfg = &self.config;
        Ok(TextEncoders {
            text_encoder: self.build(Component::TextEncoder, gpu, dtype, observe, |w| {
                ClipTextModel::load(&cfg.text_encoder, w)
            })?,
            text_encoder_2: self.build(Component::TextEncoder2, gpu, dtype, observe, |w| {
                ClipTextModel::load(&cfg.text_encoder_2, w)
            })?,
        })
    }

    fn source(&self, component: Component) -> ComponentSource<'_> {
        ComponentSource {
            checkpoint: self,
            component,
        }
    }

    /// Builds one component's module from its weights and checks it took all of them.
    fn build<M>(
        &self,
        component: Component,
        gpu: &Gpu,
        dtype: WeightDtype,
        observe: &mut ComponentObserver,
        module: impl FnOnce(&mut Weights) -> Result<M, WeightError>,
    ) -> Result<M, CheckpointError> {
        let phase = crate::phase::start(format!("upload {}", component.describe()));
        let mut bytes = 0u64;
        let mut observe = |name: &str, shape: &[usize], t: Tensor<1>| {
            bytes += (shape.iter().product::<usize>() * t.dtype().size()) as u64;
            observe(component, name, shape, t);
        };
        let source = self.source(component);
        let built = weights::build(&source, gpu, dtype, &mut observe, module)?;
        let rate = bytes as f64 / 1e9 / phase.elapsed().as_secs_f64().max(1e-9);
        phase.done(format!("{:.2} GB at {rate:.2} GB/s", bytes as f64 / 1e9));
        Ok(built)
    }
}
