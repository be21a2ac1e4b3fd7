//! Bulk import of subscribers (`verdicts subscribers import`, test and benchmark seeding).
//!
//! One transaction for the whole import; within it, each batch of rows goes into a temporary
//! staging table and is written with a few set-based statements, whatever the batch's size:
//! which rows are suppressed, insert the new ones (existing addresses are left alone by
//! `ON CONFLICT DO NOTHING`), and one consent record per inserted row. The two databases fill
//! the staging table their fastest way:
//!
//! - **PostgreSQL**: `COPY … FROM STDIN` over a connection of its own (sqlx's `Any` driver has
//!   no `COPY`), opened from the same URL and so with the same TLS settings; the three writes are
//!   one statement (data-modifying CTEs).
//! - **SQLite**: multi-row `INSERT`s on the store's writer connection, with anonymous `?`
//!   placeholders: sqlx binds a `$N` placeholder by asking SQLite its name, a linear search, so
//!   a statement of *n* numbered placeholders costs O(n²) to bind (78% of an import's time
//!   before). The write lock is held throughout (`BEGIN IMMEDIATE`), so the rows this import
//!   inserted are exactly those above the highest id before the insert.

use anyhow::Context;
use chrono::Utc;
use sqlx::postgres::{PgPool, PgPoolOptions};
use sqlx::{Any, Postgres, Transaction};

use super::NewSubscriber;
use crate::store::{Backend, Store, to_millis};
use crate::subscribers::{ConsentContext, SubscriberStatus};

/// Rows per batch of a bulk import: the staging table's size. Large, because each batch costs
/// a few statements whatever its size (and on PostgreSQL with TLS one delayed ACK: sqlx 0.9
/// does not set `TCP_NODELAY`); small enough to keep the import's memory flat (a batch is a
/// few MB in all: the parsed rows, their hashes and the `COPY` text).
pub const IMPORT_BATCH: usize = 10_000;

/// How many of an import's rows were added, already there, or suppressed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct ImportCounts {
    pub added: usize,
    pub already_present: usize,
    /// Unsubscribed, bounced or erased addresses: only the person can sign up again.
    pub suppressed: usize,
}

impl std::ops::AddAssign for ImportCounts {
    fn add_assign(&mut self, other: ImportCounts) {
        self.added += other.added;
        self.already_present += other.already_present;
        self.suppressed += other.suppressed;
    }
}

/// The staging table, private to the import's connection.
const CREATE_STAGING_SQLITE: &str = "CREATE TEMP TABLE IF NOT EXISTS subscriber_import_rows (
    ord INTEGER PRIMARY KEY, email TEXT NOT NULL, name TEXT, email_hash TEXT NOT NULL,
    confirmed INTEGER NOT NULL)";
const CREATE_STAGING_POSTGRES: &str = "CREATE TEMP TABLE subscriber_import_rows (
    ord BIGINT NOT NULL, email TEXT NOT NULL, name TEXT, email_hash TEXT NOT NULL,
    confirmed BOOLEAN NOT NULL) ON COMMIT DROP";

/// Staged rows whose address was erased (its hash is suppressed) or that unsubscribed or
/// bounced: never (re)activated by an import.
const COUNT_SUPPRESSED_SQLITE: &str = "SELECT COUNT(*) FROM subscriber_import_rows r
  WHERE EXISTS (SELECT 1 FROM suppressions x WHERE x.email_hash = r.email_hash)
     OR EXISTS (SELECT 1 FROM subscribers s
                 WHERE s.email = r.email AND s.status IN ('unsubscribed', 'bounced'))";

/// New addresses, in file order; `WHERE` before `ON CONFLICT` is SQLite's required
/// disambiguation of an `INSERT … SELECT` upsert.
const INSERT_SQLITE: &str = "INSERT INTO subscribers
        (email, name, status, source, created_at, updated_at, confirmed_at)
  SELECT r.email, r.name, CASE WHEN r.confirmed THEN 'confirmed' ELSE 'pending' END,
         $1, $2, $2, CASE WHEN r.confirmed THEN $2 END
    FROM subscriber_import_rows r
   WHERE NOT EXISTS (SELECT 1 FROM suppressions x WHERE x.email_hash = r.email_hash)
   ORDER BY r.ord
  ON CONFLICT (email) DO NOTHING";

/// Counts the subscribers a batch added (those above the highest id before it) by status, once
/// for the batch rather than by a trigger per row (migration 0017).
const COUNT_ADDED_SQLITE: &str = "UPDATE subscriber_counts
    SET n = n + (SELECT COUNT(*) FROM subscribers s
                  WHERE s.id > $1 AND s.status = subscriber_counts.status)
  WHERE status IN ('pending', 'confirmed')";

const CONSENTS_SQLITE: &str = "INSERT INTO consents
        (subscriber_id, event, at, ip, user_agent, source, consent_text_version)
  SELECT id, 'import', $1, $2, $3, $4, $5 FROM subscribers WHERE id > $6 ORDER BY id";

/// The whole batch in one statement: classify, insert the new ones (a concurrent signup that
/// took an address first wins: `DO NOTHING`, counted as present), record their consent, and
/// count both once for the batch (`subscriber_counts`, `consent_counts`: migration 0017).
///
/// The lookups are correlated subqueries, one index probe per staged row, on purpose: as a
/// join, the planner (its statistics lagging behind an import's uncommitted rows) hashes the
/// whole `subscribers` table for every batch, and the import slows down as it grows (1M rows:
/// 38 s, 0.5 s a batch at the end).
const WRITE_POSTGRES: &str = "WITH staged AS MATERIALIZED (
    SELECT r.ord, r.email, r.name, r.confirmed,
           EXISTS (SELECT 1 FROM suppressions x WHERE x.email_hash = r.email_hash) AS erased,
           (SELECT s.status FROM subscribers s WHERE s.email = r.email) AS status
      FROM subscriber_import_rows r
), added AS (
    INSERT INTO subscribers (email, name, status, source, created_at, updated_at, confirmed_at)
    SELECT email, name, CASE WHEN confirmed THEN 'confirmed' ELSE 'pending' END,
           $1, $2, $2, CASE WHEN confirmed THEN $2 END
      FROM staged WHERE NOT erased AND status IS NULL ORDER BY ord
    ON CONFLICT (email) DO NOTHING
    RETURNING id, status
), consented AS (
    INSERT INTO consents (subscriber_id, event, at, ip, user_agent, source, consent_text_version)
    SELECT id, 'import', $2, $3, $4, $1, $5 FROM added
    RETURNING 1
), subscribers_counted AS (
    UPDATE subscriber_counts c SET n = c.n + d.n
      FROM (SELECT status, COUNT(*) AS n FROM added GROUP BY status) d
     WHERE c.status = d.status
), consents_counted AS (
    INSERT INTO consent_counts AS c (event, n)
    SELECT 'import', COUNT(*) FROM consented HAVING COUNT(*) > 0
        ON CONFLICT (event) DO UPDATE SET n = c.n + EXCLUDED.n
)
SELECT (SELECT COUNT(*) FROM consented) AS added,
       (SELECT COUNT(*) FROM staged
         WHERE erased OR status IN ('unsubscribed', 'bounced')) AS suppressed";

/// Rows per multi-row `INSERT` into SQLite's staging table, widest first: a batch is written
/// with as many of the widest as fit, then narrower ones, so there are four statement shapes
/// (each prepared once) whatever the batch sizes.
const SQLITE_WIDTHS: [usize; 4] = [1000, 100, 10, 1];

/// A bulk import in progress (see [`Store::begin_import`]).
pub struct SubscriberImport {
    consent: ConsentContext,
    db: ImportDb,
}

enum ImportDb {
    Sqlite(Transaction<'static, Any>),
    Postgres {
        tx: Transaction<'static, Postgres>,
        /// The import's own connection (one), closed when the import ends.
        pool: PgPool,
        /// Rows staged so far: the order key of the next one.
        next_ord: i64,
    },
}

impl Store {
    /// Starts a bulk import (CSV): one transaction, rows added a batch at a time
    /// ([`SubscriberImport::add_batch`]), nothing visible until [`SubscriberImport::commit`].
    pub async fn begin_import(&self, consent: &ConsentContext) -> anyhow::Result<SubscriberImport> {
        let db = match self.backend {
            Backend::Sqlite => {
                let mut tx = self.begin_write().await?;
                sqlx::query(CREATE_STAGING_SQLITE)
                    .execute(&mut *tx)
                    .await
                    .context("creating the import's staging table")?;
                sqlx::query("DELETE FROM subscriber_import_rows")
                    .execute(&mut *tx)
                    .await
                    .context("emptying the import's staging table")?;
                ImportDb::Sqlite(tx)
            }
            Backend::Postgres => {
                // The same URL as the store's pools: the same server, credentials and TLS.
                let url = self.writer.connect_options().database_url.clone();
                let pool = PgPoolOptions::new()
                    .max_connections(1)
                    .acquire_timeout(std::time::Duration::from_secs(30))
                    .test_before_acquire(false)
                    .connect(url.as_str())
                    .await
                    .context("connecting to PostgreSQL for the import")?;
                let mut tx = pool.begin().await.context("starting a transaction")?;
                // A batch's statement costs enough for the planner to compile it (JIT), which
                // takes longer than running it.
                sqlx::query("SET LOCAL jit = off").execute(&mut *tx).await?;
                sqlx::query(CREATE_STAGING_POSTGRES)
                    .execute(&mut *tx)
                    .await
                    .context("creating the import's staging table")?;
                ImportDb::Postgres {
                    tx,
                    pool,
                    next_ord: 0,
                }
            }
        };
        Ok(SubscriberImport {
            consent: consent.clone(),
            db,
        })
    }

    /// Adds many in one transaction, [`IMPORT_BATCH`] rows at a time (tests and benchmarks
    /// that hold their rows in memory).
    pub async fn add_subscribers(
        &self,
        rows: &[(NewSubscriber<'_>, String)],
        consent: &ConsentContext,
    ) -> anyhow::Result<ImportCounts> {
        let mut import = self.begin_import(consent).await?;
        let mut counts = ImportCounts::default();
        for chunk in rows.chunks(IMPORT_BATCH) {
            counts += import.add_batch(chunk).await?;
        }
        import.commit().await?;
        Ok(counts)
    }
}

impl SubscriberImport {
    /// Adds up to [`IMPORT_BATCH`] rows of distinct addresses (each with its suppression hash).
    /// An address that unsubscribed, bounced or was erased is counted `suppressed`; one already
    /// on the list `already_present`; the rest are added, with a consent record each.
    pub async fn add_batch(
        &mut self,
        rows: &[(NewSubscriber<'_>, String)],
    ) -> anyhow::Result<ImportCounts> {
        anyhow::ensure!(
            rows.len() <= IMPORT_BATCH,
            "an import batch of {} rows",
            rows.len()
        );
        if rows.is_empty() {
            return Ok(ImportCounts::default());
        }
        let now = to_millis(Utc::now());
        let c = &self.consent;
        let (added, suppressed) = match &mut self.db {
            ImportDb::Sqlite(tx) => {
                stage_sqlite(tx, rows).await?;
                let suppressed: i64 = sqlx::query_scalar(COUNT_SUPPRESSED_SQLITE)
                    .fetch_one(&mut **tx)
                    .await
                    .context("looking up suppressed addresses")?;
                let before: i64 =
                    sqlx::query_scalar("SELECT COALESCE(MAX(id), 0) FROM subscribers")
                        .fetch_one(&mut **tx)
                        .await?;
                let added = sqlx::query(INSERT_SQLITE)
                    .bind(c.source.as_str())
                    .bind(now)
                    .execute(&mut **tx)
                    .await
                    .context("importing subscribers")?
                    .rows_affected();
                // The batch's rows counted once (the ids above `before` are this batch's).
                sqlx::query(COUNT_ADDED_SQLITE)
                    .bind(before)
                    .execute(&mut **tx)
                    .await
                    .context("counting imported subscribers")?;
                sqlx::query(CONSENTS_SQLITE)
                    .bind(now)
                    .bind(c.ip.as_deref())
                    .bind(c.user_agent.as_deref())
                    .bind(c.source.as_str())
                    .bind(c.consent_text_version.as_deref())
                    .bind(before)
                    .execute(&mut **tx)
                    .await
                    .context("recording consent")?;
                crate::store::count_new_consents(&mut **tx, "import", added as i64).await?;
                sqlx::query("DELETE FROM subscriber_import_rows")
                    .execute(&mut **tx)
                    .await?;
                (added as i64, suppressed)
            }
            ImportDb::Postgres { tx, next_ord, .. } => {
                let mut data = Vec::with_capacity(rows.len() * 128);
                for (new, hash) in rows {
                    copy_text_row(&mut data, *next_ord, new, hash);
                    *next_ord += 1;
                }
                let mut copy = tx
                    .copy_in_raw(
                        "COPY subscriber_import_rows (ord, email, name, email_hash, confirmed) \
                         FROM STDIN",
                    )
                    .await
                    .context("staging the import's rows")?;
                copy.send(data).await.context("staging the import's rows")?;
                copy.finish().await.context("staging the import's rows")?;
                let (added, suppressed): (i64, i64) = sqlx::query_as(WRITE_POSTGRES)
                    .bind(c.source.as_str())
                    .bind(now)
                    .bind(c.ip.as_deref())
                    .bind(c.user_agent.as_deref())
                    .bind(c.consent_text_version.as_deref())
                    .fetch_one(&mut **tx)
                    .await
                    .context("importing subscribers")?;
                sqlx::query("TRUNCATE subscriber_import_rows")
                    .execute(&mut **tx)
                    .await?;
                (added, suppressed)
            }
        };
        let (added, suppressed) = (added as usize, suppressed as usize);
        let already_present = rows
            .len()
            .checked_sub(added + suppressed)
            .with_context(|| {
                format!(
                    "a batch of {} rows counted {added} added and {suppressed} suppressed",
                    rows.len()
                )
            })?;
        Ok(ImportCounts {
            added,
            suppressed,
            already_present,
        })
    }

    /// Makes the whole import visible at once.
    pub async fn commit(self) -> anyhow::Result<()> {
        match self.db {
            ImportDb::Sqlite(mut tx) => {
                sqlx::query("DROP TABLE temp.subscriber_import_rows")
                    .execute(&mut *tx)
                    .await?;
                tx.commit().await.context("committing the import")
            }
            ImportDb::Postgres { tx, pool, .. } => {
                let committed = tx.commit().await.context("committing the import");
                pool.close().await;
                committed
            }
        }
    }
}

/// The confirmed/pending status an imported row gets.
fn status_of(new: &NewSubscriber<'_>) -> SubscriberStatus {
    if new.confirmed {
        SubscriberStatus::Confirmed
    } else {
        SubscriberStatus::Pending
    }
}

/// Fills SQLite's staging table, [`SQLITE_WIDTHS`] rows per statement.
async fn stage_sqlite(
    tx: &mut Transaction<'static, Any>,
    rows: &[(NewSubscriber<'_>, String)],
) -> anyhow::Result<()> {
    let mut rest = rows;
    for width in SQLITE_WIDTHS {
        let sql = staging_insert_sqlite(width);
        while rest.len() >= width {
            let (head, tail) = rest.split_at(width);
            let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
            for (new, hash) in head {
                q = q
                    .bind(new.email.as_str())
                    .bind(new.name.map(|n| n.as_str()))
                    .bind(hash.as_str())
                    .bind(status_of(new) == SubscriberStatus::Confirmed);
            }
            q.execute(&mut **tx)
                .await
                .context("staging the import's rows")?;
            rest = tail;
        }
    }
    Ok(())
}

/// `INSERT INTO subscriber_import_rows … VALUES (?, ?, ?, ?), …` of `width` rows, built once
/// per width. Only anonymous placeholders are interpolated; every value is bound.
fn staging_insert_sqlite(width: usize) -> &'static str {
    static SQL: std::sync::OnceLock<Vec<(usize, String)>> = std::sync::OnceLock::new();
    let all = SQL.get_or_init(|| {
        SQLITE_WIDTHS
            .iter()
            .map(|&w| {
                let values = vec!["(?, ?, ?, ?)"; w].join(", ");
                (
                    w,
                    format!(
                        "INSERT INTO subscriber_import_rows (email, name, email_hash, confirmed) \
                         VALUES {values}"
                    ),
                )
            })
            .collect()
    });
    all.iter()
        .find(|(w, _)| *w == width)
        .map(|(_, sql)| sql.as_str())
        .expect("one of SQLITE_WIDTHS")
}

/// One row of `COPY … FROM STDIN` text format: tab-separated, `\N` for no name.
fn copy_text_row(out: &mut Vec<u8>, ord: i64, new: &NewSubscriber<'_>, hash: &str) {
    use std::io::Write;
    let _ = write!(out, "{ord}\t");
    copy_text_field(out, new.email.as_str());
    out.push(b'\t');
    match new.name {
        Some(name) => copy_text_field(out, name.as_str()),
        None => out.extend_from_slice(b"\\N"),
    }
    out.push(b'\t');
    copy_text_field(out, hash);
    out.extend_from_slice(if status_of(new) == SubscriberStatus::Confirmed {
        b"\tt\n"
    } else {
        b"\tf\n"
    });
}

/// A text-format `COPY` field: backslash, tab, newline and carriage return escaped (checked
/// names and addresses hold no control characters, but the format must not depend on it).
fn copy_text_field(out: &mut Vec<u8>, value: &str) {
    for &b in value.as_bytes() {
        match b {
            b'\\' => out.extend_from_slice(b"\\\\"),
            b'\t' => out.extend_from_slice(b"\\t"),
            b'\n' => out.extend_from_slice(b"\\n"),
            b'\r' => out.extend_from_slice(b"\\r"),
            _ => out.push(b),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copy_text_fields_are_escaped() {
        let mut out = Vec::new();
        copy_text_field(&mut out, "a\\b\tc\nd\re");
        assert_eq!(out, b"a\\\\b\\tc\\nd\\re");
    }

    #[test]
    fn sqlite_staging_statements_have_one_placeholder_per_value() {
        for w in SQLITE_WIDTHS {
            let sql = staging_insert_sqlite(w);
            assert_eq!(sql.matches('?').count(), 4 * w);
            assert!(!sql.contains('$'));
        }
    }
}

#[cfg(test)]
mod rule_in_step {
    use super::{COUNT_SUPPRESSED_SQLITE, WRITE_POSTGRES};
    use crate::subscribers::SubscriberStatus;

    /// The bulk statements spell out, for speed, the statuses that no import reactivates: the
    /// domain's rule ([`crate::subscribers::operator_add`]) decides which, and this keeps them
    /// in step.
    #[test]
    fn the_import_sql_suppresses_exactly_the_statuses_the_domain_names() {
        let listed: Vec<String> = SubscriberStatus::ALL
            .into_iter()
            .filter(|s| s.only_the_reader_brings_back())
            .map(|s| format!("'{}'", s.as_str()))
            .collect();
        let list = format!("status IN ({})", listed.join(", "));
        assert!(COUNT_SUPPRESSED_SQLITE.contains(&list), "{list}");
        assert!(WRITE_POSTGRES.contains(&list), "{list}");
    }
}
