//! `POST /connections`: verify, seal and store a new connection.

use std::sync::Arc;

use lambda_http::http::{Method, StatusCode, header};
use lambda_http::{Body, Request, Response};

use super::{admit_verification, audit, connection_response, method_not_allowed, respond};
use crate::config::Settings;
use crate::domain::{Connection, ConnectionId, NewConnection, Owner, now};
use crate::http::{idempotency_key, json_body, principal, request_id, set_header};
use crate::input::parse_create;
use crate::problem::ApiError;
use crate::seal::{SealContext, SealError, Sealer};
use crate::store::{ConnectionStore, IdempotencyRecord, StoreError};

/// How long a retry with the same `Idempotency-Key` gets the original answer.
pub const IDEMPOTENCY_TTL_SECONDS: i64 = 24 * 60 * 60;
use super::oauth::OauthHandler;
use crate::oauth::ClientsLoader;
use crate::verify::{Claim, Verifier};

pub struct AddHandler {
    pub store: Arc<dyn ConnectionStore>,
    pub sealer: Arc<dyn Sealer>,
    pub verifier: Verifier,
    pub settings: Settings,
    /// "Connect with Bitbucket", the other way to add a connection.
    pub oauth: OauthHandler,
}

impl AddHandler {
    pub fn new(
        store: Arc<dyn ConnectionStore>,
        sealer: Arc<dyn Sealer>,
        verifier: Verifier,
        settings: Settings,
    ) -> Self {
        let oauth = OauthHandler {
            store: store.clone(),
            sealer: sealer.clone(),
            verifier: verifier.clone(),
            clients: Arc::new(ClientsLoader::new(settings.oauth.clone())),
            settings: settings.clone(),
        };
        Self { store, sealer, verifier, settings, oauth }
    }

    pub async fn handle(&self, request: Request) -> Response<Body> {
        let request_id = request_id(&request);
        let path = request.uri().path();
        let result = if path.ends_with("/oauth/flows") {
            self.post_only(&request, self.oauth.start(&request, &request_id)).await
        } else if path.ends_with("/oauth/callbacks") {
            self.post_only(&request, self.oauth.callback(&request, &request_id)).await
        } else {
            self.create(&request, &request_id).await
        };
        respond(result, &request_id)
    }

    async fn post_only(
        &self,
        request: &Request,
        answer: impl Future<Output = Result<Response<Body>, ApiError>>,
    ) -> Result<Response<Body>, ApiError> {
        if request.method() != Method::POST {
            return Err(ApiError::MethodNotAllowed { allow: "POST" });
        }
        answer.await
    }

    async fn create(&self, request: &Request, request_id: &str) -> Result<Response<Body>, ApiError> {
        if request.method() != Method::POST {
            return Err(method_not_allowed(request));
        }
        let owner = principal(request, self.settings.identity)?;
        let key = idempotency_key(request.headers())?;
        let input = parse_create(&json_body(request, self.settings.max_body_bytes)?)?;
        let fingerprint = input.fingerprint();
        if let Some(key) = &key
            && let Some(response) = self.replay(&owner, key, &fingerprint).await?
        {
            return Ok(response);
        }
        let claim = Claim {
            url: &input.url,
            username: input.username.as_ref(),
            secret: &input.password,
            credential_type: input.credential_type,
            resource: input.resource.as_ref(),
        };
        // What can be refused without Bitbucket costs no KMS call and no rate-limit slot.
        self.verifier.check(&claim)?;
        admit_verification(self.store.as_ref(), &owner, &self.settings).await?;
        let id = ConnectionId::new();
        // Bitbucket's answer and KMS's are independent: wait for the slower only.
        let origin = input.url.origin();
        let context = SealContext { owner: &owner, connection: &id, origin: &origin };
        let (verified, sealed) = tokio::join!(self.verifier.verify(&claim), self.sealer.seal(&input.password, context));
        let verified = verified?;
        let sealed = sealed.map_err(SealError::into_api)?;

        let at = now();
        let new = NewConnection {
            id: &id,
            name: input.name.as_str(),
            url: &input.url,
            username: input.username.as_ref(),
            resource: input.resource.as_ref(),
            expires_at: input.expires_at,
        };
        let connection = Connection::verified(new, verified, at);
        let limit = self.settings.max_connections_per_owner;
        let record = key.as_ref().map(|key| IdempotencyRecord {
            key: key.clone(),
            fingerprint: fingerprint.clone(),
            connection_id: connection.id.clone(),
            response: serde_json::to_string(&connection).unwrap_or_default(),
            expires_at: at.unix_timestamp() + IDEMPOTENCY_TTL_SECONDS,
        });
        match self.store.create(&owner, &connection, &sealed, limit, record.as_ref()).await {
            Ok(()) => {}
            // A concurrent retry with the same key won the race: answer with its result.
            Err(StoreError::IdempotencyKeyTaken | StoreError::DuplicateName) if key.is_some() => {
                let key = key.as_deref().unwrap_or_default();
                if let Some(response) = self.replay(&owner, key, &fingerprint).await? {
                    return Ok(response);
                }
                return Err(ApiError::DuplicateName { name: input.name.as_str().to_owned() });
            }
            Err(error) => return Err(error.into_api(input.name.as_str(), limit)),
        }
        audit("create", &owner, &connection.id, "created", request_id);

        let note = input.url.normalized_from().map(|from| ("url_normalized_from", serde_json::json!(from)));
        Ok(created(&connection, note))
    }

    /// The original answer for a key already used with the same request, without
    /// asking Bitbucket or KMS again, and even if the connection has since
    /// changed or been deleted (as Stripe and the IETF Idempotency-Key draft do).
    async fn replay(&self, owner: &Owner, key: &str, fingerprint: &str) -> Result<Option<Response<Body>>, ApiError> {
        let limit = self.settings.max_connections_per_owner;
        let Some(record) = self.store.idempotency_record(owner, key).await.map_err(|e| e.into_api("", limit))? else {
            return Ok(None);
        };
        if record.fingerprint != fingerprint {
            return Err(ApiError::IdempotencyKeyReused);
        }
        let connection: Connection = serde_json::from_str(&record.response)
            .map_err(|e| StoreError::Corrupt(format!("idempotency record: {e}")).into_api("", limit))?;
        Ok(Some(created(&connection, None)))
    }
}

fn created(connection: &Connection, note: Option<(&str, serde_json::Value)>) -> Response<Body> {
    let mut response = connection_response(StatusCode::CREATED, connection, note);
    set_header(&mut response, header::LOCATION, &format!("/connections/{}", connection.id));
    response
}
