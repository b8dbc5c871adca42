//! Configuration repositories embedded in the binary: the starter that `gitward init` writes
//! and the full example repository that `gitward demo` builds on.

use include_dir::{Dir, include_dir};

/// A realistic configuration: a CA hierarchy, certificates across environments, policies,
/// gates and sinks.
pub static EXAMPLE_REPO: Dir<'static> = include_dir!("$CARGO_MANIFEST_DIR/example-repo");

/// A small valid configuration to start from.
pub static STARTER: Dir<'static> = include_dir!("$CARGO_MANIFEST_DIR/templates/starter");

/// Every file of an embedded tree as (repository path, contents), sorted by path.
pub fn files(dir: &'static Dir<'static>) -> Vec<(String, &'static [u8])> {
    let mut out = Vec::new();
    collect(dir, &mut out);
    out.sort();
    out
}

fn collect(dir: &'static Dir<'static>, out: &mut Vec<(String, &'static [u8])>) {
    for file in dir.files() {
        let path = file.path().to_string_lossy().replace('\\', "/");
        out.push((path, file.contents()));
    }
    for sub in dir.dirs() {
        collect(sub, out);
    }
}
