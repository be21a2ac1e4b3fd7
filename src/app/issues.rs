//! Issue operations: find, create, and every action of the state machine, for every front end.

use chrono::{DateTime, Utc};

use super::checks::Check;
use super::{Activity, Actor, App, OpsError};
use crate::issues::freeze::{Created, Preview, create_issue, default_week, preview_issue};
use crate::issues::variants::{self, CategoryMap, Variant};
use crate::issues::{ActionKind, IsoWeek, IssueAction, IssueKey, IssueStatus};
use crate::store::bounces::IssueBounceCounts;
use crate::store::deliveries::{DeliveryCounts, FailedDelivery};
use crate::store::issues::IssueRow;
use crate::store::workers::WorkerRow;
use crate::subscribers::SubscriberEmail;

/// What an action did, beside the issue's new status.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "done", rename_all = "kebab-case")]
pub enum Done {
    /// The send started: this many readers get the issue; `skipped` more are in its ledger
    /// as skipped (paused, or without a matching category).
    Started { recipients: i64, skipped: i64 },
    /// The send will start at this time.
    Scheduled { at: DateTime<Utc> },
    /// The status moved (pause, resume, cancel).
    Moved,
    /// Cancelled before any delivery: this many comparisons went back to wait for the next
    /// issue, and the week can be made again.
    Released { comparisons: u64 },
    /// This many failed deliveries are back in line.
    Retried { deliveries: u64 },
    /// A `[TEST]` copy went to this address (not a delivery).
    TestSent { to: SubscriberEmail },
}

/// What creating the issue of a week came to.
#[derive(Debug, Clone)]
pub enum Creation {
    /// The issue, made now or found.
    Issue(Box<IssueRow>, Created),
    /// The week has nothing new: no issue, nothing written.
    NothingNew(IsoWeek),
}

/// An action that happened: the issue as it is now, and what was done.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Performed {
    pub issue: IssueRow,
    pub action: ActionKind,
    pub done: Done,
}

/// How long the answer of a write probe is reused (see [`App::writes_work`]).
pub const WRITE_PROBE_FRESH: std::time::Duration = std::time::Duration::from_secs(5);

/// An issue with the figures an operator looks at.
#[derive(Debug, Clone, serde::Serialize)]
pub struct IssueReport {
    pub issue: IssueRow,
    pub deliveries: DeliveryCounts,
    /// Messages per second over the last minute.
    pub rate_per_second: f64,
    /// Seconds until nothing is pending at that rate, when it is sending.
    pub eta_seconds: Option<i64>,
    /// Bounces and complaints attributed to the issue, and their rates per message sent.
    pub bounces: IssueBounceCounts,
    pub hard_bounce_rate: Option<f64>,
    pub complaint_rate: Option<f64>,
    /// The installation-wide limits and where they stand.
    pub limits: SendLimits,
    /// The workers sending it now (heartbeat within two leases), with their rates.
    pub workers: Vec<WorkerRow>,
    /// Why a send with pending deliveries is not moving, when this process can tell: the
    /// database refuses writes, or no worker is sending it. (A failing transport is the issue's
    /// `transport_error`.)
    pub stuck: Option<String>,
}

/// The installation-wide sending limits (`delivery.rate_per_second`, `delivery.window_limit`
/// per `delivery.window`) and the window's use now.
#[derive(Debug, Clone, Copy, serde::Serialize)]
pub struct SendLimits {
    /// 0 = no limit.
    pub rate_per_second: u32,
    /// 0 = no window limit.
    pub window_limit: u64,
    pub window_seconds: u64,
    /// Messages counted in the window now (when there is a window limit).
    pub window_used: Option<i64>,
}

/// What a front end asks of a send or a schedule beside the action itself.
#[derive(Debug, Clone, Copy, Default)]
pub struct SendGuard {
    /// Send (or schedule) even when a pre-send check fails (`--force`, `{"force": true}`, the
    /// console box). A forced schedule stays forced when it comes due.
    pub force: bool,
    /// The number of recipients the operator confirmed (the console's send and schedule
    /// forms): the action happens only when it is the number the issue would reach now.
    pub confirm_recipients: Option<i64>,
}

/// Whom a send started now would reach: the confirmed readers, less those it would skip.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct Audience {
    /// The readers who would get the issue.
    pub recipients: i64,
    /// Confirmed, but paused now (skipped, reason `paused`).
    pub paused: i64,
    /// Confirmed and not paused, but none of their categories is in the issue.
    pub no_matching_category: i64,
}

impl Audience {
    /// The readers left out, for the wording "M paused or without a matching category are
    /// skipped".
    pub fn skipped(&self) -> i64 {
        self.paused + self.no_matching_category
    }

    /// "3 recipients" and, when some are left out, "; 1 paused or without a matching category
    /// is skipped".
    pub fn describe(&self) -> String {
        recipients_text(self.recipients, self.skipped())
    }
}

/// "3 recipients", and "; 1 paused or without a matching category is skipped" when
/// `skipped` > 0: how every front end words whom a send reaches.
pub fn recipients_text(recipients: i64, skipped: i64) -> String {
    let n = recipients;
    let mut out = format!("{n} recipient{}", if n == 1 { "" } else { "s" });
    match skipped {
        0 => {}
        1 => out.push_str("; 1 paused or without a matching category is skipped"),
        m => out.push_str(&format!(
            "; {m} paused or without a matching category are skipped"
        )),
    }
    out
}

/// The failed pre-send checks as one reason: "the pre-send check links failed (links: …)";
/// `None` when nothing failed.
fn failed_checks_reason(checks: &[Check]) -> Option<String> {
    let failed = super::checks::failed(checks);
    if failed.is_empty() {
        return None;
    }
    let details: Vec<String> = checks
        .iter()
        .filter(|c| c.status == super::checks::Status::Fail)
        .map(|c| format!("{}: {}", c.check, c.detail))
        .collect();
    Some(format!(
        "the pre-send check {} failed ({})",
        failed.join(", "),
        details.join("; ")
    ))
}

/// How long [`App::audience_now`] keeps an issue's count of readers without a matching
/// category.
pub const AUDIENCE_KEPT: std::time::Duration = std::time::Duration::from_secs(60);

/// How many times an action re-reads the issue when a concurrent change won the race.
const RACE_RETRIES: usize = 3;

impl App {
    /// The issue an operator named.
    pub async fn find_issue(&self, key: IssueKey) -> Result<IssueRow, OpsError> {
        let store = self.store();
        let found = match key {
            IssueKey::Number(n) => store.get_issue_by_number(n).await?,
            IssueKey::Week(w) => store.get_issue_by_week(w).await?,
        };
        found.ok_or(OpsError::NotFound(key))
    }

    /// Every issue, newest week first.
    pub async fn list_issues(&self) -> Result<Vec<IssueRow>, OpsError> {
        Ok(self.store().list_issues().await?)
    }

    /// The issues readers may see (the archive, the feed): those whose send has started,
    /// newest week first.
    pub async fn public_issues(&self) -> anyhow::Result<Vec<IssueRow>> {
        let mut issues = self.store().list_issues().await?;
        issues.retain(|i| i.status.is_public() && i.number.is_some());
        Ok(issues)
    }

    /// Issue number `number`, if readers may see it.
    pub async fn public_issue(&self, number: i64) -> anyhow::Result<Option<IssueRow>> {
        Ok(self
            .store()
            .get_issue_by_number(number)
            .await?
            .filter(|i| i.status.is_public()))
    }

    /// The comparison titles of every issue, by issue id (the feed's summaries).
    pub async fn issue_item_titles(
        &self,
    ) -> anyhow::Result<std::collections::HashMap<i64, Vec<String>>> {
        self.store().issue_item_titles().await
    }

    /// The delivery ledger's counts of an issue.
    pub async fn delivery_counts(&self, issue_id: i64) -> anyhow::Result<DeliveryCounts> {
        self.store().delivery_counts(issue_id).await
    }

    /// When a send paused by a full sending window resumes, if it is paused so.
    pub async fn window_resume_at(&self, issue_id: i64) -> anyhow::Result<Option<DateTime<Utc>>> {
        Ok(self
            .store()
            .get_issue(issue_id)
            .await?
            .filter(|i| i.status == IssueStatus::Paused)
            .and_then(|i| i.resume_at))
    }

    /// The issue of `week` (default: the last complete week) as it is frozen, or as it would
    /// be frozen now; `None` when the week has nothing to send.
    pub async fn preview_issue(
        &self,
        week: Option<IsoWeek>,
    ) -> anyhow::Result<(IsoWeek, Option<Preview>)> {
        let settings = self.settings();
        let week = week.unwrap_or_else(|| default_week(Utc::now(), settings.schedule.timezone.0));
        let preview = preview_issue(self.store(), self.renderer(), settings, week).await?;
        Ok((week, preview))
    }

    /// An issue with its delivery counts, rate and ETA; `None` for the newest issue.
    pub async fn issue_report(&self, key: Option<IssueKey>) -> Result<IssueReport, OpsError> {
        let issue = match key {
            Some(key) => self.find_issue(key).await?,
            None => self
                .store()
                .list_issues()
                .await?
                .into_iter()
                .next()
                .ok_or_else(|| OpsError::invalid("id", "there are no issues yet"))?,
        };
        let deliveries = self.store().delivery_counts(issue.id).await?;
        let rate_per_second = deliveries.sent_last_minute as f64 / 60.0;
        let eta_seconds = (rate_per_second > 0.0 && issue.status == IssueStatus::Sending)
            .then(|| (deliveries.pending as f64 / rate_per_second).round() as i64);
        let bounces = self.store().issue_bounce_counts(issue.id).await?;
        let per_sent = |n: i64| (deliveries.sent > 0).then(|| n as f64 / deliveries.sent as f64);
        let d = &self.settings().delivery;
        let limits = SendLimits {
            rate_per_second: d.rate_per_second,
            window_limit: d.window_limit,
            window_seconds: d.window.0.as_secs(),
            window_used: match d.window_limit {
                0 => None,
                _ => Some(self.store().window_use(d.window.0).await?.used),
            },
        };
        let alive = std::time::Duration::from_secs(2 * d.lease_seconds);
        let workers = self.store().workers_sending(issue.id, alive).await?;
        let stuck = if issue.status == IssueStatus::Sending && deliveries.pending > 0 {
            self.why_stuck(workers.is_empty()).await
        } else {
            None
        };
        Ok(IssueReport {
            stuck,
            limits,
            workers,
            issue,
            hard_bounce_rate: per_sent(bounces.hard),
            complaint_rate: per_sent(bounces.complaints),
            bounces,
            deliveries,
            rate_per_second,
            eta_seconds,
        })
    }

    /// Why a sending issue does not move: the database refuses writes (nothing can be claimed
    /// or recorded), or no worker is listed (heartbeats are writes too, so this comes second).
    async fn why_stuck(&self, no_workers: bool) -> Option<String> {
        if let Err(e) = self.writes_work().await {
            return Some(format!(
                "the database refuses writes ({e}): no delivery can be claimed or recorded; \
                 the send goes on by itself once it takes writes again"
            ));
        }
        no_workers.then(|| {
            "no worker is sending it: start `verdicts serve`, `verdicts worker` or \
             `verdicts issue send`"
                .to_string()
        })
    }

    /// Whether the database takes a write now: a real write probe, run at most once per
    /// [`WRITE_PROBE_FRESH`] per process (the console's dashboard polls every 3 s, and each
    /// sending issue on it asks), its answer shared meanwhile.
    async fn writes_work(&self) -> Result<(), String> {
        if let Some((at, answer)) = &*self
            .inner
            .write_probe
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            && at.elapsed() < WRITE_PROBE_FRESH
        {
            return answer.clone();
        }
        let answer = tokio::time::timeout(
            std::time::Duration::from_secs(5),
            self.store().probe_write(),
        )
        .await
        .unwrap_or_else(|_| Err(anyhow::anyhow!("no answer within 5 s")))
        .map_err(|e| e.root_cause().to_string());
        *self
            .inner
            .write_probe
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = Some((std::time::Instant::now(), answer.clone()));
        answer
    }

    /// The failed deliveries of an issue with their reasons (newest first, at most `limit`).
    pub async fn failed_deliveries(
        &self,
        key: IssueKey,
        limit: i64,
    ) -> Result<Vec<FailedDelivery>, OpsError> {
        let issue = self.find_issue(key).await?;
        Ok(self.store().failed_deliveries(issue.id, limit).await?)
    }

    /// Freezes the issue of `week` (default: the last complete week), or finds the existing one.
    ///
    /// A week after the current one (in `schedule.timezone`) is refused before anything is
    /// frozen: its issue would take every unsent comparison and leave the real weeks empty.
    pub async fn create_issue(
        &self,
        actor: &Actor,
        week: Option<IsoWeek>,
    ) -> Result<Creation, OpsError> {
        let settings = self.settings();
        let now = Utc::now();
        let current = IsoWeek::containing(now, settings.schedule.timezone.0);
        let week = week.unwrap_or_else(|| default_week(now, settings.schedule.timezone.0));
        if week > current {
            return Err(OpsError::invalid(
                "week",
                format!(
                    "{week} is after the current week {current}: an issue can only be made for \
                     a week that has begun"
                ),
            ));
        }
        let Some((issue, created)) =
            create_issue(self.store(), self.renderer(), settings, week).await?
        else {
            return Ok(Creation::NothingNew(week));
        };
        if created == Created::New {
            self.log(
                actor,
                Activity::IssueCreate,
                Some(issue.id),
                &week.to_string(),
            )
            .await?;
        }
        Ok(Creation::Issue(Box::new(issue), created))
    }

    /// Performs `action` on the issue named `key`, if the state machine allows it from the
    /// issue's status; logs it as `actor`. A send or a schedule runs the pre-send checks
    /// first (unforced: see [`App::perform_guarded`]).
    pub async fn perform(
        &self,
        actor: &Actor,
        key: IssueKey,
        action: IssueAction,
    ) -> Result<Performed, OpsError> {
        self.perform_guarded(actor, key, action, SendGuard::default())
            .await
    }

    /// [`App::perform`] on an issue already loaded. Every change is applied as "from the status
    /// just read": when another process moved the issue in between, the issue is read again and
    /// the state machine asked again.
    pub async fn perform_on(
        &self,
        actor: &Actor,
        issue: IssueRow,
        action: IssueAction,
    ) -> Result<Performed, OpsError> {
        self.perform_forced(actor, issue, action, false).await
    }

    /// [`App::perform_on`]; a schedule is recorded as `forced` past a failed check or not.
    async fn perform_forced(
        &self,
        actor: &Actor,
        mut issue: IssueRow,
        action: IssueAction,
        forced: bool,
    ) -> Result<Performed, OpsError> {
        let kind = action.kind();
        let store = self.store();
        for _ in 0..RACE_RETRIES {
            let from = issue.status;
            if !from.allows(kind) {
                break;
            }
            let to = from.after(kind);
            let done = match &action {
                IssueAction::Send => {
                    let map = self.render_reader_sets(&issue).await?;
                    match store.start_send(issue.id, &[from], &map).await? {
                        Some(total) => {
                            // The snapshot's skipped rows, from the ledger's counters.
                            let skipped = store.delivery_counts(issue.id).await?.skipped;
                            Some(Done::Started {
                                recipients: total - skipped,
                                skipped,
                            })
                        }
                        None => None,
                    }
                }
                IssueAction::Schedule(at) => store
                    .schedule_issue(issue.id, *at, forced, &[from])
                    .await?
                    .then_some(Done::Scheduled { at: *at }),
                // Before any delivery: what the issue held goes back (comparisons, number).
                IssueAction::Cancel
                    if matches!(from, IssueStatus::Ready | IssueStatus::Scheduled) =>
                {
                    store
                        .cancel_unsent_issue(
                            issue.id,
                            &[from],
                            &format!(
                                "cancelled by {actor} before any delivery: its comparisons wait \
                                 for the next issue, and {} can be made again",
                                issue.week
                            ),
                        )
                        .await?
                        .map(|comparisons| Done::Released { comparisons })
                }
                IssueAction::Pause | IssueAction::Resume | IssueAction::Cancel => store
                    .transition_issue(
                        issue.id,
                        &[from],
                        to,
                        Some(&format!("{kind} by {actor}")),
                        None,
                    )
                    .await?
                    .then_some(Done::Moved),
                IssueAction::RetryFailed => store
                    .retry_failed(issue.id, &[from], to)
                    .await?
                    .map(|deliveries| Done::Retried { deliveries }),
                IssueAction::TestSend(to) => {
                    let engine = self.engine().await?;
                    engine.test_send(issue.id, to).await?;
                    Some(Done::TestSent { to: to.clone() })
                }
            };
            let Some(done) = done else {
                // Someone else changed the issue first: look again.
                issue = store
                    .get_issue(issue.id)
                    .await?
                    .ok_or(OpsError::NotFound(IssueKey::Week(issue.week)))?;
                continue;
            };
            let detail = match &done {
                Done::Scheduled { at } => format!("{} at {}", issue.week, at.to_rfc3339()),
                Done::TestSent { to } => format!("{} to {to}", issue.week),
                Done::Retried { deliveries } => format!("{} ({deliveries} back)", issue.week),
                Done::Started {
                    recipients,
                    skipped,
                } => format!(
                    "{} ({recipients} recipients, {skipped} skipped)",
                    issue.week
                ),
                Done::Released { comparisons } => {
                    format!("{} ({comparisons} comparisons released)", issue.week)
                }
                Done::Moved => issue.week.to_string(),
            };
            self.log(actor, Activity::Issue(kind), Some(issue.id), &detail)
                .await?;
            let issue = store
                .get_issue(issue.id)
                .await?
                .ok_or(OpsError::NotFound(IssueKey::Week(issue.week)))?;
            return Ok(Performed {
                issue,
                action: kind,
                done,
            });
        }
        Err(OpsError::WrongState {
            week: issue.week,
            from: issue.status,
            action: kind,
        })
    }

    /// Before a send starts: the categories of the issue's comparisons, and a rendering of
    /// every distinct set of them the readers with a choice get now (kept in
    /// `issue_variants`), so the workers find them ready. A reader who changes their choice
    /// between this and the snapshot gets a set the worker renders then, once.
    async fn render_reader_sets(&self, issue: &IssueRow) -> anyhow::Result<CategoryMap> {
        let comparisons = variants::issue_comparisons(self.store(), issue.id).await?;
        let map = CategoryMap::of(&comparisons);
        for flags in self.store().reader_flags_now(&map).await? {
            if let Some(variant) = Variant::parse(&flags, map.positions.len()) {
                variants::ensure_variant(
                    self.store(),
                    self.renderer(),
                    self.settings(),
                    issue,
                    &variant,
                )
                .await?;
            }
        }
        Ok(map)
    }

    /// Whom a send of `issue` started now would reach: the confirmed readers (a counter)
    /// less those the snapshot skips — paused now, or with categories none of the issue's
    /// comparisons has ([`crate::store::Store::audience_skips`]).
    ///
    /// The confirmed and paused counts are read fresh (a counter, an index of the paused); the
    /// readers without a matching category are counted at most once a minute per issue and
    /// process ([`AUDIENCE_KEPT`]): that pass costs ~140 ms (SQLite) and ~80 ms (PostgreSQL) at
    /// a million readers of whom 100,000 chose, and the console's issue page and its confirmation read the same figure.
    pub async fn audience_now(&self, issue: &IssueRow) -> Result<Audience, OpsError> {
        let confirmed = self
            .store()
            .count_subscribers(crate::subscribers::SubscriberStatus::Confirmed)
            .await?;
        let paused = self.store().paused_readers_now().await?;
        let kept = self
            .audience_cache()
            .get(&issue.id)
            .filter(|(at, _)| at.elapsed() < AUDIENCE_KEPT)
            .map(|(_, n)| *n);
        let no_matching_category = match kept {
            Some(n) => n,
            None => {
                let comparisons = variants::issue_comparisons(self.store(), issue.id).await?;
                let n = self
                    .store()
                    .readers_without_match(&CategoryMap::of(&comparisons))
                    .await?;
                self.audience_cache()
                    .insert(issue.id, (std::time::Instant::now(), n));
                n
            }
        };
        Ok(Audience {
            recipients: (confirmed - paused - no_matching_category).max(0),
            paused,
            no_matching_category,
        })
    }

    /// The pre-send checks of a frozen issue (see [`super::issue_check`]), on the message one
    /// reader would get. Nothing is sent.
    pub async fn check_issue(&self, key: IssueKey) -> Result<Vec<Check>, OpsError> {
        let issue = self.find_issue(key).await?;
        self.check_loaded(&issue).await
    }

    async fn check_loaded(&self, issue: &IssueRow) -> Result<Vec<Check>, OpsError> {
        if issue.html.is_none() {
            return Err(OpsError::invalid(
                "id",
                format!(
                    "issue {} has no content to check (an empty week)",
                    issue.week
                ),
            ));
        }
        let message = self.engine().await?.sample_message(issue.id).await?;
        tokio::task::spawn_blocking(move || super::issue_check::report(&message))
            .await
            .map_err(|e| OpsError::Internal(anyhow::anyhow!("running the checks: {e}")))
    }

    /// The pre-send checks the console shows on an issue page before Send: those of the
    /// issue's content as frozen now, run once in the background (SpamAssassin takes seconds;
    /// a page answers at once) and kept for this process until the content changes.
    /// `Running` until they are done; `None` for an issue without content.
    pub async fn pre_send_checks(&self, key: IssueKey) -> Result<Option<PreSendChecks>, OpsError> {
        let issue = self.find_issue(key).await?;
        let Some(html) = issue.html.as_deref() else {
            return Ok(None);
        };
        let content = {
            use std::hash::{Hash, Hasher};
            let mut h = std::collections::hash_map::DefaultHasher::new();
            (issue.subject.as_deref(), html, issue.text.as_deref()).hash(&mut h);
            h.finish()
        };
        {
            let mut cache = self.check_cache();
            match cache.get(&issue.id) {
                Some(c) if c.content == content => {
                    let state = c.state.clone();
                    if matches!(state, PreSendChecks::Failed(_)) {
                        // Shown once; the next page load tries again.
                        cache.remove(&issue.id);
                    }
                    return Ok(Some(state));
                }
                _ => {
                    cache.insert(
                        issue.id,
                        CachedChecks {
                            content,
                            state: PreSendChecks::Running,
                        },
                    );
                }
            }
        }
        let app = self.clone();
        tokio::spawn(async move {
            let state = match app.check_loaded(&issue).await {
                Ok(checks) => PreSendChecks::Done {
                    checks,
                    at: Utc::now(),
                },
                Err(e) => PreSendChecks::Failed(e.to_string()),
            };
            let mut cache = app.check_cache();
            // Only if the content is still the one checked.
            if let Some(c) = cache.get_mut(&issue.id).filter(|c| c.content == content) {
                c.state = state;
            }
        });
        Ok(Some(PreSendChecks::Running))
    }

    /// Refuses a send or a schedule (`kind`) the guard does not let through: a recipient
    /// count that is not the one the issue would reach, or a failed pre-send check without
    /// `force`. Changes nothing.
    async fn guard_start(
        &self,
        issue: &IssueRow,
        kind: ActionKind,
        guard: SendGuard,
    ) -> Result<(), OpsError> {
        let (done, verb) = match kind {
            ActionKind::Schedule => ("nothing was scheduled", "schedule"),
            _ => ("nothing was sent", "send"),
        };
        if let Some(confirmed) = guard.confirm_recipients {
            let now = self.audience_now(issue).await?;
            if confirmed != now.recipients {
                let n = now.recipients;
                let skipped = match now.skipped() {
                    0 => String::new(),
                    1 => " (1 paused or without a matching category is skipped)".to_string(),
                    m => format!(" ({m} paused or without a matching category are skipped)"),
                };
                return Err(OpsError::invalid(
                    "confirm_recipients",
                    format!(
                        "the issue would go to {}, not {confirmed}{skipped}: {done}; confirm {n} \
                         to {verb}",
                        recipients_text(n, 0)
                    ),
                ));
            }
        }
        if !guard.force && issue.status.allows(kind) {
            let checks = self.check_loaded(issue).await?;
            if let Some(reason) = failed_checks_reason(&checks) {
                let not = match kind {
                    ActionKind::Schedule => "not scheduled",
                    _ => "not sent",
                };
                return Err(OpsError::invalid(
                    "force",
                    format!("{not}: {reason}; fix the issue, or {verb} anyway with force"),
                ));
            }
        }
        Ok(())
    }

    /// [`App::perform`] with the guards of a send and of a schedule: either is refused
    /// (nothing changes) when the guard does not let it through, and a forced schedule is
    /// recorded as such; other actions are performed as they are.
    pub async fn perform_guarded(
        &self,
        actor: &Actor,
        key: IssueKey,
        action: IssueAction,
        guard: SendGuard,
    ) -> Result<Performed, OpsError> {
        let issue = self.find_issue(key).await?;
        let kind = action.kind();
        if matches!(kind, ActionKind::Send | ActionKind::Schedule) {
            self.guard_start(&issue, kind, guard).await?;
        }
        self.perform_forced(actor, issue, action, guard.force).await
    }

    /// The checks an automatic start (a scheduled issue come due, the cron fire) runs again
    /// before it sends: `Some(reason)` when one fails, or when they cannot run (nothing
    /// unchecked leaves by itself).
    pub(super) async fn recheck_before_start(&self, issue: &IssueRow) -> Option<String> {
        match self.check_loaded(issue).await {
            Ok(checks) => failed_checks_reason(&checks),
            Err(e) => Some(format!("the pre-send checks could not run ({e})")),
        }
    }

    /// What `issue send` on the command line does before it follows the send as a worker:
    /// starts the send, or joins it when the issue is already sending (after a Ctrl-C, or once
    /// `retry-failed` put recipients back in line). Joining changes nothing and is not logged.
    /// Returns the issue and the number of recipients in its ledger.
    pub async fn start_or_join_send(
        &self,
        actor: &Actor,
        key: IssueKey,
        guard: SendGuard,
    ) -> Result<(IssueRow, i64), OpsError> {
        let issue = self.find_issue(key).await?;
        if issue.status == IssueStatus::Sending {
            let total = self.store().delivery_counts(issue.id).await?.total;
            return Ok((issue, total));
        }
        self.guard_start(&issue, ActionKind::Send, guard).await?;
        match self.perform_on(actor, issue, IssueAction::Send).await? {
            Performed {
                issue,
                done:
                    Done::Started {
                        recipients,
                        skipped,
                    },
                ..
            } => Ok((issue, recipients + skipped)),
            other => Err(anyhow::anyhow!("send did not start a send: {:?}", other.done).into()),
        }
    }

    /// The scheduler's half-minute look: starts every scheduled issue whose time has come.
    /// The pre-send checks run again first: an issue that fails one (and was not scheduled
    /// with force) does not start; it goes back to `ready` with the failed check as its
    /// reason, and an ERROR names it. Returns the ids started.
    pub async fn start_due_scheduled(&self, now: DateTime<Utc>) -> Result<Vec<i64>, OpsError> {
        let mut started = Vec::new();
        for id in self.store().due_scheduled_issues(now).await? {
            let Some(issue) = self.store().get_issue(id).await? else {
                continue;
            };
            if !issue.scheduled_forced
                && let Some(reason) = self.recheck_before_start(&issue).await
            {
                let reason = format!(
                    "the scheduled start at {} was refused: {reason}; fix the issue, or \
                     schedule or send it with force",
                    issue
                        .scheduled_for
                        .map_or_else(|| now.to_rfc3339(), |t| t.to_rfc3339())
                );
                if self.store().unschedule_issue(id, &reason).await? {
                    tracing::error!(issue_id = id, week = %issue.week, %reason, "scheduled issue not sent");
                }
                continue;
            }
            match self
                .perform_on(&Actor::Scheduler, issue, IssueAction::Send)
                .await
            {
                Ok(p) => {
                    tracing::info!(issue_id = id, done = ?p.done, "scheduled issue started");
                    started.push(id);
                }
                // Cancelled or started by someone else in between: nothing to do.
                Err(OpsError::WrongState { .. }) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(started)
    }
}

/// The pre-send checks of an issue as the console shows them ([`App::pre_send_checks`]).
#[derive(Debug, Clone)]
pub enum PreSendChecks {
    /// Started, not finished yet.
    Running,
    Done {
        checks: Vec<Check>,
        at: DateTime<Utc>,
    },
    /// The checks could not run (the message could not be built).
    Failed(String),
}

/// One issue's checks and the content they are for (a hash of the frozen subject and parts).
#[derive(Debug)]
pub(super) struct CachedChecks {
    content: u64,
    state: PreSendChecks,
}
