//! Hostile requests, one or more per class an attacker tries on an HTTP front door: the status
//! and A1111 error each must get, whichever node answers (`serve` or a NATS API node; they share
//! one router). The callers check afterwards that the node still answers with the same image.

use std::time::Duration;

use base64::Engine as _;
use reqwest::blocking::{Client, RequestBuilder};
use reqwest::StatusCode;
use serde_json::{json, Value};

/// One hostile request and what it must get.
pub struct Attack {
    /// What the attacker tries (the class).
    pub class: &'static str,
    pub method: &'static str,
    pub path: &'static str,
    /// A JSON body (as bytes, so that a body that is no object can be sent too; leaked, so that
    /// sending it copies nothing in this process, whose memory the callers measure).
    pub body: Option<&'static [u8]>,
    pub status: StatusCode,
    /// A part of A1111's `detail`.
    pub detail: &'static str,
}

/// A PNG of `width x height` black pixels (it compresses to almost nothing).
fn black_png(width: u32, height: u32) -> Vec<u8> {
    let mut png = Vec::new();
    {
        let mut encoder = png::Encoder::new(&mut png, width, height);
        encoder.set_color(png::ColorType::Grayscale);
        encoder.set_compression(png::Compression::Balanced);
        let mut writer = encoder.write_header().expect("header");
        let mut stream = writer.stream_writer().expect("stream");
        let row = vec![0u8; width as usize];
        for _ in 0..height {
            std::io::Write::write_all(&mut stream, &row).expect("row");
        }
        stream.finish().expect("pixels");
    }
    png
}

/// A 1x1 PNG whose header says `width x height` (with a valid checksum): a decoder believing
/// it would allocate for the claimed size.
fn lying_png(width: u32, height: u32) -> Vec<u8> {
    let mut png = black_png(1, 1);
    // signature (8), IHDR length (4), "IHDR" (4), then width and height
    png[16..20].copy_from_slice(&width.to_be_bytes());
    png[20..24].copy_from_slice(&height.to_be_bytes());
    let mut crc = flate2::Crc::new();
    crc.update(&png[12..29]); // "IHDR" and its 13 bytes of data
    png[29..33].copy_from_slice(&crc.sum().to_be_bytes());
    png
}

/// A small PNG whose compressed text chunk inflates to `text_bytes`.
fn text_bomb(text_bytes: usize) -> Vec<u8> {
    let mut png = Vec::new();
    let mut encoder = png::Encoder::new(&mut png, 1, 1);
    encoder.set_color(png::ColorType::Rgb);
    encoder
        .add_ztxt_chunk("parameters".into(), "a".repeat(text_bytes))
        .expect("chunk");
    let mut writer = encoder.write_header().expect("header");
    writer.write_image_data(&[0, 0, 0]).expect("pixels");
    writer.finish().expect("written");
    png
}

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

fn body(v: Value) -> Option<&'static [u8]> {
    Some(serde_json::to_vec(&v).expect("JSON").leak())
}

/// The requests, by class.
pub fn attacks() -> Vec<Attack> {
    let huge = b64(&black_png(8192, 8192));
    let small = |extra: Value| {
        let mut b = json!({"prompt": "x", "steps": 2, "width": 64, "height": 64});
        b.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        body(b)
    };
    let unprocessable = StatusCode::UNPROCESSABLE_ENTITY;
    let attack = |class, method, path, body, status, detail| Attack {
        class,
        method,
        path,
        body,
        status,
        detail,
    };
    vec![
        attack(
            "memory before checks: an 8192x8192 upload",
            "POST",
            "/sdapi/v1/img2img",
            small(json!({"init_images": [huge]})),
            unprocessable,
            "pixels",
        ),
        attack(
            "memory before checks: a header claiming 20000x20000",
            "POST",
            "/sdapi/v1/img2img",
            small(json!({"init_images": [b64(&lying_png(20000, 20000))]})),
            unprocessable,
            "pixels",
        ),
        attack(
            "memory before checks: a bad size with a big image",
            "POST",
            "/sdapi/v1/img2img",
            small(json!({"init_images": [huge], "width": 60})),
            unprocessable,
            "multiples of 8",
        ),
        attack(
            "memory before checks: a 7 MB prompt of (a)b",
            "POST",
            "/sdapi/v1/txt2img",
            small(json!({"prompt": "(a)b".repeat(7 << 18)})),
            unprocessable,
            "at most 65536",
        ),
        attack(
            "decompression: 16 MiB of text in a small PNG",
            "POST",
            "/sdapi/v1/png-info",
            body(json!({"image": b64(&text_bomb(16 << 20))})),
            unprocessable,
            "more than",
        ),
        attack(
            "state a client can grow: a 300 KiB option",
            "POST",
            "/sdapi/v1/options",
            body(json!({"hostile_option": "x".repeat(300 << 10)})),
            StatusCode::PAYLOAD_TOO_LARGE,
            "",
        ),
        attack(
            "protocol: a LoRA weight of 1e38",
            "POST",
            "/sdapi/v1/txt2img",
            small(json!({"prompt": "x <lora:style_kohya:1e38>"})),
            unprocessable,
            "weight",
        ),
        attack(
            "protocol: a body that is no object",
            "POST",
            "/sdapi/v1/txt2img",
            Some(b"[1, 2]"),
            unprocessable,
            "JSON object",
        ),
        attack(
            "protocol: a wrong method",
            "GET",
            "/sdapi/v1/txt2img",
            None,
            StatusCode::METHOD_NOT_ALLOWED,
            "Method Not Allowed",
        ),
        attack(
            "protocol: a path value that is no number",
            "GET",
            "/v1/jobs/1/images/first",
            None,
            StatusCode::BAD_REQUEST,
            "",
        ),
    ]
}

fn request(client: &Client, base: &str, a: &Attack) -> RequestBuilder {
    let url = format!("{base}{}", a.path);
    let request = match a.method {
        "GET" => client.get(url),
        _ => client.post(url),
    };
    match a.body {
        Some(bytes) => request
            .header("content-type", "application/json")
            .body(bytes),
        None => request,
    }
}

/// Sends every attack to `base` and checks each answer: its status, A1111's error shape, the
/// detail; an option refused is not kept.
pub fn assert_refused(base: &str, attacks: &[Attack]) {
    let client = Client::builder()
        .timeout(Duration::from_secs(120))
        .build()
        .expect("client");
    for a in attacks {
        let response = request(&client, base, a).send().expect(a.class);
        let status = response.status();
        let r: Value = response.json().unwrap_or(Value::Null);
        assert_eq!(status, a.status, "{}: {r}", a.class);
        assert_eq!(r["error"], "HTTPException", "{}: {r}", a.class);
        let detail = r["detail"].as_str().unwrap_or_default();
        assert!(detail.contains(a.detail), "{}: {r}", a.class);
        assert_eq!((&r["body"], &r["errors"]), (&json!(""), &json!("")));
    }
    let options: Value = client
        .get(format!("{base}/sdapi/v1/options"))
        .send()
        .and_then(|r| r.json())
        .expect("options");
    assert!(options.get("hostile_option").is_none(), "nothing kept");
}
