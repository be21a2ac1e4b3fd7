//! Subscriber operations for operators (add, import, remove, list): every front end's one path,
//! with the consent record and the operator-log entry written here.
//!
//! These are the operator's side of the list. A reader's signup is decided in [`signup`] and
//! written in batches by [`signup_writer`]; confirming and leaving are in [`lifecycle`].

pub mod control;
pub mod door;
pub mod hygiene;
pub mod lifecycle;
pub mod manage;
pub mod signup;
pub mod signup_writer;

use super::{Activity, Actor, App, OpsError};
pub use crate::store::subscribers::ImportCounts;
use crate::store::subscribers::{
    AddOutcome, IMPORT_BATCH, NewSubscriber, SubscriberImport, SubscriberRow,
};
use crate::subscribers::tokens::suppression_hash;
use crate::subscribers::{ConsentContext, SubscriberEmail, SubscriberName, SubscriberStatus};

/// A row to import: a checked address and optional name.
pub type ImportRow = (SubscriberEmail, Option<SubscriberName>);

/// The consent record of an operator's addition: `source` says who (`cli`,
/// `operator:ada@example.org`) or which file (`import:list.csv`).
fn consent(source: String) -> ConsentContext {
    ConsentContext {
        ip: None,
        user_agent: None,
        source,
        consent_text_version: None,
    }
}

impl App {
    /// Adds one address (confirmed when the operator holds the person's consent already).
    /// An address that unsubscribed or was erased is refused: only its owner can sign up again.
    pub async fn add_subscriber(
        &self,
        actor: &Actor,
        email: &SubscriberEmail,
        name: Option<&SubscriberName>,
        confirmed: bool,
    ) -> Result<AddOutcome, OpsError> {
        let outcome = self
            .store()
            .add_subscriber(
                &NewSubscriber {
                    email,
                    name,
                    confirmed,
                },
                &consent(actor.to_string()),
                &suppression_hash(self.secret(), email.as_str()),
            )
            .await?;
        self.log(
            actor,
            Activity::SubscribersAdd,
            None,
            &format!("{outcome:?}"),
        )
        .await?;
        if outcome == AddOutcome::Suppressed {
            return Err(OpsError::invalid(
                "email",
                format!("{email} unsubscribed or asked to be erased: only they can sign up again"),
            ));
        }
        Ok(outcome)
    }

    /// Starts importing confirmed subscribers from `source` (a file name, for the consent
    /// records): rows go in a batch at a time ([`SubscriberImportRun::add`]), all visible at
    /// once when [`SubscriberImportRun::finish`] commits and logs.
    pub async fn begin_subscriber_import(
        &self,
        actor: &Actor,
        source: &str,
    ) -> Result<SubscriberImportRun, OpsError> {
        let import = self
            .store()
            .begin_import(&consent(format!("import:{source}")))
            .await?;
        Ok(SubscriberImportRun {
            app: self.clone(),
            actor: actor.clone(),
            source: source.to_string(),
            import,
            counts: ImportCounts::default(),
        })
    }

    /// Erases an address's personal data and suppresses it; `true` when it was a subscriber.
    pub async fn remove_subscriber(
        &self,
        actor: &Actor,
        email: &SubscriberEmail,
    ) -> Result<bool, OpsError> {
        let known = self
            .store()
            .remove_subscriber(email, &suppression_hash(self.secret(), email.as_str()))
            .await?;
        self.log(
            actor,
            Activity::SubscribersRemove,
            None,
            if known {
                "erased"
            } else {
                "unknown address suppressed"
            },
        )
        .await?;
        Ok(known)
    }

    /// Writes every subscriber as CSV to `out` as the rows arrive from the database (constant
    /// memory for any list size), formula cells neutralised ([`spreadsheet_safe`]); logged.
    /// Returns the number of rows.
    pub async fn export_subscribers<W: std::io::Write>(
        &self,
        actor: &Actor,
        out: W,
    ) -> Result<u64, OpsError> {
        use futures_util::StreamExt;
        let csv_error = |e: csv::Error| OpsError::Internal(anyhow::anyhow!("writing CSV: {e}"));
        let mut w = csv::Writer::from_writer(out);
        w.write_record([
            "email",
            "name",
            "status",
            "created_at",
            "confirmed_at",
            "unsubscribed_at",
        ])
        .map_err(csv_error)?;
        let t = |t: Option<chrono::DateTime<chrono::Utc>>| {
            t.map(|t| t.to_rfc3339()).unwrap_or_default()
        };
        let mut count = 0u64;
        {
            let mut rows = self.store().stream_subscribers();
            while let Some(r) = rows.next().await {
                let r = r?;
                w.write_record([
                    spreadsheet_safe(&r.email).as_ref(),
                    spreadsheet_safe(r.name.as_deref().unwrap_or("")).as_ref(),
                    r.status.as_str(),
                    &r.created_at.to_rfc3339(),
                    &t(r.confirmed_at),
                    &t(r.unsubscribed_at),
                ])
                .map_err(csv_error)?;
                count += 1;
            }
        }
        w.flush()
            .map_err(|e| OpsError::Internal(anyhow::anyhow!("writing CSV: {e}")))?;
        self.log(
            actor,
            Activity::SubscribersExport,
            None,
            &format!("{count} rows"),
        )
        .await?;
        Ok(count)
    }

    /// Subscribers, optionally of one status.
    pub async fn list_subscribers(
        &self,
        status: Option<SubscriberStatus>,
    ) -> Result<Vec<SubscriberRow>, OpsError> {
        Ok(self.store().list_subscribers(status).await?)
    }
}

/// A subscriber import under way (see [`App::begin_subscriber_import`]).
pub struct SubscriberImportRun {
    app: App,
    actor: Actor,
    source: String,
    import: SubscriberImport,
    counts: ImportCounts,
}

impl SubscriberImportRun {
    /// Adds checked rows of distinct addresses (any number; written [`IMPORT_BATCH`] at a time).
    pub async fn add(&mut self, rows: &[ImportRow]) -> Result<(), OpsError> {
        let secret = self.app.secret();
        for chunk in rows.chunks(IMPORT_BATCH) {
            let batch: Vec<(NewSubscriber<'_>, String)> = chunk
                .iter()
                .map(|(email, name)| {
                    (
                        NewSubscriber {
                            email,
                            name: name.as_ref(),
                            confirmed: true,
                        },
                        suppression_hash(secret, email.as_str()),
                    )
                })
                .collect();
            self.counts += self.import.add_batch(&batch).await?;
        }
        Ok(())
    }

    /// The counts so far.
    pub fn counts(&self) -> ImportCounts {
        self.counts
    }

    /// Commits the whole import and logs it (with how many rows of the file were bad).
    pub async fn finish(self, bad_rows: u64) -> Result<ImportCounts, OpsError> {
        self.import.commit().await?;
        self.app
            .log(
                &self.actor,
                Activity::SubscribersImport,
                None,
                &format!(
                    "{}: {} added, {bad_rows} bad rows",
                    self.source, self.counts.added
                ),
            )
            .await?;
        Ok(self.counts)
    }
}

/// What starts a formula in a spreadsheet cell (OWASP's list; tab and CR are separators below).
const FORMULA_START: [char; 4] = ['=', '+', '-', '@'];
/// What a spreadsheet may split a line on: comma, semicolon or tab, whatever the file's own
/// delimiter is, and line breaks.
const CELL_SPLIT: [char; 5] = [',', ';', '\t', '\r', '\n'];

/// A cell that a spreadsheet would run as a formula gets a `'` (the OWASP advice for CSV
/// injection) — at its start, and after every comma, semicolon, tab or line break inside it,
/// since a spreadsheet that splits on another delimiter than ours (`;` in much of Europe, tab)
/// starts a new cell there: `;=cmd|' /C calc'!A0` becomes `;'=cmd|' /C calc'!A0`. Leading
/// spaces and `"` do not hide a formula. Only `'` is ever added; names come from the public
/// signup form, and the export is opened by an operator.
pub fn spreadsheet_safe(cell: &str) -> std::borrow::Cow<'_, str> {
    let risky = |rest: &str| {
        rest.starts_with(['\t', '\r'])
            || rest
                .trim_start_matches([' ', '"'])
                .starts_with(FORMULA_START)
    };
    let starts: Vec<usize> = std::iter::once(0)
        .chain(cell.match_indices(CELL_SPLIT).map(|(i, d)| i + d.len()))
        .filter(|&i| risky(&cell[i..]))
        .collect();
    if starts.is_empty() {
        return cell.into();
    }
    let mut out = String::with_capacity(cell.len() + starts.len());
    let mut from = 0;
    for at in starts {
        out.push_str(&cell[from..at]);
        out.push('\'');
        from = at;
    }
    out.push_str(&cell[from..]);
    out.into()
}

#[cfg(test)]
mod spreadsheet_tests {
    use super::spreadsheet_safe;
    use proptest::prelude::*;

    #[test]
    fn cells_are_safe_whatever_the_delimiter() {
        for (given, expected) in [
            ("Ada Lovelace", "Ada Lovelace"),
            ("=1+1", "'=1+1"),
            (";=cmd|' /C calc'!A0;", ";'=cmd|' /C calc'!A0;"),
            ("a,=1", "a,'=1"),
            ("a\t@x", "a\t'@x"),
            ("a; \"=1\"", "a;' \"=1\""),
            ("\t=1", "'\t'=1"),
            ("x-y, z+w", "x-y, z+w"),
        ] {
            assert_eq!(spreadsheet_safe(given), expected, "{given:?}");
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]
        /// Split on comma, semicolon, tab or a line break, no piece starts a formula; only `'`
        /// is ever added; a safe cell is left alone.
        #[test]
        fn no_piece_starts_a_formula(cell in "[a-z =+@\"',;\t\r\n-]{0,24}") {
            let safe = spreadsheet_safe(&cell);
            prop_assert!(!safe.starts_with(['=', '+', '-', '@', '\t', '\r']));
            for piece in safe.split([',', ';', '\t', '\r', '\n']) {
                prop_assert!(
                    !piece.trim_start_matches([' ', '"']).starts_with(['=', '+', '-', '@']),
                    "{:?} → {:?}", cell, safe
                );
            }
            prop_assert_eq!(safe.replace('\'', ""), cell.replace('\'', ""));
            if safe.len() == cell.len() {
                prop_assert_eq!(safe.as_ref(), cell.as_str());
            }
        }
    }
}
