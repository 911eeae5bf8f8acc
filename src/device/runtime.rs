//! The compute runtime's settings, made in code once per process before the first device: where
//! its caches live (`cache`), a bounded first-run autotune budget, and its compilation and
//! autotune loggers routed to the `log` crate, where `phase::KernelLog` counts (and, with
//! `--verbose`, shows) them. A `cubecl.toml` (or `burn.toml`'s `[cubecl]` section) found from
//! the working directory up replaces these defaults, and cubecl's environment variables
//! (`CUBECL_AUTOTUNE_LEVEL`, `CUBECL_DEBUG_LOG`, ...) override both, as cubecl documents.

use std::path::Path;
use std::sync::OnceLock;

use cubecl::config::{CubeClRuntimeConfig, RuntimeConfig};
use cubecl_environment::config::logger::LogCrateLevel;

use crate::cache::{self, Environment};
use crate::phase::KernelLog;

/// Timed runs per autotune candidate, at least and at most (cubecl's defaults: 3 and 10). The
/// first run of a shape times every candidate; these bound what that costs, and the winners
/// are kept in the cache for later runs.
pub const AUTOTUNE_SAMPLES: (usize, usize) = (2, 4);

static ENVIRONMENT: OnceLock<Option<Environment>> = OnceLock::new();

/// Configures the runtime, once per process, for the machine `identity` describes (its cache
/// environment's key): call before bringing up any device. The environment, if the platform
/// has a cache directory.
pub fn configure(identity: &str) -> Option<&'static Environment> {
    ENVIRONMENT
        .get_or_init(|| {
            let env = cache::root().and_then(|root| Environment::open(&root, identity).ok());
            // false when something read the configuration first (it then keeps cubecl's own)
            let _ = CubeClRuntimeConfig::try_set(config(env.as_ref()));
            env
        })
        .as_ref()
}

/// The cache environment [`configure`] opened, if it ran and the platform has one.
pub fn environment() -> Option<&'static Environment> {
    ENVIRONMENT.get().and_then(Option::as_ref)
}

/// A cubecl configuration file found from the working directory up (what cubecl would read).
fn user_config_file() -> Option<std::path::PathBuf> {
    let mut dir = std::env::current_dir().ok()?;
    let names = ["cubecl.toml", "CubeCL.toml", "burn.toml", "Burn.toml"];
    loop {
        if let Some(found) = names.iter().map(|n| dir.join(n)).find(|p| p.is_file()) {
            return Some(found);
        }
        if !dir.pop() {
            return None;
        }
    }
}

/// The engine's settings over cubecl's defaults (or the user's file), then the environment's.
fn config(env: Option<&Environment>) -> CubeClRuntimeConfig {
    let mut config = match user_config_file() {
        Some(_) => CubeClRuntimeConfig::from_current_dir(),
        None => {
            let mut config = CubeClRuntimeConfig::default();
            (
                config.autotune.bench.min_samples,
                config.autotune.bench.max_samples,
            ) = AUTOTUNE_SAMPLES;
            config
        }
    };
    if KernelLog::install() {
        use cubecl::config::compilation::CompilationLogLevel;
        let compilation = &mut config.compilation.logger;
        if matches!(compilation.level, CompilationLogLevel::Disabled) {
            compilation.level = CompilationLogLevel::Basic; // one line per kernel, no source
        }
        compilation.log = Some(LogCrateLevel::Info);
        config.autotune.logger.log = Some(LogCrateLevel::Info); // one line per shape tuned
    }
    persist_in(&mut config, env.map(|e| e.dir.as_path()));
    config.override_from_env()
}

/// cubecl's store (autotune results, throughput probes, compiled SPIR-V) in `dir`, unless the
/// user's file chose a place.
#[cfg(feature = "persistent-cache")]
fn persist_in(config: &mut CubeClRuntimeConfig, dir: Option<&Path>) {
    use cubecl::config::cache::CacheConfig;
    let Some(dir) = dir else { return };
    if matches!(config.environment.path, CacheConfig::Target) {
        config.environment.path = CacheConfig::Directory(dir.to_path_buf());
    }
    config.compilation.cache = true;
}

/// Without the `persistent-cache` feature cubecl keeps everything in memory.
#[cfg(not(feature = "persistent-cache"))]
fn persist_in(_config: &mut CubeClRuntimeConfig, _dir: Option<&Path>) {}
