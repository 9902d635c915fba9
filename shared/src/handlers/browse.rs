//! `GET /connections/{id}/workspaces`, `/repositories` and
//! `/repositories/{workspace}/{repo}/branches`: the import and pull-request
//! pickers, read through the user's own connection. One DynamoDB read, one KMS
//! Decrypt and one Bitbucket call per page.

use std::sync::Arc;

use lambda_http::http::{Method, StatusCode};
use lambda_http::{Body, Request, RequestExt, Response};

use super::{method_not_allowed, respond, seal_failure};
use crate::browse::{Cursor, Source, parse_query, parse_slug};
use crate::config::Settings;
use crate::domain::{Connection, ConnectionId, Owner, Status, now};
use crate::http::{connection_id, json_response, principal, request_id};
use crate::problem::{ApiError, FieldError};
use crate::seal::{SealContext, Sealer};
use crate::store::ConnectionStore;
use crate::username::Username;
use crate::verify::client::{Auth, BitbucketHttp};

pub struct BrowseHandler {
    pub store: Arc<dyn ConnectionStore>,
    pub sealer: Arc<dyn Sealer>,
    pub http: BitbucketHttp,
    pub settings: Settings,
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
        let secret = self
            .sealer
            .open(&sealed, SealContext { owner: &owner, connection: &id, origin: &origin })
            .await
            .map_err(seal_failure)?;
        let source = Source {
            http: &self.http,
            url,
            connection: &connection,
            auth: Auth::for_connection(
                connection.credential_type,
                connection.username.as_ref().map(Username::as_str),
                &secret,
            ),
            resource: connection.resource.clone(),
        };
        let q = filter.as_deref();
        let listed = match &route {
            Route::Workspaces => source.workspaces(cursor).await.map(|l| serde_json::to_value(l).unwrap_or_default()),
            Route::Repositories => source
                .repositories(workspace.as_deref().unwrap_or_default(), q, cursor)
                .await
                .map(|l| serde_json::to_value(l).unwrap_or_default()),
            Route::Branches { workspace, repo } => {
                source.branches(workspace, repo, q, cursor).await.map(|l| serde_json::to_value(l).unwrap_or_default())
            }
        };
        match listed {
            Ok(body) => Ok(json_response(StatusCode::OK, &body)),
            Err(error @ ApiError::InvalidCredentials { .. }) => {
                self.mark_invalid(&owner, &id, &connection, &error).await;
                Err(error)
            }
            Err(error) => Err(error),
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
