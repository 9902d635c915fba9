//! The whole API on DynamoDB + KMS (moto) against the fake Bitbucket.

use aws_sdk_dynamodb::types::AttributeValue;
use aws_sdk_kms::primitives::Blob;
use blackbox::api::{Api, AwsBackend, Call, test_settings};
use blackbox::fake_bitbucket::*;
use blackbox::logs;
use serde_json::json;

async fn setup() -> (Api, AwsBackend, FakeBitbucket) {
    logs::capture();
    let fake = FakeBitbucket::start().await;
    let (api, aws) = Api::on_moto(test_settings()).await;
    (api, aws, fake)
}

fn token_body(fake: &FakeBitbucket, name: &str) -> serde_json::Value {
    json!({"name": name, "url": fake.url("cloud"), "username": API_TOKEN_EMAIL, "password": API_TOKEN})
}

#[tokio::test]
async fn full_lifecycle_add_list_get_rename_rotate_verify_delete() {
    let _logs = blackbox::logs::guard();
    let (api, _aws, fake) = setup().await;
    let mut statuses = Vec::new();

    let created = api
        .send(Call::post("/connections").user("alice").json(json!({
            "name": "Work Bitbucket", "url": fake.url("cloud"), "username": APP_PASSWORD_USER, "password": APP_PASSWORD
        })))
        .await;
    statuses.push(created.status);
    assert_eq!(created.status, 201, "{}", created.text);
    let id = created.json["id"].as_str().unwrap().to_owned();
    assert_eq!(created.header("location"), Some(format!("/connections/{id}").as_str()));
    assert_eq!(created.header("etag"), Some("\"1\""));
    assert_eq!(created.json["provider"], "bitbucket_cloud");
    assert_eq!(created.json["credential_type"], "app_password");
    assert_eq!(created.json["status"], "verified");
    assert_eq!(created.json["account"]["uuid"], JDOE_UUID);
    assert_eq!(created.json["account"]["username"], "jdoe");
    assert!(created.json["scopes"].as_array().unwrap().contains(&json!("pullrequest:write")));
    assert!(created.json.get("password").is_none());

    let listed = api.send(Call::get("/connections").user("alice")).await;
    statuses.push(listed.status);
    assert_eq!(listed.status, 200);
    assert_eq!(listed.json["items"].as_array().unwrap().len(), 1);
    assert_eq!(listed.json["items"][0]["id"], id.as_str());

    let got = api.send(Call::get(format!("/connections/{id}")).user("alice")).await;
    statuses.push(got.status);
    assert_eq!(got.status, 200);
    assert_eq!(got.json, created.json);
    assert_eq!(got.header("etag"), Some("\"1\""));

    let renamed = api
        .send(
            Call::patch(format!("/connections/{id}"))
                .user("alice")
                .header("if-match", "\"1\"")
                .json(json!({"name": "Personal"})),
        )
        .await;
    statuses.push(renamed.status);
    assert_eq!(renamed.status, 200, "{}", renamed.text);
    assert_eq!(renamed.json["name"], "Personal");
    assert_eq!(renamed.json["version"], 2);
    assert_eq!(renamed.header("etag"), Some("\"2\""));

    // Rotating to an API token (email + token) re-verifies; same Bitbucket account.
    let rotated = api
        .send(Call::patch(format!("/connections/{id}")).user("alice").header("if-match", "\"2\"").json(json!({
            "username": API_TOKEN_EMAIL, "password": API_TOKEN
        })))
        .await;
    statuses.push(rotated.status);
    assert_eq!(rotated.status, 200, "{}", rotated.text);
    assert_eq!(rotated.json["credential_type"], "api_token");
    assert_eq!(rotated.json["version"], 3);
    let user_calls = fake.requests().iter().filter(|r| r.path == "/cloud/2.0/user").count();
    assert_eq!(user_calls, 2, "add and rotate each verify once; a rename does not");

    let verified = api.send(Call::post(format!("/connections/{id}/verify")).user("alice")).await;
    statuses.push(verified.status);
    assert_eq!(verified.status, 200, "{}", verified.text);
    assert_eq!(verified.json["status"], "verified");
    assert_eq!(verified.json["version"], 4);

    let deleted = api.send(Call::delete(format!("/connections/{id}")).user("alice")).await;
    statuses.push(deleted.status);
    assert_eq!(deleted.status, 204);

    let gone = api.send(Call::get(format!("/connections/{id}")).user("alice")).await;
    statuses.push(gone.status);
    assert_eq!(gone.status, 404);
    assert_eq!(gone.code(), "not_found");
    assert_eq!(statuses, vec![201, 200, 200, 200, 200, 200, 204, 404]);

    // The name is free again once its connection is gone.
    let again = api.send(Call::post("/connections").user("alice").json(token_body(&fake, "personal"))).await;
    assert_eq!(again.status, 201, "{}", again.text);
}

#[tokio::test]
async fn names_are_unique_per_owner_ignoring_case() {
    let _logs = blackbox::logs::guard();
    let (api, _aws, fake) = setup().await;
    let first = api.send(Call::post("/connections").user("alice").json(token_body(&fake, "Work"))).await;
    assert_eq!(first.status, 201);
    let duplicate = api.send(Call::post("/connections").user("alice").json(token_body(&fake, "work"))).await;
    assert_eq!(duplicate.status, 409);
    assert_eq!(duplicate.code(), "duplicate_name");
    assert_eq!(duplicate.json["errors"][0]["field"], "name");
    // Another owner may use the same name.
    let other = api.send(Call::post("/connections").user("bob").json(token_body(&fake, "work"))).await;
    assert_eq!(other.status, 201);

    // Renaming onto a taken name is refused, and the old name stays reserved.
    let second = api.send(Call::post("/connections").user("alice").json(token_body(&fake, "Home"))).await;
    let id = second.json["id"].as_str().unwrap();
    let clash = api.send(Call::patch(format!("/connections/{id}")).user("alice").json(json!({"name": "WORK"}))).await;
    assert_eq!(clash.status, 409);
    assert_eq!(clash.code(), "duplicate_name");
    let home_again = api.send(Call::post("/connections").user("alice").json(token_body(&fake, "home"))).await;
    assert_eq!(home_again.status, 409);
    let listed = api.send(Call::get("/connections").user("alice")).await;
    assert_eq!(listed.json["items"].as_array().unwrap().len(), 2);
}

#[tokio::test]
async fn stale_if_match_is_refused_and_changes_nothing() {
    let _logs = blackbox::logs::guard();
    let (api, _aws, fake) = setup().await;
    let created = api.send(Call::post("/connections").user("alice").json(token_body(&fake, "work"))).await;
    let id = created.json["id"].as_str().unwrap();
    let first = api
        .send(
            Call::patch(format!("/connections/{id}"))
                .user("alice")
                .header("if-match", "\"1\"")
                .json(json!({"name": "a"})),
        )
        .await;
    assert_eq!(first.status, 200);
    let stale = api
        .send(
            Call::patch(format!("/connections/{id}"))
                .user("alice")
                .header("if-match", "\"1\"")
                .json(json!({"name": "b"})),
        )
        .await;
    assert_eq!(stale.status, 412);
    assert_eq!(stale.code(), "version_mismatch");
    let stale_delete =
        api.send(Call::delete(format!("/connections/{id}")).user("alice").header("if-match", "\"1\"")).await;
    assert_eq!(stale_delete.status, 412);
    let got = api.send(Call::get(format!("/connections/{id}")).user("alice")).await;
    assert_eq!(got.json["name"], "a");
    assert_eq!(got.json["version"], 2);
}

#[tokio::test]
async fn another_owners_connection_is_indistinguishable_from_a_missing_one() {
    let _logs = blackbox::logs::guard();
    let (api, _aws, fake) = setup().await;
    let created = api.send(Call::post("/connections").user("alice").json(token_body(&fake, "work"))).await;
    let id = created.json["id"].as_str().unwrap();
    let missing = "01934a6e-0000-7000-8000-000000000000";
    for target in [id, missing] {
        let calls = [
            Call::get(format!("/connections/{target}")),
            Call::patch(format!("/connections/{target}")).json(json!({"name": "stolen"})),
            Call::post(format!("/connections/{target}/verify")),
            Call::delete(format!("/connections/{target}")),
        ];
        for call in calls {
            let reply = api.send(call.user("mallory")).await;
            assert_eq!(reply.status, 404, "{}", reply.text);
            assert_eq!(reply.json["detail"], "No connection with this id exists for you.");
        }
    }
    let mallory = api.send(Call::get("/connections").user("mallory")).await;
    assert_eq!(mallory.json["items"], json!([]));
    let alice = api.send(Call::get(format!("/connections/{id}")).user("alice")).await;
    assert_eq!(alice.json["name"], "work", "alice's connection is untouched");
}

#[tokio::test]
async fn without_a_principal_every_route_is_401() {
    let _logs = blackbox::logs::guard();
    let (api, _aws, fake) = setup().await;
    let id = "01934a6e-0000-7000-8000-000000000000";
    let calls = [
        Call::post("/connections").json(token_body(&fake, "x")),
        Call::get("/connections"),
        Call::get(format!("/connections/{id}")),
        Call::patch(format!("/connections/{id}")).json(json!({"name": "y"})),
        Call::post(format!("/connections/{id}/verify")),
        Call::delete(format!("/connections/{id}")),
    ];
    for call in calls {
        // A development header is not an identity when deployed.
        let reply = api.send(call.header("x-dev-user", "alice")).await;
        assert_eq!(reply.status, 401);
        assert_eq!(reply.code(), "unauthenticated");
        assert_eq!(reply.header("content-type"), Some("application/problem+json"));
    }
    assert!(fake.requests().is_empty(), "nothing reaches Bitbucket without a principal");
}

#[tokio::test]
async fn the_table_holds_an_envelope_bound_to_owner_id_and_origin() {
    let _logs = blackbox::logs::guard();
    let (api, aws, fake) = setup().await;
    let created = api.send(Call::post("/connections").user("alice").json(token_body(&fake, "work"))).await;
    let id = created.json["id"].as_str().unwrap().to_owned();

    let scan = aws.dynamodb.scan().table_name(&aws.table).send().await.unwrap();
    let items = scan.items();
    let dump = format!("{items:?}");
    assert!(!dump.contains(API_TOKEN), "the password must not be stored in clear");
    let item = items.iter().find(|i| i.get("sk") == Some(&AttributeValue::S(format!("CONN#{id}")))).unwrap();
    assert_eq!(item["pk"], AttributeValue::S("USER#alice".into()));
    let ciphertext = item["secret"].as_b().unwrap().clone();
    assert!(!String::from_utf8_lossy(ciphertext.as_ref()).contains(API_TOKEN));

    // An envelope: 2, the encrypted data key's length (u16), the key KMS encrypted, then
    // the secret under AES-256-GCM. KMS binds the data key to owner, id and origin.
    let bytes = ciphertext.as_ref();
    assert_eq!(bytes[0], 2, "the envelope format");
    let length = usize::from(u16::from_be_bytes([bytes[1], bytes[2]]));
    let data_key = bytes[3..3 + length].to_vec();
    let origin = fake.origin.clone();
    let decrypt = |owner: &str, connection: &str, origin: &str| {
        aws.kms
            .decrypt()
            .ciphertext_blob(Blob::new(data_key.clone()))
            .encryption_context("owner", owner)
            .encryption_context("connection_id", connection)
            .encryption_context("origin", origin)
            .send()
    };
    let opened = decrypt("alice", &id, &origin).await.expect("opens under its own context");
    assert_eq!(opened.plaintext().unwrap().as_ref().len(), 32, "an AES-256 data key");
    assert!(decrypt("mallory", &id, &origin).await.is_err(), "another owner's context must not open it");
    assert!(
        decrypt("alice", "01934a6e-0000-7000-8000-000000000000", &origin).await.is_err(),
        "another id's context must not open it"
    );
    assert!(decrypt("alice", &id, "https://evil.example:443").await.is_err(), "another origin must not open it");
}

#[tokio::test]
async fn failed_verification_stores_nothing() {
    let _logs = blackbox::logs::guard();
    let (api, aws, fake) = setup().await;
    let refused = api
        .send(Call::post("/connections").user("alice").json(json!({
            "name": "work", "url": fake.url("cloud"), "username": API_TOKEN_EMAIL, "password": "ATATT-wrong"
        })))
        .await;
    assert_eq!(refused.status, 422);
    assert_eq!(refused.code(), "invalid_credentials");
    let scan = aws.dynamodb.scan().table_name(&aws.table).send().await.unwrap();
    let written: Vec<&str> = scan.items().iter().filter_map(|i| i.get("sk")?.as_s().ok().map(String::as_str)).collect();
    assert!(
        written.iter().all(|sk| sk.starts_with("RATE#")),
        "no connection, name reservation or counter was written, only the verification count: {written:?}"
    );
}

#[tokio::test]
async fn lists_page_with_opaque_cursors_in_creation_order() {
    let _logs = blackbox::logs::guard();
    let (api, _aws, fake) = setup().await;
    let mut ids = Vec::new();
    for n in 0..5 {
        let created =
            api.send(Call::post("/connections").user("alice").json(token_body(&fake, &format!("c{n}")))).await;
        assert_eq!(created.status, 201);
        ids.push(created.json["id"].as_str().unwrap().to_owned());
    }
    api.send(Call::post("/connections").user("bob").json(token_body(&fake, "bob's"))).await;

    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    for _ in 0..5 {
        let mut call = Call::get("/connections").user("alice").query("limit", "2");
        if let Some(c) = &cursor {
            call = call.query("cursor", c);
        }
        let page = api.send(call).await;
        assert_eq!(page.status, 200, "{}", page.text);
        seen.extend(page.json["items"].as_array().unwrap().iter().map(|i| i["id"].as_str().unwrap().to_owned()));
        match page.json["next_cursor"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None => break,
        }
    }
    assert_eq!(seen, ids);

    let bad = api.send(Call::get("/connections").user("alice").query("cursor", "not-a-cursor")).await;
    assert_eq!(bad.status, 422);
    assert_eq!(bad.json["errors"][0]["field"], "cursor");
}

#[tokio::test]
async fn reverify_records_invalid_and_keeps_the_data() {
    let _logs = blackbox::logs::guard();
    let (api, _aws, fake) = setup().await;
    let created = api.send(Call::post("/connections").user("alice").json(token_body(&fake, "work"))).await;
    let id = created.json["id"].as_str().unwrap();
    fake.revoke(API_TOKEN);
    let verified = api.send(Call::post(format!("/connections/{id}/verify")).user("alice")).await;
    assert_eq!(verified.status, 200, "{}", verified.text);
    assert_eq!(verified.json["status"], "invalid");
    assert_eq!(verified.json["status_reason"], "invalid_credentials");
    assert!(verified.json["status_detail"].as_str().unwrap().contains("API token"));
    let listed = api.send(Call::get("/connections").user("alice")).await;
    assert_eq!(listed.json["items"][0]["status"], "invalid");
    assert_eq!(listed.json["items"][0]["name"], "work");

    // A new token brings it back to verified.
    let fixed = api
        .send(Call::patch(format!("/connections/{id}")).user("alice").json(json!({"password": API_TOKEN_WRITE_ONLY})))
        .await;
    assert_eq!(fixed.status, 422, "a token without read scopes is still refused: {}", fixed.text);
    assert_eq!(fixed.code(), "missing_permissions");
}

#[tokio::test]
async fn switching_bitbucket_accounts_needs_confirmation() {
    let _logs = blackbox::logs::guard();
    let (api, _aws, fake) = setup().await;
    let created = api.send(Call::post("/connections").user("alice").json(token_body(&fake, "work"))).await;
    let id = created.json["id"].as_str().unwrap();
    let switch = json!({"username": OTHER_EMAIL, "password": OTHER_TOKEN});
    let refused = api.send(Call::patch(format!("/connections/{id}")).user("alice").json(switch.clone())).await;
    assert_eq!(refused.status, 422);
    assert_eq!(refused.code(), "account_mismatch");
    let mut confirmed = switch;
    confirmed["confirm_account_change"] = json!(true);
    let switched = api.send(Call::patch(format!("/connections/{id}")).user("alice").json(confirmed)).await;
    assert_eq!(switched.status, 200, "{}", switched.text);
    assert_eq!(switched.json["account"]["uuid"], OTHER_UUID);
}

#[tokio::test]
async fn secrets_never_reach_responses_or_logs() {
    let _logs = blackbox::logs::guard();
    let (api, _aws, fake) = setup().await;
    let mut replies = Vec::new();
    replies.push(api.send(Call::post("/connections").user("alice").json(token_body(&fake, "work"))).await);
    let id = replies[0].json["id"].as_str().unwrap().to_owned();
    replies.push(api.send(Call::get(format!("/connections/{id}")).user("alice")).await);
    replies.push(api.send(Call::get("/connections").user("alice")).await);
    replies.push(
        api.send(Call::patch(format!("/connections/{id}")).user("alice").json(json!({"password": API_TOKEN}))).await,
    );
    replies.push(api.send(Call::post(format!("/connections/{id}/verify")).user("alice")).await);
    // Failures echo nothing of what was sent either.
    let wrong = "ATATT-definitely-wrong-secret-123";
    replies.push(
        api.send(Call::post("/connections").user("alice").json(json!({
            "name": "x", "url": fake.url("cloud"), "username": API_TOKEN_EMAIL, "password": wrong
        })))
        .await,
    );
    replies.push(
        api.send(
            Call::post("/connections")
                .user("alice")
                .raw_body("application/json", format!("{{\"password\": \"{wrong}\"").into_bytes()),
        )
        .await,
    );
    replies.push(
        api.send(Call::post("/connections").user("alice").json(json!({"name": 1, "password": wrong, "bogus": wrong})))
            .await,
    );
    replies.push(api.send(Call::delete(format!("/connections/{id}")).user("alice")).await);
    for reply in &replies {
        for secret in [API_TOKEN, wrong] {
            assert!(!reply.text.contains(secret), "response leaks a secret: {}", reply.text);
            assert!(!format!("{:?}", reply.headers).contains(secret));
        }
    }
    let logs = logs::captured();
    let audit: Vec<serde_json::Value> = logs
        .lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .filter(|line| line["fields"]["audit"] == true && line["fields"]["connection_id"] == id.as_str())
        .collect();
    let actions: Vec<(&str, &str)> = audit
        .iter()
        .map(|line| (line["fields"]["action"].as_str().unwrap(), line["fields"]["outcome"].as_str().unwrap()))
        .collect();
    assert_eq!(
        actions,
        vec![("create", "created"), ("update", "updated"), ("verify", "verified"), ("delete", "deleted")]
    );
    for line in &audit {
        assert_eq!(line["fields"]["owner"], "alice");
        assert_eq!(line["fields"]["request_id"], "req-test-1");
    }
    for secret in [API_TOKEN, wrong, APP_PASSWORD] {
        assert!(!logs.contains(secret), "a log line leaks a secret");
    }
}
