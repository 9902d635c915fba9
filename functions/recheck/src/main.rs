//! `recheck` function: see `connections::handlers::recheck`. The schedule invokes
//! it to plan (or, without a queue, to check everything itself); the work queue's
//! event source mapping invokes it with batches to check.

use std::time::{Duration, Instant, SystemTime};

use connections::config::Config;
use connections::handlers::RecheckHandler;
use connections::runtime;
use connections::verify::Verifier;
use connections::work::{SqsQueue, WorkQueue};
use lambda_runtime::{Error, LambdaEvent, service_fn};
use serde_json::Value;

fn main() -> Result<(), Error> {
    runtime::start(run())
}

async fn run() -> Result<(), Error> {
    runtime::init_logging();
    let config = Config::from_env()?;
    let (store, sealer) = runtime::store_and_sealer(&config, runtime::Open::TableAndKey).await?;
    let verifier = Verifier::new(&config.settings.bitbucket)?;
    let events = runtime::events(&config)?;
    let queue = match &config.recheck_queue {
        Some(url) => Some(SqsQueue::lazy(connections::aws::sdk_config()?, url.clone())),
        None => None,
    };
    let keeper = config.settings.token_keeper(store.clone(), sealer.clone()).sharing(verifier.lazy_http());
    let circuits = Default::default();
    let handler = RecheckHandler { store, verifier, events, settings: config.recheck, circuits, keeper };
    // Lives as long as the process; see `run_concurrent` in the HTTP functions.
    let (handler, queue): (&'static _, &'static _) = (Box::leak(Box::new(handler)), Box::leak(Box::new(queue)));
    lambda_runtime::run_concurrent(service_fn(move |event: LambdaEvent<Value>| async move {
        // Stop with a margin before Lambda's own deadline; what is left stays due.
        let left = event.context.deadline().duration_since(SystemTime::now()).unwrap_or_default();
        let deadline = Instant::now() + left.saturating_sub(Duration::from_secs(1));
        let queue = queue.as_ref().map(|q| q as &dyn WorkQueue);
        Ok::<_, Error>(handler.handle(&event.payload, queue, deadline).await)
    }))
    .await
}
