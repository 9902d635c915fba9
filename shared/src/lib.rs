//! Personal Bitbucket connections: everything the eight Lambda functions share.
//!
//! Route table → function binary → handler module here → ports (`store`, `seal`,
//! `events`) and the Bitbucket `verify`er. The layers and the rules each keeps are in
//! ARCHITECTURE.md at the repository's root.

pub mod aws;
pub mod browse;
pub mod config;
pub mod credential;
pub mod domain;
pub mod events;
pub mod handlers;
pub mod http;
pub mod input;
pub mod oauth;
pub mod origin;
pub mod partition;
pub mod problem;
pub mod routes;
pub mod runtime;
pub mod seal;
pub mod secret;
pub mod serve;
pub mod store;
pub mod text;
pub mod tls;
pub mod username;
pub mod verify;
pub mod work;
