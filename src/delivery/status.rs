//! Where one recipient's row of the delivery ledger stands: a leaf the store and the engine
//! both use, so a status is a type past the row boundary, never a string.

use std::fmt;

/// The status column of a `deliveries` row.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum DeliveryStatus {
    /// In line: not sent yet, or to be tried again.
    Pending,
    /// Accepted by the relay.
    Sent,
    /// Given up (a permanent refusal, or out of attempts).
    Failed,
    /// Not sent on purpose: the reader left (or bounced) after the send started.
    Skipped,
}

impl DeliveryStatus {
    pub const ALL: [DeliveryStatus; 4] = [
        DeliveryStatus::Pending,
        DeliveryStatus::Sent,
        DeliveryStatus::Failed,
        DeliveryStatus::Skipped,
    ];

    /// The value in the `status` column.
    pub fn as_str(self) -> &'static str {
        match self {
            DeliveryStatus::Pending => "pending",
            DeliveryStatus::Sent => "sent",
            DeliveryStatus::Failed => "failed",
            DeliveryStatus::Skipped => "skipped",
        }
    }

    /// Reads the `status` column back.
    pub fn parse(s: &str) -> Option<DeliveryStatus> {
        DeliveryStatus::ALL.into_iter().find(|d| d.as_str() == s)
    }

    /// Whether the row is settled for good (nothing more will be tried).
    pub fn is_settled(self) -> bool {
        self != DeliveryStatus::Pending
    }
}

impl fmt::Display for DeliveryStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a row of the ledger is `skipped` (its `last_error` column): each reason a variant of
/// its own, so the console and the tests tell them apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SkipReason {
    /// Paused on their manage page when the send started.
    Paused,
    /// The reader chose categories and none of the comparisons has a tool in them.
    NoMatchingComparisons,
}

impl SkipReason {
    pub const ALL: [SkipReason; 2] = [SkipReason::Paused, SkipReason::NoMatchingComparisons];

    /// The value in the `last_error` column of a skipped row.
    pub fn as_str(self) -> &'static str {
        match self {
            SkipReason::Paused => "paused",
            SkipReason::NoMatchingComparisons => "no_matching_comparisons",
        }
    }

    /// Reads the column back (`None`: another reason, such as a reader who left mid-send).
    pub fn parse(s: &str) -> Option<SkipReason> {
        SkipReason::ALL.into_iter().find(|r| r.as_str() == s)
    }
}

impl fmt::Display for SkipReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn skip_reasons_read_back_what_they_write() {
        for r in SkipReason::ALL {
            assert_eq!(SkipReason::parse(r.as_str()), Some(r));
        }
        assert_eq!(SkipReason::parse("unsubscribed"), None);
    }

    #[test]
    fn statuses_read_back_what_they_write() {
        for s in DeliveryStatus::ALL {
            assert_eq!(DeliveryStatus::parse(s.as_str()), Some(s));
        }
        assert_eq!(DeliveryStatus::parse("bounced"), None);
        assert!(!DeliveryStatus::Pending.is_settled());
        assert!(DeliveryStatus::Skipped.is_settled());
    }
}
