//! Who vouches for a change. Text in a commit (an author e-mail, an `Approved-by:` line)
//! proves nothing; an SSH signature made by a key that the host's allowed-signers file lists
//! for a principal does.

pub mod approvals;
pub mod approve;
pub mod commits;
pub mod signers;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::model::ApprovalSource;

/// What a commit's signature proves.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SignatureCheck {
    /// Whether a key the host lists made the signature, and was valid for its principal then.
    pub verified: bool,
    /// The principal the key is listed for, when verified: for a commit, the principals of
    /// every allowed-signers line that lets the key sign, as one comma-separated pattern
    /// list (see [`SignatureCheck::signed_by`]).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub principal: Option<String>,
    /// `SHA256:…` fingerprint of the signing key, when the signature could be read.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key_fingerprint: Option<String>,
    /// Why the signature does not count, when it does not: unsigned, a key the host does not
    /// list, revoked, expired, a bad signature.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub problem: Option<String>,
}

/// One approval of a tree for a gate, as found and checked.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Approval {
    /// The gate approved.
    pub gate: String,
    /// The principal who approves: verified for signatures, claimed for trailers.
    pub approver: String,
    pub source: ApprovalSource,
    /// `SHA256:…` fingerprint of the key that signed, for signatures.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key_fingerprint: Option<String>,
    /// Why the approval does not count, when it does not (a key not listed, revoked or
    /// expired, a signature over another tree or gate). `None`: it is verified.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub refused: Option<String>,
    /// When it was given, for a review on a forge.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub at: Option<chrono::DateTime<chrono::Utc>>,
    /// Where the review is, for a review on a forge.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
}

impl SignatureCheck {
    /// Whether the signature is verified and made by a key the host lists for `principal`
    /// (the allowed signers may list a key for patterns, like `*@example.com`).
    pub fn signed_by(&self, principal: &str) -> bool {
        self.verified
            && self
                .principal
                .as_deref()
                .is_some_and(|listed| signers::matches_pattern_list(principal, listed))
    }
}
