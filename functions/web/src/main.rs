//! `web` function: the settings page; see `connections::handlers::web`.

use connections::handlers::WebHandler;
use connections::handlers::web::WebConfig;
use connections::runtime;
use connections::serve::serve_http;
use lambda_http::Error;

#[tokio::main]
async fn main() -> Result<(), Error> {
    runtime::init_logging();
    let handler = WebHandler::new(&WebConfig::from_env()?);
    // Lives as long as the process.
    let handler: &'static _ = Box::leak(Box::new(handler));
    serve_http(move |request| handler.handle(request)).await
}
