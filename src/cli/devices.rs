//! `sdxl-wgpu devices`: the adapters wgpu sees, which one `--backend` would use, and the
//! compiler its kernels go through there (the chosen adapter is brought up to ask).

use clap::Args;

use super::say;
use super::values::spelled;
use sdxl_wgpu::device::{self, AdapterInfo, Backend};

#[derive(Args, Debug)]
pub struct DevicesArgs {
    /// Only list adapters of this graphics API; `auto` lists all.
    #[arg(long, value_parser = spelled::<Backend>(), default_value_t = Backend::Auto)]
    backend: Backend,
    /// Print JSON instead of a table.
    #[arg(long)]
    json: bool,
}

pub fn run(args: DevicesArgs) -> anyhow::Result<()> {
    let found = device::adapters(args.backend);
    let gpu = super::gpu::open(args.backend)?;
    let chosen = |a: &AdapterInfo| a.identity() == gpu.adapter.identity();
    if args.json {
        let listed = found
            .iter()
            .map(|a| {
                let mut entry = serde_json::to_value(a)?;
                if chosen(a) {
                    entry["chosen"] = true.into();
                    entry["compiler"] = gpu.compiler.language.name().into();
                    entry["tensor_cores"] = gpu.compiler.cooperative_matrix.into();
                }
                Ok(entry)
            })
            .collect::<serde_json::Result<Vec<_>>>()?;
        say!("{}", serde_json::to_string_pretty(&listed)?)?;
        return Ok(());
    }
    for a in &found {
        say!(
            "{:<40} {:<7} {:<14} f16 {:<3}  max buffer {:>6} MiB  max binding {:>6} MiB  {}",
            a.name,
            a.api,
            a.device_type,
            if a.shader_f16 { "yes" } else { "no" },
            a.max_buffer_size >> 20,
            a.max_storage_buffer_binding_size >> 20,
            a.driver
        )?;
    }
    say!(
        "--backend {} uses: {} ({}), kernels compiled to {}",
        args.backend,
        gpu.adapter.name,
        gpu.adapter.api,
        gpu.compiler.describe()
    )?;
    Ok(())
}
