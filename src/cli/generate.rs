//! `sdxl-wgpu generate --model MODEL --prompt TEXT`: txt2img or img2img on one loaded engine,
//! for one request (the flags) or many (`--jobs FILE.jsonl`, one JSON request per line, run
//! without reloading the model). Images carry A1111 metadata; `--dump` writes the run's
//! intermediate tensors.

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::bail;
use clap::Args;

use super::say;
use super::values::spelled;

use super::gpu;
use super::job::{read_jobs, Job, JobArgs};
use super::progress::Progress;
use super::serve::LoadArgs;
use super::tensor_file::{self, HostTensor};
use sdxl_wgpu::checkpoint::Checkpoint;
use sdxl_wgpu::device::{Backend, MadeOn, Precision};
use sdxl_wgpu::files;
use sdxl_wgpu::image_io::{self, ImageMetadata};
use sdxl_wgpu::infotext::{self, ModelInfo};
use sdxl_wgpu::pipeline::{Engine, Generated, Request};
use sdxl_wgpu::policy::PolicyName;
use sdxl_wgpu::sampling::Prediction;

#[derive(Args, Debug)]
pub struct GenerateArgs {
    /// A single-file `.safetensors` checkpoint or a diffusers model folder.
    #[arg(long)]
    model: PathBuf,
    #[command(flatten)]
    job: JobArgs,
    /// Run every request of a JSON-lines file (one object per line with the request flags'
    /// names in snake_case; the flags given here are the defaults of every job).
    #[arg(long)]
    jobs: Option<PathBuf>,
    #[command(flatten)]
    load: LoadArgs,
    #[arg(long, value_parser = spelled::<Precision>(), default_value_t = Precision::Auto)]
    precision: Precision,
    #[arg(long, value_parser = spelled::<Backend>(), default_value_t = Backend::Auto)]
    backend: Backend,
}

pub fn run(args: GenerateArgs) -> anyhow::Result<()> {
    let (policy, why) = model_policy(&args);
    let jobs = JobSource {
        args: &args,
        policy,
    };
    // every request resolved once (files read, policy applied, checked) before the model loads,
    // then dropped: memory holds one job's inputs at a time
    let (mut total, mut failed) = (0, BTreeSet::new());
    jobs.each(|index, label, job| {
        total += 1;
        match job {
            Ok(job) => warn(label, &job),
            Err(e) if args.jobs.is_some() => {
                eprintln!("error: {label}{}", super::message::message(&e));
                failed.insert(index);
            }
            Err(e) => return Err(e),
        }
        Ok(())
    })?;
    if failed.len() == total {
        bail!("no job to run");
    }
    let engine = load_engine(&args)?;
    if args.job.asked().policy.is_none() {
        say!("quality policy: {policy} ({why}; --policy overrides)")?;
    }
    let model = model_info(&args.model);
    let mut progress = Progress::new(super::global().quiet);
    // each job resolved again just before it runs
    jobs.each(|index, label, job| {
        if failed.contains(&index) {
            return Ok(());
        }
        progress.start(label.to_string());
        let result = job.and_then(|mut job| {
            engine.resolve(&mut job.request);
            job.record.request.0.cfg_rescale = job.request.cfg_rescale;
            set_loras(&engine, label, &job)?;
            let out = engine.generate(&job.request, &mut |e| progress.on_event(e))?;
            write_outputs(&job, &out, &model, &engine.made_on())?;
            summarize(label, &job, &out)?;
            Ok(())
        });
        match result {
            Ok(()) => Ok(()),
            Err(e) if args.jobs.is_some() => {
                progress.abandon();
                eprintln!("error: {label}{}", super::message::message(&e));
                failed.insert(index);
                Ok(())
            }
            Err(e) => Err(e),
        }
    })?;
    if !failed.is_empty() {
        bail!("{} of {total} jobs failed", failed.len());
    }
    Ok(())
}

/// The requests of one `generate`: the command line's, or each line of `--jobs` over the
/// command line's flags, read from the file again each time they are walked.
struct JobSource<'a> {
    args: &'a GenerateArgs,
    /// The policy of jobs that name none: the checkpoint's.
    policy: PolicyName,
}

impl JobSource<'_> {
    /// Calls `visit` with each job's index, label (`jobs.jsonl line 3: `; empty for the command
    /// line's) and the request it resolves to now, or why it cannot run.
    fn each(
        &self,
        mut visit: impl FnMut(usize, &str, anyhow::Result<Job>) -> anyhow::Result<()>,
    ) -> anyhow::Result<()> {
        let args = self.args;
        let default_output = PathBuf::from("output.png");
        let Some(file) = &args.jobs else {
            let job = args.job.resolve(&default_output, self.policy);
            return visit(0, "", job.and_then(|j| self.check_outputs(j)));
        };
        // --output names the jobs' outputs by line; the other flags are their defaults
        let base = args.job.output.clone().unwrap_or(default_output);
        let mut defaults = args.job.clone();
        defaults.output = None;
        for (index, (line, job)) in read_jobs(file)?.enumerate() {
            let label = format!("{} line {line}: ", file.display());
            let job = job
                .and_then(|j| {
                    j.over(&defaults)
                        .resolve(&line_output(&base, line), self.policy)
                })
                .and_then(|j| self.check_outputs(j));
            visit(index, &label, job)?;
        }
        Ok(())
    }

    /// `job`, unless one of its outputs would replace the model, the jobs file or one of the
    /// job's inputs.
    fn check_outputs(&self, job: Job) -> anyhow::Result<Job> {
        let mut inputs: Vec<&Path> = vec![&self.args.model];
        inputs.extend(self.args.jobs.as_deref());
        inputs.extend(job.record.init_image.as_deref());
        inputs.extend(job.record.init_noise.as_deref());
        inputs.extend(job.request.loras.iter().map(|l| l.path.as_path()));
        let images = (0..job.request.batch).map(|i| image_io::numbered(&job.output, i));
        for output in images.chain(job.dump.clone()) {
            if let Some(input) = files::overwrites(&output, &inputs) {
                bail!(
                    "{}: writing it would replace the input {}",
                    output.display(),
                    input.display()
                );
            }
        }
        Ok(job)
    }
}

/// The quality policy of jobs that name none: the checkpoint's (`--prediction` overrides its
/// markers), and why. A checkpoint that cannot be opened gets the default; loading it says why.
fn model_policy(args: &GenerateArgs) -> (PolicyName, &'static str) {
    let prediction = args.load.prediction.or_else(|| {
        Checkpoint::open(&args.model)
            .ok()
            .map(|c| c.variant.prediction)
    });
    PolicyName::for_model(prediction.unwrap_or(Prediction::Epsilon))
}

/// Prints a job's policy corrections and warnings.
fn warn(label: &str, job: &Job) {
    for c in &job.corrections {
        eprintln!(
            "warning: {label}quality policy ({}): {c}",
            job.policy.profile().name
        );
    }
    for w in &job.warnings {
        eprintln!("warning: {label}{w}");
    }
}

/// Opens the checkpoint, brings up the device and loads the engine, saying what loaded where.
fn load_engine(args: &GenerateArgs) -> anyhow::Result<Engine> {
    let checkpoint = Checkpoint::open(&args.model)?;
    let gpu = gpu::open(args.backend)?;
    let dtype = gpu::weight_dtype(&gpu, args.precision);
    let start = Instant::now();
    let engine = Engine::load_with(gpu, checkpoint, dtype, args.load.options())?;
    engine.gpu().sync()?;
    let load_s = start.elapsed().as_secs_f64();
    let on = engine.made_on();
    say!(
        "{} on {} ({}, {}), {}, loaded in {load_s:.1} s",
        engine.checkpoint().variant,
        on.adapter,
        on.api,
        engine.gpu().compiler.describe(),
        on.precision,
    )?;
    Ok(engine)
}

/// Makes the job's LoRAs the engine's active set (a no-op when they already are), saying what
/// a new set adapts and which modules matched nothing.
fn set_loras(engine: &Engine, label: &str, job: &Job) -> anyhow::Result<()> {
    let Some(report) = engine.set_loras(&job.request.loras)? else {
        return Ok(());
    };
    for file in &report.files {
        let adapted: Vec<String> = file
            .matched
            .iter()
            .map(|(c, n)| format!("{n} {}", c.describe()))
            .collect();
        say!(
            "{label}LoRA {}: {} layers",
            file.path.display(),
            adapted.join(", ")
        )?;
        if !file.unmatched.is_empty() {
            eprintln!(
                "warning: {label}LoRA {}: {} modules match no layer and are ignored (e.g. `{}`)",
                file.path.display(),
                file.unmatched.len(),
                file.unmatched[..file.unmatched.len().min(3)].join("`, `")
            );
        }
        if !file.unrecognised.is_empty() {
            eprintln!(
                "warning: {label}LoRA {}: {} tensors of unsupported kinds are ignored (e.g. `{}`)",
                file.path.display(),
                file.unrecognised.len(),
                file.unrecognised[0]
            );
        }
    }
    Ok(())
}

/// `out.png` -> `out-LINE.png` for a job on line `line` that names no output.
fn line_output(base: &Path, line: usize) -> PathBuf {
    let stem = base.file_stem().unwrap_or_default().to_string_lossy();
    let ext = base
        .extension()
        .map_or("png".into(), |e| e.to_string_lossy());
    base.with_file_name(format!("{stem}-{line}.{ext}"))
}

/// Names and hashes the model for the metadata, saying so when the first hash reads a big file.
fn model_info(path: &Path) -> ModelInfo {
    if path.is_file() && std::fs::metadata(path).is_ok_and(|m| m.len() > 1 << 30) {
        eprintln!("model hash for the image metadata (the first time reads the whole file)...");
    }
    let (info, error) = ModelInfo::of(path);
    if let Some(e) = error {
        eprintln!("warning: {}: cannot hash the model: {e}", path.display());
    }
    info
}

/// The images (with metadata) and the dump of one run.
fn write_outputs(
    job: &Job,
    out: &Generated,
    model: &ModelInfo,
    made_on: &MadeOn,
) -> anyhow::Result<()> {
    let images = out.pictures()?;
    for (i, image) in images.iter().enumerate() {
        let path = image_io::numbered(&job.output, i);
        let metadata = metadata(job, model, made_on, job.request.seed.wrapping_add(i as u64))?;
        image_io::save(image, &path, Some(&metadata))?;
    }
    if let Some(path) = &job.dump {
        write_dump(path, job, out)?;
    }
    Ok(())
}

/// The PNG text of image `seed` of `job`; its JSON carries the job as a jobs line.
fn metadata(
    job: &Job,
    model: &ModelInfo,
    made_on: &MadeOn,
    seed: u64,
) -> anyhow::Result<ImageMetadata> {
    let serde_json::Value::Object(asked) = serde_json::to_value(&job.record)? else {
        anyhow::bail!("a job's fields are a JSON object");
    };
    let r = &job.request;
    Ok(infotext::image_metadata(r, &job.corrections, model, made_on, &asked, seed)?.1)
}

/// `--dump`: the run's intermediate tensors, f32, diffusers' names, batch-sized like the
/// pipeline's.
fn write_dump(path: &Path, job: &Job, out: &Generated) -> anyhow::Result<()> {
    let b = job.request.batch;
    let c = &out.conditioning;
    let repeat = |t: burn::tensor::Tensor<3>| t.repeat_dim(0, b);
    let repeat2 = |t: burn::tensor::Tensor<2>| t.repeat_dim(0, b);
    let n = out.timesteps.len();
    let tensors = [
        HostTensor::from_device("prompt_embeds", repeat(c.context.clone().slice(1..2)))?,
        HostTensor::from_device(
            "pooled_prompt_embeds",
            repeat2(c.pooled.clone().slice(1..2)),
        )?,
        HostTensor::from_device(
            "negative_prompt_embeds",
            repeat(c.context.clone().slice(0..1)),
        )?,
        HostTensor::from_device(
            "negative_pooled_prompt_embeds",
            repeat2(c.pooled.clone().slice(0..1)),
        )?,
        HostTensor::new("add_time_ids", vec![b, 6], out.add_time_ids.repeat(b)),
        HostTensor::new("timesteps", vec![n], out.timesteps.clone()),
        HostTensor::new("sigmas", vec![out.sigmas.len()], out.sigmas.clone()),
        HostTensor::from_device("noise_pred_step0", out.noise_pred_step0.clone())?,
        HostTensor::from_device("final_latents", out.final_latents.clone())?,
        HostTensor::from_device("image", out.images.clone())?,
    ];
    let metadata = HashMap::from([("request".to_string(), serde_json::to_string(&job.record)?)]);
    tensor_file::write(path, &tensors, metadata)
}

/// What an img2img run or a hires pass adds to the summary line.
fn variant(r: &Request) -> String {
    if let Some(init) = &r.init {
        return format!(", img2img strength {}", init.strength);
    }
    let Some(hires) = &r.hires else {
        return String::new();
    };
    let target = hires.target(r.width, r.height);
    format!(
        ", hires {}x{} ({}, strength {})",
        target.width,
        target.height,
        hires.upscaler.a1111_name(),
        hires.strength
    )
}

/// One line per request: what ran, where it went, where the time went.
fn summarize(label: &str, job: &Job, out: &Generated) -> std::io::Result<()> {
    let r = &job.request;
    let s = &out.stats;
    let mut paths: Vec<String> = (0..r.batch)
        .map(|i| image_io::numbered(&job.output, i).display().to_string())
        .collect();
    if let Some(dump) = &job.dump {
        paths.push(format!("dump {}", dump.display()));
    }
    say!(
        "{label}seed {}: {}x{}, {} steps {} {}, cfg {}{} -> {}",
        r.seed,
        r.width,
        r.height,
        r.steps,
        r.sampler.a1111_name(),
        r.schedule.a1111_name(),
        r.cfg,
        variant(r),
        paths.join(", ")
    )?;
    let image_encode = if r.init.is_some() {
        format!("image encode {:.2} s, ", s.image_encode.as_secs_f64())
    } else {
        String::new()
    };
    say!(
        "  text encode {:.2} s, {image_encode}denoise {:.2} s ({:.2} it/s), VAE decode {:.2} s, peak device memory {}",
        s.encode.as_secs_f64(),
        s.denoise.as_secs_f64(),
        s.steps_per_second(),
        s.decode.as_secs_f64(),
        s.peak_reserved_bytes
            .map_or("unknown".into(), |b| format!("{:.2} GiB", b as f64 / (1u64 << 30) as f64)),
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use sdxl_wgpu::intake::Asked;

    /// Corrections reach both chunks; strength and clip skip appear the A1111 way.
    #[test]
    fn metadata_records_policy_corrections() {
        let args = JobArgs::asking(Asked {
            prompt: Some("1girl, (smile:1.2)".into()),
            negative: Some("lowres".into()),
            width: Some(512),
            height: Some(512),
            cfg: Some(2.0),
            steps: Some(30),
            seed: Some(9),
            clip_skip: Some(1),
            ..Asked::default()
        });
        let job = args
            .resolve(Path::new("out.png"), PolicyName::Anime)
            .expect("resolves");
        let model = ModelInfo {
            path: PathBuf::from("/models/animagine.safetensors"),
            name: "animagine".into(),
            hash: Some("0123456789".into()),
        };
        let made_on = MadeOn {
            api: "Vulkan".into(),
            adapter: "llvmpipe (LLVM 15.0.6, 256 bits)".into(),
            device_type: "Cpu".into(),
            driver: "llvmpipe".into(),
            shaders: "WGSL",
            tensor_cores: false,
            precision: "f16",
        };
        let m = metadata(&job, &model, &made_on, 10).expect("metadata");
        assert_eq!(
            m.parameters,
            format!(
                "1girl, (smile:1.2)\nNegative prompt: lowres\nSteps: 30, Sampler: Euler, \
             Schedule type: Automatic, CFG scale: 7, Seed: 10, Size: 768x768, Model hash: \
             0123456789, Model: animagine, Clip skip: 2, Quality policy: \"width 512 -> 768, \
             height 512 -> 768, cfg 2 -> 7\", Version: sdxl-wgpu {}",
                env!("CARGO_PKG_VERSION")
            )
        );
        let json: serde_json::Value = serde_json::from_str(&m.json).expect("JSON");
        assert_eq!(json["seed"], 10);
        assert_eq!(json["width"], 768);
        assert_eq!(json["quality_policy"][2]["old"], "2");
        assert_eq!(json["quality_policy"][2]["new"], "7");
        assert_eq!(json["model"], "/models/animagine.safetensors");
        assert_eq!(json["backend"]["api"], "Vulkan");
        assert_eq!(json["backend"]["shaders"], "WGSL");
        assert_eq!(json["backend"]["tensor_cores"], false);
        assert_eq!(json["backend"]["precision"], "f16");
    }
}
