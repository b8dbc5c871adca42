//! `jira`: tickets as Jira issues, through Jira Cloud's REST API v3 (`api: cloud`, the
//! default: descriptions and comments in Atlassian Document Format) or Jira Data Center's v2
//! (`api: dataCenter`: wiki text).
//!
//! - [`TicketSystem::prepare`] reads the project's create screen for the issue type
//!   (`issue/createmeta/{project}/issuetypes[/{id}]`): a field the project requires that
//!   gitward does not set and the sink's `fields` do not map fails the sink with its name, and
//!   whether the screen has `priority` and `duedate` decides whether they are sent.
//! - An issue carries the labels `gitward` and the problem's tag, by which
//!   [`TicketSystem::find`] looks it up (JQL search) when a create's answer was lost.
//! - A comment and a priority change go in one `PUT`; resolving and reopening are workflow
//!   transitions chosen by name (the sink's `transitions`) or by where they lead, with the
//!   comment in the same request. The transitions out of a status are remembered, so that
//!   most resolves take one request.
//! - [`TicketSystem::observe`] reads up to 100 issues a request (`id in (...)`).
//!
//! Everything Jira answers is read bounded and checked: an issue's key must look like one
//! before it goes into a link (built from the endpoint's URL, never from Jira's `self`), and
//! what Jira's text says is cut to size. Requests are paced per site and account.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};

use reqwest::{Method, StatusCode};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value, json};

use super::template;
use super::{Call, Description, Failure, Note, OBSERVE_BATCH, Problem, Ticket, TicketSystem};
use crate::config::Endpoint;
use crate::model::{BySeverity, FindingSeverity, JiraApi, JiraSettings};
use crate::sinks::{SinkProblem, http};

/// How long Jira Cloud's search may take to show an issue just made.
const CLOUD_SEARCH_SETTLES: std::time::Duration = std::time::Duration::from_secs(30);

/// Requests a second to one Jira site and account, sustained...
///
/// Jira Cloud limits API-token traffic by bursts per site, endpoint and method, and writes
/// per issue, and publishes no one figure for either; ten a second stays well below both
/// (and below what a Data Center admin's rate limiting usually allows), while 1,000 new
/// tickets still go out in under two minutes. A 429 says how long to wait, and is honoured.
pub const RATE_PER_SECOND: f64 = 10.0;
/// ... and how many may go at once after a quiet time.
pub const BURST: f64 = 10.0;
/// Most bytes of an answer read: a page of 100 issues with their status, resolution and
/// assignee is some 300 KiB; a longer answer is not Jira's.
pub const MAX_ANSWER_BYTES: usize = 4 << 20;
/// Most pages of one listing (issue types, fields, search results) read.
const MAX_PAGES: usize = 10;
/// Page size asked of the create-screen listings.
const META_PAGE: usize = 100;
/// Most transitions out of a status considered.
pub const MAX_TRANSITIONS: usize = 200;
/// Most names listed in a refusal.
const MAX_LISTED: usize = 20;
/// Longest issue key, status and assignee name kept in a [`Ticket`].
pub const KEY_CHARS: usize = 64;
pub const STATUS_CHARS: usize = 100;
pub const ASSIGNEE_CHARS: usize = 200;
/// Jira's limits on a summary and on a description or comment, in characters.
const SUMMARY_CHARS: usize = 255;
const LONG_TEXT_CHARS: usize = 32_000;
/// Statuses whose transitions are remembered.
const CACHED_STATUSES: usize = 32;
/// Fields gitward sets on every issue: the sink's `fields` may not name them.
pub const OWN_FIELDS: &[&str] = &["project", "issuetype", "summary", "description", "labels"];
/// Fields a project may require without a mapping: gitward sets them, or Jira does.
const SET_ANYWAY: &[&str] = &[
    "project",
    "issuetype",
    "summary",
    "description",
    "labels",
    "priority",
    "duedate",
    "reporter",
];

/// What was learned of the project's create screen.
#[derive(Debug, Clone)]
struct Screen {
    issue_type_id: String,
    priority: bool,
    duedate: bool,
}

/// A workflow transition, as far as choosing and making it goes.
#[derive(Debug, Clone, PartialEq)]
struct Transition {
    id: String,
    name: String,
    /// The status it leads to, and that status's category key (`new`, `indeterminate`,
    /// `done`).
    to: String,
    category: String,
    /// The resolution to set, when the transition's screen has the field.
    resolution: Option<String>,
}

impl Transition {
    fn done(&self) -> bool {
        self.category == "done"
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Goal {
    Resolve,
    Reopen,
}

pub struct Jira {
    client: reqwest::Client,
    /// The site's URL, without a trailing slash (with the context path of a Data Center).
    base: String,
    api: JiraApi,
    authorization: String,
    /// What must never show in a failure: the header and the token in it.
    secrets: Vec<String>,
    bucket: [u8; 32],
    settings: JiraSettings,
    issue_type: String,
    /// Resolutions that mean "won't fix", lowercased.
    accepted: Vec<String>,
    screen: Option<Screen>,
    /// The transitions out of recently seen statuses (lowercased names), oldest first.
    transitions: Mutex<VecDeque<(String, Vec<Transition>)>>,
    requests: AtomicU64,
}

impl Jira {
    pub fn new(settings: &JiraSettings, endpoint: &Endpoint) -> Result<Jira, SinkProblem> {
        check_settings(settings)?;
        let base = base_url(&endpoint.url)?;
        let authorization = http::authorization(endpoint)?;
        let bucket = http::bucket_of(&[&base, endpoint.user.as_deref().unwrap_or("")]);
        let accepted = if settings.accepted_resolutions.is_empty() {
            vec![
                "won't fix".to_owned(),
                "won't do".to_owned(),
                "declined".to_owned(),
            ]
        } else {
            settings
                .accepted_resolutions
                .iter()
                .map(|r| r.trim().to_lowercase())
                .collect()
        };
        Ok(Jira {
            client: http::client(endpoint)?,
            secrets: secrets_of(&authorization),
            base,
            api: settings.api,
            authorization,
            bucket,
            issue_type: settings
                .issue_type
                .clone()
                .unwrap_or_else(|| "Bug".to_owned()),
            accepted,
            settings: settings.clone(),
            screen: None,
            transitions: Mutex::new(VecDeque::new()),
            requests: AtomicU64::new(0),
        })
    }

    fn url(&self, path: &str) -> String {
        let version = match self.api {
            JiraApi::Cloud => "3",
            JiraApi::DataCenter => "2",
        };
        format!("{}/rest/api/{version}/{path}", self.base)
    }

    /// Where people open the issue `key` (checked to be a key).
    fn browse(&self, key: &str) -> String {
        format!("{}/browse/{key}", self.base)
    }

    /// Sends one request and gives back the bytes of a successful answer (at most
    /// [`MAX_ANSWER_BYTES`]); any other answer as a failure. `what` names the call in it.
    async fn call(
        &self,
        method: Method,
        path: &str,
        query: &[(&str, String)],
        body: Option<&Value>,
        what: &str,
    ) -> Result<Result<Vec<u8>, String>, Failure> {
        http::pace(self.bucket, RATE_PER_SECOND, BURST).await;
        self.requests.fetch_add(1, Ordering::Relaxed);
        let mut url = reqwest::Url::parse(&self.url(path)).map_err(|error| Failure::Refused {
            answer: format!("{what}: no URL: {error}"),
        })?;
        if !query.is_empty() {
            url.query_pairs_mut().extend_pairs(query);
        }
        let mut request = self
            .client
            .request(method, url)
            .header(reqwest::header::AUTHORIZATION, &self.authorization)
            .header(reqwest::header::ACCEPT, "application/json");
        if let Some(body) = body {
            request = request.json(body);
        }
        let response = match request.send().await {
            Ok(response) => response,
            Err(error) => {
                let failure = Failure::from_answer(http::unreachable(error));
                return Err(self.about(what, failure));
            }
        };
        let status = response.status();
        if status.is_success() {
            return Ok(read_bounded(response).await);
        }
        let after = http::retry_after(response.headers());
        let text = self.scrub(http::body(response).await);
        if status == StatusCode::BAD_REQUEST {
            return Err(Failure::Refused {
                answer: format!("{what}: Jira refused it (HTTP 400): {}", jira_errors(&text)),
            });
        }
        Err(self.about(
            what,
            Failure::from_answer(http::classify(status, after, &text)),
        ))
    }

    /// A successful answer's JSON, as `T`.
    async fn call_json<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        query: &[(&str, String)],
        body: Option<&Value>,
        what: &str,
    ) -> Result<T, Failure> {
        let bytes = self
            .call(method, path, query, body, what)
            .await?
            .map_err(|error| retry(format!("{what}: {error}")))?;
        serde_json::from_slice(&bytes).map_err(|error| {
            retry(format!(
                "{what}: Jira's answer is not what Jira answers ({error})"
            ))
        })
    }

    /// `failure` (a network error or a status) with what was being done, and no secret.
    fn about(&self, what: &str, failure: Option<Failure>) -> Failure {
        match failure {
            Some(Failure::Retry { error, after }) => Failure::Retry {
                error: self.scrub(format!("{what}: {error}")),
                after,
            },
            Some(Failure::Refused { answer }) => Failure::Refused {
                answer: self.scrub(format!("{what}: {answer}")),
            },
            None => retry(format!("{what}: no answer")),
        }
    }

    /// `text` with the credential taken out, should a receiver have echoed it.
    fn scrub(&self, mut text: String) -> String {
        for secret in &self.secrets {
            if text.contains(secret.as_str()) {
                text = text.replace(secret.as_str(), "[redacted]");
            }
        }
        text
    }

    /// Every item of a create-screen listing, page after page (a bounded number).
    async fn meta_pages<T: DeserializeOwned + Default>(
        &self,
        path: &str,
        what: &str,
    ) -> Result<Vec<T>, Failure> {
        let mut all = Vec::new();
        let mut start = 0;
        for _ in 0..MAX_PAGES {
            let query = [
                ("startAt", start.to_string()),
                ("maxResults", META_PAGE.to_string()),
            ];
            let page: MetaPage<T> = self
                .call_json(Method::GET, path, &query, None, what)
                .await?;
            let (total, is_last) = (page.total, page.is_last);
            let items = page.items();
            let got = items.len();
            all.extend(items);
            start += got;
            let more = match (is_last, total) {
                (Some(last), _) => !last,
                (None, Some(total)) => (start as u64) < total,
                (None, None) => false,
            };
            if !more || got == 0 {
                break;
            }
        }
        Ok(all)
    }

    /// The project's issue type and what its create screen has.
    async fn learn(&self) -> Result<Screen, Failure> {
        let project = &self.settings.project;
        let types: Vec<IssueType> = self
            .meta_pages(
                &format!("issue/createmeta/{project}/issuetypes"),
                &format!("reading the issue types of project {project}"),
            )
            .await?;
        let wanted = self.issue_type.to_lowercase();
        let Some(found) = types.iter().find(|t| t.name.to_lowercase() == wanted) else {
            return Err(Failure::Refused {
                answer: format!(
                    "project {project} has no issue type `{}`; it has: {}",
                    self.issue_type,
                    listed(types.iter().map(|t| t.name.as_str()))
                ),
            });
        };
        if !is_issue_id(&found.id) {
            return Err(retry(format!(
                "Jira answered an issue type id that is not one: `{}`",
                clip(&found.id, 40)
            )));
        }
        let fields: Vec<FieldMeta> = self
            .meta_pages(
                &format!("issue/createmeta/{project}/issuetypes/{}", found.id),
                &format!("reading the fields of {project} {}", found.name),
            )
            .await?;
        self.check_screen(&fields, &found.name)?;
        let on_screen = |id: &str| fields.iter().any(|f| f.id() == id);
        Ok(Screen {
            issue_type_id: found.id.clone(),
            priority: on_screen("priority"),
            duedate: on_screen("duedate"),
        })
    }

    /// Refuses a screen that requires fields nothing sets, or lacks mapped ones.
    fn check_screen(&self, fields: &[FieldMeta], issue_type: &str) -> Result<(), Failure> {
        let project = &self.settings.project;
        let missing: Vec<String> = fields
            .iter()
            .filter(|f| f.required && !f.has_default_value)
            .filter(|f| !SET_ANYWAY.contains(&f.id()) && !self.settings.fields.contains_key(f.id()))
            .map(|f| format!("{} ({})", clip(&f.name, 100), clip(f.id(), 100)))
            .collect();
        if !missing.is_empty() {
            return Err(Failure::Refused {
                answer: format!(
                    "project {project} requires fields not mapped: {}; map them in the sink's \
                     `fields`",
                    listed(missing.iter().map(String::as_str))
                ),
            });
        }
        let absent: Vec<&str> = self
            .settings
            .fields
            .keys()
            .map(String::as_str)
            .filter(|key| !fields.iter().any(|f| f.id() == *key))
            .collect();
        if !absent.is_empty() {
            return Err(Failure::Refused {
                answer: format!(
                    "the create screen of {project} {} has no field {}: `fields` may map only \
                     fields it has",
                    clip(issue_type, 100),
                    listed(absent.into_iter())
                ),
            });
        }
        Ok(())
    }

    /// The issues `jql` finds, with `fields`: `max` a page, at most `pages` pages.
    async fn search(
        &self,
        jql: &str,
        max: usize,
        fields: &[&str],
        pages: usize,
    ) -> Result<Vec<Found>, Failure> {
        let mut found = Vec::new();
        let mut token: Option<String> = None;
        for _ in 0..pages {
            let (path, body) = match self.api {
                JiraApi::Cloud => {
                    let mut body = json!({"jql": jql, "maxResults": max, "fields": fields});
                    if let Some(token) = &token {
                        body["nextPageToken"] = json!(token);
                    }
                    ("search/jql", body)
                }
                JiraApi::DataCenter => (
                    "search",
                    json!({"jql": jql, "startAt": found.len(), "maxResults": max, "fields": fields}),
                ),
            };
            let page: SearchPage = self
                .call_json(Method::POST, path, &[], Some(&body), "searching issues")
                .await?;
            let got = page.issues.len();
            found.extend(page.issues);
            let more = match self.api {
                JiraApi::Cloud => match (page.is_last, page.next_page_token) {
                    (Some(false), Some(next))
                        if !next.is_empty() && token.as_ref() != Some(&next) =>
                    {
                        token = Some(next);
                        true
                    }
                    _ => false,
                },
                JiraApi::DataCenter => page.total.is_some_and(|t| (found.len() as u64) < t),
            };
            if !more || got == 0 {
                break;
            }
        }
        Ok(found)
    }

    /// The ticket an issue Jira found is, once its id and key are checked.
    fn ticket_of(&self, issue: &Found) -> Result<Ticket, Failure> {
        if !is_issue_id(&issue.id) || !is_issue_key(&issue.key) {
            return Err(retry(format!(
                "Jira answered an issue that is not one: id `{}`, key `{}`",
                clip(&issue.id, 40),
                clip(&issue.key, KEY_CHARS)
            )));
        }
        let status = issue.fields.status.as_ref();
        let done = status
            .and_then(|s| s.status_category.as_ref())
            .is_some_and(|c| c.key == "done");
        let resolution = issue
            .fields
            .resolution
            .as_ref()
            .map(|r| r.name.to_lowercase());
        Ok(Ticket {
            id: issue.id.clone(),
            key: issue.key.clone(),
            url: self.browse(&issue.key),
            status: status
                .map(|s| clip(&s.name, STATUS_CHARS))
                .unwrap_or_default(),
            done,
            accepted: done && resolution.is_some_and(|r| self.accepted.contains(&r)),
            assignee: issue
                .fields
                .assignee
                .as_ref()
                .map(|a| clip(&a.display_name, ASSIGNEE_CHARS))
                .filter(|name| !name.is_empty()),
        })
    }

    async fn find_tagged(&self, tag: &str) -> Result<Option<Ticket>, Failure> {
        check_label(tag)?;
        let project = &self.settings.project;
        let jql = format!(
            "project = {} AND labels = {} AND statusCategory != Done ORDER BY created ASC",
            jql_string(project),
            jql_string(tag)
        );
        let fields = ["status", "resolution", "assignee", "labels"];
        let found = self.search(&jql, 2, &fields, 1).await?;
        let prefix = format!("{project}-");
        // Only an issue that matches what was asked: a search answer is checked, not trusted.
        for issue in found
            .iter()
            .filter(|i| i.fields.labels.iter().any(|l| l == tag))
        {
            let ticket = self.ticket_of(issue)?;
            if ticket.key.starts_with(&prefix) && !ticket.done {
                return Ok(Some(ticket));
            }
        }
        Ok(None)
    }

    /// The fields of a new issue for `problem`.
    fn fields_of(&self, problem: &Problem) -> Map<String, Value> {
        let mut fields = Map::new();
        fields.insert("project".into(), json!({"key": self.settings.project}));
        fields.insert(
            "issuetype".into(),
            match &self.screen {
                Some(screen) => json!({"id": screen.issue_type_id}),
                None => json!({"name": self.issue_type}),
            },
        );
        fields.insert("summary".into(), json!(clip(&problem.title, SUMMARY_CHARS)));
        let blocks = blocks(&problem.description);
        fields.insert(
            "description".into(),
            match self.api {
                JiraApi::Cloud => adf(&blocks),
                JiraApi::DataCenter => json!(wiki(&blocks)),
            },
        );
        let mut labels = vec!["gitward".to_owned(), problem.tag.clone()];
        for label in &self.settings.labels {
            if !labels.contains(label) {
                labels.push(label.clone());
            }
        }
        fields.insert("labels".into(), json!(labels));
        // Without a screen read (no prepare), both are sent: Jira says if it has no place.
        if let Some(priority) = self.priority_of(problem, problem.severity)
            && self.screen.as_ref().is_none_or(|s| s.priority)
        {
            fields.insert("priority".into(), json!({"name": priority}));
        }
        if let Some(due) = problem.due
            && self.screen.as_ref().is_none_or(|s| s.duedate)
        {
            fields.insert("duedate".into(), json!(due.format("%Y-%m-%d").to_string()));
        }
        // The sink's own fields; a priority or due date there is the repository's choice.
        for (key, value) in &self.settings.fields {
            fields.insert(key.clone(), template::render(value, &problem.event));
        }
        fields
    }

    /// The priority of `severity` for a problem of `problem`'s environment: the sink's
    /// `priorityByEnv` for the resource's `env` label first, then `priority`.
    fn priority_of(&self, problem: &Problem, severity: FindingSeverity) -> Option<String> {
        problem
            .event
            .data
            .details
            .get("env")
            .and_then(|env| env.as_str())
            .and_then(|env| self.settings.priority_by_env.get(env))
            .and_then(|by_env| by_env.get(severity, &BySeverity::default()))
            .or_else(|| self.settings.priority.get(severity, &default_priority()))
    }

    /// The priority an update sets: the severity's, unless the severity the issue had maps
    /// to the same one (a person's choice then stands).
    fn priority_change(&self, problem: &Problem) -> Option<String> {
        if self.screen.as_ref().is_some_and(|s| !s.priority)
            || self.settings.fields.contains_key("priority")
        {
            return None;
        }
        let wanted = self.priority_of(problem, problem.severity)?;
        let had = problem.previous.and_then(|p| self.priority_of(problem, p));
        (had.as_ref() != Some(&wanted)).then_some(wanted)
    }

    async fn open(&self, problem: &Problem) -> Result<Ticket, Failure> {
        check_label(&problem.tag)?;
        let body = json!({"fields": self.fields_of(problem)});
        let created: Created = self
            .call_json(Method::POST, "issue", &[], Some(&body), "creating an issue")
            .await?;
        if !is_issue_id(&created.id) || !is_issue_key(&created.key) {
            // It may exist: a search by tag tells, not this answer.
            return Err(retry(format!(
                "Jira answered a created issue that is not one: id `{}`, key `{}`",
                clip(&created.id, 40),
                clip(&created.key, KEY_CHARS)
            )));
        }
        Ok(Ticket {
            url: self.browse(&created.key),
            id: created.id,
            key: created.key,
            status: String::new(),
            done: false,
            accepted: false,
            assignee: None,
        })
    }

    /// A comment's body: a document for Cloud, wiki text for Data Center.
    fn note_body(&self, note: &Note) -> Value {
        let mut inlines = vec![Inline::Plain(text(&note.text, LONG_TEXT_CHARS / 2))];
        if let Some(link) = note.link.as_deref().filter(|l| safe_link(l)) {
            inlines.push(Inline::Plain(" ".to_owned()));
            inlines.push(Inline::Link {
                text: link.to_owned(),
                href: link.to_owned(),
            });
        }
        let blocks = [Block::Text(inlines)];
        match self.api {
            JiraApi::Cloud => adf(&blocks),
            JiraApi::DataCenter => json!(wiki(&blocks)),
        }
    }

    async fn comment(
        &self,
        ticket: &Ticket,
        problem: &Problem,
        note: &Note,
    ) -> Result<(), Failure> {
        let id = checked_id(&ticket.id)?;
        let mut body = json!({"update": {"comment": [{"add": {"body": self.note_body(note)}}]}});
        let priority = self.priority_change(problem);
        if let Some(name) = &priority {
            body["fields"] = json!({"priority": {"name": name}});
        }
        let what = format!("commenting on {}", shown_key(ticket));
        // 204: done, whatever the (empty) answer.
        let _answer = self
            .call(Method::PUT, &format!("issue/{id}"), &[], Some(&body), &what)
            .await?;
        Ok(())
    }

    /// The transitions of issue `id` now.
    async fn fetch_transitions(&self, id: &str, what: &str) -> Result<Vec<Transition>, Failure> {
        let query = [("expand", "transitions.fields".to_owned())];
        let page: TransitionsPage = self
            .call_json(
                Method::GET,
                &format!("issue/{id}/transitions"),
                &query,
                None,
                what,
            )
            .await?;
        Ok(page
            .transitions
            .iter()
            .take(MAX_TRANSITIONS)
            .filter(|t| is_issue_id(&t.id))
            .map(RawTransition::checked)
            .collect())
    }

    /// The transition the sink names for `goal`, if it does.
    fn named(&self, goal: Goal) -> Option<&str> {
        self.settings.transitions.as_ref().and_then(|t| match goal {
            Goal::Resolve => t.resolve.as_deref(),
            Goal::Reopen => t.reopen.as_deref(),
        })
    }

    fn cached_transitions(&self, status: &str) -> Option<Vec<Transition>> {
        let cache = self
            .transitions
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let status = status.to_lowercase();
        cache
            .iter()
            .find(|(s, _)| *s == status)
            .map(|(_, transitions)| transitions.clone())
    }

    /// Remembers `transitions` out of `status` (nothing when the status is not known);
    /// `None` forgets it.
    fn cache_transitions(&self, status: &str, transitions: Option<Vec<Transition>>) {
        if status.is_empty() {
            return;
        }
        let status = status.to_lowercase();
        let mut cache = self
            .transitions
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        cache.retain(|(s, _)| *s != status);
        if let Some(transitions) = transitions {
            cache.push_back((status, transitions));
            while cache.len() > CACHED_STATUSES {
                cache.pop_front();
            }
        }
    }

    /// Moves `ticket` through the transition that serves `goal`, with `note` as comment.
    async fn transition(
        &self,
        ticket: &Ticket,
        goal: Goal,
        note: &Note,
    ) -> Result<Ticket, Failure> {
        let id = checked_id(&ticket.id)?;
        let shown = shown_key(ticket);
        let what = format!("reading the transitions of {shown}");
        let (mut transitions, mut cached) = match self.cached_transitions(&ticket.status) {
            Some(transitions) => (transitions, true),
            None => (self.fetch_transitions(id, &what).await?, false),
        };
        loop {
            let chosen = match choose(&transitions, self.named(goal), goal, ticket) {
                Ok(chosen) => chosen.clone(),
                Err(refusal) if !cached => return Err(refusal),
                Err(_) => {
                    // The status's transitions were remembered from another issue, or the
                    // status changed since: this issue's own tell.
                    self.cache_transitions(&ticket.status, None);
                    transitions = self.fetch_transitions(id, &what).await?;
                    cached = false;
                    continue;
                }
            };
            let mut body = json!({
                "transition": {"id": chosen.id},
                "update": {"comment": [{"add": {"body": self.note_body(note)}}]},
            });
            if let (Goal::Resolve, Some(resolution)) = (goal, &chosen.resolution) {
                body["fields"] = json!({"resolution": {"name": resolution}});
            }
            let doing = format!("moving {shown} through `{}`", chosen.name);
            let path = format!("issue/{id}/transitions");
            match self
                .call(Method::POST, &path, &[], Some(&body), &doing)
                .await
            {
                Ok(_) => {
                    if !cached {
                        self.cache_transitions(&ticket.status, Some(transitions));
                    }
                    return Ok(Ticket {
                        status: chosen.to.clone(),
                        done: chosen.done(),
                        accepted: false,
                        ..ticket.clone()
                    });
                }
                Err(Failure::Refused { .. }) if cached => {
                    self.cache_transitions(&ticket.status, None);
                    transitions = self.fetch_transitions(id, &what).await?;
                    cached = false;
                }
                Err(failure) => return Err(failure),
            }
        }
    }

    async fn look(&self, ids: &[String]) -> Result<Vec<Ticket>, Failure> {
        for id in ids {
            checked_id(id)?;
        }
        let mut tickets: Vec<Ticket> = Vec::new();
        for chunk in ids.chunks(OBSERVE_BATCH) {
            let jql = format!("id in ({})", chunk.join(","));
            let fields = ["status", "resolution", "assignee"];
            let found = self.search(&jql, OBSERVE_BATCH, &fields, MAX_PAGES).await?;
            for issue in &found {
                // Only issues asked about, once each.
                if chunk.contains(&issue.id) && !tickets.iter().any(|t| t.id == issue.id) {
                    tickets.push(self.ticket_of(issue)?);
                }
            }
        }
        Ok(tickets)
    }
}

impl TicketSystem for Jira {
    fn prepare(&mut self) -> Call<'_, ()> {
        Box::pin(async move {
            let screen = self.learn().await?;
            self.screen = Some(screen);
            Ok(())
        })
    }

    fn find<'a>(&'a self, tag: &'a str) -> Call<'a, Option<Ticket>> {
        Box::pin(self.find_tagged(tag))
    }

    fn create<'a>(&'a self, problem: &'a Problem) -> Call<'a, Ticket> {
        Box::pin(self.open(problem))
    }

    fn update<'a>(
        &'a self,
        ticket: &'a Ticket,
        problem: &'a Problem,
        note: &'a Note,
    ) -> Call<'a, ()> {
        Box::pin(self.comment(ticket, problem, note))
    }

    fn resolve<'a>(&'a self, ticket: &'a Ticket, note: &'a Note) -> Call<'a, Ticket> {
        Box::pin(self.transition(ticket, Goal::Resolve, note))
    }

    fn reopen<'a>(
        &'a self,
        ticket: &'a Ticket,
        _problem: &'a Problem,
        note: &'a Note,
    ) -> Call<'a, Ticket> {
        Box::pin(self.transition(ticket, Goal::Reopen, note))
    }

    fn observe<'a>(&'a self, ids: &'a [String]) -> Call<'a, Vec<Ticket>> {
        Box::pin(self.look(ids))
    }

    fn requests(&self) -> u64 {
        self.requests.load(Ordering::Relaxed)
    }

    /// Jira Cloud's search is eventually consistent: an issue just made may not be found
    /// for a few seconds. Data Center searches its own index at once.
    fn settle(&self) -> std::time::Duration {
        match self.api {
            JiraApi::Cloud => CLOUD_SEARCH_SETTLES,
            JiraApi::DataCenter => std::time::Duration::ZERO,
        }
    }
}

// ---------------------------------------------------------------------------------------
// What Jira answers, as far as it is read.

/// A page of a create-screen listing: Cloud names its items `issueTypes` or `fields`
/// (older: `createMetaIssueType`, `results`), Data Center `values`.
#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
struct MetaPage<T> {
    issue_types: Vec<T>,
    create_meta_issue_type: Vec<T>,
    fields: Vec<T>,
    results: Vec<T>,
    values: Vec<T>,
    total: Option<u64>,
    is_last: Option<bool>,
}

impl<T> MetaPage<T> {
    fn items(self) -> Vec<T> {
        [
            self.issue_types,
            self.create_meta_issue_type,
            self.fields,
            self.results,
            self.values,
        ]
        .into_iter()
        .find(|items| !items.is_empty())
        .unwrap_or_default()
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct IssueType {
    id: String,
    name: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
struct FieldMeta {
    field_id: String,
    key: String,
    name: String,
    required: bool,
    has_default_value: bool,
}

impl FieldMeta {
    fn id(&self) -> &str {
        if self.field_id.is_empty() {
            &self.key
        } else {
            &self.field_id
        }
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct Created {
    id: String,
    key: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
struct SearchPage {
    issues: Vec<Found>,
    is_last: Option<bool>,
    next_page_token: Option<String>,
    total: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct Found {
    id: String,
    key: String,
    fields: FoundFields,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct FoundFields {
    status: Option<Status>,
    resolution: Option<Named>,
    assignee: Option<Person>,
    labels: Vec<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
struct Status {
    name: String,
    status_category: Option<Category>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct Category {
    key: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct Named {
    name: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
struct Person {
    display_name: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct TransitionsPage {
    transitions: Vec<RawTransition>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct RawTransition {
    id: String,
    name: String,
    to: Option<Status>,
    fields: Map<String, Value>,
}

impl RawTransition {
    fn checked(&self) -> Transition {
        let to = self.to.as_ref();
        Transition {
            id: self.id.clone(),
            name: clip(&self.name, STATUS_CHARS),
            to: to.map(|s| clip(&s.name, STATUS_CHARS)).unwrap_or_default(),
            category: to
                .and_then(|s| s.status_category.as_ref())
                .map(|c| clip(&c.key, 40))
                .unwrap_or_default(),
            resolution: self.fields.get("resolution").map(resolution_of),
        }
    }
}

/// The resolution to set on a screen with `field`: `Done` or `Fixed` when allowed, else the
/// first allowed one.
fn resolution_of(field: &Value) -> String {
    let allowed: Vec<&str> = field["allowedValues"]
        .as_array()
        .map(|values| {
            values
                .iter()
                .take(MAX_TRANSITIONS)
                .filter_map(|v| v["name"].as_str())
                .collect()
        })
        .unwrap_or_default();
    ["done", "fixed"]
        .iter()
        .find_map(|wanted| allowed.iter().find(|a| a.to_lowercase() == *wanted))
        .or_else(|| allowed.first())
        .map_or_else(|| "Done".to_owned(), |name| clip(name, STATUS_CHARS))
}

/// The transition serving `goal`: the one the sink names, or the first into a done
/// status (resolve) or out of one (reopen, a `Reopen` first, then one back to the start).
fn choose<'t>(
    transitions: &'t [Transition],
    named: Option<&str>,
    goal: Goal,
    ticket: &Ticket,
) -> Result<&'t Transition, Failure> {
    let available = || listed(transitions.iter().map(|t| t.name.as_str()));
    let status = if ticket.status.is_empty() {
        String::new()
    } else {
        format!(" (status {})", clip(&ticket.status, STATUS_CHARS))
    };
    if let Some(name) = named {
        let wanted = name.trim().to_lowercase();
        return transitions
            .iter()
            .find(|t| t.name.to_lowercase() == wanted)
            .ok_or_else(|| Failure::Refused {
                answer: format!(
                    "{}{status} has no transition `{name}`; available: {}",
                    shown_key(ticket),
                    available()
                ),
            });
    }
    let chosen = match goal {
        Goal::Resolve => transitions.iter().find(|t| t.done()),
        Goal::Reopen => {
            let open = || transitions.iter().filter(|t| !t.done());
            open()
                .find(|t| t.name.to_lowercase().contains("reopen"))
                .or_else(|| open().find(|t| t.category == "new"))
                .or_else(|| open().next())
        }
    };
    chosen.ok_or_else(|| Failure::Refused {
        answer: format!(
            "{}{status} has no transition {}; available: {} (name one in the sink's \
             `transitions`)",
            shown_key(ticket),
            match goal {
                Goal::Resolve => "into a done status",
                Goal::Reopen => "out of a done status",
            },
            available()
        ),
    })
}

/// Reads at most [`MAX_ANSWER_BYTES`] of a successful answer: longer, or cut off, is an error.
async fn read_bounded(mut response: reqwest::Response) -> Result<Vec<u8>, String> {
    let too_long = || format!("Jira's answer is longer than {MAX_ANSWER_BYTES} bytes");
    if response
        .content_length()
        .is_some_and(|length| length > MAX_ANSWER_BYTES as u64)
    {
        return Err(too_long());
    }
    let mut bytes = Vec::new();
    loop {
        match response.chunk().await {
            Ok(Some(chunk)) => {
                if bytes.len() + chunk.len() > MAX_ANSWER_BYTES {
                    return Err(too_long());
                }
                bytes.extend_from_slice(&chunk);
            }
            Ok(None) => return Ok(bytes),
            Err(error) => {
                return Err(format!(
                    "Jira's answer was cut off: {}",
                    error.without_url()
                ));
            }
        }
    }
}

/// Jira's error answer (`errorMessages`, `errors` by field) on one line.
fn jira_errors(text: &str) -> String {
    #[derive(Default, Deserialize)]
    #[serde(default, rename_all = "camelCase")]
    struct Errors {
        error_messages: Vec<Value>,
        errors: Map<String, Value>,
    }
    let Ok(parsed) = serde_json::from_str::<Errors>(text) else {
        return http::one_line(text);
    };
    let shown = |value: &Value| match value {
        Value::String(text) => text.clone(),
        other => other.to_string(),
    };
    let parts: Vec<String> = parsed
        .error_messages
        .iter()
        .take(MAX_LISTED)
        .map(shown)
        .chain(
            parsed
                .errors
                .iter()
                .take(MAX_LISTED)
                .map(|(field, message)| format!("{field}: {}", shown(message))),
        )
        .collect();
    if parts.is_empty() {
        http::one_line(text)
    } else {
        http::one_line(&parts.join("; "))
    }
}

fn retry(error: String) -> Failure {
    Failure::Retry { error, after: None }
}

// ---------------------------------------------------------------------------------------
// Checks

fn check_settings(settings: &JiraSettings) -> Result<(), SinkProblem> {
    if !is_project_key(&settings.project) {
        return Err(SinkProblem(format!(
            "jira project `{}` is not a project key (like `SEC`: a capital letter, then capitals, \
             digits or `_`, at most 10)",
            clip(&settings.project, 40)
        )));
    }
    for label in &settings.labels {
        check_label(label).map_err(|_| {
            SinkProblem(format!(
                "jira label `{}` is not one: 1 to 255 characters, no spaces",
                clip(label, 40)
            ))
        })?;
    }
    for (key, value) in &settings.fields {
        if OWN_FIELDS.contains(&key.as_str()) {
            return Err(SinkProblem(format!(
                "jira `fields` may not set `{key}`: gitward sets {}",
                OWN_FIELDS.join(", ")
            )));
        }
        let unknown = template::unknown_in(value);
        if !unknown.is_empty() {
            return Err(SinkProblem(format!(
                "jira field `{key}` names {}, which events do not have; they have {} and \
                 details.<key>",
                unknown.join(", "),
                template::NAMES.join(", ")
            )));
        }
    }
    Ok(())
}

/// The endpoint's URL as the site's base: `http(s)`, no credentials, query or fragment.
fn base_url(url: &str) -> Result<String, SinkProblem> {
    let parsed = reqwest::Url::parse(url).map_err(|error| {
        SinkProblem(format!(
            "`{}` is not a URL: {error}",
            crate::redact::credentials(url)
        ))
    })?;
    if !matches!(parsed.scheme(), "https" | "http") {
        return Err(SinkProblem("a jira endpoint is an https:// URL".to_owned()));
    }
    if !parsed.username().is_empty() || parsed.password().is_some() {
        return Err(SinkProblem(
            "a jira endpoint's URL carries no credentials: `user` and `tokenFile` do".to_owned(),
        ));
    }
    if parsed.query().is_some() || parsed.fragment().is_some() {
        return Err(SinkProblem(
            "a jira endpoint's URL is the site's (like https://example.atlassian.net): no query"
                .to_owned(),
        ));
    }
    Ok(parsed.as_str().trim_end_matches('/').to_owned())
}

/// The parts of an `Authorization` value that must not show anywhere, longest first.
fn secrets_of(authorization: &str) -> Vec<String> {
    use base64::Engine;
    let mut secrets = vec![authorization.to_owned()];
    if let Some(token) = authorization.strip_prefix("Bearer ") {
        secrets.push(token.to_owned());
    }
    if let Some(encoded) = authorization.strip_prefix("Basic ") {
        secrets.push(encoded.to_owned());
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(encoded)
            .ok()
            .and_then(|bytes| String::from_utf8(bytes).ok());
        if let Some((_, token)) = decoded.as_deref().and_then(|d| d.split_once(':')) {
            secrets.push(token.to_owned());
        }
    }
    secrets.retain(|s| s.len() >= 4);
    secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
    secrets
}

fn is_project_key(key: &str) -> bool {
    let mut chars = key.chars();
    chars.next().is_some_and(|c| c.is_ascii_uppercase())
        && (2..=10).contains(&key.len())
        && chars.all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_')
}

/// `SEC-12`: a project key (two or more characters), a dash, digits.
pub fn is_issue_key(key: &str) -> bool {
    key.len() <= KEY_CHARS
        && key.rsplit_once('-').is_some_and(|(project, number)| {
            project.len() >= 2
                && project
                    .chars()
                    .next()
                    .is_some_and(|c| c.is_ascii_uppercase())
                && project
                    .chars()
                    .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_')
                && !number.is_empty()
                && number.chars().all(|c| c.is_ascii_digit())
        })
}

/// An issue's (or issue type's, or transition's) id: digits.
fn is_issue_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= 20 && id.bytes().all(|b| b.is_ascii_digit())
}

fn checked_id(id: &str) -> Result<&str, Failure> {
    if is_issue_id(id) {
        Ok(id)
    } else {
        Err(Failure::Refused {
            answer: format!("`{}` is not a Jira issue id", clip(id, 40)),
        })
    }
}

/// What a failure calls a ticket: its key, or its id.
fn shown_key(ticket: &Ticket) -> String {
    if is_issue_key(&ticket.key) {
        ticket.key.clone()
    } else {
        format!("issue {}", clip(&ticket.id, 40))
    }
}

/// A label (a problem's tag, one of the sink's): Jira's take no spaces.
fn check_label(label: &str) -> Result<(), Failure> {
    if label.is_empty()
        || label.chars().count() > 255
        || label.chars().any(|c| c.is_whitespace() || c.is_control())
    {
        return Err(Failure::Refused {
            answer: format!("`{}` cannot be a Jira label", clip(label, 80)),
        });
    }
    Ok(())
}

/// `text` as a JQL string: quoted, with quotes and backslashes escaped.
pub fn jql_string(text: &str) -> String {
    let mut quoted = String::with_capacity(text.len() + 2);
    quoted.push('"');
    for c in text.chars() {
        match c {
            '"' | '\\' => {
                quoted.push('\\');
                quoted.push(c);
            }
            '\n' => quoted.push_str("\\n"),
            '\r' => quoted.push_str("\\r"),
            '\t' => quoted.push_str("\\t"),
            c if c.is_control() => {}
            c => quoted.push(c),
        }
    }
    quoted.push('"');
    quoted
}

/// `text` on one line, without control characters, at most `chars` characters.
fn clip(text: &str, chars: usize) -> String {
    text.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(chars)
        .collect::<String>()
        .trim()
        .to_owned()
}

/// `text` with its lines, without other control characters, at most `chars` characters.
fn text(text: &str, chars: usize) -> String {
    text.chars()
        .filter(|c| *c != '\r')
        .map(|c| if c.is_control() && c != '\n' { ' ' } else { c })
        .take(chars)
        .collect::<String>()
        .trim()
        .to_owned()
}

/// Up to [`MAX_LISTED`] names, and how many more.
fn listed<'n>(names: impl Iterator<Item = &'n str>) -> String {
    let names: Vec<&str> = names.collect();
    let mut shown: Vec<String> = names
        .iter()
        .take(MAX_LISTED)
        .map(|n| clip(n, 100))
        .collect();
    if names.len() > MAX_LISTED {
        shown.push(format!("and {} more", names.len() - MAX_LISTED));
    }
    if shown.is_empty() {
        "none".to_owned()
    } else {
        shown.join(", ")
    }
}

/// Whether `url` may be a link: http(s), one token, not too long.
fn safe_link(url: &str) -> bool {
    url.len() <= 2000
        && (url.starts_with("https://") || url.starts_with("http://"))
        && !url
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || matches!(c, '|' | '[' | ']'))
        && reqwest::Url::parse(url).is_ok()
}

fn default_priority() -> BySeverity<String> {
    BySeverity {
        critical: Some("Highest".to_owned()),
        high: Some("High".to_owned()),
        medium: Some("Medium".to_owned()),
        low: Some("Low".to_owned()),
        info: Some("Lowest".to_owned()),
    }
}

// ---------------------------------------------------------------------------------------
// Descriptions: laid out once, written as a document (Cloud) or as wiki text (Data Center).

#[derive(Debug, Clone, PartialEq)]
enum Block {
    Heading(&'static str),
    Text(Vec<Inline>),
    Bullets(Vec<String>),
}

#[derive(Debug, Clone, PartialEq)]
enum Inline {
    Plain(String),
    Link { text: String, href: String },
}

/// The sections of a description, each bounded so that the whole stays under Jira's limit.
fn blocks(description: &Description) -> Vec<Block> {
    let mut blocks = Vec::new();
    let mut section = |title: &'static str, body: Block| {
        blocks.push(Block::Heading(title));
        blocks.push(body);
    };
    let plain = |what: &str, chars: usize| {
        let what = text(what, chars);
        (!what.is_empty()).then(|| Block::Text(vec![Inline::Plain(what)]))
    };
    if let Some(body) = plain(&description.what, 6000) {
        section("What", body);
    }
    if let Some(place) = &description.place {
        let shown = clip(&place.text, 500);
        let inline = match place.url.as_deref().filter(|url| safe_link(url)) {
            Some(url) => Inline::Link {
                text: if shown.is_empty() {
                    url.to_owned()
                } else {
                    shown
                },
                href: url.to_owned(),
            },
            None => Inline::Plain(shown),
        };
        if inline != Inline::Plain(String::new()) {
            section("Where", Block::Text(vec![inline]));
        }
    }
    if let Some(body) = plain(&description.why, 3000) {
        section("Why", body);
    }
    if let Some(body) = plain(&description.fix, 3000) {
        section("How to fix", body);
    }
    let compliance: Vec<String> = description
        .compliance
        .iter()
        .map(|c| clip(c, 120))
        .filter(|c| !c.is_empty())
        .take(30)
        .collect();
    if !compliance.is_empty() {
        section("Compliance", Block::Bullets(compliance));
    }
    if let Some(body) = description.commit.as_deref().and_then(|c| plain(c, 500)) {
        section("Commit", body);
    }
    blocks
}

/// An Atlassian Document Format document of `blocks`.
fn adf(blocks: &[Block]) -> Value {
    let content: Vec<Value> = blocks
        .iter()
        .map(|block| match block {
            Block::Heading(title) => json!({
                "type": "heading",
                "attrs": {"level": 3},
                "content": [{"type": "text", "text": title}],
            }),
            Block::Text(inlines) => json!({
                "type": "paragraph",
                "content": inlines.iter().flat_map(adf_inline).collect::<Vec<_>>(),
            }),
            Block::Bullets(items) => json!({
                "type": "bulletList",
                "content": items.iter().map(|item| json!({
                    "type": "listItem",
                    "content": [{"type": "paragraph", "content": adf_text(item, None)}],
                })).collect::<Vec<_>>(),
            }),
        })
        .collect();
    json!({"type": "doc", "version": 1, "content": content})
}

fn adf_inline(inline: &Inline) -> Vec<Value> {
    match inline {
        Inline::Plain(text) => adf_text(text, None),
        Inline::Link { text, href } => adf_text(
            text,
            Some(json!([{"type": "link", "attrs": {"href": href}}])),
        ),
    }
}

/// Text nodes of `text`, its lines apart by hard breaks (ADF takes no empty text node).
fn adf_text(text: &str, marks: Option<Value>) -> Vec<Value> {
    let mut nodes = Vec::new();
    for (n, line) in text.split('\n').enumerate() {
        if n > 0 {
            nodes.push(json!({"type": "hardBreak"}));
        }
        if !line.is_empty() {
            let mut node = json!({"type": "text", "text": line});
            if let Some(marks) = &marks {
                node["marks"] = marks.clone();
            }
            nodes.push(node);
        }
    }
    nodes
}

/// Wiki text of `blocks` (Data Center), at most Jira's length.
fn wiki(blocks: &[Block]) -> String {
    let parts: Vec<String> = blocks
        .iter()
        .map(|block| match block {
            Block::Heading(title) => format!("h3. {title}"),
            Block::Text(inlines) => inlines
                .iter()
                .map(|inline| match inline {
                    Inline::Plain(text) => wiki_escape(text),
                    Inline::Link { text, href } if text == href => format!("[{href}]"),
                    Inline::Link { text, href } => format!("[{}|{href}]", wiki_escape(text)),
                })
                .collect(),
            Block::Bullets(items) => items
                .iter()
                .map(|item| format!("* {}", wiki_escape(item)))
                .collect::<Vec<_>>()
                .join("\n"),
        })
        .collect();
    let mut wiki: String = parts.join("\n\n").chars().take(LONG_TEXT_CHARS).collect();
    // A cut that leaves an escape without its character would escape the next one.
    let trailing = wiki.len() - wiki.trim_end_matches('\\').len();
    if trailing % 2 == 1 {
        wiki.pop();
    }
    wiki
}

/// `text` with the characters that make links, images, macros and tables in Jira's wiki
/// markup escaped: the repository's text shows as written and links nowhere it did not say.
fn wiki_escape(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len());
    for c in text.chars() {
        if matches!(c, '\\' | '[' | ']' | '{' | '}' | '|' | '!') {
            escaped.push('\\');
        }
        escaped.push(c);
    }
    escaped
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tickets::Place;

    fn description() -> Description {
        Description {
            what: "key too short\nsee policy".into(),
            place: Some(Place {
                text: "certificates/web.yaml:12 at 0123abcd4567".into(),
                url: Some(
                    "https://github.com/ops/pki/blob/0123abcd/certificates/web.yaml#L12".into(),
                ),
            }),
            why: "policy key-size (deny)".into(),
            fix: "use 3072-bit RSA".into(),
            compliance: vec!["PCI-DSS 4.2.1".into(), " ".into(), "NIST SC-12".into()],
            commit: Some("0123abcd4567 by Ann".into()),
        }
    }

    #[test]
    fn a_description_is_a_document_with_a_linked_place() {
        let doc = adf(&blocks(&description()));
        assert_eq!(doc["type"], "doc");
        assert_eq!(doc["version"], 1);
        let content = doc["content"].as_array().unwrap();
        let headings: Vec<&str> = content
            .iter()
            .filter(|n| n["type"] == "heading")
            .map(|n| n["content"][0]["text"].as_str().unwrap())
            .collect();
        assert_eq!(
            headings,
            ["What", "Where", "Why", "How to fix", "Compliance", "Commit"]
        );
        assert_eq!(
            content[1]["content"],
            json!([
                {"type": "text", "text": "key too short"},
                {"type": "hardBreak"},
                {"type": "text", "text": "see policy"},
            ])
        );
        assert_eq!(
            content[3]["content"][0]["marks"],
            json!([{"type": "link", "attrs": {"href": "https://github.com/ops/pki/blob/0123abcd/certificates/web.yaml#L12"}}])
        );
        let items = content[9]["content"].as_array().unwrap();
        assert_eq!(items.len(), 2, "the blank item is left out");
        assert_eq!(items[1]["content"][0]["content"][0]["text"], "NIST SC-12");
    }

    #[test]
    fn only_web_links_are_links() {
        let mut d = description();
        d.place.as_mut().unwrap().url = Some("javascript:alert(1)".into());
        let text = wiki(&blocks(&d));
        assert!(
            text.contains("h3. Where\n\ncertificates/web.yaml:12 at 0123abcd4567"),
            "{text}"
        );
        assert_eq!(
            adf(&blocks(&d))["content"][3]["content"][0].get("marks"),
            None
        );
        d.place.as_mut().unwrap().url = Some("https://x.example/a]b".into());
        assert!(!wiki(&blocks(&d)).contains('['));
    }

    #[test]
    fn wiki_text_cannot_make_links_or_macros() {
        let mut d = description();
        d.what = "see [here|https://evil.example] {html}<b>x</b>{html} !img.png! \\".into();
        d.compliance.clear();
        let text = wiki(&blocks(&d));
        assert!(
            text.starts_with(
                "h3. What\n\nsee \\[here\\|https://evil.example\\] \\{html\\}<b>x</b>\\{html\\} \\!img.png\\! \\\\\n\nh3. Where\n\n[certificates/web.yaml:12 at 0123abcd4567|https://github.com/"
            ),
            "{text}"
        );
        d.what = "[".repeat(40_000);
        let wiki = wiki(&blocks(&d));
        assert!(wiki.chars().count() <= LONG_TEXT_CHARS);
        assert_eq!((wiki.len() - wiki.trim_end_matches('\\').len()) % 2, 0);
    }

    #[test]
    fn jql_strings_are_quoted_and_escaped() {
        assert_eq!(jql_string("gitward-0a1b"), "\"gitward-0a1b\"");
        assert_eq!(
            jql_string("a\" OR project != \"X\\"),
            "\"a\\\" OR project != \\\"X\\\\\""
        );
        assert_eq!(jql_string("a\nb\u{7}"), "\"a\\nb\"");
    }

    #[test]
    fn keys_and_ids_are_checked() {
        for key in ["SEC-1", "A1_B-20000", "AB-0"] {
            assert!(is_issue_key(key), "{key}");
        }
        for key in [
            "",
            "SEC",
            "SEC-",
            "sec-1",
            "S-1",
            "SEC-1/../2",
            "../SEC-1",
            "1SEC-2",
            "SEC-1a",
        ] {
            assert!(!is_issue_key(key), "{key}");
        }
        assert!(!is_issue_key(&format!("S{}-1", "E".repeat(70))));
        assert!(is_issue_id("10001"));
        for id in ["", "1a", "../1", "1 ", &"9".repeat(21)] {
            assert!(!is_issue_id(id), "{id}");
        }
        assert!(is_project_key("SEC") && is_project_key("A1_2"));
        assert!(!is_project_key("S") && !is_project_key("sec") && !is_project_key("SEC\"X"));
    }

    #[test]
    fn the_credential_is_known_in_each_form() {
        use base64::Engine;
        let basic = format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode("bot@example.com:tok3n-secret")
        );
        let secrets = secrets_of(&basic);
        assert!(secrets.contains(&"tok3n-secret".to_owned()));
        assert!(secrets.contains(&basic));
        assert_eq!(secrets_of("Bearer pat-123"), ["Bearer pat-123", "pat-123"]);
    }

    #[test]
    fn jira_errors_are_one_line() {
        assert_eq!(
            jira_errors(
                r#"{"errorMessages":["Field 'priority' is required"],"errors":{"customfield_10001":"Team is required.","x":3}}"#
            ),
            "Field 'priority' is required; customfield_10001: Team is required.; x: 3"
        );
        assert_eq!(jira_errors("<html>\nno</html>"), "<html> no</html>");
    }

    fn transition(id: &str, name: &str, category: &str) -> Transition {
        Transition {
            id: id.into(),
            name: name.into(),
            to: format!("to {name}"),
            category: category.into(),
            resolution: None,
        }
    }

    #[test]
    fn resolutions_prefer_done_or_fixed() {
        let field = |names: &[&str]| json!({"allowedValues": names.iter().map(|n| json!({"name": n})).collect::<Vec<_>>()});
        assert_eq!(
            resolution_of(&field(&["Won't Fix", "Fixed", "Done"])),
            "Done"
        );
        assert_eq!(resolution_of(&field(&["Won't Fix", "FIXED"])), "FIXED");
        assert_eq!(resolution_of(&field(&["Duplicate"])), "Duplicate");
        assert_eq!(resolution_of(&json!({"required": true})), "Done");
    }

    #[test]
    fn transitions_are_chosen_by_name_or_by_where_they_lead() {
        let from_done = [
            transition("51", "Back to progress", "indeterminate"),
            transition("61", "Close", "done"),
            transition("41", "Reopen issue", "new"),
        ];
        let ticket = Ticket {
            id: "10001".into(),
            key: "SEC-1".into(),
            status: "Done".into(),
            ..Ticket::default()
        };
        let id = |chosen: Result<&Transition, Failure>| chosen.map(|t| t.id.clone());
        assert_eq!(
            id(choose(&from_done, None, Goal::Reopen, &ticket)),
            Ok("41".into())
        );
        assert_eq!(
            id(choose(&from_done, None, Goal::Resolve, &ticket)),
            Ok("61".into())
        );
        assert_eq!(
            id(choose(
                &from_done,
                Some(" back TO progress"),
                Goal::Reopen,
                &ticket
            )),
            Ok("51".into())
        );
        let start = [
            transition("11", "Start", "indeterminate"),
            transition("21", "Backlog", "new"),
        ];
        assert_eq!(
            id(choose(&start, None, Goal::Reopen, &ticket)),
            Ok("21".into())
        );
        assert_eq!(
            id(choose(&start, Some("Resolve"), Goal::Resolve, &ticket)),
            Err(Failure::Refused {
                answer:
                    "SEC-1 (status Done) has no transition `Resolve`; available: Start, Backlog"
                        .into()
            })
        );
        let Err(Failure::Refused { answer }) = choose(&start, None, Goal::Resolve, &ticket) else {
            panic!("no transition into done");
        };
        assert!(
            answer.contains("no transition into a done status; available: Start, Backlog"),
            "{answer}"
        );
    }
}
