//! `servicenow`: tickets as ServiceNow records.
