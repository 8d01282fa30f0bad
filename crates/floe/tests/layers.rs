//! The modules of `floe` form layers: each may use only the layers below it, so there is no
//! import circle. This test reads the sources (a module's `crate::…` paths outside comments
//! and test modules, with the crate root's re-exports resolved to the module they come from)
//! and fails on a use of a higher or equal layer, or on a module no layer lists.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// Bottom to top. A module may use the modules of earlier lines only.
const LAYERS: &[&[&str]] = &[
    // Errors, settings, pure decisions with no runtime.
    &["error", "incarnation", "placement", "retry", "app_data"],
    &["session", "metrics", "codec"],
    &["config"],
    // One call: `RawCall` and the `Caller` the actor API holds.
    &["call"],
    // Peers' addresses and the wire forms of calls and failures.
    &["link"],
    &["wire"],
    // The actor API: traits and the handler's context.
    &["actor"],
    // The Raft client: proposals, the leader protocol, linearizable reads.
    &["proposer"],
    // Activations, the call loop, forwarding, the read index.
    &["runtime"],
    // Joining, the failure detector, self-fencing.
    &["membership"],
    // The cluster view.
    &["cluster"],
    // The node's network service: one dispatch per sub-protocol.
    &["service"],
    // Actors that ship with Floe.
    &["builtin"],
    // The node builder.
    &["node"],
];

fn rank() -> BTreeMap<&'static str, usize> {
    LAYERS
        .iter()
        .enumerate()
        .flat_map(|(i, l)| l.iter().map(move |m| (*m, i)))
        .collect()
}

/// Source without line comments (doc links are not dependencies) and without the test module.
fn code(text: &str) -> String {
    let text = text
        .find("#[cfg(test)]\nmod tests")
        .map_or(text, |i| &text[..i]);
    text.lines()
        .map(|l| l.split_once("//").map_or(l, |(code, _)| code))
        .collect::<Vec<_>>()
        .join("\n")
}

/// The top-level modules a piece of code names through `crate::`, including the items of a
/// `crate::{a, b::c}` group.
fn named(code: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut rest = code;
    while let Some(i) = rest.find("crate::") {
        rest = &rest[i + "crate::".len()..];
        if let Some(group) = rest.strip_prefix('{') {
            let end = group.find('}').unwrap_or(group.len());
            for item in group[..end].split(',') {
                let head: String = item
                    .trim()
                    .chars()
                    .take_while(|c| c.is_alphanumeric() || *c == '_')
                    .collect();
                if !head.is_empty() {
                    out.insert(head);
                }
            }
        } else {
            let head: String = rest
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect();
            if !head.is_empty() {
                out.insert(head);
            }
        }
    }
    out
}

/// Names the crate root re-exports, mapped to the module they come from
/// (`pub use actor::{Actor, Context};` maps `Actor` and `Context` to `actor`).
fn reexports(lib: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let lib = code(lib);
    let mut rest = lib.as_str();
    while let Some(i) = rest.find("pub use ") {
        rest = &rest[i + "pub use ".len()..];
        let end = rest.find(';').unwrap_or(rest.len());
        let stmt = &rest[..end];
        if let Some((module, items)) = stmt.split_once("::") {
            let module = module.trim().to_string();
            let items = items.trim().trim_start_matches('{').trim_end_matches('}');
            for item in items.split(',') {
                let name = item.trim().rsplit("::").next().unwrap_or("").trim();
                if !name.is_empty() {
                    out.insert(name.to_string(), module.clone());
                }
            }
        }
    }
    out
}

fn sources(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("read src") {
        let path = entry.expect("dir entry").path();
        if path.is_dir() {
            sources(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

#[test]
fn every_module_uses_only_the_layers_below_it() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let lib = std::fs::read_to_string(src.join("lib.rs")).expect("lib.rs");
    let roots = reexports(&lib);
    let rank = rank();
    let mut files = Vec::new();
    sources(&src, &mut files);
    let mut wrong = Vec::new();
    let mut unplaced = BTreeSet::new();
    for file in files {
        let rel = file.strip_prefix(&src).expect("under src");
        let top = rel
            .components()
            .next()
            .and_then(|c| c.as_os_str().to_str())
            .unwrap_or("")
            .trim_end_matches(".rs")
            .to_string();
        if top == "lib" {
            continue;
        }
        let Some(&mine) = rank.get(top.as_str()) else {
            unplaced.insert(top);
            continue;
        };
        let text = std::fs::read_to_string(&file).expect("source");
        for name in named(&code(&text)) {
            let module = roots.get(&name).cloned().unwrap_or(name.clone());
            if module == top {
                continue;
            }
            match rank.get(module.as_str()) {
                Some(&theirs) if theirs < mine => {}
                Some(_) => wrong.push(format!("{} uses crate::{name} ({module})", rel.display())),
                // Not a module of this crate (a macro path such as `crate::__private`).
                None => {}
            }
        }
    }
    assert!(
        unplaced.is_empty(),
        "modules in no layer (add them to LAYERS): {unplaced:?}"
    );
    assert!(
        wrong.is_empty(),
        "uses of a layer that is not below:\n{}",
        wrong.join("\n")
    );
}

#[test]
fn the_reader_sees_groups_reexports_and_ignores_comments() {
    let c = code("use crate::{a::X, b};\n// crate::hidden\nlet x = crate::c::f(); // crate::d\n");
    assert_eq!(
        named(&c),
        ["a", "b", "c"].into_iter().map(String::from).collect()
    );
    let r = reexports("pub use actor::{Actor, Context};\npub use wire::from_wire;\n");
    assert_eq!(r.get("Context").map(String::as_str), Some("actor"));
    assert_eq!(r.get("from_wire").map(String::as_str), Some("wire"));
    let tests_cut = code("use crate::a;\n#[cfg(test)]\nmod tests {\n use crate::node;\n}\n");
    assert!(!named(&tests_cut).contains("node"));
}
