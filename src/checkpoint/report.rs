//! What loading a checkpoint did with each of its tensors.

use serde::Serialize;

use super::Component;
use crate::weights::Transform;

/// The outcome of matching a checkpoint's tensors against the detected architecture's tables.
/// Clean means nothing missing, nothing of the wrong shape, nothing unexplained left over.
#[derive(Clone, Debug, Default, Serialize)]
pub struct LoadReport {
    /// Canonical parameters found with the expected shape.
    pub applied: usize,
    /// Applied parameters that needed a transform on the way.
    pub transformed: Vec<TransformedTensor>,
    pub missing: Vec<MissingTensor>,
    pub mismatched: Vec<MismatchedTensor>,
    /// Stored tensors left out on purpose, with the reason.
    pub ignored: Vec<IgnoredTensor>,
    /// Stored tensors no table row and no ignore rule explains.
    pub unused: Vec<String>,
}

#[derive(Clone, Debug, Serialize)]
pub struct TransformedTensor {
    pub key: String,
    pub canonical: String,
    pub transform: Transform,
}

#[derive(Clone, Debug, Serialize)]
pub struct MissingTensor {
    pub component: Component,
    pub canonical: String,
    pub key: String,
}

#[derive(Clone, Debug, Serialize)]
pub struct MismatchedTensor {
    pub component: Component,
    pub key: String,
    pub canonical: String,
    pub expected: Vec<usize>,
    pub found: Vec<usize>,
    pub dtype: String,
}

#[derive(Clone, Debug, Serialize)]
pub struct IgnoredTensor {
    pub key: String,
    pub reason: &'static str,
}

impl LoadReport {
    /// Nothing missing, nothing mismatched, nothing unexplained.
    pub fn is_clean(&self) -> bool {
        self.missing.is_empty() && self.mismatched.is_empty() && self.unused.is_empty()
    }
}
