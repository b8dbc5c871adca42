//! A stand-in for GitHub's REST API on loopback, served below `/api/v3` as GitHub Enterprise
//! Server serves it: commit statuses, issue comments (list with `Link` pagination, create,
//! update), the pull requests of a commit, reviews and `GET /user`.
//!
//! Answers are the documented examples of `tests/fixtures/forges/github/` with the fake's
//! values put in, so clients parse what GitHub sends. Every request is logged; one whose
//! shape differs from the documented request (a key the example does not have, a state
//! outside the enum, a description over 140 characters, a comment over 65,536) is answered
//! 422 as GitHub does and kept in `violations`, so a test expecting success fails on it.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::Server;

pub const BASE_PATH: &str = "/api/v3";
pub const OWNER: &str = "acme";
pub const REPO: &str = "pki";
pub const TOKEN: &str = "ghs_fake-token-0123456789";
/// The login of Actions' token when it comments.
pub const ACTIONS_BOT: &str = "github-actions[bot]";

const STATUS_REQUEST: &str =
    include_str!("../fixtures/forges/github/create-commit-status.request.json");
const STATUS_ANSWER: &str =
    include_str!("../fixtures/forges/github/create-commit-status.response-201.json");
const COMMENT_REQUEST: &str =
    include_str!("../fixtures/forges/github/create-issue-comment.request.json");
const COMMENTS_ANSWER: &str =
    include_str!("../fixtures/forges/github/list-issue-comments.response-200.json");
const PULLS_ANSWER: &str =
    include_str!("../fixtures/forges/github/list-pulls-for-commit.response-200.json");
const REVIEWS_ANSWER: &str =
    include_str!("../fixtures/forges/github/list-reviews.response-200.json");

/// A comment on a pull request's conversation.
#[derive(Debug, Clone)]
pub struct Comment {
    pub id: u64,
    pub issue: u64,
    pub body: String,
    pub login: String,
    /// `User` or `Bot`.
    pub user_type: String,
    /// How many times it was edited.
    pub edits: u32,
}

/// A pull request the fake knows.
#[derive(Debug, Clone)]
pub struct Pull {
    pub number: u64,
    pub author: String,
    pub head: String,
    /// The branch it merges into.
    pub base: String,
    /// The merge commit, when merged.
    pub merged_as: Option<String>,
    /// Commits that belong to it (its heads over time).
    pub commits: Vec<String>,
}

/// A review as GitHub lists it.
#[derive(Debug, Clone)]
pub struct GivenReview {
    pub login: String,
    pub state: String,
    pub commit: String,
    pub at: String,
}

/// One request as it came.
#[derive(Debug, Clone)]
pub struct Logged {
    pub method: String,
    pub path: String,
}

/// What the next requests are answered with instead of the normal answer.
#[derive(Debug, Clone)]
pub enum Trick {
    /// This status and body.
    Answer(u16, String),
    /// A comment listing whose `Link` sends the next page to `url`.
    LinkTo(String),
}

#[derive(Default)]
pub struct Forge {
    /// The token's login for `GET /user`; `None` answers 403 as Actions' token gets.
    pub login: Option<String>,
    /// Who comments with the token.
    pub commenter: (String, String),
    pub statuses: Vec<(String, Value)>,
    pub comments: Vec<Comment>,
    pub pulls: Vec<Pull>,
    pub reviews: BTreeMap<u64, Vec<GivenReview>>,
    pub page_size: usize,
    pub requests: Vec<Logged>,
    pub violations: Vec<String>,
    pub tricks: VecDeque<Trick>,
    next_id: u64,
}

impl Forge {
    /// The statuses of `sha` with `context`, oldest first.
    pub fn statuses_of(&self, sha: &str, context: &str) -> Vec<&Value> {
        self.statuses
            .iter()
            .filter(|(s, v)| s == sha && v["context"] == context)
            .map(|(_, v)| v)
            .collect()
    }

    pub fn comments_on(&self, issue: u64) -> Vec<&Comment> {
        self.comments.iter().filter(|c| c.issue == issue).collect()
    }

    /// A comment already on the pull request, as if someone wrote it.
    pub fn add_comment(&mut self, issue: u64, login: &str, user_type: &str, body: &str) -> u64 {
        self.next_id += 1;
        self.comments.push(Comment {
            id: self.next_id,
            issue,
            body: body.to_owned(),
            login: login.to_owned(),
            user_type: user_type.to_owned(),
            edits: 0,
        });
        self.next_id
    }
}

pub struct GitHub {
    pub server: Server,
    pub forge: Arc<Mutex<Forge>>,
}

impl GitHub {
    /// A fake whose token comments as Actions' bot and may not read `/user`.
    pub async fn start() -> GitHub {
        let forge = Arc::new(Mutex::new(Forge {
            commenter: (ACTIONS_BOT.to_owned(), "Bot".to_owned()),
            page_size: 100,
            next_id: 1000,
            ..Forge::default()
        }));
        let router = axum::Router::new()
            .fallback(serve)
            .with_state(forge.clone());
        GitHub {
            server: Server::start(router).await,
            forge,
        }
    }

    /// `GITHUB_API_URL` for this fake.
    pub fn api_url(&self) -> String {
        format!("{}{BASE_PATH}", self.server.url())
    }

    pub fn state(&self) -> MutexGuard<'_, Forge> {
        self.forge.lock().expect("the fake's state")
    }
}

fn answer(status: u16, body: Value) -> Response {
    super::json_answer(status, "application/json", &body)
}

/// GitHub's validation failure.
fn invalid(forge: &mut Forge, what: String) -> Response {
    forge.violations.push(what.clone());
    answer(
        422,
        json!({"message": "Validation Failed", "errors": [{"message": what}], "status": "422"}),
    )
}

fn example(text: &str) -> Value {
    serde_json::from_str(text).expect("a documented example")
}

/// Keys of `body` that the documented request `example` does not have.
fn unknown_keys(body: &Value, example_text: &str) -> Vec<String> {
    let example = example(example_text);
    body.as_object()
        .map(|o| {
            o.keys()
                .filter(|k| example.get(k.as_str()).is_none())
                .cloned()
                .collect()
        })
        .unwrap_or_else(|| vec!["<not an object>".to_owned()])
}

async fn serve(
    State(forge): State<Arc<Mutex<Forge>>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let mut forge = forge.lock().expect("the fake's state");
    let forge = &mut *forge;
    let parsed: Option<Value> = serde_json::from_slice(&body).ok();
    let authorization = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    forge.requests.push(Logged {
        method: method.to_string(),
        path: uri.path().to_owned(),
    });
    if authorization.as_deref() != Some(&format!("Bearer {TOKEN}")) {
        return answer(401, json!({"message": "Bad credentials", "status": "401"}));
    }
    if headers.get("x-github-api-version").is_none() {
        forge.violations.push(format!(
            "{method} {} without X-GitHub-Api-Version",
            uri.path()
        ));
    }
    if let Some(Trick::Answer(status, text)) = forge.tricks.front().cloned() {
        forge.tricks.pop_front();
        return (
            StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
            text,
        )
            .into_response();
    }
    let host = headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("127.0.0.1")
        .to_owned();
    let Some(path) = uri.path().strip_prefix(BASE_PATH) else {
        return answer(404, json!({"message": "Not Found"}));
    };
    let parts: Vec<&str> = path.trim_matches('/').split('/').collect();
    let repo = [OWNER, REPO];
    match (method.as_str(), parts.as_slice()) {
        ("GET", ["user"]) => match &forge.login {
            Some(login) => answer(200, json!({"login": login, "type": "User"})),
            None => answer(
                403,
                json!({"message": "Resource not accessible by integration", "status": "403"}),
            ),
        },
        (_, ["repos", owner, name, rest @ ..]) if [*owner, *name] == repo => {
            repository(forge, &method, rest, parsed.as_ref(), &uri, &host)
        }
        _ => answer(404, json!({"message": "Not Found", "status": "404"})),
    }
}

fn repository(
    forge: &mut Forge,
    method: &Method,
    rest: &[&str],
    body: Option<&Value>,
    uri: &Uri,
    host: &str,
) -> Response {
    match (method.as_str(), rest) {
        ("POST", ["statuses", sha]) => create_status(forge, sha, body),
        ("GET", ["issues", number, "comments"]) => match number.parse() {
            Ok(number) => list_comments(forge, number, uri, host),
            Err(_) => answer(404, json!({"message": "Not Found"})),
        },
        ("POST", ["issues", number, "comments"]) => match number.parse() {
            Ok(number) => create_comment(forge, number, body),
            Err(_) => answer(404, json!({"message": "Not Found"})),
        },
        ("PATCH", ["issues", "comments", id]) => match id.parse() {
            Ok(id) => update_comment(forge, id, body),
            Err(_) => answer(404, json!({"message": "Not Found"})),
        },
        ("GET", ["commits", sha, "pulls"]) => pulls_of(forge, sha),
        ("GET", ["pulls", number, "reviews"]) => match number.parse::<u64>() {
            Ok(number) => reviews_of(forge, number),
            Err(_) => answer(404, json!({"message": "Not Found"})),
        },
        _ => answer(404, json!({"message": "Not Found", "status": "404"})),
    }
}

fn create_status(forge: &mut Forge, sha: &str, body: Option<&Value>) -> Response {
    let Some(body) = body else {
        return invalid(forge, "a status body that is not JSON".to_owned());
    };
    let unknown = unknown_keys(body, STATUS_REQUEST);
    if !unknown.is_empty() {
        return invalid(forge, format!("status keys not documented: {unknown:?}"));
    }
    let state = body["state"].as_str().unwrap_or_default();
    if !["error", "failure", "pending", "success"].contains(&state) {
        return invalid(forge, format!("status state `{state}`"));
    }
    let description = body["description"].as_str().unwrap_or_default();
    if description.chars().count() > 140 {
        return invalid(
            forge,
            "description is too long (maximum is 140 characters)".to_owned(),
        );
    }
    if sha.len() != 40 || !sha.bytes().all(|b| b.is_ascii_hexdigit()) {
        return answer(
            422,
            json!({"message": format!("No commit found for SHA: {sha}")}),
        );
    }
    forge.statuses.push((sha.to_owned(), body.clone()));
    let mut status = example(STATUS_ANSWER);
    for key in ["state", "description", "target_url", "context"] {
        status[key] = body.get(key).cloned().unwrap_or(Value::Null);
    }
    answer(201, status)
}

fn comment_json(comment: &Comment) -> Value {
    let mut value = example(COMMENTS_ANSWER)[0].clone();
    value["id"] = json!(comment.id);
    value["body"] = json!(comment.body);
    value["user"]["login"] = json!(comment.login);
    value["user"]["type"] = json!(comment.user_type);
    value
}

fn list_comments(forge: &mut Forge, number: u64, uri: &Uri, host: &str) -> Response {
    let query = super::query(uri);
    let get = |name: &str| {
        query
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
    };
    let per_page = get("per_page")
        .and_then(|v| v.parse::<usize>().ok())
        .unwrap_or(30)
        .clamp(1, 100)
        .min(forge.page_size);
    let page = get("page")
        .and_then(|v| v.parse::<usize>().ok())
        .unwrap_or(1)
        .max(1);
    let all: Vec<Value> = forge
        .comments
        .iter()
        .filter(|c| c.issue == number)
        .map(comment_json)
        .collect();
    let shown: Vec<Value> = all
        .iter()
        .skip((page - 1) * per_page)
        .take(per_page)
        .cloned()
        .collect();
    let mut response = answer(200, Value::Array(shown));
    let link = match forge.tricks.front().cloned() {
        Some(Trick::LinkTo(url)) => {
            forge.tricks.pop_front();
            Some(format!("<{url}>; rel=\"next\""))
        }
        _ if page * per_page < all.len() => Some(format!(
            "<http://{host}{BASE_PATH}/repos/{OWNER}/{REPO}/issues/{number}/comments?per_page={per_page}&page={}>; rel=\"next\"",
            page + 1
        )),
        _ => None,
    };
    if let Some(link) = link {
        response
            .headers_mut()
            .insert(header::LINK, link.parse().expect("a header value"));
    }
    response
}

fn checked_comment_body(body: Option<&Value>) -> Result<String, String> {
    let Some(body) = body else {
        return Err("a comment body that is not JSON".to_owned());
    };
    let unknown = unknown_keys(body, COMMENT_REQUEST);
    if !unknown.is_empty() {
        return Err(format!("comment keys not documented: {unknown:?}"));
    }
    let text = body["body"].as_str().unwrap_or_default();
    if text.chars().count() > 65_536 {
        return Err("Body is too long (maximum is 65536 characters)".to_owned());
    }
    Ok(text.to_owned())
}

fn create_comment(forge: &mut Forge, number: u64, body: Option<&Value>) -> Response {
    let text = match checked_comment_body(body) {
        Ok(text) => text,
        Err(what) => return invalid(forge, what),
    };
    let (login, user_type) = forge.commenter.clone();
    let id = forge.add_comment(number, &login, &user_type, &text);
    let comment = forge.comments.iter().find(|c| c.id == id).cloned();
    answer(201, comment.map(|c| comment_json(&c)).unwrap_or_default())
}

fn update_comment(forge: &mut Forge, id: u64, body: Option<&Value>) -> Response {
    let text = match checked_comment_body(body) {
        Ok(text) => text,
        Err(what) => return invalid(forge, what),
    };
    let commenter = forge.commenter.0.clone();
    let Some(comment) = forge.comments.iter_mut().find(|c| c.id == id) else {
        return answer(404, json!({"message": "Not Found"}));
    };
    // Only an owner or admin may edit another's comment; the fake's token is neither.
    if comment.login != commenter {
        forge
            .violations
            .push(format!("edited comment {id} of {}", comment.login));
        return answer(
            403,
            json!({"message": "Must have admin rights to Repository."}),
        );
    }
    comment.body = text;
    comment.edits += 1;
    let comment = comment.clone();
    answer(200, comment_json(&comment))
}

fn pulls_of(forge: &mut Forge, sha: &str) -> Response {
    let pulls: Vec<Value> = forge
        .pulls
        .iter()
        .filter(|p| {
            p.head == sha
                || p.merged_as.as_deref() == Some(sha)
                || p.commits.iter().any(|c| c == sha)
        })
        .map(|p| {
            let mut value = example(PULLS_ANSWER)[0].clone();
            value["number"] = json!(p.number);
            value["user"]["login"] = json!(p.author);
            value["head"]["sha"] = json!(p.head);
            value["base"]["ref"] = json!(p.base);
            value["merged_at"] = if p.merged_as.is_some() {
                json!("2026-11-27T10:00:00Z")
            } else {
                Value::Null
            };
            value["merge_commit_sha"] = json!(p.merged_as);
            value["html_url"] = json!(format!(
                "https://github.com/{OWNER}/{REPO}/pull/{}",
                p.number
            ));
            value
        })
        .collect();
    answer(200, Value::Array(pulls))
}

fn reviews_of(forge: &mut Forge, number: u64) -> Response {
    let reviews: Vec<Value> = forge
        .reviews
        .get(&number)
        .into_iter()
        .flatten()
        .enumerate()
        .map(|(n, r)| {
            let mut value = example(REVIEWS_ANSWER)[0].clone();
            value["id"] = json!(80 + n);
            value["user"]["login"] = json!(r.login);
            value["state"] = json!(r.state);
            value["commit_id"] = json!(r.commit);
            value["submitted_at"] = json!(r.at);
            value["html_url"] = json!(format!(
                "https://github.com/{OWNER}/{REPO}/pull/{number}#pullrequestreview-{}",
                80 + n
            ));
            value
        })
        .collect();
    answer(200, Value::Array(reviews))
}
