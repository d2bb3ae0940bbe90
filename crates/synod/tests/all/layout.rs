//! Each crate's integration tests are modules of one binary
//! (`crates/*/tests/all/main.rs`). Cargo runs only what `main.rs` declares, so
//! a test file added next to it and not declared would never run: this test
//! fails instead.

use std::path::Path;

#[test]
fn every_test_file_is_declared_in_its_binary() {
    let crates = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut checked = 0;
    let mut missing = Vec::new();
    for krate in std::fs::read_dir(&crates).expect("the crates folder") {
        let all = krate.expect("a crate").path().join("tests/all");
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
            if !main
                .lines()
                .any(|line| line.trim() == format!("mod {module};"))
            {
                missing.push(path.display().to_string());
            }
        }
    }
    assert!(
        checked > 50,
        "only {checked} test files found under {crates:?}"
    );
    assert!(
        missing.is_empty(),
        "not declared in their main.rs: {missing:#?}"
    );
}
