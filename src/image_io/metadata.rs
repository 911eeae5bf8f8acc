//! What a generated PNG says about itself: A1111's `parameters` text (the "infotext" that A1111,
//! Civitai and most image browsers parse) and a JSON chunk with the whole request.
//!
//! Infotext layout, as A1111's `create_infotext` writes it
//! (<https://github.com/AUTOMATIC1111/stable-diffusion-webui/blob/v1.10.1/modules/processing.py>):
//! the prompt, a `Negative prompt: ...` line when there is one, then `Key: value` pairs joined
//! by `, ` with values that hold `,`, `:` or a newline JSON-quoted.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;

use image::RgbImage;

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
    text.push('\n');
    text.push_str(&fields_line(&info.fields));
    text
}

/// A1111's line of fields: `key: value` joined by `, ` (a value equal to its key stands alone),
/// each value quoted by [`quote`] (`create_infotext`, `run_postprocessing`).
pub fn fields_line(fields: &[(String, String)]) -> String {
    let fields: Vec<String> = fields
        .iter()
        .map(|(k, v)| match k == v {
            true => k.clone(),
            false => format!("{k}: {}", quote(v)),
        })
        .collect();
    fields.join(", ")
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
///
/// Compressed with `fdeflate` (`Compression::Fast`): on a 1024x1024 photograph 14 ms and
/// 1,520 KiB, against 459 ms and 1,515 KiB at the crate's default level; a server pays this per
/// image, and the GPU waits for it.
pub fn write_png(
    image: &RgbImage,
    out: impl Write,
    metadata: Option<&ImageMetadata>,
) -> Result<(), png::EncodingError> {
    let chunks = match metadata {
        Some(m) => vec![
            ("parameters", m.parameters.as_str()),
            (JSON_KEYWORD, &m.json),
        ],
        None => Vec::new(),
    };
    write_png_with_text(image, out, &chunks)
}

/// [`write_png`] with any text chunks, `(keyword, text)` in order (what Pillow writes for an
/// image's `info`).
pub fn write_png_with_text(
    image: &RgbImage,
    out: impl Write,
    chunks: &[(&str, &str)],
) -> Result<(), png::EncodingError> {
    let mut encoder = png::Encoder::new(out, image.width(), image.height());
    encoder.set_color(png::ColorType::Rgb);
    encoder.set_depth(png::BitDepth::Eight);
    encoder.set_compression(png::Compression::Fast);
    for (keyword, text) in chunks {
        if text.chars().all(|c| u32::from(c) <= 0xff) {
            encoder.add_text_chunk(keyword.to_string(), text.to_string())?;
        } else {
            encoder.add_itxt_chunk(keyword.to_string(), text.to_string())?;
        }
    }
    let mut writer = encoder.write_header()?;
    writer.write_image_data(image.as_raw())?;
    writer.finish()
}

/// The text chunks of a PNG file, keyword -> text (`tEXt`, `zTXt` and `iTXt`), at most
/// [`MAX_TEXT_BYTES`] of it.
pub fn read_png_text(path: &Path) -> std::io::Result<BTreeMap<String, String>> {
    let file = std::io::BufReader::new(std::fs::File::open(path)?);
    png_text_of(file)
}

/// The text chunks of a PNG held in memory.
pub fn png_text(bytes: &[u8]) -> std::io::Result<BTreeMap<String, String>> {
    png_text_of(std::io::Cursor::new(bytes))
}

/// The most text a PNG's text chunks may hold, all together and inflated: an infotext is a few
/// KiB; a file claiming more is refused rather than inflated.
pub const MAX_TEXT_BYTES: usize = 4 << 20;

const PNG_SIGNATURE: [u8; 8] = [0x89, b'P', b'N', b'G', 0x0d, 0x0a, 0x1a, 0x0a];

/// Whether `bytes` start as a PNG file does.
pub fn is_png(bytes: &[u8]) -> bool {
    bytes.starts_with(&PNG_SIGNATURE)
}

/// The text chunks, read by walking the file's chunks (length, type, data, CRC;
/// <https://www.w3.org/TR/png-3/#5Chunk-layout>) without decoding a pixel. Written here because
/// the png crate reaches text stored after the image data only by decoding the whole frame (256
/// MiB for an 8192x8192 image) and inflates `zTXt`/`iTXt` without a bound; this reads at most
/// [`MAX_TEXT_BYTES`] of text, whatever the file claims.
fn png_text_of<R: std::io::Read>(mut source: R) -> std::io::Result<BTreeMap<String, String>> {
    let mut signature = [0u8; 8];
    source.read_exact(&mut signature)?;
    if signature != PNG_SIGNATURE {
        return Err(invalid("not a PNG file"));
    }
    let mut budget = MAX_TEXT_BYTES;
    let mut chunks = BTreeMap::new();
    loop {
        let mut head = [0u8; 8];
        source.read_exact(&mut head)?;
        let length = u32::from_be_bytes([head[0], head[1], head[2], head[3]]) as usize;
        let kind = [head[4], head[5], head[6], head[7]];
        match &kind {
            b"IEND" => return Ok(chunks),
            b"tEXt" | b"zTXt" | b"iTXt" => {
                if length > budget {
                    return Err(too_much_text());
                }
                let mut data = vec![0; length];
                source.read_exact(&mut data)?;
                let mut crc = [0u8; 4];
                source.read_exact(&mut crc)?;
                let mut sum = flate2::Crc::new();
                sum.update(&kind);
                sum.update(&data);
                if sum.sum() != u32::from_be_bytes(crc) {
                    return Err(invalid("a text chunk's CRC does not match"));
                }
                if let Some((keyword, text)) = text_chunk(&kind, &data, budget)? {
                    budget -= text.len().min(budget);
                    chunks.insert(keyword, text);
                }
            }
            _ => {
                let skip = length as u64 + 4;
                let mut rest = std::io::Read::take(&mut source, skip);
                let skipped = std::io::copy(&mut rest, &mut std::io::sink())?;
                if skipped != skip {
                    return Err(invalid("the file ends inside a chunk"));
                }
            }
        }
    }
}

/// One text chunk's keyword and text (`None`: a compression method PNG does not define);
/// compressed text is inflated to at most `budget` bytes.
fn text_chunk(
    kind: &[u8; 4],
    data: &[u8],
    budget: usize,
) -> std::io::Result<Option<(String, String)>> {
    let Some(nul) = data.iter().position(|&b| b == 0) else {
        return Err(invalid("a text chunk has no keyword"));
    };
    let (keyword, rest) = (latin1(&data[..nul]), &data[nul + 1..]);
    let text = match kind {
        b"tEXt" => latin1(rest),
        b"zTXt" => match rest.split_first() {
            Some((0, compressed)) => latin1(&inflate(compressed, budget)?),
            _ => return Ok(None),
        },
        _ => {
            // iTXt: compressed flag, method, language tag NUL, translated keyword NUL, text
            let [flag, method, rest @ ..] = rest else {
                return Err(invalid("a short iTXt chunk"));
            };
            let mut fields = rest.splitn(3, |&b| b == 0);
            let (_language, _translated) = (fields.next(), fields.next());
            let Some(text) = fields.next() else {
                return Err(invalid("an iTXt chunk without its text"));
            };
            let bytes = match (flag, method) {
                (0, _) => text.to_vec(),
                (1, 0) => inflate(text, budget)?,
                _ => return Ok(None),
            };
            String::from_utf8(bytes).map_err(|_| invalid("an iTXt chunk is not UTF-8"))?
        }
    };
    Ok(Some((keyword, text)))
}

/// `data` inflated (zlib), refused past `budget` bytes.
fn inflate(data: &[u8], budget: usize) -> std::io::Result<Vec<u8>> {
    use std::io::Read as _;
    let mut out = Vec::new();
    flate2::read::ZlibDecoder::new(data)
        .take(budget as u64 + 1)
        .read_to_end(&mut out)?;
    match out.len() > budget {
        true => Err(too_much_text()),
        false => Ok(out),
    }
}

/// ISO 8859-1 bytes as text (each byte is its code point).
fn latin1(bytes: &[u8]) -> String {
    bytes.iter().map(|&b| char::from(b)).collect()
}

fn invalid(message: &str) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidData, message.to_string())
}

fn too_much_text() -> std::io::Error {
    invalid(&format!(
        "the PNG's text chunks hold more than {MAX_TEXT_BYTES} bytes"
    ))
}

/// The fields of an infotext, as A1111's `parse_generation_parameters` gives them: each
/// `Key: value` of the last line (quoted values unquoted; a `WxH` value also as `Key-1` and
/// `Key-2`), then `Prompt` and `Negative prompt`.
pub fn parse_parameters(text: &str) -> Vec<(String, String)> {
    let mut lines: Vec<&str> = text.trim().lines().collect();
    let settings = match lines.last() {
        Some(last) if lines.len() > 1 || last.contains("Steps: ") => lines.pop().unwrap_or(""),
        _ => "",
    };
    let (mut prompt, mut negative, mut in_negative) = (Vec::new(), Vec::new(), false);
    for line in lines {
        if let Some(rest) = line.strip_prefix("Negative prompt:") {
            in_negative = true;
            negative.push(rest.trim_start());
        } else if in_negative {
            negative.push(line);
        } else {
            prompt.push(line);
        }
    }
    let mut fields = settings_fields(settings);
    fields.push(("Prompt".into(), prompt.join("\n")));
    fields.push(("Negative prompt".into(), negative.join("\n")));
    fields
}

/// `Key: value, Key: "quoted, value", ...` -> pairs.
fn settings_fields(line: &str) -> Vec<(String, String)> {
    let mut fields = Vec::new();
    let mut rest = line.trim();
    while let Some((key, after)) = rest.split_once(':') {
        let after = after.trim_start();
        let (value, next) = if after.starts_with('"') {
            let mut stream = serde_json::Deserializer::from_str(after).into_iter::<String>();
            match stream.next() {
                Some(Ok(v)) => (v, &after[stream.byte_offset()..]),
                _ => break,
            }
        } else {
            let end = after.find(',').unwrap_or(after.len());
            (after[..end].trim().to_string(), &after[end..])
        };
        let key = key.trim().to_string();
        if let Some((w, h)) = value.split_once('x') {
            if w.parse::<u32>().is_ok() && h.parse::<u32>().is_ok() {
                fields.push((format!("{key}-1"), w.to_string()));
                fields.push((format!("{key}-2"), h.to_string()));
            }
        }
        fields.push((key, value));
        rest = next.trim_start().trim_start_matches(',').trim_start();
    }
    fields
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parameters_parse_back() {
        let info = Infotext {
            prompt: "1girl, solo\nsecond line".into(),
            negative: "lowres".into(),
            fields: vec![
                ("Steps".into(), "25".into()),
                ("Size".into(), "768x1024".into()),
                ("Quality policy".into(), "cfg 2 -> 7, steps 8 -> 25".into()),
                ("Version".into(), "sdxl-wgpu 0.1.0".into()),
            ],
        };
        let parsed = parse_parameters(&parameters(&info));
        let get = |k: &str| {
            parsed
                .iter()
                .find(|(key, _)| key == k)
                .map(|(_, v)| v.as_str())
        };
        assert_eq!(get("Steps"), Some("25"));
        assert_eq!(get("Size-1"), Some("768"));
        assert_eq!(get("Size-2"), Some("1024"));
        assert_eq!(get("Quality policy"), Some("cfg 2 -> 7, steps 8 -> 25"));
        assert_eq!(get("Version"), Some("sdxl-wgpu 0.1.0"));
        assert_eq!(get("Prompt"), Some("1girl, solo\nsecond line"));
        assert_eq!(get("Negative prompt"), Some("lowres"));
    }

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

    /// Compressed text is inflated within the bound: a small file claiming more is refused.
    #[test]
    fn png_text_is_bounded() {
        let png_with = |text: String| {
            let mut png = Vec::new();
            let mut encoder = png::Encoder::new(&mut png, 1, 1);
            encoder.set_color(png::ColorType::Rgb);
            encoder.add_ztxt_chunk("z".into(), text).expect("chunk");
            let mut writer = encoder.write_header().expect("header");
            writer.write_image_data(&[0, 0, 0]).expect("pixels");
            writer.finish().expect("written");
            png
        };
        let small = png_with("hello".into());
        assert_eq!(png_text(&small).expect("read")["z"], "hello");
        let bomb = png_with("a".repeat(MAX_TEXT_BYTES + 1));
        assert!(bomb.len() < 64 << 10, "{}", bomb.len());
        let err = png_text(&bomb).expect_err("too much text");
        assert!(err.to_string().contains("more than"), "{err}");
        assert!(png_text(b"not a png").is_err());
        assert!(png_text(&small[..small.len() - 5]).is_err(), "cut short");
    }
}
