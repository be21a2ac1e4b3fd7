//! Reader signups (double opt-in): the decision table, and the batch that applies it.
//!
//! Every signup of a batch is decided by [`decide`], a pure function of what the store read
//! in the batch's write transaction ([`SignupState`]), the address's [`SubscriberStatus`] and
//! the [`SignupLimits`]; the store then writes the plans ([`SignupWrite`]) in that same
//! transaction, so nothing can change between the decision and the writes.
//!
//! The reader sees the same answer whatever the outcome; [`SignupOutcome`] is for logs and
//! for timing the answers alike ([`super::signup_writer`]).

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use chrono::{DateTime, Utc};

use super::super::App;
use crate::config::SignupSettings;
use crate::store::subscribers::{KnownAddress, SignupRequest, SignupState, SignupWrite};
use crate::subscribers::SubscriberStatus;

/// The limits signups are decided under (`[signup]` of the configuration).
#[derive(Debug, Clone, Copy)]
pub struct SignupLimits {
    /// How long a confirmation link works.
    pub token_ttl: Duration,
    /// A pending address gets at most one confirmation per this interval.
    pub resend_interval: Duration,
    /// Confirmation mails per mailbox per [`MAILBOX_WINDOW`], however the address is spelled.
    pub per_mailbox_per_hour: u32,
}

impl SignupLimits {
    pub fn from_settings(signup: &SignupSettings) -> SignupLimits {
        SignupLimits {
            token_ttl: signup.confirm_token_ttl.0,
            resend_interval: signup.resend_interval.0,
            per_mailbox_per_hour: signup.confirmations_per_mailbox_per_hour,
        }
    }
}

/// The window of [`SignupLimits::per_mailbox_per_hour`].
pub const MAILBOX_WINDOW: Duration = Duration::from_secs(3600);

/// What a signup did. The reader sees the same answer in every case.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SignupOutcome {
    /// A confirmation mail is queued.
    ConfirmationQueued,
    /// Pending, and a confirmation went out less than `signup.resend_interval` ago (or the
    /// same address came earlier in the same batch).
    Throttled,
    /// Already confirmed: nothing new.
    AlreadyConfirmed,
    /// The mailbox had its confirmation mails for this hour (`victim+1@`, `victim+2@`, …).
    MailboxLimit,
}

/// One signup's decision: what the reader's request did, and what the store writes for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision {
    pub outcome: SignupOutcome,
    pub write: SignupWrite,
}

impl Decision {
    const fn nothing(outcome: SignupOutcome) -> Decision {
        Decision {
            outcome,
            write: SignupWrite::Nothing,
        }
    }
}

/// Where one request stands within its batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Situation<'a> {
    /// The stored subscriber of the address, if any.
    pub known: Option<&'a KnownAddress>,
    /// The same address came earlier in this batch (and was decided there).
    pub repeat_in_batch: bool,
    /// Confirmation mails the mailbox had within the window, this batch's included.
    pub mailbox_mailed: u32,
}

/// The decision table for one signup.
///
/// - A repeat of an address earlier in the batch writes nothing (`Throttled`): the first
///   one was decided already.
/// - Confirmed: nothing new (`AlreadyConfirmed`), whatever the limits.
/// - Pending with a confirmation sent less than `resend_interval` ago: nothing (`Throttled`).
/// - Otherwise — a new address, pending past the interval (or never mailed), unsubscribed or
///   bounced — a confirmation, *if* the mailbox is within its hourly budget (else
///   `MailboxLimit`): a new subscriber, or the known one starting over as pending.
pub fn decide_one(situation: Situation<'_>, now: DateTime<Utc>, limits: &SignupLimits) -> Decision {
    use SubscriberStatus as S;
    if situation.repeat_in_batch {
        return Decision::nothing(SignupOutcome::Throttled);
    }
    let write = match situation.known {
        None => SignupWrite::Insert,
        Some(known) => match known.status {
            S::Confirmed => return Decision::nothing(SignupOutcome::AlreadyConfirmed),
            S::Pending
                if known
                    .last_confirmation_sent_at
                    .is_some_and(|last| within(now, last, limits.resend_interval)) =>
            {
                return Decision::nothing(SignupOutcome::Throttled);
            }
            S::Pending | S::Unsubscribed | S::Bounced => SignupWrite::Restart {
                subscriber_id: known.id,
            },
        },
    };
    if situation.mailbox_mailed >= limits.per_mailbox_per_hour {
        return Decision::nothing(SignupOutcome::MailboxLimit);
    }
    Decision {
        outcome: SignupOutcome::ConfirmationQueued,
        write,
    }
}

/// Whether `then` is less than `interval` before `now`.
fn within(now: DateTime<Utc>, then: DateTime<Utc>, interval: Duration) -> bool {
    (now - then)
        .to_std()
        .map_or(true, |elapsed| elapsed < interval)
}

/// Decides a batch, in order: an address's first request is decided on the stored state, a
/// later one as its repeat; each confirmation decided counts against its mailbox's budget
/// for the requests after it.
pub fn decide(
    requests: &[SignupRequest],
    state: &SignupState,
    limits: &SignupLimits,
) -> Vec<Decision> {
    let mut mailed: HashMap<&str, u32> = HashMap::new();
    let mut seen: HashSet<&str> = HashSet::new();
    requests
        .iter()
        .map(|r| {
            let key = r.mailbox_key.as_str();
            let sent = mailed
                .entry(key)
                .or_insert_with(|| state.mailed.get(key).copied().unwrap_or(0));
            let decision = decide_one(
                Situation {
                    known: state.known.get(r.email.as_str()),
                    repeat_in_batch: !seen.insert(r.email.as_str()),
                    mailbox_mailed: *sent,
                },
                state.now,
                limits,
            );
            if decision.write != SignupWrite::Nothing {
                *sent += 1;
            }
            decision
        })
        .collect()
}

impl App {
    /// Writes a batch of reader signups in one transaction: reads what the decision needs,
    /// decides every request ([`decide`]) and writes the plans. Returns one outcome per
    /// request, in order.
    pub async fn sign_up_batch(
        &self,
        requests: &[SignupRequest],
    ) -> anyhow::Result<Vec<SignupOutcome>> {
        if requests.is_empty() {
            return Ok(Vec::new());
        }
        let limits = SignupLimits::from_settings(&self.settings().signup);
        let batch = self
            .store()
            .begin_signup_batch(requests, MAILBOX_WINDOW)
            .await?;
        let decisions = decide(requests, batch.state(), &limits);
        let writes: Vec<SignupWrite> = decisions.iter().map(|d| d.write).collect();
        batch.apply(&writes, limits.token_ttl).await?;
        Ok(decisions.into_iter().map(|d| d.outcome).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::subscribers::{ConsentContext, SubscriberEmail};
    use chrono::TimeZone;

    const LIMITS: SignupLimits = SignupLimits {
        token_ttl: Duration::from_secs(48 * 3600),
        resend_interval: Duration::from_secs(600),
        per_mailbox_per_hour: 3,
    };

    fn now() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 23, 9, 0, 0).unwrap()
    }

    /// When the last confirmation went out.
    #[derive(Debug, Clone, Copy)]
    enum Last {
        Never,
        /// Within `resend_interval` (a minute ago).
        Recent,
        /// Just at the interval: the throttle has passed.
        AtInterval,
        /// Long ago.
        Old,
    }

    impl Last {
        const ALL: [Last; 4] = [Last::Never, Last::Recent, Last::AtInterval, Last::Old];
        fn at(self) -> Option<DateTime<Utc>> {
            match self {
                Last::Never => None,
                Last::Recent => Some(now() - chrono::Duration::minutes(1)),
                Last::AtInterval => Some(now() - chrono::Duration::minutes(10)),
                Last::Old => Some(now() - chrono::Duration::days(30)),
            }
        }
    }

    /// Every status (and no row) × every time of the last confirmation × a mailbox with room
    /// or at its limit, spelled out as a table so a change to one rule shows here; and a
    /// repeat within the batch, which is `Throttled` in every one of those situations.
    #[test]
    fn decision_table() {
        use SignupOutcome::{AlreadyConfirmed as Conf, ConfirmationQueued as Mail};
        use SignupOutcome::{MailboxLimit as Full, Throttled as Thr};
        use SubscriberStatus as S;
        let statuses = [
            None,
            Some(S::Pending),
            Some(S::Confirmed),
            Some(S::Unsubscribed),
            Some(S::Bounced),
        ];
        // Per status: for each `Last` (never, recent, at interval, old), the outcome with
        // room in the mailbox's budget and with the budget used up.
        let table: [[(SignupOutcome, SignupOutcome); 4]; 5] = [
            //  never         recent        at interval   old
            [(Mail, Full), (Mail, Full), (Mail, Full), (Mail, Full)], // no row
            [(Mail, Full), (Thr, Thr), (Mail, Full), (Mail, Full)],   // pending
            [(Conf, Conf), (Conf, Conf), (Conf, Conf), (Conf, Conf)], // confirmed
            [(Mail, Full), (Mail, Full), (Mail, Full), (Mail, Full)], // unsubscribed
            [(Mail, Full), (Mail, Full), (Mail, Full), (Mail, Full)], // bounced
        ];
        for (status, row) in statuses.into_iter().zip(table) {
            for (last, (with_room, when_full)) in Last::ALL.into_iter().zip(row) {
                let known = status.map(|status| KnownAddress {
                    id: 7,
                    status,
                    last_confirmation_sent_at: last.at(),
                });
                for (mailed, expected) in [(0, with_room), (2, with_room), (3, when_full)] {
                    let situation = Situation {
                        known: known.as_ref(),
                        repeat_in_batch: false,
                        mailbox_mailed: mailed,
                    };
                    let d = decide_one(situation, now(), &LIMITS);
                    let what = format!("{status:?} × last {last:?} × {mailed} mailed");
                    assert_eq!(d.outcome, expected, "{what}");
                    // The write follows from the outcome: only a queued confirmation writes,
                    // a new row for an unknown address, a restart of the known one otherwise.
                    let write = match (d.outcome, status) {
                        (Mail, None) => SignupWrite::Insert,
                        (Mail, Some(_)) => SignupWrite::Restart { subscriber_id: 7 },
                        _ => SignupWrite::Nothing,
                    };
                    assert_eq!(d.write, write, "{what}");
                    let repeat = decide_one(
                        Situation {
                            repeat_in_batch: true,
                            ..situation
                        },
                        now(),
                        &LIMITS,
                    );
                    assert_eq!(repeat, Decision::nothing(Thr), "repeat: {what}");
                }
            }
        }
    }

    fn request(email: &str, mailbox: &str) -> SignupRequest {
        SignupRequest {
            email: SubscriberEmail::parse(email).unwrap(),
            name: None,
            consent: ConsentContext {
                ip: None,
                user_agent: None,
                source: "web".into(),
                consent_text_version: None,
            },
            token: String::new(),
            token_hash: String::new(),
            mailbox_key: mailbox.into(),
        }
    }

    /// Within one batch: a repeated address is decided once; confirmations count against the
    /// mailbox's budget (stored ones included) for the requests after them, and requests that
    /// send nothing do not.
    #[test]
    fn a_batch_threads_repeats_and_the_mailbox_budget() {
        let state = SignupState {
            now: now(),
            known: HashMap::from([(
                "done@example.org".to_string(),
                KnownAddress {
                    id: 1,
                    status: SubscriberStatus::Confirmed,
                    last_confirmation_sent_at: None,
                },
            )]),
            mailed: HashMap::from([("victim".to_string(), 1)]),
        };
        let requests = [
            request("victim+1@example.org", "victim"),
            request("victim+1@example.org", "victim"),
            request("done@example.org", "done"),
            request("victim+2@example.org", "victim"),
            request("victim+3@example.org", "victim"),
            request("other@example.org", "other"),
        ];
        let outcomes: Vec<SignupOutcome> = decide(&requests, &state, &LIMITS)
            .into_iter()
            .map(|d| d.outcome)
            .collect();
        use SignupOutcome::*;
        assert_eq!(
            outcomes,
            [
                ConfirmationQueued, // victim: 1 stored + this = 2
                Throttled,          // the same address again: not counted
                AlreadyConfirmed,
                ConfirmationQueued, // victim: 3
                MailboxLimit,       // victim: budget of 3 used up
                ConfirmationQueued,
            ]
        );
        let writes: Vec<SignupWrite> = decide(&requests, &state, &LIMITS)
            .into_iter()
            .map(|d| d.write)
            .collect();
        assert_eq!(
            writes,
            [
                SignupWrite::Insert,
                SignupWrite::Nothing,
                SignupWrite::Nothing,
                SignupWrite::Insert,
                SignupWrite::Nothing,
                SignupWrite::Insert,
            ]
        );
    }
}
