//! The interface between where weights are stored and the models built from them: a
//! [`WeightSource`] hands out one model's parameters by canonical name (diffusers' module path,
//! `down_blocks.1.attentions.0.proj_in.weight`), whatever layout the file uses. A checkpoint's
//! component implements it; so can a separate VAE file, an embedding file or a sharded folder,
//! without the models knowing.

use super::{SafetensorsFile, TensorInfo, Transform};

/// A stored tensor that becomes one canonical parameter.
#[derive(Clone, Copy, Debug)]
pub struct StoredParam<'a> {
    pub file: &'a SafetensorsFile,
    /// Its name in the file (for messages).
    pub key: &'a str,
    pub info: &'a TensorInfo,
    pub transform: Transform,
    /// The canonical parameter's shape.
    pub shape: &'a [usize],
}

/// One model's parameters by canonical name.
pub trait WeightSource {
    /// The model's name, put before a parameter's name in messages (`text_encoder_2`).
    fn model_name(&self) -> &str;
    /// Where the model is stored, for messages (`model.safetensors: VAE`).
    fn describe(&self) -> String;
    /// Every canonical parameter name the source holds.
    fn names(&self) -> Vec<&str>;
    /// The stored tensor of canonical parameter `name`, if the source has it.
    fn get(&self, name: &str) -> Option<StoredParam<'_>>;
}
