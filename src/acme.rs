//! ACME issuance (RFC 8555) with instant-acme. Each account of the host config is registered
//! on first use and its registration (key included) kept in the secret store. http-01
//! challenges are answered by a listener gitward runs itself on the account's `http01Listen`
//! address, for as long as a batch of orders is in flight; the orders of one reconcile run
//! concurrently, so twenty certificates take about as long as one.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use axum::Router;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::get;
use instant_acme::{
    Account, AccountCredentials, AuthorizationStatus, ChallengeType, Identifier, NewAccount,
    NewOrder, OrderStatus, RetryPolicy,
};
use serde::{Deserialize, Serialize};

use crate::config::AcmeAccount;
use crate::model::CertificateSpec;
use crate::store::{RecordedOrder, Store, StoreError};

/// One certificate to order: its names, its key and the signing request for that key, and
/// the order an interrupted run left, if any.
pub struct Request {
    pub name: String,
    pub identifiers: Vec<Identifier>,
    pub csr: Vec<u8>,
    /// The key, PEM, recorded with the order so that a resumed order finishes with it.
    pub key: String,
    /// URL of an order recorded by an earlier run that did not finish.
    pub resume: Option<String>,
    /// The hash of the spec it is ordered for, recorded with the order.
    pub spec_hash: String,
}

impl Request {
    pub fn new(
        name: &str,
        spec: &CertificateSpec,
        spec_hash: String,
        csr: Vec<u8>,
        key: String,
    ) -> Request {
        let dns = spec
            .dns_names
            .iter()
            .map(|n| Identifier::Dns(n.to_string()));
        let ips = spec
            .ip_addresses
            .iter()
            .filter_map(|a| a.0.parse::<IpAddr>().ok())
            .map(Identifier::Ip);
        Request {
            name: name.to_owned(),
            identifiers: dns.chain(ips).collect(),
            csr,
            key,
            resume: None,
            spec_hash,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum AcmeError {
    #[error("http-01 listener on {address}: {source}")]
    Listen {
        address: String,
        #[source]
        source: std::io::Error,
    },
    #[error("ACME account `{account}`: {message}")]
    Account { account: String, message: String },
    #[error("ACME order: {0}")]
    Order(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// What the secret store keeps for an account: the registration and where it was made.
#[derive(Serialize, Deserialize)]
struct Registration {
    directory: String,
    credentials: AccountCredentials,
}

/// Challenge tokens and their key authorizations, shared with the http-01 listener.
type Tokens = Arc<Mutex<HashMap<String, String>>>;

async fn answer_challenge(
    State(tokens): State<Tokens>,
    Path(token): Path<String>,
) -> Result<String, StatusCode> {
    let tokens = tokens.lock().unwrap_or_else(PoisonError::into_inner);
    tokens.get(&token).cloned().ok_or(StatusCode::NOT_FOUND)
}

/// Orders every request from account `account_name` and returns, per certificate name, the
/// PEM bundle the CA issued (certificate first, then its chain) or why it failed.
///
/// Write-ahead: once the CA has validated an order and before it is finalized (when the CA
/// issues), the order is recorded in the state database with its key and `spec_hash`, so a
/// run that dies before the certificate is staged finishes that same order next time instead
/// of having a second certificate issued.
pub fn issue(
    account_name: &str,
    account: &AcmeAccount,
    store: &Store,
    requests: Vec<Request>,
) -> Vec<(String, Result<String, String>)> {
    // Why an order failed goes into notes; the HTTP client's errors name the URL they asked.
    order_all(account_name, account, store, requests)
        .into_iter()
        .map(|(name, issued)| {
            let issued = issued.map_err(|e| crate::redact::credentials(&e).into_owned());
            (name, issued)
        })
        .collect()
}

fn order_all(
    account_name: &str,
    account: &AcmeAccount,
    store: &Store,
    requests: Vec<Request>,
) -> Vec<(String, Result<String, String>)> {
    let names: Vec<String> = requests.iter().map(|r| r.name.clone()).collect();
    let everything_failed = |error: AcmeError| {
        names
            .iter()
            .map(|n| (n.clone(), Err(error.to_string())))
            .collect()
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => return everything_failed(AcmeError::Order(e.to_string())),
    };
    let tokens: Tokens = Arc::default();
    let started = runtime.block_on(async {
        let server = listen(&account.http01_listen, tokens.clone()).await?;
        let client = client(account_name, account, store).await;
        if client.is_err() {
            server.abort();
        }
        Ok::<_, AcmeError>((server, client?))
    });
    let (server, client) = match started {
        Ok(started) => started,
        Err(error) => return everything_failed(error),
    };
    // Phase one, concurrently: orders created (or resumed) and authorized.
    let authorized = runtime.block_on(each(&client, requests, |client, request| {
        let tokens = tokens.clone();
        async move {
            let url = authorize(&client, &tokens, &request).await;
            (request, url)
        }
    }));
    let mut results = Vec::new();
    let mut ready = Vec::new();
    let mut record = Vec::new();
    for (request, url) in authorized {
        match url {
            Ok(url) => {
                record.push(RecordedOrder {
                    name: request.name.clone(),
                    account: account_name.to_owned(),
                    spec_hash: request.spec_hash.clone(),
                    url: url.clone(),
                    key: request.key.clone(),
                });
                ready.push((request, url));
            }
            Err(e) => results.push((request.name, Err(e.to_string()))),
        }
    }
    if let Err(error) = store.record_orders(&record) {
        server.abort();
        return everything_failed(error.into());
    }
    // Phase two, concurrently: finalized and downloaded.
    let issued = runtime.block_on(each(&client, ready, |client, (request, url)| async move {
        let bundle = finalize(&client, url, &request.csr)
            .await
            .map_err(|e| e.to_string());
        (request.name, bundle)
    }));
    server.abort();
    results.extend(issued);
    results
}

/// Runs `work` for every item concurrently and collects the results.
async fn each<T, R, F, Fut>(client: &Account, items: Vec<T>, work: F) -> Vec<R>
where
    T: Send + 'static,
    R: Send + 'static,
    F: Fn(Account, T) -> Fut,
    Fut: std::future::Future<Output = R> + Send + 'static,
{
    let mut tasks = tokio::task::JoinSet::new();
    for item in items {
        tasks.spawn(work(client.clone(), item));
    }
    let mut results = Vec::new();
    while let Some(joined) = tasks.join_next().await {
        // A task only fails by panicking, which the library does not do on input.
        if let Ok(result) = joined {
            results.push(result);
        }
    }
    results
}

/// Serves http-01 challenges from `tokens` on `address` until aborted.
async fn listen(
    address: &str,
    tokens: Tokens,
) -> Result<tokio::task::JoinHandle<std::io::Result<()>>, AcmeError> {
    let listener = tokio::net::TcpListener::bind(address)
        .await
        .map_err(|source| AcmeError::Listen {
            address: address.to_owned(),
            source,
        })?;
    let app = Router::new()
        .route("/.well-known/acme-challenge/{token}", get(answer_challenge))
        .with_state(tokens);
    Ok(tokio::spawn(
        async move { axum::serve(listener, app).await },
    ))
}

/// The account, registered with the directory on first use and restored after that.
async fn client(
    account_name: &str,
    config: &AcmeAccount,
    store: &Store,
) -> Result<Account, AcmeError> {
    let failed = |message: String| AcmeError::Account {
        account: account_name.to_owned(),
        message,
    };
    let builder = || match &config.trusted_roots {
        Some(roots) => Account::builder_with_root(roots),
        None => Account::builder(),
    };
    let stored = store
        .acme_account(account_name)?
        .and_then(|json| serde_json::from_str::<Registration>(&json).ok())
        .filter(|r| r.directory == config.directory);
    if let Some(registration) = stored {
        return builder()
            .map_err(|e| failed(e.to_string()))?
            .from_credentials(registration.credentials)
            .await
            .map_err(|e| failed(e.to_string()));
    }
    let contact: Vec<&str> = config.contact.iter().map(String::as_str).collect();
    let (account, credentials) = builder()
        .map_err(|e| failed(e.to_string()))?
        .create(
            &NewAccount {
                contact: &contact,
                terms_of_service_agreed: true,
                only_return_existing: false,
            },
            config.directory.clone(),
            None,
        )
        .await
        .map_err(|e| failed(format!("registering with {}: {e}", config.directory)))?;
    let registration = Registration {
        directory: config.directory.clone(),
        credentials,
    };
    let json = serde_json::to_string(&registration).map_err(|e| failed(e.to_string()))?;
    store.save_acme_account(account_name, &json)?;
    Ok(account)
}

/// How often an order is polled: quickly at first, as a local CA answers in milliseconds.
fn polling() -> RetryPolicy {
    RetryPolicy::new()
        .initial_delay(Duration::from_millis(50))
        .backoff(1.5)
        .timeout(Duration::from_secs(90))
}

/// Creates the order (or takes up the one an interrupted run recorded) and has the CA
/// validate every identifier over http-01; returns the order's URL once it is ready to be
/// finalized, or already past that.
async fn authorize(
    account: &Account,
    tokens: &Tokens,
    request: &Request,
) -> Result<String, instant_acme::Error> {
    let mut resumed = match &request.resume {
        Some(url) => account.order(url.clone()).await.ok(),
        None => None,
    };
    // An order the CA gave up on (or forgot) is replaced by a new one.
    let usable = resumed
        .as_mut()
        .is_some_and(|o| o.state().status != OrderStatus::Invalid);
    let mut order = match resumed {
        Some(order) if usable => order,
        _ => {
            account
                .new_order(&NewOrder::new(&request.identifiers))
                .await?
        }
    };
    if order.state().status != OrderStatus::Pending {
        return Ok(order.url().to_owned());
    }
    let mut answered = Vec::new();
    let mut authorizations = order.authorizations();
    while let Some(authorization) = authorizations.next().await {
        let mut authorization = authorization?;
        if authorization.status != AuthorizationStatus::Pending {
            continue;
        }
        let mut challenge =
            authorization
                .challenge(ChallengeType::Http01)
                .ok_or(instant_acme::Error::Str(
                    "the CA offers no http-01 challenge",
                ))?;
        let key_authorization = challenge.key_authorization().as_str().to_owned();
        tokens
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(challenge.token.clone(), key_authorization);
        answered.push(challenge.token.clone());
        challenge.set_ready().await?;
    }
    let status = order.poll_ready(&polling()).await;
    {
        let mut held = tokens.lock().unwrap_or_else(PoisonError::into_inner);
        for token in &answered {
            held.remove(token);
        }
    }
    match status? {
        OrderStatus::Ready => Ok(order.url().to_owned()),
        other => {
            let detail = order
                .state()
                .error
                .as_ref()
                .map(|p| p.to_string())
                .unwrap_or_default();
            Err(instant_acme::Error::Other(
                format!("the order is {other:?}, not ready: {detail}").into(),
            ))
        }
    }
}

/// Finalizes a validated order with the signing request (unless an earlier run did) and
/// downloads the certificate.
async fn finalize(
    account: &Account,
    url: String,
    csr: &[u8],
) -> Result<String, instant_acme::Error> {
    let mut order = account.order(url).await?;
    if order.state().status == OrderStatus::Ready {
        order.finalize_csr(csr).await?;
    }
    order.poll_certificate(&polling()).await
}
