//! What a reader changes from their emails beyond pause and categories: a change of address
//! (confirmed at the new address first) and the answer to `subscribers repermission` (keep, or
//! lapse at the deadline). Every change is one transaction with its consent record; the rules
//! (which address may be taken, when a deadline is due) are the caller's.

use std::time::Duration;

use anyhow::Context;
use chrono::{DateTime, Utc};
use sqlx::Row;

use super::{insert_consent, ms};
use crate::mail::MailKind;
use crate::store::{Store, from_millis, placeholders, to_millis};
use crate::subscribers::{ConsentContext, SubscriberEmail};

/// What asking for a change of address did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChangeRequested {
    /// Stored, and the confirmation queued to the new address.
    Queued,
    /// Another reader has that address.
    Taken,
    /// The reader is gone or not confirmed.
    NotConfirmed,
}

/// A change of address waiting for its confirmation, by its token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingChange {
    pub subscriber_id: i64,
    pub new_email: String,
    pub expires_at: DateTime<Utc>,
    pub used: bool,
}

/// What confirming a change of address did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChangeApplied {
    /// The reader's address is now the new one.
    Changed { old: String, new: String },
    /// Another reader took the address in between.
    Taken,
    /// No such token, already used, expired, or the reader is no longer confirmed.
    Invalid,
}

/// One reader whose deadline passed, unsubscribed with consent event `lapsed`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lapsed {
    pub id: i64,
    pub email: String,
}

fn is_unique_violation(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(db) if db.is_unique_violation())
}

impl Store {
    /// Stores a change of `subscriber_id`'s address to `new_email` under `token_hash` (valid
    /// for `ttl`) and queues the confirmation mail with the raw `token` to the new address, in
    /// one transaction. An earlier unconfirmed change of the reader is dropped.
    pub async fn request_email_change(
        &self,
        subscriber_id: i64,
        new_email: &SubscriberEmail,
        token: &str,
        token_hash: &str,
        ttl: Duration,
    ) -> anyhow::Result<ChangeRequested> {
        let mut tx = self.begin_write().await?;
        let now = to_millis(Utc::now());
        let confirmed: Option<i64> =
            sqlx::query_scalar("SELECT id FROM subscribers WHERE id = $1 AND status = 'confirmed'")
                .bind(subscriber_id)
                .fetch_optional(&mut *tx)
                .await?;
        if confirmed.is_none() {
            return Ok(ChangeRequested::NotConfirmed);
        }
        let taken: Option<i64> = sqlx::query_scalar("SELECT id FROM subscribers WHERE email = $1")
            .bind(new_email.as_str())
            .fetch_optional(&mut *tx)
            .await?;
        sqlx::query("DELETE FROM email_changes WHERE subscriber_id = $1 AND used_at IS NULL")
            .bind(subscriber_id)
            .execute(&mut *tx)
            .await?;
        sqlx::query(
            "INSERT INTO email_changes (token_hash, subscriber_id, new_email, created_at, expires_at)
             VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(token_hash)
        .bind(subscriber_id)
        .bind(new_email.as_str())
        .bind(now)
        .bind(now + ms(ttl))
        .execute(&mut *tx)
        .await
        .context("storing a change of address")?;
        if taken.is_some() {
            // Kept like any other request (the reader's page looks the same), but no link goes
            // out: the address belongs to another subscription.
            tx.commit()
                .await
                .context("committing a change of address")?;
            return Ok(ChangeRequested::Taken);
        }
        Store::enqueue_mail(
            &mut tx,
            &MailKind::EmailChange {
                token: token.to_string(),
            },
            subscriber_id,
            new_email.as_str(),
            now,
        )
        .await?;
        tx.commit()
            .await
            .context("committing a change of address")?;
        Ok(ChangeRequested::Queued)
    }

    /// The change of address a token stands for (`None`: no such token).
    pub async fn email_change(&self, token_hash: &str) -> anyhow::Result<Option<PendingChange>> {
        let row = sqlx::query(
            "SELECT subscriber_id, new_email, expires_at, used_at FROM email_changes WHERE token_hash = $1",
        )
        .bind(token_hash)
        .fetch_optional(&self.pool)
        .await?;
        row.map(|r| {
            Ok(PendingChange {
                subscriber_id: r.try_get("subscriber_id")?,
                new_email: r.try_get("new_email")?,
                expires_at: from_millis(r.try_get("expires_at")?),
                used: r.try_get::<Option<i64>, _>("used_at")?.is_some(),
            })
        })
        .transpose()
    }

    /// The change of address a reader asked for and has not confirmed yet (for their page).
    pub async fn open_email_change(&self, subscriber_id: i64) -> anyhow::Result<Option<String>> {
        Ok(sqlx::query_scalar(
            "SELECT new_email FROM email_changes
              WHERE subscriber_id = $1 AND used_at IS NULL AND expires_at > $2
              ORDER BY created_at DESC LIMIT 1",
        )
        .bind(subscriber_id)
        .bind(to_millis(Utc::now()))
        .fetch_optional(&self.pool)
        .await?)
    }

    /// Applies the change of address of `token_hash`: once, before it expires, while the
    /// reader is confirmed and nobody else has the address; with consent event
    /// `email_change`.
    pub async fn apply_email_change(
        &self,
        token_hash: &str,
        consent: &ConsentContext,
    ) -> anyhow::Result<ChangeApplied> {
        let mut tx = self.begin_write().await?;
        let now = to_millis(Utc::now());
        let Some(row) = sqlx::query(
            "SELECT c.subscriber_id, c.new_email, s.email FROM email_changes c
               JOIN subscribers s ON s.id = c.subscriber_id
              WHERE c.token_hash = $1 AND c.used_at IS NULL AND c.expires_at > $2
                AND s.status = 'confirmed'",
        )
        .bind(token_hash)
        .bind(now)
        .fetch_optional(&mut *tx)
        .await?
        else {
            return Ok(ChangeApplied::Invalid);
        };
        let id: i64 = row.try_get("subscriber_id")?;
        let new: String = row.try_get("new_email")?;
        let old: String = row.try_get("email")?;
        let updated =
            sqlx::query("UPDATE subscribers SET email = $1, updated_at = $2 WHERE id = $3")
                .bind(new.as_str())
                .bind(now)
                .bind(id)
                .execute(&mut *tx)
                .await;
        match updated {
            Ok(_) => {}
            Err(e) if is_unique_violation(&e) => return Ok(ChangeApplied::Taken),
            Err(e) => return Err(anyhow::Error::from(e).context("changing an address")),
        }
        sqlx::query(
            "UPDATE email_changes SET used_at = $1 WHERE subscriber_id = $2 AND used_at IS NULL",
        )
        .bind(now)
        .bind(id)
        .execute(&mut *tx)
        .await?;
        insert_consent(&mut tx, id, "email_change", now, consent).await?;
        tx.commit()
            .await
            .context("committing a change of address")?;
        Ok(ChangeApplied::Changed { old, new })
    }

    /// How many confirmed readers confirmed before `before` and are not being asked already:
    /// whom `subscribers repermission` would mail.
    pub async fn repermission_candidates(&self, before: DateTime<Utc>) -> anyhow::Result<i64> {
        Ok(sqlx::query_scalar(
            "SELECT CAST(COUNT(*) AS BIGINT) FROM subscribers
              WHERE status = 'confirmed' AND COALESCE(confirmed_at, created_at) < $1
                AND repermission_deadline IS NULL",
        )
        .bind(to_millis(before))
        .fetch_one(&self.pool)
        .await?)
    }

    /// Asks the confirmed readers who confirmed before `before` (and are not being asked
    /// already) whether they still want the newsletter: marks them with `deadline` and queues
    /// each the repermission mail, in one transaction. Returns how many.
    pub async fn ask_repermission(
        &self,
        before: DateTime<Utc>,
        deadline: DateTime<Utc>,
    ) -> anyhow::Result<u64> {
        let mut tx = self.begin_write().await?;
        let now = to_millis(Utc::now());
        let asked = sqlx::query(
            "UPDATE subscribers SET repermission_asked_at = $1, repermission_deadline = $2, updated_at = $1
              WHERE status = 'confirmed' AND COALESCE(confirmed_at, created_at) < $3
                AND repermission_deadline IS NULL",
        )
        .bind(now)
        .bind(to_millis(deadline))
        .bind(to_millis(before))
        .execute(&mut *tx)
        .await
        .context("marking readers asked")?
        .rows_affected();
        // The readers just marked: those asked at this instant with this deadline (inside this
        // transaction, only this statement wrote both).
        sqlx::query(
            "INSERT INTO outbound_mail (kind, subscriber_id, to_email, token, status, next_attempt_at, created_at)
             SELECT $1, id, email, NULL, 'pending', $2, $2 FROM subscribers
              WHERE repermission_asked_at = $2 AND repermission_deadline = $3 AND status = 'confirmed'",
        )
        .bind(MailKind::REPERMISSION)
        .bind(now)
        .bind(to_millis(deadline))
        .execute(&mut *tx)
        .await
        .context("queueing repermission mail")?;
        tx.commit().await.context("committing repermission")?;
        Ok(asked)
    }

    /// The reader keeps their subscription: their deadline is cleared, with consent event
    /// `keep`. Returns whether they were being asked.
    pub async fn keep_subscription(
        &self,
        subscriber_id: i64,
        consent: &ConsentContext,
    ) -> anyhow::Result<bool> {
        let mut tx = self.begin_write().await?;
        let now = to_millis(Utc::now());
        let kept = sqlx::query(
            "UPDATE subscribers SET repermission_deadline = NULL, updated_at = $1
              WHERE id = $2 AND status = 'confirmed' AND repermission_deadline IS NOT NULL",
        )
        .bind(now)
        .bind(subscriber_id)
        .execute(&mut *tx)
        .await?
        .rows_affected()
            > 0;
        if kept {
            insert_consent(&mut tx, subscriber_id, "keep", now, consent).await?;
        }
        tx.commit().await?;
        Ok(kept)
    }

    /// The deadline of a reader being asked, if they are.
    pub async fn repermission_deadline(
        &self,
        subscriber_id: i64,
    ) -> anyhow::Result<Option<DateTime<Utc>>> {
        let at: Option<Option<i64>> = sqlx::query_scalar(
            "SELECT repermission_deadline FROM subscribers WHERE id = $1 AND status = 'confirmed'",
        )
        .bind(subscriber_id)
        .fetch_optional(&self.pool)
        .await?;
        Ok(at.flatten().map(from_millis))
    }

    /// Unsubscribes up to `limit` readers whose deadline passed at `now` without a keep, each
    /// with consent event `lapsed` (source `repermission`), in one transaction. Several
    /// workers at once: the `UPDATE … RETURNING` rows are this call's alone (PostgreSQL
    /// re-checks a row another transaction changed; SQLite has one writer).
    pub async fn lapse_repermissions(
        &self,
        now: DateTime<Utc>,
        limit: i64,
    ) -> anyhow::Result<Vec<Lapsed>> {
        let mut tx = self.begin_write().await?;
        let at = to_millis(now);
        let rows = sqlx::query(
            "UPDATE subscribers SET status = 'unsubscribed', unsubscribed_at = $1, updated_at = $1,
                    repermission_deadline = NULL
              WHERE status = 'confirmed' AND repermission_deadline IS NOT NULL AND id IN (
                    SELECT id FROM subscribers
                     WHERE repermission_deadline IS NOT NULL AND repermission_deadline <= $1
                       AND status = 'confirmed'
                     ORDER BY id LIMIT $2)
             RETURNING id, email",
        )
        .bind(at)
        .bind(limit)
        .fetch_all(&mut *tx)
        .await
        .context("lapsing readers who did not keep")?;
        let mut lapsed = rows
            .iter()
            .map(|r| {
                Ok(Lapsed {
                    id: r.try_get("id")?,
                    email: r.try_get("email")?,
                })
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        lapsed.sort_by_key(|l| l.id);
        let consent = ConsentContext {
            ip: None,
            user_agent: None,
            source: "repermission".into(),
            consent_text_version: None,
        };
        for l in &lapsed {
            insert_consent(&mut tx, l.id, "lapsed", at, &consent).await?;
        }
        if !lapsed.is_empty() {
            // Open confirmation links must not bring them back.
            let sql = format!(
                "UPDATE confirmation_tokens SET used_at = $1 WHERE used_at IS NULL AND subscriber_id IN ({})",
                placeholders(2, lapsed.len())
            );
            let mut q = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(at);
            for l in &lapsed {
                q = q.bind(l.id);
            }
            q.execute(&mut *tx).await?;
        }
        tx.commit().await.context("committing lapsed readers")?;
        Ok(lapsed)
    }
}
