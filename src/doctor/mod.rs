//! The diagnostics behind `sdxl-wgpu doctor`, for a user whose machine misbehaves. Each check
//! is one [`Check`]: pass, warn or fail, what was found, and the fix. [`device`] lists the
//! adapters and opens the chosen one (API, driver, f16, buffer limits, shader compiler,
//! cooperative-matrix kernels); [`policy`] checks the quality policy against its documentation;
//! [`model`] checks a checkpoint (verdict, NaN/Inf scan, load, a short real generation), its
//! LoRAs (compatibility, then load -> generate -> unload -> generate gives the first image back
//! bit for bit and the device memory back) and that pooled memory is released; [`selftest`]
//! runs the built-in tiny model on each path of the device against diffusers' outputs, and
//! [`check_cache`] says where the caches kept between runs are.

mod adapter;
mod lora;
mod model;
mod policy;
pub mod selftest;

pub use adapter::{check as device, check_cache, check_memory_release};
pub use model::check as model;
pub use policy::check as policy;

use serde::Serialize;

/// How a check came out.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Pass,
    /// Works, but not as well as it could (a software adapter, no f16).
    Warn,
    Fail,
}

/// One finding.
#[derive(Clone, Debug, Serialize)]
pub struct Check {
    pub check: String,
    pub status: Status,
    pub detail: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fix: Option<String>,
}

impl Check {
    pub fn pass(check: impl Into<String>, detail: impl Into<String>) -> Check {
        Check::new(check, Status::Pass, detail, None)
    }

    pub fn warn(check: impl Into<String>, detail: impl Into<String>, fix: &str) -> Check {
        Check::new(check, Status::Warn, detail, Some(fix))
    }

    pub fn fail(check: impl Into<String>, detail: impl Into<String>, fix: &str) -> Check {
        Check::new(check, Status::Fail, detail, Some(fix))
    }

    fn new(
        check: impl Into<String>,
        status: Status,
        detail: impl Into<String>,
        fix: Option<&str>,
    ) -> Check {
        Check {
            check: check.into(),
            status,
            detail: detail.into(),
            fix: fix.map(str::to_string),
        }
    }
}

/// Watches each check as it is made (the CLI prints it); its error stops the checks.
pub type Observer<'a> = dyn FnMut(&Check) -> std::io::Result<()> + 'a;

/// The checks so far.
pub struct Report<'a> {
    pub checks: Vec<Check>,
    observer: Box<Observer<'a>>,
}

impl<'a> Report<'a> {
    pub fn new(observer: impl FnMut(&Check) -> std::io::Result<()> + 'a) -> Self {
        Report {
            checks: Vec::new(),
            observer: Box::new(observer),
        }
    }

    /// Records `check` after showing it to the observer.
    pub fn add(&mut self, check: Check) -> std::io::Result<()> {
        (self.observer)(&check)?;
        self.checks.push(check);
        Ok(())
    }

    /// The failed checks.
    pub fn failed(&self) -> usize {
        self.checks
            .iter()
            .filter(|c| c.status == Status::Fail)
            .count()
    }
}

/// `12.3 MiB`, or `unknown`.
fn mib(bytes: Option<u64>) -> String {
    bytes.map_or("unknown".into(), |b| {
        format!("{:.1} MiB", b as f64 / (1u64 << 20) as f64)
    })
}
