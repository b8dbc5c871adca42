//! A cold reconcile against its floor and against the openssl CLI, and a no-op re-reconcile
//! against the cold one.
//!
//!     GITWARD_BENCH_REPO=DIR cargo bench --bench reconcile
//!
//! DIR is a repository from `scripts/gen-repo.py --algorithm ECDSA-P256 --no-acme`;
//! `scripts/bench.sh` builds one and runs this. Each round measures the floor and a cold
//! reconcile back to back (the machine is shared and noisy), then no-op re-reconciles; a
//! ratio is the median of the rounds' ratios.

mod common;

use common::{fresh_host, median, reconcile, run};

use std::path::{Path, PathBuf};
use std::process::Command;

use chrono::Utc;
use gitward::config::Target;
use gitward::model::{CaIssuer, CertificateSpec, KeyAlgorithm, SelfSignedIssuer};
use gitward::outputs::{self, Files};
use gitward::pki::{self, Signer};

const ROUNDS: usize = 3;
const NO_OP_RUNS: usize = 5;
const OPENSSL_CERTIFICATES: usize = 1000;

/// How long `work` took, in seconds.
fn seconds(work: impl FnOnce()) -> f64 {
    common::timed(work).0
}

fn yaml<T: serde::de::DeserializeOwned>(text: &str) -> T {
    serde_yaml::from_str(text).expect("a spec")
}

/// The floor: the same crypto backend generating a key and signing a certificate like the
/// repository's, `count` times in a loop, and writing the same files with the same atomic
/// writes — no Git, no status, no journal.
fn floor(count: usize, out: &Path) -> f64 {
    let now = Utc::now();
    let root_spec: SelfSignedIssuer =
        yaml("commonName: Example Root CA\nkeyAlgorithm: ECDSA-P384\nduration: 3650d\n");
    let root_key = pki::generate_key(KeyAlgorithm::EcdsaP384).expect("root key");
    let root = pki::issue_root(&root_spec, &root_key, now).expect("root");
    let issuing_spec: CaIssuer = yaml(
        "issuerRef: root\ncommonName: Example Issuing CA 0\nkeyAlgorithm: ECDSA-P256\nduration: 1825d\npathLen: 0\npermittedDnsDomains: [example.com]\n",
    );
    let issuing_key = pki::generate_key(KeyAlgorithm::EcdsaP256).expect("issuing key");
    let issuing = pki::issue_intermediate(
        &issuing_spec,
        &issuing_key,
        &Signer::new(&root, &root_key).expect("root signer"),
        now,
    )
    .expect("issuing");
    let target: Target = yaml(&format!("dir: {}\n", out.display()));
    std::fs::create_dir_all(out).expect("floor output");
    seconds(|| {
        let signer = Signer::new(&issuing, &issuing_key).expect("signer");
        for n in 0..count {
            let name = format!("svc-{n:05}");
            let spec: CertificateSpec = yaml(&format!(
                "issuerRef: issuing-0\ndnsNames: [{name}.example.com, {name}-{n}.example.com]\nkeyAlgorithm: ECDSA-P256\nduration: 90d\nrenewBefore: 30d\nusages: [serverAuth]\ntarget: web-tls\n"
            ));
            let key = pki::generate_key(KeyAlgorithm::EcdsaP256).expect("key");
            let certificate = pki::issue_leaf(&spec, &key, &signer, now).expect("leaf");
            let files = Files {
                cert: &certificate,
                chain: &issuing,
                ca: Some(&root),
                key: &pki::key_pem(&key),
            };
            outputs::write(&target, &name, &files).expect("files");
        }
    })
}

fn certificates_in(repo: &Path) -> usize {
    let output = Command::new("git")
        .args(["ls-tree", "-r", "--name-only", "HEAD", "certificates"])
        .current_dir(repo)
        .output()
        .expect("git ls-tree");
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter(|l| l.contains("svc-"))
        .count()
}

fn main() {
    let Some(repo) = std::env::var_os("GITWARD_BENCH_REPO").map(PathBuf::from) else {
        eprintln!("set GITWARD_BENCH_REPO to a repository from scripts/gen-repo.py");
        return;
    };
    let count = certificates_in(&repo);
    let scratch = tempfile::tempdir().expect("scratch");
    let (mut floors, mut colds, mut no_ops, mut ratios, mut no_op_ratios) =
        (vec![], vec![], vec![], vec![], vec![]);
    for round in 0..ROUNDS {
        let out = scratch.path().join("floor");
        let _ = std::fs::remove_dir_all(&out);
        let floor = floor(count, &out);
        let config = fresh_host(&repo, &scratch.path().join("host"));
        let cold = reconcile(&config);
        let no_op = median((0..NO_OP_RUNS).map(|_| reconcile(&config)).collect());
        eprintln!(
            "round {round}: floor {floor:.2} s, cold reconcile {cold:.2} s, no-op {no_op:.3} s"
        );
        floors.push(floor);
        colds.push(cold);
        no_ops.push(no_op);
        ratios.push(cold / floor);
        no_op_ratios.push(no_op / cold);
    }
    let peer_dir = scratch.path().join("openssl");
    let peer = seconds(|| {
        run(
            "scripts/openssl-peer.sh",
            &[
                &peer_dir.to_string_lossy(),
                &OPENSSL_CERTIFICATES.to_string(),
            ],
            Path::new(env!("CARGO_MANIFEST_DIR")),
        )
    });
    let (floor, cold, no_op) = (median(floors), median(colds), median(no_ops));
    let per_peer = peer / OPENSSL_CERTIFICATES as f64;
    let per_cold = cold / count as f64;
    println!("cold reconcile, {count} ECDSA-P256 certificates (and the example's 10 more, 8 CAs):");
    println!("  floor (rcgen key + signature + atomic files, in a loop)  {floor:.2} s");
    println!("  gitward reconcile --once                                  {cold:.2} s");
    println!(
        "  reconcile / floor                                         {:.2}×   (target: ≤ 2×)",
        median(ratios)
    );
    println!(
        "  openssl CLI peer, {OPENSSL_CERTIFICATES} certificates                        {peer:.2} s ({:.1} ms each; gitward {:.2} ms each: {:.1}× faster)",
        per_peer * 1000.0,
        per_cold * 1000.0,
        per_peer / per_cold
    );
    println!(
        "no-op re-reconcile                                          {no_op:.3} s = {:.1} % of cold   (target: ≤ 5 %)",
        median(no_op_ratios) * 100.0
    );
}
