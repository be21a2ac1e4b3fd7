//! The application layer: what every front end (CLI, admin API, console, scheduler) calls.
//!
//! Front ends parse input into checked types ([`IssueKey`], [`IssueAction`],
//! [`crate::subscribers::SubscriberEmail`]) and present results; this layer decides — it asks
//! the state machine ([`crate::issues::IssueStatus::allows`]), applies the change through
//! [`Store`] (which stores and holds no business rule) and writes the one operator-log entry,
//! in one vocabulary, naming who acted ([`Actor`]).
//!
//! Errors are typed so that every front end maps them the same way: [`OpsError::WrongState`],
//! [`OpsError::NotFound`] and [`OpsError::Invalid`] are the caller's (409 / 404 / 422 over
//! HTTP, exit code 2 in the CLI); [`OpsError::Forbidden`] too (403 / exit 2);
//! [`OpsError::Internal`] is ours (a database outage: 500, exit 1).
//!
//! [`IssueKey`]: crate::issues::IssueKey
//! [`IssueAction`]: crate::issues::IssueAction

pub mod bounces;
pub mod checks;
pub mod comparisons;
pub mod console;
pub mod doctor;
pub mod engagement;
pub mod issue_check;
pub mod issues;
pub mod operators;
pub mod schedule;
pub mod subscribers;
pub mod worker;

use std::fmt;
use std::sync::Arc;

use tokio::sync::OnceCell;

use crate::config::{SecretKey, Settings};
use crate::delivery::Engine;
use crate::issues::{ActionKind, IsoWeek, IssueKey, IssueStatus};
use crate::render::Renderer;
use crate::store::Store;

/// Who did something: the operator log's `actor` column.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Actor {
    /// The `verdicts` command line on the server.
    Cli,
    /// The JSON admin API (bearer token).
    Api,
    /// The scheduler in `serve` (weekly fires, scheduled issues).
    Scheduler,
    /// A signed-in operator of the console, by address.
    Operator(String),
    /// verdicts itself: automatic pauses (failures, a stalled transport, the circuit breaker,
    /// a full sending window) and resumes (the window has room again).
    System,
    /// A reader on their own manage page (`/manage/{token}`).
    Reader,
}

impl fmt::Display for Actor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Actor::Cli => f.write_str("cli"),
            Actor::Api => f.write_str("api"),
            Actor::Scheduler => f.write_str("scheduler"),
            Actor::Operator(email) => write!(f, "operator:{email}"),
            Actor::System => f.write_str("system"),
            Actor::Reader => f.write_str("reader"),
        }
    }
}

/// What the operator log records: `issue.<action>`, `subscribers.<verb>`, `comparisons.import`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Activity {
    IssueCreate,
    Issue(ActionKind),
    SubscribersAdd,
    SubscribersImport,
    SubscribersRemove,
    SubscribersExport,
    SubscribersRepermission,
    ComparisonsImport,
    BouncesImport,
    OperatorAdd,
    OperatorRemove,
    OperatorPasswd,
    OperatorLogin,
    OperatorLogout,
    OperatorTotp,
    OperatorTotpDisable,
    OperatorRecoveryCode,
}

impl fmt::Display for Activity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Activity::IssueCreate => f.write_str("issue.create"),
            Activity::Issue(action) => write!(f, "issue.{action}"),
            Activity::SubscribersAdd => f.write_str("subscribers.add"),
            Activity::SubscribersImport => f.write_str("subscribers.import"),
            Activity::SubscribersRemove => f.write_str("subscribers.remove"),
            Activity::SubscribersExport => f.write_str("subscribers.export"),
            Activity::SubscribersRepermission => f.write_str("subscribers.repermission"),
            Activity::ComparisonsImport => f.write_str("comparisons.import"),
            Activity::BouncesImport => f.write_str("bounces.import"),
            Activity::OperatorAdd => f.write_str("operators.add"),
            Activity::OperatorRemove => f.write_str("operators.remove"),
            Activity::OperatorPasswd => f.write_str("operators.passwd"),
            Activity::OperatorLogin => f.write_str("operators.login"),
            Activity::OperatorLogout => f.write_str("operators.logout"),
            Activity::OperatorTotp => f.write_str("operators.totp"),
            Activity::OperatorTotpDisable => f.write_str("operators.totp.disable"),
            Activity::OperatorRecoveryCode => f.write_str("operators.recovery_code"),
        }
    }
}

/// Why an operation did not happen.
#[derive(Debug, thiserror::Error)]
pub enum OpsError {
    /// No issue (or subscriber) by that key.
    #[error("no issue {0}")]
    NotFound(IssueKey),
    /// The state machine does not allow the action from the issue's status.
    #[error("cannot {action} issue {week}: the issue is {from}{}", hint(*from, *action))]
    WrongState {
        week: IsoWeek,
        from: IssueStatus,
        action: ActionKind,
    },
    /// Input that parsed but cannot be used (a field named when there is one).
    #[error("{}{message}", field.as_deref().map(|f| format!("{f}: ")).unwrap_or_default())]
    Invalid {
        field: Option<String>,
        message: String,
    },
    /// The actor may not do this (an editor managing operators).
    #[error("{0}")]
    Forbidden(String),
    /// Our failure (database, mail transport, rendering): not the caller's.
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

impl OpsError {
    pub fn invalid(field: &str, message: impl Into<String>) -> OpsError {
        OpsError::Invalid {
            field: Some(field.to_string()),
            message: message.into(),
        }
    }
}

/// What to do instead, where there is an obvious next step.
fn hint(from: IssueStatus, action: ActionKind) -> String {
    let allowed: Vec<&str> = IssueStatus::allowing(action)
        .into_iter()
        .map(IssueStatus::as_str)
        .collect();
    let also = match (from, action) {
        (IssueStatus::Paused, ActionKind::Send) => "; `resume` continues it",
        (IssueStatus::Sending, ActionKind::Send) => "; it is already sending",
        _ => "",
    };
    format!(" (allowed when {}){also}", allowed.join(" or "))
}

/// The application: the store plus what operations need, built once per process and shared by
/// every front end of that process.
#[derive(Clone)]
pub struct App {
    inner: Arc<Inner>,
}

struct Inner {
    store: Store,
    settings: Arc<Settings>,
    secret: SecretKey,
    renderer: Arc<Renderer>,
    /// The delivery engine (SMTP pool, DKIM key) of this process, built on first use.
    engine: OnceCell<Engine>,
    /// The categories readers may choose, as last read, and when (see
    /// [`App::known_categories`]).
    categories: std::sync::Mutex<Option<(std::time::Instant, Arc<Vec<String>>)>>,
    /// The last pre-send checks of each issue, for the console's issue page
    /// ([`App::pre_send_checks`]).
    checks: std::sync::Mutex<std::collections::HashMap<i64, issues::CachedChecks>>,
    /// Who this `App` is when it claims a scheduled fire (see [`App::fire`]): its own
    /// unfinished claim it may retry at once.
    claimant: String,
    /// The last write probe's answer and when (see [`App::writes_work`]).
    write_probe: std::sync::Mutex<Option<(std::time::Instant, Result<(), String>)>>,
    /// Per issue, its readers without a matching category and when they were counted
    /// ([`App::audience_now`]).
    audience: std::sync::Mutex<std::collections::HashMap<i64, (std::time::Instant, i64)>>,
}

impl fmt::Debug for App {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("App").finish_non_exhaustive()
    }
}

impl App {
    pub fn new(
        store: Store,
        settings: Arc<Settings>,
        secret: SecretKey,
        renderer: Arc<Renderer>,
    ) -> App {
        App {
            inner: Arc::new(Inner {
                store,
                settings,
                secret,
                renderer,
                engine: OnceCell::new(),
                categories: std::sync::Mutex::new(None),
                checks: Default::default(),
                write_probe: std::sync::Mutex::new(None),
                claimant: format!("{}-{:016x}", std::process::id(), rand::random::<u64>()),
                audience: Default::default(),
            }),
        }
    }

    /// The store, for the application layer only: front ends call `App` methods, which decide.
    pub(in crate::app) fn store(&self) -> &Store {
        &self.inner.store
    }

    pub fn settings(&self) -> &Arc<Settings> {
        &self.inner.settings
    }

    pub fn secret(&self) -> &SecretKey {
        &self.inner.secret
    }

    pub fn renderer(&self) -> &Arc<Renderer> {
        &self.inner.renderer
    }

    /// The delivery engine of this process, built once (its SMTP pool and DKIM key are reused
    /// by every send and test send).
    pub async fn engine(&self) -> anyhow::Result<&Engine> {
        self.inner
            .engine
            .get_or_try_init(|| async {
                Engine::new(
                    self.inner.store.clone(),
                    self.inner.settings.clone(),
                    self.inner.secret.clone(),
                    self.inner.renderer.clone(),
                )
            })
            .await
    }

    fn check_cache(
        &self,
    ) -> std::sync::MutexGuard<'_, std::collections::HashMap<i64, issues::CachedChecks>> {
        self.inner
            .checks
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn audience_cache(
        &self,
    ) -> std::sync::MutexGuard<'_, std::collections::HashMap<i64, (std::time::Instant, i64)>> {
        self.inner
            .audience
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Closes the database pools: the last call of a one-shot command.
    pub async fn close(&self) {
        self.inner.store.close().await;
    }

    /// Whether the database answers a read, and takes a write (`/readyz`).
    pub async fn ping(&self) -> anyhow::Result<()> {
        self.inner.store.ping().await
    }

    /// One small committed write through the writer (`/readyz`): a full disk or a poisoned
    /// writer shows here, not only on the next signup.
    pub async fn probe_write(&self) -> anyhow::Result<()> {
        self.inner.store.probe_write().await
    }

    /// Writes one operator-log entry.
    pub async fn log(
        &self,
        actor: &Actor,
        activity: Activity,
        issue_id: Option<i64>,
        detail: &str,
    ) -> anyhow::Result<()> {
        self.inner
            .store
            .log_operator_action(&actor.to_string(), &activity.to_string(), issue_id, detail)
            .await
    }
}

impl App {
    /// The `doctor` report of this installation (see [`doctor`]).
    pub async fn doctor(&self) -> Vec<checks::Check> {
        doctor::report(self.settings(), Ok(self.store())).await
    }
}
