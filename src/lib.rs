//! # verdicts
//!
//! The self-hosted pipeline behind the *Weekly AI Tool Verdicts* newsletter of the Ship or Skip
//! comparison site: it stores the published "A vs B" comparisons, renders one email a week from
//! them and delivers it over SMTP to every confirmed subscriber, keeping a per-recipient ledger
//! so that a crash never skips or repeats anyone.
//!
//! ## Layout
//! - [`app`] — the application layer every front end calls, and the only one that holds the
//!   store: issue and subscriber operations, the state machine's checks, the signup decision
//!   table, bounces from every intake, the scheduler's decisions, typed errors, the one
//!   operator-log write.
//! - [`config`] — layered, typed settings (`config/default.toml` → `config/local.toml` →
//!   `--config` → `VERDICTS__SECTION__KEY`), checked once at start-up; one file per section.
//! - [`dns`] — the one resolver every DNS look-up uses, with typed answers.
//! - [`comparisons`] — the checked [`comparisons::Comparison`] type, parsed from canonical JSON or
//!   from the text of a published page ([`comparisons::page`]), and file import
//!   ([`comparisons::import`]).
//! - [`issues`] — ISO weeks, issue statuses, and freezing/previewing a week's issue
//!   ([`issues::freeze`]).
//! - [`render`] — Tera + mrml rendering, once per issue, and per-recipient slot filling.
//! - [`delivery`] — the delivery engine: leased claims, a bounded window, group-committed
//!   outcomes, retries and bounces, DKIM.
//! - [`engagement`] — reader votes and click counts without tracking: the signed tokens of
//!   `/vote/` and `/r/` links and the keyed voter hash.
//! - [`json`] — the strict JSON reader (objects only where asked, duplicate keys refused).
//! - [`mail`] — message composition: every header built in Rust.
//! - [`bounces`] — VERP return paths, DSN/ARF parsing, attributing reports to subscribers, the
//!   bounce/complaint policy and the circuit breaker that pauses a send.
//! - [`operators`] — console accounts: roles, the password policy, Argon2id hashing.
//! - [`subscribers`] — checked addresses, the signup/confirm/unsubscribe lifecycle and the
//!   tokens in links.
//! - [`store`] — one storage interface over SQLite and PostgreSQL, with embedded migrations.
//! - [`schedule`] — the weekly cron, catch-up and scheduled issues, idempotent across
//!   processes; [`schedule::fires`] is its cron maths, a leaf the application layer reads.
//! - [`startup`] — builds the application from settings and runs it until shutdown.
//! - [`web`] — HTTP routes, one module per concern, each owning its router; [`web::AppState`];
//!   [`web::console`] is the operator console at `/admin`.
//! - [`cli`] — the `verdicts` command line; `main.rs` only calls [`cli::main`].
//! - [`shutdown`] — the shutdown signal every task watches (SIGTERM, Ctrl-C, a deadline).
//! - [`telemetry`] — tracing set-up (human or JSON logs, quiet interactive commands).
//! - [`text`] — text hygiene every layer shares (forbidden characters, one-line text).
//!
//! Errors that callers branch on are typed (`thiserror`); the rest carry context (`anyhow`). The
//! CLI maps input and usage errors to exit code 2 and runtime failures to 1.

pub mod app;
pub mod bounces;
pub mod cli;
pub mod comparisons;
pub mod config;
pub mod delivery;
pub mod dns;
pub mod engagement;
pub mod issues;
pub mod json;
pub mod mail;
pub mod operators;
pub mod render;
pub mod schedule;
pub mod shutdown;
pub mod startup;
pub mod store;
pub mod subscribers;
pub mod telemetry;
pub mod text;
pub mod web;
