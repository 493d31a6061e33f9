//! `docs/rules.md` cannot drift from the code: every rule id hostgate reports is described
//! there, every `HP-…`/`HG-…` id that a comment in the repository cites is described there, and
//! every document that a source file or a doc names under `docs/` exists.

use std::fs;
use std::path::{Path, PathBuf};

use hostgate_core::rules::CATALOGUE;
use hostgate_test_support::repo_root;

fn rules_doc() -> String {
    fs::read_to_string(repo_root().join("docs/rules.md")).expect("docs/rules.md")
}

/// Whether `text` mentions `id` as a whole id, not as the start of a longer one.
fn mentions(text: &str, id: &str) -> bool {
    text.match_indices(id).any(|(at, _)| {
        let before = text[..at].chars().next_back();
        let after = text[at + id.len()..].chars().next();
        !before.is_some_and(|c| c.is_ascii_alphanumeric() || c == '-')
            && !after.is_some_and(|c| c.is_ascii_alphanumeric())
    })
}

/// The length of the prefix of `s` whose characters satisfy `f`.
fn run_of(s: &str, f: impl Fn(char) -> bool) -> usize {
    s.len() - s.trim_start_matches(f).len()
}

/// The rule ids in `text`: `HP-` or `HG-`, upper-case letters, `-`, digits, and an optional
/// lower-case sub-rule letter.
fn rule_ids(text: &str) -> Vec<String> {
    let mut starts: Vec<usize> = text
        .match_indices("HP-")
        .chain(text.match_indices("HG-"))
        .map(|(at, _)| at)
        .collect();
    starts.sort_unstable();
    let mut ids = Vec::new();
    for at in starts {
        if text[..at]
            .chars()
            .next_back()
            .is_some_and(|c| c.is_ascii_alphanumeric())
        {
            continue;
        }
        let rest = &text[at + 3..];
        let family = run_of(rest, |c| c.is_ascii_uppercase());
        if family == 0 || !rest[family..].starts_with('-') {
            continue;
        }
        let digits = run_of(&rest[family + 1..], |c| c.is_ascii_digit());
        if digits == 0 {
            continue;
        }
        let mut end = family + 1 + digits;
        let mut tail = rest[end..].chars();
        if tail.next().is_some_and(|c| c.is_ascii_lowercase())
            && !tail.next().is_some_and(|c| c.is_ascii_alphanumeric())
        {
            end += 1;
        }
        ids.push(text[at..at + 3 + end].to_owned());
    }
    ids
}

/// Every `.rs` and `.md` file of the repository; hidden directories (`.git`, `.tools`) and
/// build output excluded.
fn sources(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in fs::read_dir(dir).expect("read_dir").flatten() {
        let path = entry.path();
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if path.is_dir() {
            if !name.starts_with('.') && name != "target" && name != "corpus" {
                sources(&path, out);
            }
        } else if name.ends_with(".rs") || name.ends_with(".md") {
            out.push(path);
        }
    }
}

fn repo_files() -> Vec<PathBuf> {
    let mut files = Vec::new();
    sources(repo_root(), &mut files);
    files
}

/// The comment part of a Rust source line (`//`, `///`, `//!`), if any.
fn comment(line: &str) -> Option<&str> {
    line.find("//").map(|at| &line[at..])
}

#[test]
fn the_id_scanner_finds_ids_and_nothing_else() {
    assert_eq!(
        rule_ids("(HP-JOB-03/04/07), HP-API-06e, [HG-MATCH-01]; HP-API-… HG-…, XHP-API-01"),
        ["HP-JOB-03", "HP-API-06e", "HG-MATCH-01"]
    );
    assert_eq!(
        rule_ids("HP-KLT-03's rate, HG-USER-02."),
        ["HP-KLT-03", "HG-USER-02"]
    );
    assert!(mentions("| HP-JOB-11 |", "HP-JOB-11"));
    assert!(!mentions("| HP-JOB-11 |", "HP-JOB-1"));
    assert!(!mentions("HP-API-06a", "HP-API-06"));
    assert_eq!(comment("let x = 1; // HP-API-01"), Some("// HP-API-01"));
    assert_eq!(comment("let x = 1;"), None);
}

#[test]
fn every_reported_rule_is_described() {
    let doc = rules_doc();
    let missing: Vec<&str> = CATALOGUE
        .iter()
        .map(|r| r.id)
        .filter(|id| !mentions(&doc, id))
        .collect();
    assert!(missing.is_empty(), "not in docs/rules.md: {missing:?}");
    // The `ids` module is what the code reports with: every constant there is in the catalogue.
    let module =
        fs::read_to_string(repo_root().join("core/src/rules/mod.rs")).expect("rules/mod.rs");
    let start = module.find("pub mod ids {").expect("the ids module");
    let end = start + module[start..].find("\n}\n").expect("its end");
    let constants: Vec<String> = module[start..end]
        .lines()
        .filter(|l| l.trim_start().starts_with("pub const"))
        .flat_map(rule_ids)
        .collect();
    assert_eq!(constants.len(), CATALOGUE.len(), "{constants:?}");
    for id in constants {
        assert!(
            CATALOGUE.iter().any(|r| r.id == id),
            "{id} is in rules::ids but not in CATALOGUE"
        );
    }
}

#[test]
fn every_rule_id_cited_in_a_comment_is_described() {
    let doc = rules_doc();
    let mut unknown = Vec::new();
    let mut cited = 0;
    for file in repo_files()
        .iter()
        .filter(|f| f.extension().is_some_and(|e| e == "rs"))
    {
        let text = fs::read_to_string(file).expect("source");
        for (n, line) in text.lines().enumerate() {
            for id in comment(line).map(rule_ids).unwrap_or_default() {
                cited += 1;
                if !mentions(&doc, &id) {
                    unknown.push(format!("{}:{}: {id}", file.display(), n + 1));
                }
            }
        }
    }
    assert!(cited > 20, "the scan found only {cited} citations");
    assert!(
        unknown.is_empty(),
        "cited but not in docs/rules.md:\n{}",
        unknown.join("\n")
    );
}

#[test]
fn documents_named_under_docs_exist() {
    let mut missing = Vec::new();
    for file in repo_files() {
        let text = fs::read_to_string(&file).expect("source");
        for (at, _) in text.match_indices("docs/") {
            let name: String = text[at + 5..]
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
                .collect();
            if name.ends_with(".md") && !repo_root().join("docs").join(&name).is_file() {
                missing.push(format!("{}: docs/{name}", file.display()));
            }
        }
    }
    assert!(
        missing.is_empty(),
        "named but missing:\n{}",
        missing.join("\n")
    );
}
