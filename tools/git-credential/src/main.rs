//! `git-credential-bitbucket-connections`: a git credential helper for the
//! product's workers. git runs it as
//!
//! ```text
//! git -c credential.helper='bitbucket-connections --owner <sub> --connection <id>' clone https://bitbucket.org/ws/repo.git
//! ```
//!
//! and it asks the `credentials` function (AWS Lambda Invoke; with `--local`,
//! the `cargo lambda watch` of `scripts/run` on 127.0.0.1:9000) for the
//! connection's git credentials. It answers only for the host the connection
//! clones from, so a credential never goes to another server. `store` and
//! `erase` do nothing: the connection service owns the secret.

use std::io::{BufRead, Write};
use std::time::Duration;

use aws_config::Region;
use aws_sdk_lambda::config::Credentials;
use aws_sdk_lambda::primitives::Blob;
use serde_json::{Value, json};

const USAGE: &str = "usage: git-credential-bitbucket-connections --owner <sub> --connection <id> [--function <name or ARN>] [--caller <name>] [--local[=<url>]] get|store|erase";

struct Options {
    owner: String,
    connection: String,
    function: String,
    caller: String,
    local: Option<String>,
    action: String,
}

fn options(args: impl Iterator<Item = String>) -> Result<Options, String> {
    let mut args = args.peekable();
    let mut found = Options {
        owner: String::new(),
        connection: String::new(),
        function: std::env::var("BITBUCKET_CONNECTIONS_FUNCTION").unwrap_or_else(|_| "credentials".into()),
        caller: "git-credential-helper".into(),
        local: None,
        action: String::new(),
    };
    while let Some(arg) = args.next() {
        let mut value = |name: &str| args.next().ok_or(format!("{name} needs a value"));
        match arg.as_str() {
            "--owner" => found.owner = value("--owner")?,
            "--connection" => found.connection = value("--connection")?,
            "--function" => found.function = value("--function")?,
            "--caller" => found.caller = value("--caller")?,
            "--local" => found.local = Some("http://127.0.0.1:9000".into()),
            local if local.starts_with("--local=") => found.local = Some(local["--local=".len()..].to_owned()),
            "get" | "store" | "erase" => found.action = arg,
            other => return Err(format!("unknown argument {other}")),
        }
    }
    if found.action.is_empty() || found.owner.is_empty() || found.connection.is_empty() {
        return Err(USAGE.into());
    }
    Ok(found)
}

/// git's request: `key=value` lines up to a blank line or the end.
fn read_request(input: impl BufRead) -> Vec<(String, String)> {
    input
        .lines()
        .map_while(Result::ok)
        .take_while(|line| !line.is_empty())
        .filter_map(|line| line.split_once('=').map(|(k, v)| (k.to_owned(), v.to_owned())))
        .collect()
}

/// Whether git asks for what the connection clones from: its origin and, for a
/// Data Center behind a context path (`https://host/bitbucket/scm/`), a repository
/// under that path.
fn asks_for(request: &[(String, String)], clone_base: &str) -> Result<bool, String> {
    let get = |key: &str| request.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str());
    let Ok(base) = url::Url::parse(clone_base) else { return Ok(false) };
    let port = base.port().map(|p| format!(":{p}")).unwrap_or_default();
    let same_origin = get("protocol") == Some(base.scheme())
        && get("host") == Some(&format!("{}{port}", base.host_str().unwrap_or_default()));
    if !same_origin {
        return Ok(false);
    }
    let under = base.path().trim_start_matches('/');
    match get("path") {
        Some(path) => Ok(path.starts_with(under)),
        // git sends the path only with credential.useHttpPath; without it, a server
        // shared by several applications under one host cannot be told apart.
        None if under.is_empty() || under == "scm/" => Ok(true),
        None => Err(format!(
            "this connection's server lives under /{under}: run git with -c credential.useHttpPath=true so that the helper can check the repository is under it"
        )),
    }
}

/// git's protocol is one `key=value` per line: a value holding a line break or NUL
/// would smuggle keys of its own (`\nhost=evil.example`).
fn line_safe(value: &str) -> Result<&str, String> {
    if value.contains(['\n', '\r', '\0']) {
        return Err(
            "the credentials hold a line break or NUL, which git's credential protocol cannot carry; nothing was sent"
                .into(),
        );
    }
    Ok(value)
}

async fn invoke(options: &Options) -> Result<Value, String> {
    let config = match &options.local {
        // The local runtime does not check signatures; SigV4 still needs some keys.
        Some(endpoint) => {
            connections::aws::loader()
                .endpoint_url(endpoint)
                .region(Region::new("us-east-1"))
                .credentials_provider(Credentials::new("local", "local", None, None, "local"))
                .load()
                .await
        }
        // A worker host's role, wherever the standard chain finds it (environment,
        // profile, container, instance metadata).
        None => {
            connections::partition::prepare(|name| std::env::var(name).ok().filter(|value| !value.is_empty()));
            connections::aws::loader().load().await
        }
    };
    // The service's 5 s budget is for its own calls; a function's cold start (or,
    // locally, its first build) takes longer.
    let patient = aws_sdk_lambda::config::Builder::from(&config).timeout_config(
        aws_config::timeout::TimeoutConfig::builder()
            .operation_attempt_timeout(Duration::from_secs(120))
            .operation_timeout(Duration::from_secs(240))
            .build(),
    );
    let client = aws_sdk_lambda::Client::from_conf(patient.build());
    let request = json!({
        "action": "get",
        "owner": options.owner,
        "connection_id": options.connection,
        "purpose": "git",
        "caller": options.caller,
    });
    let output =
        client.invoke().function_name(&options.function).payload(Blob::new(request.to_string())).send().await.map_err(
            |e| format!("could not invoke {}: {}", options.function, aws_sdk_lambda::error::DisplayErrorContext(e)),
        )?;
    if let Some(error) = output.function_error() {
        return Err(format!("{} failed: {error}", options.function));
    }
    let payload = output.payload().map(|p| p.as_ref().to_vec()).unwrap_or_default();
    serde_json::from_slice(&payload).map_err(|_| format!("{} answered something other than JSON", options.function))
}

/// What git reads back, or `None` to let git try elsewhere.
fn answer(request: &[(String, String)], credentials: &Value) -> Result<Option<String>, String> {
    if credentials["ok"] != json!(true) {
        let code = credentials["code"].as_str().unwrap_or("error");
        let detail = credentials["detail"].as_str().unwrap_or_default();
        return Err(format!("{code}: {detail}"));
    }
    let base = credentials["clone_url_base"].as_str().unwrap_or_default();
    if !asks_for(request, base)? {
        return Ok(None);
    }
    if let (Some(user), Some(password)) = (credentials["username"].as_str(), credentials["password"].as_str()) {
        return Ok(Some(format!("username={}\npassword={}\n", line_safe(user)?, line_safe(password)?)));
    }
    let header = credentials["http_extra_header"].as_str().unwrap_or_default();
    let token = line_safe(header.strip_prefix("Authorization: Bearer ").unwrap_or_default())?;
    let can_bearer = request.iter().any(|(k, v)| k == "capability[]" && v == "authtype");
    if can_bearer && !token.is_empty() {
        return Ok(Some(format!("capability[]=authtype\nauthtype=Bearer\ncredential={token}\n")));
    }
    Err("this connection's token is Bearer-only: use git 2.46 or later, or pass the header with -c http.extraHeader"
        .into())
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let options = match options(std::env::args().skip(1)) {
        Ok(options) => options,
        Err(message) => {
            eprintln!("{message}");
            std::process::exit(2);
        }
    };
    let request = read_request(std::io::stdin().lock());
    if options.action != "get" {
        return;
    }
    let reply = match invoke(&options).await.and_then(|credentials| answer(&request, &credentials)) {
        Ok(reply) => reply,
        Err(message) => {
            // git goes on without credentials (and may prompt); say why on stderr only.
            eprintln!("bitbucket-connections: {message}");
            None
        }
    };
    if let Some(reply) = reply {
        let _ = std::io::stdout().write_all(reply.as_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(lines: &str) -> Vec<(String, String)> {
        read_request(lines.as_bytes())
    }

    #[test]
    fn answers_only_for_the_connections_own_host() {
        let credentials = json!({"ok": true, "clone_url_base": "https://bitbucket.org/", "username": "x-token-auth", "password": "s"});
        let asked = request("protocol=https\nhost=bitbucket.org\npath=acme/api.git\n\n");
        assert_eq!(answer(&asked, &credentials).unwrap().as_deref(), Some("username=x-token-auth\npassword=s\n"));
        let elsewhere = request("protocol=https\nhost=evil.example\n\n");
        assert_eq!(answer(&elsewhere, &credentials).unwrap(), None);
        let downgraded = request("protocol=http\nhost=bitbucket.org\n\n");
        assert_eq!(answer(&downgraded, &credentials).unwrap(), None);
    }

    #[test]
    fn a_value_with_a_line_break_or_nul_is_never_written() {
        let asked = request("protocol=https\nhost=bitbucket.org\n\n");
        for smuggled in ["x-token-auth\nhost=evil.example", "user\r", "us\0er"] {
            let as_user =
                json!({"ok": true, "clone_url_base": "https://bitbucket.org/", "username": smuggled, "password": "s"});
            assert!(answer(&asked, &as_user).is_err(), "{smuggled:?}");
            let as_password =
                json!({"ok": true, "clone_url_base": "https://bitbucket.org/", "username": "u", "password": smuggled});
            assert!(answer(&asked, &as_password).is_err(), "{smuggled:?}");
        }
        let bearer = json!({"ok": true, "clone_url_base": "https://bitbucket.org/", "http_extra_header": "Authorization: Bearer t\nhost=evil"});
        assert!(answer(&request("capability[]=authtype\nprotocol=https\nhost=bitbucket.org\n\n"), &bearer).is_err());
    }

    #[test]
    fn behind_a_context_path_only_repositories_under_it_are_answered() {
        let credentials =
            json!({"ok": true, "clone_url_base": "https://git.corp/bitbucket/scm/", "username": "u", "password": "s"});
        let under = request("protocol=https\nhost=git.corp\npath=bitbucket/scm/ops/infra.git\n\n");
        assert_eq!(answer(&under, &credentials).unwrap().as_deref(), Some("username=u\npassword=s\n"));
        let beside = request("protocol=https\nhost=git.corp\npath=jenkins/job.git\n\n");
        assert_eq!(answer(&beside, &credentials).unwrap(), None);
        let unknown = request("protocol=https\nhost=git.corp\n\n");
        assert!(answer(&unknown, &credentials).unwrap_err().contains("useHttpPath"));
        let root = json!({"ok": true, "clone_url_base": "https://git.corp/scm/", "username": "u", "password": "s"});
        assert!(answer(&unknown, &root).unwrap().is_some(), "no context path: the host is the server's own");
    }

    #[test]
    fn bearer_only_tokens_need_gits_authtype_capability() {
        let credentials = json!({"ok": true, "clone_url_base": "https://git.corp/scm/", "http_extra_header": "Authorization: Bearer t"});
        let modern = request("capability[]=authtype\nprotocol=https\nhost=git.corp\n\n");
        assert_eq!(
            answer(&modern, &credentials).unwrap().as_deref(),
            Some("capability[]=authtype\nauthtype=Bearer\ncredential=t\n")
        );
        assert!(answer(&request("protocol=https\nhost=git.corp\n\n"), &credentials).is_err());
    }

    #[test]
    fn refusals_are_reported_not_answered() {
        let refused = json!({"ok": false, "code": "connection_invalid", "detail": "revoked"});
        assert_eq!(
            answer(&request("protocol=https\nhost=bitbucket.org\n"), &refused).unwrap_err(),
            "connection_invalid: revoked"
        );
    }

    #[test]
    fn options_name_owner_connection_and_action() {
        let args = ["--owner", "u", "--connection", "c", "--local", "get"].map(String::from);
        let parsed = options(args.into_iter()).unwrap();
        assert_eq!((parsed.owner.as_str(), parsed.action.as_str()), ("u", "get"));
        assert_eq!(parsed.local.as_deref(), Some("http://127.0.0.1:9000"));
        assert!(options(["get".to_owned()].into_iter()).is_err());
    }
}
