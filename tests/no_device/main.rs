//! The checks that need no device, in one test binary (one link and one process instead of
//! six): the layering of `src/` against docs/ARCHITECTURE.md, SDXL base 1.0's tensor manifest,
//! PyTorch's CPU generator, random and mutated input to every reader, diffusers' schedules, and
//! CLIP's tokenizer.

#[path = "../common/mod.rs"]
mod common;

mod layering;
mod manifest;
mod noise;
mod properties;
mod schedules;
mod tokenizer;
mod upscaler_files;
