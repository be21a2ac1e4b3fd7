//! A failed send, classified: the one error type of the SMTP pool, the transports and the
//! delivery engine (its own module, so the pool and the transports do not import each other).

/// A failed send, classified.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SendError {
    /// The transport cannot carry mail now, whoever the recipient: the server cannot be reached,
    /// TLS fails, the login is refused (535) or AUTH is not offered, a step timed out, the
    /// server is closing (421 before any message) or wants a login (530). Never the
    /// recipient's fault: no attempt is counted. (A 4xx — 421 too — in reply to a message on a
    /// working connection is that message's: [`classify_message_reply`].)
    #[error("{message}")]
    Transport { message: String },
    /// Worth retrying, counted as an attempt: a 4xx reply to this message (`code`).
    #[error("transient{}: {message}", code_text(*code))]
    Transient { code: Option<u16>, message: String },
    /// Not worth retrying: a 5xx reply. `recipient` is true for 550/551/553, which reject the
    /// address itself (the subscriber bounced).
    #[error("permanent{}: {message}", code_text(*code))]
    Permanent {
        code: Option<u16>,
        message: String,
        recipient: bool,
    },
    /// Given up before anything was sent because the process is shutting down.
    #[error("cancelled by shutdown")]
    Cancelled,
}

/// ` (550)` for a reply code, nothing when there was no reply.
fn code_text(code: Option<u16>) -> String {
    code.map(|c| format!(" ({c})")).unwrap_or_default()
}

/// A failed reply to one message (MAIL, RCPT, DATA or its end) on a connection that was
/// working: any 4xx — 421 included — is this message's, to be tried again on another
/// connection ([`SendError::Transient`]); the rest as [`classify`].
pub fn classify_message_reply(e: lettre::transport::smtp::Error) -> SendError {
    match e.status().map(u16::from) {
        Some(code @ 400..=499) => SendError::Transient {
            code: Some(code),
            message: e.to_string(),
        },
        _ => classify(e),
    }
}

/// lettre's error → our classification. No reply at all (network, TLS, a reply that does not
/// parse) and the replies that speak of the session rather than the message — 421 (closing),
/// 454 (TLS or a login temporarily unavailable), 530 (login required), 534/535/538 (login
/// refused) — are the transport's.
pub fn classify(e: lettre::transport::smtp::Error) -> SendError {
    let code = e.status().map(u16::from);
    match code {
        None | Some(421 | 454 | 530 | 534 | 535 | 538) => SendError::Transport {
            message: e.to_string(),
        },
        Some(_) if e.is_permanent() => SendError::Permanent {
            code,
            message: e.to_string(),
            recipient: matches!(code, Some(550 | 551 | 553)),
        },
        Some(_) => SendError::Transient {
            code,
            message: e.to_string(),
        },
    }
}
