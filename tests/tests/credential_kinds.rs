//! Every credential people hold in 2026, through the whole lifecycle against the
//! real handlers on the emulator: add → get → rename → re-verify → delete, then
//! the refusals particular to each kind.

use blackbox::api::{Api, Call, Reply, test_settings};
use blackbox::fake_bitbucket::*;
use serde_json::{Value, json};

struct Kind {
    name: &'static str,
    body: fn(&FakeBitbucket) -> Value,
    credential_type: &'static str,
    auth_scheme: &'static str,
    verified_at: &'static str,
    git_username: Option<&'static str>,
}

const KINDS: &[Kind] = &[
    Kind {
        name: "API token with Brainboard's four scopes",
        body: |f| json!({"name": "brainboard", "url": f.url("cloud"), "username": API_TOKEN_EMAIL, "password": BRAINBOARD_TOKEN}),
        credential_type: "api_token",
        auth_scheme: "Basic",
        verified_at: "/cloud/2.0/user",
        git_username: Some("x-bitbucket-api-token-auth"),
    },
    Kind {
        name: "API token with identity scope",
        body: |f| json!({"name": "token", "url": f.url("cloud"), "username": API_TOKEN_EMAIL, "password": API_TOKEN}),
        credential_type: "api_token",
        auth_scheme: "Basic",
        verified_at: "/cloud/2.0/user",
        git_username: Some("x-bitbucket-api-token-auth"),
    },
    Kind {
        name: "legacy app password",
        body: |f| json!({"name": "app", "url": f.url("cloud"), "username": APP_PASSWORD_USER, "password": APP_PASSWORD}),
        credential_type: "app_password",
        auth_scheme: "Basic",
        verified_at: "/cloud/2.0/user",
        git_username: Some("jdoe"),
    },
    Kind {
        name: "repository access token",
        body: |f| json!({"name": "repo", "url": f.url("cloud"), "password": REPO_ACCESS_TOKEN, "resource": "https://bitbucket.org/acme/api/src/main/"}),
        credential_type: "repository_access_token",
        auth_scheme: "Bearer",
        verified_at: "/cloud/2.0/repositories/acme/api",
        git_username: Some("x-token-auth"),
    },
    Kind {
        name: "project access token",
        body: |f| json!({"name": "project", "url": f.url("cloud"), "password": PROJECT_ACCESS_TOKEN, "resource": "https://bitbucket.org/acme/workspace/projects/OPS"}),
        credential_type: "project_access_token",
        auth_scheme: "Bearer",
        verified_at: "/cloud/2.0/workspaces/acme/projects/OPS",
        git_username: Some("x-token-auth"),
    },
    Kind {
        name: "workspace access token",
        body: |f| json!({"name": "workspace", "url": f.url("cloud"), "password": WORKSPACE_ACCESS_TOKEN, "resource": "acme"}),
        credential_type: "workspace_access_token",
        auth_scheme: "Bearer",
        verified_at: "/cloud/2.0/workspaces/acme",
        git_username: Some("x-token-auth"),
    },
    Kind {
        name: "Data Center personal token",
        body: |f| json!({"name": "dc", "url": f.url("dc"), "username": DC_USER, "password": DC_TOKEN}),
        credential_type: "http_access_token",
        auth_scheme: "Basic",
        verified_at: "/dc/rest/api/1.0/users/alice",
        git_username: Some("alice"),
    },
    Kind {
        name: "Data Center project token",
        body: |f| json!({"name": "dc-project", "url": f.url("dc"), "password": DC_PROJECT_TOKEN, "resource": "OPS"}),
        credential_type: "project_http_access_token",
        auth_scheme: "Bearer",
        verified_at: "/dc/rest/api/1.0/projects/OPS",
        git_username: None,
    },
    Kind {
        name: "Data Center repository token",
        body: |f| json!({"name": "dc-repo", "url": f.url("dc"), "password": DC_REPO_TOKEN, "resource": "https://git.corp.example/projects/OPS/repos/infra/browse"}),
        credential_type: "repository_http_access_token",
        auth_scheme: "Bearer",
        verified_at: "/dc/rest/api/1.0/projects/OPS/repos/infra",
        git_username: None,
    },
];

async fn send(api: &Api, call: Call) -> Reply {
    api.send(call.user("alice")).await
}

#[tokio::test]
async fn every_kind_lives_through_add_get_rename_verify_delete() {
    let _logs = blackbox::logs::guard();
    let fake = FakeBitbucket::start().await;
    let (api, _aws) = Api::on_moto(test_settings()).await;
    for kind in KINDS {
        let seen_before = fake.requests().len();
        let created = send(&api, Call::post("/connections").json((kind.body)(&fake))).await;
        assert_eq!(created.status, 201, "{}: {}", kind.name, created.text);
        assert_eq!(created.json["credential_type"], kind.credential_type, "{}", kind.name);
        assert_eq!(created.json["git_username"].as_str(), kind.git_username, "{}", kind.name);
        assert_eq!(created.json["status"], "verified", "{}", kind.name);
        for capability in ["read_code", "push", "pull_requests"] {
            assert_eq!(created.json["capabilities"][capability]["enabled"], true, "{}: {capability}", kind.name);
        }
        let calls = &fake.requests()[seen_before..];
        let proof =
            calls.iter().find(|r| r.path == kind.verified_at).unwrap_or_else(|| panic!("{}: {calls:?}", kind.name));
        let scheme = proof.authorization.as_deref().unwrap_or_default().split(' ').next().unwrap_or_default();
        assert_eq!(scheme, kind.auth_scheme, "{}", kind.name);
        if kind.auth_scheme == "Bearer" {
            assert!(
                calls.iter().all(|r| !r.authorization.as_deref().unwrap_or_default().starts_with("Basic")),
                "{}: a bearer-only token never goes with a username",
                kind.name
            );
            assert_eq!(created.json["username"], Value::Null, "{}", kind.name);
        }

        let path = format!("/connections/{}", created.json["id"].as_str().unwrap());
        let read = send(&api, Call::get(&path)).await;
        assert_eq!(
            (read.status, &read.json["credential_type"]),
            (200, &created.json["credential_type"]),
            "{}",
            kind.name
        );
        assert_eq!(read.json["resource"], created.json["resource"], "{}", kind.name);

        let renamed = send(
            &api,
            Call::patch(&path)
                .header("if-match", "\"1\"")
                .json(json!({"name": format!("{} renamed", kind.credential_type)})),
        )
        .await;
        assert_eq!(renamed.status, 200, "{}: {}", kind.name, renamed.text);
        let verified = send(&api, Call::post(format!("{path}/verify"))).await;
        assert_eq!(
            (verified.status, &verified.json["status"]),
            (200, &json!("verified")),
            "{}: {}",
            kind.name,
            verified.text
        );
        let deleted = send(&api, Call::delete(&path)).await;
        assert_eq!(deleted.status, 204, "{}", kind.name);
        assert_eq!(send(&api, Call::get(&path)).await.status, 404, "{}", kind.name);
    }
}

#[tokio::test]
async fn brainboards_four_scope_token_is_accepted_without_an_account() {
    let _logs = blackbox::logs::guard();
    let fake = FakeBitbucket::start().await;
    let (api, _aws) = Api::on_moto(test_settings()).await;
    let request = json!({"name": "Brainboard", "username": API_TOKEN_EMAIL, "password": BRAINBOARD_TOKEN, "url": fake.url("cloud")});
    let created = send(&api, Call::post("/connections").json(request.clone())).await;
    assert_eq!(created.status, 201, "{}", created.text);
    assert_eq!(created.json["account"], Value::Null);
    assert_eq!(created.json["scopes"], json!(BRAINBOARD_SCOPES));
    assert_eq!(created.json["warnings"][0]["code"], "account_hidden");
    assert_eq!(created.json["capabilities"]["identity"]["needs"], "read:user:bitbucket");
    assert_eq!(created.json["capabilities"]["list_workspaces"]["needs"], "read:workspace:bitbucket");
    let mut shown = request;
    shown["password"] = json!("<API token>");
    println!("request: POST /connections {shown}\nresponse: {} {}", created.status, created.text);
}

#[tokio::test]
async fn each_kind_is_refused_for_its_own_reasons() {
    let _logs = blackbox::logs::guard();
    let fake = FakeBitbucket::start().await;
    let (api, _aws) = Api::on_moto(test_settings()).await;
    let cloud = fake.url("cloud");
    let dc = fake.url("dc");
    let cases = [
        (
            "repo token on another repository",
            json!({"name": "x", "url": cloud, "password": REPO_ACCESS_TOKEN, "resource": "acme/web"}),
            422,
            "wrong_resource",
            Some("resource"),
        ),
        (
            "workspace token checked as a project token",
            json!({"name": "x", "url": cloud, "password": REPO_ACCESS_TOKEN, "credential_type": "project_access_token", "resource": "acme/OPS"}),
            422,
            "wrong_resource",
            Some("resource"),
        ),
        (
            "read-only repo token",
            json!({"name": "x", "url": cloud, "password": REPO_ACCESS_TOKEN_READ_ONLY, "resource": "acme/api"}),
            422,
            "missing_permissions",
            None,
        ),
        (
            "revoked-looking access token",
            json!({"name": "x", "url": cloud, "password": "ATCTT3x-unknown", "resource": "acme/api"}),
            422,
            "invalid_credentials",
            Some("password"),
        ),
        (
            "access token without its resource",
            json!({"name": "x", "url": cloud, "password": REPO_ACCESS_TOKEN, "credential_type": "repository_access_token"}),
            422,
            "validation_failed",
            Some("resource"),
        ),
        (
            "access token with a username",
            json!({"name": "x", "url": cloud, "username": "jdoe", "password": REPO_ACCESS_TOKEN, "credential_type": "repository_access_token", "resource": "acme/api"}),
            422,
            "validation_failed",
            Some("username"),
        ),
        (
            "API token without a username",
            json!({"name": "x", "url": cloud, "password": API_TOKEN, "credential_type": "api_token"}),
            422,
            "validation_failed",
            Some("username"),
        ),
        (
            "DC project token on another project",
            json!({"name": "x", "url": dc, "password": DC_PROJECT_TOKEN, "resource": "WEB"}),
            422,
            "wrong_resource",
            Some("resource"),
        ),
        (
            "DC repo token as a Cloud kind",
            json!({"name": "x", "url": dc, "password": DC_REPO_TOKEN, "credential_type": "repository_access_token", "resource": "OPS/infra"}),
            422,
            "validation_failed",
            Some("credential_type"),
        ),
        (
            "rejected app password",
            json!({"name": "x", "url": cloud, "username": APP_PASSWORD_USER, "password": "retired"}),
            422,
            "app_password_retired",
            Some("password"),
        ),
    ];
    for (case, body, status, code, field) in cases {
        let reply = send(&api, Call::post("/connections").json(body)).await;
        assert_eq!((reply.status, reply.code()), (status, code), "{case}: {}", reply.text);
        if let Some(field) = field {
            assert_eq!(reply.json["errors"][0]["field"], field, "{case}");
        }
    }
    let listed = send(&api, Call::get("/connections")).await;
    assert_eq!(listed.json["items"], json!([]), "no refusal stored anything");
}

#[tokio::test]
async fn a_stored_app_password_that_bitbucket_now_rejects_is_marked_retired() {
    let _logs = blackbox::logs::guard();
    let fake = FakeBitbucket::start().await;
    let (api, _aws) = Api::on_moto(test_settings()).await;
    let created = send(
        &api,
        Call::post("/connections").json(
            json!({"name": "old", "url": fake.url("cloud"), "username": APP_PASSWORD_USER, "password": APP_PASSWORD}),
        ),
    )
    .await;
    assert_eq!(created.status, 201, "{}", created.text);
    fake.revoke(APP_PASSWORD);
    let path = format!("/connections/{}", created.json["id"].as_str().unwrap());
    let verified = send(&api, Call::post(format!("{path}/verify"))).await;
    assert_eq!(verified.status, 200, "{}", verified.text);
    assert_eq!(verified.json["status"], "invalid");
    assert_eq!(verified.json["status_reason"], "app_password_retired");
    assert!(verified.json["status_detail"].as_str().unwrap().contains("write:pullrequest:bitbucket"));
}

#[tokio::test]
async fn expiry_is_the_users_to_give_and_shows_in_the_status() {
    let _logs = blackbox::logs::guard();
    let fake = FakeBitbucket::start().await;
    let (api, _aws) = Api::on_moto(test_settings()).await;
    let in_days = |days: i64| (time::OffsetDateTime::now_utc() + time::Duration::days(days)).date().to_string();
    let mut body = json!({"name": "soon", "url": fake.url("cloud"), "username": API_TOKEN_EMAIL, "password": API_TOKEN, "expires_at": in_days(10)});
    let soon = send(&api, Call::post("/connections").json(body.clone())).await;
    assert_eq!((soon.status, &soon.json["status"]), (201, &json!("expiring")), "{}", soon.text);
    body["name"] = json!("later");
    body["expires_at"] = json!(in_days(200));
    let later = send(&api, Call::post("/connections").json(body)).await;
    assert_eq!(later.json["status"], "verified");
    let listed = send(&api, Call::get("/connections")).await;
    let statuses: Vec<&Value> = listed.json["items"].as_array().unwrap().iter().map(|c| &c["status"]).collect();
    assert_eq!(statuses, vec![&json!("expiring"), &json!("verified")]);
    let path = format!("/connections/{}", later.json["id"].as_str().unwrap());
    let moved = send(&api, Call::patch(&path).json(json!({"expires_at": in_days(5)}))).await;
    assert_eq!((moved.status, &moved.json["status"]), (200, &json!("expiring")), "{}", moved.text);
    let cleared = send(&api, Call::patch(&path).json(json!({"expires_at": null}))).await;
    assert_eq!((cleared.status, &cleared.json["status"]), (200, &json!("verified")));
    assert!(cleared.json.get("expires_at").is_none());
}
