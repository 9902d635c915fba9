//! `POST /oauth/flows` and `POST /oauth/callbacks`: "Connect with Bitbucket", served
//! by the `add` function (it already verifies and seals new connections).
//!
//! Start: a `state` and PKCE verifier, kept server-side under the signed-in user for
//! 10 minutes; the answer is the authorize URL. Callback: the page, still signed in,
//! sends back `state` and `code`; the flow is taken only from under the same user
//! (so nobody can finish a flow with someone else's link), the code is exchanged at
//! once (Data Center's live 10 seconds), the tokens are verified like any credential,
//! sealed together, and the connection stored (or, on reconnect, its credentials
//! replaced, keeping its id).

use std::sync::Arc;

use lambda_http::http::{StatusCode, header};
use lambda_http::{Body, Request, Response};
use serde_json::json;

use super::{admit_verification, audit, connection_response};
use crate::config::Settings;
use crate::credential::CredentialType;
use crate::domain::{Connection, ConnectionId, Flavor, NewConnection, Owner, ServerUrl, now};
use crate::http::{json_body, json_response, principal, set_header};
use crate::input::{OauthCallback, OauthStart, parse_oauth_callback, parse_oauth_start};
use crate::oauth::clients::{ClientsLoader, OauthClient};
use crate::oauth::endpoint;
use crate::oauth::pkce::{challenge, random_token, state_key};
use crate::oauth::tokens::Refused;
use crate::problem::ApiError;
use crate::seal::{SealContext, Sealer};
use crate::store::{ConnectionStore, FLOW_SECONDS, Flow, StoreError};
use crate::verify::{Claim, Verifier};

pub struct OauthHandler {
    pub store: Arc<dyn ConnectionStore>,
    pub sealer: Arc<dyn Sealer>,
    pub verifier: Verifier,
    pub clients: Arc<ClientsLoader>,
    pub settings: Settings,
}

fn unavailable(detail: &'static str) -> ApiError {
    ApiError::ServiceUnavailable { detail }
}

impl OauthHandler {
    pub async fn start(&self, request: &Request, request_id: &str) -> Result<Response<Body>, ApiError> {
        let owner = principal(request, self.settings.identity)?;
        let input = parse_oauth_start(&json_body(request, self.settings.max_body_bytes)?)?;
        let client = self.client(&input.url).await?;
        let redirect_uri = self.redirect_uri()?;
        let name = self.flow_name(&owner, &input).await?;
        let state = random_token().map_err(|_| unavailable("No randomness; try again."))?;
        let verifier = random_token().map_err(|_| unavailable("No randomness; try again."))?;
        let expires_at = now().unix_timestamp() + FLOW_SECONDS;
        let flow = Flow {
            server: client.server.as_str().to_owned(),
            verifier: verifier.clone(),
            name,
            reconnect: input.reconnect.as_ref().map(ToString::to_string),
            expires_at,
        };
        let limit = self.settings.max_connections_per_owner;
        self.store.begin_flow(&owner, &state_key(state.expose()), &flow).await.map_err(|e| e.into_api("", limit))?;
        let mut authorize = client.authorize_url.clone();
        authorize
            .query_pairs_mut()
            .append_pair("client_id", &client.key)
            .append_pair("response_type", "code")
            .append_pair("state", state.expose())
            .append_pair("redirect_uri", redirect_uri)
            .append_pair("code_challenge", &challenge(&verifier))
            .append_pair("code_challenge_method", "S256");
        if let Some(scope) = &client.scope {
            authorize.query_pairs_mut().append_pair("scope", scope);
        }
        tracing::info!(audit = true, action = "oauth_start", owner = owner.as_str(), request_id, "audit");
        let expires = time::OffsetDateTime::from_unix_timestamp(expires_at).unwrap_or_else(|_| now());
        let body = json!({
            "authorize_url": authorize.as_str(),
            "expires_at": expires.format(&time::format_description::well_known::Rfc3339).unwrap_or_default(),
        });
        let mut response = json_response(StatusCode::CREATED, &body);
        set_header(&mut response, header::CACHE_CONTROL, "no-store");
        Ok(response)
    }

    pub async fn callback(&self, request: &Request, request_id: &str) -> Result<Response<Body>, ApiError> {
        let owner = principal(request, self.settings.identity)?;
        let OauthCallback { state, outcome } =
            parse_oauth_callback(&json_body(request, self.settings.max_body_bytes)?)?;
        // Off: nothing was started, so nothing is looked up.
        if self.clients.clients().await?.is_empty() {
            return Err(not_offered());
        }
        // Before the flow is taken: a refusal here leaves it (and its code) usable.
        if outcome.is_ok() {
            admit_verification(self.store.as_ref(), &owner, &self.settings).await?;
        }
        let limit = self.settings.max_connections_per_owner;
        let flow = self
            .store
            .take_flow(&owner, &state_key(&state), now().unix_timestamp())
            .await
            .map_err(|e| e.into_api("", limit))?
            .ok_or(ApiError::OauthFlowUnknown)?;
        let code = outcome.map_err(|(error, description)| denied(&error, description.as_deref()))?;
        let url = ServerUrl::parse(&flow.server).map_err(|_| ApiError::OauthFlowUnknown)?;
        let client = self.client(&url).await?;
        let redirect_uri = self.redirect_uri()?;
        let issued = now().unix_timestamp();
        let granted = match endpoint::exchange(
            self.verifier.http()?,
            &client,
            code.expose(),
            &flow.verifier,
            redirect_uri,
            issued,
        )
        .await?
        {
            Ok(granted) => granted,
            Err(Refused::InvalidGrant(why)) => return Err(code_rejected(&why)),
            Err(Refused::InvalidClient) => {
                tracing::error!(server = client.server.as_str(), "the token endpoint refused the OAuth client");
                return Err(ApiError::OauthClientRejected);
            }
            Err(Refused::Other(why)) => {
                return Err(ApiError::BitbucketUnavailable {
                    detail: format!(
                        "Bitbucket did not complete the sign-in ({}). Try again.",
                        crate::text::quoted(&why, 80)
                    ),
                });
            }
        };
        let claim = Claim {
            url: &url,
            username: None,
            secret: &granted.tokens.access,
            credential_type: Some(CredentialType::Oauth),
            resource: None,
        };
        let verified = self.verifier.verify_granted(&claim, granted.scopes.as_deref()).await?;
        let id = match &flow.reconnect {
            Some(id) => ConnectionId::parse(id).ok_or(ApiError::OauthFlowUnknown)?,
            None => ConnectionId::new(),
        };
        let origin = url.origin();
        let context = SealContext { owner: &owner, connection: &id, origin: &origin };
        let sealed = self.sealer.seal(&granted.tokens.to_secret(), context).await.map_err(|e| e.into_api())?;
        let at = now();
        if flow.reconnect.is_some() {
            let previous =
                self.store.get(&owner, &id).await.map_err(|e| e.into_api("", limit))?.ok_or(ApiError::NotFound)?;
            if previous.url.as_str() != url.as_str() {
                return Err(ApiError::OauthFlowUnknown);
            }
            if let (Some(was), Some(now_is)) = (&previous.account, &verified.account)
                && !was.same_as(now_is)
            {
                return Err(ApiError::AccountMismatch { expected: was.label(), found: now_is.label() });
            }
            let mut next = previous.clone();
            next.version += 1;
            next.updated_at = at;
            next.username = None;
            next.resource = None;
            next.expires_at = None;
            next.record_success(verified, at);
            self.store
                .update(&owner, &previous, &next, Some(&sealed))
                .await
                .map_err(|e| e.into_api(&next.name, limit))?;
            audit("reconnect", &owner, &next.id, "updated", request_id);
            return Ok(connection_response(StatusCode::OK, &next, None));
        }
        let name = if flow.name.is_empty() { default_name(&url, verified.account.as_ref()) } else { flow.name.clone() };
        let new = NewConnection { id: &id, name: &name, url: &url, username: None, resource: None, expires_at: None };
        let connection = Connection::verified(new, verified, at);
        match self.store.create(&owner, &connection, &sealed, limit, None).await {
            Ok(()) => {}
            Err(StoreError::DuplicateName) => return Err(ApiError::DuplicateName { name }),
            Err(error) => return Err(error.into_api(&name, limit)),
        }
        audit("create", &owner, &connection.id, "created", request_id);
        let mut response = connection_response(StatusCode::CREATED, &connection, None);
        set_header(&mut response, header::LOCATION, &format!("/connections/{}", connection.id));
        Ok(response)
    }

    async fn client(&self, url: &ServerUrl) -> Result<OauthClient, ApiError> {
        let clients = self.clients.clients().await?;
        clients.for_server(url).cloned().ok_or_else(|| ApiError::OauthNotOffered {
            detail: format!(
                "Connect with Bitbucket is not set up for {}. Connect with a token instead, or ask your operator to register an OAuth client for this server.",
                url.as_str()
            ),
        })
    }

    fn redirect_uri(&self) -> Result<&str, ApiError> {
        self.settings.oauth_callback_url.as_deref().ok_or_else(|| {
            tracing::error!("OAUTH_CALLBACK_URL is not set");
            ApiError::OauthNotOffered {
                detail: "Connect with Bitbucket is not set up (no callback address). Connect with a token instead."
                    .into(),
            }
        })
    }

    /// The new connection's name: as given, or empty for one named after the server and
    /// account once Bitbucket has said whose it is; on reconnect, the connection's own
    /// (which must exist, be this user's, and be an OAuth one).
    async fn flow_name(&self, owner: &Owner, input: &OauthStart) -> Result<String, ApiError> {
        let Some(id) = &input.reconnect else {
            return Ok(input.name.as_ref().map(|name| name.as_str().to_owned()).unwrap_or_default());
        };
        let limit = self.settings.max_connections_per_owner;
        let existing = self.store.get(owner, id).await.map_err(|e| e.into_api("", limit))?.ok_or(ApiError::NotFound)?;
        if existing.credential_type != CredentialType::Oauth || existing.url.as_str() != input.url.as_stored().as_str()
        {
            return Err(ApiError::ValidationFailed {
                errors: vec![crate::problem::FieldError::new(
                    "connection_id",
                    "invalid",
                    "must name a connection made with Connect with Bitbucket, on the same server",
                )],
            });
        }
        Ok(existing.name)
    }
}

/// "Bitbucket Cloud (jdoe)", "git.corp.example (alice)": one connection per server
/// and account reads apart from the next without the user typing a name.
fn default_name(url: &ServerUrl, account: Option<&crate::domain::Account>) -> String {
    let server = match url.flavor() {
        Flavor::Cloud => "Bitbucket Cloud",
        Flavor::DataCenter => url.url().host_str().unwrap_or("Bitbucket"),
    };
    let who = account.and_then(|a| a.username.as_deref().or(a.display_name.as_deref()));
    let name = match who {
        Some(who) => format!("{server} ({who})"),
        None => server.to_owned(),
    };
    // A valid name by construction of its parts; cut to the limit a name has.
    crate::domain::ConnectionName::parse(&name).map_or_else(|_| server.to_owned(), |n| n.as_str().to_owned())
}

fn not_offered() -> ApiError {
    ApiError::OauthNotOffered {
        detail: "Connect with Bitbucket is not set up on this service. Connect with a token instead.".into(),
    }
}

fn denied(error: &str, description: Option<&str>) -> ApiError {
    let said = description
        .map(|d| format!(" Bitbucket said: {}.", crate::text::quoted(d.trim_end_matches('.'), 120)))
        .unwrap_or_default();
    let detail = if error == "access_denied" {
        format!(
            "You did not grant access on Bitbucket, so nothing was connected. Start again and choose \"Grant access\".{said}"
        )
    } else {
        format!(
            "Bitbucket ended the sign-in with '{}'.{said} Start again; if it persists, tell your operator.",
            crate::text::quoted(error, 40)
        )
    };
    ApiError::OauthDenied { detail }
}

fn code_rejected(why: &str) -> ApiError {
    let said =
        if why.is_empty() { String::new() } else { format!(" Bitbucket said: {}.", crate::text::quoted(why, 120)) };
    ApiError::OauthCodeRejected {
        detail: format!(
            "Bitbucket did not accept the authorization: it expired (Data Center's last seconds), was used already, or was issued for another address.{said} Start \"Connect with Bitbucket\" again."
        ),
    }
}
