//! quorate-redlock's modules form layers: no module imports, directly or
//! through others, a module that imports it (ARCHITECTURE.md lists the
//! layers). Read from the source: every `crate::<module>` path outside
//! comments and unit-test modules is an import.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// Every top-level module with the top-level modules it names.
fn imports() -> BTreeMap<String, BTreeSet<String>> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    let mut dirs = vec![src.clone()];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).expect("read src") {
            let path = entry.expect("entry").path();
            if path.is_dir() {
                dirs.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                files.push(path);
            }
        }
    }
    let mut imports: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for file in files {
        let relative = file.strip_prefix(&src).expect("under src");
        let first = relative.components().next().expect("a component");
        let module = first
            .as_os_str()
            .to_string_lossy()
            .trim_end_matches(".rs")
            .to_owned();
        if module == "lib" {
            continue;
        }
        let text = std::fs::read_to_string(&file).expect("read");
        // unit tests may use anything
        let code = text.split("#[cfg(test)]\nmod tests").next().unwrap_or("");
        let named = imports.entry(module.clone()).or_default();
        for line in code.lines().filter(|l| !l.trim_start().starts_with("//")) {
            for (at, _) in line.match_indices("crate::") {
                let rest = &line[at + "crate::".len()..];
                let name: String = rest
                    .chars()
                    .take_while(|c| c.is_ascii_lowercase() || *c == '_')
                    .collect();
                if !name.is_empty() && name != module {
                    named.insert(name);
                }
            }
        }
    }
    let modules: BTreeSet<String> = imports.keys().cloned().collect();
    for named in imports.values_mut() {
        named.retain(|m| modules.contains(m));
    }
    imports
}

/// The modules left after repeatedly removing those that import nothing
/// still left: exactly the modules on or behind an import cycle.
fn in_cycles(mut imports: BTreeMap<String, BTreeSet<String>>) -> BTreeSet<String> {
    loop {
        let leaves: Vec<String> = imports
            .iter()
            .filter(|(_, named)| named.is_empty())
            .map(|(m, _)| m.clone())
            .collect();
        if leaves.is_empty() {
            return imports.into_keys().collect();
        }
        for leaf in &leaves {
            imports.remove(leaf);
        }
        for named in imports.values_mut() {
            for leaf in &leaves {
                named.remove(leaf);
            }
        }
    }
}

#[test]
fn no_module_imports_one_that_imports_it() {
    let imports = imports();
    assert!(imports.len() > 20, "read {} modules", imports.len());
    let stuck = in_cycles(imports.clone());
    let shown: Vec<String> = stuck
        .iter()
        .map(|m| format!("{m} -> {:?}", imports[m]))
        .collect();
    assert!(stuck.is_empty(), "import cycles among: {shown:#?}");
}

#[test]
fn the_checker_finds_a_cycle() {
    let mut imports = imports();
    imports
        .entry("client_state".to_owned())
        .or_default()
        .insert("mutex".to_owned());
    assert!(in_cycles(imports).contains("client_state"));
}
