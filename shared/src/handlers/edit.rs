//! `PATCH /connections/{id}` and `POST /connections/{id}/verify`.

use std::sync::Arc;

use lambda_http::http::{Method, StatusCode};
use lambda_http::{Body, Request, Response};

use super::{audit, connection_response, respond, seal_failure};
use crate::config::Settings;
use crate::domain::{Connection, ConnectionId, Owner, Status, Username, now};
use crate::http::{connection_id, if_match, is_verify_action, json_body, principal, request_id};
use crate::input::{PatchRequest, parse_patch};
use crate::problem::ApiError;
use crate::seal::{SealContext, Sealed, Sealer};
use crate::secret::Secret;
use crate::store::ConnectionStore;
use crate::verify::target::ServerUrl;
use crate::verify::{Claim, Verification, Verifier, is_verdict};

pub struct EditHandler {
    pub store: Arc<dyn ConnectionStore>,
    pub sealer: Arc<dyn Sealer>,
    pub verifier: Verifier,
    pub settings: Settings,
}

impl EditHandler {
    pub async fn handle(&self, request: Request) -> Response<Body> {
        let request_id = request_id(&request);
        let result = if is_verify_action(&request) {
            self.reverify(&request, &request_id).await
        } else if request.method() == Method::PATCH {
            self.patch(&request, &request_id).await
        } else {
            Err(ApiError::MethodNotAllowed)
        };
        respond(result, &request_id)
    }

    async fn load(&self, owner: &Owner, id: &ConnectionId) -> Result<(Connection, Sealed), ApiError> {
        let limit = self.settings.max_connections_per_owner;
        self.store.get_sealed(owner, id).await.map_err(|e| e.into_api("", limit))?.ok_or(ApiError::NotFound)
    }

    async fn open(&self, owner: &Owner, id: &ConnectionId, sealed: &Sealed) -> Result<Secret, ApiError> {
        self.sealer.open(sealed, SealContext { owner, connection: id }).await.map_err(seal_failure)
    }

    async fn save(
        &self,
        owner: &Owner,
        previous: &Connection,
        next: &Connection,
        sealed: Option<&Sealed>,
    ) -> Result<(), ApiError> {
        let limit = self.settings.max_connections_per_owner;
        self.store.update(owner, previous, next, sealed).await.map_err(|e| e.into_api(&next.name, limit))
    }

    async fn patch(&self, request: &Request, request_id: &str) -> Result<Response<Body>, ApiError> {
        let owner = principal(request, self.settings.identity)?;
        let id = connection_id(request)?;
        let expected = if_match(request.headers())?;
        let patch = parse_patch(&json_body(request, self.settings.max_body_bytes)?)?;
        let (previous, sealed) = self.load(&owner, &id).await?;
        if expected.is_some_and(|v| v != previous.version) {
            return Err(ApiError::VersionMismatch);
        }
        let at = now();
        let mut next = previous.clone();
        next.version = previous.version + 1;
        next.updated_at = at;
        if let Some(name) = &patch.name {
            name.as_str().clone_into(&mut next.name);
        }
        let mut new_sealed = None;
        if patch.changes_credentials() {
            let (verified, sealed) = self.verify_change(&owner, &id, &previous, &sealed, &patch).await?;
            if !previous.account.same_as(&verified.account) && !patch.confirm_account_change {
                return Err(ApiError::AccountMismatch {
                    expected: account_label(&previous.account),
                    found: account_label(&verified.account),
                });
            }
            if let Some(url) = &patch.url {
                url.as_str().clone_into(&mut next.url);
            }
            if let Some(username) = &patch.username {
                username.as_str().clone_into(&mut next.username);
            }
            record_success(&mut next, verified, at);
            new_sealed = sealed;
        }
        self.save(&owner, &previous, &next, new_sealed.as_ref()).await?;
        audit("update", &owner, &next.id, "updated", request_id);
        let note = patch
            .url
            .as_ref()
            .and_then(ServerUrl::normalized_from)
            .map(|from| ("url_normalized_from", serde_json::json!(from)));
        Ok(connection_response(StatusCode::OK, &next, note))
    }

    /// Verifies the connection as it would be after the patch; seals the new
    /// secret alongside when there is one, and opens the stored one only when
    /// there is not (a rename alone never reaches this).
    async fn verify_change(
        &self,
        owner: &Owner,
        id: &ConnectionId,
        previous: &Connection,
        sealed: &Sealed,
        patch: &PatchRequest,
    ) -> Result<(Verification, Option<Sealed>), ApiError> {
        let url = match &patch.url {
            Some(url) => url.clone(),
            None => stored_url(previous)?,
        };
        let username = match &patch.username {
            Some(username) => username.clone(),
            None => Username::parse(&previous.username).map_err(|_| corrupt())?,
        };
        // A new username or server may mean another kind of credential: infer again.
        let credential_type = patch
            .credential_type
            .or_else(|| (patch.username.is_none() && patch.url.is_none()).then_some(previous.credential_type));
        match &patch.password {
            Some(secret) => {
                let claim = Claim { url: &url, username: &username, secret, credential_type };
                let context = SealContext { owner, connection: id };
                let (verified, sealed) = tokio::join!(self.verifier.verify(&claim), self.sealer.seal(secret, context));
                Ok((verified?, Some(sealed.map_err(seal_failure)?)))
            }
            None => {
                let secret = self.open(owner, id, sealed).await?;
                let claim = Claim { url: &url, username: &username, secret: &secret, credential_type };
                Ok((self.verifier.verify(&claim).await?, None))
            }
        }
    }

    async fn reverify(&self, request: &Request, request_id: &str) -> Result<Response<Body>, ApiError> {
        let owner = principal(request, self.settings.identity)?;
        let id = connection_id(request)?;
        let (previous, sealed) = self.load(&owner, &id).await?;
        let secret = self.open(&owner, &id, &sealed).await?;
        let url = stored_url(&previous)?;
        let username = Username::parse(&previous.username).map_err(|_| corrupt())?;
        let claim =
            Claim { url: &url, username: &username, secret: &secret, credential_type: Some(previous.credential_type) };
        let outcome = self.verifier.verify(&claim).await.and_then(|verified| {
            if previous.account.same_as(&verified.account) {
                Ok(verified)
            } else {
                Err(ApiError::AccountMismatch {
                    expected: account_label(&previous.account),
                    found: account_label(&verified.account),
                })
            }
        });
        let at = now();
        let mut next = previous.clone();
        next.version = previous.version + 1;
        next.updated_at = at;
        match outcome {
            Ok(verified) => record_success(&mut next, verified, at),
            Err(error) if is_verdict(&error) => {
                next.status = Status::Invalid;
                next.status_reason = Some(error.code().to_owned());
                next.status_detail = Some(error.detail());
                next.verified_at = at;
            }
            // Bitbucket being slow or down says nothing about the credentials.
            Err(error) => return Err(error),
        }
        self.save(&owner, &previous, &next, None).await?;
        let outcome = if next.status == Status::Verified { "verified" } else { "invalid" };
        audit("verify", &owner, &next.id, outcome, request_id);
        Ok(connection_response(StatusCode::OK, &next, None))
    }
}

fn record_success(next: &mut Connection, verified: Verification, at: time::OffsetDateTime) {
    next.provider = verified.provider;
    next.credential_type = verified.credential_type;
    next.account = verified.account;
    next.scopes = verified.scopes;
    next.status = Status::Verified;
    next.status_reason = None;
    next.status_detail = None;
    next.verified_at = at;
}

fn stored_url(connection: &Connection) -> Result<ServerUrl, ApiError> {
    ServerUrl::parse(&connection.url).map_err(|_| corrupt())
}

fn corrupt() -> ApiError {
    tracing::error!("stored connection holds a value that no longer parses");
    ApiError::ServiceUnavailable { detail: "The stored connection is unreadable. Delete it and add it again." }
}

fn account_label(account: &crate::domain::Account) -> String {
    account
        .username
        .clone()
        .or_else(|| account.display_name.clone())
        .or_else(|| account.uuid.clone())
        .unwrap_or_else(|| "unknown".into())
}
