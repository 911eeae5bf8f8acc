//! What a generated PNG says about itself: A1111's `parameters` text (the "infotext" that A1111,
//! Civitai and most image browsers parse) and a JSON chunk with the whole request, plus A1111's
//! short model hash, cached so a 7 GB checkpoint is hashed once.
//!
//! Infotext layout, as A1111's `create_infotext` writes it
//! (<https://github.com/AUTOMATIC1111/stable-diffusion-webui/blob/v1.10.1/modules/processing.py>):
//! the prompt, a `Negative prompt: ...` line when there is one, then `Key: value` pairs joined
//! by `, ` with values that hold `,`, `:` or a newline JSON-quoted.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::UNIX_EPOCH;

use image::RgbImage;
use sha2::{Digest, Sha256};

/// The text chunks of a generated PNG.
#[derive(Clone, Debug, PartialEq)]
pub struct ImageMetadata {
    /// A1111's infotext (keyword `parameters`).
    pub parameters: String,
    /// The full request as JSON (keyword `sdxl-wgpu`).
    pub json: String,
}

/// PNG keyword of the JSON chunk.
pub const JSON_KEYWORD: &str = "sdxl-wgpu";

/// The infotext fields of one image, in A1111's order.
#[derive(Clone, Debug, Default)]
pub struct Infotext {
    pub prompt: String,
    pub negative: String,
    /// `(key, value)` pairs after the prompts, values unquoted.
    pub fields: Vec<(String, String)>,
}

/// A1111's `parameters` text for `info`.
pub fn parameters(info: &Infotext) -> String {
    let mut text = info.prompt.clone();
    if !info.negative.is_empty() {
        text.push_str("\nNegative prompt: ");
        text.push_str(&info.negative);
    }
    let fields: Vec<String> = info
        .fields
        .iter()
        .map(|(k, v)| format!("{k}: {}", quote(v)))
        .collect();
    text.push('\n');
    text.push_str(&fields.join(", "));
    text
}

/// A1111's `quote`: JSON-quoted when the value would break the `k: v, k: v` line.
fn quote(value: &str) -> String {
    if value.contains([',', ':', '\n']) {
        serde_json::to_string(value).expect("a string serialises")
    } else {
        value.to_string()
    }
}

/// Encodes `image` as an 8-bit RGB PNG with `metadata`'s chunks: `tEXt` where the text is
/// Latin-1 (what PNG's `tEXt` allows), `iTXt` (UTF-8) otherwise, as Pillow does.
pub fn write_png(
    image: &RgbImage,
    out: impl Write,
    metadata: Option<&ImageMetadata>,
) -> Result<(), png::EncodingError> {
    let mut encoder = png::Encoder::new(out, image.width(), image.height());
    encoder.set_color(png::ColorType::Rgb);
    encoder.set_depth(png::BitDepth::Eight);
    if let Some(m) = metadata {
        for (keyword, text) in [("parameters", &m.parameters), (JSON_KEYWORD, &m.json)] {
            if text.chars().all(|c| u32::from(c) <= 0xff) {
                encoder.add_text_chunk(keyword.to_string(), text.clone())?;
            } else {
                encoder.add_itxt_chunk(keyword.to_string(), text.clone())?;
            }
        }
    }
    let mut writer = encoder.write_header()?;
    writer.write_image_data(image.as_raw())?;
    writer.finish()
}

/// The text chunks of a PNG file, keyword -> text (`tEXt`, `zTXt` and `iTXt`).
pub fn read_png_text(path: &Path) -> std::io::Result<BTreeMap<String, String>> {
    let file = std::io::BufReader::new(std::fs::File::open(path)?);
    let mut reader = png::Decoder::new(file)
        .read_info()
        .map_err(std::io::Error::other)?;
    // text chunks after the image data are read with the frame
    let mut buffer = vec![0; reader.output_buffer_size().unwrap_or(0)];
    reader
        .next_frame(&mut buffer)
        .map_err(std::io::Error::other)?;
    reader.finish().map_err(std::io::Error::other)?;
    let info = reader.info();
    let mut chunks = BTreeMap::new();
    for t in &info.uncompressed_latin1_text {
        chunks.insert(t.keyword.clone(), t.text.clone());
    }
    for t in &info.compressed_latin1_text {
        if let Ok(text) = t.get_text() {
            chunks.insert(t.keyword.clone(), text);
        }
    }
    for t in &info.utf8_text {
        if let Ok(text) = t.get_text() {
            chunks.insert(t.keyword.clone(), text);
        }
    }
    Ok(chunks)
}

/// A1111's short model hash: the first 10 hex digits of the file's sha256 ("AutoV2" on
/// Civitai). Cached by path, size and modification time in `cache_dir()`, so each file is read
/// once; a cache that cannot be read or written only costs the hashing again.
pub fn model_hash(path: &Path) -> std::io::Result<String> {
    short_sha256(path, Hashed::WholeFile, cache_dir().as_deref())
}

/// A1111's LoRA hash ("AutoV3" on Civitai, what `Lora hashes` lists): the first 12 hex digits
/// of the sha256 of a safetensors file's data, after its header. Cached like [`model_hash`].
pub fn lora_hash(path: &Path) -> std::io::Result<String> {
    short_sha256(path, Hashed::SafetensorsData, cache_dir().as_deref())
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
    let key = format!("{kind}{}|{}|{modified}", canonical.display(), meta.len());
    let mut cache: BTreeMap<String, String> = cache_file
        .and_then(|f| std::fs::read(f).ok())
        .and_then(|bytes| serde_json::from_slice(&bytes).ok())
        .unwrap_or_default();
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

fn sha256_file(path: &Path, what: Hashed) -> std::io::Result<String> {
    let mut file = std::fs::File::open(path)?;
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
    Ok(hasher
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect())
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

/// Where the engine caches what it computed once: `$SDXL_WGPU_CACHE_DIR`, else
/// `$XDG_CACHE_HOME/sdxl-wgpu`, else `~/.cache/sdxl-wgpu`.
pub fn cache_dir() -> Option<PathBuf> {
    let var = |name: &str| std::env::var_os(name).filter(|v| !v.is_empty());
    var("SDXL_WGPU_CACHE_DIR")
        .map(PathBuf::from)
        .or_else(|| var("XDG_CACHE_HOME").map(|d| PathBuf::from(d).join("sdxl-wgpu")))
        .or_else(|| var("HOME").map(|d| PathBuf::from(d).join(".cache/sdxl-wgpu")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn infotext_quotes_like_a1111() {
        let info = Infotext {
            prompt: "1girl, solo".into(),
            negative: "lowres".into(),
            fields: vec![
                ("Steps".into(), "25".into()),
                ("Sampler".into(), "DPM++ 2M".into()),
                ("Quality policy".into(), "cfg 2 -> 7, steps 8 -> 25".into()),
                ("Version".into(), "sdxl-wgpu 0.1.0".into()),
            ],
        };
        assert_eq!(
            parameters(&info),
            "1girl, solo\nNegative prompt: lowres\nSteps: 25, Sampler: DPM++ 2M, \
             Quality policy: \"cfg 2 -> 7, steps 8 -> 25\", Version: sdxl-wgpu 0.1.0"
        );
        let no_negative = Infotext {
            negative: String::new(),
            ..info
        };
        assert!(!parameters(&no_negative).contains("Negative prompt"));
    }

    #[test]
    fn png_chunks_round_trip_latin1_and_utf8() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("a.png");
        let image = RgbImage::from_pixel(3, 2, image::Rgb([10, 20, 30]));
        let metadata = ImageMetadata {
            parameters: "café, 猫\nSteps: 20".into(),
            json: "{\"prompt\": \"café\"}".into(),
        };
        let file = std::fs::File::create(&path).expect("create");
        write_png(&image, file, Some(&metadata)).expect("writes");
        let chunks = read_png_text(&path).expect("reads");
        assert_eq!(chunks["parameters"], metadata.parameters);
        assert_eq!(chunks[JSON_KEYWORD], metadata.json);
        assert_eq!(image::open(&path).expect("decodes").to_rgb8(), image);
    }

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
}
