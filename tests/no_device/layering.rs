//! The library's layers point one way. `docs/ARCHITECTURE.md` lists them in a `layers` block,
//! top first; this reads every `src/**/*.rs` file of the library, collects the modules each one
//! names through `crate::` in its code (not its comments), and fails on any edge to a module on
//! the same or a higher line, on a module the block does not place, and on the command-line
//! parser inside the library.
//! No GPU needed. `cargo test --test no_device layering -- --nocapture` prints the edges it found.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

/// The binary's modules: above every layer, free to use any.
const BINARY: [&str; 2] = ["main", "cli"];

/// Module -> its level (0 = bottom), from the `layers` block of `docs/ARCHITECTURE.md`.
fn levels() -> BTreeMap<String, usize> {
    let doc = std::fs::read_to_string(Path::new(ROOT).join("docs/ARCHITECTURE.md"))
        .expect("docs/ARCHITECTURE.md");
    let block = doc
        .split("```layers\n")
        .nth(1)
        .and_then(|rest| rest.split("```").next())
        .expect("a ```layers block in docs/ARCHITECTURE.md");
    let lines: Vec<&str> = block.lines().filter(|l| !l.trim().is_empty()).collect();
    let mut levels = BTreeMap::new();
    for (i, line) in lines.iter().enumerate() {
        let level = lines.len() - 1 - i;
        // `module module  # comment`
        let names = line.split('#').next().unwrap_or_default();
        for name in names.split_whitespace() {
            assert!(
                levels.insert(name.to_string(), level).is_none(),
                "`{name}` is placed twice in the layers block"
            );
        }
    }
    levels
}

/// Every `.rs` file under `dir`.
fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("src is readable") {
        let path = entry.expect("entry").path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The top-level module a file of `src/` belongs to (`src/unet/blocks.rs` -> `unet`).
fn module_of(file: &Path) -> String {
    let relative = file
        .strip_prefix(Path::new(ROOT).join("src"))
        .expect("under src");
    let first = relative.components().next().expect("a component");
    let name = first.as_os_str().to_string_lossy();
    name.trim_end_matches(".rs").to_string()
}

/// `text` without its comments (blanked, so offsets and line numbers stay).
fn code_of(text: &str) -> String {
    text.lines()
        .map(|line| match line.find("//") {
            Some(at) => format!("{}{}", &line[..at], " ".repeat(line.len() - at)),
            None => line.to_string(),
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// The modules `code` names through `crate::`, each with its byte offset: `crate::unet::Unet`,
/// and each head of a group, `use crate::{nn::Linear, weights::{Weights, WeightError}}`, which
/// may span lines.
fn named_modules(code: &str) -> Vec<(usize, String)> {
    let head = |s: &str| -> String {
        s.trim_start()
            .chars()
            .take_while(|c| c.is_alphanumeric() || *c == '_')
            .collect()
    };
    let mut found = Vec::new();
    for (at, _) in code.match_indices("crate::") {
        let rest = &code[at + "crate::".len()..];
        let Some(group) = rest.strip_prefix('{') else {
            found.push((at, head(rest)));
            continue;
        };
        // the group's top-level items: split at commas outside nested braces
        let (mut depth, mut item_start) = (0usize, 0usize);
        for (i, c) in group.char_indices() {
            match c {
                '{' => depth += 1,
                '}' if depth == 0 => {
                    found.push((at, head(&group[item_start..i])));
                    break;
                }
                '}' => depth -= 1,
                ',' if depth == 0 => {
                    found.push((at, head(&group[item_start..i])));
                    item_start = i + 1;
                }
                _ => {}
            }
        }
    }
    found.retain(|(_, m)| !m.is_empty());
    found
}

#[test]
fn dependencies_point_down_the_documented_layers() {
    let levels = levels();
    let mut files = Vec::new();
    rust_files(&Path::new(ROOT).join("src"), &mut files);
    files.sort();
    // exported macros live at the crate root (`crate::spelled!`): count them as their module's
    let mut macros: BTreeMap<String, String> = BTreeMap::new();
    for file in &files {
        let text = std::fs::read_to_string(file).expect("readable");
        for (at, _) in text.match_indices("macro_rules! ") {
            let name = named_modules(&format!("crate::{}", &text[at + 13..]));
            if let Some((_, name)) = name.into_iter().next() {
                macros.insert(name, module_of(file));
            }
        }
    }
    let mut edges: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut problems = Vec::new();
    for file in &files {
        let module = module_of(file);
        if module == "lib" || BINARY.contains(&module.as_str()) {
            continue;
        }
        let Some(&level) = levels.get(&module) else {
            problems.push(format!(
                "src/{module}: not placed in the layers block of docs/ARCHITECTURE.md"
            ));
            continue;
        };
        let code = code_of(&std::fs::read_to_string(file).expect("readable"));
        let at = |offset: usize| {
            let line = code[..offset].matches('\n').count() + 1;
            format!("{}:{line}", file.display())
        };
        for (offset, _) in code.match_indices("clap") {
            problems.push(format!(
                "{}: the library names clap; parsing belongs to FromStr (see spelling.rs)",
                at(offset)
            ));
        }
        for (offset, target) in named_modules(&code) {
            let target = macros.get(&target).cloned().unwrap_or(target);
            if target == module || target == "self" || target == "super" {
                continue;
            }
            edges
                .entry(module.clone())
                .or_default()
                .insert(target.clone());
            match levels.get(&target) {
                Some(&t) if t < level => {}
                Some(_) => problems.push(format!(
                    "{}: `{module}` uses `{target}`, which is not below it",
                    at(offset)
                )),
                None => problems.push(format!("{}: `{target}` is not a placed module", at(offset))),
            }
        }
    }
    let mut by_level: Vec<(&String, &usize)> = levels.iter().collect();
    by_level.sort_by_key(|(name, level)| (std::cmp::Reverse(**level), (*name).clone()));
    for (module, _) in by_level {
        let targets: Vec<&str> = edges
            .get(module)
            .map(|t| t.iter().map(String::as_str).collect())
            .unwrap_or_default();
        println!("{module:14} -> {}", targets.join(", "));
    }
    assert!(problems.is_empty(), "\n{}", problems.join("\n"));
}

#[test]
fn the_reader_sees_paths_groups_and_no_comments() {
    let names = |text: &str| -> Vec<String> {
        named_modules(&code_of(text))
            .into_iter()
            .map(|(_, m)| m)
            .collect()
    };
    assert_eq!(names("use crate::unet::Unet;"), ["unet"]);
    assert_eq!(
        names("use crate::{\n    nn::Linear,\n    weights::{Weights, WeightError},\n};"),
        ["nn", "weights"]
    );
    assert_eq!(
        names("use crate::{device, sampling::noise};"),
        ["device", "sampling"]
    );
    assert_eq!(
        names("let x = crate::sampling::noise(s); // crate::lora"),
        ["sampling"]
    );
    assert!(names("/// uses [`crate::lora::AdapterSet`]").is_empty());
}
