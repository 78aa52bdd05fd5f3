//! The host's module structure, read from its source: no module depends
//! on a module that depends back on it (issue 11). A cycle between sibling
//! modules means a concept is split over both; it is caught here, when it
//! is introduced, rather than by a newcomer later.
//!
//! Dependencies are the `crate::…` and `super::…` paths in non-test code,
//! resolved to the module that defines them and cut to the first or
//! second level (`state`, `state::redis`). A parent and its own child are
//! one unit (a parent naming its child is how Rust modules work).

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use tocsin_tests::root;

/// Module path (`state::redis::txn`) of a source file under `host/src`.
fn module_of(rel: &str) -> String {
    let rel = rel.trim_end_matches(".rs");
    let mut parts: Vec<&str> = rel.split('/').collect();
    if parts.last() == Some(&"mod") || parts.last() == Some(&"lib") {
        parts.pop();
    }
    parts.join("::")
}

/// Every `.rs` file under `dir`, as (path relative to `base`, text).
fn sources(base: &Path, dir: &Path, out: &mut Vec<(String, String)>) -> anyhow::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_dir() {
            sources(base, &path, out)?;
        } else if path.extension().is_some_and(|e| e == "rs") {
            let rel = path
                .strip_prefix(base)?
                .to_string_lossy()
                .replace('\\', "/");
            out.push((rel, std::fs::read_to_string(&path)?));
        }
    }
    Ok(())
}

/// The `a::b::c` paths following `prefix` in `code`.
fn paths_after<'a>(code: &'a str, prefix: &str) -> Vec<&'a str> {
    let mut out = Vec::new();
    let mut rest = code;
    while let Some(i) = rest.find(prefix) {
        let before = rest[..i].chars().last();
        rest = &rest[i + prefix.len()..];
        if before.is_some_and(|c| c.is_alphanumeric() || c == '_') {
            continue;
        }
        let end = rest
            .find(|c: char| !(c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == ':'))
            .unwrap_or(rest.len());
        out.push(rest[..end].trim_end_matches(':'));
    }
    out
}

/// Non-test code without line comments.
fn code_of(text: &str) -> String {
    let text = match text.find("#[cfg(test)]") {
        Some(i) => &text[..i],
        None => text,
    };
    text.lines()
        .map(|l| match l.find("//") {
            Some(i) => &l[..i],
            None => l,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Dependencies between modules, cut to `level` path segments.
fn graph(level: usize) -> anyhow::Result<BTreeMap<String, BTreeSet<String>>> {
    let base = root().join("host/src");
    let mut files = Vec::new();
    sources(&base, &base, &mut files)?;
    let modules: BTreeSet<String> = files.iter().map(|(rel, _)| module_of(rel)).collect();
    let cut = |m: &str| m.split("::").take(level).collect::<Vec<_>>().join("::");
    let resolve = |path: &str| -> Option<String> {
        let parts: Vec<&str> = path.split("::").collect();
        (1..=parts.len())
            .rev()
            .map(|k| parts[..k].join("::"))
            .find(|m| modules.contains(m))
    };
    let mut g: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (rel, text) in &files {
        let me = module_of(rel);
        // `super::` from `a::b` (file `a/b.rs` or `a/b/mod.rs`) is `a`.
        let parent = me
            .rsplit_once("::")
            .map(|(p, _)| p.to_string())
            .unwrap_or_default();
        let code = code_of(text);
        let mut targets: Vec<String> = paths_after(&code, "crate::")
            .into_iter()
            .map(str::to_string)
            .collect();
        for p in paths_after(&code, "super::") {
            targets.push(if parent.is_empty() {
                p.to_string()
            } else {
                format!("{parent}::{p}")
            });
        }
        for t in targets {
            let Some(target) = resolve(&t) else { continue };
            let (a, b) = (cut(&me), cut(&target));
            // One unit: a module and its own descendants.
            if a.is_empty()
                || b.is_empty()
                || a == b
                || b.starts_with(&format!("{a}::"))
                || a.starts_with(&format!("{b}::"))
            {
                continue;
            }
            g.entry(a).or_default().insert(b);
        }
    }
    Ok(g)
}

/// The cycles of `g` (strongly connected components of two or more).
fn cycles(g: &BTreeMap<String, BTreeSet<String>>) -> Vec<Vec<String>> {
    let nodes: BTreeSet<&String> = g.keys().chain(g.values().flatten()).collect();
    let reach = |from: &String| -> BTreeSet<String> {
        let mut seen = BTreeSet::new();
        let mut todo = vec![from.clone()];
        while let Some(n) = todo.pop() {
            for m in g.get(&n).into_iter().flatten() {
                if seen.insert(m.clone()) {
                    todo.push(m.clone());
                }
            }
        }
        seen
    };
    let reaches: BTreeMap<&String, BTreeSet<String>> =
        nodes.iter().map(|n| (*n, reach(n))).collect();
    let mut out: Vec<Vec<String>> = Vec::new();
    for n in &nodes {
        let comp: Vec<String> = nodes
            .iter()
            .filter(|m| reaches[*n].contains(**m) && reaches[**m].contains(*n))
            .map(|m| (*m).clone())
            .collect();
        if comp.len() > 1 && !out.contains(&comp) {
            out.push(comp);
        }
    }
    out
}

#[test]
fn no_module_depends_on_a_module_that_depends_back() -> anyhow::Result<()> {
    for level in [1, 2] {
        let g = graph(level)?;
        assert!(
            g.values().map(BTreeSet::len).sum::<usize>() > 20,
            "the dependency scan found almost nothing at level {level}: {g:?}"
        );
        let found = cycles(&g);
        assert!(
            found.is_empty(),
            "module cycles at level {level}: {found:?}"
        );
    }
    Ok(())
}

#[test]
fn the_scan_sees_a_cycle() {
    let mut g: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    g.entry("api".into()).or_default().insert("engine".into());
    g.entry("engine".into())
        .or_default()
        .insert("source".into());
    g.entry("source".into()).or_default().insert("api".into());
    g.entry("state".into()).or_default().insert("event".into());
    assert_eq!(
        cycles(&g),
        vec![vec!["api".to_string(), "engine".into(), "source".into()]]
    );
    assert_eq!(
        paths_after(
            "use crate::state::redis::Txn; x.crate::no; super::ops::{a};",
            "crate::"
        ),
        vec!["state::redis", "no"]
    );
}
