//! Subscribers in the database: signup, confirmation, unsubscribe, operator changes, erasure.
//! Every transition is one transaction that also writes its consent record.

use std::time::Duration;

use anyhow::Context;
use chrono::{DateTime, Utc};
use sqlx::any::AnyRow;
use sqlx::{Any, Row, Transaction};

use super::{Store, from_millis, to_millis};
use crate::subscribers::{ConsentContext, SubscriberEmail, SubscriberName, SubscriberStatus};

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

/// What a signup did. The reader sees the same answer in every case.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SignupOutcome {
    /// A confirmation mail is queued.
    ConfirmationQueued,
    /// Pending, and a confirmation went out less than `signup.resend_interval` ago.
    Throttled,
    /// Already confirmed: nothing new.
    AlreadyConfirmed,
}

/// What a confirmation click did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConfirmOutcome {
    /// Confirmed now; a welcome mail is queued.
    Confirmed { subscriber_id: i64, email: String },
    /// Unknown, used or expired token.
    Invalid,
}

/// Outcome of an operator add/import of one address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AddOutcome {
    Added,
    AlreadyPresent,
    /// The person unsubscribed or asked to be erased: only they can sign up again.
    Suppressed,
}

/// What an operator add/import writes.
pub struct NewSubscriber<'a> {
    pub email: &'a SubscriberEmail,
    pub name: Option<&'a SubscriberName>,
    pub confirmed: bool,
}

async fn insert_consent(
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
    Ok(())
}

fn ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

impl Store {
    /// A reader signs up (double opt-in). `token_hash` is the hash of a fresh confirmation
    /// token; `compose` builds the confirmation message for the subscriber id (it carries the
    /// unsubscribe link, which needs the id). Everything happens in one transaction.
    #[allow(clippy::too_many_arguments)]
    pub async fn signup(
        &self,
        email: &SubscriberEmail,
        name: Option<&SubscriberName>,
        consent: &ConsentContext,
        token_hash: &str,
        token_ttl: Duration,
        resend_interval: Duration,
        compose: impl FnOnce(i64) -> anyhow::Result<String>,
    ) -> anyhow::Result<SignupOutcome> {
        let mut tx = self.begin_write().await?;
        let now = to_millis(Utc::now());
        let existing = sqlx::query(
            "SELECT id, status, last_confirmation_sent_at FROM subscribers WHERE email = $1",
        )
        .bind(email.as_str())
        .fetch_optional(&mut *tx)
        .await?;
        let id = match existing {
            None => sqlx::query_scalar::<_, i64>(
                "INSERT INTO subscribers (email, name, status, source, created_at, updated_at)
                     VALUES ($1, $2, 'pending', $3, $4, $4) RETURNING id",
            )
            .bind(email.as_str())
            .bind(name.map(SubscriberName::as_str))
            .bind(consent.source.as_str())
            .bind(now)
            .fetch_one(&mut *tx)
            .await
            .context("storing a new subscriber")?,
            Some(row) => {
                let id: i64 = row.try_get("id")?;
                let status: String = row.try_get("status")?;
                let last: Option<i64> = row.try_get("last_confirmation_sent_at")?;
                match status.as_str() {
                    "confirmed" => {
                        tx.rollback().await?;
                        return Ok(SignupOutcome::AlreadyConfirmed);
                    }
                    "pending" if last.is_some_and(|t| now - t < ms(resend_interval)) => {
                        insert_consent(&mut tx, id, "signup", now, consent).await?;
                        tx.commit().await?;
                        return Ok(SignupOutcome::Throttled);
                    }
                    _ => {
                        // Pending (throttle passed), unsubscribed or bounced: start over.
                        sqlx::query(
                            "UPDATE subscribers SET status = 'pending', name = COALESCE($1, name),
                                    updated_at = $2 WHERE id = $3",
                        )
                        .bind(name.map(SubscriberName::as_str))
                        .bind(now)
                        .bind(id)
                        .execute(&mut *tx)
                        .await?;
                        id
                    }
                }
            }
        };
        insert_consent(&mut tx, id, "signup", now, consent).await?;
        sqlx::query(
            "INSERT INTO confirmation_tokens (token_hash, subscriber_id, created_at, expires_at)
             VALUES ($1, $2, $3, $4)",
        )
        .bind(token_hash)
        .bind(id)
        .bind(now)
        .bind(now + ms(token_ttl))
        .execute(&mut *tx)
        .await
        .context("storing the confirmation token")?;
        sqlx::query("UPDATE subscribers SET last_confirmation_sent_at = $1 WHERE id = $2")
            .bind(now)
            .bind(id)
            .execute(&mut *tx)
            .await?;
        let message = compose(id)?;
        Self::enqueue_mail(&mut tx, "confirm", id, email.as_str(), &message, now).await?;
        tx.commit().await.context("committing the signup")?;
        Ok(SignupOutcome::ConfirmationQueued)
    }

    /// Whether `token_hash` is a live (unused, unexpired) confirmation token.
    pub async fn confirmation_token_is_live(&self, token_hash: &str) -> anyhow::Result<bool> {
        let n: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM confirmation_tokens
              WHERE token_hash = $1 AND used_at IS NULL AND expires_at > $2",
        )
        .bind(token_hash)
        .bind(to_millis(Utc::now()))
        .fetch_one(&self.pool)
        .await?;
        Ok(n > 0)
    }

    /// Uses a confirmation token: the subscriber becomes confirmed, the token dead, any
    /// suppression of the address lifted (they signed up themselves), and a welcome mail queued.
    pub async fn confirm(
        &self,
        token_hash: &str,
        consent: &ConsentContext,
        suppression_hash: impl FnOnce(&str) -> String,
        compose_welcome: impl FnOnce(i64, &str, Option<&str>) -> anyhow::Result<String>,
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
            return Ok(ConfirmOutcome::Invalid);
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
            tx.commit().await?;
            return Ok(ConfirmOutcome::Invalid);
        };
        let email: String = confirmed.try_get("email")?;
        let name: Option<String> = confirmed.try_get("name")?;
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
        let message = compose_welcome(id, &email, name.as_deref())?;
        Self::enqueue_mail(&mut tx, "welcome", id, &email, &message, now).await?;
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

    /// Adds many in one transaction (CSV import).
    pub async fn add_subscribers(
        &self,
        rows: &[(NewSubscriber<'_>, String)],
        consent: &ConsentContext,
    ) -> anyhow::Result<Vec<AddOutcome>> {
        let mut tx = self.begin_write().await?;
        let mut out = Vec::with_capacity(rows.len());
        for (new, suppression) in rows {
            out.push(Self::add_in(&mut tx, new, consent, suppression).await?);
        }
        tx.commit().await.context("committing the import")?;
        Ok(out)
    }

    async fn add_in(
        tx: &mut Transaction<'static, Any>,
        new: &NewSubscriber<'_>,
        consent: &ConsentContext,
        suppression_hash: &str,
    ) -> anyhow::Result<AddOutcome> {
        let suppressed: i64 =
            sqlx::query_scalar("SELECT COUNT(*) FROM suppressions WHERE email_hash = $1")
                .bind(suppression_hash)
                .fetch_one(&mut **tx)
                .await?;
        if suppressed > 0 {
            return Ok(AddOutcome::Suppressed);
        }
        let existing: Option<String> =
            sqlx::query_scalar("SELECT status FROM subscribers WHERE email = $1")
                .bind(new.email.as_str())
                .fetch_optional(&mut **tx)
                .await?;
        match existing.as_deref() {
            Some("unsubscribed") | Some("bounced") => return Ok(AddOutcome::Suppressed),
            Some(_) => return Ok(AddOutcome::AlreadyPresent),
            None => {}
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

    /// How many subscribers have each status.
    pub async fn count_subscribers(&self, status: SubscriberStatus) -> anyhow::Result<i64> {
        Ok(
            sqlx::query_scalar("SELECT COUNT(*) FROM subscribers WHERE status = $1")
                .bind(status.as_str())
                .fetch_one(&self.pool)
                .await?,
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
