//! `gitward tickets`: the problems the ticket sinks track, with their tickets and SLA.

use std::io::Write;
use std::path::Path;

use chrono::Utc;

use super::{ValidateFormat, exit, write_out};
use crate::config::HostConfig;
use crate::diag::escaped;
use crate::error::Result;
use crate::store::Store;
use crate::tickets::store::{self, Record};

/// The due column: the date, and how it stands against today.
fn due(record: &Record, today: chrono::NaiveDate) -> String {
    match record.due {
        None => "-".to_owned(),
        Some(due) if record.breached || (due < today && record.problem_open) => {
            format!("{due} (breached)")
        }
        Some(due) => due.to_string(),
    }
}

fn ticket_line(record: &Record, today: chrono::NaiveDate) -> String {
    let (key, url, status, assignee) = match &record.ticket {
        Some(ticket) => (
            ticket.key.as_str(),
            ticket.url.as_str(),
            ticket.status.as_str(),
            ticket.assignee.as_deref().unwrap_or("-"),
        ),
        None => ("-", "", "", "-"),
    };
    let state = if record.problem_open {
        record.state.as_str().to_owned()
    } else {
        format!("{} (problem cleared)", record.state.as_str())
    };
    format!(
        "{:<14} {:<12} {:<28} {:<8} {:<24} {:<20} {}\n    {}{}\n",
        escaped(&record.sink),
        escaped(key),
        escaped(&state),
        record.severity.as_str(),
        due(record, today),
        escaped(assignee),
        escaped(&record.title),
        escaped(url),
        if status.is_empty() {
            String::new()
        } else {
            format!(" ({})", escaped(status))
        },
    )
}

/// `gitward tickets`: one line per open problem (or open ticket) of each ticket sink.
pub fn tickets(config: &Path, format: ValidateFormat, out: &mut dyn Write) -> Result<u8> {
    let config = HostConfig::load(config)?;
    let store = Store::open(&config.state_dir)?;
    let records = store::current(store.db(), None).map_err(store.db_error())?;
    let text = if format == ValidateFormat::Json {
        format!(
            "{}\n",
            serde_json::to_string_pretty(&records).unwrap_or_default()
        )
    } else if records.is_empty() {
        "no open problems have tickets\n".to_owned()
    } else {
        let today = Utc::now().date_naive();
        let mut text = format!(
            "{:<14} {:<12} {:<28} {:<8} {:<24} {:<20} {}\n",
            "SINK", "TICKET", "STATE", "SEVERITY", "DUE", "ASSIGNEE", "PROBLEM"
        );
        for record in &records {
            text.push_str(&ticket_line(record, today));
        }
        text
    };
    write_out(out, &text)?;
    Ok(exit::OK)
}
