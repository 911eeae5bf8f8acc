//! The checks that need no device, in one test binary (one link and one process instead of
//! eight): the layering of `src/` against docs/ARCHITECTURE.md, SDXL base 1.0's tensor manifest,
//! PyTorch's CPU generator, random and mutated input to every reader, every way a weight file
//! can be wrong, diffusers' schedules, CLIP's tokenizer, and upscaler files.

#[path = "../common/mod.rs"]
mod common;

mod bad_files;
mod layering;
mod manifest;
mod noise;
mod properties;
mod schedules;
mod tokenizer;
mod upscaler_files;
