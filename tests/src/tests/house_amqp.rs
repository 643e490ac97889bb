//! The broker port's edge: `herald-amqp` is the only crate that may use lapin. No other crate
//! lists it as a dependency, and no Rust code outside `crates/herald-amqp` names a lapin path or
//! lapin's `AMQPValue`; headers are read and written through `herald_amqp::Headers`.
//!
//! One exemption, on purpose: the bare-lapin baselines in `tests/benches/producer.rs` and
//! `tests/benches/worker.rs` measure lapin with nothing of Herald around it, so they use lapin
//! directly, and `tests/Cargo.toml` has it as a dev-dependency for them alone. String literals
//! and comments are not code: the log filter that silences lapin's `returned_messages` target
//! (herald-telemetry) names lapin's log target, not a type.

use std::path::{Path, PathBuf};

/// Files allowed to use lapin although outside `crates/herald-amqp` (see the module doc).
const EXEMPT: [&str; 2] = ["tests/benches/producer.rs", "tests/benches/worker.rs"];

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the workspace root")
        .to_path_buf()
}

/// Every file under `dir` named `*.<extension>` (or exactly `name`), skipping build output,
/// hidden directories and the port itself.
fn files(dir: &Path, wanted: &dyn Fn(&Path) -> bool, found: &mut Vec<PathBuf>) {
    let entries = std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    for entry in entries {
        let path = entry.expect("directory entry").path();
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        if path.is_dir() {
            let skipped = name.starts_with('.') || name == "target" || name == "node_modules";
            if !skipped && !path.ends_with("crates/herald-amqp") {
                files(&path, wanted, found);
            }
        } else if wanted(&path) {
            found.push(path);
        }
    }
}

fn relative(path: &Path) -> String {
    let root = root();
    path.strip_prefix(&root)
        .unwrap_or(path)
        .display()
        .to_string()
}

#[test]
fn no_crate_but_herald_amqp_depends_on_lapin() {
    let mut manifests = Vec::new();
    let is_manifest = |path: &Path| path.file_name().is_some_and(|n| n == "Cargo.toml");
    files(&root(), &is_manifest, &mut manifests);
    assert!(manifests.len() > 5, "found the crates: {manifests:?}");
    let mut offenders = Vec::new();
    for manifest in &manifests {
        let text = std::fs::read_to_string(manifest).expect("read Cargo.toml");
        if text.contains("[workspace]") {
            // The workspace root pins lapin's version for herald-amqp; it is no crate.
            continue;
        }
        for (section, line) in sections(&text) {
            let key = line.split(['=', '.', ' ']).next().unwrap_or("");
            let allowed = section == "dev-dependencies" && relative(manifest) == "tests/Cargo.toml";
            if key == "lapin" && section.ends_with("dependencies") && !allowed {
                offenders.push(format!("{} [{section}]: {line}", relative(manifest)));
            }
        }
    }
    assert!(
        offenders.is_empty(),
        "only crates/herald-amqp may depend on lapin: {offenders:#?}"
    );
}

/// `(section, line)` for every non-empty, non-comment line under a `[section]` header
/// (`target.'cfg(...)'.dependencies` counts as `dependencies`).
fn sections(text: &str) -> Vec<(String, String)> {
    let mut section = String::new();
    let mut lines = Vec::new();
    for line in text.lines().map(str::trim) {
        if let Some(header) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            section = header.rsplit('.').next().unwrap_or(header).to_owned();
        } else if !line.is_empty() && !line.starts_with('#') {
            lines.push((section.clone(), line.to_owned()));
        }
    }
    lines
}

#[test]
fn no_code_outside_herald_amqp_names_lapin_or_its_values() {
    let mut sources = Vec::new();
    let is_rust = |path: &Path| path.extension().is_some_and(|e| e == "rs");
    files(&root(), &is_rust, &mut sources);
    assert!(
        sources.iter().any(|p| relative(p) == "tests/src/lib.rs"),
        "walked the workspace: {} files",
        sources.len()
    );
    let mut offenders = Vec::new();
    for source in &sources {
        let path = relative(source);
        if EXEMPT.contains(&path.as_str()) {
            continue;
        }
        let text = std::fs::read_to_string(source).expect("read source");
        let code = code_only(&text);
        for (number, line) in code.lines().enumerate() {
            if line.contains("lapin::") || line.contains("AMQPValue") || line.contains("use lapin")
            {
                offenders.push(format!("{path}:{}: {}", number + 1, line.trim()));
            }
        }
    }
    assert!(
        offenders.is_empty(),
        "use herald_amqp (Headers' typed setters and getters, Connection, Consumer) instead of \
         lapin outside crates/herald-amqp: {offenders:#?}"
    );
}

/// `text` with the contents of comments and string literals blanked (line breaks kept, so line
/// numbers still match). Enough of Rust's lexis for this test: `//` and `/* */` comments, `"..."`
/// with escapes, raw strings `r"..."`/`r#"..."#`, and the char literals `'"'` and `'\"'`.
fn code_only(text: &str) -> String {
    let chars: Vec<char> = text.chars().collect();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    let blank = |c: char| if c == '\n' { '\n' } else { ' ' };
    while i < chars.len() {
        let rest = &chars[i..];
        if rest.starts_with(&['/', '/']) {
            while i < chars.len() && chars[i] != '\n' {
                i += 1;
            }
        } else if rest.starts_with(&['/', '*']) {
            let mut depth = 0;
            while i < chars.len() {
                if chars[i..].starts_with(&['/', '*']) {
                    depth += 1;
                    i += 2;
                } else if chars[i..].starts_with(&['*', '/']) {
                    depth -= 1;
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    out.push(blank(chars[i]));
                    i += 1;
                }
            }
        } else if rest.starts_with(&['\'', '"', '\'']) || rest.starts_with(&['\'', '\\', '"']) {
            out.push_str("' '");
            i += if rest[1] == '\\' { 4 } else { 3 };
        } else if rest[0] == 'r' && matches!(rest.get(1), Some('"' | '#')) {
            let hashes = rest[1..].iter().take_while(|c| **c == '#').count();
            if rest.get(1 + hashes) != Some(&'"') {
                out.push('r');
                i += 1;
                continue;
            }
            i += 2 + hashes;
            let close: Vec<char> = std::iter::once('"').chain(vec!['#'; hashes]).collect();
            while i < chars.len() && !chars[i..].starts_with(&close) {
                out.push(blank(chars[i]));
                i += 1;
            }
            i += close.len();
            out.push_str("\"\"");
        } else if rest[0] == '"' {
            i += 1;
            while i < chars.len() && chars[i] != '"' {
                if chars[i] == '\\' {
                    i += 1;
                }
                if let Some(&c) = chars.get(i) {
                    out.push(blank(c));
                }
                i += 1;
            }
            i += 1;
            out.push_str("\"\"");
        } else {
            out.push(rest[0]);
            i += 1;
        }
    }
    out
}

#[test]
fn the_scanner_sees_code_and_not_words() {
    let text = "use lapin::types; // lapin::x\nlet s = \"lapin::y\"; /* AMQPValue */ let q = '\"';\n\
                let r = r#\"AMQPValue \"x\"\"#; AMQPValue::LongInt(1)";
    let code = code_only(text);
    assert_eq!(code.lines().count(), 3, "{code}");
    assert!(
        code.lines().next().unwrap().contains("lapin::types"),
        "{code}"
    );
    assert!(!code.lines().nth(1).unwrap().contains("lapin::"), "{code}");
    assert!(
        !code.lines().nth(1).unwrap().contains("AMQPValue"),
        "{code}"
    );
    let last = code.lines().nth(2).unwrap();
    assert_eq!(last.matches("AMQPValue").count(), 1, "{code}");
}
