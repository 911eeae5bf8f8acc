//! The caches that outlive the process, so a second run does not pay kernel compilation and
//! autotuning again: one folder per environment (this build on this machine's adapters and
//! drivers) under the user's cache directory (`$XDG_CACHE_HOME/sdxl-wgpu` on Linux,
//! `~/Library/Caches/sdxl-wgpu` on macOS, `%LOCALAPPDATA%\sdxl-wgpu` on Windows;
//! `SDXL_WGPU_CACHE_DIR` overrides it). cubecl keeps its autotune results, throughput probes and
//! compiled SPIR-V there (its store, with the `persistent-cache` feature); the engine keeps its
//! self-test verdicts beside them.
//!
//! A new build, adapter or driver gets a new folder (the key hashes them), so nothing stale is
//! ever read; old folders are pruned when the root holds more than [`MAX_ENVIRONMENTS`] or
//! [`MAX_CACHE_BYTES`]. Two processes may start at once: the store is a database in WAL mode,
//! the engine's own files are replaced atomically, and pruning never touches the folder in use.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use sha2::{Digest, Sha256};

/// The environment variable that moves the cache root (for tests and shared machines).
pub const CACHE_DIR_VAR: &str = "SDXL_WGPU_CACHE_DIR";
/// Environment folders kept (the one in use and the most recently used others).
pub const MAX_ENVIRONMENTS: usize = 4;
/// The most the cache root may hold; older environments go first, the one in use last.
pub const MAX_CACHE_BYTES: u64 = 512 << 20;
/// Marks a folder as an environment of this engine, and when it was last used (its mtime).
const STAMP: &str = "last-used";

/// The cache root: `SDXL_WGPU_CACHE_DIR`, else the platform's user cache directory joined with
/// `sdxl-wgpu`; `None` where neither exists (nothing is cached then).
pub fn root() -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os(CACHE_DIR_VAR).filter(|d| !d.is_empty()) {
        return Some(PathBuf::from(dir));
    }
    use etcetera::BaseStrategy;
    let strategy = etcetera::choose_base_strategy().ok()?;
    Some(strategy.cache_dir().join("sdxl-wgpu"))
}

/// What identifies this build: the executable's build id where the platform gives one, else its
/// version, path, size and modification time.
fn build_identity() -> String {
    if let Some(id) = buildid::build_id() {
        return hex(id);
    }
    let exe = std::env::current_exe().ok();
    let meta = exe.as_deref().and_then(|p| fs::metadata(p).ok());
    format!(
        "{} {:?} {:?} {:?}",
        env!("CARGO_PKG_VERSION"),
        exe,
        meta.as_ref().map(fs::Metadata::len),
        meta.and_then(|m| m.modified().ok())
    )
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// One environment's folder: this build on the machine `identity` describes.
#[derive(Clone, Debug)]
pub struct Environment {
    pub dir: PathBuf,
}

impl Environment {
    /// The folder for this build and `identity` (the adapters and drivers, as the caller
    /// describes them) under `root`, created if new and marked as used now; other environments
    /// beyond the bounds are removed first.
    pub fn open(root: &Path, identity: &str) -> io::Result<Environment> {
        let key = Sha256::digest(format!("{}\n{identity}", build_identity()));
        let dir = root.join(&hex(&key)[..16]);
        if size(&dir) > MAX_CACHE_BYTES {
            // grown past the bound by itself: start it afresh
            let _ = fs::remove_dir_all(&dir);
        }
        fs::create_dir_all(&dir)?;
        fs::write(dir.join(STAMP), identity)?; // also its mtime: last used now
        prune(root, &dir);
        Ok(Environment { dir })
    }

    /// Reads `name` in this environment (`None`: absent or unreadable, as a cache may be).
    pub fn read(&self, name: &str) -> Option<Vec<u8>> {
        crate::files::read_limited(&self.dir.join(name), 1 << 20).ok()
    }

    /// Replaces `name` with `bytes` atomically (written beside, then renamed over): a reader in
    /// another process sees the old file or the new one, never half of one.
    pub fn write(&self, name: &str, bytes: &[u8]) -> io::Result<()> {
        let partial = self
            .dir
            .join(format!(".{name}.{}.partial", std::process::id()));
        fs::write(&partial, bytes)?;
        fs::rename(&partial, self.dir.join(name))
    }
}

/// The bytes under `path` (0 for what cannot be read).
fn size(path: &Path) -> u64 {
    let Ok(meta) = fs::symlink_metadata(path) else {
        return 0;
    };
    if !meta.is_dir() {
        return meta.len();
    }
    fs::read_dir(path).map_or(0, |entries| {
        entries.flatten().map(|e| size(&e.path())).sum()
    })
}

/// The environment folders under `root`, most recently used first: (folder, last use, bytes).
fn environments(root: &Path) -> Vec<(PathBuf, SystemTime, u64)> {
    let Ok(entries) = fs::read_dir(root) else {
        return Vec::new();
    };
    let mut found: Vec<_> = entries
        .flatten()
        .filter_map(|e| {
            let used = fs::metadata(e.path().join(STAMP)).ok()?.modified().ok()?;
            Some((e.path(), used, size(&e.path())))
        })
        .collect();
    found.sort_by_key(|(_, used, _)| std::cmp::Reverse(*used));
    found
}

/// Removes the least recently used environments other than `keep` until at most
/// [`MAX_ENVIRONMENTS`] remain within [`MAX_CACHE_BYTES`]. Failures are ignored: another process
/// may be pruning too.
fn prune(root: &Path, keep: &Path) {
    let found = environments(root);
    let mut total: u64 = found.iter().map(|(_, _, bytes)| bytes).sum();
    let mut count = found.len();
    for (dir, _, bytes) in found.iter().rev() {
        if count <= MAX_ENVIRONMENTS && total <= MAX_CACHE_BYTES {
            break;
        }
        if dir != keep && fs::remove_dir_all(dir).is_ok() {
            total -= bytes;
            count -= 1;
        }
    }
}

/// What the cache root holds.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Usage {
    pub root: PathBuf,
    pub environments: usize,
    pub bytes: u64,
}

/// The cache root's environments and size.
pub fn usage(root: &Path) -> Usage {
    let found = environments(root);
    Usage {
        root: root.to_path_buf(),
        environments: found.len(),
        bytes: found.iter().map(|(_, _, bytes)| bytes).sum(),
    }
}

/// Removes every environment under `root` (what `sdxl-wgpu cache clear` does); the bytes
/// freed. Only this engine's folders are touched, whatever else the root holds.
pub fn clear(root: &Path) -> io::Result<u64> {
    let mut freed = 0;
    for (dir, _, bytes) in environments(root) {
        fs::remove_dir_all(&dir)?;
        freed += bytes;
    }
    Ok(freed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn environments_are_kept_per_identity_and_pruned_oldest_first() {
        let root = tempfile::tempdir().unwrap();
        let first = Environment::open(root.path(), "adapter A, driver 1").unwrap();
        let again = Environment::open(root.path(), "adapter A, driver 1").unwrap();
        assert_eq!(first.dir, again.dir);
        let newer_driver = Environment::open(root.path(), "adapter A, driver 2").unwrap();
        assert_ne!(first.dir, newer_driver.dir);
        for i in 0..MAX_ENVIRONMENTS + 2 {
            std::thread::sleep(std::time::Duration::from_millis(10));
            Environment::open(root.path(), &format!("adapter {i}")).unwrap();
        }
        let left = environments(root.path());
        assert_eq!(left.len(), MAX_ENVIRONMENTS);
        assert!(!first.dir.exists(), "the least recently used went first");
        fs::write(root.path().join("not ours"), b"x").unwrap();
        assert!(clear(root.path()).is_ok());
        assert_eq!(usage(root.path()).environments, 0);
        assert!(root.path().join("not ours").exists());
    }

    #[test]
    fn files_are_replaced_whole() {
        let root = tempfile::tempdir().unwrap();
        let env = Environment::open(root.path(), "x").unwrap();
        env.write("verdicts.json", b"one").unwrap();
        env.write("verdicts.json", b"two").unwrap();
        assert_eq!(env.read("verdicts.json").unwrap(), b"two");
        assert!(env.read("absent").is_none());
    }
}
