//! The checkpoint's checks: its verdict (family, prediction type), a scan of every tensor for
//! NaN/Inf, the policy profile it wants, its load, and a short real generation that must give
//! a finite image; then its LoRAs and the memory.

use std::path::Path;
use std::time::Instant;

use super::adapter::check_memory_release;
use super::{lora, mib, Check, Report, Status};
use crate::checkpoint::Checkpoint;
use crate::device::{Gpu, Precision};
use crate::lora::{LoraSpec, LoraTable};
use crate::pipeline::{Engine, Request};
use crate::sampling::Sampler;
use crate::weights::WeightDtype;

const REDOWNLOAD: &str = "the file is damaged or not an SDXL checkpoint: download it again, or \
     check `sdxl-wgpu inspect` on it";

/// Metadata words that mark an Illustrious XL / NoobAI checkpoint (case-insensitive), which
/// the `illustrious` policy profile is for.
const ILLUSTRIOUS_MARKERS: [&str; 2] = ["illustrious", "noobai"];

/// Checks the checkpoint at `path`; with a device, loads it in `precision` (f32 where the
/// adapter has no f16), generates, checks `loras` and the memory release.
pub fn check(
    path: &Path,
    gpu: Option<Gpu>,
    precision: Precision,
    loras: &[LoraSpec],
    report: &mut Report,
) -> std::io::Result<()> {
    let checkpoint = match Checkpoint::open(path) {
        Ok(c) => c,
        Err(e) => return report.add(Check::fail("checkpoint", e.to_string(), REDOWNLOAD)),
    };
    let complete = verdict(&checkpoint, report)?;
    let scan = scan(&checkpoint);
    let finite = scan.status == Status::Pass;
    report.add(scan)?;
    report.add(profile(&checkpoint))?;
    let usable = lora::compatible(&LoraTable::new(&checkpoint.config), loras, report)?;
    // a checkpoint holding NaN or Inf gives a broken image: the scan's line already says so
    let (Some(gpu), true, true) = (gpu, complete, finite) else {
        return Ok(());
    };
    let (dtype, _) = WeightDtype::for_gpu(precision, &gpu); // the self-test lines say why
    let start = Instant::now();
    let engine = Engine::load(gpu, checkpoint, dtype).and_then(|e| {
        e.gpu().sync()?;
        Ok(e)
    });
    let engine = match engine {
        Ok(engine) => engine,
        Err(e) => return report.add(Check::fail("load", e.to_string(), REDOWNLOAD)),
    };
    report.add(Check::pass(
        "load",
        format!(
            "{} weights in {:.1} s, {} reserved",
            if dtype == WeightDtype::F16 {
                "f16"
            } else {
                "f32"
            },
            start.elapsed().as_secs_f64(),
            mib(engine.gpu().reserved_bytes())
        ),
    ))?;
    if let Some(baseline) = generation(&engine, &[], "generation", report)? {
        lora::round_trips(&engine, &usable, &baseline, report)?;
    }
    check_memory_release(Some(engine.gpu()), report)?;
    Ok(())
}

/// The verdict line; false when the checkpoint cannot be loaded.
fn verdict(checkpoint: &Checkpoint, report: &mut Report) -> std::io::Result<bool> {
    if let Err(e) = checkpoint.ensure_complete() {
        report.add(Check::fail("checkpoint", e.to_string(), REDOWNLOAD))?;
        return Ok(false);
    }
    let detail = format!(
        "{} ({} prediction)",
        checkpoint.variant, checkpoint.variant.prediction
    );
    report.add(Check::pass("checkpoint", detail))?;
    Ok(true)
}

fn scan(checkpoint: &Checkpoint) -> Check {
    let found = checkpoint.scan_non_finite();
    if found.is_empty() {
        return Check::pass("tensors", "every float tensor is finite");
    }
    let named: Vec<String> = found
        .iter()
        .take(3)
        .map(|n| format!("{}: {} NaN, {} Inf", n.key, n.nan, n.inf))
        .collect();
    Check::fail(
        "tensors",
        format!(
            "{} tensors hold NaN or Inf ({})",
            found.len(),
            named.join("; ")
        ),
        REDOWNLOAD,
    )
}

/// The policy profile to use: `anime` (the default), `illustrious` where the metadata says so.
fn profile(checkpoint: &Checkpoint) -> Check {
    let metadata = checkpoint.metadata();
    let marked = metadata.values().any(|v| {
        let v = v.to_lowercase();
        ILLUSTRIOUS_MARKERS.iter().any(|m| v.contains(m))
    });
    if marked {
        Check::warn(
            "policy profile",
            "the default `anime` applies, but the metadata names Illustrious / NoobAI",
            "generate with --policy illustrious (lower CFG)",
        )
    } else {
        Check::pass("policy profile", "anime (the default)")
    }
}

/// What the generations of the doctor run: the smallest size the UNet takes, two steps.
fn probe_request() -> Request {
    Request {
        prompt: "1girl, solo, looking at viewer".into(),
        negative: "lowres, bad anatomy".into(),
        width: 64,
        height: 64,
        steps: 2,
        cfg: 5.0,
        seed: 42,
        sampler: Sampler::Euler,
        ..Request::default()
    }
}

/// Runs the probe request with `loras`; the (finite) image's values, or `None` and a failed
/// check named `name`.
pub fn generation(
    engine: &Engine,
    loras: &[LoraSpec],
    name: &str,
    report: &mut Report,
) -> std::io::Result<Option<Vec<f32>>> {
    let request = Request {
        loras: loras.to_vec(),
        ..probe_request()
    };
    let out = match engine.generate(&request, &mut |_| {}) {
        Ok(out) => out,
        Err(e) => {
            report.add(Check::fail(name, e.to_string(), REDOWNLOAD))?;
            return Ok(None);
        }
    };
    // `generate` refuses non-finite latents and images itself (the error above names them);
    // the values are read back for the LoRA checks' bit-for-bit comparison
    let image = match out
        .images
        .into_data()
        .convert::<f32>()
        .try_into_vec::<f32>()
    {
        Ok(values) => values,
        Err(e) => {
            let fix = "report it: a finished image could not be read back";
            report.add(Check::fail(name, format!("{e:?}"), fix))?;
            return Ok(None);
        }
    };
    let s = &out.stats;
    report.add(Check::pass(
        name,
        format!(
            "finite {}x{} image, {} steps: text encode {:.2} s, denoise {:.2} s ({:.2} it/s), \
             VAE decode {:.2} s",
            request.width,
            request.height,
            request.steps,
            s.encode.as_secs_f64(),
            s.denoise.as_secs_f64(),
            s.steps_per_second(),
            s.decode.as_secs_f64()
        ),
    ))?;
    Ok(Some(image))
}
