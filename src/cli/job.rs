//! One generation request as the user states it: the flags of `generate`, or one line of a
//! `--jobs` file (a JSON object with the same fields, snake_case): the intake's request fields
//! (`sdxl_wgpu::intake::Asked`) and the files the job reads and writes. Resolving it reads those
//! files and plans the request through the intake (preset, quality policy, every check that
//! needs no model), so a bad request fails before the model loads.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use clap::Args;
use serde::{Deserialize, Serialize};

use super::message::FlagNames;
use super::request_flags::RequestFlags;
use super::tensor_file;
use sdxl_wgpu::field::Described;
use sdxl_wgpu::files;
use sdxl_wgpu::image_io;
use sdxl_wgpu::intake::{parse_prompt, Asked, Inputs, LoraFolder, Pictures, UpscalerFolder};
use sdxl_wgpu::lora::{self, LoraSpec};
use sdxl_wgpu::pipeline::{Fit, Noise, Request};
use sdxl_wgpu::policy::{Correction, PolicyName};
use sdxl_wgpu::tokenizer::Prompt;

/// The request flags: the intake's fields ([`RequestFlags`]) and the files a job reads and
/// writes. Unset fields take the preset's value (size, steps, CFG), the init image's size, or
/// the documented default; in a jobs file, a job's fields override the command line's.
#[derive(Args, Clone, Debug, Default, Serialize, Deserialize)]
pub struct JobArgs {
    #[command(flatten)]
    #[serde(flatten)]
    pub request: RequestFlags,
    /// Output image, png (with metadata), jpg or webp by extension; batch image i > 0 gets
    /// `-i` before the extension [default: output.png; jobs: output-LINE.png].
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub output: Option<PathBuf>,
    /// img2img: the image to start from (fitted to the size: scaled to cover, centre-cropped).
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub init_image: Option<PathBuf>,
    /// Inpainting: which part of --init-image to repaint (white repaints, black keeps; an
    /// image with transparency: its opaque part repaints), fitted to the size as the init
    /// image is. PNG, JPEG or WebP.
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mask: Option<PathBuf>,
    /// A safetensors file whose tensor `noise` ([batch, 4, height/8, width/8], f32) replaces
    /// the drawn initial noise.
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub init_noise: Option<PathBuf>,
    /// Write the run's intermediate tensors (f32) to this safetensors file.
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dump: Option<PathBuf>,
    /// A LoRA to apply: `PATH[:UNET_WEIGHT[:TE_WEIGHT]]` (weights default to 1; the text
    /// encoders' to the UNet's). Repeatable; in a job, a list of such strings.
    #[arg(long = "lora", value_name = "PATH[:W[:TE_W]]")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lora: Option<Vec<String>>,
    /// Where `<lora:NAME:W>` tags in the prompt are looked up (`DIR/NAME.safetensors`).
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lora_dir: Option<PathBuf>,
    /// Where `--hires-upscaler NAME` finds model upscalers (`DIR/NAME.pth` or
    /// `.safetensors`); a path to a model file works without it.
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub upscalers_dir: Option<PathBuf>,
    /// The keys of a jobs line that name no field ([`JobArgs::from_json`] refuses them).
    #[arg(skip)]
    #[serde(flatten, skip_serializing)]
    unknown: BTreeMap<String, serde_json::Value>,
}

/// A request ready to run.
pub struct Job {
    pub request: Request,
    pub output: PathBuf,
    pub dump: Option<PathBuf>,
    pub policy: PolicyName,
    pub corrections: Vec<Correction>,
    /// Advice that changed nothing (LoRA weights).
    pub warnings: Vec<String>,
    /// The resolved fields, for the image's JSON metadata.
    pub record: JobArgs,
}

impl JobArgs {
    /// A job asking `asked`, naming no file.
    #[cfg(test)]
    pub fn asking(asked: Asked) -> JobArgs {
        JobArgs {
            request: RequestFlags(asked),
            ..JobArgs::default()
        }
    }

    /// The request's fields as asked.
    pub fn asked(&self) -> &Asked {
        &self.request.0
    }

    /// A jobs line: a JSON object of the fields; a key that names none is an error.
    pub fn from_json(text: &str) -> anyhow::Result<JobArgs> {
        let job: JobArgs = serde_json::from_str(text)?;
        if let Some(key) = job.unknown.keys().next() {
            bail!("unknown field `{key}`: a job's fields are generate's flags, `-` spelled `_`");
        }
        Ok(job)
    }

    /// `self`'s fields, `base`'s where `self` has none.
    pub fn over(&self, base: &JobArgs) -> JobArgs {
        let or = |a: &Option<PathBuf>, b: &Option<PathBuf>| a.clone().or_else(|| b.clone());
        JobArgs {
            request: RequestFlags(self.asked().over(base.asked())),
            output: or(&self.output, &base.output),
            init_image: or(&self.init_image, &base.init_image),
            mask: or(&self.mask, &base.mask),
            init_noise: or(&self.init_noise, &base.init_noise),
            dump: or(&self.dump, &base.dump),
            lora: self.lora.clone().or_else(|| base.lora.clone()),
            lora_dir: or(&self.lora_dir, &base.lora_dir),
            upscalers_dir: or(&self.upscalers_dir, &base.upscalers_dir),
            unknown: BTreeMap::new(),
        }
    }

    /// Applies defaults, preset and policy (`model_policy`, the checkpoint's, unless the job
    /// names one), reads the files the request names, and checks it. `output` is the image
    /// path when the request names none.
    pub fn resolve(&self, output: &Path, model_policy: PolicyName) -> anyhow::Result<Job> {
        let Some(prompt) = self.asked().prompt.as_deref() else {
            bail!("no prompt: give --prompt (or \"prompt\" in the job)");
        };
        let policy = self.asked().policy.unwrap_or(model_policy);
        let init_image = self.init_image.as_deref().map(image_io::read).transpose()?;
        if self.asked().strength.is_some() && init_image.is_none() {
            bail!("--strength is for img2img: give --init-image too");
        }
        let asked = self.asked();
        let masking = asked.mask_blur.is_some()
            || asked.mask_blur_y.is_some()
            || asked.invert_mask.is_some()
            || asked.inpaint_fill.is_some();
        if (self.mask.is_some() || masking) && init_image.is_none() {
            bail!("--mask and the flags that shape it are for inpainting: give --init-image too");
        }
        if masking && self.mask.is_none() {
            bail!("--mask-blur, --invert-mask and --inpaint-fill shape a mask: give --mask too");
        }
        let mask = self.mask.as_deref().map(image_io::read_mask).transpose()?;
        let prompt = parse_prompt(prompt, "prompt")?;
        let upscalers = UpscalerFolder::new(self.upscalers_dir.as_deref());
        let inputs = Inputs {
            loras: self.loras(&prompt)?,
            prompt,
            init_noise: self.read_init_noise()?,
            hires_upscaler: self
                .asked()
                .hires_upscaler(&upscalers, true)
                .map_err(|e| anyhow::anyhow!(e.describe(&FlagNames)))?,
        };
        // img2img keeps the init image's size (rounded down to multiples of 8) by default
        let mut asked = self.asked().clone();
        if let Some(image) = &init_image {
            let side = |n: u32| (n as usize / 8 * 8).max(8);
            asked.width = asked.width.or(Some(side(image.width())));
            asked.height = asked.height.or(Some(side(image.height())));
        }
        let pictures = init_image.map(|image| Pictures {
            image,
            mask,
            fit: Fit::Cover,
        });
        let planned = asked.plan(policy, inputs, anyhow::Error::from, || Ok(pictures))?;
        let request = planned.request;
        let output = self.output.clone().unwrap_or_else(|| output.to_path_buf());
        image_io::OutputFormat::of(&output)?;
        for path in std::iter::once(&output).chain(&self.dump) {
            folder_exists(path)?;
        }
        Ok(Job {
            record: self.record(&request, &output, policy),
            request,
            output,
            dump: self.dump.clone(),
            policy,
            corrections: planned.corrections,
            warnings: planned.warnings,
        })
    }

    /// `--init-noise`'s tensor.
    fn read_init_noise(&self) -> anyhow::Result<Option<Noise>> {
        let Some(path) = &self.init_noise else {
            return Ok(None);
        };
        let (shape, values) = tensor_file::read_4d(path, None, &["noise"])?;
        Ok(Some(Noise { shape, values }))
    }

    /// The fields as resolved, for the image's JSON metadata.
    fn record(&self, r: &Request, output: &Path, policy: PolicyName) -> JobArgs {
        JobArgs {
            request: RequestFlags(self.asked().resolved(r, policy)),
            output: Some(output.to_path_buf()),
            ..self.clone()
        }
    }

    /// The LoRAs of `--lora` and of the prompt's `<lora:NAME:...>` tags (in `--lora-dir`, by
    /// file stem or alias, as a server finds them), in that order; each file must exist.
    fn loras(&self, prompt: &Prompt) -> anyhow::Result<Vec<LoraSpec>> {
        let mut specs = Vec::new();
        for arg in self.lora.iter().flatten() {
            specs.push(parse_lora_arg(arg)?);
        }
        let tags = &prompt.parsed().loras;
        if let Some(tag) = tags.first() {
            let Some(dir) = &self.lora_dir else {
                let name = &tag.name;
                bail!(
                    "the prompt names LoRA `{name}` (<lora:{name}:...>): give --lora-dir DIR to look it up"
                );
            };
            let resolved = LoraFolder::new(Some(dir))
                .resolve(tags)
                .map_err(|e| anyhow::anyhow!(e.describe(&FlagNames)))?;
            specs.extend(resolved);
        }
        let mut seen = Vec::with_capacity(specs.len());
        for spec in &specs {
            lora::check_weights(spec)?;
            if !spec.path.is_file() {
                bail!("LoRA {}: no such file", spec.path.display());
            }
            let file = std::fs::canonicalize(&spec.path)?;
            if seen.contains(&file) {
                bail!(
                    "LoRA {} is named twice in one request (--lora and prompt tags together); \
                     name it once with the weight you want",
                    spec.path.display()
                );
            }
            seen.push(file);
        }
        Ok(specs)
    }
}

/// `PATH[:UNET_WEIGHT[:TE_WEIGHT]]`, weights read from the right so paths may hold `:`.
pub fn parse_lora_arg(arg: &str) -> anyhow::Result<LoraSpec> {
    let mut path = arg;
    let mut weights = Vec::new();
    while weights.len() < 2 {
        let Some((rest, last)) = path.rsplit_once(':') else {
            break;
        };
        let Ok(w) = last.trim().parse::<f32>() else {
            break;
        };
        if !w.is_finite() {
            bail!("--lora {arg}: the weight {last} is not a finite number");
        }
        weights.insert(0, w);
        path = rest;
    }
    if path.is_empty() {
        bail!("--lora {arg}: no file named");
    }
    let unet = weights.first().copied().unwrap_or(1.0);
    Ok(LoraSpec {
        path: PathBuf::from(path),
        unet_weight: unet,
        text_encoder_weight: weights.get(1).copied().unwrap_or(unet),
    })
}

/// The longest line of a jobs file read (a prompt is at most 64 KB; a job's other fields are
/// short).
pub const MAX_JOB_LINE: usize = 256 * 1024;

/// The jobs of a JSON-lines file, read one line at a time: `(line number, job)` for each
/// non-blank line that does not start with `#`; a line that is not a valid job, not UTF-8 or
/// longer than [`MAX_JOB_LINE`] is an `Err` for that line only. The file must be a regular file.
pub fn read_jobs(path: &Path) -> anyhow::Result<JobLines> {
    let file = files::open_regular(path).with_context(|| format!("reading {}", path.display()))?;
    Ok(JobLines {
        reader: BufReader::new(file),
        line: 0,
        done: false,
    })
}

/// The lines of a jobs file as jobs, see [`read_jobs`].
pub struct JobLines {
    reader: BufReader<File>,
    line: usize,
    done: bool,
}

impl Iterator for JobLines {
    type Item = (usize, anyhow::Result<JobArgs>);

    fn next(&mut self) -> Option<Self::Item> {
        while !self.done {
            let mut bytes = Vec::new();
            let limit = MAX_JOB_LINE as u64 + 1;
            let read = (&mut self.reader).take(limit).read_until(b'\n', &mut bytes);
            self.line += 1;
            let line = self.line;
            match read {
                Ok(0) => self.done = true,
                Err(e) => {
                    self.done = true;
                    return Some((line, Err(anyhow::Error::new(e).context("reading the line"))));
                }
                Ok(_) if bytes.len() > MAX_JOB_LINE => {
                    let skipped = if bytes.ends_with(b"\n") {
                        Ok(())
                    } else {
                        self.skip_rest_of_line()
                    };
                    if let Err(e) = skipped {
                        self.done = true;
                        return Some((line, Err(e.into())));
                    }
                    let message = format!("the line is longer than {MAX_JOB_LINE} bytes");
                    return Some((line, Err(anyhow::anyhow!(message))));
                }
                Ok(_) => {
                    let Ok(text) = std::str::from_utf8(&bytes) else {
                        return Some((line, Err(anyhow::anyhow!("the line is not UTF-8"))));
                    };
                    let text = text.trim();
                    if text.is_empty() || text.starts_with('#') {
                        continue;
                    }
                    let job = JobArgs::from_json(text).context("not a job object");
                    return Some((line, job));
                }
            }
        }
        None
    }
}

impl JobLines {
    /// Reads past the end of an over-long line, a bounded buffer at a time.
    fn skip_rest_of_line(&mut self) -> std::io::Result<()> {
        loop {
            let buffer = self.reader.fill_buf()?;
            if buffer.is_empty() {
                return Ok(());
            }
            if let Some(at) = buffer.iter().position(|&b| b == b'\n') {
                self.reader.consume(at + 1);
                return Ok(());
            }
            let n = buffer.len();
            self.reader.consume(n);
        }
    }
}

/// An output's folder must exist before the run, or the work would be lost at the end.
fn folder_exists(path: &Path) -> anyhow::Result<()> {
    let folder = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    if !folder.is_dir() {
        bail!(
            "{}: the folder {} does not exist",
            path.display(),
            folder.display()
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lora_args_take_weights_from_the_right() {
        let table: [(&str, &str, f32, f32); 6] = [
            ("a.safetensors", "a.safetensors", 1.0, 1.0),
            ("a.safetensors:0.8", "a.safetensors", 0.8, 0.8),
            ("a.safetensors:0.8:0.5", "a.safetensors", 0.8, 0.5),
            (
                "C:\\loras\\a.safetensors:0.7",
                "C:\\loras\\a.safetensors",
                0.7,
                0.7,
            ),
            (
                "dir:with:colons/a.safetensors",
                "dir:with:colons/a.safetensors",
                1.0,
                1.0,
            ),
            ("a.safetensors:-1", "a.safetensors", -1.0, -1.0),
        ];
        for (arg, path, unet, te) in table {
            let spec = parse_lora_arg(arg).expect(arg);
            assert_eq!(spec.path, PathBuf::from(path), "{arg}");
            assert_eq!(
                (spec.unet_weight, spec.text_encoder_weight),
                (unet, te),
                "{arg}"
            );
        }
        assert!(parse_lora_arg(":0.5").is_err());
        assert!(parse_lora_arg("a.safetensors:inf").is_err());
    }

    /// Malformed values are errors under every profile; the policy moves only poor ones.
    #[test]
    fn malformed_values_are_errors_before_the_policy() {
        type Edit = fn(&mut Asked);
        let job = |edit: Edit| {
            let mut args = Asked {
                prompt: Some("x".into()),
                ..Asked::default()
            };
            edit(&mut args);
            JobArgs::asking(args)
                .resolve(Path::new("out.png"), PolicyName::Anime)
                .map(|job| job.request)
        };
        let malformed: [(Edit, &str); 7] = [
            (|a| a.width = Some(0), "--width 0"),
            (|a| a.height = Some(1020), "--height 1020"),
            (|a| a.width = Some(9000), "between 8 and 8192"),
            (|a| a.cfg = Some(f32::NAN), "--cfg NaN"),
            (|a| a.cfg = Some(-2.0), "--cfg -2"),
            (|a| a.steps = Some(0), "--steps 0"),
            (|a| a.steps = Some(1001), "--steps 1001"),
        ];
        for (edit, message) in malformed {
            for policy in [PolicyName::Anime, PolicyName::Illustrious, PolicyName::Off] {
                let mut args = Asked {
                    prompt: Some("x".into()),
                    policy: Some(policy),
                    ..Asked::default()
                };
                edit(&mut args);
                let err = JobArgs::asking(args)
                    .resolve(Path::new("out.png"), PolicyName::Anime)
                    .err()
                    .expect(message);
                let err = crate::cli::message::message(&err);
                assert!(err.contains(message), "{policy}: {err}");
            }
        }
        // poor but valid: moved by the default profile, kept with the policy off
        let poor = job(|a| {
            a.width = Some(512);
            a.cfg = Some(2.0);
            a.steps = Some(8);
        })
        .expect("valid");
        assert_eq!((poor.width, poor.cfg, poor.steps), (768, 7.0, 25));
    }

    #[test]
    fn prompt_tags_need_a_lora_dir_and_an_existing_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("style.safetensors"), b"x").expect("write");
        let job = |prompt: &str, lora_dir: Option<&Path>| JobArgs {
            lora_dir: lora_dir.map(Path::to_path_buf),
            ..JobArgs::asking(Asked {
                prompt: Some(prompt.into()),
                ..Asked::default()
            })
        };
        let err = job("x <lora:style:0.7>", None).loras(&"x <lora:style:0.7>".into());
        assert!(format!("{:#}", err.expect_err("no dir")).contains("--lora-dir"));
        let specs = job("", Some(dir.path()))
            .loras(&"x <lora:style:0.7:0.9>".into())
            .expect("found");
        assert_eq!(specs[0].path, dir.path().join("style.safetensors"));
        assert_eq!(
            (specs[0].text_encoder_weight, specs[0].unet_weight),
            (0.7, 0.9)
        );
        let err = job("", Some(dir.path())).loras(&"<lora:missing:1>".into());
        assert!(format!("{:#}", err.expect_err("missing"))
            .contains("missing.safetensors: no such file"));
    }

    /// A tag names a file inside --lora-dir, nothing outside it; one LoRA named twice, or with a
    /// weight past the bound, is refused before the model loads.
    #[test]
    fn lora_names_stay_in_their_folder_and_are_named_once() {
        let outer = tempfile::tempdir().expect("tempdir");
        let dir = outer.path().join("loras");
        std::fs::create_dir(&dir).expect("mkdir");
        std::fs::write(dir.join("style.safetensors"), b"x").expect("write");
        std::fs::write(outer.path().join("secret.safetensors"), b"x").expect("write");
        let args = |lora: Vec<String>| JobArgs {
            lora_dir: Some(dir.clone()),
            lora: Some(lora),
            ..JobArgs::default()
        };
        let secret = outer.path().join("secret.safetensors");
        for tag in [
            "<lora:../secret:1>".to_string(),
            format!("<lora:{}:1>", secret.display()),
            "<lora:sub/style:1>".to_string(),
        ] {
            let err = args(vec![]).loras(&tag.as_str().into()).expect_err(&tag);
            assert!(
                format!("{err:#}").contains("a file name inside --lora-dir"),
                "{tag}: {err:#}"
            );
        }
        let style = dir.join("style.safetensors").display().to_string();
        let err = args(vec![format!("{style}:0.5")])
            .loras(&"x <lora:style:0.8>".into())
            .expect_err("twice");
        assert!(format!("{err:#}").contains("named twice"), "{err:#}");
        let err = args(vec![])
            .loras(&"<lora:style:12>".into())
            .expect_err("weight");
        assert!(format!("{err:#}").contains("-10 to 10"), "{err:#}");
        assert!(args(vec![]).loras(&"<lora:style:0.8>".into()).is_ok());
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig {
            cases: 256,
            failure_persistence: None,
            ..Default::default()
        })]

        /// Random jobs files: every line ends in a job or that line's error, and every job
        /// resolves or fails, without a panic.
        #[test]
        fn jobs_files_are_total(lines in proptest::collection::vec(job_line(), 0..8)) {
            let dir = tempfile::tempdir().expect("tempdir");
            let path = dir.path().join("jobs.jsonl");
            std::fs::write(&path, lines.join("\n")).expect("write");
            for (_, job) in read_jobs(&path).expect("opens") {
                if let Ok(job) = job {
                    let _ = job.resolve(&dir.path().join("out.png"), PolicyName::Anime);
                }
            }
        }
    }

    /// A jobs line: JSON objects with the request's fields at random values, or noise.
    fn job_line() -> impl proptest::strategy::Strategy<Value = String> {
        use proptest::prelude::*;
        let value = prop_oneof![
            Just("null".to_string()),
            any::<i64>().prop_map(|n| n.to_string()),
            any::<f64>().prop_map(|f| format!("{f:?}")),
            "\"[a-z_ .:()<>0-9-]{0,12}\"",
            Just("[\"a.safetensors:2\"]".to_string()),
        ];
        let field = prop_oneof![
            Just("prompt"),
            Just("negative"),
            Just("width"),
            Just("height"),
            Just("steps"),
            Just("cfg"),
            Just("seed"),
            Just("sampler"),
            Just("schedule"),
            Just("batch"),
            Just("strength"),
            Just("init_image"),
            Just("policy"),
            Just("preset"),
            Just("lora"),
            Just("clip_skip"),
            Just("vae_tiling"),
            Just("model"),
        ];
        let object = proptest::collection::vec((field, value), 0..6).prop_map(|fields| {
            let body: Vec<String> = fields
                .iter()
                .map(|(k, v)| format!("\"{k}\": {v}"))
                .collect();
            format!("{{{}}}", body.join(", "))
        });
        prop_oneof![object, ".{0,40}"]
    }

    /// Jobs are read a line at a time: an over-long or non-UTF-8 line is that line's error and
    /// the lines after it are read as usual.
    #[test]
    fn jobs_lines_are_bounded_and_independent() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("jobs.jsonl");
        let long = format!("{{\"prompt\": \"{}\"}}\n", "a".repeat(MAX_JOB_LINE));
        let mut text = b"{\"prompt\": \"one\"}\n# a comment\n\n".to_vec();
        text.extend_from_slice(long.as_bytes());
        text.extend_from_slice(b"\xff\xfe\n{\"prompt\": \"two\", \"seed\": 3}\r\n{\"model\": 1}");
        std::fs::write(&path, &text).expect("write");
        let jobs: Vec<(usize, anyhow::Result<JobArgs>)> =
            read_jobs(&path).expect("opens").collect();
        let lines: Vec<usize> = jobs.iter().map(|(line, _)| *line).collect();
        assert_eq!(lines, [1, 4, 5, 6, 7]);
        assert_eq!(
            jobs[0].1.as_ref().expect("one").asked().prompt.as_deref(),
            Some("one")
        );
        let error = |i: usize| format!("{:#}", jobs[i].1.as_ref().expect_err("an error"));
        assert!(error(1).contains("longer than"), "{}", error(1));
        assert!(error(2).contains("not UTF-8"), "{}", error(2));
        assert_eq!(jobs[3].1.as_ref().expect("two").asked().seed, Some(3));
        assert!(error(4).contains("not a job object"), "{}", error(4));
        assert!(
            read_jobs(dir.path()).is_err(),
            "a folder is not a jobs file"
        );
    }
}
