//! Using a connection: the import and pull-request pickers browse Bitbucket
//! through it, and the product's workers get its credentials from the
//! credentials function and report what Bitbucket said.

use blackbox::api::{Api, Call, Reply, test_settings};
use blackbox::fake_bitbucket::*;
use serde_json::{Value, json};

async fn add(api: &Api, body: Value) -> String {
    let reply = api.send(Call::post("/connections").user("alice").json(body)).await;
    assert_eq!(reply.status, 201, "{}", reply.text);
    reply.json["id"].as_str().unwrap().to_owned()
}

async fn get(api: &Api, path: String, query: &[(&str, &str)]) -> Reply {
    let mut call = Call::get(path).user("alice");
    for (name, value) in query {
        call = call.query(name, value);
    }
    api.send(call).await
}

fn slugs(reply: &Reply, key: &str) -> Vec<String> {
    reply.json["items"].as_array().unwrap().iter().map(|i| i[key].as_str().unwrap().to_owned()).collect()
}

#[tokio::test]
async fn cloud_pickers_page_with_cursors_and_never_follow_bitbuckets_next_links() {
    let _logs = blackbox::logs::guard();
    let fake = FakeBitbucket::start().await;
    let (api, _aws) = Api::on_moto(test_settings()).await;
    let id = add(
        &api,
        json!({"name": "all", "url": fake.url("cloud"), "username": API_TOKEN_EMAIL, "password": API_TOKEN_ALL_SCOPES}),
    )
    .await;
    let before = fake.requests().len();

    let first = get(&api, format!("/connections/{id}/workspaces"), &[]).await;
    assert_eq!(first.status, 200, "{}", first.text);
    assert_eq!(slugs(&first, "slug"), ["acme", "team-1"]);
    let cursor = first.json["next_cursor"].as_str().unwrap().to_owned();
    assert!(!cursor.contains("evil"), "the cursor is ours, not Bitbucket's next URL");
    let second = get(&api, format!("/connections/{id}/workspaces"), &[("cursor", &cursor)]).await;
    assert_eq!(slugs(&second, "slug"), ["team-2"]);
    assert_eq!(second.json["next_cursor"], Value::Null);
    let calls = &fake.requests()[before..];
    assert_eq!(calls.len(), 2, "one Bitbucket call per page: {calls:?}");
    assert!(calls.iter().all(|r| r.path == "/cloud/2.0/user/workspaces"));

    let repos = get(&api, format!("/connections/{id}/repositories"), &[("workspace", "acme")]).await;
    assert_eq!(repos.status, 200, "{}", repos.text);
    assert_eq!(
        repos.json["items"][0],
        json!({"workspace": "acme", "slug": "api", "name": "API", "clone_url": "https://bitbucket.org/acme/api.git", "default_branch": "main", "can_write": true})
    );
    let filtered = get(&api, format!("/connections/{id}/repositories"), &[("workspace", "acme"), ("q", "inf")]).await;
    assert_eq!(slugs(&filtered, "slug"), ["infra"]);
    let branches = get(&api, format!("/connections/{id}/repositories/acme/api/branches"), &[]).await;
    assert_eq!(branches.status, 200, "{}", branches.text);
    assert_eq!(slugs(&branches, "name"), ["main", "feature/login"]);
    assert_eq!(branches.json["items"][0]["commit"], "4f2a0c9e1b7d3a5f6e8c0b2d4f6a8c0e1b3d5f7a");

    let missing = get(&api, format!("/connections/{id}/repositories"), &[("workspace", "nobody")]).await;
    assert_eq!((missing.status, missing.code()), (404, "bitbucket_not_found"));
    let bad = get(&api, format!("/connections/{id}/repositories"), &[("workspace", "../x")]).await;
    assert_eq!((bad.status, bad.code()), (422, "validation_failed"));
    let forged = get(&api, format!("/connections/{id}/workspaces"), &[("cursor", "aHR0cHM6Ly9ldmlsLmV4YW1wbGU")]).await;
    assert_eq!(forged.code(), "validation_failed");
    assert_eq!(get(&api, format!("/connections/{id}/workspaces"), &[]).await.status, 200);
    let other_user = api.send(Call::get(format!("/connections/{id}/workspaces")).user("bob")).await;
    assert_eq!(other_user.status, 404, "another user's connection is not there");
}

#[tokio::test]
async fn a_scope_the_call_needs_is_named_and_bound_tokens_see_their_resource() {
    let _logs = blackbox::logs::guard();
    let fake = FakeBitbucket::start().await;
    let (api, _aws) = Api::on_moto(test_settings()).await;
    let brainboard = add(
        &api,
        json!({"name": "bb", "url": fake.url("cloud"), "username": API_TOKEN_EMAIL, "password": BRAINBOARD_TOKEN}),
    )
    .await;
    let before = fake.requests().len();
    let refused = get(&api, format!("/connections/{brainboard}/workspaces"), &[]).await;
    assert_eq!((refused.status, refused.code()), (422, "missing_permissions"));
    assert_eq!(refused.json["missing_scopes"], json!(["read:workspace:bitbucket"]));
    assert_eq!(fake.requests().len(), before, "refused before asking Bitbucket");
    let repos = get(&api, format!("/connections/{brainboard}/repositories"), &[("workspace", "acme")]).await;
    assert_eq!(repos.status, 200, "importing works with the four scopes: {}", repos.text);

    let repo_token = add(
        &api,
        json!({"name": "repo", "url": fake.url("cloud"), "password": REPO_ACCESS_TOKEN, "resource": "acme/api"}),
    )
    .await;
    let workspaces = get(&api, format!("/connections/{repo_token}/workspaces"), &[]).await;
    assert_eq!(slugs(&workspaces, "slug"), ["acme"]);
    let repos = get(&api, format!("/connections/{repo_token}/repositories"), &[("workspace", "acme")]).await;
    assert_eq!(slugs(&repos, "slug"), ["api"]);
    let elsewhere = get(&api, format!("/connections/{repo_token}/repositories"), &[("workspace", "other")]).await;
    assert_eq!(elsewhere.json["items"], json!([]));
}

#[tokio::test]
async fn data_center_projects_repositories_and_branches_in_the_same_shape() {
    let _logs = blackbox::logs::guard();
    let fake = FakeBitbucket::start().await;
    let (api, _aws) = Api::on_moto(test_settings()).await;
    let id = add(&api, json!({"name": "dc", "url": fake.url("dc"), "username": DC_USER, "password": DC_TOKEN})).await;
    let projects = get(&api, format!("/connections/{id}/workspaces"), &[]).await;
    assert_eq!(projects.status, 200, "{}", projects.text);
    assert_eq!(projects.json["items"][0], json!({"slug": "OPS", "name": "OPS project"}));
    let repos = get(&api, format!("/connections/{id}/repositories"), &[("workspace", "OPS")]).await;
    assert_eq!(slugs(&repos, "slug"), ["infra", "tools"]);
    assert_eq!(repos.json["items"][0]["clone_url"], "https://git.corp.example/scm/ops/infra.git");
    let next = repos.json["next_cursor"].as_str().unwrap().to_owned();
    let rest = get(&api, format!("/connections/{id}/repositories"), &[("workspace", "OPS"), ("cursor", &next)]).await;
    assert_eq!(slugs(&rest, "slug"), ["legacy"]);
    let branches = get(&api, format!("/connections/{id}/repositories/OPS/infra/branches"), &[]).await;
    assert_eq!(
        branches.json["items"][0],
        json!({"name": "main", "commit": "8d2c1e0f4b6a8c0e1b3d5f7a9c1e3b5d7f9a1c3e", "default": true})
    );
}

#[tokio::test]
async fn a_revoked_token_found_while_browsing_marks_the_connection_invalid() {
    let _logs = blackbox::logs::guard();
    let fake = FakeBitbucket::start().await;
    let (api, _aws) = Api::on_moto(test_settings()).await;
    let id = add(
        &api,
        json!({"name": "all", "url": fake.url("cloud"), "username": API_TOKEN_EMAIL, "password": API_TOKEN_ALL_SCOPES}),
    )
    .await;
    fake.revoke(API_TOKEN_ALL_SCOPES);
    let refused = get(&api, format!("/connections/{id}/repositories"), &[("workspace", "acme")]).await;
    assert_eq!((refused.status, refused.code()), (422, "invalid_credentials"));
    assert!(refused.json["detail"].as_str().unwrap().contains("marked invalid"));
    let stored = get(&api, format!("/connections/{id}"), &[]).await;
    assert_eq!((&stored.json["status"], &stored.json["version"]), (&json!("invalid"), &json!(2)));
}

#[tokio::test]
async fn workers_get_what_git_and_the_api_need_for_each_kind() {
    let _logs = blackbox::logs::guard();
    let fake = FakeBitbucket::start().await;
    let (api, _aws) = Api::on_moto(test_settings()).await;
    let origin = format!("{}/", fake.origin);
    let token = add(
        &api,
        json!({"name": "token", "url": fake.url("cloud"), "username": API_TOKEN_EMAIL, "password": API_TOKEN}),
    )
    .await;
    let request = |id: &str, purpose: &str| json!({"action": "get", "owner": "alice", "connection_id": id, "purpose": purpose, "caller": "pr-worker"});

    let mut git = api.invoke_credentials(request(&token, "git")).await;
    // The report token is checked in the reports' own test; here, that it is there.
    for key in ["report_token", "report_token_expires_at"] {
        assert!(git.as_object_mut().unwrap().remove(key).is_some_and(|v| v.is_string()), "{key}");
    }
    assert_eq!(
        git,
        json!({"ok": true, "purpose": "git", "connection_id": token, "credential_type": "api_token",
               "clone_url_base": origin, "username": "x-bitbucket-api-token-auth", "password": API_TOKEN, "version": 1})
    );
    // "Last used … by pr-worker": on the resource, and not rewritten by the next use within the hour.
    let used = get(&api, format!("/connections/{token}"), &[]).await;
    assert_eq!(
        (&used.json["last_used"]["purpose"], &used.json["last_used"]["caller"]),
        (&json!("git"), &json!("pr-worker"))
    );
    assert_eq!(used.json["version"], 1, "recording a use is not a change of the connection");
    let api_use = api.invoke_credentials(request(&token, "api")).await;
    let again = get(&api, format!("/connections/{token}"), &[]).await;
    assert_eq!(again.json["last_used"], used.json["last_used"], "at most one write an hour");
    let basic = base64_of(&format!("{API_TOKEN_EMAIL}:{API_TOKEN}"));
    assert_eq!(api_use["authorization"], format!("Basic {basic}"));
    assert_eq!(api_use["api_base"], fake.url("cloud"));

    let repo = add(
        &api,
        json!({"name": "repo", "url": fake.url("cloud"), "password": REPO_ACCESS_TOKEN, "resource": "acme/api"}),
    )
    .await;
    let git = api.invoke_credentials(request(&repo, "git")).await;
    assert_eq!((&git["username"], &git["password"]), (&json!("x-token-auth"), &json!(REPO_ACCESS_TOKEN)));
    assert_eq!(
        api.invoke_credentials(request(&repo, "api")).await["authorization"],
        format!("Bearer {REPO_ACCESS_TOKEN}")
    );

    let dc =
        add(&api, json!({"name": "dc", "url": fake.url("dc"), "password": DC_REPO_TOKEN, "resource": "OPS/infra"}))
            .await;
    let git = api.invoke_credentials(request(&dc, "git")).await;
    assert_eq!(git["http_extra_header"], format!("Authorization: Bearer {DC_REPO_TOKEN}"));
    assert_eq!(git["clone_url_base"], format!("{}/scm/", fake.url("dc")));
    assert!(git.get("username").is_none());
    assert_eq!(
        api.invoke_credentials(request(&dc, "api")).await["api_base"],
        format!("{}/rest/api/1.0", fake.url("dc"))
    );

    let audit = blackbox::logs::captured();
    // Logs are captured per process, and tests run in parallel: count this test's connections only.
    let ours = |line: &&str| [&token, &repo, &dc].iter().any(|id| line.contains(id.as_str()));
    let uses: Vec<&str> = audit.lines().filter(|l| l.contains("\"action\":\"use\"")).filter(ours).collect();
    assert_eq!(uses.len(), 6, "one audit line per use");
    assert!(uses.iter().all(|l| l.contains("\"caller\":\"pr-worker\"") && l.contains("\"owner\":\"alice\"")));

    let nobody = api
        .invoke_credentials(json!({"action": "get", "owner": "bob", "connection_id": token, "purpose": "git"}))
        .await;
    assert_eq!(nobody["code"], "not_found", "another owner's connection is not there");
    let malformed = api.invoke_credentials(json!({"action": "get", "owner": "alice"})).await;
    assert_eq!(malformed["code"], "invalid_request");
}

#[tokio::test]
async fn reports_from_use_keep_the_status_true_and_invalid_connections_are_refused() {
    let _logs = blackbox::logs::guard();
    let fake = FakeBitbucket::start().await;
    let (api, _aws) = Api::on_moto(test_settings()).await;
    let id = add(
        &api,
        json!({"name": "token", "url": fake.url("cloud"), "username": API_TOKEN_EMAIL, "password": API_TOKEN}),
    )
    .await;
    let issued =
        api.invoke_credentials(json!({"action": "get", "owner": "alice", "connection_id": id, "purpose": "git"})).await;
    let version = issued["version"].clone();
    let token = issued["report_token"].clone();
    assert!(issued["report_token_expires_at"].is_string(), "{issued}");

    // Anyone else who can invoke the function cannot make the report: the version is
    // a small counter, the token is not.
    let unbound = json!({"action": "report", "owner": "alice", "connection_id": id, "version": version, "outcome": "unauthorized"});
    assert_eq!(api.invoke_credentials(unbound).await["code"], "invalid_request", "a report needs its get's token");
    for forged in ["", "v1.99999999999.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", "guess"] {
        let forgery = json!({"action": "report", "owner": "alice", "connection_id": id, "version": version, "report_token": forged, "outcome": "unauthorized"});
        assert_eq!(api.invoke_credentials(forgery).await["code"], "invalid_report_token", "{forged:?}");
    }
    assert_eq!(get(&api, format!("/connections/{id}"), &[]).await.json["status"], "verified", "nothing recorded");

    let forbidden = json!({"action": "report", "owner": "alice", "connection_id": id, "version": version, "report_token": token, "outcome": "forbidden", "caller": "pr-worker", "detail": "push to a protected branch: 403"});
    let warned = api.invoke_credentials(forbidden).await;
    assert_eq!(
        warned,
        json!({"ok": true, "status": "verified", "recorded": "refused_in_use", "version": 2}),
        "one refused action is not a verdict"
    );
    let stale = json!({"action": "report", "owner": "alice", "connection_id": id, "version": version, "report_token": token, "outcome": "unauthorized", "caller": "pr-worker"});
    assert_eq!(api.invoke_credentials(stale).await["code"], "stale_report", "issued before the last change");
    let again =
        api.invoke_credentials(json!({"action": "get", "owner": "alice", "connection_id": id, "purpose": "git"})).await;
    let report = json!({"action": "report", "owner": "alice", "connection_id": id, "version": again["version"], "report_token": again["report_token"], "outcome": "unauthorized", "caller": "pr-worker' <b>Click https://evil.example</b>", "detail": "push to https://x-token-auth:leaked@bitbucket.org/acme/api.git answered 401"});
    let recorded = api.invoke_credentials(report).await;
    assert_eq!(recorded, json!({"ok": true, "status": "invalid", "recorded": "invalid_credentials", "version": 3}));
    let stored = get(&api, format!("/connections/{id}"), &[]).await;
    assert_eq!(stored.json["status"], "invalid");
    let detail = stored.json["status_detail"].as_str().unwrap();
    assert!(detail.contains("pr-worker") && !detail.contains("leaked"), "{detail}");
    // What the worker wrote is quoted inside a sentence of ours and cannot close its quotes.
    assert!(
        detail.starts_with(
            "Bitbucket refused these credentials when the worker 'pr-worker <b>Click https://evil.example</b>' used them."
        ),
        "{detail}"
    );
    assert!(detail.contains("The worker said: 'push to https://bitbucket.org/acme/api.git answered 401'."), "{detail}");

    let refused =
        api.invoke_credentials(json!({"action": "get", "owner": "alice", "connection_id": id, "purpose": "git"})).await;
    assert_eq!(refused["code"], "connection_invalid");
    assert!(refused.get("password").is_none());

    // The user fixes it; a stale report must not undo that: it is conditioned on the version it read.
    let fixed =
        api.send(Call::patch(format!("/connections/{id}")).user("alice").json(json!({"password": API_TOKEN}))).await;
    assert_eq!((fixed.status, &fixed.json["status"]), (200, &json!("verified")));
    let usable =
        api.invoke_credentials(json!({"action": "get", "owner": "alice", "connection_id": id, "purpose": "git"})).await;
    assert_eq!(usable["ok"], true);

    let soon = add(
        &api,
        json!({"name": "expired", "url": fake.url("cloud"), "username": API_TOKEN_EMAIL, "password": API_TOKEN}),
    )
    .await;
    let owner = connections::domain::Owner::parse("alice").unwrap();
    let conn_id = connections::domain::ConnectionId::parse(&soon).unwrap();
    let previous = api.store.get(&owner, &conn_id).await.unwrap().unwrap();
    let mut past = previous.clone();
    past.version += 1;
    past.expires_at = Some(time::OffsetDateTime::now_utc() - time::Duration::days(1));
    api.store.update(&owner, &previous, &past, None).await.unwrap();
    let expired = api
        .invoke_credentials(json!({"action": "get", "owner": "alice", "connection_id": soon, "purpose": "api"}))
        .await;
    assert_eq!(expired["code"], "connection_expired");
}

fn base64_of(text: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(text)
}

/// A picker page costs one read of the connection, one KMS Decrypt and one Bitbucket
/// call, plus its browse slot (the owner's budget read and written when taken and when
/// given back); against a Bitbucket that answers after 100 ms, that is what the user waits for.
#[tokio::test]
async fn a_page_costs_one_read_one_decrypt_one_bitbucket_call_and_a_slot() {
    let _logs = blackbox::logs::guard();
    let fake = FakeBitbucket::start().await;
    let (api, aws) = Api::on_moto(test_settings()).await;
    let id = add(
        &api,
        json!({"name": "all", "url": fake.url("cloud"), "username": API_TOKEN_EMAIL, "password": API_TOKEN_ALL_SCOPES}),
    )
    .await;
    fake.delay(std::time::Duration::from_millis(100));
    let (calls, before) = (fake.requests().len(), blackbox::emulator::call_counts().await);
    let mut latencies = Vec::new();
    const PAGES: usize = 10;
    for _ in 0..PAGES {
        let started = std::time::Instant::now();
        let page = get(&api, format!("/connections/{id}/repositories"), &[("workspace", "acme")]).await;
        latencies.push(started.elapsed());
        assert_eq!(page.status, 200);
    }
    let after = blackbox::emulator::call_counts().await;
    let delta = |op: &str| after.get(op).copied().unwrap_or(0) - before.get(op).copied().unwrap_or(0);
    assert_eq!(fake.requests().len() - calls, PAGES, "one Bitbucket call per page");
    assert_eq!(delta(&format!("GetItem {}", aws.table)), 3 * PAGES as u64, "the connection and the budget twice");
    assert_eq!(delta(&format!("UpdateItem {}", aws.table)), 2 * PAGES as u64, "the slot taken and given back");
    assert_eq!(delta(&format!("TrentService.Decrypt {}", aws.key_id)), PAGES as u64, "one KMS Decrypt per page");
    latencies.sort();
    let median = latencies[PAGES / 2];
    println!(
        "browse: median {:.1} ms per page with Bitbucket at 100 ms ({:.2}x the Bitbucket floor; min {:.1}, max {:.1} ms); per page 1 GetItem, 1 Decrypt, 1 Bitbucket call",
        median.as_secs_f64() * 1000.0,
        median.as_secs_f64() / 0.1,
        latencies[0].as_secs_f64() * 1000.0,
        latencies[PAGES - 1].as_secs_f64() * 1000.0
    );
}
