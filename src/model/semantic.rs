//! Rules about one resource that a JSON Schema cannot say: relations between its own fields,
//! and values with more structure than a pattern (IP addresses, dates, time zones, globs).
//! Rules across resources are in [`super::catalog`].

use std::net::IpAddr;
use std::str::FromStr;

use chrono::NaiveDate;

use super::types::{
    CertificateSpec, ChangeRequirement, ChangeSystem, GateSpec, PolicySpec, Resource, SinkSpec,
    Spec,
};
use super::yaml::Node;
use crate::diag::{Problem, did_you_mean};

pub fn check(resource: &Resource, root: &Node) -> Vec<Problem> {
    let mut problems = Vec::new();
    let mut report = |path: &[&str], message: String| {
        let full: Vec<&str> = ["spec"].iter().chain(path).copied().collect();
        problems.push(Problem::error(root.locate(full), message));
    };
    match &resource.spec {
        Spec::Certificate(spec) => certificate(spec, &mut report),
        Spec::Gate(spec) => gate(spec, &mut report),
        Spec::Policy(spec) => policy(spec, &mut report),
        Spec::Sink(spec) => sink(spec, &mut report),
        Spec::Issuer(_) => {}
    }
    problems
}

/// Ticket settings as the sink checks them: templated fields name parts of the event that
/// exist, and none that gitward sets; then the system's own checks (labels, tables, levels).
fn sink(spec: &SinkSpec, report: &mut impl FnMut(&[&str], String)) {
    let (block, fields, own, checked) = match (&spec.jira, &spec.servicenow) {
        (Some(jira), _) => (
            "jira",
            &jira.fields,
            crate::tickets::jira::OWN_FIELDS,
            crate::tickets::jira::check_settings(jira),
        ),
        (_, Some(now)) => (
            "servicenow",
            &now.fields,
            crate::tickets::servicenow::OWN_FIELDS,
            crate::tickets::servicenow::check_settings(now),
        ),
        _ => return,
    };
    let mut told = false;
    for (name, value) in fields {
        if own.contains(&name.as_str()) {
            told = true;
            report(
                &[block, "fields", name],
                format!("gitward sets `{name}` itself; it cannot be mapped"),
            );
        }
        for unknown in crate::tickets::template::unknown_in(value) {
            told = true;
            report(
                &[block, "fields", name],
                format!(
                    "`{{{{{unknown}}}}}` names nothing of an event; templates may use {} and \
                     details.<key>",
                    crate::tickets::template::NAMES.join(", ")
                ),
            );
        }
    }
    if let (false, Err(problem)) = (told, checked) {
        report(&[block], problem.0);
    }
    for (severity, days) in [
        &spec.jira.as_ref().map(|j| &j.sla),
        &spec.servicenow.as_ref().map(|n| &n.sla),
    ]
    .into_iter()
    .flatten()
    .flat_map(|sla| {
        [
            ("critical", sla.critical),
            ("high", sla.high),
            ("medium", sla.medium),
            ("low", sla.low),
            ("info", sla.info),
        ]
    }) {
        if days.is_some_and(|d| d > crate::tickets::MOST_SLA_DAYS) {
            report(
                &[block, "sla", severity],
                format!(
                    "at most {} days: a due date further off is no commitment",
                    crate::tickets::MOST_SLA_DAYS
                ),
            );
        }
    }
}

fn certificate(spec: &CertificateSpec, report: &mut impl FnMut(&[&str], String)) {
    if spec.common_name.is_none() && spec.dns_names.is_empty() && spec.ip_addresses.is_empty() {
        report(
            &[],
            "a certificate needs a commonName, dnsNames or ipAddresses".to_owned(),
        );
    }
    for (i, ip) in spec.ip_addresses.iter().enumerate() {
        if IpAddr::from_str(&ip.0).is_err() {
            report(
                &["ipAddresses", &i.to_string()],
                format!("`{ip}` is not an IP address"),
            );
        }
    }
    if let Some(renew) = spec.renew_before
        && renew >= spec.duration
    {
        report(
            &["renewBefore"],
            format!(
                "renewBefore ({renew}) must be shorter than duration ({})",
                spec.duration
            ),
        );
    }
}

/// A `YYYY-MM-DD` that the schema's pattern admitted, as a date if it is one.
pub fn date(text: &str) -> Option<NaiveDate> {
    NaiveDate::parse_from_str(text, "%Y-%m-%d").ok()
}

fn policy(spec: &PolicySpec, report: &mut impl FnMut(&[&str], String)) {
    for (i, exception) in spec.exceptions.iter().enumerate() {
        if date(&exception.expires).is_none() {
            report(
                &["exceptions", &i.to_string(), "expires"],
                format!("`{}` is not a date", exception.expires),
            );
        }
    }
}

fn gate(spec: &GateSpec, report: &mut impl FnMut(&[&str], String)) {
    let require = &spec.require;
    if let Some(scans) = &require.scans {
        for (i, pattern) in scans.paths.iter().enumerate() {
            if let Err(e) = globset::Glob::new(pattern) {
                report(
                    &["require", "scans", "paths", &i.to_string()],
                    format!("invalid glob `{pattern}`: {}", e.kind()),
                );
            }
        }
    }
    if let Some(change) = &require.change {
        change_requirement(change, report);
    }
    let Some(window) = &require.window else {
        return;
    };
    if chrono_tz::Tz::from_str(&window.timezone).is_err() {
        report(
            &["require", "window", "timezone"],
            format!(
                "unknown time zone `{}`{}",
                window.timezone,
                did_you_mean(
                    &window.timezone,
                    chrono_tz::TZ_VARIANTS.iter().map(|tz| tz.name())
                )
            ),
        );
    }
    for (i, slot) in window.allow.iter().enumerate() {
        // `to` before `from` is a slot past midnight; only an empty slot is a mistake.
        if slot.from == slot.to || (slot.from == "24:00" && slot.to == "00:00") {
            report(
                &["require", "window", "allow", &i.to_string(), "to"],
                format!(
                    "`to` ({}) must differ from `from` ({}): the slot would be empty",
                    slot.to, slot.from
                ),
            );
        }
    }
    for (i, freeze) in window.deny.iter().enumerate() {
        let index = i.to_string();
        let parsed =
            |field: &str, text: &str| date(text).ok_or_else(|| (field.to_owned(), text.to_owned()));
        match (parsed("from", &freeze.from), parsed("to", &freeze.to)) {
            (Ok(from), Ok(to)) if from > to => report(
                &["require", "window", "deny", &index, "to"],
                format!("`to` ({to}) is before `from` ({from})"),
            ),
            (Ok(_), Ok(_)) => {}
            (Err((field, text)), _) | (_, Err((field, text))) => report(
                &["require", "window", "deny", &index, &field],
                format!("`{text}` is not a date"),
            ),
        }
    }
}

fn change_requirement(change: &ChangeRequirement, report: &mut impl FnMut(&[&str], String)) {
    if change.system == ChangeSystem::Jira && change.projects.is_empty() {
        report(
            &["require", "change"],
            "a Jira change requirement names the `projects` whose issues are change requests: \
             anyone may make a project with statuses of any name"
                .to_owned(),
        );
    }
    if change.system == ChangeSystem::ServiceNow && !change.projects.is_empty() {
        report(
            &["require", "change", "projects"],
            "`projects` is for Jira".to_owned(),
        );
    }
    if change.system == ChangeSystem::ServiceNow && change.window.is_some() {
        report(
            &["require", "change", "window"],
            "`window` is for Jira: a ServiceNow change request's planned start and end are its \
             `start_date` and `end_date`"
                .to_owned(),
        );
    }
    for (i, state) in change.states.iter().enumerate() {
        if state.trim().is_empty() || state.chars().any(char::is_control) {
            report(
                &["require", "change", "states", &i.to_string()],
                "a state is a name, not blank and on one line".to_owned(),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::model::parse::{EngineValues, Role, parse_file};

    fn messages(text: &str) -> Vec<String> {
        parse_file(Role::Resources, text.as_bytes(), EngineValues::default())
            .all_problems()
            .map(|p| format!("{}:{}: {}", p.pos.line, p.pos.col, p.message))
            .collect()
    }

    #[test]
    fn certificate_fields_must_agree() {
        let text = "apiVersion: gitward/v1\nkind: Certificate\nmetadata: {name: a}\nspec:\n  issuerRef: ca\n  target: web\n  ipAddresses: [10.0.0.300]\n  duration: 30d\n  renewBefore: 30d\n";
        assert_eq!(
            messages(text),
            [
                "7:17: `10.0.0.300` is not an IP address",
                "9:3: renewBefore (30d) must be shorter than duration (30d)",
            ]
        );
    }

    #[test]
    fn a_change_requirement_names_states_and_gives_window_fields_to_jira_only() {
        let text = "apiVersion: gitward/v1\nkind: Gate\nmetadata: {name: g}\nspec:\n  appliesTo: {kinds: [Certificate]}\n  require:\n    change:\n      system: servicenow\n      endpoint: snow\n      states: [Scheduled, ' ']\n      window: {start: start_date, end: end_date}\n";
        assert_eq!(
            messages(text),
            [
                "11:7: `window` is for Jira: a ServiceNow change request's planned start and end are its `start_date` and `end_date`",
                "10:27: a state is a name, not blank and on one line",
            ]
        );
        let jira = text.replace("servicenow", "jira").replace(", ' '", "");
        assert_eq!(
            messages(&jira),
            [
                "7:5: a Jira change requirement names the `projects` whose issues are change requests: anyone may make a project with statuses of any name"
            ]
        );
        let jira = jira.replace("      window:", "      projects: [OPS]\n      window:");
        assert!(messages(&jira).is_empty(), "{:?}", messages(&jira));
    }

    #[test]
    fn gate_windows_are_checked() {
        let text = "apiVersion: gitward/v1\nkind: Gate\nmetadata: {name: g}\nspec:\n  appliesTo: {kinds: [Certificate]}\n  require:\n    window:\n      timezone: Europe/Berln\n      allow: [{from: '16:00', to: '16:00'}, {from: '22:00', to: '02:00'}]\n      deny: [{from: 2026-02-30, to: 2026-03-01}]\n";
        assert_eq!(
            messages(text),
            [
                "8:7: unknown time zone `Europe/Berln`; did you mean `Europe/Berlin`?",
                "9:31: `to` (16:00) must differ from `from` (16:00): the slot would be empty",
                "10:15: `2026-02-30` is not a date",
            ]
        );
    }
}
