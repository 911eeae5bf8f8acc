//! What the caller of a run controls while it works: a stop signal checked between steps (a
//! server cancels one job without touching the next) and an optional live preview of the
//! latents the sampler is heading for. Both are passed in per run, never kept in the engine.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use burn::tensor::Tensor;

use super::Event;

/// A stop signal shared between a run and whoever may stop it (another thread, an HTTP
/// handler). Cloning shares the signal.
#[derive(Clone, Debug, Default)]
pub struct Cancel(Arc<AtomicBool>);

impl Cancel {
    pub fn new() -> Self {
        Self::default()
    }

    /// Asks the run to stop; it does so before its next step (or stage) and returns
    /// [`super::PipelineError::Cancelled`].
    pub fn cancel(&self) {
        self.0.store(true, Ordering::SeqCst);
    }

    pub fn is_cancelled(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }
}

/// Called with `(steps done, predicted clean latents [B, 4, h/8, w/8])` every `every` steps.
pub struct Preview<'a> {
    pub every: usize,
    pub show: &'a mut dyn FnMut(usize, Tensor<4>),
}

/// The per-run hooks of [`super::Engine::generate_with`].
pub struct Controls<'a> {
    pub cancel: Option<&'a Cancel>,
    pub on_event: &'a mut dyn FnMut(Event),
    pub preview: Option<Preview<'a>>,
    /// After a successful run, keep the pooled memory of its activations for the next run of
    /// the same shape (the caller releases it with [`super::Engine::release_memory`]); a
    /// failed or cancelled run releases it whatever this says.
    pub keep_memory: bool,
}

impl Controls<'_> {
    pub(super) fn cancelled(&self) -> bool {
        self.cancel.is_some_and(Cancel::is_cancelled)
    }

    /// Whether the step just finished (`done`, counted from 1) gets a preview.
    pub(super) fn previews(&self, done: usize, total: usize) -> bool {
        self.preview
            .as_ref()
            .is_some_and(|p| p.every > 0 && done % p.every == 0 && done < total)
    }
}
