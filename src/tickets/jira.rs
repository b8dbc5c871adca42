//! `jira`: tickets as Jira issues.
