//! The one place a stored secret is opened for use: as stored, or, for an OAuth
//! connection, as an access token with more than a few minutes left, refreshed
//! single-flight across processes when it has not (see `store::TokenLeases`).
//!
//! Refresh and rotation: Bitbucket Cloud returns a new refresh token on every
//! refresh, and the used one dies about 10 minutes after its first use. Exactly one
//! process refreshes at a time (the lease); it writes the rotated refresh token in
//! the same conditional write as the access token. If that write is lost, the old
//! refresh token still works within those 10 minutes and the next caller refreshes
//! with it again. `invalid_grant` is taken as revocation only when the tokens are
//! still the ones that were refreshed from: when they changed, another process
//! refreshed first, and its tokens are used.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::clients::{ClientsLoader, OauthClient, OauthSource};
use super::endpoint;
use super::pkce::random_token;
use super::tokens::{Refused, TokenSet};
use crate::credential::CredentialType;
use crate::domain::{Connection, ConnectionId, Owner, now};
use crate::problem::ApiError;
use crate::seal::{SealContext, Sealed, Sealer};
use crate::secret::Secret;
use crate::store::{ConnectionStore, StoreError};
use crate::verify::client::{ClientSettings, LazyHttp};

/// Longer than one refresh may take (a cold read of the client list, the token
/// request's 3 s connect and 8 s answer, sealing and the write, each AWS call at most
/// 5 s), so a lease rarely ends under a refresher still at work; if one does, its
/// tokens are still kept (the write is conditioned on the tokens, not the lease).
pub const LEASE_MS: i64 = 30_000;
/// How long a caller waits for another process's refresh before giving up: well
/// inside the timeouts of the functions that wait (browse 29 s, credentials 30 s).
const WAIT_FOR_OTHERS: Duration = Duration::from_secs(8);

pub struct TokenKeeper {
    store: Arc<dyn ConnectionStore>,
    sealer: Arc<dyn Sealer>,
    /// The client for token endpoints, built on the first refresh (most invocations
    /// never refresh); shared with the process's verifier or pickers where it has one.
    http: LazyHttp,
    clients: Arc<ClientsLoader>,
}

/// A usable secret, and for OAuth when its access token expires (Unix seconds).
pub struct Usable {
    pub secret: Secret,
    pub expires_at: Option<i64>,
}

fn unix_ms() -> i64 {
    i64::try_from(time::OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000).unwrap_or(i64::MAX)
}

fn store_error(error: StoreError) -> ApiError {
    error.into_api("", 0)
}

impl TokenKeeper {
    /// A keeper with its own client for token endpoints and its own lazily read
    /// client list, as each function process has.
    pub fn new(
        store: Arc<dyn ConnectionStore>,
        sealer: Arc<dyn Sealer>,
        bitbucket: &ClientSettings,
        oauth: &OauthSource,
    ) -> Self {
        Self::with_clients(store, sealer, bitbucket, Arc::new(ClientsLoader::new(oauth.clone())))
    }

    /// With a client list of the caller's (one read from an emulator, say).
    pub fn with_clients(
        store: Arc<dyn ConnectionStore>,
        sealer: Arc<dyn Sealer>,
        bitbucket: &ClientSettings,
        clients: Arc<ClientsLoader>,
    ) -> Self {
        Self { store, sealer, http: LazyHttp::new(bitbucket), clients }
    }

    /// Calls token endpoints through `http` (the verifier's or the pickers' client)
    /// instead of a client of its own.
    pub fn sharing(mut self, http: LazyHttp) -> Self {
        self.http = http;
        self
    }

    /// What `connection` (read with `sealed`) authenticates with now.
    pub async fn usable(&self, owner: &Owner, connection: &Connection, sealed: Sealed) -> Result<Usable, ApiError> {
        let id = ConnectionId::parse(&connection.id).ok_or(ApiError::NotFound)?;
        let opened = self.open(owner, &id, connection, &sealed).await?;
        if connection.credential_type != CredentialType::Oauth {
            return Ok(Usable { secret: opened, expires_at: None });
        }
        let tokens = self.fresh(owner, &id, connection, sealed, opened).await?;
        Ok(Usable { secret: tokens.access, expires_at: Some(tokens.access_expires_at) })
    }

    /// What `connection` authenticated with when last handed out, without refreshing:
    /// the stored secret, or an OAuth connection's stored access token.
    pub async fn as_stored(&self, owner: &Owner, connection: &Connection, sealed: &Sealed) -> Result<Secret, ApiError> {
        let id = ConnectionId::parse(&connection.id).ok_or(ApiError::NotFound)?;
        let opened = self.open(owner, &id, connection, sealed).await?;
        if connection.credential_type != CredentialType::Oauth {
            return Ok(opened);
        }
        TokenSet::from_secret(&opened).map(|tokens| tokens.access).ok_or(ApiError::SecretUnreadable)
    }

    /// Opened for the origin of the server the connection names, and no other.
    async fn open(
        &self,
        owner: &Owner,
        id: &ConnectionId,
        connection: &Connection,
        sealed: &Sealed,
    ) -> Result<Secret, ApiError> {
        let origin = connection.url.origin();
        self.sealer.open(sealed, SealContext { owner, connection: id, origin: &origin }).await.map_err(|e| e.into_api())
    }

    async fn fresh(
        &self,
        owner: &Owner,
        id: &ConnectionId,
        connection: &Connection,
        mut sealed: Sealed,
        mut opened: Secret,
    ) -> Result<TokenSet, ApiError> {
        let started = Instant::now();
        // Unknown at first: one attempt to take the lease tells.
        let mut lease_until: Option<i64> = None;
        let mut waits: u32 = 0;
        loop {
            let tokens = TokenSet::from_secret(&opened).ok_or(ApiError::SecretUnreadable)?;
            if tokens.is_fresh(now().unix_timestamp()) {
                return Ok(tokens);
            }
            let at = unix_ms();
            // A waiter tries only once the lease has run out: a failed conditional write
            // costs as much as the item is large, and a hundred waiters would pay it often.
            if lease_until.is_none_or(|until| until < at) {
                let lease =
                    random_token().map_err(|_| ApiError::ServiceUnavailable { detail: "No randomness; try again." })?;
                let took = self
                    .store
                    .take_token_lease(owner, id, &sealed, lease.expose(), at, at + LEASE_MS)
                    .await
                    .map_err(store_error)?;
                // `None` from the refresh: another process's tokens arrived meanwhile.
                if took
                    && let Some(refreshed) =
                        self.refresh_holding(owner, id, connection, &sealed, &tokens, lease.expose()).await?
                {
                    return Ok(refreshed);
                }
            }
            if started.elapsed() > WAIT_FOR_OTHERS {
                return Err(ApiError::ServiceUnavailable {
                    detail: "Bitbucket is slow to renew this connection's access. Try again shortly.",
                });
            }
            let ceiling = 100u64 << waits.min(3);
            waits += 1;
            tokio::time::sleep(Duration::from_millis(fastrand::u64(ceiling / 2..=ceiling))).await;
            let (latest, until) =
                self.store.token_state(owner, id).await.map_err(store_error)?.ok_or(ApiError::NotFound)?;
            lease_until = Some(until.unwrap_or(0));
            if latest != sealed {
                opened = self.open(owner, id, connection, &latest).await?;
                sealed = latest;
            }
        }
    }

    /// With the lease held: the refreshed tokens, or `None` when another process had
    /// already replaced the tokens this refresh started from.
    async fn refresh_holding(
        &self,
        owner: &Owner,
        id: &ConnectionId,
        connection: &Connection,
        sealed: &Sealed,
        tokens: &TokenSet,
        lease: &str,
    ) -> Result<Option<TokenSet>, ApiError> {
        let outcome = self.refresh_call(connection, tokens).await;
        let granted = match outcome {
            Ok(Ok(granted)) => granted,
            Ok(Err(Refused::InvalidGrant(_))) => {
                self.release(owner, id, lease).await;
                // Revoked only if nobody replaced the tokens: then their refresh won.
                let latest = self.store.get_sealed(owner, id).await.map_err(store_error)?;
                let Some((current, latest)) = latest else { return Err(ApiError::NotFound) };
                if latest != *sealed {
                    return Ok(None);
                }
                self.record_revoked(owner, id, &current).await;
                return Err(ApiError::OauthRevoked);
            }
            Ok(Err(Refused::InvalidClient)) => {
                self.release(owner, id, lease).await;
                tracing::error!(connection_id = %id, "the token endpoint refused the OAuth client");
                return Err(ApiError::OauthClientRejected);
            }
            Ok(Err(Refused::Other(why))) => {
                self.release(owner, id, lease).await;
                return Err(ApiError::BitbucketUnavailable {
                    detail: format!(
                        "Bitbucket did not renew this connection's access ({}). Try again later.",
                        crate::text::quoted(&why, 80)
                    ),
                });
            }
            Err(error) => {
                self.release(owner, id, lease).await;
                return Err(error);
            }
        };
        let mut next = granted.tokens;
        // Data Center may answer without a new refresh token: the old one stays.
        if next.refresh.is_none() {
            next.refresh.clone_from(&tokens.refresh);
        }
        self.keep(owner, id, connection, sealed, &next, lease).await;
        Ok(Some(next))
    }

    /// Stores refreshed tokens, trying a few times: losing them loses the rotated
    /// refresh token. If it cannot be kept, the access token is still good to hand
    /// out, and the stored refresh token still works within Bitbucket's grace after
    /// its use, so the next caller refreshes with it again.
    async fn keep(
        &self,
        owner: &Owner,
        id: &ConnectionId,
        connection: &Connection,
        read: &Sealed,
        next: &TokenSet,
        lease: &str,
    ) {
        let origin = connection.url.origin();
        let context = SealContext { owner, connection: id, origin: &origin };
        for attempt in 0..3u64 {
            if attempt > 0 {
                tokio::time::sleep(Duration::from_millis(100 * attempt * attempt)).await;
            }
            let resealed = match self.sealer.seal(&next.to_secret(), context).await {
                Ok(resealed) => resealed,
                Err(error) => {
                    tracing::warn!(connection_id = %id, error = %error, attempt, "refreshed tokens not sealed");
                    continue;
                }
            };
            match self.store.store_tokens(owner, id, read, &resealed).await {
                Ok(true) => return,
                // Newer tokens are stored already (another refresher's, or a reconnect).
                Ok(false) => return,
                Err(error) => {
                    tracing::warn!(connection_id = %id, error = %error, attempt, "refreshed tokens not stored")
                }
            }
        }
        tracing::error!(connection_id = %id, "refreshed tokens not kept; the next use refreshes again");
        self.release(owner, id, lease).await;
    }

    async fn refresh_call(
        &self,
        connection: &Connection,
        tokens: &TokenSet,
    ) -> Result<Result<super::tokens::Granted, Refused>, ApiError> {
        let Some(refresh) = tokens.refresh.as_ref() else {
            return Ok(Err(Refused::InvalidGrant("no refresh token".into())));
        };
        let client = self.client_for(connection).await?;
        endpoint::refresh(self.http.get()?, &client, refresh, now().unix_timestamp()).await
    }

    async fn client_for(&self, connection: &Connection) -> Result<OauthClient, ApiError> {
        let clients = self.clients.clients().await?;
        clients.for_server(&connection.url).cloned().ok_or_else(|| ApiError::OauthNotOffered {
            detail: format!(
                "Connect with Bitbucket is no longer offered for {}: the operator removed its OAuth client. Connect with a token instead.",
                connection.url.as_str()
            ),
        })
    }

    async fn release(&self, owner: &Owner, id: &ConnectionId, lease: &str) {
        if let Err(error) = self.store.release_token_lease(owner, id, lease).await {
            // It ends by itself within LEASE_MS.
            tracing::warn!(connection_id = %id, error = %error, "refresh lease not released");
        }
    }

    /// The connection becomes `invalid` with its own reason; the schedule then
    /// announces the change like any other. Conditioned on the version read with the
    /// tokens that were refused: a reconnect meanwhile is not marked.
    async fn record_revoked(&self, owner: &Owner, id: &ConnectionId, previous: &Connection) {
        let previous = previous.clone();
        let at = now();
        let mut next = previous.clone();
        next.version += 1;
        next.updated_at = at;
        next.record_failure(ApiError::OauthRevoked.code(), ApiError::OauthRevoked.detail(), at);
        if let Err(error) = self.store.update(owner, &previous, &next, None).await {
            tracing::warn!(connection_id = %id, error = %error, "revocation not recorded");
        }
    }
}
