//! What API Gateway's HTTP API does around a function: a request becomes a payload
//! format 2.0 event, and the function's answer becomes the HTTP response.

use axum::body::Body;
use std::net::IpAddr;

use axum::http::request::Parts;
use axum::http::{HeaderName, HeaderValue, Response, StatusCode};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use connections::routes::Matched;
use serde_json::{Map, Value, json};
use time::OffsetDateTime;
use time::macros::format_description;

/// The event API Gateway sends for a request that took `route`. No JWT
/// authorizer runs locally: the functions take the development identity.
pub fn event(route: &Matched<'_>, request: &Parts, peer: IpAddr, body: &[u8], request_id: &str) -> Value {
    let (method, uri, headers) = (&request.method, &request.uri, &request.headers);
    // API Gateway joins repeated headers with commas and hands cookies over apart.
    let mut joined: Map<String, Value> = Map::new();
    let mut cookies = Vec::new();
    for (name, value) in headers {
        let value = String::from_utf8_lossy(value.as_bytes()).into_owned();
        if name == "cookie" {
            cookies.extend(value.split(';').map(|c| Value::String(c.trim().to_owned())));
            continue;
        }
        match joined.get_mut(name.as_str()) {
            Some(Value::String(earlier)) => {
                earlier.push(',');
                earlier.push_str(&value);
            }
            _ => {
                joined.insert(name.as_str().to_owned(), Value::String(value));
            }
        }
    }
    let (body, encoded) = match std::str::from_utf8(body) {
        _ if body.is_empty() => (Value::Null, false),
        Ok(text) => (Value::String(text.to_owned()), false),
        Err(_) => (Value::String(STANDARD.encode(body)), true),
    };
    let now = OffsetDateTime::now_utc();
    let time = now.format(format_description!("[day]/[month repr:short]/[year]:[hour]:[minute]:[second] +0000"));
    let route_key = route.route.key();
    let mut event = json!({
        "version": "2.0",
        "routeKey": route_key,
        "rawPath": uri.path(),
        "rawQueryString": uri.query().unwrap_or(""),
        "headers": joined,
        "requestContext": {
            "accountId": "000000000000",
            "apiId": "local",
            "domainName": headers.get("host").and_then(|h| h.to_str().ok()).unwrap_or("127.0.0.1"),
            "domainPrefix": "local",
            "http": {
                "method": method.as_str(),
                "path": uri.path(),
                "protocol": "HTTP/1.1",
                "sourceIp": peer.to_string(),
                "userAgent": headers.get("user-agent").and_then(|h| h.to_str().ok()).unwrap_or(""),
            },
            "requestId": request_id,
            "routeKey": route_key,
            "stage": "$default",
            "time": time.unwrap_or_default(),
            "timeEpoch": now.unix_timestamp() * 1000 + i64::from(now.millisecond()),
        },
        "isBase64Encoded": encoded,
    });
    if !body.is_null() {
        event["body"] = body;
    }
    if !cookies.is_empty() {
        event["cookies"] = Value::Array(cookies);
    }
    if !route.parameters.is_empty() {
        let parameters: Map<String, Value> = route
            .parameters
            .iter()
            .map(|(name, value)| ((*name).to_owned(), Value::String((*value).to_owned())))
            .collect();
        event["pathParameters"] = Value::Object(parameters);
    }
    let query = query_parameters(uri.query().unwrap_or(""));
    if !query.is_empty() {
        event["queryStringParameters"] = Value::Object(query);
    }
    event
}

/// Decoded, repeated names joined with commas, as API Gateway does.
fn query_parameters(query: &str) -> Map<String, Value> {
    let mut parameters: Map<String, Value> = Map::new();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        let (name, value) = (decode(name), decode(value));
        match parameters.get_mut(&name) {
            Some(Value::String(earlier)) => {
                earlier.push(',');
                earlier.push_str(&value);
            }
            _ => {
                parameters.insert(name, Value::String(value));
            }
        }
    }
    parameters
}

fn decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| char::from(b).to_digit(16);
        match (bytes[i], bytes.get(i + 1).copied().and_then(hex), bytes.get(i + 2).copied().and_then(hex)) {
            (b'%', Some(high), Some(low)) => {
                out.push(u8::try_from(high * 16 + low).unwrap_or(b'?'));
                i += 3;
            }
            (b'+', ..) => {
                out.push(b' ');
                i += 1;
            }
            (byte, ..) => {
                out.push(byte);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The HTTP response for the function's payload format 2.0 answer.
pub fn response(answer: &Value) -> Response<Body> {
    let status =
        answer["statusCode"].as_u64().and_then(|s| u16::try_from(s).ok()).and_then(|s| StatusCode::from_u16(s).ok());
    let Some(status) = status else {
        // API Gateway's own answer to a malformed Lambda response.
        return plain(StatusCode::INTERNAL_SERVER_ERROR, r#"{"message":"Internal Server Error"}"#);
    };
    let mut builder = Response::builder().status(status);
    for (name, value) in answer["headers"].as_object().into_iter().flatten() {
        if let (Ok(name), Some(Ok(value))) =
            (HeaderName::try_from(name.as_str()), value.as_str().map(HeaderValue::from_str))
        {
            builder = builder.header(name, value);
        }
    }
    for (name, values) in answer["multiValueHeaders"].as_object().into_iter().flatten() {
        for value in values.as_array().into_iter().flatten().filter_map(Value::as_str) {
            if let (Ok(name), Ok(value)) = (HeaderName::try_from(name.as_str()), HeaderValue::from_str(value)) {
                builder = builder.header(name, value);
            }
        }
    }
    for cookie in answer["cookies"].as_array().into_iter().flatten().filter_map(Value::as_str) {
        if let Ok(value) = HeaderValue::from_str(cookie) {
            builder = builder.header("set-cookie", value);
        }
    }
    let text = answer["body"].as_str().unwrap_or("");
    let body = if answer["isBase64Encoded"].as_bool() == Some(true) {
        STANDARD.decode(text).unwrap_or_default()
    } else {
        text.as_bytes().to_vec()
    };
    builder.body(Body::from(body)).unwrap_or_else(|_| plain(StatusCode::INTERNAL_SERVER_ERROR, "{}"))
}

/// An answer API Gateway gives itself, before or instead of a function.
pub fn plain(status: StatusCode, json: &'static str) -> Response<Body> {
    let mut response = Response::new(Body::from(json));
    *response.status_mut() = status;
    response.headers_mut().insert("content-type", HeaderValue::from_static("application/json"));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_parameters_are_decoded_and_repeats_joined() {
        let parameters = query_parameters("q=a%20b+c&limit=5&q=d&flag");
        assert_eq!(Value::Object(parameters), json!({"q": "a b c,d", "limit": "5", "flag": ""}));
    }

    #[test]
    fn a_response_keeps_status_headers_cookies_and_binary_bodies() {
        let answer = json!({
            "statusCode": 201,
            "headers": {"content-type": "application/json", "etag": "\"1\""},
            "multiValueHeaders": {"vary": ["origin", "accept"]},
            "cookies": ["a=1; Secure"],
            "body": "AAEC",
            "isBase64Encoded": true
        });
        let answered = response(&answer);
        assert_eq!(answered.status(), 201);
        assert_eq!(answered.headers()["etag"], "\"1\"");
        assert_eq!(answered.headers().get_all("vary").iter().count(), 2);
        assert_eq!(answered.headers()["set-cookie"], "a=1; Secure");
        assert_eq!(response(&json!({"body": "x"})).status(), 500, "no status code is API Gateway's 500");
    }
}
