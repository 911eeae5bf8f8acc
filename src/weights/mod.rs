//! Weights below the models: reading safetensors files (validated headers, memory-mapped data),
//! the one decoder of stored dtypes, the transforms from a stored layout to a canonical
//! parameter, and the [`WeightSource`] interface the models are built from, with the loader
//! that uploads each parameter in the dtype asked for. Nothing here knows a checkpoint's key
//! spellings or which model a parameter belongs to; see `docs/ARCHITECTURE.md`.

mod dtype;
mod error;
mod load;
mod pickle;
mod pth;
mod safetensors_file;
mod source;
mod transform;

pub use dtype::Dtype;
pub use error::WeightError;
pub use load::{build, check_fits, Observer, WeightDtype, Weights};
pub use pickle::PickleError;
pub use pth::open_any;
pub use safetensors_file::{Header, SafetensorsFile, TensorInfo};
pub use source::{StoredParam, WeightSource};
pub use transform::Transform;
