//! `sdxl-wgpu generate` as users run it on the tiny model: the PNG diffusers makes (through an
//! A1111 sampler name), `--init-noise` and `--dump` against diffusers, the image metadata,
//! `--jobs` with bad lines, and every bad input refused with exit code 2 before the model loads.

use std::path::Path;

use sdxl_wgpu::image_io::mask;
use sdxl_wgpu::image_io::metadata::{read_png_text, JSON_KEYWORD};
use sha2::{Digest, Sha256};

mod common;
use common::{floats, max_pixel_difference, relative_error, run_cli as run, TINY, TINY_GENERATE};

fn reference(name: &str) -> (Vec<usize>, Vec<f32>) {
    let bytes = std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/pipeline_reference.safetensors"
    ))
    .expect("fixture");
    let file = safetensors::SafeTensors::deserialize(&bytes).expect("safetensors");
    let t = file.tensor(name).expect(name);
    (t.shape().to_vec(), floats(t.data()))
}

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures");

fn path(p: &Path) -> &str {
    p.to_str().expect("utf-8")
}

/// The seeded `dpmpp_2m_karras` case of `make_pipeline_fixtures.py`, named the A1111 way.
#[test]
fn writes_the_diffusers_image_with_a1111_metadata() {
    let dir = tempfile::tempdir().expect("tempdir");
    let output = dir.path().join("out.png");
    let cache = dir.path().join("cache");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_sdxl-wgpu"))
        .args([
            "generate",
            "--model",
            TINY,
            "--prompt",
            "a cat sitting on a windowsill, sunset",
            "--width",
            "96",
            "--height",
            "64",
            "--steps",
            "5",
            "--cfg",
            "7",
            "--seed",
            "7",
            "--sampler",
            "DPM++ 2M Karras",
            "--policy",
            "off",
            "--precision",
            "f32",
            "--output",
            path(&output),
        ])
        .env("SDXL_WGPU_CACHE_DIR", &cache)
        .output()
        .expect("runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("seed 7: 96x64, 5 steps DPM++ 2M Karras"),
        "{stdout}"
    );
    assert!(stdout.contains("it/s"), "{stdout}");
    let png = image::open(&output).expect("a PNG").to_rgb8();
    assert_eq!(png.dimensions(), (96, 64));
    let want = reference("dpmpp_2m_karras.image").1;
    let worst = max_pixel_difference(&png, &want);
    assert!(worst <= 1, "a pixel differs by {worst}");

    let sha: String = Sha256::digest(std::fs::read(TINY).expect("model"))
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let chunks = read_png_text(&output).expect("text chunks");
    assert_eq!(
        chunks["parameters"],
        format!(
            "a cat sitting on a windowsill, sunset\nSteps: 5, Sampler: DPM++ 2M, Schedule type: \
             Karras, CFG scale: 7, Seed: 7, Size: 96x64, Model hash: {}, Model: tiny-sdxl, \
             Version: sdxl-wgpu {}",
            &sha[..10],
            env!("CARGO_PKG_VERSION")
        )
    );
    let json: serde_json::Value = serde_json::from_str(&chunks[JSON_KEYWORD]).expect("JSON");
    assert_eq!(json["seed"], 7);
    assert_eq!(json["sampler"], "dpmpp_2m");
    assert_eq!(json["schedule"], "karras");
    assert_eq!(json["model_hash"], &sha[..10]);
    assert_eq!(json["original_width"], 96);
    // where it was made, as the run said it
    let b = &json["backend"];
    let said = format!(
        "on {} ({}, {}), {}",
        b["adapter"].as_str().expect("adapter"),
        b["api"].as_str().expect("api"),
        b["shaders"].as_str().expect("shaders"),
        b["precision"].as_str().expect("precision"),
    );
    assert!(stdout.contains(&said), "{said} in {stdout}");
    // the hash is cached by path, size and time
    let cached = std::fs::read_to_string(cache.join("model-hashes.json")).expect("cache");
    assert!(cached.contains(&sha), "{cached}");
}

/// Kernels compiled and shapes tuned during a run, from its phase lines on stderr (each
/// compute phase's end line says what it compiled and tuned).
fn kernel_counts(stderr: &str) -> (u64, u64) {
    let phases = ["upload ", "text encode: ", "denoise ", "VAE decode "];
    let mut counts = (0, 0);
    for line in stderr.lines() {
        let text = line.split_once("] ").map_or(line, |(_, t)| t);
        if !phases.iter().any(|p| text.starts_with(p)) {
            continue;
        }
        let Some((_, tail)) = text.rsplit_once(" (") else {
            continue;
        };
        let words: Vec<&str> = tail.split_whitespace().collect();
        if let [compiled, "kernels", "compiled,", tuned, "shapes", "tuned)"] = words[..] {
            counts.0 += compiled.parse::<u64>().expect("a count");
            counts.1 += tuned.parse::<u64>().expect("a count");
        }
    }
    counts
}

/// A run's phases print on a stderr that is not a terminal (weights uploaded, text encode, each
/// step, VAE decode, with durations and the kernels each compiled), and a second process finds
/// what the first tuned in the cache: it tunes nothing and compiles fewer kernels (only the
/// winners; WGSL itself has no compiled-kernel cache).
#[test]
fn a_second_process_reuses_the_first_ones_tuning() {
    let cache = tempfile::tempdir().expect("tempdir");
    let dir = tempfile::tempdir().expect("tempdir");
    let output = dir.path().join("out.png");
    let run = || {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_sdxl-wgpu"))
            .args(&TINY_GENERATE[..13]) // not --quiet: the phase lines are what is read
            .args(["--precision", "f32", "--output", path(&output)])
            .env("SDXL_WGPU_CACHE_DIR", cache.path())
            .output()
            .expect("runs");
        let err = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(out.status.success(), "{err}");
        err
    };
    let first = run();
    for phase in [
        "] upload UNet: ",
        "] text encode: ",
        "] step 1/2: ",
        "] step 2/2: ",
        "] denoise 2 steps (UNet batch 2): ",
        "] VAE decode (1 image(s)): ",
    ] {
        assert!(first.contains(phase), "{phase}: {first}");
    }
    let second = run();
    let (compiled, tuned) = kernel_counts(&first);
    let (compiled_again, tuned_again) = kernel_counts(&second);
    assert!(compiled > 0 && tuned > 0, "{first}");
    assert_eq!(tuned_again, 0, "{second}");
    assert!(
        compiled_again < compiled,
        "{compiled_again} of {compiled}: {second}"
    );
}

/// `--init-noise` + size/crop conditioning + `--dump` reproduce the `ddim_noise` case.
#[test]
fn init_noise_and_dump_equal_diffusers() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (shape, noise) = reference("ddim_noise.noise");
    let noise_file = dir.path().join("noise.safetensors");
    let bytes: Vec<u8> = noise.iter().flat_map(|v| v.to_le_bytes()).collect();
    let view = safetensors::tensor::TensorView::new(safetensors::Dtype::F32, shape.clone(), &bytes)
        .expect("view");
    safetensors::serialize_to_file([("noise", view)], None, &noise_file).expect("written");
    let dump = dir.path().join("dump.safetensors");
    let output = dir.path().join("ddim.png");
    let (code, _, err) = run(&[
        "generate",
        "--model",
        TINY,
        "--prompt",
        "a watercolor fox in the snow",
        "--negative",
        "lowres, bad anatomy, worst quality, blurry",
        "--width",
        "64",
        "--height",
        "96",
        "--steps",
        "5",
        "--cfg",
        "5",
        "--sampler",
        "ddim",
        "--original-width",
        "192",
        "--original-height",
        "128",
        "--crop-top",
        "16",
        "--crop-left",
        "8",
        "--policy",
        "off",
        "--precision",
        "f32",
        "--init-noise",
        path(&noise_file),
        "--dump",
        path(&dump),
        "--output",
        path(&output),
    ]);
    assert_eq!(code, 0, "{err}");
    let f = fixture_at(&dump);
    for (name, reference_name) in [
        ("final_latents", "ddim_noise.final_latents"),
        ("noise_pred_step0", "ddim_noise.noise_pred_step0"),
        ("image", "ddim_noise.image"),
    ] {
        let err = relative_error(&f[name], &reference(reference_name), name);
        assert!(err <= 2e-5, "{name}: {err:.2e}");
    }
    assert_eq!(
        f["add_time_ids"],
        (vec![1, 6], vec![128.0, 192.0, 16.0, 8.0, 96.0, 64.0])
    );
    // DDIM, 5 steps of SDXL's 1000, leading, offset 1
    assert_eq!(
        f["timesteps"],
        (vec![5], vec![801.0, 601.0, 401.0, 201.0, 1.0])
    );
    assert_eq!(f["sigmas"].0, [6]);
    // the tiny model's widths: context 16 + 32, pooled 24
    assert_eq!(f["prompt_embeds"].0, [1, 77, 48]);
    assert_eq!(f["negative_prompt_embeds"].0, [1, 77, 48]);
    assert_eq!(f["pooled_prompt_embeds"].0, [1, 24]);
    assert_eq!(f["negative_pooled_prompt_embeds"].0, [1, 24]);
    assert_eq!(f["image"].0, [1, 3, 96, 64]);
}

/// Every tensor of a safetensors file (f32).
fn fixture_at(path: &Path) -> std::collections::BTreeMap<String, (Vec<usize>, Vec<f32>)> {
    let bytes = std::fs::read(path).expect("dump written");
    let file = safetensors::SafeTensors::deserialize(&bytes).expect("safetensors");
    file.tensors()
        .into_iter()
        .map(|(name, t)| (name, (t.shape().to_vec(), floats(t.data()))))
        .collect()
}

/// One process, one model load: good jobs run (one with its own output, one numbered by its
/// line, both inheriting the command line's flags), bad lines are reported with their line
/// numbers, and the exit code says some failed.
#[test]
fn jobs_file_runs_the_good_lines_and_reports_the_bad_ones() {
    let dir = tempfile::tempdir().expect("tempdir");
    let named = dir.path().join("named.png");
    let inpainted = dir.path().join("inpainted.png");
    let jobs = dir.path().join("jobs.jsonl");
    let lines = [
        "# a comment".to_string(),
        format!(
            r#"{{"prompt": "1girl, solo, long hair, masterpiece, best quality", "negative": "lowres, bad anatomy, worst quality, blurry", "seed": 42, "cfg": 5, "sampler": "Euler a", "output": "{}"}}"#,
            path(&named)
        ),
        "{not json".to_string(),
        r#"{"prompt": "x", "width": 60}"#.to_string(),
        String::new(),
        r#"{"prompt": "a lighthouse", "seed": 5, "model": "other.safetensors"}"#.to_string(),
        r#"{"prompt": "a lighthouse", "seed": 5, "batch": 2}"#.to_string(),
        // inpainting, then a mask without an init image
        format!(
            r#"{{"prompt": "a cat", "seed": 3, "init_image": "{FIXTURES}/init_64.png", "mask": "{FIXTURES}/mask_64.png", "strength": 0.75, "inpaint_fill": "fill", "output": "{}"}}"#,
            path(&inpainted)
        ),
        format!(r#"{{"prompt": "x", "mask": "{FIXTURES}/mask_64.png"}}"#),
    ];
    std::fs::write(&jobs, lines.join("\n")).expect("jobs file");
    let base = dir.path().join("img.png");
    let (code, out, err) = run(&[
        "generate",
        "--model",
        TINY,
        "--jobs",
        path(&jobs),
        "--width",
        "64",
        "--height",
        "64",
        "--steps",
        "4",
        "--policy",
        "off",
        "--precision",
        "f32",
        "--output",
        path(&base),
    ]);
    assert_eq!(code, 2, "{out}\n{err}");
    let jobs_name = jobs.display().to_string();
    for line in [3, 4, 6, 9] {
        assert!(err.contains(&format!("{jobs_name} line {line}: ")), "{err}");
    }
    assert!(err.contains("--width 60"), "{err}");
    assert!(err.contains("unknown field `model`"), "{err}");
    assert!(err.contains("give --init-image too"), "{err}");
    assert!(err.contains("4 of 7 jobs failed"), "{err}");
    assert_eq!(out.matches("loaded in").count(), 1, "{out}");
    // line 2 is the seeded euler_a case: diffusers' image
    let png = image::open(&named).expect("named output").to_rgb8();
    let worst = max_pixel_difference(&png, &reference("euler_a.image").1);
    assert!(worst <= 1, "a pixel differs by {worst}");
    for numbered in ["img-7.png", "img-7-1.png"] {
        let png = image::open(dir.path().join(numbered))
            .expect(numbered)
            .to_rgb8();
        assert_eq!(png.dimensions(), (64, 64));
    }
    // line 8: where the blurred mask keeps the picture, the init image's pixels come back
    let init = sdxl_wgpu::image_io::read(format!("{FIXTURES}/init_64.png").as_ref()).expect("init");
    let mask =
        sdxl_wgpu::image_io::read_mask(format!("{FIXTURES}/mask_64.png").as_ref()).expect("mask");
    let kept = mask::overlay_mask(&mask::gaussian_blur(&mask, 4, 4));
    let png = image::open(&inpainted).expect("inpainted").to_rgb8();
    let (mut same, mut changed) = (0, 0);
    for (x, y, m) in kept.enumerate_pixels() {
        match m[0] {
            0 => {
                assert_eq!(png.get_pixel(x, y), init.get_pixel(x, y), "({x}, {y})");
                same += 1;
            }
            255 => changed += usize::from(png.get_pixel(x, y) != init.get_pixel(x, y)),
            _ => {}
        }
    }
    assert!(
        same > 1000 && changed > 100,
        "kept {same}, repainted {changed}"
    );
    let text = read_png_text(&inpainted).expect("metadata");
    assert!(text["parameters"].contains("Mask blur: 4"), "{text:?}");
    let json: serde_json::Value = serde_json::from_str(&text[JSON_KEYWORD]).expect("JSON");
    assert_eq!(json["inpaint_fill"], "fill", "{json}");
}

/// The quality policy corrects bad parameters before the model loads, says so, and `off`
/// leaves them.
#[test]
fn policy_corrections_are_printed() {
    let (code, _, err) = run(&[
        "generate",
        "--model",
        "/nonexistent.safetensors",
        "--prompt",
        "x <lora:style_kohya:1.4>",
        "--lora-dir",
        concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/lora"),
        "--width",
        "512",
        "--height",
        "512",
        "--cfg",
        "2",
        "--steps",
        "8",
    ]);
    assert_eq!(code, 2, "{err}");
    for line in [
        "quality policy (anime): width 512 -> 768",
        "quality policy (anime): height 512 -> 768",
        "quality policy (anime): cfg 2 -> 7",
        "quality policy (anime): steps 8 -> 25",
        "LoRA style_kohya UNet weight 1.4 is outside the recommended 0.5-1",
        "no such file",
    ] {
        assert!(err.contains(line), "{line}: {err}");
    }
    let (_, _, err) = run(&[
        "generate",
        "--model",
        "/nonexistent.safetensors",
        "--prompt",
        "x",
        "--width",
        "512",
        "--cfg",
        "2",
        "--policy",
        "off",
    ]);
    assert!(!err.contains("quality policy"), "{err}");
}

/// Each bad input: exit 2 with a message naming it, before the model is read.
#[test]
fn bad_inputs_are_refused_before_loading() {
    let dir = tempfile::tempdir().expect("tempdir");
    let init = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/init_64.png");
    let not_an_image = dir.path().join("notes.png");
    std::fs::write(&not_an_image, "not a png").expect("write");
    let noise = dir.path().join("noise.safetensors");
    let zeros = vec![0u8; 4 * 4 * 8 * 9];
    let view =
        safetensors::tensor::TensorView::new(safetensors::Dtype::F32, vec![1, 4, 8, 9], &zeros)
            .expect("view");
    safetensors::serialize_to_file([("noise", view)], None, &noise).expect("written");
    // a model path that does not exist: reaching the load would say "no such file"
    let model = "/nonexistent.safetensors";
    let cases: [(&[&str], &str); 19] = [
        (
            &["--width", "60"],
            "--width 60 --height 1024: both must be multiples of 8",
        ),
        (&["--width", "0"], "--width 0"),
        (&["--width", "100000"], "between 8 and 8192"),
        (&["--steps", "0"], "--steps 0"),
        (&["--cfg", "-1"], "--cfg -1"),
        (&["--batch", "0"], "--batch 0"),
        (&["--sampler", "dpm_fast"], "unknown sampler \"dpm_fast\""),
        (
            &["--sampler", "lcm", "--steps", "51"],
            "--steps 51: the number of steps must be between 1 and 50",
        ),
        (
            &["--cfg-rescale", "1.5"],
            "--cfg-rescale 1.5: the guidance rescale must be between 0 and 1",
        ),
        (
            &["--init-image", init, "--strength", "1.5"],
            "--strength 1.5",
        ),
        (
            &["--hires-denoise", "1.5"],
            "--hires-denoise 1.5: must be in (0, 1]",
        ),
        (
            &["--hires-scale", "9"],
            "--hires-scale 9: must be a finite number",
        ),
        (
            &["--init-image", init, "--hires-scale", "2"],
            "the hires pass is for txt2img",
        ),
        (
            &["--init-image", "/missing.png"],
            "/missing.png: cannot read the image",
        ),
        (
            &["--init-image", path(&not_an_image)],
            "cannot read the image",
        ),
        (
            &["--init-noise", path(&noise)],
            "--init-noise has shape [1, 4, 8, 9]",
        ),
        (
            &["--output", "out.gif"],
            "out.gif: unsupported output format",
        ),
        (
            &["--output", "/missing-folder/out.png"],
            "/missing-folder/out.png: the folder /missing-folder does not exist",
        ),
        (
            &["--dump", "/missing-folder/run.safetensors"],
            "the folder /missing-folder does not exist",
        ),
    ];
    for (extra, message) in cases {
        let mut args = vec![
            "generate", "--model", model, "--prompt", "x", "--policy", "off",
        ];
        args.extend_from_slice(extra);
        if !extra.contains(&"--width") && !extra.contains(&"--init-image") {
            args.extend_from_slice(&["--width", "64", "--height", "64"]);
        }
        let (code, _, err) = run(&args);
        assert_eq!(code, 2, "{extra:?}: {err}");
        assert!(err.contains(message), "{extra:?}: {err}");
        assert!(
            !err.contains("no such file"),
            "{extra:?} got as far as the model: {err}"
        );
    }
    let (code, _, err) = run(&[
        "generate",
        "--model",
        model,
        "--strength",
        "0.5",
        "--prompt",
        "x",
    ]);
    assert_eq!(code, 2);
    assert!(err.contains("--strength is for img2img"), "{err}");
    let (code, _, err) = run(&["generate", "--model", model]);
    assert_eq!(code, 2);
    assert!(err.contains("no prompt"), "{err}");
}

/// The img2img flags through the CLI: the `img2img_euler` case's image.
#[test]
fn img2img_writes_the_diffusers_image() {
    let dir = tempfile::tempdir().expect("tempdir");
    let output = dir.path().join("i2i.png");
    let init = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/init_64.png");
    let (code, out, err) = run(&[
        "generate",
        "--model",
        TINY,
        "--prompt",
        "a red house by a lake, oil painting",
        "--negative",
        "lowres, bad anatomy, worst quality, blurry",
        "--init-image",
        init,
        "--strength",
        "0.6",
        "--steps",
        "10",
        "--cfg",
        "6",
        "--seed",
        "3",
        "--policy",
        "off",
        "--precision",
        "f32",
        "--output",
        path(&output),
    ]);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("64x64, 10 steps Euler Automatic, cfg 6, img2img strength 0.6"),
        "{out}"
    );
    let png = image::open(&output).expect("a PNG").to_rgb8();
    let worst = max_pixel_difference(&png, &reference("img2img_euler.image").1);
    assert!(worst <= 1, "a pixel differs by {worst}");
    let chunks = read_png_text(&output).expect("text chunks");
    assert!(
        chunks["parameters"].contains("Denoising strength: 0.6"),
        "{chunks:?}"
    );
}

/// A jobs file that swaps LoRA sets between jobs (A, B, A+B, none, a corrupt file, an SD 1.5
/// LoRA, A again): the failing jobs fail with their cause, the others run; A's two runs are
/// bit-identical and equal a fresh process with only A (within the ~1e-6 that autotune's
/// timing-dependent kernel choice leaves between processes); LoRAs are in the metadata.
#[test]
fn jobs_swap_lora_sets() {
    let dir = tempfile::tempdir().expect("tempdir");
    let loras = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/lora");
    let corrupt = dir.path().join("corrupt.safetensors");
    let bytes = std::fs::read(format!("{loras}/style_kohya.safetensors")).expect("fixture");
    std::fs::write(&corrupt, &bytes[..bytes.len() - 1000]).expect("write");
    let a = format!("{loras}/style_kohya.safetensors:0.8");
    let b = format!("{loras}/detail_locon.safetensors:0.5");
    let sets: [Vec<String>; 7] = [
        vec![a.clone()],
        vec![b.clone()],
        vec![a.clone(), b.clone()],
        vec![],
        vec![path(&corrupt).to_string()],
        vec![format!("{loras}/sd15.safetensors")],
        vec![a.clone()],
    ];
    let lines: Vec<String> = sets
        .iter()
        .enumerate()
        .map(|(i, set)| {
            let job = serde_json::json!({
                "lora": set,
                "dump": dir.path().join(format!("dump-{}.safetensors", i + 1)),
            });
            job.to_string()
        })
        .collect();
    let jobs = dir.path().join("swaps.jsonl");
    std::fs::write(&jobs, lines.join("\n")).expect("jobs file");
    let common = [
        "--model",
        TINY,
        "--prompt",
        "1girl, solo",
        "--negative",
        "lowres",
        "--width",
        "64",
        "--height",
        "64",
        "--steps",
        "2",
        "--seed",
        "4",
        "--policy",
        "off",
        "--precision",
        "f32",
    ];
    let base = dir.path().join("swap.png");
    let mut args = vec!["generate", "--jobs", path(&jobs), "--output", path(&base)];
    args.extend_from_slice(&common);
    let (code, out, err) = run(&args);
    assert_eq!(code, 2, "{out}\n{err}");
    assert!(
        err.contains("line 5: LoRA") && err.contains("corrupt.safetensors"),
        "{err}"
    );
    assert!(
        err.contains("line 6: LoRA") && err.contains("SD 1.x/2.x"),
        "{err}"
    );
    assert!(err.contains("2 of 7 jobs failed"), "{err}");
    assert!(out.contains("style_kohya.safetensors: 192 UNet"), "{out}");
    let dump = |i: usize| fixture_at(&dir.path().join(format!("dump-{i}.safetensors")));
    let (first, last) = (dump(1), dump(7));
    assert_eq!(
        first["final_latents"], last["final_latents"],
        "A before and after the swaps"
    );
    assert_ne!(
        first["final_latents"],
        dump(4)["final_latents"],
        "A differs from no LoRA"
    );

    let fresh = dir.path().join("fresh.safetensors");
    let mut args = vec![
        "generate",
        "--lora",
        &a,
        "--dump",
        path(&fresh),
        "--output",
        path(&base),
    ];
    args.extend_from_slice(&common);
    let (code, _, err) = run(&args);
    assert_eq!(code, 0, "{err}");
    let err = relative_error(
        &fixture_at(&fresh)["final_latents"],
        &last["final_latents"],
        "fresh",
    );
    assert!(err <= 1e-5, "fresh process: {err:.2e}");

    let chunks = read_png_text(&dir.path().join("swap-3.png")).expect("text chunks");
    let parameters = &chunks["parameters"];
    assert!(
        parameters.starts_with("1girl, solo <lora:style_kohya:0.8> <lora:detail_locon:0.5>\n"),
        "{parameters}"
    );
    // A1111's LoRA hash: sha256 of the data after the safetensors header, 12 hex digits
    let header = u64::from_le_bytes(bytes[..8].try_into().expect("8 bytes")) as usize;
    let sha: String = Sha256::digest(&bytes[8 + header..])
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    assert!(
        parameters.contains(&format!(
            "Lora hashes: \"style_kohya: {}, detail_locon: ",
            &sha[..12]
        )),
        "{parameters}"
    );
}

/// One hostile line per class of untrusted input in a jobs file: each is refused with its line
/// number and cause before the model is touched (the model path does not exist, so reaching it
/// would say so), and the run ends with "no job to run", status 2.
#[test]
fn hostile_jobs_are_refused_line_by_line_before_the_model() {
    let dir = tempfile::tempdir().expect("tempdir");
    let jobs = dir.path().join("hostile.jsonl");
    let fifo = common::fifo(dir.path(), "fifo.png");
    let loras = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/lora");
    let job = |value: serde_json::Value| value.to_string();
    let mut lines = vec![
        job(serde_json::json!({"prompt": "x", "width": 0})),
        job(serde_json::json!({"prompt": "x", "steps": 0, "policy": "anime"})),
        job(serde_json::json!({"prompt": "x <lora:../secret:1>"})),
        job(serde_json::json!({"prompt": "x".repeat(70_000)})),
        job(serde_json::json!({"prompt": vec!["cat"; 33].join(" BREAK ")})),
        job(serde_json::json!({"prompt": "(cat:11)"})),
        job(serde_json::json!({"prompt": "x <lora:style_kohya:12>"})),
        job(serde_json::json!({"prompt": "x", "init_image": fifo})),
        job(serde_json::json!({"prompt": "x", "dump": jobs})),
    ];
    lines.push(format!("{{\"prompt\": \"{}\"}}", "a".repeat(300_000)));
    let mut bytes = lines.join("\n").into_bytes();
    bytes.extend_from_slice(b"\n\xff\xfe{}");
    std::fs::write(&jobs, bytes).expect("jobs file");
    let (code, _, err) = run(&[
        "generate",
        "--model",
        "/nonexistent.safetensors",
        "--jobs",
        path(&jobs),
        "--lora-dir",
        loras,
    ]);
    assert_eq!(code, 2, "{err}");
    let expected = [
        (1, "--width 0"),
        (2, "--steps 0"),
        (3, "a file name inside --lora-dir"),
        (4, "bytes; at most 65536 are read"),
        (5, "33 chunks"),
        (6, "outside the -10..10"),
        (7, "-10 to 10"),
        (8, "not a regular file"),
        (9, "would replace the input"),
        (10, "longer than 262144 bytes"),
        (11, "not UTF-8"),
    ];
    for (line, message) in expected {
        let at = format!("hostile.jsonl line {line}: ");
        let reported = err.lines().find(|l| l.contains(&at));
        assert!(
            reported.is_some_and(|l| l.contains(message)),
            "line {line}: {message}\n{err}"
        );
    }
    assert!(err.contains("no job to run"), "{err}");
    assert!(!err.contains("/nonexistent.safetensors"), "{err}");
}
