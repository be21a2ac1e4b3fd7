//! The installation-wide sending limits, kept in the database so that every worker sharing it
//! obeys one budget (issue 16):
//!
//! - **Rate** (`delivery.rate_per_second`): a virtual schedule of sending slots, one every
//!   `1/rate` seconds. A worker reserves a small block of consecutive slots in one locked update
//!   of `send_pacer.next_at` (the generic cell rate algorithm, shared): whatever the number of
//!   workers, no two slots are closer than the interval, so the total stays within the rate.
//! - **Window** (`delivery.window_limit` per `delivery.window`): the same reservation also counts
//!   its messages in a time bucket of `send_window`; a reservation that would pass the limit is
//!   cut to what is left, and when nothing is left it says when the oldest counted messages leave
//!   the window.
//!
//! Reserved slots a worker does not use are given back to their bucket when its send ends; a
//! worker that dies keeps at most one block (a quarter second of sending, or one claim) counted.

use std::time::Duration;

use anyhow::Context;
use chrono::Utc;
use sqlx::Row;

use super::{Backend, Store, to_millis};

/// The one row of `send_pacer` that delivery uses.
const PACER: &str = "delivery";

/// What a worker asks for.
#[derive(Debug, Clone, Copy)]
pub struct Ask {
    /// Slots wanted (at least 1).
    pub want: u64,
    /// `delivery.rate_per_second`; 0 = no rate limit (the slots are not spaced).
    pub rate_per_second: u32,
    /// `delivery.window_limit` messages per `delivery.window`, when set.
    pub window: Option<(u64, Duration)>,
}

/// What a worker got.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Grant {
    /// Slots granted (0 when the window is full).
    pub granted: u64,
    /// The first slot, in microseconds since the epoch; the others follow every `interval_us`.
    pub first_us: i64,
    pub interval_us: i64,
    /// The window bucket the slots were counted in (to give unused ones back).
    pub bucket: i64,
    /// With nothing granted: when (milliseconds) the window has room again.
    pub full_until: Option<i64>,
}

/// Where the window stands.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct WindowUse {
    /// Messages counted in the window now.
    pub used: i64,
}

/// The bucket width of a window: 1/1440 of it (a minute for a day), at least a second.
fn bucket_ms(window: Duration) -> i64 {
    ((window.as_millis() as i64) / 1440).max(1000) / 1000 * 1000
}

/// When a full window has room for `room` messages again: once enough of its oldest buckets
/// (those after `since`, holding `used` in all) have left it, each `span` after its start.
async fn room_at(
    tx: &mut sqlx::Transaction<'static, sqlx::Any>,
    since: i64,
    used: i64,
    limit: i64,
    room: i64,
    span: i64,
) -> anyhow::Result<i64> {
    let rows =
        sqlx::query("SELECT bucket, sent FROM send_window WHERE bucket > $1 ORDER BY bucket")
            .bind(since)
            .fetch_all(&mut **tx)
            .await
            .context("reading the send window")?;
    let mut over = used - limit + room;
    for row in rows {
        let (bucket, sent): (i64, i64) = (row.try_get("bucket")?, row.try_get("sent")?);
        over -= sent;
        if over <= 0 {
            return Ok(bucket + span);
        }
    }
    // The limit itself is below `room`: room comes once everything has left.
    Ok(since + span)
}

impl Store {
    /// Reserves sending slots under the rate and window limits, atomically across every worker.
    pub async fn reserve_sends(&self, ask: Ask) -> anyhow::Result<Grant> {
        let now_ms = to_millis(Utc::now());
        let now_us = Utc::now().timestamp_micros();
        let mut tx = self.begin_write().await?;
        // The lock that serialises reservations (SQLite's BEGIN IMMEDIATE already does). The
        // row is made by migration 0007.
        let lock = match self.backend {
            Backend::Postgres => "SELECT next_at FROM send_pacer WHERE name = $1 FOR UPDATE",
            Backend::Sqlite => "SELECT next_at FROM send_pacer WHERE name = $1",
        };
        let next_at: i64 = sqlx::query_scalar(lock)
            .bind(PACER)
            .fetch_one(&mut *tx)
            .await
            .context("reading the send pacer")?;
        let mut granted = ask.want.max(1);
        let mut bucket = 0;
        if let Some((limit, window)) = ask.window {
            let width = bucket_ms(window);
            let window_ms = window.as_millis() as i64;
            bucket = now_ms - now_ms % width;
            // Every bucket that overlaps the window, the oldest partly covered one included: a
            // bucket counts until its end has left the window.
            let since = now_ms - window_ms - width;
            let used: i64 = sqlx::query_scalar(
                "SELECT CAST(COALESCE(SUM(sent), 0) AS BIGINT) FROM send_window WHERE bucket > $1",
            )
            .bind(since)
            .fetch_one(&mut *tx)
            .await
            .context("reading the send window")?;
            let left = (limit as i64 - used).max(0) as u64;
            granted = granted.min(left);
            if granted == 0 {
                // Resume once a reservation's worth fits, not a single message: a daily quota
                // then pauses and resumes a few times a day, not once a minute.
                let room = ask.want.max(1).min(limit) as i64;
                let until = room_at(&mut tx, since, used, limit as i64, room, window_ms + width)
                    .await?
                    .max(now_ms + 1000);
                tx.rollback().await?;
                return Ok(Grant {
                    granted: 0,
                    first_us: now_us,
                    interval_us: 0,
                    bucket,
                    full_until: Some(until),
                });
            }
            sqlx::query(
                "INSERT INTO send_window (bucket, sent) VALUES ($1, $2)
                 ON CONFLICT (bucket) DO UPDATE SET sent = send_window.sent + excluded.sent",
            )
            .bind(bucket)
            .bind(granted as i64)
            .execute(&mut *tx)
            .await
            .context("counting in the send window")?;
            // Buckets that left the window long ago.
            sqlx::query("DELETE FROM send_window WHERE bucket < $1")
                .bind(since - window_ms)
                .execute(&mut *tx)
                .await?;
        }
        let (first_us, interval_us) = if ask.rate_per_second > 0 {
            let interval = 1_000_000 / i64::from(ask.rate_per_second);
            // No credit for time nobody used: the schedule restarts at now.
            let first = next_at.max(now_us);
            sqlx::query("UPDATE send_pacer SET next_at = $1 WHERE name = $2")
                .bind(first + interval * granted as i64)
                .bind(PACER)
                .execute(&mut *tx)
                .await
                .context("advancing the send pacer")?;
            (first, interval)
        } else {
            (now_us, 0)
        };
        tx.commit().await.context("committing a send reservation")?;
        Ok(Grant {
            granted,
            first_us,
            interval_us,
            bucket,
            full_until: None,
        })
    }

    /// Counts messages that went out without a reservation (transactional mail: a
    /// confirmation is never held back) in the window, so the relay's quota sees them too.
    pub async fn count_sends(&self, window: Duration, n: u64) -> anyhow::Result<()> {
        if n == 0 {
            return Ok(());
        }
        let now = to_millis(Utc::now());
        let bucket = now - now % bucket_ms(window);
        sqlx::query(
            "INSERT INTO send_window (bucket, sent) VALUES ($1, $2)
             ON CONFLICT (bucket) DO UPDATE SET sent = send_window.sent + excluded.sent",
        )
        .bind(bucket)
        .bind(n as i64)
        .execute(&self.writer)
        .await
        .context("counting in the send window")?;
        Ok(())
    }

    /// Gives reserved but unused window slots back to their bucket.
    pub async fn return_sends(&self, bucket: i64, unused: u64) -> anyhow::Result<()> {
        if unused == 0 {
            return Ok(());
        }
        sqlx::query(
            "UPDATE send_window SET sent = CASE WHEN sent > $1 THEN sent - $1 ELSE 0 END
              WHERE bucket = $2",
        )
        .bind(unused as i64)
        .bind(bucket)
        .execute(&self.writer)
        .await
        .context("giving back unused sends")?;
        Ok(())
    }

    /// Messages counted in the sliding window ending now.
    pub async fn window_use(&self, window: Duration) -> anyhow::Result<WindowUse> {
        let since = to_millis(Utc::now()) - window.as_millis() as i64 - bucket_ms(window);
        let used: i64 = sqlx::query_scalar(
            "SELECT CAST(COALESCE(SUM(sent), 0) AS BIGINT) FROM send_window WHERE bucket > $1",
        )
        .bind(since)
        .fetch_one(&self.pool)
        .await
        .context("reading the send window")?;
        Ok(WindowUse { used })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_a_1440th_of_the_window_and_at_least_a_second() {
        assert_eq!(bucket_ms(Duration::from_secs(24 * 3600)), 60_000);
        assert_eq!(bucket_ms(Duration::from_secs(3600)), 2_000);
        assert_eq!(bucket_ms(Duration::from_secs(60)), 1_000);
        assert_eq!(bucket_ms(Duration::from_secs(1)), 1_000);
    }
}
