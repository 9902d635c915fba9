//! `delete` function: see `connections::handlers::delete`.

use connections::config::Config;
use connections::handlers::DeleteHandler;
use connections::runtime;
use lambda_http::{Error, service_fn};

#[tokio::main]
async fn main() -> Result<(), Error> {
    runtime::init_logging();
    let config = Config::from_env()?;
    let handler = DeleteHandler { store: runtime::store(&config).await?, settings: config.settings };
    // Lives as long as the process; `run_concurrent` serves Lambda Managed Instances'
    // concurrent invocations and, on classic Lambda, one at a time as `run` does.
    let handler: &'static _ = Box::leak(Box::new(handler));
    lambda_http::run_concurrent(service_fn(move |request| async move { Ok::<_, Error>(handler.handle(request).await) }))
        .await
}
