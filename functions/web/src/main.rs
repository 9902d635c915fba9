//! `web` function: the settings page; see `connections::handlers::web`.

use connections::handlers::WebHandler;
use connections::handlers::web::WebConfig;
use connections::runtime;
use connections::serve::serve_http;
use lambda_http::Error;

fn main() -> Result<(), Error> {
    runtime::start(run())
}

async fn run() -> Result<(), Error> {
    runtime::init_logging();
    let handler = WebHandler::new(&WebConfig::from_env()?);
    // Lives as long as the process.
    let handler: &'static _ = Box::leak(Box::new(handler));
    serve_http(move |request| handler.handle(request)).await
}
