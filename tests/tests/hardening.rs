//! What an attacker's review found, each pinned by a test that failed before
//! its fix: secrets follow no new origin, Bitbucket must prove itself, its
//! answers are capped, one owner cannot starve others, writes hold under
//! DynamoDB's transaction conflicts, and local-only switches stay local.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use aws_sdk_dynamodb::types::AttributeValue;
use blackbox::api::{Api, Call, Reply, test_settings};
use blackbox::fake_bitbucket::*;
use connections::domain::Owner;
use connections::http::Identity;
use connections::seal::{KmsSealer, SealContext, SealError, Sealed, Sealer};
use connections::secret::Secret;
use connections::store::{DynamoStore, EmbeddedStore, RateLimits};
use serde_json::{Value, json};

fn token(fake: &FakeBitbucket, name: &str) -> Value {
    json!({"name": name, "url": fake.url("cloud"), "username": API_TOKEN_EMAIL, "password": API_TOKEN})
}

fn path_of(reply: &Reply) -> String {
    format!("/connections/{}", reply.json["id"].as_str().unwrap_or_default())
}

#[tokio::test]
async fn a_stored_secret_never_goes_to_a_new_origin() {
    let _logs = blackbox::logs::guard();
    let home = FakeBitbucket::start().await;
    let attacker = FakeBitbucket::start().await;
    let (api, _aws) = Api::on_moto(test_settings()).await;
    let created = api.send(Call::post("/connections").user("alice").json(token(&home, "work"))).await;
    assert_eq!(created.status, 201, "{}", created.text);
    let path = path_of(&created);

    let moved = api.send(Call::patch(&path).user("alice").json(json!({"url": attacker.url("cloud")}))).await;
    assert_eq!((moved.status, moved.code()), (422, "secret_required"), "{}", moved.text);
    assert_eq!(moved.json["errors"][0]["field"], "password");
    let verified = api.send(Call::post(format!("{path}/verify")).user("alice")).await;
    assert_eq!(verified.status, 200);
    assert_eq!(api.send(Call::get(&path).user("alice")).await.json["url"], home.url("cloud"), "the URL did not change");
    assert!(attacker.requests().is_empty(), "the other server saw: {:?}", attacker.requests());

    // With the secret typed again, moving is the user's informed choice.
    let with_secret = api
        .send(Call::patch(&path).user("alice").json(json!({"url": attacker.url("cloud"), "password": API_TOKEN})))
        .await;
    assert_eq!(with_secret.status, 200, "{}", with_secret.text);
}

/// Rule zero at the seal: anything that can write the table (a migration, an operator
/// script, a compromised role) rewrites only `url`; every use opens the secret for the
/// origin it is about to call, so KMS refuses and the other server hears nothing.
#[tokio::test]
async fn a_url_rewritten_in_the_table_opens_no_secret() {
    let _logs = blackbox::logs::guard();
    let home = FakeBitbucket::start().await;
    let attacker = FakeBitbucket::start().await;
    let (api, aws) = Api::on_moto(test_settings()).await;
    let created = api.send(Call::post("/connections").user("alice").json(token(&home, "work"))).await;
    assert_eq!(created.status, 201, "{}", created.text);
    let id = created.json["id"].as_str().unwrap().to_owned();
    aws.dynamodb
        .update_item()
        .table_name(&aws.table)
        .key("pk", AttributeValue::S("USER#alice".into()))
        .key("sk", AttributeValue::S(format!("CONN#{id}")))
        .update_expression("SET #url = :url")
        .expression_attribute_names("#url", "url")
        .expression_attribute_values(":url", AttributeValue::S(attacker.url("cloud")))
        .send()
        .await
        .unwrap();
    let path = path_of(&created);

    let verified = api.send(Call::post(format!("{path}/verify")).user("alice")).await;
    assert_eq!((verified.status, verified.code()), (409, "secret_unreadable"), "{}", verified.text);
    let edited = api.send(Call::patch(&path).user("alice").json(json!({"username": OTHER_EMAIL}))).await;
    assert_eq!((edited.status, edited.code()), (409, "secret_unreadable"), "{}", edited.text);
    let browsed = api.send(Call::get(format!("{path}/workspaces")).user("alice")).await;
    assert_eq!((browsed.status, browsed.code()), (409, "secret_unreadable"), "{}", browsed.text);
    for purpose in ["git", "api"] {
        let get = json!({"action": "get", "owner": "alice", "connection_id": id, "purpose": purpose});
        let answer = api.invoke_credentials(get).await;
        assert_eq!(answer["code"], "secret_unreadable", "{purpose}: {answer}");
        assert!(answer.get("api_base").is_none() && answer.get("password").is_none(), "{answer}");
    }
    assert!(attacker.requests().is_empty(), "the other server saw: {:?}", attacker.requests());
}

#[tokio::test]
async fn a_server_must_prove_it_is_bitbucket() {
    let _logs = blackbox::logs::guard();
    let fake = FakeBitbucket::start().await;
    let dir = tempfile::tempdir().unwrap();
    let api = Api::embedded(dir.path(), test_settings());
    for (behaviour, why) in [("impostor", "scopes"), ("anonymous", "account")] {
        let body = json!({"name": "x", "url": fake.url(behaviour), "username": API_TOKEN_EMAIL, "password": API_TOKEN});
        let reply = api.send(Call::post("/connections").user("alice").json(body)).await;
        assert_eq!((reply.status, reply.code()), (422, "not_bitbucket"), "{behaviour}: {}", reply.text);
        assert!(reply.json["detail"].as_str().unwrap().contains(why), "{behaviour}: {}", reply.text);
    }
}

#[tokio::test]
async fn what_bitbucket_sends_back_is_capped_and_cleaned() {
    let _logs = blackbox::logs::guard();
    let fake = FakeBitbucket::start().await;
    let dir = tempfile::tempdir().unwrap();
    let api = Api::embedded(dir.path(), test_settings());
    let body = json!({"name": "x", "url": fake.url("bloated"), "username": API_TOKEN_EMAIL, "password": API_TOKEN});
    let reply = api.send(Call::post("/connections").user("alice").json(body)).await;
    assert_eq!(reply.status, 201, "{}", &reply.text[..reply.text.len().min(500)]);
    let name = reply.json["account"]["display_name"].as_str().unwrap();
    assert!(name.chars().count() <= 200, "{} characters", name.chars().count());
    assert!(!name.contains('\u{202e}'));
    assert!(reply.json["scopes"].as_array().unwrap().len() <= 64);
    assert!(reply.text.len() < 8 * 1024, "a connection stays small: {} bytes", reply.text.len());
}

#[tokio::test]
async fn one_owner_cannot_keep_verification_busy_for_everyone() {
    let _logs = blackbox::logs::guard();
    let fake = FakeBitbucket::start().await;
    let mut settings = test_settings();
    settings.verifications_per_minute = 3;
    let (api, _aws) = Api::on_moto(settings).await;
    let wrong = json!({"name": "x", "url": fake.url("cloud"), "username": API_TOKEN_EMAIL, "password": "ATATT-wrong"});
    // No need to keep clear of a minute's boundary: the limit holds over any 60 seconds.
    for _ in 0..3 {
        let refused = api.send(Call::post("/connections").user("mallory").json(wrong.clone())).await;
        assert_eq!(refused.code(), "invalid_credentials");
    }
    let limited = api.send(Call::post("/connections").user("mallory").json(wrong.clone())).await;
    assert_eq!((limited.status, limited.code()), (429, "too_many_verifications"), "{}", limited.text);
    let wait: u64 = limited.header("retry-after").unwrap().parse().unwrap();
    assert!((1..=60).contains(&wait), "{wait}");
    assert_eq!(fake.requests().len(), 3, "the fourth check never reached Bitbucket");
    assert_eq!(api.send(Call::get("/connections").user("mallory")).await.status, 200, "listing is not limited");
    let other = api.send(Call::post("/connections").user("alice").json(token(&fake, "work"))).await;
    assert_eq!(other.status, 201, "other owners are not affected");
}

#[tokio::test]
async fn a_slow_server_is_given_one_deadline_for_the_whole_check() {
    let _logs = blackbox::logs::guard();
    let fake = FakeBitbucket::start().await;
    let mut settings = test_settings();
    settings.bitbucket.request_timeout = Duration::from_secs(20);
    settings.bitbucket.deadline = Duration::from_millis(800);
    let dir = tempfile::tempdir().unwrap();
    let api = Api::embedded(dir.path(), settings);
    let started = Instant::now();
    let body = json!({"name": "x", "url": fake.url("slow"), "username": API_TOKEN_EMAIL, "password": API_TOKEN});
    let reply = api.send(Call::post("/connections").user("alice").json(body)).await;
    assert_eq!((reply.status, reply.code()), (504, "bitbucket_timeout"));
    assert!(started.elapsed() < Duration::from_secs(3), "{:?}", started.elapsed());
}

/// The real KMS sealer on the emulator, counting the calls that reach it.
struct Counted {
    inner: KmsSealer,
    seals: AtomicUsize,
}

#[async_trait]
impl Sealer for Counted {
    async fn seal(&self, secret: &Secret, context: SealContext<'_>) -> Result<Sealed, SealError> {
        self.seals.fetch_add(1, Ordering::SeqCst);
        self.inner.seal(secret, context).await
    }
    async fn open(&self, sealed: &Sealed, context: SealContext<'_>) -> Result<Secret, SealError> {
        self.inner.open(sealed, context).await
    }
}

#[tokio::test]
async fn input_refused_by_static_checks_costs_no_kms_call() {
    let _logs = blackbox::logs::guard();
    let (_, aws) = Api::on_moto(test_settings()).await;
    let sealer =
        Arc::new(Counted { inner: KmsSealer::new(aws.kms.clone(), aws.key_id.clone()), seals: AtomicUsize::new(0) });
    let store = Arc::new(DynamoStore::new(aws.dynamodb.clone(), aws.table.clone()));
    let api = Api::new(store, sealer.clone(), test_settings());
    for (url, code) in [
        ("https://10.0.0.1/2.0", "url_not_allowed"),
        ("http://example.com/2.0", "url_not_allowed"),
        ("https://[::ffff:169.254.169.254]/2.0", "url_not_allowed"),
    ] {
        let body = json!({"name": "x", "url": url, "username": API_TOKEN_EMAIL, "password": API_TOKEN});
        let reply = api.send(Call::post("/connections").user("alice").json(body)).await;
        assert_eq!(reply.code(), code, "{url}");
    }
    let body =
        json!({"name": "x", "username": "jdoe@example.com", "password": API_TOKEN, "credential_type": "app_password"});
    assert_eq!(api.send(Call::post("/connections").user("alice").json(body)).await.code(), "username_is_email");
    assert_eq!(sealer.seals.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn a_ciphertext_that_no_longer_opens_asks_for_the_secret_again() {
    let _logs = blackbox::logs::guard();
    let fake = FakeBitbucket::start().await;
    let (api, aws) = Api::on_moto(test_settings()).await;
    let created = api.send(Call::post("/connections").user("alice").json(token(&fake, "work"))).await;
    let other = api.send(Call::post("/connections").user("alice").json(token(&fake, "home"))).await;
    let id = created.json["id"].as_str().unwrap().to_owned();
    // A ciphertext bound to another connection (as after a bad restore or copy) no longer opens here.
    use aws_sdk_dynamodb::types::AttributeValue;
    let key =
        |id: &str| [("pk", AttributeValue::S("USER#alice".into())), ("sk", AttributeValue::S(format!("CONN#{id}")))];
    let mut read = aws.dynamodb.get_item().table_name(&aws.table);
    for (name, value) in key(other.json["id"].as_str().unwrap()) {
        read = read.key(name, value);
    }
    let foreign = read.send().await.unwrap().item.unwrap().remove("secret").unwrap();
    let mut write = aws.dynamodb.update_item().table_name(&aws.table);
    for (name, value) in key(&id) {
        write = write.key(name, value);
    }
    write
        .update_expression("SET secret = :foreign")
        .expression_attribute_values(":foreign", foreign)
        .send()
        .await
        .unwrap();
    let reply = api.send(Call::post(format!("/connections/{id}/verify")).user("alice")).await;
    assert_eq!((reply.status, reply.code()), (409, "secret_unreadable"), "{}", reply.text);
    assert_eq!(reply.header("retry-after"), None, "waiting will not help");
    assert_eq!(reply.json["errors"][0]["field"], "password");
    let repaired =
        api.send(Call::patch(format!("/connections/{id}")).user("alice").json(json!({"password": API_TOKEN}))).await;
    assert_eq!(repaired.status, 200, "{}", repaired.text);
}

async fn race(api: &Arc<Api>, calls: Vec<Call>) -> Vec<u16> {
    let tasks: Vec<_> = calls
        .into_iter()
        .map(|call| {
            let api = api.clone();
            tokio::spawn(async move { api.send(call).await.status })
        })
        .collect();
    let mut statuses = Vec::new();
    for task in tasks {
        statuses.push(task.await.unwrap());
    }
    statuses.sort();
    statuses
}

/// The emulator in `scripts/test` cancels transactions that touch an item
/// another transaction holds, as DynamoDB does: these races only pass because
/// conflicts are retried.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn parallel_writes_of_one_owner_survive_transaction_conflicts() {
    let _logs = blackbox::logs::guard();
    let fake = FakeBitbucket::start().await;
    let (api, _aws) = Api::on_moto(test_settings()).await;
    let api = Arc::new(api);

    let different =
        (0..10).map(|i| Call::post("/connections").user("alice").json(token(&fake, &format!("c{i}")))).collect();
    let statuses = race(&api, different).await;
    assert_eq!(statuses, vec![201; 10], "10 different names");

    let same = (0..10).map(|_| Call::post("/connections").user("bob").json(token(&fake, "same"))).collect();
    let statuses = race(&api, same).await;
    let mut expected = vec![201];
    expected.extend([409; 9]);
    assert_eq!(statuses, expected, "10 adds of one name");

    let listed = api.send(Call::get("/connections").user("alice")).await;
    let path = format!("/connections/{}", listed.json["items"][0]["id"].as_str().unwrap());
    let patches = (0..10)
        .map(|i| {
            Call::patch(&path).user("alice").header("if-match", "\"1\"").json(json!({"name": format!("renamed {i}")}))
        })
        .collect();
    let statuses = race(&api, patches).await;
    let mut expected = vec![200];
    expected.extend([412; 9]);
    assert_eq!(statuses, expected, "10 edits with one If-Match");
    println!(
        "races under emulated conflicts: 10 different names -> 10 x 201; one name -> 1 x 201 + 9 x 409; one If-Match -> 1 x 200 + 9 x 412; 0 x 5xx"
    );
}

#[tokio::test]
async fn the_development_identity_is_honoured_only_from_loopback() {
    let dir = tempfile::tempdir().unwrap();
    let mut settings = test_settings();
    settings.identity = Identity::LocalDevelopment;
    let api = Api::embedded(dir.path(), settings);
    let remote = api.send(Call::get("/connections").header("x-dev-user", "alice")).await;
    assert_eq!((remote.status, remote.code()), (401, "unauthenticated"));
    let local = api.send(Call::get("/connections").header("x-dev-user", "alice").from_ip("127.0.0.1")).await;
    assert_eq!(local.status, 200);
    let v6 = api.send(Call::get("/connections").from_ip("::1")).await;
    assert_eq!(v6.status, 200);
}

#[tokio::test]
async fn names_are_one_name_whatever_their_case_or_composition() {
    let _logs = blackbox::logs::guard();
    let fake = FakeBitbucket::start().await;
    let dir = tempfile::tempdir().unwrap();
    let api = Api::embedded(dir.path(), test_settings());
    assert_eq!(api.send(Call::post("/connections").user("alice").json(token(&fake, "Straße"))).await.status, 201);
    let twin = api.send(Call::post("/connections").user("alice").json(token(&fake, "STRASSE"))).await;
    assert_eq!((twin.status, twin.code()), (409, "duplicate_name"));
    let hidden = api.send(Call::post("/connections").user("alice").json(token(&fake, "work\u{202e}"))).await;
    assert_eq!((hidden.status, hidden.code()), (422, "validation_failed"));
}

#[test]
fn the_local_store_is_private_and_opens_from_many_processes_at_once() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let db = data.join("connections.sqlite3");
    let openers: Vec<_> = (0..8)
        .map(|_| {
            let db = db.clone();
            std::thread::spawn(move || EmbeddedStore::open(&db).map(|_| ()))
        })
        .collect();
    for opener in openers {
        opener.join().unwrap().expect("every opener succeeds: no 'database is locked'");
    }
    let store = EmbeddedStore::open(&db).unwrap();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(store.count_verification(&Owner::parse("a").unwrap(), 5, 0)).unwrap();
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&data), 0o700);
    for file in std::fs::read_dir(&data).unwrap() {
        let path = file.unwrap().path();
        assert_eq!(mode(&path), 0o600, "{}", path.display());
    }
}

/// RFC 9110 §13.1.1 and §13.2.2: existence first, then strong comparison
/// against every listed tag; `*` matches any current version.
#[tokio::test]
async fn conditional_requests_follow_rfc_9110() {
    let _logs = blackbox::logs::guard();
    let fake = FakeBitbucket::start().await;
    let (api, _aws) = Api::on_moto(test_settings()).await;
    let missing = "/connections/01934a6e-0000-7000-8000-000000000000";
    let mut table = Vec::new();
    for tag in ["\"abc\"", "\"1\"", "", "*", "W/\"1\""] {
        let deleted = api.send(Call::delete(missing).user("alice").header("if-match", tag)).await;
        let patched =
            api.send(Call::patch(missing).user("alice").header("if-match", tag).json(json!({"name": "n"}))).await;
        assert_eq!((deleted.status, patched.status), (404, 404), "If-Match {tag:?} on a missing connection");
        table.push(format!("{tag:>8} | missing  | DELETE 404, PATCH 404"));
    }
    let created = api.send(Call::post("/connections").user("alice").json(token(&fake, "work"))).await;
    let path = path_of(&created);
    let rename =
        |tag: &str, name: &str| Call::patch(&path).user("alice").header("if-match", tag).json(json!({"name": name}));
    for (tag, expected) in [("W/\"1\"", 412), ("\"2\", \"3\"", 412), ("\"abc\"", 412), ("", 412), ("\"3\", \"1\"", 200)]
    {
        let reply = api.send(rename(tag, "renamed")).await;
        assert_eq!(reply.status, expected, "If-Match {tag:?} on version 1: {}", reply.text);
        table.push(format!("{tag:>8} | version 1 | PATCH {expected}"));
    }
    assert_eq!(api.send(rename("*", "again")).await.status, 200);
    table.push(format!("{:>8} | version 2 | PATCH 200", "*"));
    let stale = api.send(Call::delete(&path).user("alice").header("if-match", "\"1\"")).await;
    assert_eq!((stale.status, stale.code()), (412, "version_mismatch"));
    let listed = api.send(Call::delete(&path).user("alice").header("if-match", "\"9\", \"3\"")).await;
    assert_eq!(listed.status, 204);
    table.push("\"9\", \"3\" | version 3 | DELETE 204".into());
    println!("If-Match | resource | status\n{}", table.join("\n"));
}

#[tokio::test]
async fn an_idempotent_create_replays_its_201_even_after_the_connection_is_gone() {
    let _logs = blackbox::logs::guard();
    let fake = FakeBitbucket::start().await;
    let (api, _aws) = Api::on_moto(test_settings()).await;
    let create =
        || Call::post("/connections").user("alice").header("idempotency-key", "k-1").json(token(&fake, "work"));
    let first = api.send(create()).await;
    assert_eq!(first.status, 201);
    assert_eq!(api.send(Call::delete(path_of(&first)).user("alice")).await.status, 204);
    let calls_before = fake.requests().len();
    let replay = api.send(create()).await;
    assert_eq!(replay.status, 201, "{}", replay.text);
    assert_eq!(replay.json, first.json, "the original answer, byte for byte in content");
    assert_eq!(replay.header("location"), first.header("location"));
    assert_eq!(fake.requests().len(), calls_before, "a replay asks Bitbucket nothing");
    let other = Call::post("/connections").user("alice").header("idempotency-key", "k-1").json(token(&fake, "other"));
    assert_eq!(api.send(other).await.code(), "idempotency_key_reused");
}

/// An attacker's connection to a server that verifies quickly and lists slowly: 25
/// pickers at once hold the owner's 4 slots and no more (the others are answered at
/// once with `browse_busy`), every page ends at its deadline, the server then rests
/// (answered without calling it), and another owner's browsing meanwhile is as quick
/// as ever.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_owner_browsing_a_slow_server_holds_a_few_slots_and_nobody_else_waits() {
    let _logs = blackbox::logs::guard();
    let (slow, fine) = (FakeBitbucket::start().await, FakeBitbucket::start().await);
    let mut settings = test_settings();
    settings.browse_deadline = Duration::from_millis(2000);
    settings.browse = connections::config::browse_rules(4, settings.browse_deadline);
    let (api, _aws) = Api::on_moto(settings).await;
    let all_scopes = |fake: &FakeBitbucket| json!({"name": "w", "url": fake.url("cloud"), "username": API_TOKEN_EMAIL, "password": API_TOKEN_ALL_SCOPES});
    let mallory = api.send(Call::post("/connections").user("mallory").json(all_scopes(&slow))).await;
    let alice = api.send(Call::post("/connections").user("alice").json(all_scopes(&fine))).await;
    assert_eq!((mallory.status, alice.status), (201, 201), "{} {}", mallory.text, alice.text);
    slow.delay(Duration::from_secs(30));
    let called_before = slow.requests().len();

    let page = |user: &'static str, reply: &Reply| {
        let path = format!("{}/workspaces", path_of(reply));
        let api = &api;
        async move {
            let started = Instant::now();
            let reply = api.send(Call::get(path).user(user)).await;
            (reply, started.elapsed())
        }
    };
    let burst = futures::future::join_all((0..25).map(|_| page("mallory", &mallory)));
    let quick = async {
        tokio::time::sleep(Duration::from_millis(200)).await;
        page("alice", &alice).await
    };
    let (answers, (alices, alice_took)) = tokio::join!(burst, quick);

    assert_eq!(alices.status, 200, "{}", alices.text);
    // Measured against the deadline mallory's pages wait out, not a fixed time: the
    // emulator applies every request of all 26 pages one at a time, which DynamoDB,
    // with the owners' items on their own keys, does not.
    assert!(alice_took < Duration::from_millis(2000), "another owner waited {alice_took:?}, a slow page's deadline");
    let called = slow.requests().len() - called_before;
    assert_eq!(called, 4, "the slow server was called once a slot");
    let mut codes: Vec<&str> = answers.iter().map(|(reply, _)| reply.code()).collect();
    codes.sort_unstable();
    codes.dedup();
    assert_eq!(codes, ["bitbucket_timeout", "browse_busy"], "{answers:?}");
    for (reply, took) in &answers {
        match reply.code() {
            "bitbucket_timeout" => assert!(*took < Duration::from_millis(3500), "held past its deadline: {took:?}"),
            _ => {
                assert_eq!(reply.status, 429);
                assert!(
                    reply.header("retry-after").is_some_and(|s| s.parse::<u64>().is_ok_and(|s| (1..=10).contains(&s)))
                );
                assert!(*took < Duration::from_millis(2000), "refused before the slow pages end: {took:?}");
            }
        }
    }

    let rested = page("mallory", &mallory).await.0;
    assert_eq!((rested.status, rested.code()), (503, "bitbucket_resting"), "{}", rested.text);
    assert!(rested.header("retry-after").is_some());
    assert_eq!(slow.requests().len() - called_before, 4, "a resting server is not called");
}
