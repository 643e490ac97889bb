//! The repository stands alone: no file points a reader at documents that are not in it, and
//! every source file of a crate opens with a `//!` module doc saying what it owns. Platform
//! facts are cited from `docs/messenger-platform.md`, design decisions from `docs/decisions.md`
//! and the contracts and invariants from `ARCHITECTURE.md`.

use std::path::{Path, PathBuf};
use std::process::Command;

use super::deploy::root;

/// Citations of documents that live outside the repository. Built with `concat!` so that this
/// file does not match itself.
const FOREIGN: [&str; 4] = [
    concat!("reference", " §"),
    concat!("DESIGN", " §"),
    concat!("DESIGN", ".md"),
    concat!("reference/", "messenger-platform.md"),
];

/// The kinds of file a reader reads: code, docs, configuration, scripts.
const CHECKED: [&str; 7] = ["rs", "md", "yml", "yaml", "toml", "sh", "json"];

/// Every file of the repository, relative to its root: what git tracks plus new files it does
/// not ignore, where git knows the tree, else a walk that skips `target/` and hidden
/// directories.
fn repository_files() -> Vec<PathBuf> {
    let root = root();
    let listed = Command::new("git")
        .args([
            "ls-files",
            "-z",
            "--cached",
            "--others",
            "--exclude-standard",
        ])
        .current_dir(&root)
        .output()
        .ok()
        .filter(|out| out.status.success() && !out.stdout.is_empty());
    if let Some(out) = listed {
        return String::from_utf8_lossy(&out.stdout)
            .split('\0')
            .filter(|name| !name.is_empty())
            .map(PathBuf::from)
            .collect();
    }
    let mut files = Vec::new();
    walk(&root, Path::new(""), &mut files);
    files
}

fn walk(root: &Path, relative: &Path, files: &mut Vec<PathBuf>) {
    let entries = std::fs::read_dir(root.join(relative))
        .unwrap_or_else(|e| panic!("{}: {e}", relative.display()));
    for entry in entries {
        let entry = entry.expect("a directory entry");
        let name = entry.file_name();
        let path = relative.join(&name);
        let file_type = entry.file_type().expect("a file type");
        if file_type.is_dir() {
            let hidden = name.to_string_lossy().starts_with('.');
            if !hidden && name != "target" {
                walk(root, &path, files);
            }
        } else if file_type.is_file() {
            files.push(path);
        }
    }
}

fn checked(path: &Path) -> bool {
    let text = path.to_string_lossy();
    let kind = path.extension().and_then(|e| e.to_str()).unwrap_or("");
    CHECKED.contains(&kind) && !text.starts_with("target/")
}

#[test]
fn no_file_cites_documents_outside_the_repository() {
    let root = root();
    let mut found = Vec::new();
    for path in repository_files().into_iter().filter(|p| checked(p)) {
        // A file listed by git but deleted in the work tree has nothing to cite.
        let Ok(text) = std::fs::read_to_string(root.join(&path)) else {
            continue;
        };
        for (number, line) in text.lines().enumerate() {
            for foreign in FOREIGN {
                if line.contains(foreign) {
                    found.push(format!("{}:{}: {foreign}", path.display(), number + 1));
                }
            }
        }
    }
    assert!(
        found.is_empty(),
        "cite docs/messenger-platform.md, docs/decisions.md or ARCHITECTURE.md instead:\n{}",
        found.join("\n")
    );
}

#[test]
fn every_crate_source_file_opens_with_a_module_doc() {
    let root = root();
    let mut missing = Vec::new();
    let mut seen = 0;
    for path in repository_files() {
        let text = path.to_string_lossy();
        let mut parts = text.split('/');
        let in_crate_src = parts.next() == Some("crates") && parts.nth(1) == Some("src");
        if !in_crate_src || path.extension().and_then(|e| e.to_str()) != Some("rs") {
            continue;
        }
        let Ok(source) = std::fs::read_to_string(root.join(&path)) else {
            continue;
        };
        seen += 1;
        if !source.starts_with("//!") {
            missing.push(text.into_owned());
        }
    }
    assert!(seen > 50, "found only {seen} crate source files");
    assert!(
        missing.is_empty(),
        "start these files with a `//!` doc saying what the module owns: {missing:?}"
    );
}

#[test]
fn the_platform_reference_has_its_cited_sections() {
    let doc = std::fs::read_to_string(root().join("docs/messenger-platform.md"))
        .expect("docs/messenger-platform.md is in the repository");
    for section in [
        "## 1. ", "### 1.1 ", "### 1.2 ", "### 1.3 ", "### 1.4 ", "### 1.5 ", "### 1.6 ", "## 2. ",
        "## 3. ", "### 3.1 ", "### 3.2 ", "## 4. ", "### 4.1 ", "### 4.2 ", "### 4.3 ", "### 4.4 ",
        "## 5. ", "### 5.1 ", "### 5.2 ", "### 5.3 ", "### 5.4 ", "### 5.5 ", "## 6. ",
    ] {
        assert!(
            doc.lines().any(|line| line.starts_with(section)),
            "docs/messenger-platform.md lost its section {section}"
        );
    }
}

/// A crate's module path of a source file under `src/` (`embedded/consumer.rs` →
/// `embedded::consumer`, `run/mod.rs` → `run`, `lib.rs` → the root, ``).
fn module_of(relative: &Path) -> String {
    let mut parts: Vec<String> = relative
        .with_extension("")
        .iter()
        .map(|part| part.to_string_lossy().into_owned())
        .collect();
    if matches!(
        parts.last().map(String::as_str),
        Some("mod" | "lib" | "main")
    ) {
        parts.pop();
    }
    parts.join("::")
}

/// The modules of `modules` that `source` names through `crate::` paths (each the longest
/// module path the name starts with; the crate root is left out, it re-exports everything).
fn imports(source: &str, modules: &[String]) -> Vec<String> {
    let mut found = Vec::new();
    for line in source.lines().filter(|l| !l.trim_start().starts_with("//")) {
        for (at, _) in line.match_indices("crate::") {
            let path: String = line[at + "crate::".len()..]
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_' || *c == ':')
                .collect();
            let best = modules
                .iter()
                .filter(|m| !m.is_empty() && (path == **m || path.starts_with(&format!("{m}::"))))
                .max_by_key(|m| m.len());
            if let Some(module) = best {
                found.push(module.clone());
            }
        }
    }
    found
}

/// Whether `a` contains `b` or `b` contains `a` (a parent and its child may name each other).
fn nested(a: &str, b: &str) -> bool {
    a.starts_with(&format!("{b}::")) || b.starts_with(&format!("{a}::")) || a == b
}

#[test]
fn no_modules_of_a_crate_import_each_other_in_a_circle() {
    let root = root();
    let mut circles = Vec::new();
    let mut crates: std::collections::BTreeMap<String, Vec<(String, String)>> =
        std::collections::BTreeMap::new();
    for path in repository_files() {
        let text = path.to_string_lossy().into_owned();
        let mut parts = text.splitn(4, '/');
        let (Some("crates"), Some(name), Some("src"), Some(rest)) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            continue;
        };
        if !rest.ends_with(".rs") {
            continue;
        }
        let Ok(source) = std::fs::read_to_string(root.join(&path)) else {
            continue;
        };
        let module = module_of(Path::new(rest));
        crates
            .entry(name.to_owned())
            .or_default()
            .push((module, source));
    }
    assert!(crates.len() >= 8, "found only {} crates", crates.len());
    for (name, files) in &crates {
        let modules: Vec<String> = files.iter().map(|(m, _)| m.clone()).collect();
        let mut edges: std::collections::BTreeMap<&str, std::collections::BTreeSet<String>> =
            std::collections::BTreeMap::new();
        for (module, source) in files {
            for target in imports(source, &modules) {
                if !nested(module, &target) {
                    edges.entry(module).or_default().insert(target);
                }
            }
        }
        // A circle is a module reachable from itself.
        for start in edges.keys() {
            let mut stack: Vec<(String, Vec<String>)> = vec![(start.to_string(), vec![])];
            let mut seen = std::collections::BTreeSet::new();
            while let Some((at, trail)) = stack.pop() {
                for next in edges.get(at.as_str()).into_iter().flatten() {
                    let mut trail = trail.clone();
                    trail.push(next.clone());
                    if next == start {
                        circles.push(format!("{name}: {start} → {}", trail.join(" → ")));
                    } else if seen.insert(next.clone()) {
                        stack.push((next.clone(), trail));
                    }
                }
            }
        }
    }
    circles.sort();
    circles.dedup();
    assert!(
        circles.is_empty(),
        "move what both sides need into a module of its own:\n{}",
        circles.join("\n")
    );
}
