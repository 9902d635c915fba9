//! Reading through a connection, for the product's import and pull-request
//! pickers: workspaces (projects on Data Center), repositories and branches, in
//! one shape for Cloud and Data Center. One Bitbucket call per page, through the
//! same guarded client as verification. Bitbucket's `next` links are never
//! followed: a cursor holds only a page number (Cloud) or start offset (Data
//! Center), and the next request is built from the connection's own URL.

use serde::Serialize;
use serde_json::Value;

use crate::credential::{Bound, Capability, Resource};
use crate::domain::Connection;
use crate::domain::{Flavor, ServerUrl};
use crate::problem::{ApiError, FieldError};
use crate::text::clean_text;
use crate::verify::client::{Auth, BitbucketHttp, Reply};
use crate::verify::{common_failure, not_json};

/// Items per page asked of Bitbucket (Cloud allows up to 100; pages stay small).
const PAGE_SIZE: u32 = 50;
const QUERY_MAX_CHARS: usize = 100;

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Workspace {
    pub slug: String,
    pub name: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Repository {
    /// The Cloud workspace or the Data Center project key.
    pub workspace: String,
    pub slug: String,
    pub name: String,
    pub clone_url: Option<String>,
    pub default_branch: Option<String>,
    /// Whether this connection's scopes or permissions allow pushing.
    pub can_write: bool,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Branch {
    pub name: String,
    pub commit: Option<String>,
    /// Known on Data Center; Cloud names the default on the repository instead.
    pub default: Option<bool>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Listing<T> {
    pub items: Vec<T>,
    pub next_cursor: Option<String>,
}

/// Where a listing resumes: a Cloud page number or a Data Center start offset.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cursor(u32);

impl Cursor {
    pub fn parse(text: Option<&str>) -> Result<Option<Self>, ApiError> {
        use base64::Engine;
        let Some(text) = text.filter(|t| !t.is_empty()) else { return Ok(None) };
        let decoded = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(text).ok();
        let number = decoded
            .and_then(|bytes| String::from_utf8(bytes).ok())
            .and_then(|t| t.strip_prefix("b1:").and_then(|n| n.parse::<u32>().ok()))
            .filter(|n| (1..=1_000_000).contains(n));
        match number {
            Some(n) => Ok(Some(Self(n))),
            None => Err(ApiError::ValidationFailed {
                errors: vec![FieldError::new(
                    "cursor",
                    "invalid_cursor",
                    "is not a cursor this API returned; start again without it",
                )],
            }),
        }
    }

    fn encode(n: u32) -> String {
        use base64::Engine;
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(format!("b1:{n}"))
    }
}

/// A workspace, project or repository slug from the caller: checked before it
/// becomes part of a Bitbucket URL.
pub fn parse_slug(field: &str, text: &str) -> Result<String, ApiError> {
    let ok = !text.is_empty()
        && text.len() <= 128
        && text != "."
        && text != ".."
        && text.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '~'));
    if ok {
        Ok(text.to_owned())
    } else {
        Err(ApiError::ValidationFailed {
            errors: vec![FieldError::new(field, "invalid", "must be a slug: letters, digits, '-', '_', '.'")],
        })
    }
}

/// A free-text filter: bounded, and stripped of what would break out of a query.
pub fn parse_query(text: Option<&str>) -> Result<Option<String>, ApiError> {
    let Some(text) = text.map(str::trim).filter(|t| !t.is_empty()) else { return Ok(None) };
    if text.chars().count() > QUERY_MAX_CHARS {
        return Err(ApiError::ValidationFailed {
            errors: vec![FieldError::new("q", "invalid", "must be at most 100 characters")],
        });
    }
    Ok(Some(text.chars().filter(|c| !c.is_control() && !matches!(c, '"' | '\\')).collect()))
}

/// One connection, opened, ready to list through.
pub struct Source<'a> {
    pub http: &'a BitbucketHttp,
    pub url: ServerUrl,
    pub connection: &'a Connection,
    pub auth: Auth<'a>,
    pub resource: Option<Resource>,
}

impl Source<'_> {
    fn bound(&self) -> Option<(Bound, &[String])> {
        let bound = self.connection.credential_type.bound_to()?;
        Some((bound, self.resource.as_ref().map(|r| r.parts.as_slice()).unwrap_or_default()))
    }

    fn cloud(&self) -> bool {
        self.url.flavor() == Flavor::Cloud
    }

    async fn get(&self, segments: &[&str], query: &[(&str, String)], what: &str) -> Result<Value, ApiError> {
        let mut url = if self.cloud() {
            self.url.join(segments)
        } else {
            let mut full = vec!["rest", "api", "1.0"];
            full.extend_from_slice(segments);
            self.url.join(&full)
        };
        for (key, value) in query {
            url.query_pairs_mut().append_pair(key, value);
        }
        let reply = self.http.get(url, self.auth).await?;
        read(&reply, self.url.url().host_str().unwrap_or_default(), what)
    }

    fn page_query(&self, cursor: Option<Cursor>) -> Vec<(&'static str, String)> {
        if self.cloud() {
            vec![("pagelen", PAGE_SIZE.to_string()), ("page", cursor.map_or(1, |c| c.0).to_string())]
        } else {
            vec![("limit", PAGE_SIZE.to_string()), ("start", cursor.map_or(0, |c| c.0).to_string())]
        }
    }

    /// The cursor of the page after `body`, from the page counters only.
    fn next(&self, body: &Value, cursor: Option<Cursor>) -> Option<String> {
        if self.cloud() {
            body.get("next").filter(|n| n.is_string()).map(|_| Cursor::encode(cursor.map_or(1, |c| c.0) + 1))
        } else {
            let last = body.get("isLastPage").and_then(Value::as_bool).unwrap_or(true);
            let start = body.get("nextPageStart").and_then(Value::as_u64).and_then(|n| u32::try_from(n).ok());
            start.filter(|_| !last).filter(|n| *n > 0).map(Cursor::encode)
        }
    }

    pub async fn workspaces(&self, cursor: Option<Cursor>) -> Result<Listing<Workspace>, ApiError> {
        if let Some((_, parts)) = self.bound() {
            // A bound token sees one workspace (Cloud) or project (Data Center): no call needed.
            let slug = parts.first().cloned().unwrap_or_default();
            return Ok(Listing { items: vec![Workspace { name: slug.clone(), slug }], next_cursor: None });
        }
        if self.cloud() {
            require(&self.connection.capabilities.list_workspaces)?;
            let body = self.get(&["user", "workspaces"], &self.page_query(cursor), "workspaces").await?;
            let items = values(&body)
                .filter_map(|v| {
                    let w = v.get("workspace").unwrap_or(v);
                    Some(Workspace { slug: text(w, "slug")?, name: text(w, "name").or_else(|| text(w, "slug"))? })
                })
                .collect();
            return Ok(Listing { items, next_cursor: self.next(&body, cursor) });
        }
        let body = self.get(&["projects"], &self.page_query(cursor), "projects").await?;
        let items = values(&body)
            .filter_map(|v| {
                Some(Workspace { slug: text(v, "key")?, name: text(v, "name").or_else(|| text(v, "key"))? })
            })
            .collect();
        Ok(Listing { items, next_cursor: self.next(&body, cursor) })
    }

    pub async fn repositories(
        &self,
        workspace: &str,
        query: Option<&str>,
        cursor: Option<Cursor>,
    ) -> Result<Listing<Repository>, ApiError> {
        require(&self.connection.capabilities.read_code)?;
        let bound = self.bound();
        if bound.is_some_and(|(_, parts)| parts.first().map(String::as_str) != Some(workspace)) {
            return Ok(Listing { items: Vec::new(), next_cursor: None });
        }
        if let Some((Bound::Repository, [_, repo])) = bound {
            // The one repository this token opens.
            let path: Vec<&str> = if self.cloud() {
                vec!["repositories", workspace, repo]
            } else {
                vec!["projects", workspace, "repos", repo]
            };
            let body = self.get(&path, &[], "repository").await?;
            let items = self.repository(&body, workspace).into_iter().filter(|r| matches(r, query)).collect();
            return Ok(Listing { items, next_cursor: None });
        }
        let mut params = self.page_query(cursor);
        let body = if self.cloud() {
            let mut filters = Vec::new();
            if let Some(q) = query {
                filters.push(format!("name ~ \"{q}\""));
            }
            if let Some((Bound::Project, [_, key])) = bound {
                filters.push(format!("project.key = \"{key}\""));
            }
            if !filters.is_empty() {
                params.push(("q", filters.join(" AND ")));
            }
            params.push(("sort", "-updated_on".into()));
            self.get(&["repositories", workspace], &params, "workspace").await?
        } else {
            self.get(&["projects", workspace, "repos"], &params, "project").await?
        };
        // Data Center has no name filter on a project's repositories: filter the page.
        let items = values(&body).filter_map(|v| self.repository(v, workspace)).filter(|r| matches(r, query)).collect();
        Ok(Listing { items, next_cursor: self.next(&body, cursor) })
    }

    pub async fn branches(
        &self,
        workspace: &str,
        repo: &str,
        query: Option<&str>,
        cursor: Option<Cursor>,
    ) -> Result<Listing<Branch>, ApiError> {
        require(&self.connection.capabilities.read_code)?;
        let mut params = self.page_query(cursor);
        let body = if self.cloud() {
            if let Some(q) = query {
                params.push(("q", format!("name ~ \"{q}\"")));
            }
            self.get(&["repositories", workspace, repo, "refs", "branches"], &params, "repository").await?
        } else {
            if let Some(q) = query {
                params.push(("filterText", q.to_owned()));
            }
            self.get(&["projects", workspace, "repos", repo, "branches"], &params, "repository").await?
        };
        let items = values(&body)
            .filter_map(|v| {
                Some(Branch {
                    name: text(v, "name").or_else(|| text(v, "displayId"))?,
                    commit: v
                        .get("target")
                        .and_then(|t| text(t, "hash"))
                        .or_else(|| text(v, "latestCommit"))
                        .filter(|h| h.len() <= 64 && h.chars().all(|c| c.is_ascii_hexdigit())),
                    default: v.get("isDefault").and_then(Value::as_bool),
                })
            })
            .collect();
        Ok(Listing { items, next_cursor: self.next(&body, cursor) })
    }

    fn repository(&self, v: &Value, workspace: &str) -> Option<Repository> {
        let clone_name = if self.cloud() { "https" } else { "http" };
        let clone_url = v
            .get("links")
            .and_then(|l| l.get("clone"))
            .and_then(Value::as_array)
            .and_then(|links| links.iter().find(|l| l.get("name").and_then(Value::as_str) == Some(clone_name)))
            .and_then(|l| l.get("href").and_then(Value::as_str))
            .and_then(clone_url);
        Some(Repository {
            workspace: v.get("workspace").and_then(|w| text(w, "slug")).unwrap_or_else(|| workspace.to_owned()),
            slug: text(v, "slug")?,
            name: text(v, "name").or_else(|| text(v, "slug"))?,
            clone_url,
            default_branch: v.get("mainbranch").and_then(|b| text(b, "name")),
            can_write: self.connection.capabilities.push.enabled,
        })
    }
}

fn matches(repository: &Repository, query: Option<&str>) -> bool {
    query.is_none_or(|q| {
        let q = q.to_lowercase();
        repository.name.to_lowercase().contains(&q) || repository.slug.to_lowercase().contains(&q)
    })
}

/// A clone URL from Bitbucket, without the user name Cloud embeds in it.
fn clone_url(href: &str) -> Option<String> {
    let mut url = url::Url::parse(href).ok()?;
    if !matches!(url.scheme(), "https" | "http") || href.len() > 2048 {
        return None;
    }
    url.set_username("").ok()?;
    url.set_password(None).ok()?;
    Some(url.to_string())
}

fn require(capability: &Capability) -> Result<(), ApiError> {
    if capability.enabled {
        return Ok(());
    }
    let needs = capability.needs.clone().unwrap_or_else(|| "a permission this kind of token cannot have".into());
    Err(ApiError::MissingPermissions {
        missing: vec![needs.clone()],
        granted: Vec::new(),
        detail: format!(
            "This connection cannot do that: it needs {needs}. Edit the connection with a token that has it."
        ),
    })
}

fn values(body: &Value) -> impl Iterator<Item = &Value> {
    body.get("values").and_then(Value::as_array).into_iter().flatten().take(PAGE_SIZE as usize * 2)
}

fn text(value: &Value, key: &str) -> Option<String> {
    value.get(key).and_then(Value::as_str).and_then(clean_text)
}

/// Bitbucket's answer to a listing, or the problem it means for the caller.
fn read(reply: &Reply, host: &str, what: &str) -> Result<Value, ApiError> {
    match reply.status.as_u16() {
        200 => reply.json().filter(Value::is_object).ok_or_else(|| not_json(host)),
        401 => Err(ApiError::InvalidCredentials {
            detail: "Bitbucket no longer accepts this connection's credentials, so it is now marked invalid. Edit it with a new token.".into(),
        }),
        403 => {
            let detail = reply.json().and_then(|v| v.get("error")?.get("detail").cloned()).unwrap_or(Value::Null);
            let list = |key: &str| -> Vec<String> {
                detail.get(key).and_then(Value::as_array).into_iter().flatten().filter_map(Value::as_str).filter_map(clean_text).take(64).collect()
            };
            let granted = list("granted");
            let missing: Vec<String> = list("required").into_iter().filter(|s| !granted.contains(s)).collect();
            Err(ApiError::MissingPermissions {
                detail: if missing.is_empty() {
                    format!("Bitbucket refused this connection access to the {what}.")
                } else {
                    format!("This needs {}, which the connection's token lacks.", missing.join(", "))
                },
                missing,
                granted,
            })
        }
        404 => Err(ApiError::BitbucketNotFound {
            detail: format!("Bitbucket has no such {what}, or this connection cannot see it."),
        }),
        410 => Err(ApiError::BitbucketUnavailable {
            detail: "Bitbucket has removed this API (CHANGE-2770).".into(),
        }),
        _ => Err(common_failure(reply, host)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_hold_only_a_page_counter() {
        let cursor = Cursor::encode(3);
        assert_eq!(Cursor::parse(Some(&cursor)).unwrap(), Some(Cursor(3)));
        assert_eq!(Cursor::parse(None).unwrap(), None);
        for bad in ["x", "aHR0cHM6Ly9ldmlsLmV4YW1wbGUv", &Cursor::encode(0)] {
            assert!(Cursor::parse(Some(bad)).is_err(), "{bad}");
        }
    }

    #[test]
    fn clone_urls_lose_their_user_name() {
        assert_eq!(
            clone_url("https://jdoe@bitbucket.org/acme/api.git").as_deref(),
            Some("https://bitbucket.org/acme/api.git")
        );
        assert_eq!(clone_url("ssh://git@bitbucket.org/acme/api.git"), None);
    }

    #[test]
    fn queries_cannot_break_out_of_a_filter() {
        assert_eq!(parse_query(Some("a\" OR name ~ \"b")).unwrap().as_deref(), Some("a OR name ~ b"));
        assert!(parse_query(Some(&"x".repeat(101))).is_err());
        assert!(parse_slug("workspace", "../etc").is_err());
    }
}
