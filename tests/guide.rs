//! The guide's tables keep up with the code: every builder option and every `Validation` is in
//! its options table, and every error variant in its errors list. No server is needed.

use std::{collections::BTreeSet, path::Path};

fn read(path: &str) -> String {
    let full = Path::new(env!("CARGO_MANIFEST_DIR")).join(path);
    std::fs::read_to_string(&full).unwrap_or_else(|err| panic!("{}: {err}", full.display()))
}

/// The text of the guide's section `heading` (`## Options`), up to the next one.
fn section<'a>(guide: &'a str, heading: &str) -> &'a str {
    let start = guide
        .find(&format!("\n{heading}\n"))
        .unwrap_or_else(|| panic!("the guide has no {heading:?}"));
    let rest = &guide[start + heading.len() + 2..];
    &rest[..rest.find("\n## ").unwrap_or(rest.len())]
}

/// The names of the `pub fn`s in `source` not marked deprecated.
fn public_fns(source: &str) -> Vec<String> {
    let mut names = Vec::new();
    let mut deprecated = false;
    for line in source.lines().map(str::trim) {
        if line.starts_with("#[deprecated") {
            deprecated = true;
        } else if let Some(rest) = line.strip_prefix("pub fn ") {
            let name: String = rest
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect();
            if !deprecated {
                names.push(name);
            }
            deprecated = false;
        }
    }
    names
}

/// The variants of `pub enum <name>` in `source`.
fn variants(source: &str, name: &str) -> Vec<String> {
    let start = source
        .find(&format!("pub enum {name} {{"))
        .unwrap_or_else(|| panic!("no enum {name}"));
    let body = &source[start..];
    let body = &body[body.find('{').unwrap() + 1..];
    let mut depth = 0;
    let mut found = Vec::new();
    for line in body.lines() {
        let trimmed = line.trim();
        if depth == 0 && trimmed.starts_with('}') {
            break;
        }
        if depth == 0 && trimmed.starts_with(|c: char| c.is_ascii_uppercase()) {
            let variant: String = trimmed
                .chars()
                .take_while(char::is_ascii_alphanumeric)
                .collect();
            found.push(variant);
        }
        depth += line.matches('{').count();
        depth -= line.matches('}').count();
    }
    found
}

#[test]
fn every_builder_option_is_in_the_options_table() {
    let guide = read("docs/guide.md");
    let table = section(&guide, "## Options");
    // Every setter of the builder lives in these two files (`build` and `build_manager` are
    // with what they start).
    let mut missing = BTreeSet::new();
    for file in ["src/config/builder.rs", "src/config/failover.rs"] {
        for option in public_fns(&read(file)) {
            if !table.contains(&format!("`{option}`")) {
                missing.insert(option);
            }
        }
    }
    assert!(
        missing.is_empty(),
        "builder options missing from the guide's options table: {missing:?}"
    );
}

#[test]
fn every_checkout_validation_is_in_the_options_table() {
    let guide = read("docs/guide.md");
    let table = section(&guide, "## Options");
    let validation = variants(&read("src/config/mod.rs"), "Validation");
    assert!(validation.len() >= 3, "{validation:?}");
    let missing: Vec<_> = validation
        .iter()
        .filter(|v| !table.contains(&format!("`{v}")) && !table.contains(&format!("::{v}")))
        .collect();
    assert!(missing.is_empty(), "validations missing: {missing:?}");
}

#[test]
fn every_error_variant_is_in_the_errors_list() {
    let guide = read("docs/guide.md");
    let list = section(&guide, "## Errors");
    let errors = variants(&read("src/error/mod.rs"), "Error");
    assert!(errors.len() > 20, "{errors:?}");
    let missing: Vec<_> = errors
        .iter()
        .filter(|v| !list.contains(&format!("`{v}`")))
        .collect();
    assert!(
        missing.is_empty(),
        "error variants missing from the guide: {missing:?}"
    );
}
