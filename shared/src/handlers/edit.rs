//! `PATCH /connections/{id}` and `POST /connections/{id}/verify`.

use std::sync::Arc;

use lambda_http::http::{Method, StatusCode};
use lambda_http::{Body, Request, Response};

use super::{admit_verification, audit, connection_response, method_not_allowed, respond};
use crate::config::Settings;
use crate::credential::CredentialType;
use crate::domain::ServerUrl;
use crate::domain::{Account, Connection, ConnectionId, Owner, now};
use crate::http::{connection_id, if_match, is_verify_action, json_body, principal, request_id};
use crate::input::{PatchRequest, parse_patch};
use crate::oauth::TokenKeeper;
use crate::problem::ApiError;
use crate::seal::{SealContext, SealError, Sealed, Sealer};
use crate::secret::Secret;
use crate::store::ConnectionStore;
use crate::verify::{Claim, Verification, Verifier, is_verdict};

pub struct EditHandler {
    pub store: Arc<dyn ConnectionStore>,
    pub sealer: Arc<dyn Sealer>,
    pub verifier: Verifier,
    pub settings: Settings,
    /// Opens secrets for use, refreshing OAuth access tokens single-flight.
    pub keeper: TokenKeeper,
}

impl EditHandler {
    pub async fn handle(&self, request: Request) -> Response<Body> {
        let request_id = request_id(&request);
        let result = if is_verify_action(&request) {
            self.reverify(&request, &request_id).await
        } else if request.method() == Method::PATCH {
            self.patch(&request, &request_id).await
        } else {
            Err(method_not_allowed(&request))
        };
        respond(result, &request_id)
    }

    async fn load(&self, owner: &Owner, id: &ConnectionId) -> Result<(Connection, Sealed), ApiError> {
        let limit = self.settings.max_connections_per_owner;
        self.store.get_sealed(owner, id).await.map_err(|e| e.into_api("", limit))?.ok_or(ApiError::NotFound)
    }

    /// Opens the stored secret for the server it is about to be sent to.
    async fn open(
        &self,
        owner: &Owner,
        id: &ConnectionId,
        sealed: &Sealed,
        to: &ServerUrl,
    ) -> Result<Secret, ApiError> {
        let origin = to.origin();
        self.sealer
            .open(sealed, SealContext { owner, connection: id, origin: &origin })
            .await
            .map_err(SealError::into_api)
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
        let precondition = if_match(request.headers());
        let patch = parse_patch(&json_body(request, self.settings.max_body_bytes)?)?;
        let (previous, sealed) = self.load(&owner, &id).await?;
        if !precondition.allows(previous.version) {
            return Err(ApiError::VersionMismatch);
        }
        let at = now();
        let mut next = previous.clone();
        next.version = previous.version + 1;
        next.updated_at = at;
        if let Some(name) = &patch.name {
            name.as_str().clone_into(&mut next.name);
        }
        if let Some(expires_at) = patch.expires_at {
            next.expires_at = expires_at;
        }
        let mut new_sealed = None;
        if patch.changes_credentials() && previous.credential_type == CredentialType::Oauth {
            return Err(ApiError::OauthReconnectRequired);
        }
        if patch.changes_credentials() {
            // Rule zero: a stored secret only ever goes back to the origin it was verified with.
            if patch.password.is_none()
                && let Some(url) = &patch.url
                && url.url().origin() != previous.url.url().origin()
            {
                return Err(ApiError::SecretRequired);
            }
            admit_verification(self.store.as_ref(), &owner, &self.settings).await?;
            let (verified, sealed) = self.verify_change(&owner, &id, &previous, &sealed, &patch).await?;
            check_account(previous.account.as_ref(), verified.account.as_ref(), patch.confirm_account_change)?;
            if let Some(url) = &patch.url {
                next.url = url.as_stored();
            }
            if let Some(username) = &patch.username {
                next.username = Some(username.clone());
            }
            if let Some(resource) = &patch.resource {
                next.resource = Some(resource.as_stored());
            }
            if !verified.credential_type.has_username() {
                next.username = None;
            }
            if verified.credential_type.bound_to().is_none() {
                next.resource = None;
            }
            next.record_success(verified, at);
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
        let url = patch.url.as_ref().unwrap_or(&previous.url);
        // Switching kinds (an API token to an access token, say) leaves behind what
        // the new kind does not take: its login, or the resource a token was bound to.
        let kind = patch.credential_type.unwrap_or(previous.credential_type);
        let username = patch.username.as_ref().or(previous.username.as_ref().filter(|_| kind.has_username()));
        let resource = patch.resource.as_ref().or(previous.resource.as_ref().filter(|_| kind.bound_to().is_some()));
        // A new username or server may mean another kind of credential: infer again.
        let credential_type = patch
            .credential_type
            .or_else(|| (patch.username.is_none() && patch.url.is_none()).then_some(previous.credential_type));
        match &patch.password {
            Some(secret) => {
                let claim = Claim { url, username, secret, credential_type, resource };
                self.verifier.check(&claim)?;
                let origin = url.origin();
                let context = SealContext { owner, connection: id, origin: &origin };
                let (verified, sealed) = tokio::join!(self.verifier.verify(&claim), self.sealer.seal(secret, context));
                Ok((verified?, Some(sealed.map_err(SealError::into_api)?)))
            }
            None => {
                let secret = self.open(owner, id, sealed, url).await?;
                let claim = Claim { url, username, secret: &secret, credential_type, resource };
                Ok((self.verifier.verify(&claim).await?, None))
            }
        }
    }

    async fn reverify(&self, request: &Request, request_id: &str) -> Result<Response<Body>, ApiError> {
        let owner = principal(request, self.settings.identity)?;
        let id = connection_id(request)?;
        let (previous, sealed) = self.load(&owner, &id).await?;
        admit_verification(self.store.as_ref(), &owner, &self.settings).await?;
        let secret = match self.keeper.usable(&owner, &previous, sealed).await {
            Ok(usable) => usable.secret,
            // The keeper recorded the revocation as the connection's status: show it.
            Err(ApiError::OauthRevoked) => {
                let (revoked, _) = self.load(&owner, &id).await?;
                audit("verify", &owner, &revoked.id, "invalid", request_id);
                return Ok(connection_response(StatusCode::OK, &revoked, None));
            }
            Err(error) => return Err(error),
        };
        let claim = Claim {
            url: &previous.url,
            username: previous.username.as_ref(),
            secret: &secret,
            credential_type: Some(previous.credential_type),
            resource: previous.resource.as_ref(),
        };
        let outcome = self.verifier.verify(&claim).await.and_then(|verified| {
            check_account(previous.account.as_ref(), verified.account.as_ref(), false).map(|()| verified)
        });
        let at = now();
        let mut next = previous.clone();
        next.version = previous.version + 1;
        next.updated_at = at;
        match outcome {
            Ok(verified) => next.record_success(verified, at),
            Err(error) if is_verdict(&error) => next.record_failure(error.code(), error.detail(), at),
            // Bitbucket being slow or down says nothing about the credentials.
            Err(error) => return Err(error),
        }
        self.save(&owner, &previous, &next, None).await?;
        let outcome = if next.status_reason.is_none() { "verified" } else { "invalid" };
        audit("verify", &owner, &next.id, outcome, request_id);
        Ok(connection_response(StatusCode::OK, &next, None))
    }
}

/// Credentials pinned to an account stay with it unless the user confirms the
/// switch. A connection whose account was never shown pins nothing.
fn check_account(previous: Option<&Account>, found: Option<&Account>, confirmed: bool) -> Result<(), ApiError> {
    let Some(previous) = previous else { return Ok(()) };
    if confirmed || found.is_some_and(|found| previous.same_as(found)) {
        return Ok(());
    }
    Err(ApiError::AccountMismatch {
        expected: previous.label(),
        found: found.map_or_else(|| "an account Bitbucket does not show".to_owned(), Account::label),
    })
}
