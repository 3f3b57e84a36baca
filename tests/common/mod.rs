//! Shared by the end-to-end tests: where the guest kit lives.

use std::path::PathBuf;

/// `../shared/guests`, or `None` (and a note) when the kit is not present.
pub fn guests() -> Option<PathBuf> {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/guests");
    if p.join("vmlinuz").exists() {
        Some(p)
    } else {
        eprintln!("skipping: ../shared/guests not present");
        None
    }
}
