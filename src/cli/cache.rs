//! `sdxl-wgpu cache info|clear`: the caches kept between runs (`sdxl_wgpu::cache`): where they
//! are and how big, or gone.

use anyhow::Context;
use clap::Subcommand;

use super::say;
use sdxl_wgpu::cache;

#[derive(Subcommand, Debug)]
pub enum CacheCommand {
    /// Where the caches are, how many environments (build x adapters x drivers) they hold and
    /// their size.
    Info {
        /// Print it as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Remove every cached environment: compiled kernels, autotune results, throughput probes
    /// and self-test verdicts. The next run compiles and tunes again.
    Clear,
}

pub fn run(command: CacheCommand) -> anyhow::Result<()> {
    let Some(root) = cache::root() else {
        say!(
            "no cache: this platform names no user cache directory (set {})",
            cache::CACHE_DIR_VAR
        )?;
        return Ok(());
    };
    match command {
        CacheCommand::Info { json } => {
            let usage = cache::usage(&root);
            if json {
                say!("{}", serde_json::to_string_pretty(&usage)?)?;
            } else {
                say!(
                    "{}: {} environment(s), {:.1} MiB (at most {} kept, {} MiB)",
                    usage.root.display(),
                    usage.environments,
                    usage.bytes as f64 / (1u64 << 20) as f64,
                    cache::MAX_ENVIRONMENTS,
                    cache::MAX_CACHE_BYTES >> 20
                )?;
            }
        }
        CacheCommand::Clear => {
            let freed =
                cache::clear(&root).with_context(|| format!("clearing {}", root.display()))?;
            say!(
                "{}: cleared, {:.1} MiB freed",
                root.display(),
                freed as f64 / (1u64 << 20) as f64
            )?;
        }
    }
    Ok(())
}
