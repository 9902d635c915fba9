//! "Connect with Bitbucket" as a browser and a page would drive it, for the suites that
//! need an OAuth connection: start, approve at the fake's authorization server, hand
//! the redirect back; and what two hours of waiting do to a stored access token.

use connections::domain::{ConnectionId, Owner, ServerUrl};
use connections::oauth::tokens::TokenSet;
use connections::seal::{SealContext, Sealed, Sealer};
use connections::store::ConnectionStore;
use serde_json::{Value, json};

use crate::api::{Api, Call, Reply};

/// The page's "Connect with Bitbucket": the authorize URL to send the browser to.
pub async fn start(api: &Api, user: &str, body: Value) -> Reply {
    api.send(Call::post("/oauth/flows").user(user).json(body)).await
}

/// The browser at Bitbucket: the user grants access; Bitbucket redirects back.
pub async fn approve(authorize_url: &str) -> url::Url {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let client = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let answer = client.get(authorize_url).send().await.unwrap();
    assert_eq!(answer.status(), 302, "{}", answer.text().await.unwrap_or_default());
    url::Url::parse(answer.headers()["location"].to_str().unwrap()).unwrap()
}

pub fn query(url: &url::Url, key: &str) -> Option<String> {
    url.query_pairs().find(|(k, _)| k == key).map(|(_, v)| v.into_owned())
}

/// The page back from Bitbucket, still signed in as `user`, hands over what the redirect carried.
pub async fn finish(api: &Api, user: &str, redirect: &url::Url) -> Reply {
    let mut body = serde_json::Map::new();
    for key in ["state", "code", "error", "error_description"] {
        if let Some(value) = query(redirect, key) {
            body.insert(key.into(), json!(value));
        }
    }
    api.send(Call::post("/oauth/callbacks").user(user).json(Value::Object(body))).await
}

/// The whole round trip for the server at `url`.
pub async fn connect(api: &Api, user: &str, url: &str) -> Reply {
    let started = start(api, user, json!({"url": url})).await;
    assert_eq!(started.status, 201, "{}", started.text);
    let redirect = approve(started.json["authorize_url"].as_str().unwrap()).await;
    finish(api, user, &redirect).await
}

/// What custody holds for a connection, opened as only a test may.
pub async fn stored_tokens(
    store: &dyn ConnectionStore,
    sealer: &dyn Sealer,
    user: &str,
    id: &str,
    url: &str,
) -> (TokenSet, Sealed) {
    let (owner, id) = (Owner::parse(user).unwrap(), ConnectionId::parse(id).unwrap());
    let (_, sealed) = store.get_sealed(&owner, &id).await.unwrap().unwrap();
    let origin = ServerUrl::parse(url).unwrap().origin();
    let secret = sealer.open(&sealed, SealContext { owner: &owner, connection: &id, origin: &origin }).await.unwrap();
    (TokenSet::from_secret(&secret).unwrap(), sealed)
}

/// Moves the stored access token's expiry into the past by resealing the same tokens
/// (the fake expires its side with `AuthServer::expire_access_tokens`).
pub async fn expire_stored_access(store: &dyn ConnectionStore, sealer: &dyn Sealer, user: &str, id: &str, url: &str) {
    let (mut tokens, sealed) = stored_tokens(store, sealer, user, id, url).await;
    tokens.access_expires_at = 0;
    let (owner, cid) = (Owner::parse(user).unwrap(), ConnectionId::parse(id).unwrap());
    let origin = ServerUrl::parse(url).unwrap().origin();
    let context = SealContext { owner: &owner, connection: &cid, origin: &origin };
    let resealed = sealer.seal(&tokens.to_secret(), context).await.unwrap();
    assert!(store.take_token_lease(&owner, &cid, &sealed, "test", 0, 1).await.unwrap());
    assert!(store.store_tokens(&owner, &cid, &sealed, &resealed).await.unwrap());
}
