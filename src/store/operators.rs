//! The operator log (who did what, and when), operator accounts and their console sessions.

use anyhow::Context;
use chrono::{DateTime, Utc};
use sqlx::Row;
use sqlx::any::AnyRow;

use super::overview::{Keyset, Window};
use super::{Store, from_millis, to_millis};
use crate::operators::{OperatorEmail, Role};

/// One operator account as stored.
#[derive(Debug, Clone, serde::Serialize)]
pub struct OperatorRow {
    pub id: i64,
    pub email: String,
    pub role: Role,
    #[serde(skip)]
    pub password_hash: String,
    pub created_at: DateTime<Utc>,
}

/// A live session with its operator.
#[derive(Debug, Clone)]
pub struct SessionRow {
    pub operator: OperatorRow,
    pub csrf_token: String,
    pub created_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
}

/// One entry of the operator log.
#[derive(Debug, Clone, serde::Serialize)]
pub struct LogEntry {
    pub id: i64,
    pub at: DateTime<Utc>,
    pub actor: String,
    pub action: String,
    pub issue_id: Option<i64>,
    pub detail: Option<String>,
}

fn log_entry(r: &AnyRow) -> anyhow::Result<LogEntry> {
    Ok(LogEntry {
        id: r.try_get("id")?,
        at: from_millis(r.try_get("at")?),
        actor: r.try_get("actor")?,
        action: r.try_get("action")?,
        issue_id: r.try_get("issue_id")?,
        detail: r.try_get("detail")?,
    })
}

const OPERATOR_COLUMNS: &str = "o.id, o.email, o.role, o.password_hash, o.created_at";

fn operator_from_row(row: &AnyRow) -> anyhow::Result<OperatorRow> {
    let role: String = row.try_get("role")?;
    Ok(OperatorRow {
        id: row.try_get("id")?,
        email: row.try_get("email")?,
        role: role.parse().map_err(anyhow::Error::msg)?,
        password_hash: row.try_get("password_hash")?,
        created_at: from_millis(row.try_get("created_at")?),
    })
}

/// How many operators of a role a removal must leave (see [`Store::delete_operator`]).
#[derive(Debug, Clone, Copy)]
pub struct KeepRole {
    pub role: Role,
    pub at_least: i64,
}

impl Store {
    /// Records one operator action.
    pub async fn log_operator_action(
        &self,
        actor: &str,
        action: &str,
        issue_id: Option<i64>,
        detail: &str,
    ) -> anyhow::Result<()> {
        sqlx::query(
            "INSERT INTO operator_log (at, actor, action, issue_id, detail) VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(to_millis(Utc::now()))
        .bind(actor)
        .bind(action)
        .bind(issue_id)
        .bind(detail)
        .execute(&self.writer)
        .await
        .context("writing the operator log")?;
        tracing::info!(actor, action, issue_id, detail, "operator action");
        Ok(())
    }

    /// The newest `limit` entries of the operator log, newest first.
    pub async fn recent_operator_log(&self, limit: i64) -> anyhow::Result<Vec<LogEntry>> {
        let rows = sqlx::query(
            "SELECT id, at, actor, action, issue_id, detail FROM operator_log
              ORDER BY at DESC, id DESC LIMIT $1",
        )
        .bind(limit)
        .fetch_all(&self.pool)
        .await
        .context("reading the operator log")?;
        rows.iter().map(log_entry).collect()
    }

    /// A page of the operator log, newest first (by entry), at most `limit`.
    pub async fn operator_log_page(
        &self,
        at: Keyset<i64>,
        limit: i64,
    ) -> anyhow::Result<Window<LogEntry>> {
        let page = |newer: bool, key: i64| async move {
            let sql = if newer {
                "SELECT id, at, actor, action, issue_id, detail FROM operator_log
                  WHERE id > $1 ORDER BY id LIMIT $2"
            } else {
                "SELECT id, at, actor, action, issue_id, detail FROM operator_log
                  WHERE id < $1 ORDER BY id DESC LIMIT $2"
            };
            let rows = sqlx::query(sql)
                .bind(key)
                .bind(limit)
                .fetch_all(&self.pool)
                .await
                .context("reading the operator log")?;
            let mut entries = rows
                .iter()
                .map(log_entry)
                .collect::<anyhow::Result<Vec<_>>>()?;
            if newer {
                entries.reverse();
            }
            anyhow::Ok(entries)
        };
        let rows = match at {
            Keyset::Newest => page(false, i64::MAX).await?,
            Keyset::After(id) => page(false, id).await?,
            Keyset::Before(id) => {
                let rows = page(true, id).await?;
                if (rows.len() as i64) < limit {
                    page(false, i64::MAX).await?
                } else {
                    rows
                }
            }
        };
        let count = |above: i64| async move {
            sqlx::query_scalar::<_, i64>("SELECT COUNT(*) FROM operator_log WHERE id > $1")
                .bind(above)
                .fetch_one(&self.pool)
                .await
                .context("counting the operator log")
        };
        let total = count(i64::MIN).await?;
        let newer = match rows.first() {
            Some(first) => count(first.id).await?,
            None => 0,
        };
        Ok(Window { rows, total, newer })
    }

    /// Inserts an operator; `None` when the address is an operator already.
    pub async fn insert_operator(
        &self,
        email: &OperatorEmail,
        role: Role,
        password_hash: &str,
    ) -> anyhow::Result<Option<OperatorRow>> {
        let now = to_millis(Utc::now());
        let id: Option<i64> = sqlx::query_scalar(
            "INSERT INTO operators (email, role, password_hash, created_at, password_changed_at)
             VALUES ($1, $2, $3, $4, $4) ON CONFLICT (email) DO NOTHING RETURNING id",
        )
        .bind(email.as_str())
        .bind(role.as_str())
        .bind(password_hash)
        .bind(now)
        .fetch_optional(&self.writer)
        .await
        .context("adding an operator")?;
        Ok(id.map(|id| OperatorRow {
            id,
            email: email.to_string(),
            role,
            password_hash: password_hash.to_string(),
            created_at: from_millis(now),
        }))
    }

    pub async fn get_operator_by_email(&self, email: &str) -> anyhow::Result<Option<OperatorRow>> {
        let sql = format!("SELECT {OPERATOR_COLUMNS} FROM operators o WHERE o.email = $1");
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(email)
            .fetch_optional(&self.pool)
            .await
            .context("looking up an operator")?;
        row.as_ref().map(operator_from_row).transpose()
    }

    /// Every operator, in the order they were added.
    pub async fn list_operators(&self) -> anyhow::Result<Vec<OperatorRow>> {
        let sql = format!("SELECT {OPERATOR_COLUMNS} FROM operators o ORDER BY o.id");
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .fetch_all(&self.pool)
            .await
            .context("listing operators")?;
        rows.iter().map(operator_from_row).collect()
    }

    /// Removes an operator and every session of theirs, in one transaction, unless that would
    /// leave fewer than `keep.at_least` operators of role `keep.role` (the caller's rule, which
    /// this transaction makes race-free). `Ok(None)`: no such operator; `Ok(Some(false))`:
    /// refused.
    pub async fn delete_operator(
        &self,
        email: &str,
        keep: KeepRole,
    ) -> anyhow::Result<Option<bool>> {
        let mut tx = self.begin_write().await?;
        let role: Option<String> =
            sqlx::query_scalar("SELECT role FROM operators WHERE email = $1")
                .bind(email)
                .fetch_optional(&mut *tx)
                .await?;
        let Some(role) = role else {
            return Ok(None);
        };
        if role == keep.role.as_str() {
            let left: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM operators WHERE role = $1")
                .bind(keep.role.as_str())
                .fetch_one(&mut *tx)
                .await?;
            if left - 1 < keep.at_least {
                tx.rollback().await?;
                return Ok(Some(false));
            }
        }
        sqlx::query(
            "DELETE FROM operator_sessions
              WHERE operator_id IN (SELECT id FROM operators WHERE email = $1)",
        )
        .bind(email)
        .execute(&mut *tx)
        .await?;
        sqlx::query("DELETE FROM operators WHERE email = $1")
            .bind(email)
            .execute(&mut *tx)
            .await?;
        tx.commit().await.context("removing an operator")?;
        Ok(Some(true))
    }

    /// Sets an operator's password hash, ends every session of theirs and uses up every
    /// sign-in link still open for them (a link mailed before the change must not undo it);
    /// `false` when there is no such operator.
    pub async fn set_operator_password(
        &self,
        email: &str,
        password_hash: &str,
    ) -> anyhow::Result<bool> {
        let mut tx = self.begin_write().await?;
        let changed = set_password_in(&mut tx, email, password_hash, Utc::now()).await?;
        tx.commit().await.context("changing a password")?;
        Ok(changed)
    }

    /// Stores a new session (by the hash of its token); removes expired ones on the way.
    pub async fn insert_session(
        &self,
        token_hash: &str,
        operator_id: i64,
        csrf_token: &str,
        expires_at: DateTime<Utc>,
    ) -> anyhow::Result<()> {
        let now = to_millis(Utc::now());
        sqlx::query("DELETE FROM operator_sessions WHERE expires_at <= $1")
            .bind(now)
            .execute(&self.writer)
            .await
            .context("removing expired sessions")?;
        sqlx::query(
            "INSERT INTO operator_sessions (token_hash, operator_id, csrf_token, created_at, expires_at)
             VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(token_hash)
        .bind(operator_id)
        .bind(csrf_token)
        .bind(now)
        .bind(to_millis(expires_at))
        .execute(&self.writer)
        .await
        .context("storing a session")?;
        Ok(())
    }

    /// The live (unexpired) session whose token hashes to `token_hash`, with its operator.
    pub async fn live_session(
        &self,
        token_hash: &str,
        now: DateTime<Utc>,
    ) -> anyhow::Result<Option<SessionRow>> {
        let sql = format!(
            "SELECT {OPERATOR_COLUMNS}, s.csrf_token, s.created_at AS session_created_at, s.expires_at
               FROM operator_sessions s JOIN operators o ON o.id = s.operator_id
              WHERE s.token_hash = $1 AND s.expires_at > $2"
        );
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(token_hash)
            .bind(to_millis(now))
            .fetch_optional(&self.pool)
            .await
            .context("looking up a session")?;
        row.map(|r| {
            Ok(SessionRow {
                operator: operator_from_row(&r)?,
                csrf_token: r.try_get("csrf_token")?,
                created_at: from_millis(r.try_get("session_created_at")?),
                expires_at: from_millis(r.try_get("expires_at")?),
            })
        })
        .transpose()
    }

    /// Moves a session's expiry forward to `expires_at` (never back); `true` when it moved.
    pub async fn extend_session(
        &self,
        token_hash: &str,
        expires_at: DateTime<Utc>,
    ) -> anyhow::Result<bool> {
        Ok(sqlx::query(
            "UPDATE operator_sessions SET expires_at = $1 WHERE token_hash = $2 AND expires_at < $1",
        )
        .bind(to_millis(expires_at))
        .bind(token_hash)
        .execute(&self.writer)
        .await
        .context("extending a session")?
        .rows_affected()
            > 0)
    }

    /// Ends one session; `true` when it existed.
    pub async fn delete_session(&self, token_hash: &str) -> anyhow::Result<bool> {
        Ok(
            sqlx::query("DELETE FROM operator_sessions WHERE token_hash = $1")
                .bind(token_hash)
                .execute(&self.writer)
                .await
                .context("ending a session")?
                .rows_affected()
                > 0,
        )
    }
}

/// An operator's two-factor enrolment as stored (the secret still sealed).
#[derive(Debug, Clone)]
pub struct TotpRow {
    pub secret_sealed: String,
    /// `None` while an enrolment started on the console waits for its first code.
    pub confirmed_at: Option<DateTime<Utc>>,
    /// The last step a code was accepted for.
    pub last_step: i64,
}

impl Store {
    /// Replaces an operator's two-factor secret and recovery codes (hashes); `confirmed` makes
    /// it required at sign-in at once.
    pub async fn put_operator_totp(
        &self,
        operator_id: i64,
        secret_sealed: &str,
        confirmed: bool,
        recovery_hashes: &[String],
    ) -> anyhow::Result<()> {
        let now = to_millis(Utc::now());
        let mut tx = self.begin_write().await?;
        sqlx::query("DELETE FROM operator_totp WHERE operator_id = $1")
            .bind(operator_id)
            .execute(&mut *tx)
            .await?;
        sqlx::query("DELETE FROM operator_recovery_codes WHERE operator_id = $1")
            .bind(operator_id)
            .execute(&mut *tx)
            .await?;
        sqlx::query(
            "INSERT INTO operator_totp (operator_id, secret_sealed, created_at, confirmed_at, last_step)
             VALUES ($1, $2, $3, $4, 0)",
        )
        .bind(operator_id)
        .bind(secret_sealed)
        .bind(now)
        .bind(confirmed.then_some(now))
        .execute(&mut *tx)
        .await?;
        for hash in recovery_hashes {
            sqlx::query(
                "INSERT INTO operator_recovery_codes (operator_id, code_hash) VALUES ($1, $2)",
            )
            .bind(operator_id)
            .bind(hash)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await.context("storing a two-factor secret")?;
        Ok(())
    }

    /// An operator's two-factor enrolment, confirmed or pending.
    pub async fn operator_totp(&self, operator_id: i64) -> anyhow::Result<Option<TotpRow>> {
        let row = sqlx::query(
            "SELECT secret_sealed, confirmed_at, last_step FROM operator_totp WHERE operator_id = $1",
        )
        .bind(operator_id)
        .fetch_optional(&self.writer)
        .await
        .context("reading a two-factor enrolment")?;
        row.map(|r| -> anyhow::Result<TotpRow> {
            let confirmed: Option<i64> = r.try_get("confirmed_at")?;
            Ok(TotpRow {
                secret_sealed: r.try_get("secret_sealed")?,
                confirmed_at: confirmed.map(from_millis),
                last_step: r.try_get("last_step")?,
            })
        })
        .transpose()
    }

    /// Records that a code of `step` was accepted, and confirms a pending enrolment; `false`
    /// when a code of this or a later step was accepted before (a reused code), so each code
    /// counts once, across processes.
    pub async fn claim_totp_step(&self, operator_id: i64, step: i64) -> anyhow::Result<bool> {
        let n = sqlx::query(
            "UPDATE operator_totp SET last_step = $1, confirmed_at = COALESCE(confirmed_at, $2)
              WHERE operator_id = $3 AND last_step < $1",
        )
        .bind(step)
        .bind(to_millis(Utc::now()))
        .bind(operator_id)
        .execute(&self.writer)
        .await
        .context("recording a two-factor code")?
        .rows_affected();
        Ok(n == 1)
    }

    /// Uses up a recovery code; `false` when it is not one of the operator's unused codes.
    pub async fn use_recovery_code(
        &self,
        operator_id: i64,
        code_hash: &str,
    ) -> anyhow::Result<bool> {
        let n = sqlx::query(
            "UPDATE operator_recovery_codes SET used_at = $1
              WHERE operator_id = $2 AND code_hash = $3 AND used_at IS NULL",
        )
        .bind(to_millis(Utc::now()))
        .bind(operator_id)
        .bind(code_hash)
        .execute(&self.writer)
        .await
        .context("using a recovery code")?
        .rows_affected();
        Ok(n == 1)
    }

    /// Replaces an operator's recovery codes (hashes).
    pub async fn put_recovery_codes(
        &self,
        operator_id: i64,
        recovery_hashes: &[String],
    ) -> anyhow::Result<()> {
        let mut tx = self.begin_write().await?;
        sqlx::query("DELETE FROM operator_recovery_codes WHERE operator_id = $1")
            .bind(operator_id)
            .execute(&mut *tx)
            .await?;
        for hash in recovery_hashes {
            sqlx::query(
                "INSERT INTO operator_recovery_codes (operator_id, code_hash) VALUES ($1, $2)",
            )
            .bind(operator_id)
            .bind(hash)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await.context("storing recovery codes")?;
        Ok(())
    }

    /// Unused recovery codes of an operator.
    pub async fn recovery_codes_left(&self, operator_id: i64) -> anyhow::Result<i64> {
        let n: i64 = sqlx::query_scalar(
            "SELECT CAST(COUNT(*) AS BIGINT) FROM operator_recovery_codes
              WHERE operator_id = $1 AND used_at IS NULL",
        )
        .bind(operator_id)
        .fetch_one(&self.pool)
        .await?;
        Ok(n)
    }

    /// Removes an operator's two-factor secret and recovery codes; `false` when there was none.
    pub async fn delete_operator_totp(&self, operator_id: i64) -> anyhow::Result<bool> {
        let mut tx = self.begin_write().await?;
        let n = sqlx::query("DELETE FROM operator_totp WHERE operator_id = $1")
            .bind(operator_id)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        sqlx::query("DELETE FROM operator_recovery_codes WHERE operator_id = $1")
            .bind(operator_id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await.context("removing a two-factor secret")?;
        Ok(n > 0)
    }
}

impl Store {
    /// Reset links made for an operator since `since` (used or not).
    pub async fn reset_tokens_since(
        &self,
        operator_id: i64,
        since: DateTime<Utc>,
    ) -> anyhow::Result<i64> {
        let n: i64 = sqlx::query_scalar(
            "SELECT CAST(COUNT(*) AS BIGINT) FROM operator_reset_tokens
              WHERE operator_id = $1 AND created_at >= $2",
        )
        .bind(operator_id)
        .bind(to_millis(since))
        .fetch_one(&self.writer)
        .await
        .context("counting reset links")?;
        Ok(n)
    }

    /// Stores a reset link's token (by its hash); removes those made over a day ago (long
    /// expired, and past the hourly count) on the way.
    pub async fn insert_reset_token(
        &self,
        token_hash: &str,
        operator_id: i64,
        expires_at: DateTime<Utc>,
    ) -> anyhow::Result<()> {
        let now = Utc::now();
        let mut tx = self.begin_write().await?;
        sqlx::query("DELETE FROM operator_reset_tokens WHERE created_at < $1")
            .bind(to_millis(now - chrono::Duration::days(1)))
            .execute(&mut *tx)
            .await?;
        sqlx::query(
            "INSERT INTO operator_reset_tokens (token_hash, operator_id, created_at, expires_at)
             VALUES ($1, $2, $3, $4)",
        )
        .bind(token_hash)
        .bind(operator_id)
        .bind(to_millis(now))
        .bind(to_millis(expires_at))
        .execute(&mut *tx)
        .await?;
        tx.commit().await.context("storing a reset link")?;
        Ok(())
    }

    /// The operator of an unused, unexpired reset link.
    pub async fn live_reset_token(
        &self,
        token_hash: &str,
        now: DateTime<Utc>,
    ) -> anyhow::Result<Option<OperatorRow>> {
        let sql = format!(
            "SELECT {OPERATOR_COLUMNS} FROM operator_reset_tokens t
               JOIN operators o ON o.id = t.operator_id
              WHERE t.token_hash = $1 AND t.used_at IS NULL AND t.expires_at > $2"
        );
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(token_hash)
            .bind(to_millis(now))
            .fetch_optional(&self.writer)
            .await
            .context("looking up a reset link")?;
        row.as_ref().map(operator_from_row).transpose()
    }

    /// Follows a reset link: uses it up and, in the same transaction, sets its operator's
    /// password hash, ends their sessions and uses up their other open links. `false` (and
    /// nothing changed) when the link was used, expired or never existed, so two clicks at
    /// once sign in once.
    pub async fn redeem_reset_token(
        &self,
        token_hash: &str,
        email: &str,
        password_hash: &str,
        now: DateTime<Utc>,
    ) -> anyhow::Result<bool> {
        let mut tx = self.begin_write().await?;
        let n = sqlx::query(
            "UPDATE operator_reset_tokens SET used_at = $1
              WHERE token_hash = $2 AND used_at IS NULL AND expires_at > $1
                AND operator_id IN (SELECT id FROM operators WHERE email = $3)",
        )
        .bind(to_millis(now))
        .bind(token_hash)
        .bind(email)
        .execute(&mut *tx)
        .await
        .context("using a reset link")?
        .rows_affected();
        if n != 1 {
            tx.rollback().await?;
            return Ok(false);
        }
        set_password_in(&mut tx, email, password_hash, now).await?;
        tx.commit().await.context("following a reset link")?;
        Ok(true)
    }
}

/// The password change of [`Store::set_operator_password`] and [`Store::redeem_reset_token`],
/// inside the caller's transaction: the new hash, no sessions, no open links.
async fn set_password_in(
    tx: &mut sqlx::Transaction<'static, sqlx::Any>,
    email: &str,
    password_hash: &str,
    now: DateTime<Utc>,
) -> anyhow::Result<bool> {
    let n = sqlx::query(
        "UPDATE operators SET password_hash = $1, password_changed_at = $2 WHERE email = $3",
    )
    .bind(password_hash)
    .bind(to_millis(now))
    .bind(email)
    .execute(&mut **tx)
    .await?
    .rows_affected();
    sqlx::query(
        "DELETE FROM operator_sessions
          WHERE operator_id IN (SELECT id FROM operators WHERE email = $1)",
    )
    .bind(email)
    .execute(&mut **tx)
    .await?;
    sqlx::query(
        "UPDATE operator_reset_tokens SET used_at = $1
          WHERE used_at IS NULL
            AND operator_id IN (SELECT id FROM operators WHERE email = $2)",
    )
    .bind(to_millis(now))
    .bind(email)
    .execute(&mut **tx)
    .await?;
    Ok(n > 0)
}
