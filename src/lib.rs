//! sdxl-wgpu: Stable Diffusion XL on burn's wgpu backend (Vulkan, Metal, DX12).
//!
//! The modules form layers, each using only those below it (`docs/ARCHITECTURE.md` draws them;
//! `tests/no_device/layering.rs` keeps them true), from the bottom:
//!
//! - [`spelling`]: the names users type for closed sets of values (`--backend vulkan`);
//!   [`field`]: the quantities a request sets, which errors name and front-ends spell;
//!   [`files`]: opening the files users name (regular files only, capped reads); [`phase`]:
//!   long phases as lines a user can watch, with the kernels compiled and tuned during each.
//! - [`cache`]: the folders under the user's cache directory that outlive the process.
//! - [`device`] lists adapters and brings one up (`--backend auto|vulkan|metal|dx12|gl`) with
//!   its shader compiler (`--shader-compiler auto|wgsl|spirv`) and the runtime configured.
//! - [`weights`] reads safetensors files and uploads parameters from a [`weights::WeightSource`].
//! - [`tokenizer`] turns prompts (A1111 syntax) into CLIP token chunks with weights.
//! - [`nn`] holds the layers, which apply runtime LoRA deltas; [`text_encoder`], [`unet`] and
//!   [`vae`] the models, named like diffusers' modules.
//! - [`sampling`]: eps / v prediction, schedules, samplers, and PyTorch's CPU generator.
//! - [`checkpoint`] reads single-file and diffusers-folder SDXL checkpoints: classification,
//!   architecture detection from tensor shapes, exact key tables; its components are the models'
//!   weight sources.
//! - [`lora`] reads LoRA files (kohya, PEFT) into a validated [`lora::AdapterSet`].
//! - [`policy`] corrects parameters known to break SDXL anime images (the quality policy).
//! - [`image_io`] reads init images and writes PNG/JPEG/WebP with A1111 metadata;
//!   [`model_hash`] gives A1111's model and LoRA hashes.
//! - [`pipeline`] holds the [`pipeline::Engine`] (device + models + adapters) and txt2img /
//!   img2img, and the crate's [`Error`].
//! - [`intake`]: what every front door does alike between a user's ask and a `Request` (LoRA
//!   tag names resolved in a folder).
//! - [`infotext`]: the A1111 text a generated image carries, the same from the CLI and a server.
//! - `server` (feature `server`): the HTTP server of `sdxl-wgpu serve` (A1111's API, a jobs API).

pub mod cache;
pub mod checkpoint;
pub mod device;
pub mod doctor;
pub mod field;
pub mod files;
pub mod image_io;
pub mod infotext;
pub mod intake;
pub mod lora;
pub mod model_hash;
pub mod nn;
pub mod phase;
pub mod pipeline;
pub mod policy;
pub mod sampling;
#[cfg(feature = "server")]
pub mod server;
pub mod spelling;
pub mod text_encoder;
pub mod tokenizer;
pub mod unet;
pub mod upscaler;
pub mod vae;
pub mod weights;

pub use checkpoint::{Checkpoint, CheckpointError, Component, ModelConfig};
pub use device::{Backend, DeviceError, Gpu};
pub use pipeline::Error;
