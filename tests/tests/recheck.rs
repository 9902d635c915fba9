//! Connections stay truthful on their own: the recheck function against the
//! emulator (DynamoDB with its `due` index, KMS, EventBridge delivering to an
//! SQS queue that the test reads back) and the fake Bitbucket.

use std::sync::Arc;
use std::time::{Duration, Instant};

use aws_sdk_dynamodb::types::AttributeValue;
use blackbox::api::{Api, AwsBackend, Call, test_settings};
use blackbox::emulator;
use blackbox::fake_bitbucket::*;
use connections::config::RecheckSettings;
use connections::domain::ServerUrl;
use connections::domain::{Connection, ConnectionId, LastUsed, NewConnection, Owner};
use connections::events::EventBridgeEvents;
use connections::handlers::RecheckHandler;
use connections::handlers::recheck::RunReport;
use connections::seal::SealContext;
use connections::secret::Secret;
use connections::username::Username;
use connections::verify::Verifier;
use serde_json::{Value, json};

struct Env {
    api: Api,
    aws: AwsBackend,
    fake: FakeBitbucket,
    recheck: RecheckHandler,
    queue_url: String,
    unused_queue_url: String,
}

/// An SQS call in its JSON protocol, straight to the emulator.
async fn sqs(action: &str, body: Value) -> Value {
    let client = reqwest::Client::new();
    let reply = client
        .post(emulator::endpoint())
        .header("x-amz-target", format!("AmazonSQS.{action}"))
        .header("content-type", "application/x-amz-json-1.0")
        .header(
            "authorization",
            "AWS4-HMAC-SHA256 Credential=testing/20261129/us-east-1/sqs/aws4_request, SignedHeaders=host, Signature=0",
        )
        .body(body.to_string())
        .send()
        .await
        .expect("SQS on the emulator");
    serde_json::from_str(&reply.text().await.unwrap_or_default()).unwrap_or(Value::Null)
}

async fn env(settings: RecheckSettings) -> Env {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let fake = FakeBitbucket::start().await;
    let (api, aws) = Api::on_moto(test_settings()).await;
    let sdk = emulator::sdk_config_at(&emulator::endpoint()).await;
    let events = aws_sdk_eventbridge::Client::new(&sdk);
    let bus = format!("{}-bus", aws.table);
    events.create_event_bus().name(&bus).send().await.expect("event bus");
    // One queue per kind of event, each fed by a rule on its detail-type, as a product would subscribe.
    let mut queue_urls = Vec::new();
    for (rule, detail_type) in [("status", "Connection status changed"), ("unused", "Connection unused")] {
        let queue = format!("{}-{rule}", aws.table);
        let created = sqs("CreateQueue", json!({"QueueName": queue})).await;
        queue_urls.push(created["QueueUrl"].as_str().expect("queue url").to_owned());
        events
            .put_rule()
            .name(rule)
            .event_bus_name(&bus)
            .event_pattern(json!({"source": ["bitbucket-connections"], "detail-type": [detail_type]}).to_string())
            .send()
            .await
            .expect("rule");
        let target = aws_sdk_eventbridge::types::Target::builder()
            .id("queue")
            .arn(format!("arn:aws:sqs:us-east-1:123456789012:{queue}"))
            .build()
            .unwrap();
        events.put_targets().rule(rule).event_bus_name(&bus).targets(target).send().await.expect("target");
    }
    let unused_queue_url = queue_urls.pop().expect("two queues");
    let queue_url = queue_urls.pop().expect("two queues");
    let recheck = RecheckHandler {
        store: api.store.clone(),
        verifier: Verifier::new(&test_settings().bitbucket).unwrap(),
        // As deployed: the client is built on the first publish.
        events: Arc::new(EventBridgeEvents::lazy(sdk, bus)),
        settings,
        circuits: Default::default(),
        keeper: test_settings().token_keeper(api.store.clone(), api.sealer.clone()),
    };
    Env { api, aws, fake, recheck, queue_url, unused_queue_url }
}

impl Env {
    async fn run(&self) -> RunReport {
        self.recheck.run(Instant::now() + Duration::from_secs(60)).await
    }

    /// Every status-change event delivered so far, as their `detail`s.
    async fn events(&self) -> Vec<Value> {
        delivered(&self.queue_url, "Connection status changed").await
    }

    /// Every "Connection unused" event delivered so far, as their `detail`s.
    async fn unused_events(&self) -> Vec<Value> {
        delivered(&self.unused_queue_url, "Connection unused").await
    }

    async fn add(&self, body: Value) -> Value {
        let reply = self.api.send(Call::post("/connections").user("alice").json(body)).await;
        assert_eq!(reply.status, 201, "{}", reply.text);
        reply.json
    }

    async fn get(&self, id: &str) -> Value {
        self.api.send(Call::get(format!("/connections/{id}")).user("alice")).await.json
    }
}

/// Every event delivered to `queue_url` so far, as their `detail`s.
async fn delivered(queue_url: &str, detail_type: &str) -> Vec<Value> {
    let mut details = Vec::new();
    loop {
        let received = sqs("ReceiveMessage", json!({"QueueUrl": queue_url, "MaxNumberOfMessages": 10})).await;
        let messages = received["Messages"].as_array().cloned().unwrap_or_default();
        if messages.is_empty() {
            return details;
        }
        for message in messages {
            let event: Value = serde_json::from_str(message["Body"].as_str().unwrap()).unwrap();
            assert_eq!(event["source"], "bitbucket-connections");
            assert_eq!(event["detail-type"], detail_type);
            details.push(event["detail"].clone());
            sqs("DeleteMessage", json!({"QueueUrl": queue_url, "ReceiptHandle": message["ReceiptHandle"]})).await;
        }
    }
}

/// Stale at once; what is put back is due again five seconds later.
fn immediately() -> RecheckSettings {
    RecheckSettings { interval: Duration::ZERO, retry_after: RETRY, ..RecheckSettings::default() }
}

/// Long enough that a slow emulator cannot let an immediate second run reach it.
const RETRY: Duration = Duration::from_secs(5);
/// Surely past a retry, whatever fraction of a second the run started at.
const PAST_RETRY: Duration = Duration::from_millis(6100);

fn token(fake: &FakeBitbucket, name: &str) -> Value {
    json!({"name": name, "url": fake.url("cloud"), "username": API_TOKEN_EMAIL, "password": API_TOKEN})
}

#[tokio::test]
async fn a_revoked_token_turns_invalid_on_the_next_run_with_one_event() {
    let _logs = blackbox::logs::guard();
    let env = env(immediately()).await;
    let created = env.add(token(&env.fake, "work")).await;
    let id = created["id"].as_str().unwrap();
    env.fake.revoke(API_TOKEN);
    let report = env.run().await;
    assert_eq!((report.invalidated, report.events), (1, 1), "{report:?}");
    let stored = env.get(id).await;
    assert_eq!(
        (&stored["status"], &stored["status_reason"], &stored["version"]),
        (&json!("invalid"), &json!("invalid_credentials"), &json!(2))
    );
    let events = env.events().await;
    assert_eq!(events.len(), 1, "{events:?}");
    let event = &events[0];
    assert_eq!(
        (&event["owner"], &event["connection_id"], &event["old_status"], &event["new_status"], &event["reason"]),
        (&json!("alice"), &json!(id), &json!("verified"), &json!("invalid"), &json!("invalid_credentials"))
    );
    assert!(!event.to_string().contains(API_TOKEN));
    let schema_path = blackbox::local::repository_root().join("infra/connection-status-changed.schema.json");
    let schema: Value = serde_json::from_str(&std::fs::read_to_string(schema_path).unwrap()).unwrap();
    let validator = jsonschema::options().should_validate_formats(true).build(&schema).unwrap();
    assert!(validator.is_valid(event), "the event matches infra/connection-status-changed.schema.json: {event}");
    for example in schema["examples"].as_array().unwrap() {
        assert!(validator.is_valid(example));
    }
    // Past the retry a pending announcement would have had.
    tokio::time::sleep(PAST_RETRY).await;
    let again = env.run().await;
    assert_eq!(again.looked_at, 0, "an invalid, announced connection is no longer due: {again:?}");
    assert!(env.events().await.is_empty(), "exactly one event per change");
}

#[tokio::test]
async fn a_failing_bitbucket_changes_nothing_and_the_connection_stays_due() {
    let _logs = blackbox::logs::guard();
    let env = env(immediately()).await;
    let id = env.add(token(&env.fake, "work")).await["id"].as_str().unwrap().to_owned();
    env.fake.outage(Some(503));
    let report = env.run().await;
    assert_eq!((report.transient, report.invalidated, report.events), (1, 0, 0), "{report:?}");
    assert_eq!(env.get(&id).await["status"], "verified");
    assert_eq!(env.run().await.looked_at, 0, "put back for later: not retried in a loop");
    tokio::time::sleep(PAST_RETRY).await;
    assert_eq!(env.run().await.transient, 1, "still due: retried by a later run");
    env.fake.outage(None);
    tokio::time::sleep(PAST_RETRY).await;
    assert_eq!(env.run().await.verified, 1);
    assert!(env.events().await.is_empty());
}

#[tokio::test]
async fn an_expiry_ten_days_out_is_announced_as_expiring_without_asking_bitbucket() {
    let _logs = blackbox::logs::guard();
    let env = env(RecheckSettings { retry_after: RETRY, ..RecheckSettings::default() }).await;
    let in_ten_days = (time::OffsetDateTime::now_utc() + time::Duration::days(10)).date().to_string();
    let mut body = token(&env.fake, "soon");
    body["expires_at"] = json!(in_ten_days);
    let id = env.add(body).await["id"].as_str().unwrap().to_owned();
    let calls = env.fake.requests().len();
    let report = env.run().await;
    assert_eq!((report.events, report.verified), (1, 0), "{report:?}");
    assert_eq!(env.fake.requests().len(), calls, "verified minutes ago: not asked again");
    tokio::time::sleep(PAST_RETRY).await;
    let events = env.events().await;
    assert_eq!((&events[0]["old_status"], &events[0]["new_status"]), (&json!("verified"), &json!("expiring")));
    let stored = env.get(&id).await;
    assert_eq!(
        (&stored["status"], &stored["version"]),
        (&json!("expiring"), &json!(1)),
        "bookkeeping keeps the version"
    );
    let next = env.run().await;
    assert_eq!(next.looked_at, 0, "announced once, and rescheduled in the same run: {next:?}");
}

#[tokio::test]
async fn a_user_edit_during_a_run_wins() {
    let _logs = blackbox::logs::guard();
    let env = env(immediately()).await;
    let id = env.add(token(&env.fake, "work")).await["id"].as_str().unwrap().to_owned();
    env.fake.revoke(API_TOKEN);
    env.fake.delay(Duration::from_millis(800));
    let run = env.recheck.run(Instant::now() + Duration::from_secs(60));
    let edit = async {
        tokio::time::sleep(Duration::from_millis(300)).await;
        let call = Call::patch(format!("/connections/{id}")).user("alice").header("if-match", "\"1\"");
        env.api.send(call.json(json!({"name": "renamed by the user"}))).await
    };
    let (report, edited) = tokio::join!(run, edit);
    assert_eq!(edited.status, 200, "{}", edited.text);
    assert_eq!(report.conflicts, 1, "{report:?}");
    let stored = env.get(&id).await;
    assert_eq!(
        (&stored["name"], &stored["status"], &stored["version"]),
        (&json!("renamed by the user"), &json!("verified"), &json!(2))
    );
    env.fake.delay(Duration::ZERO);
    assert_eq!(env.run().await.invalidated, 1, "the edit made it due again; the next run decides");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn five_hundred_due_connections_over_a_rate_limiting_bitbucket_finish_within_a_few_runs() {
    let _logs = blackbox::logs::guard();
    let settings = RecheckSettings {
        interval: Duration::from_secs(3600),
        retry_after: Duration::from_secs(1),
        ..RecheckSettings::default()
    };
    let env = env(settings).await;
    let before = blackbox::emulator::call_counts().await;
    // Verified two days ago, so each is stale and due.
    let long_ago = time::OffsetDateTime::now_utc() - time::Duration::days(2);
    let seeds: Vec<_> = (0..500)
        .map(|i| {
            let owner = Owner::parse(&format!("user-{i}")).unwrap();
            (owner, i)
        })
        .collect();
    // Seeding is test set-up, not the service: generous timeouts for a busy emulator.
    let patient = emulator::sdk_config_at(&emulator::endpoint())
        .await
        .into_builder()
        .timeout_config(
            aws_config::timeout::TimeoutConfig::builder()
                .operation_attempt_timeout(Duration::from_secs(60))
                .operation_timeout(Duration::from_secs(120))
                .build(),
        )
        .build();
    let store: Arc<dyn connections::store::ConnectionStore> =
        Arc::new(connections::store::DynamoStore::new(aws_sdk_dynamodb::Client::new(&patient), env.aws.table.clone()));
    let sealer = env.api.sealer.clone();
    let seeding = Instant::now();
    let url = env.fake.url("cloud");
    use futures::StreamExt;
    futures::stream::iter(seeds.into_iter().map(|(owner, i)| {
        let (store, sealer, url) = (store.clone(), sealer.clone(), url.clone());
        async move {
            let id = ConnectionId::new();
            let secret = Secret::new(API_TOKEN.to_owned());
            let url = ServerUrl::parse(&url).unwrap();
            let origin = url.origin();
            let sealed =
                sealer.seal(&secret, SealContext { owner: &owner, connection: &id, origin: &origin }).await.unwrap();
            let new = NewConnection {
                id: &id,
                name: &format!("c{i}"),
                url: &url,
                username: Some(&Username::parse(API_TOKEN_EMAIL).unwrap()),
                resource: None,
                expires_at: None,
            };
            let connection = Connection::verified(new, blackbox::seed::verification(), long_ago);
            store.create(&owner, &connection, &sealed, 1000, None).await.unwrap();
        }
    }))
    .buffer_unordered(4)
    .collect::<Vec<()>>()
    .await;
    let seeded = blackbox::emulator::call_counts().await;
    println!("seeded 500 connections in {:.1} s", seeding.elapsed().as_secs_f64());

    let calls_before = env.fake.requests().len();
    let mut reports = Vec::new();
    let started = Instant::now();
    for _ in 0..4 {
        env.fake.rate_limit(Some(200)); // an hour's allowance, renewed before each run
        tokio::time::sleep(Duration::from_millis(1100)).await; // runs are an hour apart; a second will do
        let report = env.run().await;
        let done = report.looked_at == 0;
        reports.push(report);
        if done {
            break;
        }
    }
    let elapsed = started.elapsed();
    let verified: usize = reports.iter().map(|r| r.verified).sum();
    assert_eq!(verified, 500, "{reports:?}");
    assert!(reports.len() <= 4, "{reports:?}");
    assert!(reports.iter().all(|r| r.invalidated == 0), "a 429 is never a verdict: {reports:?}");
    let calls = env.fake.requests().len() - calls_before;
    let after = blackbox::emulator::call_counts().await;
    let delta = |op: &str| after.get(op).copied().unwrap_or(0) - seeded.get(op).copied().unwrap_or(0);
    assert_eq!(delta("Scan"), 0, "never a scan");
    assert_eq!(after.get("Scan").copied().unwrap_or(0), before.get("Scan").copied().unwrap_or(0));
    println!(
        "500 due connections: {} runs ({:?} verified), {calls} Bitbucket calls, DynamoDB: {} Query, {} UpdateItem, 0 Scan; {:.1} s; reports {reports:?}",
        reports.len(),
        reports.iter().map(|r| r.verified).collect::<Vec<_>>(),
        delta(&format!("Query {}", env.aws.table)),
        delta(&format!("UpdateItem {}", env.aws.table)),
        elapsed.as_secs_f64()
    );
}

/// Nobody has used a connection for 90 days: one "Connection unused" event, told at
/// the first check past the crossing and not again; a connection in use says nothing.
#[tokio::test]
async fn a_connection_unused_for_90_days_is_told_once() {
    let _logs = blackbox::logs::guard();
    let env = env(immediately()).await;
    let owner = Owner::parse("alice").unwrap();
    let url = env.fake.url("cloud");
    let origin = ServerUrl::parse(&url).unwrap().origin();
    let added = connections::domain::now() - time::Duration::days(100);
    let mut ids = Vec::new();
    for name in ["idle", "busy"] {
        let id = ConnectionId::new();
        let secret = Secret::new(API_TOKEN.to_owned());
        let context = SealContext { owner: &owner, connection: &id, origin: &origin };
        let sealed = env.api.sealer.seal(&secret, context).await.unwrap();
        let new = NewConnection {
            id: &id,
            name,
            url: &ServerUrl::parse(&url).unwrap(),
            username: Some(&Username::parse(API_TOKEN_EMAIL).unwrap()),
            resource: None,
            expires_at: None,
        };
        env.api
            .store
            .create(&owner, &Connection::verified(new, blackbox::seed::verification(), added), &sealed, 100, None)
            .await
            .unwrap();
        ids.push(id);
    }
    let used = LastUsed {
        at: connections::domain::now() - time::Duration::days(10),
        purpose: "git".into(),
        caller: "pr-worker".into(),
    };
    env.api.store.record_use(&owner, &ids[1], &used).await.unwrap();

    let report = env.run().await;
    assert_eq!(report.verified, 2, "{report:?}");
    let told = env.unused_events().await;
    assert_eq!(told.len(), 1, "{told:?}");
    assert_eq!(
        (&told[0]["connection_id"], &told[0]["name"], &told[0]["days"]),
        (&json!(ids[0].to_string()), &json!("idle"), &json!(90))
    );
    assert!(told[0].get("last_used").is_none(), "never used: {}", told[0]);
    let schema_path = blackbox::local::repository_root().join("infra/connection-unused.schema.json");
    let schema: Value = serde_json::from_str(&std::fs::read_to_string(schema_path).unwrap()).unwrap();
    let validator = jsonschema::options().should_validate_formats(true).build(&schema).unwrap();
    assert!(validator.is_valid(&told[0]), "the event matches infra/connection-unused.schema.json: {}", told[0]);

    let again = env.run().await;
    assert_eq!(again.verified, 2, "{again:?}");
    assert!(env.unused_events().await.is_empty(), "told once, not at every check");
    assert!(env.events().await.is_empty(), "no status changed");
}

/// A stored value that no longer parses is one error, found where the item is read:
/// every use answers that the connection is unreadable (nothing is sent anywhere),
/// and the recheck leaves it out and takes it off the schedule instead of meeting it
/// again on every run, while the others are still checked.
#[tokio::test]
async fn a_stored_url_that_no_longer_parses_is_refused_once_where_it_is_read() {
    let env = env(RecheckSettings::default()).await;
    let body = |name: &str| json!({"name": name, "url": env.fake.url("cloud"), "username": API_TOKEN_EMAIL, "password": API_TOKEN});
    let broken = env.add(body("broken")).await["id"].as_str().unwrap().to_owned();
    let fine = env.add(body("fine")).await["id"].as_str().unwrap().to_owned();
    let key =
        |id: &str| [("pk", AttributeValue::S("USER#alice".into())), ("sk", AttributeValue::S(format!("CONN#{id}")))];
    let mut update = env.aws.dynamodb.update_item().table_name(&env.aws.table);
    for (name, value) in key(&broken) {
        update = update.key(name, value);
    }
    update
        .update_expression("SET #u = :u")
        .expression_attribute_names("#u", "url")
        .expression_attribute_values(":u", AttributeValue::S("ftp://bitbucket.example/".into()))
        .send()
        .await
        .unwrap();
    let requests_before = env.fake.requests().len();

    let path = format!("/connections/{broken}");
    for call in [Call::get(&path), Call::post(format!("{path}/verify")), Call::get(format!("{path}/workspaces"))] {
        let reply = env.api.send(call.clone().user("alice")).await;
        assert_eq!((reply.status, reply.code()), (503, "service_unavailable"), "{call:?}: {}", reply.text);
        assert!(reply.json["detail"].as_str().unwrap().contains("unreadable"), "{}", reply.text);
    }
    let listed = env.api.send(Call::get("/connections").user("alice")).await;
    assert_eq!(listed.status, 200, "one unreadable connection does not hide the others: {}", listed.text);
    let ids: Vec<&str> = listed.json["items"].as_array().unwrap().iter().map(|c| c["id"].as_str().unwrap()).collect();
    assert_eq!(ids, [fine.as_str()]);
    let answer = env
        .api
        .invoke_credentials(json!({"action": "get", "owner": "alice", "connection_id": broken, "purpose": "git"}))
        .await;
    assert_eq!(answer["code"], "service_unavailable", "{answer}");
    assert_eq!(env.fake.requests().len(), requests_before, "nothing was sent for the unreadable connection");

    let report = env.run().await;
    assert_eq!(report.looked_at, 1, "only the other connection is looked at: {report:?}");
    assert_eq!(env.get(&fine).await["status"], "verified");
    let mut get = env.aws.dynamodb.get_item().table_name(&env.aws.table);
    for (name, value) in key(&broken) {
        get = get.key(name, value);
    }
    let item = get.send().await.unwrap().item.unwrap();
    assert!(!item.contains_key("due_at") && !item.contains_key("due_shard"), "off the schedule: {item:?}");
    let mut after = None;
    loop {
        let due = env.api.store.due(i64::MAX / 2, 100, after.as_deref()).await.unwrap();
        assert!(due.items.iter().all(|d| d.connection.id != broken));
        after = due.next;
        if after.is_none() {
            break;
        }
    }
}

/// `count` connections of `owner` to `url`, last verified two days ago: each due for a
/// check, with a working API token at the fake.
async fn seed(env: &Env, owner: &str, url: &str, count: usize) -> Vec<String> {
    let (owner, url) = (Owner::parse(owner).unwrap(), ServerUrl::parse(url).unwrap());
    let mut ids = Vec::new();
    for i in 0..count {
        let name = format!("{}-{i}", url.origin());
        ids.push(
            blackbox::seed::due_connection(env.api.store.as_ref(), env.api.sealer.as_ref(), &owner, &url, &name).await,
        );
    }
    ids
}

/// The SQS event the queue's event source mapping would hand a worker: every message
/// waiting on `queue_url` (a batch of up to ten each).
async fn queued_batches(queue_url: &str) -> Vec<Value> {
    let mut batches = Vec::new();
    loop {
        let received = sqs("ReceiveMessage", json!({"QueueUrl": queue_url, "MaxNumberOfMessages": 10})).await;
        let messages = received["Messages"].as_array().cloned().unwrap_or_default();
        if messages.is_empty() {
            return batches;
        }
        let records: Vec<Value> = messages
            .iter()
            .map(|m| json!({"messageId": m["MessageId"], "body": m["Body"], "eventSource": "aws:sqs"}))
            .collect();
        batches.push(json!({"Records": records}));
    }
}

/// Deployed with a queue: a scheduled run only plans. It queues each due connection
/// once (leased off the schedule, so the next run does not queue it again), at most
/// `owner_share` of each owner (the rest go next run), and names only the connection;
/// workers check the batches; a message delivered twice is checked once.
#[tokio::test]
async fn a_planned_run_queues_each_due_connection_once_and_workers_check_them() {
    let _logs = blackbox::logs::guard();
    let env = env(RecheckSettings { owner_share: 3, ..RecheckSettings::default() }).await;
    let url = env.fake.url("cloud");
    seed(&env, "alice", &url, 5).await;
    seed(&env, "bob", &url, 2).await;
    let created = sqs("CreateQueue", json!({"QueueName": format!("{}-work", env.aws.table)})).await;
    let queue_url = created["QueueUrl"].as_str().unwrap().to_owned();
    let client = aws_sdk_sqs::Client::new(&emulator::sdk_config_at(&emulator::endpoint()).await);
    let queue = connections::work::SqsQueue::new(client, queue_url.clone());
    let deadline = || Instant::now() + Duration::from_secs(60);

    let first = env.recheck.plan(&queue, deadline()).await;
    assert_eq!((first.queued, first.over_share, first.not_queued), (5, 2, 0), "{first:?}");
    let second = env.recheck.plan(&queue, deadline()).await;
    assert_eq!((second.queued, second.over_share), (2, 0), "only alice's two left over: {second:?}");
    let batches = queued_batches(&queue_url).await;
    let bodies: Vec<Value> = batches
        .iter()
        .flat_map(|b| {
            b["Records"].as_array().unwrap().iter().map(|r| serde_json::from_str(r["body"].as_str().unwrap()).unwrap())
        })
        .collect();
    assert_eq!(bodies.len(), 7);
    for body in &bodies {
        let keys: Vec<&str> = body.as_object().unwrap().keys().map(String::as_str).collect();
        assert_eq!(
            keys,
            ["connection_id", "leased_until", "owner"],
            "a message names the connection and nothing else: {body}"
        );
    }
    // One of them is leased again meanwhile, as a later run would after its lease ran
    // out: its first message is stale and passed over; the later one is checked.
    let first = &bodies[0];
    let (owner, id) =
        (Owner::parse(first["owner"].as_str().unwrap()).unwrap(), first["connection_id"].as_str().unwrap());
    let lease = first["leased_until"].as_i64().unwrap();
    assert!(env.api.store.lease(&owner, id, lease, lease + 60).await.unwrap());
    let calls_before = env.fake.requests().len();
    let mut verified = 0;
    for batch in &batches {
        let report = env.recheck.handle(batch, None, deadline()).await;
        assert_eq!(report["batchItemFailures"], json!([]), "nothing handed back: {report}");
        verified += report["verified"].as_u64().unwrap();
    }
    assert_eq!(verified, 6, "the stale message was passed over");
    let mut later = first.clone();
    later["leased_until"] = json!(lease + 60);
    let event = json!({"Records": [{"messageId": "m", "eventSource": "aws:sqs", "body": later.to_string()}]});
    assert_eq!(env.recheck.handle(&event, None, deadline()).await["verified"], 1);
    assert_eq!(env.fake.requests().len() - calls_before, 7, "one check a connection");
    let again = env.recheck.handle(&batches[0], None, deadline()).await;
    assert_eq!(again["looked_at"], 0, "a message delivered twice is passed over: {again}");
    let nothing = env.recheck.plan(&queue, deadline()).await;
    assert_eq!(nothing.queued, 0, "all checked, none due: {nothing:?}");
}

/// 30 connections to a server that never answers among 30 to a working one: the
/// tarpit is called by the first wave only (a circuit per server), and every other
/// connection is checked in the same run.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tarpits_cost_one_wave_of_timeouts_and_every_other_connection_is_checked() {
    let _logs = blackbox::logs::guard();
    let env = env(RecheckSettings { concurrency: 4, ..RecheckSettings::default() }).await;
    let tarpit = FakeBitbucket::start().await;
    seed(&env, "mallory", &tarpit.url("cloud"), 30).await;
    seed(&env, "alice", &env.fake.url("cloud"), 30).await;
    tarpit.delay(Duration::from_secs(120));
    let tarpit_before = tarpit.requests().len();

    let started = Instant::now();
    let report = env.run().await;
    let took = started.elapsed();
    assert_eq!(report.verified, 30, "{report:?}");
    assert!(!report.stopped_early, "{report:?}");
    let called = tarpit.requests().len() - tarpit_before;
    assert!(called <= 4, "the tarpit was called {called} times: once a slot of the first wave at most");
    assert_eq!(report.transient + report.rate_limited, 30, "{report:?}");
    // A run without the circuit waited 30 × 3 s / 4 here.
    assert!(took < Duration::from_secs(15), "{took:?}");
}
