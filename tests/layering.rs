//! The modules stack one way (README, "Layout"; `src/lib.rs`): a module
//! uses only modules of lower rank. Rust allows cycles inside a crate, so
//! this reads every source file's `crate::…` paths and checks them against
//! the table below. Unit tests (`#[cfg(test)] mod tests`, at the end of a
//! file) may reach anything and are not read.

use std::collections::BTreeMap;
use std::path::Path;

/// Each top-level module and its rank; a module may use only lower ranks.
const RANKS: &[(&str, u32)] = &[
    ("scenario", 0),
    ("observe", 0),
    ("hdr", 0),
    ("json_words", 0),
    ("files", 0),
    ("workload", 1),
    ("reception", 1),
    ("theory", 1),
    ("stats", 1),
    ("tally", 1),
    ("series", 2),
    ("summary", 2),
    ("metrics", 3),
    ("sim", 4),
    ("live", 4),
    ("service", 4),
    ("gate", 5),
    ("compare", 6),
    ("sweep", 6),
    ("plan", 7),
    ("merge", 7),
    // report renders plans (plan.json, the staffing charts), so it sits above plan
    ("report", 8),
    ("cli", 9),
];

fn rank(module: &str) -> Option<u32> {
    RANKS.iter().find(|(m, _)| *m == module).map(|(_, r)| *r)
}

/// The code of a file without its unit tests.
fn without_tests(text: &str) -> &str {
    match text.find("#[cfg(test)]\nmod tests") {
        Some(i) => &text[..i],
        None => text,
    }
}

/// Every module a file's code names as `crate::NAME`, including the names
/// in `use crate::{a, b::{c, d}}` groups (over several lines too), with the
/// line it is on.
fn uses(code: &str) -> Vec<(String, usize)> {
    let code: Vec<&str> = code.lines().map(|l| l.split("//").next().unwrap_or("")).collect();
    let code = code.join("\n");
    let ident = |c: &char| c.is_alphanumeric() || *c == '_';
    let mut out = Vec::new();
    let mut from = 0;
    while let Some(i) = code[from..].find("crate::") {
        let at = from + i + "crate::".len();
        let line = code[..at].matches('\n').count() + 1;
        let rest = &code[at..];
        from = at;
        if !rest.starts_with('{') {
            out.push((rest.chars().take_while(ident).collect(), line));
            continue;
        }
        let mut depth = 0;
        let mut item = String::new();
        for (j, c) in rest.char_indices() {
            match c {
                '{' => depth += 1,
                '}' => depth -= 1,
                _ => {}
            }
            let top_level_end = (c == ',' && depth == 1) || depth == 0;
            if top_level_end {
                let name: String =
                    item.trim_start_matches(['{', ' ', '\n']).chars().take_while(ident).collect();
                if !name.is_empty() {
                    out.push((name, line));
                }
                item.clear();
            } else {
                item.push(c);
            }
            if depth == 0 {
                from = at + j;
                break;
            }
        }
    }
    out
}

fn sources(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            sources(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

#[test]
fn no_module_uses_one_above_it() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    sources(&src, &mut files);
    files.sort();
    let mut wrong = Vec::new();
    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    for path in &files {
        let rel = path.strip_prefix(&src).unwrap().to_string_lossy().replace('\\', "/");
        let top = rel.split('/').next().unwrap().trim_end_matches(".rs").to_owned();
        if top == "lib" || top == "main" {
            continue;
        }
        let mine = rank(&top).unwrap_or_else(|| panic!("src/{rel}: module `{top}` has no rank in RANKS"));
        *seen.entry(top.clone()).or_default() += 1;
        let text = std::fs::read_to_string(path).unwrap();
        for (used, line) in uses(without_tests(&text)) {
            if used == top {
                continue;
            }
            match rank(&used) {
                Some(r) if r < mine => {}
                Some(r) => {
                    wrong.push(format!("src/{rel}:{line}: `{top}` (rank {mine}) uses `{used}` (rank {r})"))
                }
                None => wrong.push(format!("src/{rel}:{line}: `crate::{used}` is not a module in RANKS")),
            }
        }
    }
    assert_eq!(seen.len(), RANKS.len(), "every ranked module exists: {seen:?}");
    assert!(wrong.is_empty(), "imports that run up the layers:\n{}", wrong.join("\n"));
}

#[test]
fn the_checker_sees_grouped_and_inline_paths() {
    let code = "use crate::{gate::{self, Gate}, metrics::Measured};\nlet x = crate::sim::simulate(&sc); // crate::cli\n\
                use crate::{\n    summary::{A, B},\n    workload,\n};\n";
    let found = uses(code);
    let names: Vec<&str> = found.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["gate", "metrics", "sim", "summary", "workload"]);
    assert_eq!(found.iter().map(|(_, l)| *l).collect::<Vec<_>>(), [1, 1, 2, 3, 3]);
}
