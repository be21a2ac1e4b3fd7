//! Subscribers in the database: signup, confirmation, unsubscribe, operator changes, erasure.
//! Every transition is one transaction that also writes its consent record.

pub mod control;
mod hygiene;
mod import;
pub mod manage;

use std::collections::HashMap;
use std::time::Duration;

use anyhow::Context;
use chrono::{DateTime, Utc};
use sqlx::any::AnyRow;
use sqlx::{Any, Row, Transaction};

use super::{Store, from_millis, placeholders, rows_of, to_millis};
use crate::mail::MailKind;
use crate::subscribers::{ConsentContext, SubscriberEmail, SubscriberName, SubscriberStatus};
pub use import::{IMPORT_BATCH, ImportCounts, SubscriberImport};

/// One subscriber as stored.
#[derive(Debug, Clone, serde::Serialize)]
pub struct SubscriberRow {
    pub id: i64,
    pub email: String,
    pub name: Option<String>,
    pub status: SubscriberStatus,
    pub source: String,
    pub created_at: DateTime<Utc>,
    pub confirmed_at: Option<DateTime<Utc>>,
    pub unsubscribed_at: Option<DateTime<Utc>>,
}

const COLUMNS: &str = "id, email, name, status, source, created_at, confirmed_at, unsubscribed_at";

fn subscriber_from_row(row: &AnyRow) -> anyhow::Result<SubscriberRow> {
    let status: String = row.try_get("status")?;
    Ok(SubscriberRow {
        id: row.try_get("id")?,
        email: row.try_get("email")?,
        name: row.try_get("name")?,
        status: status.parse().map_err(anyhow::Error::msg)?,
        source: row.try_get("source")?,
        created_at: from_millis(row.try_get("created_at")?),
        confirmed_at: row
            .try_get::<Option<i64>, _>("confirmed_at")?
            .map(from_millis),
        unsubscribed_at: row
            .try_get::<Option<i64>, _>("unsubscribed_at")?
            .map(from_millis),
    })
}

/// One reader's signup, checked at the edge, with a fresh confirmation token.
#[derive(Debug, Clone)]
pub struct SignupRequest {
    pub email: SubscriberEmail,
    pub name: Option<SubscriberName>,
    pub consent: ConsentContext,
    /// The raw token: goes into the queued mail, which the sender composes.
    pub token: String,
    /// Its hash: what the token table keeps.
    pub token_hash: String,
    /// A MAC of the address's mailbox (plus-tags and case removed): what the per-mailbox
    /// limit counts, in `signup_attempts`.
    pub mailbox_key: String,
}

/// What deciding a batch of signups reads, inside the batch's write transaction (so no other
/// writer can change it between the decision and the writes): the rows of the addresses
/// asked for and each mailbox's recent confirmation mails.
#[derive(Debug, Clone)]
pub struct SignupState {
    /// The time of the batch: what the decision compares against and the writes record.
    pub now: DateTime<Utc>,
    /// The stored subscribers among the batch's addresses, by address.
    pub known: HashMap<String, KnownAddress>,
    /// Confirmation mails per mailbox key since the window's start (absent: none).
    pub mailed: HashMap<String, u32>,
}

/// One stored subscriber, as a signup for its address sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KnownAddress {
    pub id: i64,
    pub status: SubscriberStatus,
    pub last_confirmation_sent_at: Option<DateTime<Utc>>,
}

/// What the store writes for one signup request, beside the attempt row every request gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SignupWrite {
    /// A new pending subscriber, with a consent record, a token and a queued confirmation.
    Insert,
    /// The stored subscriber becomes pending again (its stored name unchanged), with a
    /// consent record, a token and a queued confirmation.
    Restart { subscriber_id: i64 },
    /// Nothing beyond the attempt row.
    Nothing,
}

/// A batch of signups in its write transaction: read with [`Store::begin_signup_batch`],
/// decided by the caller from [`SignupBatch::state`], written and committed by
/// [`SignupBatch::apply`]. Dropped without `apply`, it writes nothing.
pub struct SignupBatch<'r> {
    tx: Transaction<'static, Any>,
    requests: &'r [SignupRequest],
    /// Attempts at or before this (millis) are out of the mailbox window.
    window_start: i64,
    state: SignupState,
}

/// What a confirmation click did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConfirmOutcome {
    /// Confirmed now (with the mail the caller asked to queue, if any).
    Confirmed { subscriber_id: i64, email: String },
    /// The token was used before and its reader is confirmed: nothing to do.
    AlreadyConfirmed,
    /// Unknown or expired token, or its reader left since.
    Invalid,
}

/// Where a confirmation token stands, for the page a link opens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConfirmationToken {
    /// Unused and in time: the button will confirm.
    Live,
    /// Used, and its reader is confirmed.
    AlreadyConfirmed,
    /// Unknown, expired, or its reader is no longer pending.
    Dead,
}

pub use crate::subscribers::AddOutcome;

/// What an operator add/import writes.
pub struct NewSubscriber<'a> {
    pub email: &'a SubscriberEmail,
    pub name: Option<&'a SubscriberName>,
    pub confirmed: bool,
}

pub(super) async fn insert_consent(
    tx: &mut Transaction<'static, Any>,
    subscriber_id: i64,
    event: &str,
    at: i64,
    consent: &ConsentContext,
) -> anyhow::Result<()> {
    sqlx::query(
        "INSERT INTO consents (subscriber_id, event, at, ip, user_agent, source, consent_text_version)
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(subscriber_id)
    .bind(event)
    .bind(at)
    .bind(consent.ip.as_deref())
    .bind(consent.user_agent.as_deref())
    .bind(consent.source.as_str())
    .bind(consent.consent_text_version.as_deref())
    .execute(&mut **tx)
    .await
    .context("recording consent")?;
    super::count_new_consents(&mut **tx, event, 1).await
}

fn ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

impl SignupBatch<'_> {
    /// What the batch's decision reads.
    pub fn state(&self) -> &SignupState {
        &self.state
    }

    /// Writes one [`SignupWrite`] per request (in the requests' order) and commits: new
    /// subscribers in one statement, restarts one each (rare), one `signup_attempts` row per
    /// request whatever it did (the same write for every state; the rows that fell out of the
    /// window go), and for everyone who gets a confirmation a consent record, a token valid
    /// for `token_ttl` and a queued confirmation mail.
    pub async fn apply(self, writes: &[SignupWrite], token_ttl: Duration) -> anyhow::Result<()> {
        let SignupBatch {
            mut tx,
            requests,
            window_start,
            state,
        } = self;
        anyhow::ensure!(
            writes.len() == requests.len(),
            "{} signup writes for {} requests",
            writes.len(),
            requests.len()
        );
        if requests.is_empty() {
            return Ok(());
        }
        let now = to_millis(state.now);
        let mut ids = insert_new(&mut tx, requests, writes, now).await?;
        // Start over (rare; one statement each). The stored name stays: whoever typed this
        // one has not proved they own the mailbox.
        for (i, write) in writes.iter().enumerate() {
            if let SignupWrite::Restart { subscriber_id } = *write {
                sqlx::query(
                    "UPDATE subscribers SET status = 'pending', reminded_at = NULL,
                            updated_at = $1, last_confirmation_sent_at = $1 WHERE id = $2",
                )
                .bind(now)
                .bind(subscriber_id)
                .execute(&mut *tx)
                .await
                .context("restarting a signup")?;
                ids.insert(i, subscriber_id);
            }
        }
        record_attempts(&mut tx, requests, &ids, now, window_start).await?;
        let mut confirm: Vec<(usize, i64)> = ids.into_iter().collect();
        confirm.sort_unstable();
        start_confirmations(&mut tx, requests, &confirm, now, now + ms(token_ttl)).await?;
        tx.commit().await.context("committing signups")?;
        Ok(())
    }
}

/// New subscribers, in one statement: the request index → the new row's id.
async fn insert_new(
    tx: &mut Transaction<'static, Any>,
    requests: &[SignupRequest],
    writes: &[SignupWrite],
    now: i64,
) -> anyhow::Result<HashMap<usize, i64>> {
    let to_insert: Vec<usize> = (0..requests.len())
        .filter(|&i| writes[i] == SignupWrite::Insert)
        .collect();
    let mut ids = HashMap::new();
    if to_insert.is_empty() {
        return Ok(ids);
    }
    let rows: Vec<String> = (0..to_insert.len())
        .map(|k| {
            let b = k * 4;
            format!(
                "(${}, ${}, 'pending', ${}, ${}, ${}, ${})",
                b + 1,
                b + 2,
                b + 3,
                b + 4,
                b + 4,
                b + 4
            )
        })
        .collect();
    let sql = format!(
        "INSERT INTO subscribers
            (email, name, status, source, created_at, updated_at, last_confirmation_sent_at)
         VALUES {} RETURNING id, email",
        rows.join(", ")
    );
    let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
    for &i in &to_insert {
        let r = &requests[i];
        q = q
            .bind(r.email.as_str())
            .bind(r.name.as_ref().map(|n| n.as_str().to_string()))
            .bind(r.consent.source.as_str())
            .bind(now);
    }
    let by_email: HashMap<String, i64> = q
        .fetch_all(&mut **tx)
        .await
        .context("storing new subscribers")?
        .iter()
        .map(|row| Ok((row.try_get("email")?, row.try_get("id")?)))
        .collect::<anyhow::Result<_>>()?;
    super::count_new_subscribers(
        &mut **tx,
        SubscriberStatus::Pending.as_str(),
        by_email.len() as i64,
    )
    .await?;
    for &i in &to_insert {
        let email = requests[i].email.as_str();
        let id = by_email
            .get(email)
            .with_context(|| format!("{email} was not inserted"))?;
        ids.insert(i, *id);
    }
    Ok(ids)
}

/// One attempt row per request, whatever it did (`mailed` when it gets a confirmation), and
/// the rows that fell out of the window go.
async fn record_attempts(
    tx: &mut Transaction<'static, Any>,
    requests: &[SignupRequest],
    mailed: &HashMap<usize, i64>,
    now: i64,
    window_start: i64,
) -> anyhow::Result<()> {
    let sql = format!(
        "INSERT INTO signup_attempts (mailbox_key, at, mailed) VALUES {}",
        rows_of(requests.len(), 3)
    );
    let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
    for (i, r) in requests.iter().enumerate() {
        q = q
            .bind(r.mailbox_key.clone())
            .bind(now)
            .bind(i64::from(mailed.contains_key(&i)));
    }
    q.execute(&mut **tx)
        .await
        .context("recording signup attempts")?;
    sqlx::query("DELETE FROM signup_attempts WHERE at <= $1")
        .bind(window_start)
        .execute(&mut **tx)
        .await
        .context("forgetting old signup attempts")?;
    Ok(())
}

/// Consent records, tokens (valid until `expires_at`) and queued confirmation mails for every
/// signup that starts (or restarts) double opt-in: `(request index, subscriber id)`.
async fn start_confirmations(
    tx: &mut Transaction<'static, Any>,
    requests: &[SignupRequest],
    confirm: &[(usize, i64)],
    now: i64,
    expires_at: i64,
) -> anyhow::Result<()> {
    if confirm.is_empty() {
        return Ok(());
    }
    let sql = format!(
        "INSERT INTO consents (subscriber_id, event, at, ip, user_agent, source, consent_text_version)
         VALUES {}",
        rows_of(confirm.len(), 7)
    );
    let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
    for &(i, id) in confirm {
        let c = &requests[i].consent;
        q = q
            .bind(id)
            .bind("signup")
            .bind(now)
            .bind(c.ip.clone())
            .bind(c.user_agent.clone())
            .bind(c.source.clone())
            .bind(c.consent_text_version.clone());
    }
    q.execute(&mut **tx).await.context("recording consent")?;
    super::count_new_consents(&mut **tx, "signup", confirm.len() as i64).await?;

    let sql = format!(
        "INSERT INTO confirmation_tokens (token_hash, subscriber_id, created_at, expires_at)
         VALUES {}",
        rows_of(confirm.len(), 4)
    );
    let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
    for &(i, id) in confirm {
        q = q
            .bind(requests[i].token_hash.clone())
            .bind(id)
            .bind(now)
            .bind(expires_at);
    }
    q.execute(&mut **tx)
        .await
        .context("storing confirmation tokens")?;

    let sql = format!(
        "INSERT INTO outbound_mail
            (kind, subscriber_id, to_email, token, status, next_attempt_at, created_at)
         VALUES {}",
        rows_of(confirm.len(), 7)
    );
    let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
    for &(i, id) in confirm {
        q = q
            .bind(MailKind::CONFIRM)
            .bind(id)
            .bind(requests[i].email.as_str())
            .bind(requests[i].token.clone())
            .bind("pending")
            .bind(now)
            .bind(now);
    }
    q.execute(&mut **tx)
        .await
        .context("queueing confirmation mail")?;
    Ok(())
}

impl Store {
    /// Starts a batch of reader signups (double opt-in): opens the write transaction and
    /// reads, in it, what deciding them needs — the stored rows of their addresses and each
    /// mailbox's confirmation mails within `mailbox_window` ([`SignupState`]). The whole batch
    /// is one transaction with a handful of multi-row statements whatever its size: group
    /// commit, so the database is not the bottleneck of a burst of signups.
    pub async fn begin_signup_batch<'r>(
        &self,
        requests: &'r [SignupRequest],
        mailbox_window: Duration,
    ) -> anyhow::Result<SignupBatch<'r>> {
        let mut tx = self.begin_write().await?;
        let now = to_millis(Utc::now());
        let window_start = now - ms(mailbox_window);
        let mut mailed: HashMap<String, u32> = HashMap::new();
        let mut known: HashMap<String, KnownAddress> = HashMap::new();
        // An empty batch reads nothing (an empty IN list is not SQL).
        if !requests.is_empty() {
            // Confirmation mails per mailbox within the window.
            let keys: Vec<&str> = requests.iter().map(|r| r.mailbox_key.as_str()).collect();
            let sql = format!(
                "SELECT mailbox_key, COUNT(*) AS n FROM signup_attempts
              WHERE mailed = 1 AND at > $1 AND mailbox_key IN ({})
              GROUP BY mailbox_key",
                placeholders(2, keys.len())
            );
            let mut q = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(window_start);
            for k in &keys {
                q = q.bind(*k);
            }
            for row in q
                .fetch_all(&mut *tx)
                .await
                .context("counting confirmations per mailbox")?
            {
                let n: i64 = row.try_get("n")?;
                mailed.insert(
                    row.try_get("mailbox_key")?,
                    u32::try_from(n).unwrap_or(u32::MAX),
                );
            }

            // What we know of these addresses.
            let emails: Vec<&str> = requests.iter().map(|r| r.email.as_str()).collect();
            let sql = format!(
                "SELECT id, email, status, last_confirmation_sent_at FROM subscribers WHERE email IN ({})",
                placeholders(1, emails.len())
            );
            let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
            for e in &emails {
                q = q.bind(*e);
            }
            for row in q.fetch_all(&mut *tx).await.context("looking up signups")? {
                let status: String = row.try_get("status")?;
                known.insert(
                    row.try_get("email")?,
                    KnownAddress {
                        id: row.try_get("id")?,
                        status: status.parse().map_err(anyhow::Error::msg)?,
                        last_confirmation_sent_at: row
                            .try_get::<Option<i64>, _>("last_confirmation_sent_at")?
                            .map(from_millis),
                    },
                );
            }
        }
        Ok(SignupBatch {
            tx,
            requests,
            window_start,
            state: SignupState {
                now: from_millis(now),
                known,
                mailed,
            },
        })
    }

    /// Whether `token_hash` is a live (unused, unexpired) confirmation token.
    pub async fn confirmation_token(&self, token_hash: &str) -> anyhow::Result<ConfirmationToken> {
        let row: Option<(Option<i64>, i64, Option<String>)> = sqlx::query_as(
            "SELECT t.used_at, t.expires_at, s.status
               FROM confirmation_tokens t LEFT JOIN subscribers s ON s.id = t.subscriber_id
              WHERE t.token_hash = $1",
        )
        .bind(token_hash)
        .fetch_optional(&self.pool)
        .await?;
        let now = to_millis(Utc::now());
        Ok(match row {
            Some((None, expires_at, Some(status))) if expires_at > now && status == "pending" => {
                ConfirmationToken::Live
            }
            Some((_, _, Some(status))) if status == "confirmed" => {
                ConfirmationToken::AlreadyConfirmed
            }
            _ => ConfirmationToken::Dead,
        })
    }

    /// Uses a confirmation token: the subscriber becomes confirmed, the token dead, any
    /// suppression of the address lifted (they signed up themselves), and `then` queued in the
    /// same transaction (the caller decides which mail follows a confirmation).
    pub async fn confirm(
        &self,
        token_hash: &str,
        consent: &ConsentContext,
        suppression_hash: impl FnOnce(&str) -> String,
        then: Option<&MailKind>,
    ) -> anyhow::Result<ConfirmOutcome> {
        let mut tx = self.begin_write().await?;
        let now = to_millis(Utc::now());
        let row = sqlx::query(
            "UPDATE confirmation_tokens SET used_at = $1
              WHERE token_hash = $2 AND used_at IS NULL AND expires_at > $1
              RETURNING subscriber_id",
        )
        .bind(now)
        .bind(token_hash)
        .fetch_optional(&mut *tx)
        .await?;
        let Some(row) = row else {
            tx.rollback().await?;
            return Ok(match self.confirmation_token(token_hash).await? {
                ConfirmationToken::AlreadyConfirmed => ConfirmOutcome::AlreadyConfirmed,
                _ => ConfirmOutcome::Invalid,
            });
        };
        let id: i64 = row.try_get("subscriber_id")?;
        let confirmed = sqlx::query(
            "UPDATE subscribers SET status = 'confirmed', confirmed_at = $1, updated_at = $1,
                    unsubscribed_at = NULL, bounced_at = NULL
              WHERE id = $2 AND status = 'pending' RETURNING email, name",
        )
        .bind(now)
        .bind(id)
        .fetch_optional(&mut *tx)
        .await?;
        let Some(confirmed) = confirmed else {
            // Not pending any more (confirmed through another token, or unsubscribed since).
            let status: Option<String> =
                sqlx::query_scalar("SELECT status FROM subscribers WHERE id = $1")
                    .bind(id)
                    .fetch_optional(&mut *tx)
                    .await?;
            tx.commit().await?;
            return Ok(if status.as_deref() == Some("confirmed") {
                ConfirmOutcome::AlreadyConfirmed
            } else {
                ConfirmOutcome::Invalid
            });
        };
        let email: String = confirmed.try_get("email")?;
        // Every other open token of this subscriber is now pointless.
        sqlx::query(
            "UPDATE confirmation_tokens SET used_at = $1 WHERE subscriber_id = $2 AND used_at IS NULL",
        )
        .bind(now)
        .bind(id)
        .execute(&mut *tx)
        .await?;
        sqlx::query("DELETE FROM suppressions WHERE email_hash = $1")
            .bind(suppression_hash(&email))
            .execute(&mut *tx)
            .await?;
        insert_consent(&mut tx, id, "confirm", now, consent).await?;
        if let Some(kind) = then {
            Self::enqueue_mail(&mut tx, kind, id, &email, now).await?;
        }
        tx.commit().await.context("committing the confirmation")?;
        Ok(ConfirmOutcome::Confirmed {
            subscriber_id: id,
            email,
        })
    }

    /// Unsubscribes a subscriber at once. Idempotent; `false` when the id is unknown (erased).
    pub async fn unsubscribe(
        &self,
        subscriber_id: i64,
        consent: &ConsentContext,
    ) -> anyhow::Result<bool> {
        let mut tx = self.begin_write().await?;
        let now = to_millis(Utc::now());
        let changed = sqlx::query(
            "UPDATE subscribers SET status = 'unsubscribed', unsubscribed_at = $1, updated_at = $1
              WHERE id = $2 AND status IN ('pending', 'confirmed')",
        )
        .bind(now)
        .bind(subscriber_id)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if changed > 0 {
            insert_consent(&mut tx, subscriber_id, "unsubscribe", now, consent).await?;
            // Open confirmation links must not bring them back.
            sqlx::query(
                "UPDATE confirmation_tokens SET used_at = $1 WHERE subscriber_id = $2 AND used_at IS NULL",
            )
            .bind(now)
            .bind(subscriber_id)
            .execute(&mut *tx)
            .await?;
        }
        let exists: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM subscribers WHERE id = $1")
            .bind(subscriber_id)
            .fetch_one(&mut *tx)
            .await?;
        tx.commit().await?;
        if changed > 0 {
            tracing::info!(subscriber_id, "unsubscribed");
        }
        Ok(exists > 0)
    }

    /// Operator add (CLI or import). Never re-activates an unsubscribed, bounced or erased
    /// address.
    pub async fn add_subscriber(
        &self,
        new: &NewSubscriber<'_>,
        consent: &ConsentContext,
        suppression_hash: &str,
    ) -> anyhow::Result<AddOutcome> {
        let mut tx = self.begin_write().await?;
        let outcome = Self::add_in(&mut tx, new, consent, suppression_hash).await?;
        tx.commit().await?;
        Ok(outcome)
    }

    /// Every subscriber, oldest first, as a stream (the export reads a million rows in constant
    /// memory).
    pub fn stream_subscribers(
        &self,
    ) -> futures_util::stream::BoxStream<'_, anyhow::Result<SubscriberRow>> {
        use futures_util::StreamExt;
        let sql: &'static str = const_format_subscribers();
        sqlx::query(sql)
            .fetch(&self.pool)
            .map(|r| {
                r.context("reading subscribers")
                    .and_then(|row| subscriber_from_row(&row))
            })
            .boxed()
    }

    async fn add_in(
        tx: &mut Transaction<'static, Any>,
        new: &NewSubscriber<'_>,
        consent: &ConsentContext,
        suppression_hash: &str,
    ) -> anyhow::Result<AddOutcome> {
        let erased: i64 =
            sqlx::query_scalar("SELECT COUNT(*) FROM suppressions WHERE email_hash = $1")
                .bind(suppression_hash)
                .fetch_one(&mut **tx)
                .await?;
        let existing: Option<String> =
            sqlx::query_scalar("SELECT status FROM subscribers WHERE email = $1")
                .bind(new.email.as_str())
                .fetch_optional(&mut **tx)
                .await?;
        let existing = existing
            .map(|s| s.parse::<SubscriberStatus>().map_err(anyhow::Error::msg))
            .transpose()?;
        // The rule is the domain's; this transaction only makes it race-free.
        let outcome = crate::subscribers::operator_add(erased > 0, existing);
        if outcome != AddOutcome::Added {
            return Ok(outcome);
        }
        let now = to_millis(Utc::now());
        let status = if new.confirmed {
            "confirmed"
        } else {
            "pending"
        };
        let id: i64 = sqlx::query_scalar(
            "INSERT INTO subscribers (email, name, status, source, created_at, updated_at, confirmed_at)
             VALUES ($1, $2, $3, $4, $5, $5, $6) RETURNING id",
        )
        .bind(new.email.as_str())
        .bind(new.name.map(SubscriberName::as_str))
        .bind(status)
        .bind(consent.source.as_str())
        .bind(now)
        .bind(new.confirmed.then_some(now))
        .fetch_one(&mut **tx)
        .await?;
        super::count_new_subscribers(&mut **tx, status, 1).await?;
        insert_consent(tx, id, "import", now, consent).await?;
        Ok(AddOutcome::Added)
    }

    /// Erases a subscriber's personal data and keeps only a suppression hash. Returns whether
    /// the address was known.
    pub async fn remove_subscriber(
        &self,
        email: &SubscriberEmail,
        suppression_hash: &str,
    ) -> anyhow::Result<bool> {
        let mut tx = self.begin_write().await?;
        let now = to_millis(Utc::now());
        let deleted = sqlx::query("DELETE FROM subscribers WHERE email = $1")
            .bind(email.as_str())
            .execute(&mut *tx)
            .await?
            .rows_affected();
        sqlx::query(
            "INSERT INTO suppressions (email_hash, reason, created_at) VALUES ($1, 'erased', $2)
             ON CONFLICT (email_hash) DO NOTHING",
        )
        .bind(suppression_hash)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(deleted > 0)
    }

    pub async fn get_subscriber_by_email(
        &self,
        email: &SubscriberEmail,
    ) -> anyhow::Result<Option<SubscriberRow>> {
        let sql = format!("SELECT {COLUMNS} FROM subscribers WHERE email = $1");
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(email.as_str())
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(subscriber_from_row).transpose()
    }

    pub async fn get_subscriber(&self, id: i64) -> anyhow::Result<Option<SubscriberRow>> {
        let sql = format!("SELECT {COLUMNS} FROM subscribers WHERE id = $1");
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(subscriber_from_row).transpose()
    }

    /// Subscribers by id, in one query; ids that no longer exist are absent.
    pub async fn get_subscribers(
        &self,
        ids: &[i64],
    ) -> anyhow::Result<HashMap<i64, SubscriberRow>> {
        if ids.is_empty() {
            return Ok(HashMap::new());
        }
        let sql = format!(
            "SELECT {COLUMNS} FROM subscribers WHERE id IN ({})",
            placeholders(1, ids.len())
        );
        let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
        for id in ids {
            q = q.bind(*id);
        }
        q.fetch_all(&self.pool)
            .await?
            .iter()
            .map(|r| subscriber_from_row(r).map(|s| (s.id, s)))
            .collect()
    }

    /// Subscribers, optionally of one status, in signup order.
    pub async fn list_subscribers(
        &self,
        status: Option<SubscriberStatus>,
    ) -> anyhow::Result<Vec<SubscriberRow>> {
        let sql =
            format!("SELECT {COLUMNS} FROM subscribers WHERE ($1 = '' OR status = $1) ORDER BY id");
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(status.map_or("", SubscriberStatus::as_str))
            .fetch_all(&self.pool)
            .await
            .context("listing subscribers")?;
        rows.iter().map(subscriber_from_row).collect()
    }

    /// How many subscribers have a status: the counter triggers keep (`subscriber_counts`),
    /// exact at every commit, not a count of the table (900,000 index entries at a million).
    pub async fn count_subscribers(&self, status: SubscriberStatus) -> anyhow::Result<i64> {
        Ok(
            sqlx::query_scalar::<_, i64>("SELECT n FROM subscriber_counts WHERE status = $1")
                .bind(status.as_str())
                .fetch_optional(&self.pool)
                .await?
                .unwrap_or(0),
        )
    }

    /// Number of rows in a table: for tests and checks that "nothing was written".
    pub async fn count_rows(&self, table: &str) -> anyhow::Result<i64> {
        anyhow::ensure!(
            table.chars().all(|c| c.is_ascii_lowercase() || c == '_'),
            "not a table name: {table}"
        );
        let sql = format!("SELECT COUNT(*) FROM {table}");
        Ok(sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
            .fetch_one(&self.pool)
            .await?)
    }
}

/// `SELECT <columns> FROM subscribers ORDER BY id` as the `&'static str` a stream needs.
fn const_format_subscribers() -> &'static str {
    static SQL: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    SQL.get_or_init(|| format!("SELECT {COLUMNS} FROM subscribers ORDER BY id"))
}
