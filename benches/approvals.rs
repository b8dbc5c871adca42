//! Checking signed approvals: 100 Ed25519 approvals of one tree (50 principals, 2 gates each)
//! against an allowed-signers file of 50 principals, as a gate reads them.
//!
//!     cargo bench --bench approvals
//!
//! Measured: the signatures alone (parse and verify each, the allowed signers in memory), and
//! everything a gate does for a tree: find its note in the repository, read it, check each
//! approval. The machine this runs on is shared and noisy: each figure is the median of the
//! rounds, each round measures every figure once.

mod common;

use common::{median, timed};

use chrono::Utc;
use git2::Repository;
use gitward::trust::approvals::{
    APPROVAL_NAMESPACE, SignedApproval, approvals_of, payload, record,
};
use gitward::trust::signers::AllowedSigners;
use ssh_key::private::Ed25519Keypair;
use ssh_key::{HashAlg, LineEnding, PrivateKey};

const PRINCIPALS: usize = 50;
const GATES: [&str; 2] = ["prod-changes", "staging-changes"];
const ROUNDS: usize = 15;

fn main() {
    // Fixed seeds: the same keys on every run, no randomness needed.
    let keys: Vec<PrivateKey> = (0..PRINCIPALS)
        .map(|i| PrivateKey::from(Ed25519Keypair::from_seed(&[i as u8 + 1; 32])))
        .collect();
    let principal = |i: usize| format!("person-{i}@example.com");
    let allowed: String = keys
        .iter()
        .enumerate()
        .map(|(i, key)| {
            let public = key.public_key().to_openssh().expect("a public key");
            format!(
                "{} namespaces=\"git,gitward-approval\" {public}\n",
                principal(i)
            )
        })
        .collect();

    let dir = tempfile::tempdir().expect("a temporary directory");
    let repo = Repository::init_bare(dir.path()).expect("a repository");
    let tree = repo
        .treebuilder(None)
        .and_then(|builder| builder.write())
        .expect("a tree");
    let approvals: Vec<SignedApproval> = keys
        .iter()
        .enumerate()
        .flat_map(|(i, key)| {
            GATES.iter().map(move |gate| SignedApproval {
                gate: (*gate).to_owned(),
                approver: principal(i),
                signature: key
                    .sign(
                        APPROVAL_NAMESPACE,
                        HashAlg::Sha512,
                        &payload(tree, gate, &principal(i)),
                    )
                    .and_then(|s| s.to_pem(LineEnding::LF))
                    .expect("a signature"),
            })
        })
        .collect();
    record(&repo, tree, &approvals).expect("the note");

    let now = Utc::now();
    let (mut parse, mut verify, mut read) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..ROUNDS {
        let (seconds, signers) =
            timed(|| AllowedSigners::parse(&allowed, "allowed_signers").expect("signers"));
        parse.push(seconds);
        let (seconds, verified) = timed(|| {
            approvals
                .iter()
                .filter(|a| {
                    signers
                        .verify(
                            APPROVAL_NAMESPACE,
                            &payload(tree, &a.gate, &a.approver),
                            &a.signature,
                            Some(&a.approver),
                            now,
                        )
                        .verified
                })
                .count()
        });
        assert_eq!(verified, approvals.len(), "every approval verifies");
        verify.push(seconds);
        let (seconds, found) = timed(|| approvals_of(&repo, tree, Some(&signers), now));
        assert_eq!(found.len(), approvals.len());
        assert!(found.iter().all(|a| a.refused.is_none()));
        read.push(seconds);
    }
    let ms = |samples: Vec<f64>| median(samples) * 1000.0;
    let count = approvals.len();
    println!("{count} Ed25519 approvals, {PRINCIPALS} principals; medians of {ROUNDS} rounds");
    println!(
        "parse the allowed signers              {:>7.3} ms",
        ms(parse)
    );
    println!(
        "verify {count} signatures                 {:>7.3} ms",
        ms(verify)
    );
    println!(
        "read and check the tree's approvals    {:>7.3} ms   (target: ≤ 50 ms)",
        ms(read)
    );
}
