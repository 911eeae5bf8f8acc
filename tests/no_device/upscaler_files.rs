//! Upscaler files read without a device: every layout of `tests/fixtures/upscalers/` detected
//! from names and shapes as spandrel detects it, the restricted pickle reader refusing a `.pth`
//! that names any other global (and the pre-1.6 format), files that are no upscaler named for
//! what they are, and damaged `.pth` files ending in errors, never panics.

use sdxl_wgpu::upscaler::{inspect, Arch, UpscalerError};
use sdxl_wgpu::weights::WeightError;

const DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/upscalers");

fn path(name: &str) -> std::path::PathBuf {
    format!("{DIR}/{name}").into()
}

#[test]
fn every_layout_is_detected_from_its_shapes() {
    let rrdb = |unshuffle| Arch::Rrdb {
        width: 8,
        blocks: 1,
        stages: 2,
        unshuffle,
    };
    let cases = [
        ("rrdb_old_x4.safetensors", rrdb(1), 4),
        ("rrdb_new_x4.pth", rrdb(1), 4),
        ("rrdb_x2_unshuffle.pth", rrdb(2), 2),
        ("compact_x4.pth", Arch::Compact { width: 8, convs: 2 }, 4),
    ];
    for (file, arch, scale) in cases {
        let info = inspect(&path(file)).expect(file);
        assert_eq!((info.arch, info.scale), (arch, scale), "{file}");
        assert_eq!((info.in_channels, info.out_channels), (3, 3), "{file}");
    }
}

#[test]
fn a_pth_naming_another_global_or_in_the_legacy_format_is_refused() {
    let err = inspect(&path("not_allowed.pth"))
        .expect_err("refused")
        .to_string();
    assert!(
        err.contains("`posix.system`") && err.contains("refused"),
        "{err}"
    );
    let err = inspect(&path("legacy.pth"))
        .expect_err("refused")
        .to_string();
    assert!(err.contains("legacy (pre-1.6) format"), "{err}");
}

#[test]
fn a_file_that_is_no_upscaler_says_what_it_is() {
    let tiny = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/tiny-sdxl.safetensors"
    );
    match inspect(tiny.as_ref()) {
        Err(UpscalerError::NotAnUpscaler { what, .. }) => {
            assert!(what.starts_with("a diffusion model"), "{what}")
        }
        other => panic!("{other:?}"),
    }
}

/// `archive` with member `name` replaced by `bytes` (stored, as torch writes).
fn with_member(archive: &[u8], name: &str, bytes: &[u8]) -> Vec<u8> {
    use std::io::{Read, Write};
    let mut reader = zip::ZipArchive::new(std::io::Cursor::new(archive)).expect("zip");
    let mut out = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let stored =
        zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored);
    for i in 0..reader.len() {
        let mut entry = reader.by_index(i).unwrap();
        let member = entry.name().to_string();
        let mut data = Vec::new();
        entry.read_to_end(&mut data).unwrap();
        out.start_file(member.as_str(), stored).unwrap();
        out.write_all(if member == name { bytes } else { &data })
            .unwrap();
    }
    out.finish().unwrap().into_inner()
}

/// Every byte of a small `.pth`'s pickle changed in turn (the archive rebuilt around it, so
/// the change reaches the pickle reader), and bytes of its zip directory: each read ends in a
/// result or an error.
#[test]
fn damaged_pth_files_are_errors_not_panics() {
    use std::io::Read;
    let bytes = std::fs::read(path("compact_x4.pth")).expect("fixture");
    let mut archive = zip::ZipArchive::new(std::io::Cursor::new(&bytes)).expect("zip");
    let mut pickle = Vec::new();
    archive
        .by_name("compact_x4/data.pkl")
        .expect("pickle")
        .read_to_end(&mut pickle)
        .unwrap();
    let dir = std::env::temp_dir().join(format!("sdxl-wgpu-pth-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("damaged.pth");
    let (mut errors, mut reads) = (0, 0);
    let mut check = |damaged: &[u8], what: String| {
        std::fs::write(&file, damaged).unwrap();
        match inspect(&file) {
            Ok(_) => reads += 1,
            Err(UpscalerError::Weights(WeightError::Io { .. })) => panic!("{what}: an I/O error"),
            Err(_) => errors += 1,
        }
    };
    for at in 0..pickle.len() {
        let mut damaged = pickle.clone();
        damaged[at] ^= [0xff, 0x01, 0x80][at % 3];
        check(
            &with_member(&bytes, "compact_x4/data.pkl", &damaged),
            format!("pickle byte {at}"),
        );
        check(
            &with_member(&bytes, "compact_x4/data.pkl", &pickle[..at]),
            format!("pickle cut at {at}"),
        );
    }
    for at in bytes.len().saturating_sub(400)..bytes.len() {
        let mut damaged = bytes.clone();
        damaged[at] ^= 0xff;
        check(&damaged, format!("archive byte {at}"));
    }
    std::fs::remove_dir_all(&dir).ok();
    assert!(errors > 500 && reads > 0, "{errors} errors, {reads} reads");
}
