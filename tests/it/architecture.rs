//! The import graph: arrows point one way. Every `crate::…` / `super::…` path in non-test
//! code is resolved to the file it names; the graph must have no cycle (in the function and
//! in the emulator), and the pure core and the adapters never import the layers above them.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// File (relative to the crate's `src/`) → the files it imports.
type Graph = BTreeMap<String, BTreeSet<String>>;

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.expect("dir entry").path())
        .collect();
    entries.sort();
    for p in entries {
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// The module path of a file: `output_resources/run.rs` → `["output_resources", "run"]`.
fn module_of(rel: &str) -> Vec<String> {
    let trimmed = rel.trim_end_matches(".rs");
    let mut parts: Vec<String> = trimmed.split('/').map(str::to_string).collect();
    if matches!(
        parts.last().map(String::as_str),
        Some("mod" | "lib" | "main")
    ) {
        parts.pop();
    }
    parts
}

/// The file a module path names: the longest prefix that is a file of the crate.
fn resolve(files: &BTreeSet<String>, path: &[String]) -> Option<String> {
    (0..=path.len()).rev().find_map(|n| {
        let base = path[..n].join("/");
        let candidates = if n == 0 {
            vec!["lib.rs".to_string()]
        } else {
            vec![format!("{base}.rs"), format!("{base}/mod.rs")]
        };
        candidates.into_iter().find(|c| files.contains(c))
    })
}

/// Non-test code without comments: everything before the first `#[cfg(test)]`, less the
/// comment lines (a doc link is not an import).
fn production_code(text: &str) -> String {
    let code = text.split("#[cfg(test)]").next().unwrap_or(text);
    code.lines()
        .filter(|l| !l.trim_start().starts_with("//"))
        .collect::<Vec<_>>()
        .join("\n")
}

fn ident_path(s: &str) -> Vec<String> {
    s.split("::")
        .map(|p| {
            p.chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect::<String>()
        })
        .take_while(|p| !p.is_empty() && p.chars().next().is_some_and(|c| c.is_ascii_lowercase()))
        .collect()
}

/// Every module path a file refers to through `crate::` (with `{a, b::c}` groups expanded)
/// or `super::`.
fn referenced_paths(code: &str, module: &[String]) -> Vec<Vec<String>> {
    let mut paths = Vec::new();
    for (root, base) in [("crate::", Vec::new()), ("super::", parent(module))] {
        for (i, _) in code.match_indices(root) {
            let rest = &code[i + root.len()..];
            if let Some(group) = rest.strip_prefix('{') {
                let inner = group.split('}').next().unwrap_or("");
                for item in inner.split(',') {
                    let mut p = base.clone();
                    p.extend(ident_path(item.trim()));
                    paths.push(p);
                }
            } else {
                let mut p = base.clone();
                p.extend(ident_path(rest));
                paths.push(p);
            }
        }
    }
    paths
}

fn parent(module: &[String]) -> Vec<String> {
    module[..module.len().saturating_sub(1)].to_vec()
}

fn graph(src: &Path) -> Graph {
    let mut paths = Vec::new();
    rust_files(src, &mut paths);
    let rel = |p: &PathBuf| {
        p.strip_prefix(src)
            .expect("under src")
            .to_string_lossy()
            .replace('\\', "/")
    };
    let files: BTreeSet<String> = paths.iter().map(rel).collect();
    let mut g = Graph::new();
    for p in &paths {
        let file = rel(p);
        let text = std::fs::read_to_string(p).expect("readable source");
        let module = module_of(&file);
        let edges = g.entry(file.clone()).or_default();
        for path in referenced_paths(&production_code(&text), &module) {
            if let Some(target) = resolve(&files, &path) {
                if target != file {
                    edges.insert(target);
                }
            }
        }
    }
    g
}

/// A cycle, if any (depth-first search with colours).
fn find_cycle(g: &Graph) -> Option<Vec<String>> {
    fn visit(
        g: &Graph,
        n: &str,
        stack: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(at) = stack.iter().position(|s| s == n) {
            let mut cycle = stack[at..].to_vec();
            cycle.push(n.to_string());
            return Some(cycle);
        }
        if done.contains(n) {
            return None;
        }
        stack.push(n.to_string());
        for m in g.get(n).into_iter().flatten() {
            if let Some(c) = visit(g, m, stack, done) {
                return Some(c);
            }
        }
        stack.pop();
        done.insert(n.to_string());
        None
    }
    let mut done = BTreeSet::new();
    g.keys()
        .find_map(|n| visit(g, n, &mut Vec::new(), &mut done))
}

fn crate_src(rel: &str) -> PathBuf {
    // The integration tests run from the crate root; CARGO_MANIFEST_DIR names it.
    Path::new(env!("CARGO_MANIFEST_DIR")).join(rel)
}

#[test]
fn the_function_has_no_import_cycle() {
    // GIVEN the function's source files WHEN their imports are resolved
    let g = graph(&crate_src("src"));
    // THEN no file imports one that (transitively) imports it back
    assert_eq!(find_cycle(&g), None, "import graph: {g:#?}");
}

#[test]
fn the_emulator_has_no_import_cycle() {
    let g = graph(&crate_src("emulator/src"));
    assert_eq!(find_cycle(&g), None, "import graph: {g:#?}");
}

#[test]
fn the_core_and_the_adapters_never_import_the_layers_above() {
    // GIVEN the layers above the core: the engine, the per-ARN decision, the handler, the CLI
    // and the binary's wiring
    let above = [
        "engine.rs",
        "delete.rs",
        "handler.rs",
        "main.rs",
        "metrics.rs",
        "retention_run.rs",
    ];
    let g = graph(&crate_src("src"));
    for (file, imports) in &g {
        let is_core_or_adapter =
            !above.contains(&file.as_str()) && !file.starts_with("cli") && file != "lib.rs";
        if !is_core_or_adapter {
            continue;
        }
        // THEN a core or adapter file imports none of them
        for target in imports {
            assert!(
                !above.contains(&target.as_str()) && !target.starts_with("cli"),
                "{file} imports {target}, a layer above it"
            );
        }
        // AND the pure core never imports an adapter
        if !file.starts_with("aws/") {
            assert!(
                imports.iter().all(|t| !t.starts_with("aws/")),
                "{file} imports an adapter: {imports:?}"
            );
        }
    }
}

#[test]
fn a_cycle_is_found_when_there_is_one() {
    // GIVEN a → b → c → a
    let mut g = Graph::new();
    for (a, b) in [("a", "b"), ("b", "c"), ("c", "a")] {
        g.entry(a.to_string()).or_default().insert(b.to_string());
    }
    // THEN the check reports it, so the tests above can fail
    assert_eq!(
        find_cycle(&g),
        Some(vec!["a".into(), "b".into(), "c".into(), "a".into()])
    );
    assert_eq!(
        referenced_paths(
            "use crate::{a::X, b};\nuse super::c::D;",
            &["m".into(), "n".into()]
        ),
        vec![
            vec!["a".to_string()],
            vec!["b".to_string()],
            vec!["m".to_string(), "c".to_string()]
        ]
    );
}
