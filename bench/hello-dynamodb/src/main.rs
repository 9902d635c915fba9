//! The second cold-start floor: `hello` plus what every function must do before its
//! first event with the required stack, building aws-sdk-dynamodb's client from the
//! SDK configuration the functions use, on one thread as they run. A function's
//! start-up above this floor is the service's own; above `hello`, this floor is the
//! SDK's and the runtime choice's.

use lambda_http::{Body, Error, Request, Response, service_fn};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    let client = aws_sdk_dynamodb::Client::new(&connections::aws::sdk_config()?);
    lambda_http::run(service_fn(move |_: Request| {
        let answer = format!("hello from {}", client.config().region().map_or("nowhere", |r| r.as_ref()));
        async move { Ok::<_, Error>(Response::new(Body::from(answer))) }
    }))
    .await
}
