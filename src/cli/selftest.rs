//! The self-test's processes (`doctor`, `doctor --selftest`): one child process per compiler
//! the adapter can run (`sdxl-wgpu --shader-compiler C doctor --selftest-child`), each testing
//! f16 and f32 on its own device, so a driver that crashes or hangs on one compiler fails that
//! path, named, instead of the doctor. The verdicts are recorded in the cache, where later runs
//! read them (`sdxl_wgpu::device::verdicts`).

use std::io::Read;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::say;
use sdxl_wgpu::device::{
    self, runtime, verdicts, AdapterInfo, Backend, Compiler, Language, PathVerdict, ShaderCompiler,
};
use sdxl_wgpu::doctor::{self, selftest, Check, Report};

/// How long one compiler's paths may take (a software adapter compiles every kernel of the
/// tiny model twice, f16 and f32, in a minute or two; a GPU takes seconds).
const TIMEOUT: Duration = Duration::from_secs(900);

/// Tests the adapter `backend` picks, unless verdicts of this build and driver are recorded and
/// `again` is false (then reports those), and adds a line per path to `report`.
pub fn run(backend: Backend, again: bool, report: &mut Report) -> std::io::Result<()> {
    let adapter = match device::choose(backend) {
        Ok((adapter, _)) => adapter,
        Err(e) => {
            let fix = "install a GPU driver (doctor's device lines say more)";
            return report.add(Check::fail("self-test", e.to_string(), fix));
        }
    };
    let env = runtime::configure(&adapter.identity());
    let cached = verdicts::load(env, &adapter);
    if !again && !cached.is_empty() {
        return add_all(report, doctor::selftest::checks(&cached, true));
    }
    let mut found: Vec<PathVerdict> = Vec::new();
    for request in compilers(&adapter) {
        // SPIR-V without tensor cores is a path of its own only where SPIR-V has them (or crashed)
        let spirv_had_cores = found
            .iter()
            .any(|v| v.compiler.language == Language::Spirv && v.compiler.cooperative_matrix);
        if request == ShaderCompiler::SpirvPlain && !spirv_had_cores {
            continue;
        }
        match child(backend, request) {
            Ok(verdicts) => found.extend(verdicts),
            Err(why) => found.extend(crashed(&adapter, request, &why)),
        }
    }
    if let Some(env) = env {
        if let Err(e) = verdicts::record(env, &adapter, &found) {
            eprintln!(
                "warning: cannot record the self-test's verdicts in {}: {e}",
                env.dir.display()
            );
        }
    }
    add_all(report, doctor::selftest::checks(&found, false))
}

fn add_all(report: &mut Report, checks: Vec<Check>) -> std::io::Result<()> {
    checks.into_iter().try_for_each(|c| report.add(c))
}

/// The compilers to test on `adapter`: every one a Vulkan GPU can run, best first; elsewhere
/// the one it runs.
fn compilers(adapter: &AdapterInfo) -> Vec<ShaderCompiler> {
    let vulkan_gpu = adapter.api == "Vulkan" && !adapter.is_software();
    if vulkan_gpu && cfg!(not(target_os = "macos")) {
        vec![
            ShaderCompiler::Spirv,
            ShaderCompiler::SpirvPlain,
            ShaderCompiler::Wgsl,
        ]
    } else {
        vec![ShaderCompiler::Auto]
    }
}

/// Failed verdicts for every precision of a compiler whose process did not report.
fn crashed(adapter: &AdapterInfo, request: ShaderCompiler, why: &str) -> Vec<PathVerdict> {
    let compiler = match request {
        ShaderCompiler::Spirv => Compiler {
            language: Language::Spirv,
            cooperative_matrix: true,
        },
        ShaderCompiler::SpirvPlain => Compiler {
            language: Language::Spirv,
            cooperative_matrix: false,
        },
        ShaderCompiler::Wgsl | ShaderCompiler::Auto => Compiler {
            language: Language::Wgsl,
            cooperative_matrix: false,
        },
    };
    let precisions: &[bool] = if adapter.shader_f16 {
        &[true, false]
    } else {
        &[false]
    };
    precisions
        .iter()
        .map(|&f16| PathVerdict {
            compiler,
            f16,
            passed: false,
            error: f32::INFINITY,
            limit: if f16 {
                selftest::LIMIT_F16
            } else {
                selftest::LIMIT_F32
            },
            detail: format!("its process failed: {why}"),
        })
        .collect()
}

/// Runs one compiler's paths in a child process: its verdicts, or how the process failed.
fn child(backend: Backend, request: ShaderCompiler) -> Result<Vec<PathVerdict>, String> {
    let exe = std::env::current_exe().map_err(|e| format!("cannot find this program: {e}"))?;
    let mut process = Command::new(exe)
        .args(["--quiet", "--shader-compiler", &request.to_string()])
        .args([
            "doctor",
            "--backend",
            &backend.to_string(),
            "--selftest-child",
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot start: {e}"))?;
    let drain = |pipe: Option<Box<dyn Read + Send>>| {
        std::thread::spawn(move || {
            let mut text = String::new();
            if let Some(mut pipe) = pipe {
                let _ = pipe.read_to_string(&mut text);
            }
            text
        })
    };
    let stdout = drain(process.stdout.take().map(|p| Box::new(p) as _));
    let stderr = drain(process.stderr.take().map(|p| Box::new(p) as _));
    let started = Instant::now();
    let status = loop {
        match process.try_wait().map_err(|e| e.to_string())? {
            Some(status) => break status,
            None if started.elapsed() > TIMEOUT => {
                let _ = process.kill();
                let _ = process.wait();
                return Err(format!("no answer in {} s: stopped", TIMEOUT.as_secs()));
            }
            None => std::thread::sleep(Duration::from_millis(50)),
        }
    };
    let (out, err) = (
        stdout.join().unwrap_or_default(),
        stderr.join().unwrap_or_default(),
    );
    let last_words = err.lines().last().unwrap_or("").trim().to_string();
    if !status.success() {
        return Err(format!("{status}; {last_words}"));
    }
    serde_json::from_str(out.trim()).map_err(|e| format!("unreadable report ({e}); {last_words}"))
}

/// The child's side: the paths of this process's device (the global `--shader-compiler`), as
/// JSON on stdout.
pub fn child_paths(backend: Backend) -> anyhow::Result<()> {
    let gpu = super::gpu::open(backend)?;
    let verdicts = doctor::selftest::run(&gpu);
    say!("{}", serde_json::to_string(&verdicts)?)?;
    Ok(())
}
