//! Portcullis: a self-hosted, security-first AI gateway.
//!
//! Read it in the order a request travels: [`proxy`] (pingora phases) → [`auth`] →
//! [`limits`] → [`routing`] → [`providers`] → back out through [`proxy`] → [`logging`]. Start-up lives in
//! [`cli`] and [`server`]; [`config`] validates `config.toml`; [`store`] keeps tenants and keys;
//! [`guard`] runs the guardrails over requests and answers; [`audit`] keeps the tamper-evident
//! record of every request and administrative action.

pub mod admin;
pub mod audit;
pub mod auth;
pub mod cli;
pub mod config;
pub mod guard;
pub mod ids;
pub mod limits;
pub mod logging;
pub mod providers;
pub mod proxy;
pub mod routing;
pub mod server;
pub mod store;
pub mod telemetry;
