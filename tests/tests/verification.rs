//! Every way verification can end, each with its own code, against the fake
//! Bitbucket Cloud and Data Center; and the SSRF guard on user-supplied URLs.

use blackbox::api::{Api, Call, Reply, test_settings};
use blackbox::fake_bitbucket::*;
use connections::config::Settings;
use connections::verify::client::ClientSettings;
use serde_json::{Value, json};

struct Env {
    api: Api,
    fake: FakeBitbucket,
    _dir: tempfile::TempDir,
}

async fn env_with(settings: Settings) -> Env {
    let dir = tempfile::tempdir().unwrap();
    Env { api: Api::embedded(dir.path(), settings), fake: FakeBitbucket::start().await, _dir: dir }
}

async fn env() -> Env {
    env_with(test_settings()).await
}

impl Env {
    async fn add(&self, body: Value) -> Reply {
        self.api.send(Call::post("/connections").user("alice").json(body)).await
    }

    async fn add_to(&self, url: &str, username: &str, password: &str) -> Reply {
        self.add(json!({"name": "work", "url": url, "username": username, "password": password})).await
    }
}

fn assert_problem(reply: &Reply, status: u16, code: &str) {
    assert_eq!((reply.status, reply.code()), (status, code), "{}", reply.text);
    assert_eq!(reply.header("content-type"), Some("application/problem+json"));
    assert!(!reply.json["detail"].as_str().unwrap_or_default().is_empty());
}

#[tokio::test]
async fn app_password_with_username_is_accepted() {
    let _logs = blackbox::logs::guard();
    let env = env().await;
    let reply = env.add_to(&env.fake.url("cloud"), APP_PASSWORD_USER, APP_PASSWORD).await;
    assert_eq!(reply.status, 201, "{}", reply.text);
    assert_eq!(reply.json["credential_type"], "app_password");
    assert_eq!(reply.json["scopes"], json!(["pullrequest:write", "project:write", "repository:write", "account"]));
}

#[tokio::test]
async fn api_token_with_email_is_accepted_and_typed_by_bitbucket() {
    let _logs = blackbox::logs::guard();
    let env = env().await;
    let reply = env.add_to(&env.fake.url("cloud"), API_TOKEN_EMAIL, API_TOKEN).await;
    assert_eq!(reply.status, 201, "{}", reply.text);
    assert_eq!(reply.json["credential_type"], "api_token");
    assert_eq!(reply.json["account"]["display_name"], "J Doe");
}

#[tokio::test]
async fn app_password_with_an_email_is_named_before_asking_bitbucket() {
    let _logs = blackbox::logs::guard();
    let env = env().await;
    let reply = env
        .add(json!({"name": "w", "url": env.fake.url("cloud"), "username": API_TOKEN_EMAIL, "password": APP_PASSWORD, "credential_type": "app_password"}))
        .await;
    assert_problem(&reply, 422, "username_is_email");
    assert_eq!(reply.json["errors"][0]["field"], "username");
    assert!(env.fake.requests().is_empty());
}

#[tokio::test]
async fn rejected_app_password_explains_the_retirement() {
    let _logs = blackbox::logs::guard();
    let env = env().await;
    let reply = env.add_to(&env.fake.url("cloud"), APP_PASSWORD_USER, "wrong").await;
    assert_problem(&reply, 422, "app_password_retired");
    let detail = reply.json["detail"].as_str().unwrap();
    assert!(detail.contains("2026-07-28") && detail.contains("write:pullrequest:bitbucket"), "{detail}");
    assert_eq!(reply.json["errors"][0]["field"], "password");
}

#[tokio::test]
async fn api_token_without_an_email_says_to_use_the_email() {
    let _logs = blackbox::logs::guard();
    let env = env().await;
    let reply = env
        .add(json!({"name": "w", "url": env.fake.url("cloud"), "username": "jdoe", "password": API_TOKEN, "credential_type": "api_token"}))
        .await;
    assert_problem(&reply, 422, "invalid_credentials");
    assert!(reply.json["detail"].as_str().unwrap().contains("email"));
}

#[tokio::test]
async fn read_only_app_password_names_the_missing_write_scopes() {
    let _logs = blackbox::logs::guard();
    let env = env().await;
    let reply = env.add_to(&env.fake.url("cloud"), APP_PASSWORD_USER, APP_PASSWORD_READ_ONLY).await;
    assert_problem(&reply, 422, "missing_permissions");
    assert_eq!(reply.json["missing_scopes"], json!(["repository:write", "pullrequest:write"]));
    assert!(reply.json["detail"].as_str().unwrap().contains("Pull requests"));
}

#[tokio::test]
async fn api_token_write_does_not_stand_in_for_read() {
    let _logs = blackbox::logs::guard();
    let env = env().await;
    let reply = env.add_to(&env.fake.url("cloud"), API_TOKEN_EMAIL, API_TOKEN_WRITE_ONLY).await;
    assert_problem(&reply, 422, "missing_permissions");
    assert_eq!(reply.json["missing_scopes"], json!(["read:repository:bitbucket", "read:pullrequest:bitbucket"]));
}

#[tokio::test]
async fn forbidden_user_endpoint_judges_the_granted_scopes_from_the_body() {
    let _logs = blackbox::logs::guard();
    let env = env().await;
    // Granted the core scopes but not read:user:bitbucket: the 403 proves the
    // token authenticates, and what it lacks is optional.
    let reply = env.add_to(&env.fake.url("cloud"), API_TOKEN_EMAIL, API_TOKEN_NO_ACCOUNT_SCOPE).await;
    assert_eq!(reply.status, 201, "{}", reply.text);
    assert_eq!(reply.json["account"], json!(null));
    assert!(reply.json["scopes"].as_array().unwrap().contains(&json!("write:repository:bitbucket")));
    assert_eq!(reply.json["warnings"][0]["code"], "account_hidden");
    assert!(reply.json["warnings"][0]["detail"].as_str().unwrap().contains("read:user:bitbucket"));
    assert_eq!(reply.json["capabilities"]["identity"], json!({"enabled": false, "needs": "read:user:bitbucket"}));
    assert_eq!(reply.json["capabilities"]["pull_requests"], json!({"enabled": true}));
}

#[tokio::test]
async fn each_failure_kind_has_its_own_code_and_status() {
    let _logs = blackbox::logs::guard();
    let env = env().await;
    let cases = [
        ("html", 422, "not_bitbucket"),
        ("huge", 422, "not_bitbucket"),
        ("nope", 422, "wrong_api_path"),
        ("login", 422, "bitbucket_redirected"),
        ("moved", 422, "bitbucket_redirected"),
        ("ratelimited", 503, "bitbucket_rate_limited"),
        ("broken", 502, "bitbucket_unavailable"),
        ("slow", 504, "bitbucket_timeout"),
    ];
    for (behaviour, status, code) in cases {
        let reply = env.add_to(&env.fake.url(behaviour), API_TOKEN_EMAIL, API_TOKEN).await;
        assert_problem(&reply, status, code);
    }
    let login = env.add_to(&env.fake.url("login"), API_TOKEN_EMAIL, API_TOKEN).await;
    assert!(login.json["detail"].as_str().unwrap().contains("login page"));
    let limited = env.add_to(&env.fake.url("ratelimited"), API_TOKEN_EMAIL, API_TOKEN).await;
    assert_eq!(limited.header("retry-after"), Some("60"));
    let told = env.add_to(&env.fake.url("ratelimited-retry"), API_TOKEN_EMAIL, API_TOKEN).await;
    assert_eq!(told.header("retry-after"), Some("42"), "Bitbucket's Retry-After is passed on");
    let listed = env.api.send(Call::get("/connections").user("alice")).await;
    assert_eq!(listed.json["items"], json!([]), "no failure stored anything");
}

#[tokio::test]
async fn transport_failures_are_told_apart() {
    let _logs = blackbox::logs::guard();
    let env = env().await;
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    let refused = env.add_to(&format!("http://127.0.0.1:{port}/2.0"), API_TOKEN_EMAIL, API_TOKEN).await;
    assert_problem(&refused, 422, "bitbucket_unreachable");
    assert!(refused.json["detail"].as_str().unwrap().contains("refused"));

    let unknown = env.add_to("https://no-such-host.invalid/2.0", API_TOKEN_EMAIL, API_TOKEN).await;
    assert_problem(&unknown, 422, "bitbucket_unreachable");
    assert!(unknown.json["detail"].as_str().unwrap().contains("does not exist"));

    // TLS to a server that does not speak it.
    let tls = env.add_to(&env.fake.url("cloud").replace("http://", "https://"), API_TOKEN_EMAIL, API_TOKEN).await;
    assert_problem(&tls, 422, "bitbucket_tls_error");
}

#[tokio::test]
async fn data_center_token_is_proven_under_rest_only() {
    let _logs = blackbox::logs::guard();
    let env = env().await;
    for url in [env.fake.url("dc"), format!("{}/rest/api/1.0/", env.fake.url("dc"))] {
        let reply = env.add(json!({"name": url, "url": url, "username": DC_USER, "password": DC_TOKEN})).await;
        assert_eq!(reply.status, 201, "{}", reply.text);
        assert_eq!(reply.json["provider"], "bitbucket_data_center");
        assert_eq!(reply.json["credential_type"], "http_access_token");
        assert_eq!(reply.json["url"], env.fake.url("dc"));
        assert_eq!(reply.json["account"]["username"], "alice");
        assert_eq!(reply.json["account"]["display_name"], "Alice Admin");
        assert_eq!(reply.json["scopes"], json!(["REPO_WRITE"]));
        let mapped = url.ends_with("/rest/api/1.0/");
        assert_eq!(reply.json.get("url_normalized_from").is_some(), mapped, "the answer says when the URL was mapped");
    }
    let requests = env.fake.requests();
    assert!(requests.iter().all(|r| r.path.starts_with("/dc/rest/")), "{requests:?}");
    let properties: Vec<_> = requests.iter().filter(|r| r.path.ends_with("application-properties")).collect();
    assert!(
        !properties.is_empty() && properties.iter().all(|r| !r.authorized),
        "the server is recognised without credentials"
    );
}

#[tokio::test]
async fn data_center_failures_are_specific() {
    let _logs = blackbox::logs::guard();
    let env = env().await;
    let dc = env.fake.url("dc");
    let read_only = env.add_to(&dc, DC_USER, DC_TOKEN_READ_ONLY).await;
    assert_problem(&read_only, 422, "missing_permissions");
    assert_eq!(read_only.json["missing_scopes"], json!(["REPO_WRITE"]));

    let bobs = env.add_to(&dc, DC_USER, DC_TOKEN_OF_BOB).await;
    assert_problem(&bobs, 422, "invalid_credentials");
    assert!(bobs.json["detail"].as_str().unwrap().contains("'bob'"));

    let wrong = env.add_to(&dc, DC_USER, "BBDC-wrong").await;
    assert_problem(&wrong, 422, "invalid_credentials");

    let web = env.add_to(&env.fake.url("web"), DC_USER, DC_TOKEN).await;
    assert_problem(&web, 422, "not_bitbucket");
    let nothing = env.add_to(&format!("{}/elsewhere", env.fake.origin), DC_USER, DC_TOKEN).await;
    assert_problem(&nothing, 422, "not_bitbucket");

    let typed = env
        .add(json!({"name": "w", "url": dc, "username": DC_USER, "password": DC_TOKEN, "credential_type": "api_token"}))
        .await;
    assert_problem(&typed, 422, "validation_failed");
    assert_eq!(typed.json["errors"][0]["field"], "credential_type");
    assert!(!env.fake.requests().iter().any(|r| r.path.contains("/plugins/")));
}

async fn guarded_env() -> Env {
    let mut settings = test_settings();
    settings.bitbucket = ClientSettings {
        connect_timeout: std::time::Duration::from_millis(500),
        static_hosts: blackbox::api::hermetic_hosts(),
        ..ClientSettings::default()
    };
    env_with(settings).await
}

#[tokio::test]
async fn internal_addresses_are_refused_before_any_request() {
    let _logs = blackbox::logs::guard();
    let env = guarded_env().await;
    let port = env.fake.origin.rsplit(':').next().unwrap().to_owned();
    let urls = [
        format!("https://127.0.0.1:{port}/cloud/2.0"),
        format!("https://localhost:{port}/cloud/2.0"),
        format!("https://[::ffff:127.0.0.1]:{port}/cloud/2.0"),
        format!("https://2130706433:{port}/cloud/2.0"),
        format!("https://0177.0.0.1:{port}/cloud/2.0"),
        format!("https://0x7f.1:{port}/cloud/2.0"),
        "https://169.254.169.254/latest/2.0".to_owned(),
        "https://[fd00::1]/2.0".to_owned(),
        "https://[::1]/2.0".to_owned(),
        "https://10.0.0.1/2.0".to_owned(),
        "https://192.168.1.10/2.0".to_owned(),
        "https://100.64.0.1/2.0".to_owned(),
        "https://0.0.0.0/2.0".to_owned(),
        "https://[fe80::1]/2.0".to_owned(),
    ];
    for url in urls {
        let reply = env.add_to(&url, API_TOKEN_EMAIL, API_TOKEN).await;
        assert_problem(&reply, 422, "url_not_allowed");
        assert_eq!(reply.json["errors"][0]["field"], "url", "{url}");
    }
    let plain = env.add_to("http://api.bitbucket.org/2.0", API_TOKEN_EMAIL, API_TOKEN).await;
    assert_problem(&plain, 422, "url_not_allowed");
    assert!(plain.json["detail"].as_str().unwrap().contains("https"));
    assert!(env.fake.requests().is_empty(), "no request reached the loopback server");
}

#[tokio::test]
async fn credentials_in_the_url_are_refused() {
    let _logs = blackbox::logs::guard();
    let env = guarded_env().await;
    let reply = env.add_to("https://jdoe:secret@api.bitbucket.org/2.0", API_TOKEN_EMAIL, API_TOKEN).await;
    assert_problem(&reply, 422, "validation_failed");
    assert_eq!(reply.json["errors"][0]["field"], "url");
    assert!(!reply.text.contains("secret@"));
}

/// A certificate for `names`, signed by a fresh private CA: (CA PEM, chain PEM, key PEM).
fn private_ca_certificate(names: &[&str]) -> (String, String, String) {
    use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params.distinguished_name.push(rcgen::DnType::CommonName, "Test private CA");
    let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().unwrap()).unwrap();
    let key = KeyPair::generate().unwrap();
    let params = CertificateParams::new(names.iter().map(|n| (*n).to_owned()).collect::<Vec<_>>()).unwrap();
    let leaf = params.signed_by(&key, &ca).unwrap();
    (ca.pem(), leaf.pem(), key.serialize_pem())
}

#[tokio::test]
async fn tls_is_verified_against_public_roots_and_the_operators_ca() {
    let _logs = blackbox::logs::guard();
    let probe = FakeBitbucket::start().await;
    let (ca, chain, key) = private_ca_certificate(&["127.0.0.1"]);
    let tls_origin = probe.serve_tls(&chain, &key).await;

    // A private CA is not trusted by default.
    let untrusted = env().await;
    let reply = untrusted.add_to(&format!("{tls_origin}/cloud/2.0"), API_TOKEN_EMAIL, API_TOKEN).await;
    assert_problem(&reply, 422, "bitbucket_tls_error");

    // With the operator's CA (BITBUCKET_CA_BUNDLE) the same server is verified over TLS.
    let mut settings = test_settings();
    settings.bitbucket.extra_roots_pem = vec![ca.clone().into_bytes()];
    let trusted = env_with(settings.clone()).await;
    let reply = trusted.add_to(&format!("{tls_origin}/cloud/2.0"), API_TOKEN_EMAIL, API_TOKEN).await;
    assert_eq!(reply.status, 201, "{}", reply.text);

    // A trusted CA does not make a certificate for another host acceptable.
    let (other_ca, other_chain, other_key) = private_ca_certificate(&["git.other.example"]);
    let mismatched = probe.serve_tls(&other_chain, &other_key).await;
    settings.bitbucket.extra_roots_pem = vec![other_ca.into_bytes()];
    let strict = env_with(settings).await;
    let reply = strict.add_to(&format!("{mismatched}/cloud/2.0"), API_TOKEN_EMAIL, API_TOKEN).await;
    assert_problem(&reply, 422, "bitbucket_tls_error");
}
