//! Signatures of commits.

use super::SignatureCheck;
use super::signers::AllowedSigners;

pub fn check_commit(
    _repo: &git2::Repository,
    _commit: git2::Oid,
    _signers: Option<&AllowedSigners>,
) -> SignatureCheck {
    SignatureCheck {
        problem: Some("unverified".to_owned()),
        ..SignatureCheck::default()
    }
}
