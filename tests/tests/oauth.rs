//! "Connect with Bitbucket": the round trip against a fake authorization server
//! speaking Bitbucket's documented OAuth 2.0 wire, tokens in custody, and a
//! refresh that holds when many Lambdas need a fresh access token at once.

use std::time::{Duration, Instant};

use blackbox::api::{Api, AwsBackend, Call, test_settings};
use blackbox::fake_bitbucket::oauth::{CLIENT_KEY, CLIENT_SECRET};
use blackbox::fake_bitbucket::*;
use blackbox::oauth_flow::{self, approve, connect, finish, query, start};
use connections::oauth::tokens::TokenSet;
use connections::secret::Secret;
use serde_json::{Value, json};

const CALLBACK: &str = "https://app.example/settings/git";

async fn setup() -> (Api, AwsBackend, FakeBitbucket) {
    let fake = FakeBitbucket::start().await;
    let mut settings = test_settings();
    settings.oauth = connections::oauth::OauthSource::Inline(Secret::new(fake.oauth_clients_json()));
    settings.oauth_callback_url = Some(CALLBACK.into());
    let (api, aws) = Api::on_moto(settings).await;
    (api, aws, fake)
}

async fn credentials(api: &Api, user: &str, id: &str, purpose: &str) -> Value {
    api.invoke_credentials(
        json!({"action": "get", "owner": user, "connection_id": id, "purpose": purpose, "caller": "pr-worker"}),
    )
    .await
}

async fn stored_tokens(api: &Api, user: &str, id: &str, url: &str) -> (TokenSet, connections::seal::Sealed) {
    oauth_flow::stored_tokens(api.store.as_ref(), api.sealer.as_ref(), user, id, url).await
}

async fn expire_stored_access(api: &Api, user: &str, id: &str, url: &str) {
    oauth_flow::expire_stored_access(api.store.as_ref(), api.sealer.as_ref(), user, id, url).await
}

#[tokio::test]
async fn connect_with_bitbucket_cloud_makes_a_verified_connection_workers_can_use() {
    let _logs = blackbox::logs::guard();
    let (api, _aws, fake) = setup().await;
    let started = start(&api, "alice", json!({"url": fake.url("cloud"), "name": "My Bitbucket"})).await;
    assert_eq!(started.status, 201, "{}", started.text);
    assert_eq!(started.headers.get("cache-control").and_then(|v| v.to_str().ok()), Some("no-store"));
    let authorize = url::Url::parse(started.json["authorize_url"].as_str().unwrap()).unwrap();
    assert_eq!(authorize.path(), "/site/oauth2/authorize");
    assert_eq!(query(&authorize, "client_id").as_deref(), Some(CLIENT_KEY));
    assert_eq!(query(&authorize, "redirect_uri").as_deref(), Some(CALLBACK));
    assert_eq!(query(&authorize, "code_challenge_method").as_deref(), Some("S256"));
    assert_eq!(query(&authorize, "state").map(|s| s.len()), Some(43), "32 random bytes");

    let redirect = approve(authorize.as_str()).await;
    let connected = finish(&api, "alice", &redirect).await;
    assert_eq!(connected.status, 201, "{}", connected.text);
    let connection = &connected.json;
    assert_eq!(connection["name"], "My Bitbucket");
    assert_eq!(connection["credential_type"], "oauth");
    assert_eq!(connection["provider"], "bitbucket_cloud");
    assert_eq!(connection["status"], "verified");
    assert_eq!(connection["account"]["uuid"], JDOE_UUID);
    assert_eq!(connection["git_username"], "x-token-auth");
    assert_eq!(connection["scopes"], json!(["repository:write", "pullrequest:write", "account"]));
    assert!(connection["capabilities"]["push"]["enabled"].as_bool().unwrap());
    let id = connection["id"].as_str().unwrap();
    assert!(!connected.text.contains("oat-") && !connected.text.contains("ort-"), "no token in the answer");

    // The wire: the code traded as form data, the client in Basic, the token only in the header.
    let token_calls: Vec<_> = fake.requests().into_iter().filter(|r| r.path == "/site/oauth2/access_token").collect();
    assert_eq!(token_calls.len(), 1);
    let basic =
        base64::Engine::encode(&base64::engine::general_purpose::STANDARD, format!("{CLIENT_KEY}:{CLIENT_SECRET}"));
    assert_eq!(token_calls[0].authorization.as_deref(), Some(format!("Basic {basic}").as_str()));
    let user_call = fake.requests().into_iter().rfind(|r| r.path == "/cloud/2.0/user").unwrap();
    assert!(user_call.authorization.unwrap().starts_with("Bearer oat-"));

    // Workers get the access token, never the refresh token.
    let (tokens, _) = stored_tokens(&api, "alice", id, &fake.url("cloud")).await;
    let git = credentials(&api, "alice", id, "git").await;
    assert_eq!(git["ok"], true, "{git}");
    assert_eq!(git["username"], "x-token-auth");
    assert_eq!(git["password"], tokens.access.expose());
    assert!(git["expires_at"].is_string());
    let api_use = credentials(&api, "alice", id, "api").await;
    assert_eq!(api_use["authorization"], format!("Bearer {}", tokens.access.expose()));
    let refresh = tokens.refresh.unwrap();
    for answer in [&git, &api_use] {
        assert!(!answer.to_string().contains(refresh.expose()), "the refresh token stays in custody");
    }
}

#[tokio::test]
async fn data_center_codes_are_traded_at_once_with_the_pkce_verifier() {
    let _logs = blackbox::logs::guard();
    let (api, _aws, fake) = setup().await;
    let connected = connect(&api, "alice", &fake.url("dc")).await;
    assert_eq!(connected.status, 201, "{}", connected.text);
    assert_eq!(connected.json["provider"], "bitbucket_data_center");
    assert_eq!(connected.json["account"]["username"], DC_USER);
    assert_eq!(connected.json["scopes"], json!(["PUBLIC_REPOS", "REPO_WRITE"]));
    let id = connected.json["id"].as_str().unwrap();
    let git = credentials(&api, "alice", id, "git").await;
    assert!(git["http_extra_header"].as_str().unwrap().starts_with("Authorization: Bearer oat-"), "{git}");

    // A code older than Data Center's life for it is refused with what to do.
    let started = start(&api, "alice", json!({"url": fake.url("dc"), "name": "late"})).await;
    let redirect = approve(started.json["authorize_url"].as_str().unwrap()).await;
    fake.oauth().data_center_code_ttl = Duration::ZERO;
    let late = finish(&api, "alice", &redirect).await;
    assert_eq!((late.status, late.json["code"].as_str()), (422, Some("oauth_code_rejected")), "{}", late.text);
    assert!(late.json["detail"].as_str().unwrap().contains("Start \"Connect with Bitbucket\" again"));
}

/// The classic attack: Mallory starts a flow and gets Alice to approve it (or hands
/// Alice's page her own state). A flow is finished only by the user who started it.
#[tokio::test]
async fn a_flow_is_finished_only_by_the_user_who_started_it() {
    let _logs = blackbox::logs::guard();
    let (api, _aws, fake) = setup().await;
    let started = start(&api, "mallory", json!({"url": fake.url("cloud")})).await;
    let redirect = approve(started.json["authorize_url"].as_str().unwrap()).await;
    // Alice's browser lands on the page with Mallory's state and Alice's code.
    let hijack = finish(&api, "alice", &redirect).await;
    assert_eq!((hijack.status, hijack.json["code"].as_str()), (422, Some("oauth_flow_unknown")), "{}", hijack.text);
    for user in ["alice", "mallory"] {
        let list = api.send(Call::get("/connections").user(user)).await;
        assert_eq!(list.json["items"], json!([]), "{user} holds no connection");
    }
    let token_calls = fake.requests().into_iter().filter(|r| r.path.contains("oauth2/access_token")).count();
    assert_eq!(token_calls, 0, "the code was never traded");
    // The state is single use for its own user too, once taken.
    let own = finish(&api, "mallory", &redirect).await;
    assert_eq!(own.status, 201, "the starter may still finish: {}", own.text);
    let again = finish(&api, "mallory", &redirect).await;
    assert_eq!(again.json["code"], "oauth_flow_unknown", "a state is used once");
}

#[tokio::test]
async fn every_step_that_fails_ends_in_a_precise_problem() {
    let _logs = blackbox::logs::guard();
    let (api, _aws, fake) = setup().await;
    // Denied consent.
    let default = start(&api, "alice", json!({})).await;
    assert_eq!(default.json["code"], "oauth_not_offered", "the default is bitbucket.org, not registered here");
    assert!(default.json["detail"].as_str().unwrap().contains("https://api.bitbucket.org/2.0"));
    fake.oauth().deny_next = true;
    let started = start(&api, "alice", json!({"url": fake.url("cloud")})).await;
    assert_eq!(started.status, 201, "{}", started.text);
    let denied = finish(&api, "alice", &approve(started.json["authorize_url"].as_str().unwrap()).await).await;
    assert_eq!((denied.status, denied.json["code"].as_str()), (422, Some("oauth_denied")), "{}", denied.text);
    assert!(denied.json["detail"].as_str().unwrap().contains("did not grant access"));
    // A code Bitbucket does not know (or that was tampered with).
    let started = start(&api, "alice", json!({"url": fake.url("cloud")})).await;
    let mut redirect = approve(started.json["authorize_url"].as_str().unwrap()).await;
    let state = query(&redirect, "state").unwrap();
    redirect.query_pairs_mut().clear().append_pair("code", "forged").append_pair("state", &state);
    let forged = finish(&api, "alice", &redirect).await;
    assert_eq!(forged.json["code"], "oauth_code_rejected", "{}", forged.text);
    // A consumer without the permissions the product needs.
    fake.oauth().cloud_scopes = "repository account".into();
    let narrow = connect(&api, "alice", &fake.url("cloud")).await;
    assert_eq!(narrow.json["code"], "missing_permissions", "{}", narrow.text);
    assert_eq!(narrow.json["missing_scopes"], json!(["repository:write", "pullrequest:write"]));
    // A server nobody registered, and a kind nobody may type in.
    let unknown = start(&api, "alice", json!({"url": "https://git.other.example"})).await;
    assert_eq!((unknown.status, unknown.json["code"].as_str()), (422, Some("oauth_not_offered")));
    let typed = api
        .send(
            Call::post("/connections")
                .user("alice")
                .json(json!({"name": "x", "password": "p", "credential_type": "oauth"})),
        )
        .await;
    assert_eq!(typed.json["errors"][0]["field"], "credential_type", "{}", typed.text);
    assert_eq!(api.send(Call::get("/connections").user("alice")).await.json["items"], json!([]), "nothing half-made");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_hundred_workers_at_an_expired_token_cause_exactly_one_refresh() {
    let _logs = blackbox::logs::guard();
    let (api, _aws, fake) = setup().await;
    let connected = connect(&api, "alice", &fake.url("cloud")).await;
    let id = connected.json["id"].as_str().unwrap().to_owned();
    let (before, _) = stored_tokens(&api, "alice", &id, &fake.url("cloud")).await;
    fake.oauth().expire_access_tokens();
    // The stored expiry is what the service goes by: move it into the past, as time would.
    let api = std::sync::Arc::new(api);
    expire_stored_access(&api, "alice", &id, &fake.url("cloud")).await;
    let started = Instant::now();
    let workers: Vec<_> = (0..100)
        .map(|_| {
            let (api, id) = (api.clone(), id.clone());
            tokio::spawn(async move { credentials(&api, "alice", &id, "api").await })
        })
        .collect();
    let mut answers = Vec::new();
    for worker in workers {
        answers.push(worker.await.unwrap());
    }
    let elapsed = started.elapsed();
    assert!(answers.iter().all(|a| a["ok"] == true), "{:?}", answers.iter().find(|a| a["ok"] != true));
    assert_eq!(fake.oauth().refresh_calls, 1, "one refresh for a hundred workers");
    let (after, _) = stored_tokens(&api, "alice", &id, &fake.url("cloud")).await;
    assert_ne!(after.refresh, before.refresh, "the rotated refresh token was stored with the access token");
    let expected = format!("Bearer {}", after.access.expose());
    assert!(answers.iter().all(|a| a["authorization"] == expected.as_str()), "everyone got the one new token");
    println!("100 concurrent credential requests over an expired token: 1 refresh call, {elapsed:?} in all");
}

/// A refresher that crashed after Bitbucket answered and before its write: the new
/// refresh token is lost, the stored one was used once. Within Bitbucket's grace the
/// stored one still works, and the next caller recovers; after it, the connection
/// says it must be reconnected, and a reconnect keeps its id.
#[tokio::test]
async fn a_lost_refresh_write_recovers_within_the_grace_and_revocation_asks_for_a_reconnect() {
    let _logs = blackbox::logs::guard();
    let (api, _aws, fake) = setup().await;
    let cloud = fake.url("cloud");
    let id = connect(&api, "alice", &cloud).await.json["id"].as_str().unwrap().to_owned();
    let crashed = |refresh: Secret| {
        let token_url = format!("{}/site/oauth2/access_token", fake.origin);
        async move {
            let _ = rustls::crypto::ring::default_provider().install_default();
            let answer = reqwest::Client::new()
                .post(token_url)
                .basic_auth(CLIENT_KEY, Some(CLIENT_SECRET))
                .header("content-type", "application/x-www-form-urlencoded")
                .body(format!("grant_type=refresh_token&refresh_token={}", refresh.expose()))
                .send()
                .await
                .unwrap();
            assert_eq!(answer.status(), 200, "the crashed refresher got new tokens, then lost them");
        }
    };
    let (tokens, _) = stored_tokens(&api, "alice", &id, &cloud).await;
    crashed(tokens.refresh.clone().unwrap()).await;
    expire_stored_access(&api, "alice", &id, &cloud).await;
    let recovered = credentials(&api, "alice", &id, "git").await;
    assert_eq!(recovered["ok"], true, "within the grace the stored refresh token still works: {recovered}");
    let (now_stored, _) = stored_tokens(&api, "alice", &id, &cloud).await;
    assert_ne!(now_stored.refresh, tokens.refresh, "and its rotation is stored");

    // Past the grace, the same loss is final: the user must approve again.
    fake.oauth().grace = Duration::ZERO;
    crashed(now_stored.refresh.clone().unwrap()).await;
    expire_stored_access(&api, "alice", &id, &cloud).await;
    let refused = credentials(&api, "alice", &id, "git").await;
    assert_eq!((refused["ok"].as_bool(), refused["code"].as_str()), (Some(false), Some("oauth_revoked")), "{refused}");
    let shown = api.send(Call::get(format!("/connections/{id}")).user("alice")).await;
    assert_eq!(
        (shown.json["status"].as_str(), shown.json["status_reason"].as_str()),
        (Some("invalid"), Some("oauth_revoked"))
    );
    // The next scheduled run announces it, like any change of status.
    let recheck = connections::handlers::RecheckHandler {
        store: api.store.clone(),
        verifier: connections::verify::Verifier::new(&test_settings().bitbucket).unwrap(),
        events: std::sync::Arc::new(connections::events::LoggedEvents),
        settings: connections::config::RecheckSettings { interval: Duration::ZERO, ..Default::default() },
        circuits: Default::default(),
        keeper: test_settings().token_keeper(api.store.clone(), api.sealer.clone()),
    };
    let report = recheck.run(Instant::now() + Duration::from_secs(30)).await;
    assert_eq!(report.events, 1, "the revocation was announced: {report:?}");

    // Changing an OAuth connection's credentials is a reconnect; renaming is not.
    let patch = api.send(Call::patch(format!("/connections/{id}")).user("alice").json(json!({"password": "x"}))).await;
    assert_eq!((patch.status, patch.json["code"].as_str()), (409, Some("oauth_reconnect_required")), "{}", patch.text);
    fake.oauth().grace = Duration::from_secs(600);
    let started = start(&api, "alice", json!({"url": cloud, "connection_id": id})).await;
    assert_eq!(started.status, 201, "{}", started.text);
    let reconnected = finish(&api, "alice", &approve(started.json["authorize_url"].as_str().unwrap()).await).await;
    assert_eq!(reconnected.status, 200, "{}", reconnected.text);
    assert_eq!(
        (reconnected.json["id"].as_str(), reconnected.json["status"].as_str()),
        (Some(id.as_str()), Some("verified"))
    );
    assert_eq!(credentials(&api, "alice", &id, "git").await["ok"], true);
}

/// Deployed, the client list lives in Secrets Manager and is read on the first use,
/// once; a secret that cannot be read is the operator's problem, told as such.
#[tokio::test]
async fn the_client_list_is_read_from_secrets_manager_on_first_use() {
    use connections::oauth::{ClientsLoader, OauthSource};
    let fake = FakeBitbucket::start().await;
    let secrets = blackbox::emulator::secretsmanager().await;
    let name = format!("oauth-clients-{}", connections::domain::ConnectionId::new());
    let arn = blackbox::emulator::create_secret(&name, &fake.oauth_clients_json()).await;
    let loader = ClientsLoader::with_secrets_client(OauthSource::SecretsManager(arn.clone()), secrets.clone());
    let clients = loader.clients().await.unwrap();
    let cloud = connections::domain::ServerUrl::parse(&fake.url("cloud")).unwrap();
    assert_eq!(clients.for_server(&cloud).unwrap().key, CLIENT_KEY);
    // Read once: the secret's later deletion does not reach a warm process.
    secrets.delete_secret().secret_id(&arn).force_delete_without_recovery(true).send().await.unwrap();
    assert!(loader.clients().await.is_ok());
    let cold = ClientsLoader::with_secrets_client(OauthSource::SecretsManager(arn), secrets);
    let refused = cold.clients().await.unwrap_err();
    assert_eq!(refused.code(), "service_unavailable");
    assert!(refused.detail().contains("misconfigured") && refused.detail().contains("token"), "{}", refused.detail());
}
