//! `GET /connections/{id}/workspaces`, `/repositories` and
//! `/repositories/{workspace}/{repo}/branches`: the import and pull-request
//! pickers, read through the user's own connection. One read of the connection, one
//! KMS Decrypt and one Bitbucket call per page, within one deadline, in one of the
//! owner's few browse slots (`store::browse_budget`: a read and a small write to take
//! it, the same to give it back): a slow or hostile server holds at most those slots'
//! invocations, and one that keeps timing out rests.

use std::sync::Arc;

use lambda_http::http::{Method, StatusCode};
use lambda_http::{Body, Request, RequestExt, Response};

use super::{method_not_allowed, respond};
use crate::browse::{Cursor, Source, parse_query, parse_slug};
use crate::config::Settings;
use crate::domain::{Connection, ConnectionId, Owner, Status, now};
use crate::http::{connection_id, json_response, principal, request_id};
use crate::oauth::TokenKeeper;
use crate::problem::{ApiError, FieldError};
use crate::store::{Admission, CallOutcome, ConnectionStore};
use crate::username::Username;
use crate::verify::client::{Auth, LazyHttp};

pub struct BrowseHandler {
    pub store: Arc<dyn ConnectionStore>,
    /// Built on the first page (see `LazyHttp`).
    pub http: LazyHttp,
    pub settings: Settings,
    /// Opens secrets for use, refreshing OAuth access tokens single-flight.
    pub keeper: TokenKeeper,
}

/// What is being listed, from the path after `/connections/{id}/`.
enum Route {
    Workspaces,
    Repositories,
    Branches { workspace: String, repo: String },
}

fn route(request: &Request) -> Result<Route, ApiError> {
    let path = request.uri().path().trim_end_matches('/');
    let after_id: Vec<&str> = path.split('/').skip_while(|s| *s != "connections").skip(2).collect();
    let parameter = |name: &str| request.path_parameters_ref().and_then(|p| p.first(name).map(str::to_owned));
    match after_id.as_slice() {
        ["workspaces"] => Ok(Route::Workspaces),
        ["repositories"] => Ok(Route::Repositories),
        ["repositories", workspace, repo, "branches"] => Ok(Route::Branches {
            workspace: parse_slug("workspace", &parameter("workspace").unwrap_or_else(|| (*workspace).to_owned()))?,
            repo: parse_slug("repo", &parameter("repo").unwrap_or_else(|| (*repo).to_owned()))?,
        }),
        _ => Err(ApiError::NotFound),
    }
}

impl BrowseHandler {
    pub async fn handle(&self, request: Request) -> Response<Body> {
        let request_id = request_id(&request);
        respond(self.browse(&request).await, &request_id)
    }

    async fn browse(&self, request: &Request) -> Result<Response<Body>, ApiError> {
        if request.method() != Method::GET {
            return Err(method_not_allowed(request));
        }
        let owner = principal(request, self.settings.identity)?;
        let id = connection_id(request)?;
        let route = route(request)?;
        let query = request.query_string_parameters();
        let cursor = Cursor::parse(query.first("cursor"))?;
        let filter = parse_query(query.first("q"))?;
        let workspace = match (&route, query.first("workspace")) {
            (Route::Repositories, Some(w)) => Some(parse_slug("workspace", w)?),
            (Route::Repositories, None) => {
                return Err(ApiError::ValidationFailed {
                    errors: vec![FieldError::new(
                        "workspace",
                        "required",
                        "is required: a workspace slug or project key",
                    )],
                });
            }
            _ => None,
        };

        let limit = self.settings.max_connections_per_owner;
        let (connection, sealed) =
            self.store.get_sealed(&owner, &id).await.map_err(|e| e.into_api("", limit))?.ok_or(ApiError::NotFound)?;
        // Known-bad credentials are not sent again: on Data Center, repeated 401s can
        // lock the user's account behind a CAPTCHA.
        match connection.clone().with_status_at(crate::domain::now()).status {
            Status::Invalid => {
                return Err(ApiError::ConnectionUnusable {
                    detail: format!(
                        "This connection is invalid ({}). Edit it with working credentials first.",
                        connection.status_reason.as_deref().unwrap_or("invalid_credentials")
                    ),
                });
            }
            Status::Expired => {
                return Err(ApiError::ConnectionUnusable {
                    detail: "This connection's token has expired. Edit it with a new token first.".into(),
                });
            }
            Status::Verified | Status::Expiring => {}
        }
        let url = connection.url.clone();
        let origin = url.origin();
        let secret = self.keeper.usable(&owner, &connection, sealed).await?.secret;
        let source = Source {
            http: self.http.get()?,
            url,
            connection: &connection,
            auth: Auth::for_connection(
                connection.credential_type,
                connection.username.as_ref().map(Username::as_str),
                &secret,
            ),
            resource: connection.resource.clone(),
        };
        let origin_key = origin.to_string();
        let lease = self.take_slot(&owner, &origin_key).await?;
        let q = filter.as_deref();
        let listing = async {
            match &route {
                Route::Workspaces => {
                    source.workspaces(cursor).await.map(|l| serde_json::to_value(l).unwrap_or_default())
                }
                Route::Repositories => source
                    .repositories(workspace.as_deref().unwrap_or_default(), q, cursor)
                    .await
                    .map(|l| serde_json::to_value(l).unwrap_or_default()),
                Route::Branches { workspace, repo } => source
                    .branches(workspace, repo, q, cursor)
                    .await
                    .map(|l| serde_json::to_value(l).unwrap_or_default()),
            }
        };
        let listed = tokio::time::timeout(self.settings.browse_deadline, listing)
            .await
            .unwrap_or(Err(ApiError::BitbucketTimeout));
        let outcome = match listed {
            Err(ApiError::BitbucketTimeout) => CallOutcome::TimedOut,
            _ => CallOutcome::Answered,
        };
        self.give_back(&owner, &lease, &origin_key, outcome).await;
        match listed {
            Ok(body) => Ok(json_response(StatusCode::OK, &body)),
            Err(error @ ApiError::InvalidCredentials { .. }) => {
                self.mark_invalid(&owner, &id, &connection, &error).await;
                Err(error)
            }
            Err(error) => Err(error),
        }
    }

    /// One of the owner's browse slots for a page from `origin`, or the problem
    /// that says when to come back (nothing is sent to Bitbucket then).
    async fn take_slot(&self, owner: &Owner, origin: &str) -> Result<String, ApiError> {
        let rules = &self.settings.browse;
        match self.store.take_slot(owner, origin, rules, now_ms()).await {
            Ok(Admission::Taken(lease)) => Ok(lease),
            Ok(Admission::Busy { retry_after_ms }) => {
                Err(ApiError::BrowseBusy { retry_after: seconds(retry_after_ms) })
            }
            Ok(Admission::Resting { retry_after_ms }) => {
                Err(ApiError::BitbucketResting { retry_after: seconds(retry_after_ms) })
            }
            Err(error) => Err(error.into_api("", self.settings.max_connections_per_owner)),
        }
    }

    /// A slot not given back (the store failing now) frees itself when its lease runs out.
    async fn give_back(&self, owner: &Owner, lease: &str, origin: &str, outcome: CallOutcome) {
        let rules = &self.settings.browse;
        if let Err(error) = self.store.give_back(owner, lease, origin, outcome, rules, now_ms()).await {
            tracing::warn!(error = %error, "could not give a browse slot back; it frees itself when its lease runs out");
        }
    }

    /// Bitbucket refused the stored credentials outright: the connection says so
    /// from now on. Conditioned on the version read, so a concurrent edit wins.
    async fn mark_invalid(&self, owner: &Owner, id: &ConnectionId, previous: &Connection, error: &ApiError) {
        let at = now();
        let mut next = previous.clone();
        next.version += 1;
        next.updated_at = at;
        next.record_failure(error.code(), error.detail(), at);
        if let Err(failure) = self.store.update(owner, previous, &next, None).await {
            tracing::info!(connection_id = %id, failure = %failure, "could not mark the connection invalid");
        }
    }
}

fn now_ms() -> i64 {
    i64::try_from(time::OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000).unwrap_or(i64::MAX)
}

/// Whole seconds for `Retry-After`, rounded up.
fn seconds(ms: i64) -> std::time::Duration {
    std::time::Duration::from_secs(u64::try_from((ms + 999) / 1000).unwrap_or(1).max(1))
}
