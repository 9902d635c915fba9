//! `delete` function: see `connections::handlers::delete`.

use connections::config::Config;
use connections::handlers::DeleteHandler;
use connections::runtime;
use connections::serve::serve_http;
use lambda_http::Error;

fn main() -> Result<(), Error> {
    runtime::start(run())
}

async fn run() -> Result<(), Error> {
    runtime::init_logging();
    let config = Config::from_env()?;
    let handler = DeleteHandler { store: runtime::connections(&config).await?, settings: config.settings };
    // Lives as long as the process.
    let handler: &'static _ = Box::leak(Box::new(handler));
    serve_http(move |request| handler.handle(request)).await
}
