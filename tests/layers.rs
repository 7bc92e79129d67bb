//! The layers ARCHITECTURE.md draws, held by reading the source: which module may name which,
//! and no import cycles between the top-level modules nor between the engine's files.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

type Graph = BTreeMap<String, BTreeSet<String>>;

fn rust_files(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for e in std::fs::read_dir(dir).expect("source folder") {
        let p = e.expect("entry").path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// The source without comments, so a doc comment that names a module is not an import.
fn code_of(path: &Path) -> String {
    let text = std::fs::read_to_string(path).expect("source file");
    text.lines().map(|l| l.split("//").next().unwrap_or("")).collect::<Vec<_>>().join("\n")
}

/// Each name following `prefix` (`crate::formats` → `formats`).
fn names_after(code: &str, prefix: &str) -> BTreeSet<String> {
    code.match_indices(prefix)
        .map(|(i, _)| {
            code[i + prefix.len()..].chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').collect::<String>()
        })
        .filter(|n| !n.is_empty())
        .collect()
}

fn top_level() -> Graph {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let mut g = Graph::new();
    for f in files {
        let rel = f.strip_prefix(&src).expect("below src");
        let first = rel.components().next().expect("a component").as_os_str().to_string_lossy().to_string();
        let module = first.trim_end_matches(".rs").to_string();
        if module == "main" || module == "lib" {
            continue;
        }
        let uses = names_after(&code_of(&f), "crate::");
        let entry = g.entry(module.clone()).or_default();
        entry.extend(uses.into_iter().filter(|u| *u != module));
    }
    g
}

fn engine_files() -> Graph {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/engine");
    let mut g = Graph::new();
    let mut files = Vec::new();
    rust_files(&dir, &mut files);
    let names: BTreeSet<String> =
        files.iter().map(|f| f.file_stem().expect("stem").to_string_lossy().to_string()).collect();
    for f in &files {
        let me = f.file_stem().expect("stem").to_string_lossy().to_string();
        if me == "mod" {
            continue;
        }
        let code = code_of(f);
        let mut uses = names_after(&code, "super::");
        uses.extend(names_after(&code, "crate::engine::"));
        let entry = g.entry(me.clone()).or_default();
        entry.extend(uses.into_iter().filter(|u| *u != me && *u != "mod" && names.contains(u)));
    }
    g
}

/// A cycle as the list of its nodes, if the graph has one.
fn cycle(g: &Graph) -> Option<Vec<String>> {
    fn visit(n: &str, g: &Graph, path: &mut Vec<String>, done: &mut BTreeSet<String>) -> Option<Vec<String>> {
        if let Some(i) = path.iter().position(|p| p == n) {
            let mut c = path[i..].to_vec();
            c.push(n.to_string());
            return Some(c);
        }
        if done.contains(n) {
            return None;
        }
        path.push(n.to_string());
        for m in g.get(n).into_iter().flatten() {
            if let Some(c) = visit(m, g, path, done) {
                return Some(c);
            }
        }
        path.pop();
        done.insert(n.to_string());
        None
    }
    let mut done = BTreeSet::new();
    g.keys().find_map(|n| visit(n, g, &mut Vec::new(), &mut done))
}

#[test]
fn the_top_level_modules_import_no_cycle() {
    let g = top_level();
    assert!(g.len() >= 10, "the source was read: {:?}", g.keys().collect::<Vec<_>>());
    assert_eq!(cycle(&g), None, "import graph: {g:#?}");
}

#[test]
fn the_engines_files_import_no_cycle() {
    let g = engine_files();
    assert!(g.contains_key("apply") && g.contains_key("download"), "the engine was read: {g:?}");
    assert_eq!(cycle(&g), None, "engine graph: {g:#?}");
}

#[test]
fn the_pure_core_and_the_adapters_stay_in_their_layer() {
    let g = top_level();
    let forbidden: &[(&str, &[&str])] = &[
        // The pure core: no adapter, no shell.
        ("formats", &["stitch", "engine", "ledger", "drop", "cli", "config", "sim", "reconcile", "report"]),
        ("reconcile", &["engine", "ledger", "drop", "cli", "config", "sim"]),
        ("x12", &["engine", "ledger", "drop", "cli", "config", "sim"]),
        ("model", &["engine", "ledger", "drop", "cli", "config", "sim", "formats", "reconcile"]),
        ("report", &["engine", "ledger", "drop", "cli", "config", "sim", "stitch"]),
        // Adapters know nothing of the shell that sequences them.
        ("metrics", &["engine", "cli"]),
        ("ledger", &["engine", "cli"]),
        ("drop", &["engine", "cli", "config", "ledger"]),
        ("stitch", &["engine", "cli", "ledger", "drop"]),
    ];
    for (module, not) in forbidden {
        let uses = g.get(*module).unwrap_or_else(|| panic!("module {module} was read"));
        let bad: Vec<&&str> = not.iter().filter(|n| uses.contains(**n)).collect();
        assert!(bad.is_empty(), "{module} imports {bad:?}");
    }
    // `reconcile` and `x12` speak Stitch's wire shapes, never its HTTP client.
    let mut files = Vec::new();
    for core in ["src/reconcile", "src/x12"] {
        rust_files(&Path::new(env!("CARGO_MANIFEST_DIR")).join(core), &mut files);
    }
    for f in files {
        let code = code_of(&f);
        let stitch = names_after(&code, "crate::stitch::");
        assert!(stitch.iter().all(|s| s == "wire"), "{} uses crate::stitch::{stitch:?}", f.display());
    }
}
