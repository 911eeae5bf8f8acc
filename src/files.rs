//! Opening the files users name (checkpoints, LoRA files, images, tensors, jobs, caches): regular
//! files only, because opening a FIFO for reading blocks until a writer comes and a device never
//! ends; whole-file reads capped, so a file that is larger than it should be costs a message,
//! not memory; and a check that an output would not overwrite one of the run's inputs.

use std::fs::File;
use std::io::{self, Read};
use std::path::{Path, PathBuf};

/// `path` opened for reading, if it is a regular file (links followed). Anything else (a folder,
/// a FIFO, a socket, a device) is an `InvalidInput` error, decided before opening.
pub fn open_regular(path: &Path) -> io::Result<File> {
    let meta = std::fs::metadata(path)?;
    if !meta.is_file() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "not a regular file (a folder, FIFO or device)",
        ));
    }
    File::open(path)
}

/// The whole of the regular file `path`, if it holds at most `max` bytes; a larger one is an
/// `InvalidData` error, found without reading it.
pub fn read_limited(path: &Path, max: u64) -> io::Result<Vec<u8>> {
    let file = open_regular(path)?;
    let len = file.metadata()?.len();
    if len > max {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("{len} bytes, more than the {max} read from such a file"),
        ));
    }
    let mut bytes = Vec::with_capacity(len as usize);
    // a file that grows while read still stops at the cap
    file.take(max + 1).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > max {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("more than the {max} bytes read from such a file"),
        ));
    }
    Ok(bytes)
}

/// Where `path` is or would be: its folder resolved (links, `..`) and its file name, so a path
/// that does not exist yet compares equal to an existing one it would replace.
fn resolved(path: &Path) -> Option<PathBuf> {
    if let Ok(real) = std::fs::canonicalize(path) {
        return Some(real);
    }
    let name = path.file_name()?;
    let folder = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    Some(std::fs::canonicalize(folder).ok()?.join(name))
}

/// Whether writing `output` would replace one of `inputs` (the same file under any spelling,
/// or a file inside an input folder such as a diffusers model).
pub fn overwrites(output: &Path, inputs: &[&Path]) -> Option<PathBuf> {
    let out = resolved(output)?;
    inputs.iter().find_map(|input| {
        let input = resolved(input)?;
        (out == input || out.starts_with(&input)).then_some(input)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_regular_files_open() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("a.txt");
        std::fs::write(&file, b"abc").expect("write");
        assert!(open_regular(&file).is_ok());
        let folder = open_regular(dir.path()).expect_err("a folder");
        assert_eq!(folder.kind(), io::ErrorKind::InvalidInput);
        assert_eq!(
            open_regular(&dir.path().join("missing"))
                .unwrap_err()
                .kind(),
            io::ErrorKind::NotFound
        );
        assert_eq!(read_limited(&file, 3).expect("fits"), b"abc");
        let big = read_limited(&file, 2).expect_err("over the cap");
        assert_eq!(big.kind(), io::ErrorKind::InvalidData);
    }

    #[cfg(unix)]
    #[test]
    fn a_fifo_is_refused_without_blocking() {
        let dir = tempfile::tempdir().expect("tempdir");
        let fifo = dir.path().join("pipe");
        let made = std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .expect("mkfifo (coreutils)");
        assert!(made.success());
        let err = open_regular(&fifo).expect_err("a FIFO");
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
    }

    #[test]
    fn outputs_that_would_replace_an_input() {
        let dir = tempfile::tempdir().expect("tempdir");
        let model = dir.path().join("model.safetensors");
        std::fs::write(&model, b"x").expect("write");
        let folder = dir.path().join("diffusers");
        std::fs::create_dir(&folder).expect("mkdir");
        let inputs = [model.as_path(), folder.as_path()];
        let spelled_again = dir.path().join("sub/../model.safetensors");
        std::fs::create_dir(dir.path().join("sub")).expect("mkdir");
        assert!(overwrites(&spelled_again, &inputs).is_some());
        assert!(overwrites(&folder.join("unet.png"), &inputs).is_some());
        assert!(overwrites(&dir.path().join("out.png"), &inputs).is_none());
    }
}
