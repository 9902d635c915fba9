//! Test support for the black-box suites: the AWS emulator, a fake Bitbucket
//! that speaks Bitbucket's wire format, API Gateway v2 events, and log capture.

pub mod api;
pub mod emulator;
pub mod fake_bitbucket;
pub mod local;
pub mod logs;
pub mod oauth_flow;
pub mod relay;
pub mod runtime_api;
pub mod seed;
