//! `servicenow`: tickets as ServiceNow records, through the Table API
//! (`/api/now/table/<table>`), `incident` by default.
//!
//! A record carries the problem's tag as `correlation_id` (and `gitward` as
//! `correlation_display`): that is how it is found again after a create whose answer was
//! lost. ServiceNow ignores a part of `sysparm_query` it does not understand and then matches
//! every row, so each row an answer holds is checked against what was asked before it is
//! believed. Records are resolved with a close code read from the instance's choice list
//! (`sys_choice`), never a hard-coded one, and reopened by their state.
//!
//! Incident states: 1 New, 2 In Progress, 3 On Hold, 6 Resolved, 7 Closed, 8 Canceled. A
//! record is done in states 6, 7 and 8 or when it is no longer active; it is accepted (a
//! person's "won't fix", never reopened) when canceled or done with one of the accepted close
//! codes.
//!
//! ServiceNow's rate limits are rules each instance defines (requests an hour, per user or
//! role): requests are paced by a token bucket per instance and user, five a second with
//! bursts of ten, and a 429 is retried after its `Retry-After` (after [`PAUSE_AFTER_429`]
//! when it gives none).

use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use serde_json::{Map, Value};

use super::{Call, Description, Failure, Note, OBSERVE_BATCH, Problem, TITLE_CHARS, Ticket};
use super::{TicketSystem, template};
use crate::config::Endpoint;
use crate::model::{BySeverity, FindingSeverity, ServiceNowSettings};
use crate::sinks::{SinkProblem, http};

/// Requests a second one instance and user are sent, sustained...
pub const RATE_PER_SECOND: f64 = 5.0;
/// ... and how many may go at once after a quiet time.
pub const BURST: f64 = 10.0;
/// The wait after a 429 that does not say how long to wait: ServiceNow counts requests in
/// windows of an hour and commits its counts every 30 seconds.
pub const PAUSE_AFTER_429: Duration = Duration::from_secs(60);
/// Most bytes of an answer read: 100 records shown with `sysparm_display_value=all` are
/// tens of kilobytes; anything longer is not an answer to what was asked.
pub const ANSWER_BYTES: usize = 1024 * 1024;
/// Longest `description`, `work_notes` and `close_notes` sent (the base system's
/// `description` holds 4,000 characters).
pub const TEXT_CHARS: usize = 4000;
/// Longest `correlation_id` (the column holds 100 characters: a longer tag would be cut and
/// never found again).
pub const TAG_CHARS: usize = 100;
/// Longest record number, state and assignee kept from an answer.
const NUMBER_CHARS: usize = 40;
const STATE_CHARS: usize = 40;
const ASSIGNEE_CHARS: usize = 200;

/// The table records go to by default.
pub const DEFAULT_TABLE: &str = "incident";
/// What `correlation_display` says on every record gitward files.
pub const CORRELATION_DISPLAY: &str = "gitward";
/// States records are set to.
const STATE_IN_PROGRESS: &str = "2";
const STATE_RESOLVED: &str = "6";
const STATE_CANCELED: &str = "8";
/// States of a done record.
const DONE_STATES: &[&str] = &["6", "7", "8"];

/// Close codes preferred for records resolved when their problem clears, when the sink names
/// none: the first of them the instance has (recent releases, then older ones).
pub const PREFERRED_CLOSE_CODES: &[&str] = &[
    "Solution provided",
    "Resolved by change",
    "Solved (Permanently)",
    "Solved (Work Around)",
];

/// Close codes that say "won't fix", unless the sink names its own.
pub const DEFAULT_ACCEPTED_CLOSE_CODES: &[&str] =
    &["Not Solved (Too Costly)", "Not Solved (Not Reproducible)"];

/// Fields gitward sets itself: a sink's `fields` may not set them too.
pub const OWN_FIELDS: &[&str] = &[
    "short_description",
    "description",
    "correlation_id",
    "correlation_display",
    "impact",
    "urgency",
    "assignment_group",
    "caller_id",
    "due_date",
    "state",
    "active",
    "close_code",
    "close_notes",
    "work_notes",
    "number",
];

/// Fields each answer is asked for.
const FIELDS: &str = "sys_id,number,state,active,close_code,assigned_to,correlation_id";

/// What stays as it is in the `uri` of a record's link.
const URI_KEPT: &AsciiSet = &NON_ALPHANUMERIC.remove(b'.').remove(b'_').remove(b'-');

/// Tickets as records of one ServiceNow table.
pub struct ServiceNow {
    client: reqwest::Client,
    /// The instance's URL, without a trailing `/`.
    base: String,
    table: String,
    authorization: String,
    /// Texts that must never appear in a failure: the header and the credential in it.
    secrets: Vec<String>,
    /// Which token bucket paces this system: one per instance and user.
    bucket: [u8; 32],
    settings: ServiceNowSettings,
    accepted_close_codes: Vec<String>,
    /// The close code records are resolved with; chosen from the instance's choices by
    /// [`TicketSystem::prepare`].
    close_code: Option<String>,
    requests: AtomicU64,
}

impl ServiceNow {
    pub fn new(
        settings: &ServiceNowSettings,
        endpoint: &Endpoint,
    ) -> Result<ServiceNow, SinkProblem> {
        let base = instance_url(&endpoint.url)?;
        check_settings(settings)?;
        let table = settings
            .table
            .as_deref()
            .unwrap_or(DEFAULT_TABLE)
            .to_owned();
        let authorization = http::authorization(endpoint)?;
        let secrets = secrets_of(&authorization);
        let bucket = match &endpoint.user {
            Some(user) => http::bucket_of(&[&base, user]),
            // An OAuth token names its user only to the instance: one bucket per token.
            None => http::bucket_of(&[&base, &authorization]),
        };
        let accepted_close_codes = if settings.accepted_close_codes.is_empty() {
            DEFAULT_ACCEPTED_CLOSE_CODES
                .iter()
                .map(|c| (*c).to_owned())
                .collect()
        } else {
            settings.accepted_close_codes.clone()
        };
        Ok(ServiceNow {
            client: http::client(endpoint)?,
            base,
            table,
            authorization,
            secrets,
            bucket,
            close_code: settings.close_code.clone(),
            settings: settings.clone(),
            accepted_close_codes,
            requests: AtomicU64::new(0),
        })
    }

    /// The close code records are resolved with, once [`TicketSystem::prepare`] chose it.
    pub fn close_code(&self) -> Option<&str> {
        self.close_code.as_deref()
    }

    fn table_url(&self, table: &str) -> String {
        format!("{}/api/now/table/{table}", self.base)
    }

    fn record_url(&self, id: &str) -> String {
        format!("{}/{id}", self.table_url(&self.table))
    }

    /// Where people open record `id`.
    fn link(&self, id: &str) -> String {
        let uri = format!("{}.do?sys_id={id}", self.table);
        format!(
            "{}/nav_to.do?uri={}",
            self.base,
            utf8_percent_encode(&uri, URI_KEPT)
        )
    }

    /// `text` without the credential in it.
    fn redacted(&self, text: String) -> String {
        self.secrets
            .iter()
            .fold(text, |text, secret| text.replace(secret.as_str(), "***"))
    }

    /// Sends one request (paced, counted) and reads its JSON answer.
    async fn call(
        &self,
        method: reqwest::Method,
        url: &str,
        query: &[(&str, &str)],
        body: Option<&Value>,
    ) -> Result<Value, Failure> {
        http::pace(self.bucket, RATE_PER_SECOND, BURST).await;
        self.requests.fetch_add(1, Ordering::Relaxed);
        // Form-encoded like a browser's query: `^`, `=` and `,` of the encoded query travel
        // escaped.
        let url =
            reqwest::Url::parse_with_params(url, query).map_err(|error| Failure::Refused {
                answer: format!("the request's URL: {error}"),
            })?;
        let mut request = self
            .client
            .request(method, url)
            .header(reqwest::header::ACCEPT, "application/json")
            .header(reqwest::header::AUTHORIZATION, &self.authorization);
        if let Some(body) = body {
            request = request
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(body.to_string());
        }
        let response = match request.send().await {
            Ok(response) => response,
            Err(error) => return Err(self.failure(http::unreachable(error))),
        };
        let status = response.status();
        let after = http::retry_after(response.headers());
        let (bytes, whole) = read_bounded(response, ANSWER_BYTES).await;
        if !status.is_success() {
            let said = error_text(&bytes);
            let after = match status {
                reqwest::StatusCode::TOO_MANY_REQUESTS => after.or(Some(PAUSE_AFTER_429)),
                _ => after,
            };
            if status == reqwest::StatusCode::FORBIDDEN && said.contains("Data Policy Exception") {
                // A field the instance requires and the sink does not set: asking again
                // cannot help, unlike a 403 for a role the account lacks.
                return Err(Failure::Refused {
                    answer: self.redacted(format!("HTTP 403: {}", http::one_line(&said))),
                });
            }
            return Err(self.failure(http::classify(status, after, &said)));
        }
        if !whole {
            return Err(Failure::Retry {
                error: format!(
                    "ServiceNow's answer (HTTP {}) is longer than {ANSWER_BYTES} bytes or was cut off",
                    status.as_u16()
                ),
                after: None,
            });
        }
        serde_json::from_slice(&bytes).map_err(|error| Failure::Retry {
            error: self.redacted(format!(
                "ServiceNow's answer (HTTP {}) is not JSON ({error}): {}",
                status.as_u16(),
                http::one_line(&String::from_utf8_lossy(&bytes[..bytes.len().min(300)]))
            )),
            after: None,
        })
    }

    fn failure(&self, answer: crate::sinks::Answer) -> Failure {
        match Failure::from_answer(answer) {
            Some(Failure::Retry { error, after }) => Failure::Retry {
                error: self.redacted(error),
                after,
            },
            Some(Failure::Refused { answer }) => Failure::Refused {
                answer: self.redacted(answer),
            },
            None => Failure::Retry {
                error: "ServiceNow answered without an answer".to_owned(),
                after: None,
            },
        }
    }

    /// PATCHes record `id` with `fields` and reads the record back.
    async fn patch(&self, id: &str, fields: Map<String, Value>) -> Result<Value, Failure> {
        let id = record_id(id)?;
        self.call(
            reqwest::Method::PATCH,
            &self.record_url(id),
            &record_query(),
            Some(&Value::Object(fields)),
        )
        .await
    }

    /// The ticket a single-record answer shows.
    fn ticket_in(&self, answer: &Value, what: &str) -> Result<Ticket, Failure> {
        answer
            .get("result")
            .and_then(Value::as_object)
            .and_then(|row| self.ticket_of(row))
            .ok_or_else(|| Failure::Retry {
                error: format!("ServiceNow's answer to the {what} does not show a readable record"),
                after: None,
            })
    }

    /// The ticket an answer about `ticket` shows, if it is that record and not another.
    fn same_record(&self, answer: &Value, ticket: &Ticket, what: &str) -> Result<Ticket, Failure> {
        let shown = self.ticket_in(answer, what)?;
        if shown.id != ticket.id {
            return Err(Failure::Retry {
                error: format!(
                    "ServiceNow's answer to the {what} of {} shows another record",
                    ticket.key
                ),
                after: None,
            });
        }
        Ok(shown)
    }

    /// The ticket `row` shows, if it is a readable record.
    fn ticket_of(&self, row: &Map<String, Value>) -> Option<Ticket> {
        let id = record_id(value_of(row, "sys_id")?).ok()?;
        let number = value_of(row, "number").filter(|n| is_number(n))?;
        let state = value_of(row, "state").unwrap_or_default();
        let status = display_of(row, "state")
            .map(|s| clip(s, STATE_CHARS))
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| clip(state_name(state), STATE_CHARS));
        let done = DONE_STATES.contains(&state) || value_of(row, "active") == Some("false");
        let close_code = [value_of(row, "close_code"), display_of(row, "close_code")];
        let accepted = state == STATE_CANCELED
            || (done
                && close_code.iter().flatten().any(|code| {
                    self.accepted_close_codes
                        .iter()
                        .any(|accepted| accepted == code)
                }));
        let assignee = display_of(row, "assigned_to")
            .filter(|name| !name.trim().is_empty())
            .or_else(|| value_of(row, "assigned_to"))
            .map(|name| clip(name, ASSIGNEE_CHARS))
            .filter(|name| !name.is_empty());
        Some(Ticket {
            id: id.to_owned(),
            key: number.to_owned(),
            url: self.link(id),
            status,
            done,
            accepted,
            assignee,
        })
    }

    /// The close codes the instance lists for `table`'s records, in their order.
    async fn close_codes_of(&self, table: &str) -> Result<Vec<(String, String)>, Failure> {
        let query = format!("name={table}^element=close_code^inactive=false^ORDERBYsequence");
        let answer = self
            .call(
                reqwest::Method::GET,
                &self.table_url("sys_choice"),
                &[
                    ("sysparm_query", query.as_str()),
                    ("sysparm_fields", "name,element,value,label,language"),
                    ("sysparm_limit", "100"),
                ],
                None,
            )
            .await?;
        let rows = answer
            .get("result")
            .and_then(Value::as_array)
            .ok_or_else(|| Failure::Retry {
                error: "ServiceNow's answer about close codes holds no `result` list".to_owned(),
                after: None,
            })?;
        let mut codes: Vec<(String, String)> = Vec::new();
        for row in rows.iter().filter_map(Value::as_object) {
            // Rows of other lists mean the query was ignored: they are not close codes here.
            if value_of(row, "name") != Some(table)
                || value_of(row, "element") != Some("close_code")
            {
                continue;
            }
            let Some(value) = value_of(row, "value").filter(|v| is_choice(v)) else {
                continue;
            };
            let label = value_of(row, "label")
                .map(|l| clip(l, 100))
                .unwrap_or_default();
            if !codes.iter().any(|(known, _)| known == value) {
                codes.push((value.to_owned(), label));
            }
        }
        Ok(codes)
    }

    /// The close code to resolve with, of `codes` (value, label) read from the instance.
    fn choose_close_code(
        &self,
        codes: &[(String, String)],
        listed_for: &str,
    ) -> Result<Option<String>, Failure> {
        let Some(wanted) = &self.settings.close_code else {
            let preferred = PREFERRED_CLOSE_CODES
                .iter()
                .find_map(|p| codes.iter().find(|(value, _)| value == p));
            return Ok(preferred.or(codes.first()).map(|(value, _)| value.clone()));
        };
        if let Some((value, _)) = codes
            .iter()
            .find(|(value, label)| value == wanted || label == wanted)
        {
            return Ok(Some(value.clone()));
        }
        let allowed = if codes.is_empty() {
            "none".to_owned()
        } else {
            codes
                .iter()
                .map(|(value, _)| format!("`{value}`"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        Err(Failure::Refused {
            answer: format!(
                "close code `{}` is not one of the instance's close codes for {listed_for}: {allowed}",
                crate::diag::escaped(wanted)
            ),
        })
    }

    async fn prepare_now(&mut self) -> Result<(), Failure> {
        let hint = |failure: Failure| match failure {
            Failure::Retry { error, after }
                if error.starts_with("HTTP 401") || error.starts_with("HTTP 403") =>
            {
                Failure::Retry {
                    error: format!(
                        "{error} (ServiceNow refused the endpoint's credential: check its `user` \
                         and `tokenFile`, and that the account may read `sys_choice` and write \
                         the table)"
                    ),
                    after,
                }
            }
            other => other,
        };
        let mut listed_for = self.table.clone();
        let mut codes = self.close_codes_of(&self.table).await.map_err(hint)?;
        if codes.is_empty() && self.table != "task" {
            // A table of its own (or one extending task without its own list) takes task's.
            codes = self.close_codes_of("task").await.map_err(hint)?;
            listed_for = format!("{} (and task)", self.table);
        }
        self.close_code = self.choose_close_code(&codes, &listed_for)?;
        Ok(())
    }

    async fn create_now(&self, problem: &Problem) -> Result<Ticket, Failure> {
        let tag = query_value("the problem's tag", &problem.tag)?;
        if tag.chars().count() > TAG_CHARS {
            return Err(Failure::Refused {
                answer: format!("the problem's tag is longer than {TAG_CHARS} characters"),
            });
        }
        let mut body = Map::new();
        let mut put = |name: &str, value: String| {
            body.insert(name.to_owned(), Value::String(value));
        };
        put("short_description", title(&problem.title));
        put("description", description(&problem.description, tag));
        put("correlation_id", tag.to_owned());
        put("correlation_display", CORRELATION_DISPLAY.to_owned());
        let (impact, urgency) = self.levels(problem.severity);
        put("impact", impact);
        put("urgency", urgency);
        if let Some(group) = &self.settings.assignment_group {
            put("assignment_group", group.clone());
        }
        if let Some(caller) = &self.settings.caller {
            put("caller_id", caller.clone());
        }
        if let Some(due) = problem.due {
            // The Table API reads date-times without a display value as UTC: the end of
            // the due day.
            put("due_date", format!("{} 23:59:59", due.format("%Y-%m-%d")));
        }
        for (name, value) in &self.settings.fields {
            body.insert(name.clone(), template::render(value, &problem.event));
        }
        let answer = self
            .call(
                reqwest::Method::POST,
                &self.table_url(&self.table),
                &record_query(),
                Some(&Value::Object(body)),
            )
            .await?;
        self.ticket_in(&answer, "create")
    }

    async fn find_now(&self, tag: &str) -> Result<Option<Ticket>, Failure> {
        let tag = query_value("the problem's tag", tag)?;
        let query = format!("correlation_id={tag}^active=true^ORDERBYsys_created_on");
        let rows = self.rows(&query, 1, "the search").await?;
        let Some(row) = rows.first().and_then(Value::as_object) else {
            return Ok(None);
        };
        if value_of(row, "correlation_id") != Some(tag) {
            return Err(Failure::Refused {
                answer: format!(
                    "ServiceNow answered the search for correlation_id `{tag}` with a record \
                     that does not carry it: the {} table has no `correlation_id` field, or the \
                     instance ignored the query",
                    self.table
                ),
            });
        }
        self.ticket_of(row).map(Some).ok_or_else(|| Failure::Retry {
            error: "ServiceNow's answer to the search does not show a readable record".to_owned(),
            after: None,
        })
    }

    /// The rows of the table that `query` finds, at most `limit`, as ServiceNow answers them
    /// about `what`.
    async fn rows(&self, query: &str, limit: usize, what: &str) -> Result<Vec<Value>, Failure> {
        let limit = limit.to_string();
        let mut answer = self
            .call(
                reqwest::Method::GET,
                &self.table_url(&self.table),
                &[
                    ("sysparm_query", query),
                    ("sysparm_limit", limit.as_str()),
                    ("sysparm_fields", FIELDS),
                    ("sysparm_display_value", "all"),
                    ("sysparm_exclude_reference_link", "true"),
                ],
                None,
            )
            .await?;
        match answer.get_mut("result").map(Value::take) {
            Some(Value::Array(rows)) => Ok(rows),
            _ => Err(Failure::Retry {
                error: format!("ServiceNow's answer about {what} holds no `result` list"),
                after: None,
            }),
        }
    }

    async fn observe_now(&self, ids: &[String]) -> Result<Vec<Ticket>, Failure> {
        let mut tickets = Vec::new();
        for chunk in ids.chunks(OBSERVE_BATCH) {
            tickets.extend(self.observe_chunk(chunk).await?);
        }
        Ok(tickets)
    }

    /// The records of `ids` (at most [`OBSERVE_BATCH`]), in one request.
    async fn observe_chunk(&self, ids: &[String]) -> Result<Vec<Ticket>, Failure> {
        let asked: HashSet<&str> = ids
            .iter()
            .map(|id| record_id(id))
            .collect::<Result<_, _>>()?;
        let query = format!("sys_idIN{}", ids.join(","));
        let rows = self.rows(&query, ids.len(), "the records").await?;
        let mut tickets: Vec<Ticket> = Vec::new();
        for row in rows.iter().filter_map(Value::as_object) {
            let ticket = self.ticket_of(row).ok_or_else(|| Failure::Retry {
                error: "ServiceNow's answer about records holds an unreadable record".to_owned(),
                after: None,
            })?;
            // A record not asked for means the instance ignored the query: what it left out
            // cannot be taken as deleted.
            if !asked.contains(ticket.id.as_str()) {
                return Err(Failure::Refused {
                    answer: format!(
                        "ServiceNow answered a query for records by sys_id with {}, which was \
                         not asked for: the instance ignored the query",
                        ticket.key
                    ),
                });
            }
            if !tickets.iter().any(|known| known.id == ticket.id) {
                tickets.push(ticket);
            }
        }
        Ok(tickets)
    }

    /// `impact` and `urgency` of `problem`'s severity.
    fn levels(&self, severity: FindingSeverity) -> (String, String) {
        let impact = self
            .settings
            .impact
            .get(severity, &default_impact())
            .unwrap_or_else(|| "3".to_owned());
        let urgency = self
            .settings
            .urgency
            .get(severity, &default_urgency())
            .unwrap_or_else(|| "3".to_owned());
        (impact, urgency)
    }
}

impl TicketSystem for ServiceNow {
    fn prepare(&mut self) -> Call<'_, ()> {
        Box::pin(self.prepare_now())
    }

    fn find<'a>(&'a self, tag: &'a str) -> Call<'a, Option<Ticket>> {
        Box::pin(self.find_now(tag))
    }

    fn create<'a>(&'a self, problem: &'a Problem) -> Call<'a, Ticket> {
        Box::pin(self.create_now(problem))
    }

    fn update<'a>(
        &'a self,
        ticket: &'a Ticket,
        problem: &'a Problem,
        note: &'a Note,
    ) -> Call<'a, ()> {
        Box::pin(async move {
            let mut fields =
                Map::from_iter([("work_notes".to_owned(), Value::String(note_text(note)))]);
            // Impact and urgency change only with the severity's: a person's choice stands.
            let (impact, urgency) = self.levels(problem.severity);
            if problem.previous.map(|p| self.levels(p)) != Some((impact.clone(), urgency.clone())) {
                fields.insert("impact".to_owned(), Value::String(impact));
                fields.insert("urgency".to_owned(), Value::String(urgency));
            }
            self.patch(&ticket.id, fields).await.map(|_| ())
        })
    }

    fn resolve<'a>(&'a self, ticket: &'a Ticket, note: &'a Note) -> Call<'a, Ticket> {
        Box::pin(async move {
            let mut fields = Map::from_iter([
                ("state".to_owned(), Value::from(STATE_RESOLVED)),
                ("close_notes".to_owned(), Value::String(note_text(note))),
            ]);
            if let Some(code) = &self.close_code {
                fields.insert("close_code".to_owned(), Value::String(code.clone()));
            }
            let answer = self.patch(&ticket.id, fields).await?;
            let resolved = self.same_record(&answer, ticket, "resolve")?;
            if !resolved.done {
                return Err(kept(&resolved, "resolve"));
            }
            Ok(resolved)
        })
    }

    fn reopen<'a>(
        &'a self,
        ticket: &'a Ticket,
        problem: &'a Problem,
        note: &'a Note,
    ) -> Call<'a, Ticket> {
        Box::pin(async move {
            let (impact, urgency) = self.levels(problem.severity);
            let fields = Map::from_iter([
                ("state".to_owned(), Value::from(STATE_IN_PROGRESS)),
                ("work_notes".to_owned(), Value::String(note_text(note))),
                ("impact".to_owned(), Value::String(impact)),
                ("urgency".to_owned(), Value::String(urgency)),
            ]);
            let answer = self
                .patch(&ticket.id, fields)
                .await
                .map_err(|failure| match failure {
                    // The account could change the record before: it is read-only now.
                    Failure::Retry { error, .. } if error.starts_with("HTTP 403") => {
                        Failure::Refused {
                            answer: format!(
                                "ServiceNow does not let {} be reopened ({error}): a closed record \
                             is read-only",
                                ticket.key
                            ),
                        }
                    }
                    other => other,
                })?;
            let reopened = self.same_record(&answer, ticket, "reopen")?;
            if reopened.done {
                return Err(kept(&reopened, "reopen"));
            }
            Ok(reopened)
        })
    }

    fn observe<'a>(&'a self, ids: &'a [String]) -> Call<'a, Vec<Ticket>> {
        Box::pin(self.observe_now(ids))
    }

    fn requests(&self) -> u64 {
        self.requests.load(Ordering::Relaxed)
    }
}

/// A record a PATCH left in a state other than the one asked for (a business rule, a data
/// policy, a closed incident that cannot be reopened).
fn kept(ticket: &Ticket, what: &str) -> Failure {
    Failure::Refused {
        answer: format!(
            "ServiceNow kept {} in state `{}` after the {what}",
            ticket.key, ticket.status
        ),
    }
}

/// Query parameters of an answer showing one record.
fn record_query() -> [(&'static str, &'static str); 3] {
    [
        ("sysparm_fields", FIELDS),
        ("sysparm_display_value", "all"),
        ("sysparm_exclude_reference_link", "true"),
    ]
}

/// `impact` by severity unless the sink says otherwise: 1 (high) for critical and high, 2
/// medium, 3 (low) for low and info.
pub fn default_impact() -> BySeverity<String> {
    levels(["1", "1", "2", "3", "3"])
}

/// `urgency` by severity unless the sink says otherwise: 1 critical, 2 high and medium, 3 low
/// and info.
pub fn default_urgency() -> BySeverity<String> {
    levels(["1", "2", "2", "3", "3"])
}

fn levels(values: [&str; 5]) -> BySeverity<String> {
    let [critical, high, medium, low, info] = values.map(|v| Some(v.to_owned()));
    BySeverity {
        critical,
        high,
        medium,
        low,
        info,
    }
}

/// The instance's URL without a trailing `/`: `http(s)`, no query, no credentials in it.
fn instance_url(url: &str) -> Result<String, SinkProblem> {
    let parsed = reqwest::Url::parse(url).map_err(|error| {
        SinkProblem(format!(
            "servicenow endpoint URL `{}` is not a URL: {error}",
            crate::redact::credentials(url)
        ))
    })?;
    if !matches!(parsed.scheme(), "https" | "http")
        || parsed.query().is_some()
        || parsed.fragment().is_some()
        || !parsed.username().is_empty()
        || parsed.password().is_some()
    {
        return Err(SinkProblem(format!(
            "servicenow endpoint URL `{}` must be the instance's https:// URL, like \
             `https://example.service-now.com`, without a query or credentials (they go in \
             `user` and `tokenFile`)",
            crate::redact::credentials(url)
        )));
    }
    Ok(parsed.as_str().trim_end_matches('/').to_owned())
}

/// Whether `name` can be a table or field name.
fn is_field_name(name: &str) -> bool {
    (1..=80).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
}

/// Checks a sink's further `fields`: field names, none gitward sets itself, known template
/// names only.
/// Checks a sink's settings as `gitward validate` and the sink do: the table, the fields,
/// the levels. A ticket sink files problems; it never writes where approvals live (a change
/// request, an approval record), lest a repository approve its own changes.
pub fn check_settings(settings: &ServiceNowSettings) -> Result<(), SinkProblem> {
    let table = settings.table.as_deref().unwrap_or(DEFAULT_TABLE);
    if !is_field_name(table) {
        return Err(SinkProblem(format!(
            "servicenow table `{}` is not a table name: lowercase letters, digits and `_`",
            crate::diag::escaped(table)
        )));
    }
    if table.starts_with("change_") || table.contains("approval") || table.starts_with("sys_") {
        return Err(SinkProblem(format!(
            "servicenow table `{table}` is not one tickets go to: gitward files problems (an \
             incident, a problem, a task), never change requests or approvals"
        )));
    }
    check_fields(&settings.fields)?;
    check_levels("impact", &settings.impact)?;
    check_levels("urgency", &settings.urgency)
}

fn check_fields(fields: &Map<String, Value>) -> Result<(), SinkProblem> {
    for (name, value) in fields {
        let shown = crate::diag::escaped(name);
        if !is_field_name(name) {
            return Err(SinkProblem(format!(
                "servicenow field `{shown}` is not a field name: lowercase letters, digits and `_`"
            )));
        }
        if OWN_FIELDS.contains(&name.as_str())
            || name.starts_with("sys_")
            || name.starts_with("approval")
        {
            return Err(SinkProblem(format!(
                "servicenow field `{shown}` is set by gitward itself; use the sink's own \
                 settings (assignmentGroup, caller, impact, urgency, sla) instead"
            )));
        }
        let unknown = template::unknown_in(value);
        if !unknown.is_empty() {
            return Err(SinkProblem(format!(
                "servicenow field `{shown}` names {} in `{{{{...}}}}`, which events do not have; \
                 known: {}, details.<key>",
                unknown
                    .iter()
                    .map(|n| format!("`{}`", crate::diag::escaped(n)))
                    .collect::<Vec<_>>()
                    .join(", "),
                template::NAMES.join(", ")
            )));
        }
    }
    Ok(())
}

/// Checks configured `impact` or `urgency` values: choice values are small numbers.
fn check_levels(what: &str, levels: &BySeverity<String>) -> Result<(), SinkProblem> {
    let values = [
        &levels.critical,
        &levels.high,
        &levels.medium,
        &levels.low,
        &levels.info,
    ];
    for value in values.into_iter().flatten() {
        if value.is_empty() || value.len() > 3 || !value.bytes().all(|b| b.is_ascii_digit()) {
            return Err(SinkProblem(format!(
                "servicenow {what} `{}` is not a choice value like \"1\", \"2\" or \"3\"",
                crate::diag::escaped(value)
            )));
        }
    }
    Ok(())
}

/// The texts that reveal the credential in `authorization`: the header value, its encoded
/// part and, for Basic, the password.
fn secrets_of(authorization: &str) -> Vec<String> {
    use base64::Engine;
    let mut secrets = vec![authorization.to_owned()];
    if let Some(token) = authorization.strip_prefix("Bearer ") {
        secrets.push(token.to_owned());
    } else if let Some(encoded) = authorization.strip_prefix("Basic ") {
        secrets.push(encoded.to_owned());
        if let Some(password) = base64::engine::general_purpose::STANDARD
            .decode(encoded)
            .ok()
            .and_then(|plain| String::from_utf8(plain).ok())
            .and_then(|plain| plain.split_once(':').map(|(_, p)| p.to_owned()))
        {
            secrets.push(password);
        }
    }
    // Short secrets would mask ordinary words; a real credential is never this short.
    secrets.retain(|secret| secret.len() >= 6);
    secrets
}

/// `value` as it can go into an encoded query after `field=`: one line, none of the
/// query's separators, no script.
fn query_value<'a>(what: &str, value: &'a str) -> Result<&'a str, Failure> {
    let refused = |why: &str| {
        Err(Failure::Refused {
            answer: format!(
                "{what} `{}` cannot go into a ServiceNow query: {why}",
                crate::diag::escaped(&crate::diag::bounded(value.to_owned(), 120))
            ),
        })
    };
    if value.is_empty() || value.trim() != value {
        return refused("it is empty or starts or ends with blanks");
    }
    if value
        .chars()
        .any(|c| c.is_control() || c == '^' || c == '=')
    {
        return refused("it holds `^`, `=` or a control character");
    }
    if value.to_ascii_lowercase().starts_with("javascript:") {
        return refused("the instance would run it as a script");
    }
    Ok(value)
}

/// `id` if it is a sys_id: 32 hexadecimal digits.
fn record_id(id: &str) -> Result<&str, Failure> {
    if id.len() == 32 && id.bytes().all(|b| b.is_ascii_hexdigit()) {
        Ok(id)
    } else {
        Err(Failure::Refused {
            answer: format!(
                "`{}` is not a ServiceNow sys_id (32 hexadecimal digits)",
                crate::diag::escaped(&crate::diag::bounded(id.to_owned(), 80))
            ),
        })
    }
}

/// Whether `number` can be a record number: short, one line.
fn is_number(number: &str) -> bool {
    !number.is_empty()
        && number.chars().count() <= NUMBER_CHARS
        && !number.chars().any(char::is_control)
}

/// Whether `value` can be a choice value.
fn is_choice(value: &str) -> bool {
    !value.is_empty() && value.chars().count() <= 100 && !value.chars().any(char::is_control)
}

/// The value of field `name` of `row`: a string, or the `value` of a reference
/// (`{link, value}`) or of a field shown with `sysparm_display_value=all`.
fn value_of<'a>(row: &'a Map<String, Value>, name: &str) -> Option<&'a str> {
    match row.get(name)? {
        Value::String(text) => Some(text),
        Value::Object(parts) => parts.get("value").and_then(Value::as_str),
        _ => None,
    }
}

/// The display value of field `name` of `row`, when the answer shows one.
fn display_of<'a>(row: &'a Map<String, Value>, name: &str) -> Option<&'a str> {
    match row.get(name)? {
        Value::Object(parts) => parts.get("display_value").and_then(Value::as_str),
        _ => None,
    }
}

/// Incident state names, for an answer that shows only the value.
fn state_name(state: &str) -> &str {
    match state {
        "1" => "New",
        "2" => "In Progress",
        "3" => "On Hold",
        "6" => "Resolved",
        "7" => "Closed",
        "8" => "Canceled",
        other => other,
    }
}

/// `text` on one line, at most `max` characters.
fn clip(text: &str, max: usize) -> String {
    text.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(max)
        .collect::<String>()
        .trim()
        .to_owned()
}

/// A record's `short_description`: the title on one line.
fn title(text: &str) -> String {
    clip(text, TITLE_CHARS)
}

/// Text bounded to [`TEXT_CHARS`].
fn bounded_text(text: String) -> String {
    if text.chars().count() <= TEXT_CHARS {
        return text;
    }
    let mut cut: String = text.chars().take(TEXT_CHARS - 1).collect();
    cut.push('…');
    cut
}

/// A record's `description`: plain text, a paragraph for each part there is.
pub fn description(description: &Description, tag: &str) -> String {
    let mut parts = Vec::new();
    if !description.what.is_empty() {
        parts.push(description.what.clone());
    }
    if let Some(place) = &description.place {
        let mut text = format!("Where: {}", place.text);
        if let Some(url) = &place.url {
            text.push('\n');
            text.push_str(url);
        }
        parts.push(text);
    }
    if !description.why.is_empty() {
        parts.push(format!("Why it matters: {}", description.why));
    }
    if !description.fix.is_empty() {
        parts.push(format!("How to fix: {}", description.fix));
    }
    if !description.compliance.is_empty() {
        parts.push(format!("Compliance: {}", description.compliance.join(", ")));
    }
    if let Some(commit) = &description.commit {
        parts.push(format!("Commit: {commit}"));
    }
    parts.push(format!(
        "Filed by gitward, which resolves this record when the problem clears \
         (correlation id {tag})."
    ));
    bounded_text(parts.join("\n\n"))
}

/// A note as `work_notes` or `close_notes`: its text, then its link.
pub fn note_text(note: &Note) -> String {
    let mut text = note.text.clone();
    if let Some(link) = &note.link {
        if !text.is_empty() {
            text.push('\n');
        }
        text.push_str(link);
    }
    bounded_text(text)
}

/// Reads at most `limit` bytes of a response's body; false when there was more, or the
/// connection broke before its end.
async fn read_bounded(mut response: reqwest::Response, limit: usize) -> (Vec<u8>, bool) {
    let mut bytes = Vec::new();
    loop {
        match response.chunk().await {
            Ok(Some(chunk)) => {
                let room = limit.saturating_sub(bytes.len());
                if chunk.len() > room {
                    bytes.extend_from_slice(&chunk[..room]);
                    return (bytes, false);
                }
                bytes.extend_from_slice(&chunk);
            }
            Ok(None) => return (bytes, true),
            Err(_) => return (bytes, false),
        }
    }
}

/// What an error answer says: ServiceNow's `{"error": {"message", "detail"}}` when it is
/// that, else its text.
fn error_text(bytes: &[u8]) -> String {
    let head = &bytes[..bytes.len().min(64 * 1024)];
    let parsed: Option<Value> = serde_json::from_slice(head).ok();
    let error = parsed.as_ref().and_then(|v| v.get("error"));
    let part = |name: &str| {
        error
            .and_then(|e| e.get(name))
            .and_then(Value::as_str)
            .map(|t| clip(t, 300))
            .filter(|t| !t.is_empty())
    };
    match (part("message"), part("detail")) {
        (Some(message), Some(detail)) => format!("{message}: {detail}"),
        (Some(message), None) => message,
        (None, Some(detail)) => detail,
        (None, None) => String::from_utf8_lossy(head).into_owned(),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::tickets::Place;

    fn system(settings: ServiceNowSettings) -> ServiceNow {
        let dir = tempfile::tempdir().unwrap();
        let token = dir.path().join("token");
        std::fs::write(&token, "s3cret-password\n").unwrap();
        let endpoint: Endpoint = serde_json::from_value(json!({
            "url": "https://example.service-now.com/",
            "user": "gitward.bot",
            "tokenFile": token,
        }))
        .unwrap();
        ServiceNow::new(&settings, &endpoint).unwrap()
    }

    fn settings(value: Value) -> ServiceNowSettings {
        serde_json::from_value(value).unwrap()
    }

    #[test]
    fn fields_are_strings_or_references_or_shown_both_ways() {
        let row = json!({
            "a": "1",
            "b": {"link": "https://x/api/now/table/sys_user/1", "value": "abc"},
            "c": {"display_value": "In Progress", "value": "2"},
            "d": 7,
        });
        let row = row.as_object().unwrap();
        assert_eq!(value_of(row, "a"), Some("1"));
        assert_eq!(value_of(row, "b"), Some("abc"));
        assert_eq!(value_of(row, "c"), Some("2"));
        assert_eq!(display_of(row, "c"), Some("In Progress"));
        assert_eq!(display_of(row, "a"), None);
        assert_eq!(value_of(row, "d"), None);
        assert_eq!(value_of(row, "e"), None);
    }

    #[test]
    fn a_row_becomes_a_ticket_only_when_readable() {
        let snow = system(settings(json!({})));
        let id = "c537bae64f411200adf9f8e18110c76e";
        let row = json!({
            "sys_id": {"display_value": id, "value": id},
            "number": {"display_value": "INC0010002", "value": "INC0010002"},
            "state": {"display_value": "Canceled", "value": "8"},
            "active": {"display_value": "false", "value": "false"},
            "assigned_to": {"display_value": "Beth\nAdmin", "value": "6816f79cc0a8016401c5a33be04be441"},
        });
        let ticket = snow.ticket_of(row.as_object().unwrap()).unwrap();
        assert_eq!(
            ticket,
            Ticket {
                id: id.into(),
                key: "INC0010002".into(),
                url: format!(
                    "https://example.service-now.com/nav_to.do?uri=incident.do%3Fsys_id%3D{id}"
                ),
                status: "Canceled".into(),
                done: true,
                accepted: true,
                assignee: Some("Beth Admin".into()),
            }
        );
        for (field, bad) in [
            ("sys_id", json!("../../etc")),
            ("sys_id", json!(5)),
            ("number", json!("INC".repeat(20))),
            ("number", json!("INC\n1")),
        ] {
            let mut row = row.as_object().unwrap().clone();
            row.insert(field.into(), bad.clone());
            assert_eq!(snow.ticket_of(&row), None, "{field} {bad}");
        }
    }

    #[test]
    fn accepted_needs_a_done_record_with_a_won_t_fix_code() {
        let snow = system(settings(json!({"acceptedCloseCodes": ["Duplicate"]})));
        let row = |state: &str, code: &str| {
            json!({"sys_id": "c537bae64f411200adf9f8e18110c76e", "number": "INC1",
                   "state": state, "close_code": code})
        };
        let accepted = |v: Value| snow.ticket_of(v.as_object().unwrap()).unwrap().accepted;
        assert!(accepted(row("7", "Duplicate")));
        assert!(accepted(row("8", "")));
        assert!(!accepted(row("2", "Duplicate")));
        assert!(!accepted(row("7", "Not Solved (Too Costly)")));
    }

    #[test]
    fn query_values_cannot_change_the_query() {
        assert!(query_value("tag", "gitward-0123abcd").is_ok());
        for bad in [
            "",
            " x",
            "a^ORnumber!=0",
            "a=b",
            "a\nb",
            "JavaScript:gs.getUserID()",
        ] {
            assert!(
                matches!(query_value("tag", bad), Err(Failure::Refused { .. })),
                "{bad:?}"
            );
        }
        assert!(record_id("C537BAE64F411200ADF9F8E18110C76E").is_ok());
        assert!(record_id("c537bae64f411200adf9f8e18110c76e,x").is_err());
    }

    #[test]
    fn settings_that_cannot_work_are_refused_when_built() {
        let dir = tempfile::tempdir().unwrap();
        let token = dir.path().join("token");
        std::fs::write(&token, "s3cret-password\n").unwrap();
        let endpoint = |url: &str| -> Endpoint {
            serde_json::from_value(json!({"url": url, "user": "bot", "tokenFile": token})).unwrap()
        };
        let good = endpoint("https://example.service-now.com");
        let refused = |settings: Value, endpoint: &Endpoint| {
            let settings: ServiceNowSettings = serde_json::from_value(settings).unwrap();
            ServiceNow::new(&settings, endpoint).err().map(|e| e.0)
        };
        assert_eq!(refused(json!({"table": "u_findings"}), &good), None);
        for (settings, says) in [
            (json!({"table": "Incident"}), "not a table name"),
            (
                json!({"fields": {"short_description": "x"}}),
                "set by gitward",
            ),
            (json!({"fields": {"sys_created_by": "x"}}), "set by gitward"),
            (json!({"fields": {"u_a.b": "x"}}), "not a field name"),
            (json!({"fields": {"u_source": "{{nope}}"}}), "`nope`"),
            (json!({"impact": {"high": "High"}}), "not a choice value"),
        ] {
            let said = refused(settings.clone(), &good).unwrap_or_default();
            assert!(said.contains(says), "{settings}: {said}");
        }
        for url in [
            "ftp://example.service-now.com",
            "https://bot:pw@example.service-now.com",
            "https://example.service-now.com/?x=1",
        ] {
            let said = refused(json!({}), &endpoint(url)).unwrap_or_default();
            assert!(said.contains("instance's https:// URL"), "{url}: {said}");
            assert!(!said.contains(":pw@"), "{said}");
        }
    }

    #[test]
    fn the_description_tells_each_part_there_is() {
        let text = description(
            &Description {
                what: "key too short".into(),
                place: Some(Place {
                    text: "certificates/web.yaml:12 at 0123abcd4567".into(),
                    url: Some("https://git.example.com/ops/pki/blob/0123abcd4567/certificates/web.yaml#L12".into()),
                }),
                why: "policy key-size (deny)".into(),
                fix: "use 3072-bit keys".into(),
                compliance: vec!["PCI-DSS 4.2.1".into(), "NIST SC-12".into()],
                commit: None,
            },
            "gw-1",
        );
        assert_eq!(
            text,
            "key too short\n\nWhere: certificates/web.yaml:12 at 0123abcd4567\n\
             https://git.example.com/ops/pki/blob/0123abcd4567/certificates/web.yaml#L12\n\n\
             Why it matters: policy key-size (deny)\n\nHow to fix: use 3072-bit keys\n\n\
             Compliance: PCI-DSS 4.2.1, NIST SC-12\n\n\
             Filed by gitward, which resolves this record when the problem clears \
             (correlation id gw-1)."
        );
        let long = description(
            &Description {
                what: "x".repeat(10_000),
                ..Description::default()
            },
            "gw-1",
        );
        assert_eq!(long.chars().count(), TEXT_CHARS);
    }

    #[test]
    fn error_answers_say_servicenow_s_message_and_no_credential() {
        let text = error_text(
            br#"{"error":{"message":"Rate limit exceeded","detail":"Rate limit of 10 requests per hour for Table API exceeded"},"status":"failure"}"#,
        );
        assert_eq!(
            text,
            "Rate limit exceeded: Rate limit of 10 requests per hour for Table API exceeded"
        );
        assert_eq!(error_text(b"<html>busy</html>"), "<html>busy</html>");
        let snow = system(settings(json!({})));
        let said = snow.redacted(format!("echo {} and s3cret-password", snow.authorization));
        assert_eq!(said, "echo *** and ***");
    }
}
