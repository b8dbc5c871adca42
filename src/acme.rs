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
use crate::store::{Store, StoreError};

/// One certificate to order: its names and the signing request for its key.
pub struct Request {
    pub name: String,
    pub identifiers: Vec<Identifier>,
    pub csr: Vec<u8>,
}

impl Request {
    pub fn new(name: &str, spec: &CertificateSpec, csr: Vec<u8>) -> Request {
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
pub fn issue(
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
    runtime.block_on(async {
        match issue_all(account_name, account, store, requests).await {
            Ok(results) => results,
            Err(error) => everything_failed(error),
        }
    })
}

async fn issue_all(
    account_name: &str,
    config: &AcmeAccount,
    store: &Store,
    requests: Vec<Request>,
) -> Result<Vec<(String, Result<String, String>)>, AcmeError> {
    let listener = tokio::net::TcpListener::bind(&config.http01_listen)
        .await
        .map_err(|source| AcmeError::Listen {
            address: config.http01_listen.clone(),
            source,
        })?;
    let tokens: Tokens = Arc::default();
    let app = Router::new()
        .route("/.well-known/acme-challenge/{token}", get(answer_challenge))
        .with_state(tokens.clone());
    let server = tokio::spawn(async move { axum::serve(listener, app).await });
    let account = account(account_name, config, store).await;
    let results = match account {
        Ok(account) => {
            let mut orders = tokio::task::JoinSet::new();
            for request in requests {
                let account = account.clone();
                let tokens = tokens.clone();
                orders.spawn(async move {
                    let issued = order(&account, &tokens, &request)
                        .await
                        .map_err(|e| e.to_string());
                    (request.name, issued)
                });
            }
            let mut results = Vec::new();
            while let Some(joined) = orders.join_next().await {
                match joined {
                    Ok(result) => results.push(result),
                    Err(e) => return Err(AcmeError::Order(e.to_string())),
                }
            }
            Ok(results)
        }
        Err(e) => Err(e),
    };
    server.abort();
    results
}

/// The account, registered with the directory on first use and restored after that.
async fn account(
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

/// One order: authorize every identifier over http-01, finalize with the request, download.
async fn order(
    account: &Account,
    tokens: &Tokens,
    request: &Request,
) -> Result<String, instant_acme::Error> {
    let mut order = account
        .new_order(&NewOrder::new(&request.identifiers))
        .await?;
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
        OrderStatus::Ready => {}
        other => {
            let detail = order
                .state()
                .error
                .as_ref()
                .map(|p| p.to_string())
                .unwrap_or_default();
            return Err(instant_acme::Error::Other(
                format!("the order is {other:?}, not ready: {detail}").into(),
            ));
        }
    }
    order.finalize_csr(&request.csr).await?;
    order.poll_certificate(&polling()).await
}
