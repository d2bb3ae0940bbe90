//! Each crate's integration tests are modules of one binary
//! (`crates/*/tests/all/main.rs`). Cargo runs only what `main.rs` declares, so
//! a test file added next to it and not declared would never run: this test
//! fails instead.

use std::path::{Path, PathBuf};

/// Every folder under `crates/`.
fn crate_dirs() -> Vec<PathBuf> {
    let crates = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    std::fs::read_dir(&crates)
        .expect("the crates folder")
        .map(|krate| krate.expect("a crate").path())
        .collect()
}

/// Whether one of `text`'s lines, trimmed, is `line`.
fn has_line(text: &str, line: &str) -> bool {
    text.lines().any(|l| l.trim() == line)
}

#[test]
fn every_test_file_is_declared_in_its_binary() {
    let mut checked = 0;
    let mut missing = Vec::new();
    for krate in crate_dirs() {
        let all = krate.join("tests/all");
        let Ok(main) = std::fs::read_to_string(all.join("main.rs")) else {
            continue;
        };
        for entry in std::fs::read_dir(&all).expect("tests/all") {
            let path = entry.expect("an entry").path();
            let module = if path.is_dir() {
                if !path.join("mod.rs").exists() {
                    continue; // data, not a module
                }
                path.file_name()
            } else if path.extension().is_some_and(|e| e == "rs") {
                path.file_stem()
            } else {
                continue;
            };
            let module = module.and_then(|m| m.to_str()).expect("a UTF-8 name");
            if module == "main" {
                continue;
            }
            checked += 1;
            if !has_line(&main, &format!("mod {module};")) {
                missing.push(path.display().to_string());
            }
        }
    }
    assert!(
        checked > 50,
        "only {checked} test files found under crates/"
    );
    assert!(
        missing.is_empty(),
        "not declared in their main.rs: {missing:#?}"
    );
}

/// A crate that turns Cargo's discovery of its tests off (`autotests =
/// false`: crates/synod-tests builds them) runs only the test files some
/// manifest names: its own or synod-tests'. A file added to its `tests/` and
/// named by neither would never run: this test fails instead.
#[test]
fn every_test_target_of_a_crate_without_autotests_is_built() {
    let tests_manifest = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../synod-tests/Cargo.toml"),
    )
    .expect("crates/synod-tests/Cargo.toml");
    let mut checked = 0;
    let mut missing = Vec::new();
    for krate in crate_dirs() {
        let Ok(manifest) = std::fs::read_to_string(krate.join("Cargo.toml")) else {
            continue;
        };
        if !has_line(&manifest, "autotests = false") {
            continue;
        }
        let name = krate
            .file_name()
            .and_then(|n| n.to_str())
            .expect("a UTF-8 name");
        let Ok(entries) = std::fs::read_dir(krate.join("tests")) else {
            continue;
        };
        for entry in entries {
            let path = entry.expect("an entry").path();
            let file = path
                .file_name()
                .and_then(|n| n.to_str())
                .expect("a UTF-8 name");
            // Cargo's own discovery rules: tests/NAME.rs and tests/NAME/main.rs.
            let target = if path.is_dir() && path.join("main.rs").exists() {
                format!("tests/{file}/main.rs")
            } else if path.extension().is_some_and(|e| e == "rs") {
                format!("tests/{file}")
            } else {
                continue;
            };
            checked += 1;
            let own = format!("path = \"{target}\"");
            let there = format!("path = \"../{name}/{target}\"");
            if !has_line(&manifest, &own) && !has_line(&tests_manifest, &there) {
                missing.push(format!("crates/{name}/{target}"));
            }
        }
    }
    assert!(
        checked >= 7,
        "only {checked} test targets found in crates without autotests"
    );
    assert!(
        missing.is_empty(),
        "test files no manifest builds (name them in crates/synod-tests/Cargo.toml): {missing:#?}"
    );
}

/// proptest keeps a failing case next to its source (`NAME.proptest-regressions`)
/// only when no folder above the source has a `lib.rs` or `main.rs`; where
/// one has (every `src/` and `tests/all/` file), it reads
/// `proptest-regressions/NAME.txt` beside that folder instead. A case left in
/// a file of the first kind there is never replayed: three were, found in
/// review, until they moved to the files proptest reads.
#[test]
fn every_proptest_regression_file_is_one_proptest_reads() {
    fn walk(dir: &Path, found: &mut Vec<PathBuf>) {
        for entry in std::fs::read_dir(dir).expect("a folder") {
            let path = entry.expect("an entry").path();
            if path.is_dir() {
                walk(&path, found);
            } else if path
                .extension()
                .is_some_and(|e| e == "proptest-regressions")
            {
                found.push(path);
            }
        }
    }
    let mut found = Vec::new();
    for krate in crate_dirs() {
        for sub in ["src", "tests"] {
            if krate.join(sub).is_dir() {
                walk(&krate.join(sub), &mut found);
            }
        }
    }
    let dead: Vec<String> = found
        .iter()
        .filter(|file| {
            file.ancestors()
                .skip(1)
                .any(|dir| dir.join("lib.rs").is_file() || dir.join("main.rs").is_file())
        })
        .map(|file| file.display().to_string())
        .collect();
    assert!(
        dead.is_empty(),
        "proptest never reads these (move their cases to proptest-regressions/NAME.txt): {dead:#?}"
    );
}
