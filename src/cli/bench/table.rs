//! The terminal's view of the results: the heads at once, one line per row as it is measured,
//! and `--compare`'s ratios.

use super::Row;
use crate::cli::say;

/// The columns' heads (printed before anything is measured).
pub fn header() -> std::io::Result<()> {
    say!(
        "{:<24} {:<16} {:<9} {:<4} {:>7} {:>6} {:>7} {:>8} {:>7} {:>17} {:>11} {:>7} {:>7} {:>8} {:>7} {:>8}",
        "adapter",
        "API/compiler",
        "size",
        "prec",
        "load s",
        "GB/s",
        "text s",
        "step s",
        "host ms",
        "1st +s text/UNet/VAE",
        "kern/tuned",
        "VAE s",
        "LoRA s",
        "peak GiB",
        "img/min",
        "TFLOP/s"
    )
}

/// One line per adapter x precision x size, as soon as it is measured.
pub fn row(r: &Row) -> std::io::Result<()> {
    let cores = if r.tensor_cores { "+TC" } else { "" };
    let counted = |n: Option<u64>| n.map_or("-".into(), |n| n.to_string());
    say!(
        "{:<24} {:<16} {:<9} {:<4} {:>7.2} {:>6.2} {:>7.3} {:>8.3} {:>7.1} {:>17} {:>11} {:>7.3} {:>7.3} {:>8.2} {:>7.2} {:>8.4}",
        truncate(&r.adapter, 24),
        format!("{}/{}{cores}", r.api, r.compiler),
        format!("{}x{}", r.width, r.height),
        r.precision,
        r.load_s,
        r.load_gb_per_s,
        r.text_encode_s,
        r.step_s,
        r.step_record_s * 1e3,
        format!(
            "{:.1}/{:.1}/{:.1}",
            r.first_text_extra_s, r.first_step_extra_s, r.first_vae_extra_s
        ),
        format!(
            "{}/{}",
            counted(r.cold_kernels_compiled),
            counted(r.cold_shapes_tuned)
        ),
        r.vae_decode_s,
        r.lora_swap_s,
        r.peak_memory_bytes as f64 / (1u64 << 30) as f64,
        r.images_per_minute,
        r.tflops
    )
}

/// Each row's figures as ratios to the earlier run's matching row ([`Row::earlier`]): below 1 is faster or smaller for times and memory, above 1
/// is better for images per minute and TFLOP/s.
pub fn compare(rows: &[Row], earlier: &[Row]) -> std::io::Result<()> {
    say!("compared with the earlier run (new / old):")?;
    for r in rows {
        let label = format!(
            "{} ({}) {} {}x{}",
            r.adapter, r.api, r.precision, r.width, r.height
        );
        let Some(old) = r.earlier(earlier) else {
            say!("  {label}: no matching row")?;
            continue;
        };
        let ratio = |new: f64, old: f64| {
            if old > 0.0 && new.is_finite() {
                format!("{:.2}x", new / old)
            } else {
                "n/a".into()
            }
        };
        say!(
            "  {label}: step {}, host per step {}, text {}, VAE {}, load {}, LoRA swap {}, peak memory {}, img/min {}, TFLOP/s {}",
            ratio(r.step_s, old.step_s),
            ratio(r.step_record_s, old.step_record_s),
            ratio(r.text_encode_s, old.text_encode_s),
            ratio(r.vae_decode_s, old.vae_decode_s),
            ratio(r.load_s, old.load_s),
            ratio(r.lora_swap_s, old.lora_swap_s),
            ratio(r.peak_memory_bytes as f64, old.peak_memory_bytes as f64),
            ratio(r.images_per_minute, old.images_per_minute),
            ratio(r.tflops, old.tflops)
        )?;
    }
    Ok(())
}

/// `s` cut to `n` characters.
fn truncate(s: &str, n: usize) -> String {
    s.chars().take(n).collect()
}
