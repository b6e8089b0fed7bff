//! The layout's promises, read from the sources: no import cycle between modules of any crate,
//! the CLI's folders depend on each other one way (commands → engines → clients) and so do the
//! test bed's (scenario → stack → servers), and no two of the CLI's files share a name.
//!
//! Regression (issue 27): `digest` and `verify` imported each other; `live/handover` →
//! `live/repair` → `live/verify` → `live/handover`; the stream writer's `replay` and `stall`
//! imported each other; and `verify.rs`, `repair.rs` and `bypass.rs` each existed twice.
//!
//! The reader is deliberately small: it finds every path that starts with `crate::`, `super::`
//! or `self::` (groups `{…}` included), and in a file that declares child modules every path
//! that starts with a child's name; it resolves each to the deepest module file it names,
//! following `pub use` re-exports, so `super::Precision` re-exported from `precision` is an
//! edge to `precision`. Comments and `#[cfg(test)]` modules are left out: tests may reach
//! anywhere.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use testbed::TestBed;

/// A module path inside one crate: `[]` is the crate root, `["live", "verify"]` is `live::verify`.
type ModPath = Vec<String>;

struct Crate {
    /// Module path → its source, comments and test modules removed.
    modules: BTreeMap<ModPath, String>,
}

impl Crate {
    fn read(src: &Path) -> Crate {
        let mut modules = BTreeMap::new();
        let mut stack = vec![src.to_path_buf()];
        while let Some(dir) = stack.pop() {
            for entry in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
                let path = entry.expect("a directory entry").path();
                let rel = path.strip_prefix(src).expect("under src").to_path_buf();
                if path.is_dir() {
                    // `src/bin/*` are separate crates.
                    if rel != Path::new("bin") {
                        stack.push(path);
                    }
                    continue;
                }
                if path.extension().is_some_and(|e| e == "rs") {
                    let text =
                        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
                    modules.insert(mod_path(&rel), without_tests(&without_comments(&text)));
                }
            }
        }
        Crate { modules }
    }

    fn is_module(&self, m: &[String]) -> bool {
        self.modules.contains_key(m)
    }

    /// The module a path names, starting at `base`: the deepest module file, or the module a
    /// `pub use` of the last module reached re-exports the next segment from.
    fn resolve(&self, base: &[String], rest: &[String], depth: usize) -> ModPath {
        let mut here: ModPath = base.to_vec();
        for (i, seg) in rest.iter().enumerate() {
            let mut next = here.clone();
            next.push(seg.clone());
            if self.is_module(&next) {
                here = next;
                continue;
            }
            if depth < 8
                && let Some(target) = self.reexport(&here, seg, depth)
            {
                let tail: Vec<String> = rest[i + 1..].to_vec();
                return self.resolve(&target, &tail, depth + 1);
            }
            break;
        }
        here
    }

    /// Where module `m` re-exports `name` from (`pub use x::y::name;` or `pub use x::{name, …}`).
    fn reexport(&self, m: &[String], name: &str, depth: usize) -> Option<ModPath> {
        let text = self.modules.get(m)?;
        for stmt in text.split(';') {
            let s = stmt.trim();
            let Some(body) = s.strip_prefix("pub use ").or_else(|| s.strip_prefix("pub(crate) use ")) else {
                continue;
            };
            for path in expand_use(body) {
                let last = path.last().map(String::as_str);
                let renamed = path.last().and_then(|l| l.split(" as ").nth(1)).map(str::trim);
                if last == Some(name) || renamed == Some(name) {
                    let (base, rest) = self.head(m, &path[..path.len() - 1])?;
                    let target = self.resolve(&base, &rest, depth + 1);
                    // The re-exported item lives in the module its path reaches.
                    return Some(target);
                }
            }
        }
        None
    }

    /// The base module and remaining segments of a path seen in module `m`.
    fn head(&self, m: &[String], path: &[String]) -> Option<(ModPath, Vec<String>)> {
        let mut base: ModPath = m.to_vec();
        let mut i = 0;
        match path.first().map(String::as_str) {
            Some("crate") => {
                base = Vec::new();
                i = 1;
            }
            Some("super") | Some("self") => {
                while let Some(seg) = path.get(i) {
                    match seg.as_str() {
                        "super" => {
                            base.pop();
                        }
                        "self" => {}
                        _ => break,
                    }
                    i += 1;
                }
            }
            Some(first) => {
                let mut child = m.to_vec();
                child.push(first.to_string());
                if !self.is_module(&child) {
                    return None;
                }
            }
            None => return None,
        }
        Some((base, path[i..].to_vec()))
    }

    /// Every module each module refers to (itself and its ancestors' files excluded only when
    /// the reference is to itself).
    fn edges(&self) -> BTreeMap<ModPath, BTreeSet<ModPath>> {
        let mut edges: BTreeMap<ModPath, BTreeSet<ModPath>> = BTreeMap::new();
        for (m, text) in &self.modules {
            let out = edges.entry(m.clone()).or_default();
            for path in paths_in(text) {
                let Some((base, rest)) = self.head(m, &path) else { continue };
                let target = self.resolve(&base, &rest, 0);
                if &target != m {
                    out.insert(target);
                }
            }
        }
        edges
    }
}

/// `src/live/verify.rs` → `["live", "verify"]`; `mod.rs`, `main.rs` and `lib.rs` name their folder.
fn mod_path(rel: &Path) -> ModPath {
    let mut parts: Vec<String> =
        rel.with_extension("").iter().map(|p| p.to_string_lossy().into_owned()).collect();
    if matches!(parts.last().map(String::as_str), Some("mod" | "main" | "lib")) {
        parts.pop();
    }
    parts
}

/// The text without `//` and `/* */` comments and without string literals' contents.
fn without_comments(text: &str) -> String {
    let b = text.as_bytes();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    while i < b.len() {
        if b[i..].starts_with(b"//") {
            while i < b.len() && b[i] != b'\n' {
                i += 1;
            }
        } else if b[i..].starts_with(b"/*") {
            let mut depth = 0;
            while i < b.len() {
                if b[i..].starts_with(b"/*") {
                    depth += 1;
                    i += 2;
                } else if b[i..].starts_with(b"*/") {
                    depth -= 1;
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    i += 1;
                }
            }
        } else if b[i] == b'"' && (i == 0 || b[i - 1] != b'\'') {
            // A string: skip to its unescaped end (raw strings hold no paths we care about).
            out.push('"');
            i += 1;
            while i < b.len() && b[i] != b'"' {
                if b[i] == b'\\' {
                    i += 1;
                }
                i += 1;
            }
            out.push('"');
            i += 1;
        } else {
            let ch = text[i..].chars().next().expect("a char at a char boundary");
            out.push(ch);
            i += ch.len_utf8();
        }
    }
    out
}

/// The text without `#[cfg(test)] mod … { … }` blocks.
fn without_tests(text: &str) -> String {
    let mut out = text.to_string();
    while let Some(at) = out.find("#[cfg(test)]") {
        let after = &out[at..];
        let Some(open) = after.find('{') else { break };
        let is_mod = after[..open].contains("mod ");
        if !is_mod {
            // `#[cfg(test)]` on an item that is not a module: drop the attribute only.
            out.replace_range(at..at + "#[cfg(test)]".len(), "");
            continue;
        }
        let mut depth = 0;
        let mut end = out.len();
        for (i, c) in after.char_indices().skip(open) {
            match c {
                '{' => depth += 1,
                '}' => {
                    depth -= 1;
                    if depth == 0 {
                        end = at + i + 1;
                        break;
                    }
                }
                _ => {}
            }
        }
        out.replace_range(at..end, "");
    }
    out
}

fn is_ident_byte(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'_'
}

/// Every path in the text that could name a module: `a::b::c`, groups expanded.
fn paths_in(text: &str) -> Vec<Vec<String>> {
    let b = text.as_bytes();
    let mut paths = Vec::new();
    let mut i = 0;
    while i < b.len() {
        let starts = is_ident_byte(b[i])
            && (i == 0 || !(is_ident_byte(b[i - 1]) || (i >= 2 && &b[i - 2..i] == b"::")));
        if !starts {
            i += 1;
            continue;
        }
        let mut j = i;
        while j < b.len() && is_ident_byte(b[j]) {
            j += 1;
        }
        if !b[j..].starts_with(b"::") {
            i = j;
            continue;
        }
        // A path: read it to its end, groups included (balanced braces).
        let mut k = j;
        let mut depth = 0;
        while k < b.len() {
            let c = b[k];
            if c == b'{' {
                depth += 1;
            } else if c == b'}' {
                if depth == 0 {
                    break;
                }
                depth -= 1;
                if depth == 0 {
                    k += 1;
                    break;
                }
            } else {
                // Outside a group a path is identifiers and `::`; inside, lists of them too.
                let in_path = is_ident_byte(c) || c == b':';
                let in_group = c == b',' || c.is_ascii_whitespace() || c == b'*';
                if !(in_path || (depth > 0 && in_group)) {
                    break;
                }
            }
            k += 1;
        }
        paths.extend(expand_use(&text[i..k]));
        i = k.max(j);
    }
    paths
}

/// `a::{b, c::{d, self}}` → `[a, b]`, `[a, c, d]`, `[a, c]`. A segment keeps an ` as x` rename.
fn expand_use(text: &str) -> Vec<Vec<String>> {
    let text = text.trim();
    let Some(open) = text.find('{') else {
        let segs: Vec<String> =
            text.split("::").map(|s| s.trim().to_string()).filter(|s| !s.is_empty() && s != "*").collect();
        return if segs.is_empty() { Vec::new() } else { vec![segs] };
    };
    let prefix: Vec<String> =
        text[..open].split("::").map(|s| s.trim().to_string()).filter(|s| !s.is_empty()).collect();
    let inner = text[open + 1..].trim_end().strip_suffix('}').unwrap_or(&text[open + 1..]);
    let mut out = Vec::new();
    // Split the group on top-level commas.
    let mut depth = 0;
    let mut start = 0;
    let mut items = Vec::new();
    for (i, c) in inner.char_indices() {
        match c {
            '{' => depth += 1,
            '}' => depth -= 1,
            ',' if depth == 0 => {
                items.push(&inner[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    items.push(&inner[start..]);
    for item in items {
        let item = item.trim();
        if item.is_empty() || item == "*" {
            continue;
        }
        if item == "self" || item.starts_with("self as ") {
            out.push(prefix.clone());
            continue;
        }
        for sub in expand_use(item) {
            let mut p = prefix.clone();
            p.extend(sub);
            out.push(p);
        }
    }
    out
}

/// The strongly connected components with more than one module (Tarjan).
fn cycles(edges: &BTreeMap<ModPath, BTreeSet<ModPath>>) -> Vec<Vec<ModPath>> {
    struct State<'a> {
        edges: &'a BTreeMap<ModPath, BTreeSet<ModPath>>,
        index: BTreeMap<&'a ModPath, usize>,
        low: BTreeMap<&'a ModPath, usize>,
        stack: Vec<&'a ModPath>,
        on: BTreeSet<&'a ModPath>,
        next: usize,
        found: Vec<Vec<ModPath>>,
    }
    fn visit<'a>(s: &mut State<'a>, v: &'a ModPath) {
        s.index.insert(v, s.next);
        s.low.insert(v, s.next);
        s.next += 1;
        s.stack.push(v);
        s.on.insert(v);
        if let Some(ws) = s.edges.get(v) {
            for w in ws {
                let Some((w, _)) = s.edges.get_key_value(w) else { continue };
                if !s.index.contains_key(w) {
                    visit(s, w);
                    let lw = s.low[w];
                    let lv = s.low.get_mut(v).expect("visited");
                    *lv = (*lv).min(lw);
                } else if s.on.contains(w) {
                    let iw = s.index[w];
                    let lv = s.low.get_mut(v).expect("visited");
                    *lv = (*lv).min(iw);
                }
            }
        }
        if s.low[v] == s.index[v] {
            let mut comp = Vec::new();
            while let Some(w) = s.stack.pop() {
                s.on.remove(w);
                comp.push(w.clone());
                if w == v {
                    break;
                }
            }
            if comp.len() > 1 {
                comp.sort();
                s.found.push(comp);
            }
        }
    }
    let mut s = State {
        edges,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        on: BTreeSet::new(),
        next: 0,
        found: Vec::new(),
    };
    for v in edges.keys() {
        if !s.index.contains_key(v) {
            visit(&mut s, v);
        }
    }
    s.found
}

fn show(m: &[String]) -> String {
    if m.is_empty() { "<crate root>".to_string() } else { m.join("::") }
}

/// Every crate of the workspace, by its `src` folder.
fn workspace_sources() -> Vec<PathBuf> {
    let root = TestBed::repo_root();
    let mut dirs = vec![root.join("shared/src"), root.join("migration-cli/src"), root.join("tests/src")];
    for f in ["kinesis-writer", "stream-writer", "query-router"] {
        dirs.push(root.join("functions").join(f).join("src"));
    }
    dirs
}

#[test]
fn no_import_cycle_in_any_crate() {
    let mut found = Vec::new();
    for src in workspace_sources() {
        let krate = Crate::read(&src);
        assert!(krate.modules.len() > 3, "{}: the modules were read", src.display());
        for cycle in cycles(&krate.edges()) {
            let names: Vec<String> = cycle.iter().map(|m| show(m)).collect();
            found.push(format!("{}: {}", src.display(), names.join(" ↔ ")));
        }
    }
    assert!(
        found.is_empty(),
        "modules that import each other (directly or through others):\n{}",
        found.join("\n")
    );
}

/// What each top-level folder of the CLI may use besides itself, `shared`, and the two modules
/// every layer reports through (`exit`, `output`): commands (`live`, `seeding`'s command) →
/// engines (`compare`, `scheduled`, `seeding`'s parts) → clients (`influx`, `aws`).
const CLI_LAYERS: &[(&str, &[&str])] = &[
    ("influx", &[]),
    ("aws", &[]),
    ("compare", &["influx"]),
    ("scheduled", &["influx", "compare"]),
    ("seeding", &["influx", "compare", "scheduled", "aws"]),
    ("live", &["influx", "compare", "scheduled", "aws", "seeding"]),
];

/// Top-level modules every layer may use.
const CLI_COMMON: &[&str] = &["exit", "output"];

/// The test bed's folders, the same way: the scenario runs on the stack, which runs the servers.
const TESTBED_LAYERS: &[(&str, &[&str])] =
    &[("servers", &[]), ("stack", &["servers"]), ("scenario", &["stack", "servers"])];

/// Top-level modules of the test bed every folder may use.
const TESTBED_COMMON: &[&str] = &["bed", "flux", "reads"];

/// Every use of one top-level folder by another that `layers` does not allow.
fn against_layers(src: &Path, layers: &[(&str, &[&str])], common: &[&str]) -> Vec<String> {
    let krate = Crate::read(src);
    let table: BTreeMap<&str, &[&str]> = layers.iter().copied().collect();
    let mut wrong = Vec::new();
    let mut seen = BTreeSet::new();
    for (from, tos) in krate.edges() {
        let Some(top) = from.first() else { continue };
        seen.insert(top.clone());
        let Some(allowed) = table.get(top.as_str()) else {
            if krate.modules.keys().any(|m| m.len() > 1 && m.first() == Some(top)) {
                wrong.push(format!("{}: a folder the layer table does not know", show(&from)));
            }
            continue;
        };
        for to in tos {
            let Some(dest) = to.first() else {
                // The crate root only re-exports; what it re-exports is resolved to its module.
                wrong.push(format!("{} uses the crate root", show(&from)));
                continue;
            };
            if dest == top || common.contains(&dest.as_str()) || allowed.contains(&dest.as_str()) {
                continue;
            }
            wrong.push(format!("{} uses {}", show(&from), show(&to)));
        }
    }
    for (layer, _) in layers {
        assert!(seen.contains(*layer), "{}: the crate has a `{layer}` folder", src.display());
    }
    wrong
}

#[test]
fn the_cli_depends_one_way_commands_then_engines_then_clients() {
    let wrong = against_layers(&TestBed::repo_root().join("migration-cli/src"), CLI_LAYERS, CLI_COMMON);
    assert!(wrong.is_empty(), "dependencies against the layering:\n{}", wrong.join("\n"));
}

#[test]
fn the_test_bed_depends_one_way_scenario_then_stack_then_servers() {
    let wrong = against_layers(&TestBed::repo_root().join("tests/src"), TESTBED_LAYERS, TESTBED_COMMON);
    assert!(wrong.is_empty(), "dependencies against the layering:\n{}", wrong.join("\n"));
}

#[test]
fn no_two_files_of_the_cli_share_a_name() {
    let krate = Crate::read(&TestBed::repo_root().join("migration-cli/src"));
    let mut by_name: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for m in krate.modules.keys() {
        if let Some(name) = m.last() {
            by_name.entry(name.clone()).or_default().push(show(m));
        }
    }
    let twice: Vec<String> = by_name
        .into_iter()
        .filter(|(_, v)| v.len() > 1)
        .map(|(n, v)| format!("{n}: {}", v.join(", ")))
        .collect();
    assert!(
        twice.is_empty(),
        "one name per concept; these names are used more than once:\n{}",
        twice.join("\n")
    );
}

#[test]
fn the_reader_sees_paths_groups_and_reexports() {
    let paths = paths_in("use crate::a::{b, c::{d, self}};\nlet x = super::e::f(); y::z");
    assert_eq!(
        paths,
        vec![
            vec!["crate", "a", "b"],
            vec!["crate", "a", "c", "d"],
            vec!["crate", "a", "c"],
            vec!["super", "e", "f"],
            vec!["y", "z"],
        ]
        .into_iter()
        .map(|p| p.into_iter().map(String::from).collect::<Vec<_>>())
        .collect::<Vec<_>>()
    );
    assert_eq!(without_comments("a // crate::x\nb /* super::y */ c \"crate::z\""), "a \nb  c \"\"");
    assert_eq!(
        without_tests("fn a() {}\n#[cfg(test)]\nmod tests { fn b() { {} } }\nfn c() {}"),
        "fn a() {}\n\nfn c() {}"
    );

    // A two-module cycle and a re-export followed to the module that holds the item.
    let mut modules = BTreeMap::new();
    let m = |s: &str| -> ModPath { s.split("::").filter(|x| !x.is_empty()).map(String::from).collect() };
    modules.insert(m(""), "mod p; mod q; pub use p::Thing;".to_string());
    modules.insert(m("p"), "use crate::q::other;".to_string());
    modules.insert(m("q"), "use crate::Thing; pub fn other() {}".to_string());
    let krate = Crate { modules };
    let edges = krate.edges();
    assert!(edges[&m("q")].contains(&m("p")), "{edges:?}");
    assert_eq!(cycles(&edges), vec![vec![m("p"), m("q")]]);
}
