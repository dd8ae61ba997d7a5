//! The metric names the code emits and the ones the READMEs list are the
//! same set: a metric added without documentation, or documented and gone,
//! fails here.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

/// Metric names in `text`: `quorate_…_total`, `…_seconds` or `…_held`.
fn names(text: &str) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    let bytes = text.as_bytes();
    let mut i = 0;
    while let Some(at) = text[i..].find("quorate_") {
        let start = i + at;
        let end = start
            + text[start..]
                .bytes()
                .take_while(|b| b.is_ascii_lowercase() || *b == b'_')
                .count();
        let name = &text[start..end];
        let ends_well = ["_total", "_seconds", "_held"]
            .iter()
            .any(|s| name.ends_with(s));
        let starts_word =
            start == 0 || !(bytes[start - 1].is_ascii_alphanumeric() || bytes[start - 1] == b'_');
        if ends_well && starts_word {
            found.insert(name.to_owned());
        }
        i = end.max(start + 1);
    }
    found
}

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the workspace")
        .to_owned()
}

fn rust_sources(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("read_dir").flatten() {
        let path = entry.path();
        if path.is_dir() {
            rust_sources(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

#[test]
fn every_emitted_metric_is_documented_and_every_documented_one_is_emitted() {
    let root = workspace();
    let mut emitted = BTreeSet::new();
    for krate in ["redlock", "pool", "tree", "spinlock"] {
        let mut files = Vec::new();
        rust_sources(&root.join(krate).join("src"), &mut files);
        for file in files {
            let source = std::fs::read_to_string(&file).expect("source");
            // only string literals: the name as the code passes it to `metrics`
            for literal in source.split('"').skip(1).step_by(2) {
                if literal.starts_with("quorate_") {
                    emitted.extend(names(literal));
                }
            }
        }
    }
    let mut documented = BTreeSet::new();
    for readme in [
        "README.md",
        "pool/README.md",
        "tree/README.md",
        "spinlock/README.md",
    ] {
        let text = std::fs::read_to_string(root.join(readme)).expect("README");
        documented.extend(names(&text));
    }
    assert!(
        emitted.len() >= 20,
        "the scan found too little: {emitted:?}"
    );
    let undocumented: Vec<_> = emitted.difference(&documented).collect();
    let gone: Vec<_> = documented.difference(&emitted).collect();
    assert!(
        undocumented.is_empty() && gone.is_empty(),
        "emitted but in no README: {undocumented:?}; in a README but not emitted: {gone:?}"
    );
}

#[test]
fn the_name_scanner_finds_names_only_where_they_are() {
    let text = "`quorate_acquire_total` and quorate_redlock::raw, quorate_locks_held{primitive}, \
                xquorate_fake_total, `quorate_<crate>_*`";
    let found: Vec<String> = names(text).into_iter().collect();
    assert_eq!(found, ["quorate_acquire_total", "quorate_locks_held"]);
}
