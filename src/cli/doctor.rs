//! `sdxl-wgpu doctor`: runs the library's diagnostics (`sdxl_wgpu::doctor`) and prints one line
//! per check, or JSON. Exit 0 when nothing fails, 1 otherwise. The numerical self-test runs one
//! child process per compiler of the adapter (`selftest`), so a driver that crashes on one fails
//! that path instead of the doctor.

use std::path::PathBuf;

use clap::Args;

use super::job::parse_lora_arg;
use super::say;
use super::selftest;
use super::values::spelled;
use sdxl_wgpu::device::{Backend, Precision};
use sdxl_wgpu::doctor::{self, Check, Report, Status};

#[derive(Args, Debug)]
pub struct DoctorArgs {
    /// A checkpoint to check: verdict, NaN/Inf scan, load, a short generation.
    #[arg(long)]
    model: Option<PathBuf>,
    /// A LoRA file to check against --model: `PATH[:UNET_WEIGHT[:TE_WEIGHT]]`. Repeatable.
    #[arg(long = "lora", value_name = "PATH[:W[:TE_W]]")]
    lora: Vec<String>,
    #[arg(long, value_parser = spelled::<Backend>(), default_value_t = Backend::Auto)]
    backend: Backend,
    /// The precision the checkpoint is loaded and run in.
    #[arg(long, value_parser = spelled::<Precision>(), default_value_t = Precision::Auto)]
    precision: Precision,
    /// Print the checks as one JSON document instead of lines.
    #[arg(long)]
    json: bool,
    /// Only the numerical self-test: the built-in tiny model on each compiler x precision of
    /// the adapter against diffusers' outputs, run again and remembered for later runs.
    #[arg(long, conflicts_with_all = ["model", "lora", "no_selftest"])]
    selftest: bool,
    /// Leave out the self-test (doctor runs it when this build and driver have no verdicts).
    #[arg(long)]
    no_selftest: bool,
    /// Run the self-test's paths on this process's device and print their verdicts as JSON (what
    /// `doctor` starts one child process per compiler with).
    #[arg(long, hide = true)]
    selftest_child: bool,
}

/// The command's failure when a check failed (exit status 1: the report says which).
#[derive(Debug, thiserror::Error)]
#[error("{failed} of {total} checks failed")]
pub struct ChecksFailed {
    failed: usize,
    total: usize,
}

pub fn run(args: DoctorArgs) -> anyhow::Result<()> {
    if args.selftest_child {
        return selftest::child_paths(args.backend);
    }
    let loras = args
        .lora
        .iter()
        .map(|arg| parse_lora_arg(arg))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let json = args.json;
    let mut report = Report::new(|check: &Check| if json { Ok(()) } else { print(check) });
    if args.selftest {
        selftest::run(args.backend, true, &mut report)?;
        return finish(json, &report);
    }
    let gpu = doctor::device(args.backend, super::global().shader_compiler, &mut report)?;
    doctor::policy(&mut report)?;
    doctor::check_cache(&mut report)?;
    if gpu.is_some() && !args.no_selftest {
        selftest::run(args.backend, false, &mut report)?;
    }
    match &args.model {
        Some(path) => doctor::model(path, gpu, args.precision, &loras, &mut report)?,
        None if !loras.is_empty() => report.add(Check::fail(
            "LoRA",
            "a LoRA is checked against a checkpoint",
            "add --model CHECKPOINT",
        ))?,
        None => doctor::check_memory_release(gpu.as_ref(), &mut report)?,
    }
    finish(json, &report)
}

/// Prints the JSON document if asked; fails when a check failed.
fn finish(json: bool, report: &Report) -> anyhow::Result<()> {
    if json {
        let document = serde_json::json!({
            "passed": report.failed() == 0,
            "checks": report.checks,
        });
        say!("{}", serde_json::to_string_pretty(&document)?)?;
    }
    match report.failed() {
        0 => Ok(()),
        failed => Err(ChecksFailed {
            failed,
            total: report.checks.len(),
        }
        .into()),
    }
}

/// `pass  name: detail`, with the fix after a warning or failure.
fn print(check: &Check) -> std::io::Result<()> {
    let status = match check.status {
        Status::Pass => "pass",
        Status::Warn => "warn",
        Status::Fail => "FAIL",
    };
    let fix = check
        .fix
        .as_ref()
        .map_or(String::new(), |f| format!(" (fix: {f})"));
    say!("{status}  {}: {}{fix}", check.check, check.detail)
}
