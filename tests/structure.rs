//! The workspace's structure rules, checked on the source itself.
//!
//! **No import circles inside a crate.** Two sibling modules that use each other are one
//! module in two files: neither can be read, tested or moved alone. This test parses every
//! library's `src/` with `syn`, collects each module's `crate::…` and `super::…` references
//! (outside `#[cfg(test)]` items), lifts every reference to the two sibling modules it
//! connects (a parent and its child may use each other: that is nesting, not a circle), and
//! fails on any cycle among siblings, naming the files that close it.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use syn::visit::Visit;

/// Module path inside a crate: `[]` is the crate root, `["file", "small"]` is `file::small`.
type ModPath = Vec<String>;

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// Every library crate of the workspace, by folder.
fn crates() -> Vec<PathBuf> {
    let text = std::fs::read_to_string(repo().join("Cargo.toml")).unwrap();
    let members = text
        .lines()
        .find(|l| l.trim_start().starts_with("members"))
        .expect("workspace members line");
    let list = &members[members.find('[').unwrap() + 1..members.rfind(']').unwrap()];
    list.split(',')
        .map(|m| m.trim().trim_matches('"'))
        .filter(|m| !m.is_empty())
        .map(|m| repo().join(m))
        .filter(|dir| dir.join("src/lib.rs").exists())
        .collect()
}

/// `src/a/b.rs` and `src/a/b/mod.rs` → `["a", "b"]`; `src/lib.rs` → `[]`.
fn module_of(src: &Path, file: &Path) -> Option<ModPath> {
    let rel = file.strip_prefix(src).ok()?;
    let mut parts: Vec<String> = rel
        .iter()
        .map(|p| p.to_string_lossy().into_owned())
        .collect();
    let last = parts.pop()?;
    match last.as_str() {
        "lib.rs" if parts.is_empty() => Some(parts),
        "main.rs" if parts.is_empty() => None, // the binary is another crate
        "mod.rs" => Some(parts),
        _ => {
            parts.push(last.strip_suffix(".rs")?.to_string());
            Some(parts)
        }
    }
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

fn is_cfg_test(attrs: &[syn::Attribute]) -> bool {
    attrs.iter().any(|a| {
        a.path().is_ident("cfg")
            && a.meta
                .require_list()
                .is_ok_and(|l| l.tokens.to_string().split_whitespace().any(|t| t == "test"))
    })
}

/// Collects the module paths a file refers to through `crate::` and `super::`.
struct Refs {
    /// The module the visitor is in (the file's module plus inline `mod` blocks).
    here: ModPath,
    found: Vec<ModPath>,
}

impl Refs {
    fn path(&mut self, segs: &[String]) {
        let Some(first) = segs.first() else { return };
        let mut base = match first.as_str() {
            "crate" => Vec::new(),
            "super" => {
                let mut b = self.here.clone();
                b.pop();
                b
            }
            _ => return,
        };
        let mut rest = &segs[1..];
        while rest.first().is_some_and(|s| s == "super") {
            base.pop();
            rest = &rest[1..];
        }
        base.extend(rest.iter().cloned());
        self.found.push(base);
    }

    fn use_tree(&mut self, prefix: &mut Vec<String>, tree: &syn::UseTree) {
        match tree {
            syn::UseTree::Path(p) => {
                prefix.push(p.ident.to_string());
                self.use_tree(prefix, &p.tree);
                prefix.pop();
            }
            syn::UseTree::Name(n) => {
                prefix.push(n.ident.to_string());
                self.path(prefix);
                prefix.pop();
            }
            syn::UseTree::Rename(r) => {
                prefix.push(r.ident.to_string());
                self.path(prefix);
                prefix.pop();
            }
            syn::UseTree::Glob(_) => self.path(prefix),
            syn::UseTree::Group(g) => {
                for t in &g.items {
                    self.use_tree(prefix, t);
                }
            }
        }
    }
}

impl<'ast> Visit<'ast> for Refs {
    fn visit_item(&mut self, i: &'ast syn::Item) {
        let attrs: &[syn::Attribute] = match i {
            syn::Item::Mod(m) => &m.attrs,
            syn::Item::Fn(f) => &f.attrs,
            syn::Item::Impl(x) => &x.attrs,
            syn::Item::Use(u) => &u.attrs,
            syn::Item::Struct(s) => &s.attrs,
            syn::Item::Enum(e) => &e.attrs,
            syn::Item::Const(c) => &c.attrs,
            syn::Item::Static(s) => &s.attrs,
            syn::Item::Trait(t) => &t.attrs,
            syn::Item::Type(t) => &t.attrs,
            syn::Item::Macro(m) => &m.attrs,
            _ => &[],
        };
        if is_cfg_test(attrs) {
            return;
        }
        match i {
            syn::Item::Use(u) => self.use_tree(&mut Vec::new(), &u.tree),
            syn::Item::Mod(m) if m.content.is_some() => {
                self.here.push(m.ident.to_string());
                syn::visit::visit_item_mod(self, m);
                self.here.pop();
            }
            _ => syn::visit::visit_item(self, i),
        }
    }

    fn visit_path(&mut self, p: &'ast syn::Path) {
        let segs: Vec<String> = p.segments.iter().map(|s| s.ident.to_string()).collect();
        self.path(&segs);
        syn::visit::visit_path(self, p);
    }
}

/// The cycles among sibling modules of one crate, each as "a → b (file) → a (file)".
fn circles(krate: &Path) -> Vec<String> {
    let src = krate.join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let modules: BTreeMap<ModPath, PathBuf> = files
        .iter()
        .filter_map(|f| Some((module_of(&src, f)?, f.clone())))
        .collect();
    // Modules declared `#[cfg(test)] mod x;` (and their children) are tests, not structure.
    let mut test_only: Vec<ModPath> = Vec::new();
    for (module, file) in &modules {
        let text = std::fs::read_to_string(file).unwrap();
        let Ok(ast) = syn::parse_file(&text) else {
            continue;
        };
        for item in &ast.items {
            if let syn::Item::Mod(m) = item {
                if m.content.is_none() && is_cfg_test(&m.attrs) {
                    let mut p = module.clone();
                    p.push(m.ident.to_string());
                    test_only.push(p);
                }
            }
        }
    }
    // (from, to) sibling edge → a file that makes it.
    let mut edges: BTreeMap<(ModPath, ModPath), PathBuf> = BTreeMap::new();
    for (module, file) in &modules {
        if test_only.iter().any(|t| module.starts_with(t)) {
            continue;
        }
        let text = std::fs::read_to_string(file).unwrap();
        let ast = syn::parse_file(&text)
            .unwrap_or_else(|e| panic!("{}: cannot parse: {e}", file.display()));
        let mut refs = Refs {
            here: module.clone(),
            found: Vec::new(),
        };
        refs.visit_file(&ast);
        for r in refs.found {
            // The longest prefix of the reference that is a module file of the crate.
            let Some(target) = (0..=r.len())
                .rev()
                .map(|n| r[..n].to_vec())
                .find(|p| modules.contains_key(p))
            else {
                continue;
            };
            let common = module
                .iter()
                .zip(&target)
                .take_while(|(a, b)| a == b)
                .count();
            if common == module.len() || common == target.len() {
                continue; // the same module, or a parent and its child
            }
            let from = module[..=common].to_vec();
            let to = target[..=common].to_vec();
            edges.entry((from, to)).or_insert_with(|| file.clone());
        }
    }
    // Any cycle: depth-first search from every node over the sibling edges.
    let mut graph: BTreeMap<&ModPath, BTreeSet<&ModPath>> = BTreeMap::new();
    for (from, to) in edges.keys() {
        graph.entry(from).or_default().insert(to);
    }
    let mut found = BTreeSet::new();
    for start in graph.keys() {
        let mut stack: Vec<(&ModPath, Vec<&ModPath>)> = vec![(start, vec![start])];
        while let Some((node, path)) = stack.pop() {
            for next in graph.get(node).into_iter().flatten() {
                if next == start {
                    let mut cycle: Vec<&ModPath> = path.clone();
                    // One spelling per cycle: rotate to its smallest module.
                    let min = (0..cycle.len()).min_by_key(|&i| cycle[i]).unwrap();
                    cycle.rotate_left(min);
                    let mut text = cycle[0].join("::");
                    for i in 0..cycle.len() {
                        let (a, b) = (cycle[i], cycle[(i + 1) % cycle.len()]);
                        let file = &edges[&(a.clone(), b.clone())];
                        let rel = file.strip_prefix(repo()).unwrap_or(file);
                        text.push_str(&format!(" → {} ({})", b.join("::"), rel.display()));
                    }
                    found.insert(text);
                } else if !path.contains(next) && path.len() < 8 {
                    let mut p = path.clone();
                    p.push(next);
                    stack.push((next, p));
                }
            }
        }
    }
    found.into_iter().collect()
}

#[test]
fn no_module_imports_a_module_that_imports_it_back() {
    let crates = crates();
    assert!(crates.len() >= 6, "found only {crates:?}");
    let mut all = Vec::new();
    for k in &crates {
        for c in circles(k) {
            all.push(format!(
                "{}: {c}",
                k.strip_prefix(repo()).unwrap_or(k).display()
            ));
        }
    }
    assert!(
        all.is_empty(),
        "import circles (cut each: move what both sides need into its own module, or make one the \
         other's child):\n  {}",
        all.join("\n  ")
    );
}

#[test]
fn the_checker_finds_a_circle_and_allows_nesting() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    std::fs::create_dir_all(src.join("file")).unwrap();
    std::fs::write(src.join("lib.rs"), "mod a; mod b; mod file;").unwrap();
    std::fs::write(src.join("a.rs"), "use crate::b::B; pub struct A;").unwrap();
    std::fs::write(src.join("b.rs"), "pub struct B(crate::a::A);").unwrap();
    std::fs::write(
        src.join("file.rs"),
        "mod small; use self::small::S; #[cfg(test)] mod tests;",
    )
    .unwrap();
    std::fs::create_dir_all(src.join("file")).unwrap();
    std::fs::write(src.join("file/tests.rs"), "use crate::b::B;").unwrap();
    std::fs::write(src.join("b2.rs"), "").unwrap();
    std::fs::write(
        src.join("file/small.rs"),
        "use super::x; #[cfg(test)] mod tests { use crate::a::A; }",
    )
    .unwrap();
    let found = circles(dir.path());
    assert_eq!(found.len(), 1, "{found:?}");
    assert!(found[0].starts_with("a → b ("), "{found:?}");
}
