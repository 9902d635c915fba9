//! `list` function: see `connections::handlers::list`.

use connections::config::Config;
use connections::handlers::ListHandler;
use connections::runtime;
use connections::serve::serve_http;
use lambda_http::Error;

fn main() -> Result<(), Error> {
    runtime::start(run())
}

async fn run() -> Result<(), Error> {
    runtime::init_logging();
    let config = Config::from_env()?;
    let handler = ListHandler { store: runtime::connections(&config).await?, settings: config.settings };
    // Lives as long as the process.
    let handler: &'static _ = Box::leak(Box::new(handler));
    serve_http(move |request| handler.handle(request)).await
}
