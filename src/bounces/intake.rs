//! Where reports come from, and the one path every report takes: parse → resolve → apply.
//!
//! Files: an `.eml` file (one message), an mbox file (starts with a `From ` line) or a Maildir
//! folder (`cur/` and `new/`), read with `mail-parser`'s mailbox readers. Everything is read
//! and parsed before anything is applied, so input that is not mail changes nothing.

use std::io::BufReader;
use std::path::{Path, PathBuf};

use serde::Serialize;

use super::parse::{ParseError, Report, parse};
use super::policy::{Applied, Event, Policy, apply};
use super::resolve::resolve;
use super::{BounceKind, MatchedBy, Source};
use crate::config::{Attribution, SecretKey, Settings};
use crate::store::Store;

/// One message read from a path: where it came from and its bytes.
#[derive(Debug, Clone)]
pub struct RawMessage {
    /// `FILE`, `MBOX#3` (third message) or the Maildir file's path.
    pub origin: String,
    pub bytes: Vec<u8>,
}

/// A path that could not be read as mail: the message names the path (and message).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{origin}: {message}")]
pub struct IntakeError {
    pub origin: String,
    pub message: String,
}

fn io_error(path: &Path, e: impl std::fmt::Display) -> IntakeError {
    IntakeError {
        origin: path.display().to_string(),
        message: e.to_string(),
    }
}

/// Reads every message under `paths`, in order (Maildir files sorted by name).
pub fn read_paths(paths: &[PathBuf]) -> Result<Vec<RawMessage>, IntakeError> {
    let mut out = Vec::new();
    for path in paths {
        if path.is_dir() {
            if !path.join("cur").is_dir() && !path.join("new").is_dir() {
                return Err(io_error(
                    path,
                    "a folder that is not a Maildir (no cur/ or new/)",
                ));
            }
            for sub in ["cur", "new", "tmp"] {
                std::fs::create_dir_all(path.join(sub)).ok();
            }
            let mut messages = Vec::new();
            for m in mail_parser::mailbox::maildir::MessageIterator::new(path)
                .map_err(|e| io_error(path, e))?
            {
                let m = m.map_err(|e| io_error(path, e))?;
                messages.push(RawMessage {
                    origin: m.path().display().to_string(),
                    bytes: m.unwrap_contents(),
                });
            }
            messages.sort_by(|a, b| a.origin.cmp(&b.origin));
            out.extend(messages);
            continue;
        }
        let bytes = std::fs::read(path).map_err(|e| io_error(path, e))?;
        if bytes.starts_with(b"From ") {
            let reader = BufReader::new(std::io::Cursor::new(bytes));
            for (i, m) in mail_parser::mailbox::mbox::MessageIterator::new(reader).enumerate() {
                let m = m.map_err(|e| io_error(path, e))?;
                out.push(RawMessage {
                    origin: format!("{}#{}", path.display(), i + 1),
                    bytes: m.unwrap_contents(),
                });
            }
        } else {
            out.push(RawMessage {
                origin: path.display().to_string(),
                bytes,
            });
        }
    }
    Ok(out)
}

/// Parses every message, or names the first that is not a report we can read.
pub fn parse_all(messages: &[RawMessage]) -> Result<Vec<Report>, IntakeError> {
    messages
        .iter()
        .map(|m| {
            parse(&m.bytes).map_err(|e: ParseError| IntakeError {
                origin: m.origin.clone(),
                message: e.to_string(),
            })
        })
        .collect()
}

/// Where a mailbox poller hands the reports it reads: the application layer
/// (`crate::app::App`), which assembles the [`Intake`].
pub trait ApplyReport: Sync {
    fn apply_report(
        &self,
        origin: &str,
        report: &Report,
        source: Source,
    ) -> impl std::future::Future<Output = anyhow::Result<Processed>> + Send;
}

/// What the application needs to apply reports.
#[derive(Clone, Copy)]
pub struct Intake<'a> {
    pub store: &'a Store,
    /// Applies the circuit breaker's pauses (the application layer).
    pub supervisor: &'a dyn crate::issues::Supervisor,
    pub settings: &'a Settings,
    pub secret: &'a SecretKey,
    pub policy: &'a Policy,
}

/// One report, applied: one line of `verdicts bounces import --json`.
#[derive(Debug, Clone, Serialize)]
pub struct Processed {
    pub origin: String,
    pub kind: BounceKind,
    /// The subscriber's address (`null` when not found).
    pub subscriber: Option<String>,
    pub subscriber_id: Option<i64>,
    /// The issue number (`null` when not known).
    pub issue: Option<i64>,
    pub matched_by: Option<MatchedBy>,
    pub status: Option<String>,
    #[serde(flatten)]
    pub applied: Applied,
}

impl Intake<'_> {
    /// Resolves and applies one parsed report from a mailbox or file.
    pub async fn apply_report(
        &self,
        origin: &str,
        report: &Report,
        source: Source,
    ) -> anyhow::Result<Processed> {
        self.apply_event(
            origin,
            Classified {
                kind: report.kind,
                dedup_key: &format!("mail:{}", report.report_key),
                status: report.status.as_deref(),
                reason: &report.reason,
                clues: &report.clues,
            },
            source,
        )
        .await
    }

    /// Resolves and applies one classified event (a report, a webhook event).
    pub async fn apply_event(
        &self,
        origin: &str,
        event: Classified<'_>,
        source: Source,
    ) -> anyhow::Result<Processed> {
        let mut resolved = resolve(
            self.store,
            &self.settings.mail,
            &self.settings.newsletter,
            self.secret,
            event.clues,
        )
        .await?;
        let mailed = matches!(source, Source::Import | Source::Imap);
        let attribution = self
            .settings
            .bounces
            .attribution(self.settings.mail.return_path.is_some());
        if mailed
            && attribution == Attribution::Verp
            && resolved.matched_by != Some(MatchedBy::Verp)
        {
            // Anyone can mail the bounce mailbox: without our signed envelope address, the
            // report names nobody (and counts toward no issue's bounce rate).
            tracing::warn!(
                origin,
                matched_by = ?resolved.matched_by,
                "a mailed report without a valid VERP address: not attributed (bounces.attribution = \"verp\")"
            );
            resolved = Default::default();
        }
        let applied = apply(
            self.store,
            self.policy,
            self.supervisor,
            self.secret,
            &Event {
                kind: event.kind,
                source,
                dedup_key: event.dedup_key,
                resolved,
                status_code: event.status,
                reason: event.reason,
            },
        )
        .await?;
        let subscriber = match resolved.subscriber_id {
            Some(id) => self.store.get_subscriber(id).await?.map(|s| s.email),
            None => None,
        };
        let issue = match resolved.issue_id {
            Some(id) => self.store.get_issue(id).await?.and_then(|i| i.number),
            None => None,
        };
        Ok(Processed {
            origin: origin.to_string(),
            kind: event.kind,
            subscriber,
            subscriber_id: resolved.subscriber_id,
            issue,
            matched_by: resolved.matched_by,
            status: event.status.map(str::to_string),
            applied,
        })
    }
}

/// A classified event before it is attributed: what every intake hands to
/// [`Intake::apply_event`].
#[derive(Debug, Clone, Copy)]
pub struct Classified<'a> {
    pub kind: BounceKind,
    pub dedup_key: &'a str,
    pub status: Option<&'a str>,
    pub reason: &'a str,
    pub clues: &'a super::parse::Clues,
}
