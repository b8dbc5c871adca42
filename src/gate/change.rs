//! Change requests as gate input. The applied commit names one in a trailer
//! (`Change-Request: CHG0012345`); the gate passes only while ServiceNow says that change
//! request is approved, in one of the gate's states and inside its planned start and end (or,
//! in Jira, while the issue is in one of the gate's statuses).
//!
//! What the systems answer is read here, behind [`ChangeRequests`], when evidence is
//! gathered; [`judge`] decides from that alone. Everything a system answers is taken as
//! hostile: bounded, checked to be the record asked for (ServiceNow ignores a query it cannot
//! apply and answers every row), and never trusted to pass by default. The repository's
//! trailer value reaches a query only when it has the system's number form.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use chrono::{DateTime, NaiveDate, NaiveDateTime, Utc};
use serde_json::Value;

use super::{CommitFacts, Met};
use crate::config::Endpoint;
use crate::diag::bounded;
use crate::model::{ChangeRequirement, ChangeSystem, Name};
use crate::sinks::http;

/// Longest that all the lookups of one evaluation take together.
pub const LOOKUP_BUDGET: Duration = Duration::from_secs(30);
/// What a lookup says without the host's endpoints (`plan` without `--config`).
pub const NO_ENDPOINTS: &str =
    "change requests cannot be read without the host's endpoints (--config)";
/// Most approvers read and listed.
const MOST_APPROVERS: usize = 20;
/// Most characters kept of a value a system answers (a state, a name).
const MOST_CHARS: usize = 200;
/// Most characters shown of a trailer value that is refused.
const SHOWN_CHARS: usize = 64;

/// One change request to read.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Ask {
    pub system: ChangeSystem,
    /// The host endpoint it is read through.
    pub endpoint: String,
    /// Its number (ServiceNow) or key (Jira), in the system's form.
    pub number: String,
    /// Jira: the fields of the planned start and end.
    pub window: Option<(String, String)>,
}

/// What was read of a change request.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ChangeRecord {
    /// Its state (ServiceNow's display value) or status (Jira).
    pub state: String,
    /// ServiceNow's `approval` value, like `approved` or `requested`.
    pub approval: Option<String>,
    /// Who approved it (ServiceNow).
    pub approvers: Vec<String>,
    pub start: Option<DateTime<Utc>>,
    pub end: Option<DateTime<Utc>>,
    /// Where people see it.
    pub url: Option<String>,
}

/// A change request read, or why it could not be.
pub type Answer = Result<ChangeRecord, String>;

/// Reads change requests from the systems that keep them.
pub trait ChangeRequests: Sync {
    /// Reads each change request asked for: one answer each, in order.
    fn read(&self, asks: &[Ask]) -> Vec<Answer>;
}

/// No endpoints to read through: every change request is unreadable.
pub struct NoEndpoints;

impl ChangeRequests for NoEndpoints {
    fn read(&self, asks: &[Ask]) -> Vec<Answer> {
        asks.iter().map(|_| Err(NO_ENDPOINTS.to_owned())).collect()
    }
}

/// Change requests read over HTTP through the host's endpoints.
pub struct Online<'a> {
    pub endpoints: &'a BTreeMap<Name, Endpoint>,
}

impl ChangeRequests for Online<'_> {
    fn read(&self, asks: &[Ask]) -> Vec<Answer> {
        if asks.is_empty() {
            return Vec::new();
        }
        let failed = |why: String| asks.iter().map(|_| Err(why.clone())).collect();
        // On a thread of its own with a runtime of its own: gathering is synchronous, and its
        // caller may or may not be inside a runtime.
        std::thread::scope(|scope| {
            scope
                .spawn(|| {
                    match tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()
                    {
                        Ok(runtime) => runtime.block_on(self.read_all(asks)),
                        Err(error) => failed(format!("change requests not read: {error}")),
                    }
                })
                .join()
                .unwrap_or_else(|_| failed("change requests not read: the reader failed".into()))
        })
    }
}

impl Online<'_> {
    /// Reads each in turn, all of them within [`LOOKUP_BUDGET`].
    async fn read_all(&self, asks: &[Ask]) -> Vec<Answer> {
        let deadline = tokio::time::Instant::now() + LOOKUP_BUDGET;
        let mut answers = Vec::with_capacity(asks.len());
        for ask in asks {
            let answer = tokio::time::timeout_at(deadline, self.lookup(ask))
                .await
                .unwrap_or_else(|_| {
                    Err(format!(
                        "no answer within {} seconds",
                        LOOKUP_BUDGET.as_secs()
                    ))
                });
            answers.push(answer);
        }
        answers
    }

    async fn lookup(&self, ask: &Ask) -> Answer {
        let name = &ask.endpoint;
        let endpoint = self
            .endpoints
            .get(&Name(name.clone()))
            .ok_or_else(|| format!("endpoint `{name}` is not defined in this host's config"))?;
        let site = Site::of(name, endpoint)?;
        match ask.system {
            ChangeSystem::ServiceNow => servicenow(&site, &ask.number).await,
            ChangeSystem::Jira => jira(&site, ask).await,
        }
    }
}

/// An endpoint ready to ask: its client, credential and base URL.
struct Site {
    client: reqwest::Client,
    authorization: String,
    base: String,
}

impl Site {
    /// What a change request is read through. Problems with the host's files are told in
    /// full to the host's log only: the gate's report is pushed with the status.
    fn of(name: &str, endpoint: &Endpoint) -> Result<Site, String> {
        if !matches!(endpoint.scheme(), "https" | "http") {
            return Err(format!("endpoint `{name}` is not an HTTP(S) URL"));
        }
        if endpoint.token_file.is_none() {
            return Err(format!(
                "endpoint `{name}` has no tokenFile: change requests are read with a credential"
            ));
        }
        let private = |what: &str, problem: crate::sinks::SinkProblem| {
            tracing::warn!(endpoint = %name, problem = %problem.0, "change requests not read");
            format!("endpoint `{name}`: {what} (the host's log says why)")
        };
        let client =
            http::client(endpoint).map_err(|p| private("its HTTP client cannot be set up", p))?;
        let authorization = http::authorization(endpoint)
            .map_err(|p| private("its credential cannot be read", p))?;
        Ok(Site {
            client,
            authorization,
            base: endpoint.url.trim_end_matches('/').to_owned(),
        })
    }

    /// `text` without the credential, should the system echo it: the header's value, its
    /// encoded part and, for Basic, `user:token` and the token.
    fn hidden(&self, mut text: String) -> String {
        use base64::Engine;
        let encoded = self
            .authorization
            .split_once(' ')
            .map_or("", |(_, credential)| credential);
        let decoded = self
            .authorization
            .strip_prefix("Basic ")
            .and_then(|b| base64::engine::general_purpose::STANDARD.decode(b).ok())
            .and_then(|b| String::from_utf8(b).ok())
            .unwrap_or_default();
        let token = decoded.split_once(':').map_or("", |(_, token)| token);
        for secret in [self.authorization.as_str(), encoded, &decoded, token] {
            if secret.is_empty() {
                continue;
            }
            // As it is, and as a JSON string spells it (`/` as `\/`, any character as `\uXXXX`).
            let escaped = secret.replace('/', "\\/");
            let unicode: String = secret
                .chars()
                .map(|c| format!("\\u{:04x}", u32::from(c)))
                .collect();
            for form in [secret.to_owned(), escaped, unicode] {
                text = text.replace(&form, "[credential]");
            }
        }
        text
    }

    fn url(&self, path: &str) -> Result<reqwest::Url, String> {
        reqwest::Url::parse(&format!("{}{path}", self.base))
            .map_err(|error| format!("the endpoint's URL is not usable: {error}"))
    }

    /// A link for people, without any credential the endpoint's URL holds.
    fn link(&self, path: &str) -> String {
        crate::redact::credentials(&format!("{}{path}", self.base)).into_owned()
    }

    /// GETs `url` and reads its JSON answer, bounded.
    async fn get(&self, url: reqwest::Url) -> Result<Value, String> {
        let response = self
            .client
            .get(url)
            .header(reqwest::header::ACCEPT, "application/json")
            .header(reqwest::header::AUTHORIZATION, &self.authorization)
            .send()
            .await
            .map_err(|error| match http::unreachable(error) {
                crate::sinks::Answer::Retry { error, .. } => error,
                _ => "unreachable".to_owned(),
            })?;
        let status = response.status();
        // The credential is taken out before anything is parsed, kept or cut.
        let text = self.hidden(http::body(response).await);
        if !status.is_success() {
            // A JSON answer is shown as decoded, so that no escape spells the credential.
            let shown = match serde_json::from_str::<Value>(&text) {
                Ok(mut answer) => {
                    self.hide_in(&mut answer);
                    self.hidden(answer.to_string())
                }
                Err(_) => text,
            };
            return Err(format!(
                "HTTP {}: {}",
                status.as_u16(),
                http::one_line(&shown)
            ));
        }
        let mut answer: Value = serde_json::from_str(&text)
            .map_err(|error| format!("the answer is not JSON ({error})"))?;
        // Escapes in JSON strings spell the credential otherwise: hide it once decoded too.
        self.hide_in(&mut answer);
        Ok(answer)
    }

    /// Every string of `value` without the credential.
    fn hide_in(&self, value: &mut Value) {
        match value {
            Value::String(text) => *text = self.hidden(std::mem::take(text)),
            Value::Array(items) => items.iter_mut().for_each(|v| self.hide_in(v)),
            Value::Object(map) => map.values_mut().for_each(|v| self.hide_in(v)),
            _ => {}
        }
    }
}

/// A value as kept: one line, bounded.
fn kept(text: &str) -> String {
    bounded(http::one_line(text), MOST_CHARS)
}

/// A ServiceNow field as `(display value, value)`: an object with both under
/// `sysparm_display_value=all`, a plain string otherwise.
fn field(row: &Value, name: &str) -> (Option<String>, Option<String>) {
    match row.get(name) {
        Some(Value::String(text)) => (Some(text.clone()), Some(text.clone())),
        Some(Value::Object(both)) => {
            let text = |key: &str| both.get(key).and_then(Value::as_str).map(str::to_owned);
            (text("display_value"), text("value"))
        }
        _ => (None, None),
    }
}

/// A ServiceNow date and time (`YYYY-MM-DD HH:MM:SS`, UTC as a value); none when empty.
fn servicenow_time(row: &Value, name: &str) -> Result<Option<DateTime<Utc>>, String> {
    match field(row, name).1.as_deref().map(str::trim) {
        None | Some("") => Ok(None),
        Some(text) => NaiveDateTime::parse_from_str(text, "%Y-%m-%d %H:%M:%S")
            .map(|t| Some(t.and_utc()))
            .map_err(|_| {
                format!(
                    "ServiceNow's {name} `{}` is not a date and time",
                    kept(text)
                )
            }),
    }
}

fn is_sys_id(text: &str) -> bool {
    text.len() == 32 && text.bytes().all(|b| b.is_ascii_hexdigit())
}

async fn servicenow(site: &Site, number: &str) -> Answer {
    let mut url = site.url("/api/now/table/change_request")?;
    url.query_pairs_mut()
        .append_pair("sysparm_query", &format!("number={number}"))
        .append_pair(
            "sysparm_fields",
            "sys_id,number,state,approval,start_date,end_date",
        )
        .append_pair("sysparm_display_value", "all")
        .append_pair("sysparm_exclude_reference_link", "true")
        .append_pair("sysparm_limit", "1");
    let answer = site
        .get(url)
        .await
        .map_err(|e| format!("ServiceNow: {e}"))?;
    let rows = answer
        .get("result")
        .and_then(Value::as_array)
        .ok_or("ServiceNow's answer has no `result` list")?;
    let row = rows
        .first()
        .ok_or_else(|| format!("ServiceNow has no change request {number}"))?;
    // An invalid query is ignored and every row answered: each must be the one asked for.
    if let Some(other) = rows
        .iter()
        .map(|r| field(r, "number").1.unwrap_or_default())
        .find(|n| n != number)
    {
        return Err(format!(
            "ServiceNow answered change request `{}` when asked for {number}: its query was not applied",
            kept(&other)
        ));
    }
    let sys_id = field(row, "sys_id").1.unwrap_or_default();
    if !is_sys_id(&sys_id) {
        return Err(format!(
            "ServiceNow's sys_id of {number} is not a sys_id: `{}`",
            kept(&sys_id)
        ));
    }
    let (state_shown, state_value) = field(row, "state");
    let (approval_shown, approval_value) = field(row, "approval");
    let approvers = servicenow_approvers(site, number, &sys_id).await?;
    Ok(ChangeRecord {
        state: kept(&state_shown.or(state_value).unwrap_or_default()),
        approval: approval_value.or(approval_shown).map(|a| kept(&a)),
        approvers,
        start: servicenow_time(row, "start_date")?,
        end: servicenow_time(row, "end_date")?,
        url: Some(site.link(&format!("/change_request.do?sys_id={sys_id}"))),
    })
}

/// Who approved the change request `sys_id`: its approved `sysapproval_approver` rows, each
/// checked to be of it.
async fn servicenow_approvers(
    site: &Site,
    number: &str,
    sys_id: &str,
) -> Result<Vec<String>, String> {
    let mut url = site.url("/api/now/table/sysapproval_approver")?;
    url.query_pairs_mut()
        .append_pair(
            "sysparm_query",
            &format!("sysapproval={sys_id}^state=approved"),
        )
        .append_pair(
            "sysparm_fields",
            "approver,state,sysapproval,sys_updated_on",
        )
        .append_pair("sysparm_display_value", "all")
        .append_pair("sysparm_exclude_reference_link", "true")
        .append_pair("sysparm_limit", &MOST_APPROVERS.to_string());
    let answer = site
        .get(url)
        .await
        .map_err(|e| format!("ServiceNow approvals of {number}: {e}"))?;
    let rows = answer
        .get("result")
        .and_then(Value::as_array)
        .ok_or("ServiceNow's answer on approvals has no `result` list")?;
    let mut approvers: Vec<String> = Vec::new();
    for row in rows.iter().take(MOST_APPROVERS) {
        let of = field(row, "sysapproval").1.unwrap_or_default();
        let state = field(row, "state").1.unwrap_or_default();
        if of != sys_id || !state.eq_ignore_ascii_case("approved") {
            return Err(format!(
                "ServiceNow answered approvals that are not approvals of {number}: its query was not applied"
            ));
        }
        let (shown, value) = field(row, "approver");
        if let Some(who) = shown.or(value).filter(|w| !w.trim().is_empty()) {
            let who = kept(&who);
            if !approvers.contains(&who) {
                approvers.push(who);
            }
        }
    }
    Ok(approvers)
}

/// A Jira date-time (`2026-12-01T09:00:00.000+0100`) or date field; a date ends at the end
/// of its day (UTC) when it is the end.
fn jira_time(fields: &Value, name: &str, end: bool) -> Result<Option<DateTime<Utc>>, String> {
    let text = match fields.get(name) {
        None | Some(Value::Null) => return Ok(None),
        Some(Value::String(text)) => text.trim(),
        Some(_) => return Err(format!("Jira's field {name} is not a date")),
    };
    let parsed = DateTime::parse_from_str(text, "%Y-%m-%dT%H:%M:%S%.f%z")
        .or_else(|_| DateTime::parse_from_rfc3339(text))
        .map(|t| t.with_timezone(&Utc))
        .ok()
        .or_else(|| {
            let day = NaiveDate::parse_from_str(text, "%Y-%m-%d").ok()?;
            let day = if end { day.succ_opt()? } else { day };
            Some(day.and_hms_opt(0, 0, 0)?.and_utc())
        });
    parsed
        .map(Some)
        .ok_or_else(|| format!("Jira's field {name} `{}` is not a date", kept(text)))
}

async fn jira(site: &Site, ask: &Ask) -> Answer {
    let key = &ask.number;
    let mut url = site.url(&format!("/rest/api/3/issue/{key}"))?;
    let mut fields = "status,summary,assignee".to_owned();
    if let Some((start, end)) = &ask.window {
        fields.push_str(&format!(",{start},{end}"));
    }
    url.query_pairs_mut().append_pair("fields", &fields);
    let answer = site.get(url).await.map_err(|e| format!("Jira: {e}"))?;
    let answered = answer
        .get("key")
        .and_then(Value::as_str)
        .unwrap_or_default();
    if answered != key {
        return Err(format!(
            "Jira answered issue `{}` when asked for {key}",
            kept(answered)
        ));
    }
    let fields = answer.get("fields").unwrap_or(&Value::Null);
    let status = fields
        .pointer("/status/name")
        .and_then(Value::as_str)
        .filter(|s| !s.trim().is_empty())
        .ok_or_else(|| format!("Jira's answer on {key} has no status"))?;
    let (start, end) = match &ask.window {
        Some((start, end)) => (
            jira_time(fields, start, false)?,
            jira_time(fields, end, true)?,
        ),
        None => (None, None),
    };
    Ok(ChangeRecord {
        state: kept(status),
        approval: None,
        approvers: Vec::new(),
        start,
        end,
        url: Some(site.link(&format!("/browse/{key}"))),
    })
}

/// Whether `value` has the form of a change request number of `system`: ServiceNow's
/// `CHG0012345` (letters then digits), Jira's `OPS-123`. Nothing else reaches a query.
pub fn well_formed(system: ChangeSystem, value: &str) -> bool {
    let upper_digits = |text: &str, letters: std::ops::RangeInclusive<usize>| {
        let split = text
            .find(|c: char| !c.is_ascii_uppercase())
            .unwrap_or(text.len());
        let (head, tail) = text.split_at(split);
        letters.contains(&head.len())
            && (4..=12).contains(&tail.len())
            && tail.bytes().all(|b| b.is_ascii_digit())
    };
    match system {
        ChangeSystem::ServiceNow => upper_digits(value, 2..=10),
        ChangeSystem::Jira => match value.split_once('-') {
            Some((project, issue)) => {
                (2..=10).contains(&project.len())
                    && project.starts_with(|c: char| c.is_ascii_uppercase())
                    && project
                        .bytes()
                        .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_')
                    && (1..=12).contains(&issue.len())
                    && issue.bytes().all(|b| b.is_ascii_digit())
            }
            None => false,
        },
    }
}

/// Why the applied commit names no change request that can be read, and the value it
/// names, shown bounded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub value: Option<String>,
    pub why: String,
}

/// The change request a requirement asks about for the applied commit `head`.
pub fn ask_of(requirement: &ChangeRequirement, head: Option<&CommitFacts>) -> Result<Ask, Refusal> {
    let trailer = &requirement.trailer;
    let values: Vec<&str> = head
        .into_iter()
        .flat_map(|c| c.trailer(trailer))
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let shown = |v: &str| bounded(crate::diag::escaped(v).into_owned(), SHOWN_CHARS);
    let value = match values.as_slice() {
        [value] => *value,
        [] => {
            return Err(Refusal {
                value: None,
                why: format!("the applied commit has no `{trailer}:` trailer"),
            });
        }
        several => {
            let listed: Vec<String> = several.iter().take(5).map(|v| shown(v)).collect();
            return Err(Refusal {
                value: None,
                why: format!(
                    "the applied commit names {} change requests ({}{}): one is needed",
                    several.len(),
                    listed.join(", "),
                    if several.len() > listed.len() {
                        ", …"
                    } else {
                        ""
                    }
                ),
            });
        }
    };
    let system = requirement.system;
    if !well_formed(system, value) {
        let form = match system {
            ChangeSystem::ServiceNow => "a ServiceNow change request number like CHG0012345",
            ChangeSystem::Jira => "a Jira issue key like OPS-123",
        };
        return Err(Refusal {
            value: Some(shown(value)),
            why: format!("`{trailer}: {}` is not {form}", shown(value)),
        });
    }
    Ok(Ask {
        system,
        endpoint: requirement.endpoint.to_string(),
        number: value.to_owned(),
        window: requirement
            .window
            .as_ref()
            .filter(|_| system == ChangeSystem::Jira)
            .map(|w| (w.start.clone(), w.end.clone())),
    })
}

/// "2026-12-01 09:00 UTC".
fn shown_time(at: DateTime<Utc>) -> String {
    at.format("%Y-%m-%d %H:%M UTC").to_string()
}

/// Whether a change request read lets the change through at `now`, why, and when it will
/// when only its planned start is to come.
pub fn judge(
    requirement: &ChangeRequirement,
    number: &str,
    record: &ChangeRecord,
    now: DateTime<Utc>,
) -> (Met, String, Option<DateTime<Utc>>) {
    let system = requirement.system;
    let no = |why: String| (Met::No, why, None);
    if system == ChangeSystem::ServiceNow {
        let approval = record.approval.as_deref().unwrap_or_default();
        if !approval.eq_ignore_ascii_case("approved") {
            let approval = if approval.is_empty() {
                "none"
            } else {
                approval
            };
            return no(format!("{number} is not approved (approval: {approval})"));
        }
        // The field alone is anyone's who can write the record: an approval is a person's.
        if record.approvers.is_empty() {
            return no(format!(
                "{number} says approved, but no approver approved it"
            ));
        }
    }
    if system == ChangeSystem::Jira
        && !number
            .split_once('-')
            .is_some_and(|(project, _)| requirement.projects.iter().any(|p| p == project))
    {
        return no(format!(
            "{number} is not an issue of {}",
            requirement.projects.join(" or ")
        ));
    }
    let state = record.state.trim();
    if !requirement
        .states
        .iter()
        .any(|s| s.trim().eq_ignore_ascii_case(state))
    {
        return no(format!(
            "{number} is {}, not {}",
            if state.is_empty() {
                "in no state"
            } else {
                state
            },
            requirement.states.join(" or ")
        ));
    }
    let status = match system {
        ChangeSystem::ServiceNow => format!("{number} approved, {state}"),
        ChangeSystem::Jira => format!("{number} is {state}"),
    };
    if system == ChangeSystem::Jira && requirement.window.is_none() {
        return (Met::Yes, status, None);
    }
    let (Some(start), Some(end)) = (record.start, record.end) else {
        return no(format!("{status}, but it has no planned start and end"));
    };
    if end <= start {
        return no(format!(
            "{status}, but its planned end {} is not after its start {}",
            shown_time(end),
            shown_time(start)
        ));
    }
    if now < start {
        return (
            Met::Waiting,
            format!("{status}; its planned start is {}", shown_time(start)),
            Some(start),
        );
    }
    if now >= end {
        return no(format!(
            "{status}, but its planned end {} has passed",
            shown_time(end)
        ));
    }
    (
        Met::Yes,
        format!("{status}, planned until {}", shown_time(end)),
        None,
    )
}

#[cfg(test)]
mod tests {
    use super::super::requirements::change_requirement;
    use super::super::{Evidence, RequirementEvidence};
    use super::*;
    use crate::model::ChangeWindowFields;

    fn at(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text)
            .expect("a time")
            .with_timezone(&Utc)
    }

    fn requirement(system: ChangeSystem) -> ChangeRequirement {
        ChangeRequirement {
            system,
            endpoint: Name("itsm".into()),
            states: vec!["Scheduled".into(), "Implement".into()],
            trailer: "Change-Request".into(),
            window: None,
            projects: vec!["OPS".into()],
        }
    }

    fn approved() -> ChangeRecord {
        ChangeRecord {
            state: "implement".into(),
            approval: Some("approved".into()),
            approvers: vec!["Alice".into()],
            start: Some(at("2026-12-01T09:00:00Z")),
            end: Some(at("2026-12-01T17:00:00Z")),
            url: None,
        }
    }

    fn head(trailers: &[(&str, &str)]) -> CommitFacts {
        CommitFacts {
            sha: "1".repeat(40),
            trailers: trailers
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
            ..CommitFacts::default()
        }
    }

    #[test]
    fn a_servicenow_change_passes_only_approved_in_a_state_and_inside_its_window() {
        let snow = requirement(ChangeSystem::ServiceNow);
        let judged = |record: &ChangeRecord, now: &str| judge(&snow, "CHG1234", record, at(now));
        let during = "2026-12-01T10:00:00Z";
        assert_eq!(judged(&approved(), during).0, Met::Yes);
        assert_eq!(
            judged(&approved(), "2026-12-01T08:00:00Z"),
            (
                Met::Waiting,
                "CHG1234 approved, implement; its planned start is 2026-12-01 09:00 UTC".into(),
                Some(at("2026-12-01T09:00:00Z"))
            )
        );
        assert_eq!(judged(&approved(), "2026-12-01T09:00:00Z").0, Met::Yes);
        assert_eq!(judged(&approved(), "2026-12-01T17:00:00Z").0, Met::No);
        for record in [
            ChangeRecord {
                approval: Some("requested".into()),
                ..approved()
            },
            ChangeRecord {
                approval: None,
                ..approved()
            },
            ChangeRecord {
                state: "Assess".into(),
                ..approved()
            },
            ChangeRecord {
                state: String::new(),
                ..approved()
            },
            ChangeRecord {
                start: None,
                ..approved()
            },
            ChangeRecord {
                end: None,
                ..approved()
            },
        ] {
            // Not approved, in no listed state or without a window: never waiting either.
            assert_eq!(judged(&record, during).0, Met::No, "{record:?}");
            assert_eq!(
                judged(&record, "2026-12-01T08:00:00Z").0,
                Met::No,
                "{record:?}"
            );
        }
    }

    #[test]
    fn a_jira_issue_passes_by_status_and_by_its_window_fields_when_given() {
        let mut jira = requirement(ChangeSystem::Jira);
        jira.states = vec!["Approved".into()];
        let issue = ChangeRecord {
            state: "Approved".into(),
            ..ChangeRecord::default()
        };
        let now = at("2026-12-01T08:00:00Z");
        assert_eq!(judge(&jira, "OPS-1", &issue, now).0, Met::Yes);
        let closed = ChangeRecord {
            state: "Done".into(),
            ..issue.clone()
        };
        assert_eq!(
            judge(&jira, "OPS-1", &closed, now).1,
            "OPS-1 is Done, not Approved"
        );
        jira.window = Some(ChangeWindowFields {
            start: "customfield_1".into(),
            end: "customfield_2".into(),
        });
        assert_eq!(judge(&jira, "OPS-1", &issue, now).0, Met::No);
        let planned = ChangeRecord {
            start: Some(at("2026-12-01T09:00:00Z")),
            end: Some(at("2026-12-02T00:00:00Z")),
            ..issue
        };
        assert_eq!(judge(&jira, "OPS-1", &planned, now).0, Met::Waiting);
    }

    #[test]
    fn the_requirement_never_passes_on_what_was_not_read() {
        let snow = requirement(ChangeSystem::ServiceNow);
        let now = at("2026-12-01T10:00:00Z");
        let mut evidence = Evidence {
            commits: vec![head(&[("change-request", " CHG1234 ")])],
            complete: true,
            ..Evidence::default()
        };
        let ask = ask_of(&snow, evidence.head()).expect("an ask");
        assert_eq!(ask.number, "CHG1234");
        assert_eq!(ask.endpoint, "itsm");
        let (report, _) = change_requirement(&snow, &evidence, now);
        assert_eq!(report.met, Met::No);
        assert_eq!(report.summary, "CHG1234 could not be read: it was not read");
        evidence
            .changes
            .insert(ask.clone(), Err("HTTP 503: down".into()));
        let (report, _) = change_requirement(&snow, &evidence, now);
        assert_eq!(report.summary, "CHG1234 could not be read: HTTP 503: down");
        let RequirementEvidence::Change { problem, .. } = &report.evidence else {
            panic!("{report:?}");
        };
        assert_eq!(problem.as_deref(), Some("HTTP 503: down"));
        evidence.changes.insert(ask, Ok(approved()));
        let (report, opens_at) = change_requirement(&snow, &evidence, now);
        assert_eq!((report.met, opens_at), (Met::Yes, None));
        let (report, opens_at) = change_requirement(&snow, &evidence, at("2026-12-01T08:00:00Z"));
        assert_eq!(
            (report.met, opens_at),
            (Met::Waiting, Some(at("2026-12-01T09:00:00Z")))
        );
    }

    #[test]
    fn a_commit_names_exactly_one_change_request_of_the_systems_form() {
        let snow = requirement(ChangeSystem::ServiceNow);
        let refused =
            |trailers: &[(&str, &str)]| ask_of(&snow, Some(&head(trailers))).expect_err("refused");
        assert_eq!(
            refused(&[]).why,
            "the applied commit has no `Change-Request:` trailer"
        );
        assert!(ask_of(&snow, None).is_err());
        assert_eq!(
            refused(&[("Change-Request", "CHG1234"), ("Change-Request", "CHG5678")]).why,
            "the applied commit names 2 change requests (CHG1234, CHG5678): one is needed"
        );
        let hostile = refused(&[("Change-Request", "CHG1\n^ORnumber!=x")]);
        assert_eq!(hostile.value.as_deref(), Some("CHG1\\n^ORnumber!=x"));
        let long = "A".repeat(5000);
        let refusal = refused(&[("Change-Request", &long)]);
        assert!(refusal.why.len() < 300, "{}", refusal.why);
        let same = head(&[("Change-Request", "CHG1234"), ("Change-Request", "CHG1234")]);
        assert!(ask_of(&snow, Some(&same)).is_ok());
        let own = ChangeRequirement {
            trailer: "Change".into(),
            ..snow.clone()
        };
        let named = head(&[("change", "CHG1234"), ("Change-Request", "CHG5678")]);
        assert_eq!(
            ask_of(&own, Some(&named)).map(|a| a.number),
            Ok("CHG1234".to_owned())
        );
    }

    #[test]
    fn only_numbers_of_the_systems_form_are_asked_about() {
        for good in ["CHG0012345", "CR1234", "CHANGEREQS123456789012"] {
            assert!(well_formed(ChangeSystem::ServiceNow, good), "{good}");
        }
        for bad in [
            "",
            "CHG1^ORnumber!=x",
            "CHG0012345\nX",
            "chg0012345",
            "C0012345",
            "CHG123",
            "CHG0012345 ",
            "CHG00123456789012",
            "CHG0012345=",
            "ABCDEFGHIJK0012345",
        ] {
            assert!(!well_formed(ChangeSystem::ServiceNow, bad), "{bad:?}");
        }
        for good in ["OPS-1", "A1_B-123456789012"] {
            assert!(well_formed(ChangeSystem::Jira, good), "{good}");
        }
        for bad in [
            "OPS-",
            "O-1",
            "1OPS-1",
            "OPS-1-2",
            "ops-1",
            "OPS-1 OR",
            "OPS-1234567890123",
        ] {
            assert!(!well_formed(ChangeSystem::Jira, bad), "{bad:?}");
        }
    }
}
