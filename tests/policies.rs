//! Every policy under `policies/` parses and validates without errors or
//! warnings.

#![allow(clippy::unwrap_used)]

use std::path::PathBuf;

#[test]
fn every_shipped_policy_is_valid() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("policies");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .collect();
    files.sort();
    assert!(
        files.len() >= 3,
        "expected the estate's policies in {}",
        dir.display()
    );
    for f in &files {
        match zfsrepl_core::policy::load_with_warnings(std::slice::from_ref(f)) {
            Ok((p, warnings)) => {
                assert!(warnings.0.is_empty(), "{}:\n{warnings}", f.display());
                assert!(!p.datasets.is_empty(), "{} has no datasets", f.display());
            }
            Err(d) => panic!("{} is invalid:\n{d}", f.display()),
        }
    }
}
