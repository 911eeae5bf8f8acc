//! sdxl-wgpu: Stable Diffusion XL on burn's wgpu backend (Vulkan, Metal, DX12).
//!
//! - [`checkpoint`] reads single-file and diffusers-folder SDXL checkpoints: classification,
//!   architecture detection from tensor shapes, exact key tables, and loading onto a device.
//! - [`device`] lists adapters and brings one up (`--backend auto|vulkan|metal|dx12|gl`).
//! - [`pipeline`] holds the [`pipeline::Engine`] (device + models) and txt2img / img2img.
//! - [`lora`] reads LoRA files (kohya, PEFT) into a validated [`lora::AdapterSet`].
//! - [`policy`] corrects parameters known to break SDXL anime images (the quality policy).
//! - [`image_io`] reads init images and writes PNG/JPEG/WebP with A1111 metadata.
//! - [`sampling`]: schedules, samplers, and noise drawn as PyTorch's CPU generator does.
//! - [`tokenizer`] turns prompts (A1111 syntax) into CLIP token chunks with weights.
//! - [`unet`], [`text_encoder`], [`vae`] hold the models, named like diffusers' modules.

pub mod checkpoint;
pub mod device;
pub mod error;
pub mod image_io;
pub mod lora;
pub mod nn;
pub mod pipeline;
pub mod policy;
pub mod sampling;
pub mod text_encoder;
pub mod tokenizer;
pub mod unet;
pub mod vae;

pub use checkpoint::{Checkpoint, CheckpointError, Component, ModelConfig};
pub use device::{Backend, DeviceError, Gpu};
pub use error::Error;
