//! Rebuilds when the embedded example repository or starter template changes: they are
//! compiled into the binary, and a file added to them would otherwise go unnoticed.

fn main() {
    println!("cargo:rerun-if-changed=example-repo");
    println!("cargo:rerun-if-changed=templates");
}
