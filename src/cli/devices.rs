//! `sdxl-wgpu devices`: the adapters wgpu sees, and which one `--backend` would use.

use clap::Args;

use super::say;
use super::values::spelled;
use sdxl_wgpu::device::{self, Backend};

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
    if args.json {
        say!("{}", serde_json::to_string_pretty(&found)?)?;
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
    let (chosen, warning) = device::choose(args.backend)?;
    say!(
        "--backend {} uses: {} ({})",
        args.backend,
        chosen.name,
        chosen.api
    )?;
    if let Some(warning) = warning {
        eprintln!("warning: {warning}");
    }
    Ok(())
}
