//! What readers tell us, counted without tracking them: Ship/Skip votes from the inbox and
//! clicks on comparison links. This module holds the signed tokens of those links and the
//! vocabulary; the decisions are in [`crate::app`], the rows in [`crate::store`].
//!
//! - A **vote link** is `/vote/{R}{S}` (60 characters). `S` (32) is the same for every
//!   recipient and is rendered into the issue once: `base64url(number ‖ position ‖ tool ‖
//!   choice ‖ HMAC[..12])`. `R` (28) is the reader's part, one per recipient and issue, filled
//!   into a slot: `base64url(subscriber id ‖ HMAC(number ‖ id)[..13])`. Both are keyed with
//!   `security.secret_key` and both name the issue, so changing any byte, or pairing one
//!   reader's part with another issue's links, is refused. Filling a recipient costs one HMAC.
//! - A **click link** is `/r/{token}`: `base64url(number ‖ position ‖ HMAC[..14])`, no reader
//!   in it, so every recipient gets the very same link.
//! - A stored vote is keyed by [`voter_hash`]: HMAC(secret, subscriber, comparison): one vote
//!   per reader per tool of a comparison, without a subscriber id or address in the table, and
//!   not linkable across comparisons without the key. Pseudonymous, not anonymous: nothing
//!   here turns a code back into a reader, but whoever holds the key and the subscribers can
//!   recompute every reader's code and match it.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;

use crate::config::SecretKey;

type HmacSha256 = Hmac<Sha256>;

/// Length of a reader's part of a vote link.
pub const VOTE_READER_LEN: usize = 28;
/// Length of the per-issue part of a vote link.
pub const VOTE_CHOICE_LEN: usize = 32;
/// Length of a whole vote token.
pub const VOTE_TOKEN_LEN: usize = VOTE_READER_LEN + VOTE_CHOICE_LEN;
/// The reader part of previews and test sends: the right shape, never genuine (its links 404).
pub const SAMPLE_READER: &str = "AAAAAAAAAAAAAAAAAAAAAAAAAAAA";
/// Length of a click token.
pub const CLICK_TOKEN_LEN: usize = 32;

/// What a reader says about a tool.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Choice {
    Ship,
    Skip,
}

impl Choice {
    pub const ALL: [Choice; 2] = [Choice::Ship, Choice::Skip];

    pub fn as_str(self) -> &'static str {
        match self {
            Choice::Ship => "ship",
            Choice::Skip => "skip",
        }
    }

    /// "Ship" / "Skip", for buttons.
    pub fn label(self) -> &'static str {
        match self {
            Choice::Ship => "Ship",
            Choice::Skip => "Skip",
        }
    }

    pub fn parse(s: &str) -> Option<Choice> {
        match s {
            "ship" => Some(Choice::Ship),
            "skip" => Some(Choice::Skip),
            _ => None,
        }
    }

    fn byte(self) -> u8 {
        match self {
            Choice::Ship => 1,
            Choice::Skip => 2,
        }
    }

    fn from_byte(b: u8) -> Option<Choice> {
        match b {
            1 => Some(Choice::Ship),
            2 => Some(Choice::Skip),
            _ => None,
        }
    }
}

/// What a genuine vote token says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VoteClaim {
    /// The issue's public number.
    pub number: i64,
    pub subscriber_id: i64,
    /// The comparison's position in the issue (0-based).
    pub position: u16,
    /// Which of the comparison's two tools (0 or 1).
    pub tool: u8,
    pub choice: Choice,
}

/// What a genuine click token says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClickClaim {
    pub number: i64,
    pub position: u16,
}

fn is_base64url(s: &str) -> bool {
    s.bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

fn keyed(secret: &SecretKey, purpose: &[u8]) -> HmacSha256 {
    let mut mac = HmacSha256::new_from_slice(secret.as_bytes()).expect("HMAC takes any key");
    mac.update(purpose);
    mac
}

/// Signs the reader parts of one issue's vote links: the key schedule is done once per issue,
/// each recipient then costs one short HMAC ([`VoteReaderSigner::token`]).
#[derive(Clone)]
pub struct VoteReaderSigner {
    number: i64,
    mac: HmacSha256,
}

impl std::fmt::Debug for VoteReaderSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "VoteReaderSigner(issue #{})", self.number)
    }
}

const READER_PURPOSE: &[u8] = b"verdicts/vote-reader/v1:";
const CHOICE_PURPOSE: &[u8] = b"verdicts/vote-choice/v1:";
const CLICK_PURPOSE: &[u8] = b"verdicts/click/v1:";
const VOTER_PURPOSE: &[u8] = b"verdicts/voter/v1:";

impl VoteReaderSigner {
    pub fn new(secret: &SecretKey, number: i64) -> VoteReaderSigner {
        VoteReaderSigner {
            number,
            mac: keyed(secret, READER_PURPOSE),
        }
    }

    /// The reader's part of every vote link in their copy of the issue (28 characters).
    pub fn token(&self, subscriber_id: i64) -> String {
        let id = subscriber_id.to_be_bytes();
        let mut mac = self.mac.clone();
        mac.update(&self.number.to_be_bytes());
        mac.update(&id);
        let tag = mac.finalize().into_bytes();
        let mut raw = [0u8; 21];
        raw[..8].copy_from_slice(&id);
        raw[8..].copy_from_slice(&tag[..13]);
        URL_SAFE_NO_PAD.encode(raw)
    }
}

/// The per-issue part of a vote link (32 characters): the same for every recipient.
pub fn vote_choice_token(
    secret: &SecretKey,
    number: i64,
    position: u16,
    tool: u8,
    choice: Choice,
) -> String {
    let mut body = [0u8; 12];
    body[..8].copy_from_slice(&number.to_be_bytes());
    body[8..10].copy_from_slice(&position.to_be_bytes());
    body[10] = tool;
    body[11] = choice.byte();
    let mut mac = keyed(secret, CHOICE_PURPOSE);
    mac.update(&body);
    let tag = mac.finalize().into_bytes();
    let mut raw = [0u8; 24];
    raw[..12].copy_from_slice(&body);
    raw[12..].copy_from_slice(&tag[..12]);
    URL_SAFE_NO_PAD.encode(raw)
}

/// What a vote token stands for, if every part of it is genuine and both parts name one issue.
pub fn verify_vote_token(secret: &SecretKey, token: &str) -> Option<VoteClaim> {
    if token.len() != VOTE_TOKEN_LEN || !is_base64url(token) {
        return None;
    }
    let (reader, choice) = token.split_at(VOTE_READER_LEN);
    let reader = URL_SAFE_NO_PAD.decode(reader).ok()?;
    let choice = URL_SAFE_NO_PAD.decode(choice).ok()?;
    if reader.len() != 21 || choice.len() != 24 {
        return None;
    }
    let (body, tag) = choice.split_at(12);
    let mut mac = keyed(secret, CHOICE_PURPOSE);
    mac.update(body);
    let expected = mac.finalize().into_bytes();
    let choice_ok = bool::from(expected[..12].ct_eq(tag));
    let number = &body[..8];
    let (id, reader_tag) = reader.split_at(8);
    let mut mac = keyed(secret, READER_PURPOSE);
    mac.update(number);
    mac.update(id);
    let expected = mac.finalize().into_bytes();
    let reader_ok = bool::from(expected[..13].ct_eq(reader_tag));
    if !(choice_ok && reader_ok) {
        return None;
    }
    let tool = body[10];
    if tool > 1 {
        return None;
    }
    Some(VoteClaim {
        number: i64::from_be_bytes(number.try_into().ok()?),
        subscriber_id: i64::from_be_bytes(id.try_into().ok()?),
        position: u16::from_be_bytes(body[8..10].try_into().ok()?),
        tool,
        choice: Choice::from_byte(body[11])?,
    })
}

/// The click token of the comparison at `position` of issue `number`.
pub fn click_token(secret: &SecretKey, number: i64, position: u16) -> String {
    let mut body = [0u8; 10];
    body[..8].copy_from_slice(&number.to_be_bytes());
    body[8..].copy_from_slice(&position.to_be_bytes());
    let mut mac = keyed(secret, CLICK_PURPOSE);
    mac.update(&body);
    let tag = mac.finalize().into_bytes();
    let mut raw = [0u8; 24];
    raw[..10].copy_from_slice(&body);
    raw[10..].copy_from_slice(&tag[..14]);
    URL_SAFE_NO_PAD.encode(raw)
}

/// What a click token stands for, if it is genuine.
pub fn verify_click_token(secret: &SecretKey, token: &str) -> Option<ClickClaim> {
    if token.len() != CLICK_TOKEN_LEN || !is_base64url(token) {
        return None;
    }
    let raw = URL_SAFE_NO_PAD.decode(token).ok()?;
    if raw.len() != 24 {
        return None;
    }
    let (body, tag) = raw.split_at(10);
    let mut mac = keyed(secret, CLICK_PURPOSE);
    mac.update(body);
    let expected = mac.finalize().into_bytes();
    if !bool::from(expected[..14].ct_eq(tag)) {
        return None;
    }
    Some(ClickClaim {
        number: i64::from_be_bytes(body[..8].try_into().ok()?),
        position: u16::from_be_bytes(body[8..10].try_into().ok()?),
    })
}

/// The key a stored vote is deduplicated by: one per reader and comparison, keyed so the table
/// names nobody (and one reader's votes on two comparisons cannot be linked).
pub fn voter_hash(secret: &SecretKey, subscriber_id: i64, comparison_id: i64) -> String {
    let mut mac = keyed(secret, VOTER_PURPOSE);
    mac.update(&subscriber_id.to_be_bytes());
    mac.update(&comparison_id.to_be_bytes());
    hex::encode(&mac.finalize().into_bytes()[..16])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(s: &str) -> SecretKey {
        SecretKey::from_bytes(s.as_bytes())
    }

    fn vote_token(k: &SecretKey, number: i64, sid: i64, pos: u16, tool: u8, c: Choice) -> String {
        format!(
            "{}{}",
            VoteReaderSigner::new(k, number).token(sid),
            vote_choice_token(k, number, pos, tool, c)
        )
    }

    #[test]
    fn vote_tokens_round_trip_and_refuse_any_change() {
        let k = key("0123456789abcdef0123456789abcdef-one");
        let t = vote_token(&k, 12, 345, 3, 1, Choice::Skip);
        assert_eq!(t.len(), VOTE_TOKEN_LEN);
        assert_eq!(
            verify_vote_token(&k, &t),
            Some(VoteClaim {
                number: 12,
                subscriber_id: 345,
                position: 3,
                tool: 1,
                choice: Choice::Skip
            })
        );
        // Every single-character change is refused.
        for i in 0..t.len() {
            let mut b = t.clone().into_bytes();
            b[i] = if b[i] == b'A' { b'B' } else { b'A' };
            let forged = String::from_utf8(b).unwrap();
            assert_eq!(verify_vote_token(&k, &forged), None, "byte {i}");
        }
        // Another key, another issue's links with this reader's part, wrong shapes.
        assert_eq!(
            verify_vote_token(&key("another key, long enough......"), &t),
            None
        );
        let other_issue = vote_choice_token(&k, 13, 3, 1, Choice::Skip);
        let spliced = format!("{}{}", &t[..VOTE_READER_LEN], other_issue);
        assert_eq!(verify_vote_token(&k, &spliced), None);
        assert_eq!(verify_vote_token(&k, &t[1..]), None);
        assert_eq!(verify_vote_token(&k, &"!".repeat(VOTE_TOKEN_LEN)), None);
    }

    #[test]
    fn click_tokens_name_no_reader_and_refuse_changes() {
        let k = key("0123456789abcdef0123456789abcdef-one");
        let t = click_token(&k, 12, 4);
        assert_eq!(t, click_token(&k, 12, 4), "the same for every recipient");
        assert_eq!(
            verify_click_token(&k, &t),
            Some(ClickClaim {
                number: 12,
                position: 4
            })
        );
        for i in 0..t.len() {
            let mut b = t.clone().into_bytes();
            b[i] = if b[i] == b'A' { b'B' } else { b'A' };
            assert_eq!(verify_click_token(&k, &String::from_utf8(b).unwrap()), None);
        }
    }

    #[test]
    fn voter_hashes_differ_per_comparison_and_reader() {
        let k = key("0123456789abcdef0123456789abcdef-one");
        assert_eq!(voter_hash(&k, 1, 2), voter_hash(&k, 1, 2));
        assert_ne!(voter_hash(&k, 1, 2), voter_hash(&k, 1, 3));
        assert_ne!(voter_hash(&k, 1, 2), voter_hash(&k, 2, 2));
    }
}
