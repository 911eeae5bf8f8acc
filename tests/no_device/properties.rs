//! Random and mutated inputs to every library reader of untrusted text and files: the
//! safetensors header reader, the checkpoint opener, the prompt parser with its checks, the
//! tokenizer and the LoRA file reader never panic and always finish, with a result or a typed
//! error. (The jobs-line parser, in the binary, has its own in `src/cli/job.rs`.) No GPU; a few
//! hundred cases per property keep the file well under a minute.

use std::collections::HashMap;
use std::path::Path;
use std::sync::OnceLock;

use proptest::prelude::*;
use sdxl_wgpu::checkpoint::Checkpoint;
use sdxl_wgpu::lora::{AdapterSet, LoraFile, LoraSpec, LoraTable};
use sdxl_wgpu::text_encoder::check_prompts;
use sdxl_wgpu::tokenizer::{chunk_prompt, parse_prompt, ClipTokenizer, Flavor, PromptPart, EOS};
use sdxl_wgpu::weights::{Header, SafetensorsFile};

use crate::common::TINY;

fn config() -> ProptestConfig {
    ProptestConfig {
        cases: 256,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

/// A small valid safetensors file: two tensors and metadata.
fn valid_file() -> Vec<u8> {
    let header = r#"{"__metadata__":{"a":"b"},"w":{"dtype":"F16","shape":[2,2],"data_offsets":[0,8]},"lora_unet_x.lora_down.weight":{"dtype":"F32","shape":[1,2],"data_offsets":[8,16]}}"#;
    let mut bytes = (header.len() as u64).to_le_bytes().to_vec();
    bytes.extend_from_slice(header.as_bytes());
    bytes.extend_from_slice(&[0x3c; 16]);
    bytes
}

/// `bytes` with some positions overwritten, a cut, or both.
fn mutated(base: Vec<u8>) -> impl Strategy<Value = Vec<u8>> {
    let len = base.len();
    (
        proptest::collection::vec((0..len, any::<u8>()), 0..8),
        proptest::option::of(0..len),
    )
        .prop_map(move |(edits, cut)| {
            let mut bytes = base.clone();
            for (at, byte) in edits {
                bytes[at] = byte;
            }
            if let Some(cut) = cut {
                bytes.truncate(cut);
            }
            bytes
        })
}

/// Text that exercises the prompt syntax: brackets, colons, numbers, escapes, BREAK, tags.
fn prompt_text() -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        Just("(".to_string()),
        Just(")".to_string()),
        Just("[".to_string()),
        Just("]".to_string()),
        Just(":".to_string()),
        Just("\\".to_string()),
        Just(" BREAK ".to_string()),
        Just("<lora:".to_string()),
        Just(">".to_string()),
        Just("!".to_string()),
        "[0-9.+-]{1,4}",
        "[a-z ]{1,6}",
        any::<char>().prop_map(|c| c.to_string()),
    ];
    proptest::collection::vec(piece, 0..64).prop_map(|p| p.concat())
}

/// Header JSON with plausible entries: names that repeat, dtypes known and not, shapes and
/// offsets small and huge.
fn header_json() -> impl Strategy<Value = String> {
    let dim = prop_oneof![0u64..5, Just(1u64 << 40), Just(u64::MAX / 3)];
    let entry = (
        prop_oneof![Just("a"), Just("b"), Just("__metadata__"), Just("w.weight")],
        prop_oneof![
            Just("F16"),
            Just("F32"),
            Just("BF16"),
            Just("F8_E4M3"),
            Just("I64"),
            Just("F12")
        ],
        proptest::collection::vec(dim, 0..4),
        (0u64..40, 0u64..40),
    )
        .prop_map(|(name, dtype, shape, (start, end))| {
            format!(
                r#""{name}":{{"dtype":"{dtype}","shape":{shape:?},"data_offsets":[{start},{end}]}}"#
            )
        });
    proptest::collection::vec(entry, 0..5).prop_map(|entries| format!("{{{}}}", entries.join(",")))
}

fn table() -> &'static LoraTable {
    static TABLE: OnceLock<LoraTable> = OnceLock::new();
    TABLE.get_or_init(|| LoraTable::new(&Checkpoint::open(TINY).expect("fixture").config))
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn header_reader_is_total(
        bytes in proptest::collection::vec(any::<u8>(), 0..256),
        json in header_json(),
        data_len in 0u64..64,
    ) {
        let path = Path::new("x.safetensors");
        let _ = Header::parse(&bytes, data_len, path);
        if let Ok(header) = Header::parse(json.as_bytes(), data_len, path) {
            for info in header.tensors.values() {
                // what the header admits lies inside the data and runs forwards
                prop_assert!(info.start <= info.end && info.end as u64 <= data_len);
            }
        }
    }

    #[test]
    fn mutated_files_open_or_fail(bytes in mutated(valid_file())) {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("m.safetensors");
        std::fs::write(&path, &bytes).expect("write");
        if let Ok(file) = SafetensorsFile::open(&path) {
            for info in file.header().tensors.values() {
                // every tensor the header admits lies inside the file
                let data = file.bytes(info).expect("inside the data");
                let _ = info.dtype.to_f32(data);
            }
        }
        let _ = Checkpoint::open(&path);
        if let Ok(lora) = LoraFile::open(&path) {
            for module in &lora.modules {
                let _ = lora.values(&module.down);
            }
        }
        let spec = LoraSpec { path, unet_weight: 1.0, text_encoder_weight: 1.0 };
        let _ = AdapterSet::check(&spec, table());
    }

    #[test]
    fn prompts_parse_and_check(prompt in prompt_text(), negative in prompt_text()) {
        let parsed = parse_prompt(&prompt);
        for part in &parsed.parts {
            if let PromptPart::Text { text, .. } = part {
                prop_assert!(!text.is_empty());
            }
        }
        let _ = check_prompts(&prompt, &negative);
    }

    #[test]
    fn tokens_are_vocabulary_ids(text in any::<String>(), prompt in prompt_text()) {
        let tokenizer = ClipTokenizer::shared();
        for flavor in Flavor::BOTH {
            for id in tokenizer.encode(&text, flavor) {
                prop_assert!(id <= EOS);
            }
            for chunk in chunk_prompt(tokenizer, &parse_prompt(&prompt), flavor) {
                prop_assert!(chunk.tokens.len() <= 75);
                prop_assert_eq!(chunk.ids(flavor).len(), 77);
            }
        }
    }

    #[test]
    fn lora_files_of_random_names_and_shapes_are_checked(
        names in proptest::collection::vec("lora_(unet|te1|te2)_[a-z0-9_]{0,40}\\.(lora_down|lora_up|alpha)\\.weight", 1..6),
        shapes in proptest::collection::vec(proptest::collection::vec(0usize..5, 0..4), 1..6),
    ) {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("r.safetensors");
        let mut data = HashMap::new();
        for (name, shape) in names.iter().zip(&shapes) {
            let n: usize = shape.iter().product();
            data.insert(name.clone(), (shape.clone(), vec![0u8; 4 * n]));
        }
        let views: Vec<(String, safetensors::tensor::TensorView)> = data
            .iter()
            .map(|(name, (shape, bytes))| {
                let view = safetensors::tensor::TensorView::new(safetensors::Dtype::F32, shape.clone(), bytes)
                    .expect("view");
                (name.clone(), view)
            })
            .collect();
        safetensors::serialize_to_file(views, None, &path).expect("write");
        let spec = LoraSpec { path, unet_weight: 0.8, text_encoder_weight: 0.8 };
        let _ = AdapterSet::check(&spec, table());
    }
}
