//! `web` function: the settings page; see `connections::handlers::web`.

use connections::handlers::WebHandler;
use connections::handlers::web::WebConfig;
use connections::runtime;
use lambda_http::{Error, service_fn};

#[tokio::main]
async fn main() -> Result<(), Error> {
    runtime::init_logging();
    let handler = WebHandler::new(&WebConfig::from_env()?);
    // Lives as long as the process; `run_concurrent` serves Lambda Managed Instances'
    // concurrent invocations and, on classic Lambda, one at a time as `run` does.
    let handler: &'static _ = Box::leak(Box::new(handler));
    lambda_http::run_concurrent(service_fn(move |request| async move { Ok::<_, Error>(handler.handle(request).await) }))
        .await
}
