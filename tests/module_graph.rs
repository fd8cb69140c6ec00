//! The crate's top-level modules form no import cycle (arrows point down only), and the
//! leaves everyone uses (`http`, `context`, `error`) import nothing from the request path.
//! Read from the source: every `crate::name` outside comments and test-only files is an edge.
#![allow(clippy::unwrap_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

fn rust_files(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// Top-level module → the top-level modules it uses.
fn module_graph() -> BTreeMap<String, BTreeSet<String>> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for file in files {
        let rel = file.strip_prefix(&src).unwrap();
        let name = file.file_name().unwrap().to_string_lossy();
        if name.ends_with("_tests.rs") || name == "tests.rs" || name == "proptests.rs" {
            continue;
        }
        let top = rel
            .components()
            .next()
            .unwrap()
            .as_os_str()
            .to_string_lossy()
            .trim_end_matches(".rs")
            .to_string();
        if top == "lib" || top == "main" {
            continue;
        }
        let text = std::fs::read_to_string(&file).unwrap();
        // Stop at the file's unit-test module: tests may reach anywhere.
        let code = text.split("#[cfg(test)]").next().unwrap_or("");
        let edges = graph.entry(top.clone()).or_default();
        for line in code.lines() {
            let line = line.trim_start();
            if line.starts_with("//") {
                continue;
            }
            for (at, _) in line.match_indices("crate::") {
                let used: String = line[at + 7..]
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .collect();
                if !used.is_empty() && used != top {
                    edges.insert(used);
                }
            }
        }
    }
    graph
}

fn find_cycle(graph: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    fn visit(
        node: &str,
        graph: &BTreeMap<String, BTreeSet<String>>,
        path: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(at) = path.iter().position(|n| n == node) {
            let mut cycle = path[at..].to_vec();
            cycle.push(node.to_string());
            return Some(cycle);
        }
        if done.contains(node) {
            return None;
        }
        path.push(node.to_string());
        for next in graph.get(node).into_iter().flatten() {
            if let Some(cycle) = visit(next, graph, path, done) {
                return Some(cycle);
            }
        }
        path.pop();
        done.insert(node.to_string());
        None
    }
    let mut done = BTreeSet::new();
    graph
        .keys()
        .find_map(|node| visit(node, graph, &mut Vec::new(), &mut done))
}

#[test]
fn the_top_level_modules_form_no_import_cycle() {
    let graph = module_graph();
    assert!(graph.contains_key("pipeline") && graph.contains_key("server"));
    if let Some(cycle) = find_cycle(&graph) {
        panic!("import cycle: {}\ngraph: {graph:#?}", cycle.join(" -> "));
    }
}

#[test]
fn the_shared_leaves_import_nothing_from_the_request_path() {
    let graph = module_graph();
    for leaf in ["http", "context", "error", "canonical"] {
        let uses = graph.get(leaf).cloned().unwrap_or_default();
        for above in [
            "pipeline",
            "server",
            "admin",
            "app",
            "logstore",
            "providers",
        ] {
            assert!(!uses.contains(above), "{leaf} uses {above}: {uses:?}");
        }
    }
    let server = &graph["server"];
    assert!(
        !server.contains("providers") && !server.contains("policy"),
        "{server:?}"
    );
}
