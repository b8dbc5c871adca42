//! The host's allowed signers.

/// Principals and the SSH keys that sign for them.
pub struct AllowedSigners;
