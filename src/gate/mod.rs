//! Gates: checkpoints a change passes before the daemon applies it. Whether it passes is a
//! pure function of the gate (as in force), the change, the evidence gathered for it and the
//! time; `plan` and the daemon share it.

pub mod scans;
pub mod window;

use crate::trust::{Approval, SignatureCheck};

/// What is known of one commit between the commit in force and the head.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CommitFacts {
    pub sha: String,
    pub author_email: String,
    pub committer_email: String,
    /// Its SSH signature, checked against the host's allowed signers.
    pub signature: SignatureCheck,
    /// Its trailers, in order (`Gate-Override`, `Override-Reviewed`, `Approved-by`...).
    pub trailers: Vec<(String, String)>,
}
