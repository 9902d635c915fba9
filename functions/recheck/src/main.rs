//! `recheck` function (EventBridge Scheduler, no HTTP route): see `connections::handlers::recheck`.

use std::time::{Duration, Instant, SystemTime};

use connections::config::Config;
use connections::handlers::RecheckHandler;
use connections::runtime;
use connections::verify::Verifier;
use lambda_runtime::{Error, LambdaEvent, service_fn};
use serde_json::Value;

#[tokio::main]
async fn main() -> Result<(), Error> {
    runtime::init_logging();
    let config = Config::from_env()?;
    let (store, sealer) = runtime::store_and_sealer(&config).await?;
    let verifier = Verifier::new(&config.settings.bitbucket)?;
    let events = runtime::events(&config).await;
    let handler = RecheckHandler { store, sealer, verifier, events, settings: config.recheck };
    // Lives as long as the process; see `run_concurrent` in the HTTP functions.
    let handler: &'static _ = Box::leak(Box::new(handler));
    lambda_runtime::run_concurrent(service_fn(move |event: LambdaEvent<Value>| async move {
        // Stop with a margin before Lambda's own deadline; what is left stays due.
        let left = event.context.deadline().duration_since(SystemTime::now()).unwrap_or_default();
        let deadline = Instant::now() + left.saturating_sub(Duration::from_secs(1));
        Ok::<_, Error>(serde_json::to_value(handler.run(deadline).await)?)
    }))
    .await
}
