//! The README and `docs/` stay true to the repository:
//! - the README is an entry page (at most 250 lines);
//! - every link resolves inside the repository (a file that exists, a heading that exists);
//!   no link leaves it, except to loopback addresses a running demo serves;
//! - each config reference table lists exactly the keys of that server's `example.toml`
//!   (which each crate's unit tests parse with the real config loader), so a key added to
//!   the code and the example cannot go undocumented, and a documented key cannot vanish;
//! - the origin's and the edge's `example.toml` show every `[tls]` key of docs/tls.md in a
//!   commented-out block which, uncommented, the server's own config loader accepts.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn markdown_files() -> Vec<PathBuf> {
    let mut v = vec![repo().join("README.md")];
    for e in std::fs::read_dir(repo().join("docs")).unwrap().flatten() {
        if e.path().extension().is_some_and(|x| x == "md") {
            v.push(e.path());
        }
    }
    v.sort();
    v
}

/// GitHub's heading anchors: lowercase, spaces → `-`, punctuation dropped.
fn anchor(heading: &str) -> String {
    heading
        .trim()
        .to_lowercase()
        .chars()
        .filter_map(|c| match c {
            ' ' => Some('-'),
            c if c.is_alphanumeric() || c == '-' || c == '_' => Some(c),
            _ => None,
        })
        .collect()
}

fn anchors(text: &str) -> BTreeSet<String> {
    let mut in_code = false;
    let mut out = BTreeSet::new();
    for line in text.lines() {
        if line.starts_with("```") {
            in_code = !in_code;
        } else if !in_code && line.starts_with('#') {
            out.insert(anchor(line.trim_start_matches('#')));
        }
    }
    out
}

/// `[text](target)` links outside code blocks and inline code.
fn links(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut in_code = false;
    for line in text.lines() {
        if line.starts_with("```") {
            in_code = !in_code;
            continue;
        }
        if in_code {
            continue;
        }
        // Drop inline code spans, which may hold `](` legitimately.
        let mut plain = String::new();
        for (i, part) in line.split('`').enumerate() {
            if i % 2 == 0 {
                plain.push_str(part);
            }
        }
        let mut rest = plain.as_str();
        while let Some(i) = rest.find("](") {
            let after = &rest[i + 2..];
            let Some(end) = after.find(')') else { break };
            out.push(after[..end].to_string());
            rest = &after[end..];
        }
    }
    out
}

#[test]
fn readme_is_an_entry_page() {
    let text = std::fs::read_to_string(repo().join("README.md")).unwrap();
    let n = text.lines().count();
    assert!(n <= 250, "README.md has {n} lines; detail belongs in docs/");
    for doc in ["origin", "edge", "geodns", "player", "deploy", "benchmarks"] {
        assert!(
            text.contains(&format!("docs/{doc}.md")),
            "README.md does not point to docs/{doc}.md"
        );
    }
}

#[test]
fn every_link_stays_in_the_repository_and_resolves() {
    let mut bad = Vec::new();
    for file in markdown_files() {
        let text = std::fs::read_to_string(&file).unwrap();
        let name = file.strip_prefix(repo()).unwrap().display().to_string();
        for link in links(&text) {
            if let Some(rest) = link
                .strip_prefix("http://")
                .or_else(|| link.strip_prefix("https://"))
            {
                let host = rest.split(['/', ':']).next().unwrap_or("");
                if !(host.starts_with("127.") || host == "localhost" || host == "[::1]") {
                    bad.push(format!("{name}: {link} leaves the repository"));
                }
                continue;
            }
            let (path, frag) = match link.split_once('#') {
                Some((p, f)) => (p, Some(f)),
                None => (link.as_str(), None),
            };
            let target = if path.is_empty() {
                file.clone()
            } else {
                file.parent().unwrap().join(path)
            };
            let Ok(target) = target.canonicalize() else {
                bad.push(format!("{name}: {link} does not exist"));
                continue;
            };
            if !target.starts_with(repo().canonicalize().unwrap()) {
                bad.push(format!("{name}: {link} leaves the repository"));
                continue;
            }
            if let Some(frag) = frag {
                let t = std::fs::read_to_string(&target).unwrap_or_default();
                if !anchors(&t).contains(frag) {
                    bad.push(format!("{name}: {link}: no heading #{frag}"));
                }
            }
        }
    }
    assert!(bad.is_empty(), "broken links:\n  {}", bad.join("\n  "));
}

/// The keys named in the first column of the table under `heading` in `doc`:
/// "`a` / `b`", "`[health] fall` / `rise`", "`[[pop]] name, latitude`" → a, b,
/// health.fall, health.rise, pop.name, pop.latitude.
fn documented_keys(doc: &str, heading: &str) -> BTreeSet<String> {
    let text = std::fs::read_to_string(repo().join(doc)).unwrap();
    let start = text
        .find(heading)
        .unwrap_or_else(|| panic!("{doc}: no heading {heading:?}"));
    let mut keys = BTreeSet::new();
    let mut seen_table = false;
    for line in text[start..].lines().skip(1) {
        if line.starts_with('#') {
            break;
        }
        if !line.starts_with('|') {
            if seen_table {
                break;
            }
            continue;
        }
        seen_table = true;
        let first = line.split('|').nth(1).unwrap_or("").trim();
        if first == "key" || first.starts_with("---") {
            continue;
        }
        let cell: String = first.chars().filter(|c| *c != '`').collect();
        let (prefix, rest) = match cell.rfind(']') {
            Some(i) => (
                cell[..=i].trim_matches(['[', ']']).to_string() + ".",
                &cell[i + 1..],
            ),
            None => (String::new(), cell.as_str()),
        };
        for word in rest.split(['/', ',', '|', ' ']) {
            let w = word.trim();
            if !w.is_empty()
                && w.chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
            {
                keys.insert(format!("{prefix}{w}"));
            }
        }
    }
    keys
}

/// Every key of `example.toml`, commented-out ones included (`# key = value` lines that
/// document an optional key), tables as `table.key`.
fn example_keys(file: &str) -> BTreeSet<String> {
    let text = std::fs::read_to_string(repo().join(file)).unwrap();
    let value: toml::Table = toml::from_str(&text).unwrap();
    let mut keys = BTreeSet::new();
    fn walk(prefix: &str, t: &toml::Table, keys: &mut BTreeSet<String>) {
        for (k, v) in t {
            match v {
                toml::Value::Table(inner) => walk(&format!("{prefix}{k}."), inner, keys),
                toml::Value::Array(a) if a.iter().all(|x| x.is_table()) && !a.is_empty() => {
                    for x in a {
                        walk(&format!("{prefix}{k}."), x.as_table().unwrap(), keys);
                    }
                }
                _ => {
                    keys.insert(format!("{prefix}{k}"));
                }
            }
        }
    }
    walk("", &value, &mut keys);
    keys
}

fn check_reference(doc: &str, heading: &str, example: &str, optional_in_example: &[&str]) {
    let documented = documented_keys(doc, heading);
    let example_keys = example_keys(example);
    let undocumented: Vec<_> = example_keys.difference(&documented).collect();
    assert!(
        undocumented.is_empty(),
        "{example} has keys {undocumented:?} that the table under {heading:?} in {doc} does not list"
    );
    let missing: Vec<_> = documented
        .difference(&example_keys)
        .filter(|k| !optional_in_example.contains(&k.as_str()))
        .collect();
    assert!(
        missing.is_empty(),
        "{doc} documents {missing:?}, which {example} does not have: a stale row, or a key the \
         example should show"
    );
}

#[test]
fn config_references_match_the_example_configs() {
    check_reference(
        "docs/origin.md",
        "## Config reference",
        "origin/example.toml",
        // Derived from the open-file limit when left out: the example leaves them out.
        // admin_token: left out, the admin calls are off; access_log_file: left out, no
        // access log. The example shows both commented.
        &[
            "max_connections",
            "max_connections_per_client",
            "admin_token",
            "access_log_file",
        ],
    );
    check_reference(
        "docs/edge.md",
        "## Config reference",
        "edge/example.toml",
        &[
            "parent_fallback_to_origin",
            "pool_idle_timeout_secs",
            "pool_max_idle_per_host",
        ],
    );
    check_reference(
        "docs/geodns.md",
        "## Config reference",
        "geodns/example.toml",
        &[
            "maxmind",
            "metrics",
            "udp_threads",
            "pop.capacity",
            "pop.weight",
            "zone.geo.ttl",
            "zone.soa.expire",
            "zone.soa.refresh",
            "zone.soa.retry",
            "zone.soa.ttl",
            "dnssec_keys",
            "dot_listen",
            "doh_listen",
            "tls_cert",
            "tls_key",
            "rrl.responses_per_second",
            "rrl.slip",
            "rrl.exempt",
        ],
    );
}

/// The `[tls]` keys of docs/tls.md's flag table (its second column).
fn tls_doc_keys() -> BTreeSet<String> {
    let text = std::fs::read_to_string(repo().join("docs/tls.md")).unwrap();
    let mut keys = BTreeSet::new();
    for line in text.lines().filter(|l| l.starts_with("| `--")) {
        let column = line.split('|').nth(2).unwrap_or("");
        for (i, part) in column.split('`').enumerate() {
            if i % 2 == 1 {
                let key = part.split(" =").next().unwrap().trim();
                if key
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
                {
                    keys.insert(key.to_owned());
                }
            }
        }
    }
    keys
}

/// `example`'s text with its commented-out `[tls]` block (from `# [tls]` to the end of the
/// file) uncommented, and that block's keys.
fn tls_uncommented(example: &str) -> (String, BTreeSet<String>) {
    let text = std::fs::read_to_string(repo().join(example)).unwrap();
    let start = text
        .find("\n# [tls]\n")
        .unwrap_or_else(|| panic!("{example}: no commented-out `# [tls]` block"))
        + 1;
    let block: String = text[start..]
        .lines()
        .map(|l| l.strip_prefix("# ").unwrap_or(l))
        .collect::<Vec<_>>()
        .join("\n");
    let table: toml::Table = toml::from_str(&block)
        .unwrap_or_else(|e| panic!("{example}: the [tls] block, uncommented: {e}"));
    let keys = table["tls"].as_table().unwrap().keys().cloned().collect();
    (format!("{}{block}\n", &text[..start]), keys)
}

#[test]
fn example_configs_show_every_tls_key() {
    let documented = tls_doc_keys();
    assert!(documented.len() >= 10, "docs/tls.md keys: {documented:?}");
    let (origin, keys) = tls_uncommented("origin/example.toml");
    assert_eq!(
        keys, documented,
        "origin/example.toml's [tls] block vs docs/tls.md's table"
    );
    let config = dashcdn_origin::ServeConfig::from_toml(&origin)
        .unwrap_or_else(|e| panic!("origin/example.toml with [tls]: {e:#}"));
    assert!(config.tls.listen.is_some() && config.tls.cert.len() == 1);
    let (edge, keys) = tls_uncommented("edge/example.toml");
    assert_eq!(
        keys, documented,
        "edge/example.toml's [tls] block vs docs/tls.md's table"
    );
    let config = dashcdn_edge::EdgeConfig::from_toml(&edge)
        .unwrap_or_else(|e| panic!("edge/example.toml with [tls]: {e:#}"));
    assert!(config.tls.listen.is_some() && config.tls.key.len() == 1);
}
