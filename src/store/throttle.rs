//! Leaky buckets shared by every process (the console's failed-login throttle): each key's
//! level at a time, read and rewritten in one write transaction, so two processes checking the
//! same key one after the other see each other's counts. What a level means, and when an
//! attempt may go on, is the caller's rule ([`crate::app::operators::throttle`]).

use anyhow::Context;
use sqlx::{Any, Row, Transaction};

use super::{Backend, Store, placeholders};

/// One bucket as stored: its level at `at_ms`, and when it will have drained (`drained_ms`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StoredLevel {
    pub level: f64,
    pub at_ms: i64,
    pub drained_ms: i64,
}

/// Buckets read in their write transaction ([`Store::begin_buckets`]); [`Buckets::write`]
/// stores the new levels and commits. Dropped without it, nothing changes.
pub struct Buckets {
    tx: Transaction<'static, Any>,
    postgres: bool,
    keys: Vec<String>,
    levels: Vec<Option<StoredLevel>>,
}

impl Buckets {
    /// The stored levels, in the order of the keys asked for (`None`: no bucket, empty).
    pub fn levels(&self) -> &[Option<StoredLevel>] {
        &self.levels
    }

    /// Stores each key's new level (`None`: drained, deleted), forgets every bucket that has
    /// drained by `now_ms`, and commits.
    pub async fn write(
        mut self,
        levels: &[Option<StoredLevel>],
        now_ms: i64,
    ) -> anyhow::Result<()> {
        anyhow::ensure!(levels.len() == self.keys.len(), "one level per key");
        for (key, level) in self.keys.iter().zip(levels) {
            match level {
                Some(l) => {
                    sqlx::query(
                        "INSERT INTO login_throttle (key, level, at_ms, drained_ms) VALUES ($1, $2, $3, $4)
                         ON CONFLICT (key) DO UPDATE
                            SET level = excluded.level, at_ms = excluded.at_ms, drained_ms = excluded.drained_ms",
                    )
                    .bind(key.as_str())
                    .bind(l.level)
                    .bind(l.at_ms)
                    .bind(l.drained_ms)
                    .execute(&mut *self.tx)
                    .await
                }
                None => {
                    sqlx::query("DELETE FROM login_throttle WHERE key = $1")
                        .bind(key.as_str())
                        .execute(&mut *self.tx)
                        .await
                }
            }
            .context("writing a throttle level")?;
        }
        // Rows another process holds are left to it (PostgreSQL: two logins each deleting the
        // other's locked rows would deadlock); it deletes them itself.
        let forget = if self.postgres {
            "DELETE FROM login_throttle WHERE key IN
               (SELECT key FROM login_throttle WHERE drained_ms < $1 FOR UPDATE SKIP LOCKED)"
        } else {
            "DELETE FROM login_throttle WHERE drained_ms < $1"
        };
        sqlx::query(forget)
            .bind(now_ms)
            .execute(&mut *self.tx)
            .await
            .context("forgetting drained throttle levels")?;
        self.tx
            .commit()
            .await
            .context("committing throttle levels")?;
        Ok(())
    }
}

impl Store {
    /// Reads the buckets of `keys` in a write transaction that holds them until
    /// [`Buckets::write`]: on PostgreSQL each is locked (made first if missing, in key order,
    /// so two processes cannot deadlock), SQLite has one writer.
    pub async fn begin_buckets(&self, keys: &[String]) -> anyhow::Result<Buckets> {
        let mut tx = self.begin_write().await?;
        let mut sorted: Vec<&String> = keys.iter().collect();
        sorted.sort();
        if self.backend == Backend::Postgres {
            for key in &sorted {
                // A row to lock, also for a key seen for the first time (two first attempts
                // must not both read "empty").
                sqlx::query(
                    "INSERT INTO login_throttle (key, level, at_ms, drained_ms) VALUES ($1, 0, 0, 0)
                     ON CONFLICT (key) DO NOTHING",
                )
                .bind(key.as_str())
                .execute(&mut *tx)
                .await
                .context("reading throttle levels")?;
            }
        }
        let lock = if self.backend == Backend::Postgres {
            " ORDER BY key FOR UPDATE"
        } else {
            ""
        };
        let sql = format!(
            "SELECT key, level, at_ms, drained_ms FROM login_throttle WHERE key IN ({}){lock}",
            placeholders(1, keys.len())
        );
        // Only numbered placeholders are interpolated; the values are bound.
        let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
        for key in keys {
            q = q.bind(key.as_str());
        }
        let rows = q
            .fetch_all(&mut *tx)
            .await
            .context("reading throttle levels")?;
        let mut levels = vec![None; keys.len()];
        for row in rows {
            let key: String = row.try_get("key")?;
            let level = StoredLevel {
                level: row.try_get("level")?,
                at_ms: row.try_get("at_ms")?,
                drained_ms: row.try_get("drained_ms")?,
            };
            if let Some(i) = keys.iter().position(|k| *k == key) {
                levels[i] = (level.level > 0.0).then_some(level);
            }
        }
        Ok(Buckets {
            tx,
            postgres: self.backend == Backend::Postgres,
            keys: keys.to_vec(),
            levels,
        })
    }
}
