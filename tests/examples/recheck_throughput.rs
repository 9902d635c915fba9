//! The recheck fanned out, measured: 10,000 due connections, a fake Bitbucket that
//! answers after 300 ms, the planner queueing them, and 1, 2, 4 and 8 workers taking
//! batches of 10 as the queue's event source mapping would hand them, each for a fixed
//! window. The queue here is in memory (moto's SQS takes about half a second a
//! `SendMessageBatch` once thousands of messages wait; tests/tests/recheck.rs runs the
//! planner and workers through SQS on moto). Then the same with 30 connections
//! to a server that never answers among 1,000: every other connection must still be
//! checked in the run that finds it due. The emulator applies one request at a time
//! and reads every item of a table for each index query, so it sets a ceiling of its
//! own; the same workers over the embedded SQLite store (same queue, same fake) show
//! how the service scales when the store does not. Run by `scripts/bench --recheck`, which starts
//! the emulator; by hand:
//!
//!     MOTO_ENDPOINT=http://127.0.0.1:5555 cargo run --release -p blackbox --example recheck_throughput

use std::sync::Arc;
use std::time::{Duration, Instant};

use blackbox::emulator;
use blackbox::fake_bitbucket::*;
use connections::config::RecheckSettings;
use connections::domain::{Owner, ServerUrl};
use connections::events::LoggedEvents;
use connections::handlers::RecheckHandler;
use connections::seal::{LocalSealer, Sealer};
use connections::store::{ConnectionStore, DynamoStore};
use connections::verify::Verifier;
use connections::verify::client::ClientSettings;
use connections::verify::net::NetPolicy;
use connections::work::{Work, WorkQueue};
use futures::StreamExt;

/// 10,000 unless `RECHECK_BENCH_DUE` says otherwise (a quicker look).
fn due_count() -> usize {
    std::env::var("RECHECK_BENCH_DUE").ok().and_then(|n| n.parse().ok()).unwrap_or(10_000)
}
const WINDOW: Duration = Duration::from_secs(15);

struct Bench {
    store: Arc<dyn ConnectionStore>,
    sealer: Arc<dyn Sealer>,
    queue: MemoryQueue,
    _key: tempfile::TempDir,
}

/// What SQS does for the planner and the workers, in memory.
#[derive(Default)]
struct MemoryQueue(std::sync::Mutex<std::collections::VecDeque<Work>>);

#[async_trait::async_trait]
impl WorkQueue for MemoryQueue {
    async fn enqueue(&self, items: &[Work]) -> Result<(), (Vec<Work>, String)> {
        self.0.lock().unwrap().extend(items.iter().cloned());
        Ok(())
    }
}

impl MemoryQueue {
    /// Up to ten, as a receive would hand them.
    fn take(&self) -> Vec<Work> {
        let mut queue = self.0.lock().unwrap();
        let n = queue.len().min(10);
        queue.drain(..n).collect()
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    println!("== on the embedded store (SQLite): the service's own scaling");
    let sqlite = setup_embedded().await;
    fan_out(&sqlite, due_count()).await;
    // moto re-indexes on each write to an item of an indexed table (about 120 ms a write at
    // 10,000 items here): the emulator gets fewer connections, and sets its own ceiling.
    println!("== on the emulator (DynamoDB on moto)");
    let moto = setup().await;
    fan_out(&moto, 2_000).await;
    tarpits().await;
}

async fn fan_out(bench: &Bench, due: usize) {
    let fake = FakeBitbucket::start().await;
    let seeding = Instant::now();
    seed(bench, &fake.url("cloud"), due, "user").await;
    println!("== recheck fan-out: {due} due connections seeded in {:.0} s", seeding.elapsed().as_secs_f64());
    fake.delay(Duration::from_millis(300));
    let planning = Instant::now();
    let plan = handler(bench).plan(&bench.queue, Instant::now() + Duration::from_secs(600)).await;
    println!(
        "   planner: {} queued in {:.1} s ({:.0} a second); {plan:?}",
        plan.queued,
        planning.elapsed().as_secs_f64(),
        plan.queued as f64 / planning.elapsed().as_secs_f64(),
    );
    println!("   Bitbucket answering after 300 ms; each worker checks a batch of 10 in parallel");
    let mut baseline = 0.0;
    for workers in [1, 2, 4, 8] {
        let (verified, took, _) = drain(bench, workers, Some(WINDOW)).await;
        let rate = verified as f64 / took.as_secs_f64();
        if workers == 1 {
            baseline = rate;
        }
        println!(
            "   {workers} worker(s): {verified:>5} verified in {:.1} s = {rate:6.1} a second ({:.2}× one worker)",
            took.as_secs_f64(),
            rate / baseline
        );
    }
}

/// A fresh table and queue, 30 connections to a server that accepts and never answers.
async fn tarpits() {
    let fake = FakeBitbucket::start().await;
    let tarpit = FakeBitbucket::start().await;
    let bench = setup().await;
    seed(&bench, &fake.url("cloud"), 1_000, "user").await;
    seed(&bench, &tarpit.url("cloud"), 30, "mallory").await;
    fake.delay(Duration::from_millis(300));
    tarpit.delay(Duration::from_secs(600));
    let called_before = tarpit.requests().len();
    let started = Instant::now();
    let plan = handler(&bench).plan(&bench.queue, Instant::now() + Duration::from_secs(600)).await;
    let (verified, _, transient) = drain(&bench, 4, None).await;
    println!("== tarpits: 1,000 connections and 30 to a server that never answers, {} queued, 4 workers", plan.queued);
    println!(
        "   {verified} of 1,000 verified in the run ({:.1} s), {transient} put back for a later run, the tarpit called {} times",
        started.elapsed().as_secs_f64(),
        tarpit.requests().len() - called_before
    );
}

async fn setup() -> Bench {
    let patient = patient().await;
    let dynamodb = aws_sdk_dynamodb::Client::new(&patient);
    let table = emulator::create_table(&dynamodb).await;
    // A local key: KMS's Decrypt would load the one emulator every other call waits on.
    let key = tempfile::tempdir().unwrap();
    let sealer = Arc::new(LocalSealer::open_or_create(&key.path().join("key")).unwrap());
    Bench { store: Arc::new(DynamoStore::new(dynamodb, table)), sealer, queue: MemoryQueue::default(), _key: key }
}

async fn setup_embedded() -> Bench {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(connections::store::EmbeddedStore::open(&dir.path().join("c.sqlite3")).unwrap());
    let sealer = Arc::new(LocalSealer::open_or_create(&dir.path().join("key")).unwrap());
    Bench { store, sealer, queue: MemoryQueue::default(), _key: dir }
}

/// The emulator answers one request at a time and its index queries grow with the
/// table: generous timeouts, so its pace shows in the figures instead of as errors.
async fn patient() -> aws_config::SdkConfig {
    emulator::sdk_config_at(&emulator::endpoint())
        .await
        .into_builder()
        .timeout_config(
            aws_config::timeout::TimeoutConfig::builder()
                .operation_attempt_timeout(Duration::from_secs(120))
                .operation_timeout(Duration::from_secs(300))
                .build(),
        )
        .build()
}

/// One worker's handler, as in its own Lambda: its circuits are its own.
fn handler(bench: &Bench) -> RecheckHandler {
    let bitbucket = ClientSettings {
        policy: NetPolicy::parse("127.0.0.0/8").unwrap().with_plain_http("127.0.0.1").unwrap(),
        ..ClientSettings::default()
    };
    RecheckHandler {
        store: bench.store.clone(),
        verifier: Verifier::new(&bitbucket).unwrap(),
        events: Arc::new(LoggedEvents),
        settings: RecheckSettings {
            concurrency: 10,
            owner_share: 1_000_000,
            // A query page up to DynamoDB's 1 MB: the emulator reads every item for each query.
            page_size: 1000,
            ..RecheckSettings::default()
        },
        circuits: Default::default(),
        keeper: connections::config::Settings { bitbucket, ..Default::default() }
            .token_keeper(bench.store.clone(), bench.sealer.clone()),
    }
}

/// `workers` workers taking batches until `window` ends (or the queue is empty): the
/// connections verified, the time taken, and those put back.
async fn drain(bench: &Bench, workers: usize, window: Option<Duration>) -> (usize, Duration, usize) {
    let started = Instant::now();
    let ends = window.map(|w| started + w);
    let results = futures::future::join_all((0..workers).map(|_| async {
        let worker = handler(bench);
        let (mut verified, mut put_back) = (0, 0);
        while ends.is_none_or(|end| Instant::now() < end) {
            let batch = bench.queue.take();
            if batch.is_empty() {
                break;
            }
            let report = worker.work(batch, Instant::now() + Duration::from_secs(290)).await;
            verified += report.verified;
            put_back += report.transient + report.rate_limited;
        }
        (verified, put_back)
    }))
    .await;
    let took = started.elapsed();
    (results.iter().map(|r| r.0).sum(), took, results.iter().map(|r| r.1).sum())
}

/// `count` connections to `url`, one owner each (`{prefix}-{n}`), verified two days ago.
async fn seed(bench: &Bench, url: &str, count: usize, prefix: &str) {
    let url = ServerUrl::parse(url).unwrap();
    futures::stream::iter(0..count)
        .map(|n| {
            let (store, sealer, url) = (bench.store.clone(), bench.sealer.clone(), url.clone());
            let owner = Owner::parse(&format!("{prefix}-{n}")).unwrap();
            async move { blackbox::seed::due_connection(store.as_ref(), sealer.as_ref(), &owner, &url, "work").await }
        })
        .buffer_unordered(8)
        .collect::<Vec<String>>()
        .await;
}
