//! "Connect with Bitbucket": OAuth 2.0 authorization code with PKCE, for Bitbucket
//! Cloud (an OAuth consumer) and Data Center (an incoming application link).
//!
//! `clients` is the operator's configuration, `pkce` the round trip's single-use
//! values, `tokens` what is sealed and what token endpoints answer, `endpoint` the
//! calls to them, and `keeper` the single-flight, rotation-safe refresh every use
//! of a stored secret goes through.

pub mod clients;
pub mod endpoint;
pub mod keeper;
pub mod pkce;
pub mod tokens;

pub use clients::{ClientsLoader, OauthClient, OauthClients, OauthSource};
pub use keeper::{TokenKeeper, Usable};
