//! A1111's hashes of the files an image was made with, as its infotext records them: the short
//! model hash ("AutoV2") and the LoRA hash ("AutoV3"). Cached by path, size and modification
//! time in the engine's cache root (`crate::cache::root`), so a 7 GB checkpoint is hashed once.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::UNIX_EPOCH;

use sha2::{Digest, Sha256};

use crate::files;

/// The largest hash cache read; a larger (or unreadable, or corrupt) one counts as empty and is
/// rewritten. At ~150 bytes an entry this is ~100,000 files.
const MAX_CACHE_BYTES: u64 = 16 << 20;

/// A1111's short model hash: the first 10 hex digits of the file's sha256 ("AutoV2" on
/// Civitai). Cached by path, size and modification time in the cache root, so each file is read
/// once; a cache that cannot be read or written only costs the hashing again.
pub fn model_hash(path: &Path) -> std::io::Result<String> {
    short_sha256(path, Hashed::WholeFile, crate::cache::root().as_deref())
}

/// A1111's LoRA hash ("AutoV3" on Civitai, what `Lora hashes` lists): the first 12 hex digits
/// of the sha256 of a safetensors file's data, after its header. Cached like [`model_hash`].
pub fn lora_hash(path: &Path) -> std::io::Result<String> {
    short_sha256(
        path,
        Hashed::SafetensorsData,
        crate::cache::root().as_deref(),
    )
}

/// What of a file is hashed, and how many hex digits A1111 keeps of it.
#[derive(Clone, Copy)]
enum Hashed {
    WholeFile,
    /// Everything after the 8-byte length and the JSON header.
    SafetensorsData,
}

impl Hashed {
    fn digits(self) -> usize {
        match self {
            Hashed::WholeFile => 10,
            Hashed::SafetensorsData => 12,
        }
    }
}

fn short_sha256(path: &Path, what: Hashed, cache: Option<&Path>) -> std::io::Result<String> {
    let cache_file = cache.map(|d| d.join("model-hashes.json"));
    let sha = cached_sha256(path, what, cache_file.as_deref())?;
    Ok(sha.chars().take(what.digits()).collect())
}

fn cached_sha256(path: &Path, what: Hashed, cache_file: Option<&Path>) -> std::io::Result<String> {
    let key = cache_key(path, what)?;
    let mut cache = read_cache(cache_file);
    let sha = match cache.get(&key) {
        Some(sha) => sha.clone(),
        None => {
            let sha = sha256_file(path, what)?;
            cache.insert(key, sha.clone());
            if let Some(file) = cache_file {
                let _ = store(file, &cache);
            }
            sha
        }
    };
    Ok(sha)
}

/// Each file's whole sha256 (hex) where the cache already holds it: a listing of many big files
/// never reads them (and reads the cache once).
pub fn cached_model_sha256s(paths: &[&Path]) -> Vec<Option<String>> {
    let cache_file = crate::cache::root().map(|d| d.join("model-hashes.json"));
    let cache = read_cache(cache_file.as_deref());
    paths
        .iter()
        .map(|path| {
            let key = cache_key(path, Hashed::WholeFile).ok()?;
            cache.get(&key).cloned()
        })
        .collect()
}

/// The cache's key of `path`: what is hashed, the canonical path, the size and the
/// modification time.
fn cache_key(path: &Path, what: Hashed) -> std::io::Result<String> {
    let meta = std::fs::metadata(path)?;
    let canonical = std::fs::canonicalize(path)?;
    let modified = meta
        .modified()
        .ok()
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_nanos());
    let kind = match what {
        Hashed::WholeFile => "",
        Hashed::SafetensorsData => "data|",
    };
    Ok(format!(
        "{kind}{}|{}|{modified}",
        canonical.display(),
        meta.len()
    ))
}

fn read_cache(cache_file: Option<&Path>) -> BTreeMap<String, String> {
    cache_file
        .and_then(|f| files::read_limited(f, MAX_CACHE_BYTES).ok())
        .and_then(|bytes| serde_json::from_slice(&bytes).ok())
        .unwrap_or_default()
}

fn sha256_file(path: &Path, what: Hashed) -> std::io::Result<String> {
    let mut file = files::open_regular(path)?;
    if let Hashed::SafetensorsData = what {
        let mut len = [0u8; 8];
        file.read_exact(&mut len)?;
        std::io::copy(
            &mut (&mut file).take(u64::from_le_bytes(len)),
            &mut std::io::sink(),
        )?;
    }
    let mut hasher = Sha256::new();
    let mut buffer = vec![0u8; 1 << 20];
    loop {
        let n = file.read(&mut buffer)?;
        if n == 0 {
            break;
        }
        hasher.update(&buffer[..n]);
    }
    Ok(hex(&hasher.finalize()))
}

/// Bytes as lower-case hex, two digits each.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn store(file: &Path, cache: &BTreeMap<String, String>) -> std::io::Result<()> {
    if let Some(dir) = file.parent() {
        std::fs::create_dir_all(dir)?;
    }
    // write then rename, so a concurrent reader never sees half a file; the temporary name is
    // unique per process and call, so concurrent writers never share one
    static WRITES: AtomicU64 = AtomicU64::new(0);
    let n = WRITES.fetch_add(1, Ordering::Relaxed);
    let tmp = file.with_extension(format!("json.{}.{n}", std::process::id()));
    std::fs::write(
        &tmp,
        serde_json::to_vec_pretty(cache).map_err(std::io::Error::other)?,
    )?;
    std::fs::rename(tmp, file)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn model_hash_is_a1111s_and_cached() {
        let dir = tempfile::tempdir().expect("tempdir");
        let cache_dir = dir.path().join("cache");
        let hash = |path: &Path| short_sha256(path, Hashed::WholeFile, Some(&cache_dir));
        let path = dir.path().join("model.safetensors");
        std::fs::write(&path, b"hello").expect("write");
        // sha256("hello") = 2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824
        assert_eq!(hash(&path).expect("hash"), "2cf24dba5f");
        let cache =
            std::fs::read_to_string(cache_dir.join("model-hashes.json")).expect("cache written");
        assert!(cache.contains("2cf24dba5fb0a30e"), "{cache}");
        // the second call reads the cache, not the file
        let planted = cache.replace("2cf24dba5fb0a30e", "0123456789abcdef");
        std::fs::write(cache_dir.join("model-hashes.json"), planted).expect("write");
        assert_eq!(hash(&path).expect("cached"), "0123456789");
    }

    /// A corrupt cache, a huge one (a sparse file: nothing of it is read) or a folder in its
    /// place counts as empty: the hash is computed, and the cache rewritten where it can be.
    #[test]
    fn a_bad_cache_costs_a_rehash_not_an_error() {
        let dir = tempfile::tempdir().expect("tempdir");
        let cache_dir = dir.path().join("cache");
        std::fs::create_dir(&cache_dir).expect("mkdir");
        let cache = cache_dir.join("model-hashes.json");
        let path = dir.path().join("model.safetensors");
        std::fs::write(&path, b"hello").expect("write");
        let hash = || short_sha256(&path, Hashed::WholeFile, Some(&cache_dir));
        std::fs::write(&cache, b"{ not json").expect("write");
        assert_eq!(hash().expect("hash"), "2cf24dba5f");
        let huge = std::fs::File::create(&cache).expect("create");
        huge.set_len(MAX_CACHE_BYTES + 1).expect("sparse");
        drop(huge);
        assert_eq!(hash().expect("hash"), "2cf24dba5f");
        assert!(std::fs::metadata(&cache).expect("rewritten").len() < 1000);
        std::fs::remove_file(&cache).expect("rm");
        std::fs::create_dir(&cache).expect("a folder where the cache goes");
        assert_eq!(hash().expect("hash"), "2cf24dba5f");
    }
}
