//! Connections written straight to a store as if added and verified two days ago (an
//! API token at the fake Bitbucket): the recheck's suites and benchmark start from many
//! due connections without verifying each one first.

use connections::credential::{Capabilities, CredentialType};
use connections::domain::{Account, Connection, ConnectionId, NewConnection, Owner, Provider, ServerUrl};
use connections::seal::{SealContext, Sealer};
use connections::secret::Secret;
use connections::store::ConnectionStore;
use connections::username::Username;
use connections::verify::Verification;

use crate::fake_bitbucket::{API_TOKEN, API_TOKEN_EMAIL, JDOE_UUID};

/// One due connection of `owner` to `url`, named `name`; its id.
pub async fn due_connection(
    store: &dyn ConnectionStore,
    sealer: &dyn Sealer,
    owner: &Owner,
    url: &ServerUrl,
    name: &str,
) -> String {
    let long_ago = time::OffsetDateTime::now_utc() - time::Duration::days(2);
    let id = ConnectionId::new();
    let context = SealContext { owner, connection: &id, origin: &url.origin() };
    let sealed = sealer.seal(&Secret::new(API_TOKEN.to_owned()), context).await.expect("sealed");
    let username = Username::parse(API_TOKEN_EMAIL).expect("a login");
    let new = NewConnection { id: &id, name, url, username: Some(&username), resource: None, expires_at: None };
    let connection = Connection::verified(new, verification(), long_ago);
    store.create(owner, &connection, &sealed, 1000, None).await.expect("created");
    id.to_string()
}

/// What the fake Bitbucket answers for [`API_TOKEN`].
pub fn verification() -> Verification {
    Verification {
        provider: Provider::BitbucketCloud,
        credential_type: CredentialType::ApiToken,
        account: Account::new(Some(JDOE_UUID), None, Some("J Doe"), Some("jdoe")),
        scopes: Vec::new(),
        capabilities: Capabilities::default(),
        warnings: Vec::new(),
        git_username: Some("x-bitbucket-api-token-auth".into()),
    }
}
