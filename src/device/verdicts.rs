//! What `doctor --selftest` found on each path of an adapter (a compiler and a precision), kept
//! in the cache environment (`cache`: this build, these drivers), so `generate` and `serve`
//! avoid a failed path by themselves: `auto` compiler choices skip it ([`super::compiler`]),
//! `--precision auto` computes in f32 where f16 failed ([`super::Gpu::use_f16`]).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::compiler::Compiler;
use super::AdapterInfo;
use crate::cache::Environment;

/// The file in the cache environment.
const FILE: &str = "selftest.json";

/// One path's result.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PathVerdict {
    pub compiler: Compiler,
    /// f16 weights and activations (else f32).
    pub f16: bool,
    pub passed: bool,
    /// The largest error figure measured (relative to the reference), and its limit.
    pub error: f32,
    pub limit: f32,
    /// What was compared, or why the path did not run.
    pub detail: String,
}

impl PathVerdict {
    /// `SPIR-V + tensor cores, f16`.
    pub fn path(&self) -> String {
        path_name(self.compiler, self.f16)
    }
}

/// A path as messages name it.
pub fn path_name(compiler: Compiler, f16: bool) -> String {
    format!(
        "{}, {}",
        compiler.describe(),
        if f16 { "f16" } else { "f32" }
    )
}

/// Every adapter's verdicts in one environment, by adapter.
#[derive(Default, Serialize, Deserialize)]
struct Stored {
    adapters: BTreeMap<String, Vec<PathVerdict>>,
}

fn stored(env: &Environment) -> Stored {
    env.read(FILE)
        .and_then(|bytes| serde_json::from_slice(&bytes).ok())
        .unwrap_or_default()
}

/// The verdicts recorded for `adapter` (none: never tested, or no cache).
pub fn load(env: Option<&Environment>, adapter: &AdapterInfo) -> Vec<PathVerdict> {
    env.and_then(|env| stored(env).adapters.remove(&adapter.identity()))
        .unwrap_or_default()
}

/// Records `verdicts` as `adapter`'s, replacing what an earlier self-test found for the same
/// paths.
pub fn record(
    env: &Environment,
    adapter: &AdapterInfo,
    verdicts: &[PathVerdict],
) -> std::io::Result<()> {
    let mut all = stored(env);
    let paths = all.adapters.entry(adapter.identity()).or_default();
    paths.retain(|old| {
        !verdicts
            .iter()
            .any(|new| new.compiler == old.compiler && new.f16 == old.f16)
    });
    paths.extend(verdicts.iter().cloned());
    let json = serde_json::to_vec_pretty(&all).map_err(std::io::Error::other)?;
    env.write(FILE, &json)
}
