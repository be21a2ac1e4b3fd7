//! Operator accounts and console sessions: who may manage operators, how a login is checked,
//! and what a session is. Passwords are Argon2id ([`crate::operators`]); a session lives in the
//! database as the hash of a random token, so logging out, a new password or removing the
//! operator ends it at once, in every process. Failed logins are throttled ([`throttle`]).

pub mod throttle;

use std::net::IpAddr;

use chrono::{DateTime, Duration, Utc};
use rand::RngCore;
use sha2::{Digest, Sha256};

use super::{Activity, Actor, App, OpsError};
use crate::operators::totp::{self, SecondFactor};
use crate::operators::{OperatorEmail, Password, Role, dummy_hash, hash_password, verify_password};
use crate::store::operators::{KeepRole, OperatorRow};

/// How long a console session lasts after its last use: each use extends it (sliding
/// expiry, written at most once per [`SESSION_RENEW_STEP`]).
pub const SESSION_TTL: Duration = Duration::hours(12);
/// How long a console session lasts at most, however busy: then its operator signs in again.
/// The session cookie lives this long too; the server-side expiry is what ends it earlier.
pub const SESSION_MAX_AGE: Duration = Duration::days(7);
/// A session's server-side expiry is moved only when that gains at least this much, so a busy
/// console (progress polls every few seconds) writes it about once a minute, not per request.
pub const SESSION_RENEW_STEP: Duration = Duration::minutes(1);

/// The new expiry of a session created at `created_at`, expiring at `expires_at`, used at
/// `now`: `now` + [`SESSION_TTL`], within [`SESSION_MAX_AGE`] of its creation; `None` when
/// that is less than [`SESSION_RENEW_STEP`] later than it is (nothing to write).
pub fn renewed_expiry(
    now: DateTime<Utc>,
    created_at: DateTime<Utc>,
    expires_at: DateTime<Utc>,
) -> Option<DateTime<Utc>> {
    let target = (now + SESSION_TTL).min(created_at + SESSION_MAX_AGE);
    (target - expires_at >= SESSION_RENEW_STEP).then_some(target)
}

/// A signed-in operator, as a request of the console sees them.
#[derive(Debug, Clone)]
pub struct SignedIn {
    pub operator_id: i64,
    pub email: String,
    pub role: Role,
    /// The session's token for every state-changing form.
    pub csrf_token: String,
    pub expires_at: DateTime<Utc>,
}

impl SignedIn {
    /// Who acts, for the operator log.
    pub fn actor(&self) -> Actor {
        Actor::Operator(self.email.clone())
    }
}

/// A session just opened: the raw token goes into the cookie and nowhere else.
#[derive(Debug, Clone)]
pub struct NewSession {
    pub token: String,
    pub signed_in: SignedIn,
}

/// What a login attempt did.
#[derive(Debug)]
pub enum LoginOutcome {
    /// The address and password match: a new session.
    SignedIn(NewSession),
    /// Wrong address or password (the caller says so without saying which).
    Refused,
    /// Too many failed logins for this address or from this client: try again after this.
    Throttled { retry_after: std::time::Duration },
}

/// 32 random bytes, URL-safe base64: session and CSRF tokens.
pub fn random_token() -> String {
    use base64::Engine as _;
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// What the database keeps of a session token.
fn token_hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// Runs CPU-bound password hashing off the async threads.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T, OpsError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| OpsError::Internal(anyhow::anyhow!("password hashing task: {e}")))
}

impl App {
    /// Managing operators is for the command line on the server and for owners.
    async fn may_manage_operators(&self, actor: &Actor) -> Result<(), OpsError> {
        match actor {
            Actor::Cli => Ok(()),
            Actor::Operator(email) => match self.store().get_operator_by_email(email).await? {
                Some(op) if op.role == Role::Owner => Ok(()),
                _ => Err(OpsError::Forbidden(
                    "only an owner can manage operators".into(),
                )),
            },
            Actor::Api | Actor::Scheduler | Actor::System | Actor::Reader => {
                Err(OpsError::Forbidden(
                    "operators are managed from the command line or by an owner".into(),
                ))
            }
        }
    }

    /// Adds an operator with an Argon2id hash of `password`. Without a role, the first
    /// operator is an owner and later ones are editors.
    pub async fn add_operator(
        &self,
        actor: &Actor,
        email: &OperatorEmail,
        role: Option<Role>,
        password: &Password,
    ) -> Result<OperatorRow, OpsError> {
        self.may_manage_operators(actor).await?;
        let role = match role {
            Some(role) => role,
            None if self.store().list_operators().await?.is_empty() => Role::Owner,
            None => Role::Editor,
        };
        let password = password.clone();
        let hash = blocking(move || hash_password(&password)).await??;
        let row = self
            .store()
            .insert_operator(email, role, &hash)
            .await?
            .ok_or_else(|| OpsError::invalid("email", format!("{email} is an operator already")))?;
        self.log(
            actor,
            Activity::OperatorAdd,
            None,
            &format!("{email} ({role})"),
        )
        .await?;
        Ok(row)
    }

    /// Every operator.
    pub async fn list_operators(&self, actor: &Actor) -> Result<Vec<OperatorRow>, OpsError> {
        self.may_manage_operators(actor).await?;
        Ok(self.store().list_operators().await?)
    }

    /// Removes an operator and ends their sessions. The last owner cannot be removed.
    pub async fn remove_operator(
        &self,
        actor: &Actor,
        email: &OperatorEmail,
    ) -> Result<(), OpsError> {
        self.may_manage_operators(actor).await?;
        // An installation always keeps an owner: someone who can manage operators.
        let keep = KeepRole {
            role: Role::Owner,
            at_least: 1,
        };
        match self.store().delete_operator(email.as_str(), keep).await? {
            None => Err(OpsError::invalid(
                "email",
                format!("{email} is not an operator"),
            )),
            Some(false) => Err(OpsError::invalid(
                "email",
                format!("{email} is the last owner: add another owner first"),
            )),
            Some(true) => {
                self.log(actor, Activity::OperatorRemove, None, email.as_str())
                    .await?;
                Ok(())
            }
        }
    }

    /// Sets a new password and ends every session of that operator.
    pub async fn set_operator_password(
        &self,
        actor: &Actor,
        email: &OperatorEmail,
        password: &Password,
    ) -> Result<(), OpsError> {
        self.may_manage_operators(actor).await?;
        let password = password.clone();
        let hash = blocking(move || hash_password(&password)).await??;
        if !self
            .store()
            .set_operator_password(email.as_str(), &hash)
            .await?
        {
            return Err(OpsError::invalid(
                "email",
                format!("{email} is not an operator"),
            ));
        }
        self.log(actor, Activity::OperatorPasswd, None, email.as_str())
            .await?;
        Ok(())
    }

    /// Checks an address and password from `client`; opens a session when they match. An
    /// unknown address costs one Argon2 verification too, so timing does not tell which
    /// addresses exist. Failed logins are throttled per address and per client, across every
    /// process ([`throttle`]); successful ones never count.
    pub async fn log_in(
        &self,
        email: &str,
        password: &str,
        client: IpAddr,
    ) -> Result<LoginOutcome, OpsError> {
        self.sign_in(email, password, "", client).await
    }

    /// [`App::log_in`] with the login form's `totp` field: an operator enrolled in two-factor
    /// sign-in also needs a code of their authenticator app not used before, or an unused
    /// recovery code. Any failure is the same [`LoginOutcome::Refused`] (and counts toward
    /// the throttle), so the answer never tells that the password was right.
    pub async fn sign_in(
        &self,
        email: &str,
        password: &str,
        totp: &str,
        client: IpAddr,
    ) -> Result<LoginOutcome, OpsError> {
        let attempt = match throttle::reserve(self.store(), email, client, now_ms()).await? {
            Ok(attempt) => attempt,
            Err(retry_after) => return Ok(LoginOutcome::Throttled { retry_after }),
        };
        let result = self.check_login(email, password, totp).await;
        let failed = matches!(result, Ok(None));
        throttle::finish(self.store(), attempt, failed, now_ms()).await?;
        Ok(match result? {
            Some(session) => LoginOutcome::SignedIn(session),
            None => LoginOutcome::Refused,
        })
    }

    /// The password check of [`App::log_in`] and the new session; `Ok(None)`: wrong address
    /// or password.
    async fn check_login(
        &self,
        email: &str,
        password: &str,
        totp: &str,
    ) -> Result<Option<NewSession>, OpsError> {
        let operator = match OperatorEmail::parse(email) {
            Ok(email) => self.store().get_operator_by_email(email.as_str()).await?,
            Err(_) => None,
        };
        let hash = operator
            .as_ref()
            .map_or_else(|| dummy_hash().to_string(), |o| o.password_hash.clone());
        let candidate = password.to_string();
        let matches = blocking(move || verify_password(&hash, &candidate)).await?;
        let Some(operator) = operator.filter(|_| matches) else {
            return Ok(None);
        };
        if !self.second_factor_holds(&operator, totp).await? {
            return Ok(None);
        }
        Ok(Some(self.open_session(operator, "").await?))
    }

    /// A new session for `operator`, logged as a login (`detail` says how, when not by
    /// password).
    async fn open_session(
        &self,
        operator: OperatorRow,
        detail: &str,
    ) -> Result<NewSession, OpsError> {
        let token = random_token();
        let csrf_token = random_token();
        let expires_at = Utc::now() + SESSION_TTL;
        self.store()
            .insert_session(&token_hash(&token), operator.id, &csrf_token, expires_at)
            .await?;
        let signed_in = SignedIn {
            operator_id: operator.id,
            email: operator.email,
            role: operator.role,
            csrf_token,
            expires_at,
        };
        self.log(&signed_in.actor(), Activity::OperatorLogin, None, detail)
            .await?;
        Ok(NewSession { token, signed_in })
    }

    /// The operator a session token belongs to, while the session lives; using it extends it
    /// ([`renewed_expiry`]).
    pub async fn session(&self, token: &str) -> Result<Option<SignedIn>, OpsError> {
        let now = Utc::now();
        let hash = token_hash(token);
        let Some(s) = self.store().live_session(&hash, now).await? else {
            return Ok(None);
        };
        let mut expires_at = s.expires_at;
        if let Some(renewed) = renewed_expiry(now, s.created_at, s.expires_at) {
            // The slide is a write: while writes fail (a full disk), the console still reads,
            // and the session keeps its old expiry.
            match self.store().extend_session(&hash, renewed).await {
                Ok(true) => expires_at = renewed,
                Ok(false) => {}
                Err(e) => crate::log_repeated!(
                    warn,
                    "operators:session-slide",
                    e,
                    "extending a console session failed; it keeps its expiry"
                ),
            }
        }
        Ok(Some(SignedIn {
            operator_id: s.operator.id,
            email: s.operator.email,
            role: s.operator.role,
            csrf_token: s.csrf_token,
            expires_at,
        }))
    }

    /// Ends the session of `token` (the cookie is dead from now on, whoever holds it).
    pub async fn log_out(&self, who: &SignedIn, token: &str) -> Result<(), OpsError> {
        if self.store().delete_session(&token_hash(token)).await? {
            self.log(&who.actor(), Activity::OperatorLogout, None, "")
                .await?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn sessions_slide_at_most_once_a_minute_and_within_their_maximum_age() {
        let login = Utc.with_ymd_and_hms(2026, 11, 23, 9, 0, 0).unwrap();
        let at_login = login + SESSION_TTL;
        // Used right after login, or 59 s later: nothing to write.
        assert_eq!(renewed_expiry(login, login, at_login), None);
        let t = login + Duration::seconds(59);
        assert_eq!(renewed_expiry(t, login, at_login), None);
        // A minute later: extended to a full TTL from now.
        let t = login + Duration::minutes(1);
        assert_eq!(renewed_expiry(t, login, at_login), Some(t + SESSION_TTL));
        // Eleven hours idle, then used: a full TTL again.
        let t = login + Duration::hours(11);
        assert_eq!(renewed_expiry(t, login, at_login), Some(t + SESSION_TTL));
        // Never beyond the maximum age, and nothing to write once there.
        let cap = login + SESSION_MAX_AGE;
        let t = cap - Duration::hours(1);
        assert_eq!(
            renewed_expiry(t, login, t + Duration::minutes(5)),
            Some(cap)
        );
        assert_eq!(renewed_expiry(t, login, cap), None);
    }
}

/// A two-factor enrolment just made: what the operator's app and safe need, shown once.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Enrolment {
    /// `otpauth://totp/…` for the authenticator app.
    pub uri: String,
    /// Single-use recovery codes (`xxxxx-xxxxx`).
    pub recovery_codes: Vec<String>,
}

/// Whether an operator has two-factor sign-in, as the console shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TotpState {
    Off,
    /// Enrolment started on the console, waiting for the first code.
    Pending,
    On {
        recovery_codes_left: i64,
    },
}

fn now_seconds() -> u64 {
    u64::try_from(Utc::now().timestamp()).unwrap_or(0)
}

fn now_ms() -> i64 {
    Utc::now().timestamp_millis()
}

/// What a change to one's own two-factor sign-in on the console did: each takes a password or
/// a code, and counts in the failed-login throttle when that does not hold.
#[derive(Debug)]
pub enum Guarded<T> {
    Done(T),
    Refused(Refusal),
    /// Too many failures for this operator's address or from this client: wait this long.
    Throttled {
        retry_after: std::time::Duration,
    },
}

/// What did not hold.
#[derive(Debug)]
pub enum Refusal {
    /// The current password.
    Password,
    /// The code (or nothing was pending). `uri`: the pending enrolment's `otpauth://` URI, to
    /// show again — only when the password was given and held.
    Code { uri: Option<String> },
}

impl App {
    /// For an operator enrolled in two-factor sign-in, whether `field` (the login form's
    /// `totp`) is a code of this step (± one) not accepted before, or an unused recovery code
    /// (which is then used up). Operators without a confirmed enrolment pass.
    async fn second_factor_holds(
        &self,
        operator: &OperatorRow,
        field: &str,
    ) -> Result<bool, OpsError> {
        let Some(row) = self.store().operator_totp(operator.id).await? else {
            return Ok(true);
        };
        if row.confirmed_at.is_none() {
            return Ok(true);
        }
        match totp::parse_field(field) {
            Ok(Some(SecondFactor::Code(code))) => {
                let Some(secret) = totp::unseal(self.secret(), operator.id, &row.secret_sealed)
                else {
                    tracing::error!(
                        operator = %operator.email,
                        "the two-factor secret does not open with security.secret_key (was the key changed?)"
                    );
                    return Ok(false);
                };
                let Some(step) = totp::matching_step(&secret, &code, now_seconds()) else {
                    return Ok(false);
                };
                let step = i64::try_from(step).unwrap_or(i64::MAX);
                Ok(self.store().claim_totp_step(operator.id, step).await?)
            }
            Ok(Some(SecondFactor::Recovery(code))) => {
                let hash = totp::recovery_hash(self.secret(), &code);
                let used = self.store().use_recovery_code(operator.id, &hash).await?;
                if used {
                    let left = self.store().recovery_codes_left(operator.id).await?;
                    self.log(
                        &Actor::Operator(operator.email.clone()),
                        Activity::OperatorRecoveryCode,
                        None,
                        &format!("{left} left"),
                    )
                    .await?;
                }
                Ok(used)
            }
            Ok(None) | Err(_) => Ok(false),
        }
    }

    async fn operator_named(&self, email: &OperatorEmail) -> Result<OperatorRow, OpsError> {
        self.store()
            .get_operator_by_email(email.as_str())
            .await?
            .ok_or_else(|| OpsError::invalid("email", format!("{email} is not an operator")))
    }

    fn issuer(&self) -> String {
        self.settings().newsletter.name.0.clone()
    }

    /// Enrols `email` in two-factor sign-in from the command line: a new secret (replacing any
    /// earlier one) required from the next sign-in, and new recovery codes. Sessions stay.
    pub async fn enrol_totp(
        &self,
        actor: &Actor,
        email: &OperatorEmail,
    ) -> Result<Enrolment, OpsError> {
        self.may_manage_operators(actor).await?;
        let operator = self.operator_named(email).await?;
        let secret = totp::new_secret();
        let codes = totp::new_recovery_codes();
        let hashes: Vec<String> = codes
            .iter()
            .map(|c| totp::recovery_hash(self.secret(), c))
            .collect();
        self.store()
            .put_operator_totp(
                operator.id,
                &totp::seal(self.secret(), operator.id, &secret),
                true,
                &hashes,
            )
            .await?;
        self.log(actor, Activity::OperatorTotp, None, email.as_str())
            .await?;
        Ok(Enrolment {
            uri: totp::otpauth_uri(&secret, &self.issuer(), email.as_str()),
            recovery_codes: codes,
        })
    }

    /// Removes `email`'s two-factor secret and recovery codes; `false` when there was none.
    pub async fn disable_totp(
        &self,
        actor: &Actor,
        email: &OperatorEmail,
    ) -> Result<bool, OpsError> {
        self.may_manage_operators(actor).await?;
        let operator = self.operator_named(email).await?;
        let removed = self.store().delete_operator_totp(operator.id).await?;
        if removed {
            self.log(actor, Activity::OperatorTotpDisable, None, email.as_str())
                .await?;
        }
        Ok(removed)
    }

    /// Turns the signed-in operator's own two-factor sign-in off, given a current code or a
    /// recovery code (a stolen session alone cannot). Each try counts in the failed-login
    /// throttle of the operator's address and of `client`, as a sign-in does: a session is
    /// not a way around it to guess codes.
    pub async fn disable_own_totp(
        &self,
        who: &SignedIn,
        field: &str,
        client: IpAddr,
    ) -> Result<Guarded<()>, OpsError> {
        self.throttled(&who.email, client, self.check_disable_own_totp(who, field))
            .await
    }

    /// Runs `check` as one try in the failed-login throttle of `email` and `client`, as a
    /// sign-in is: [`Guarded::Throttled`] without running it when over the limit; an answer of
    /// [`Guarded::Refused`] counts as a failure.
    async fn throttled<T>(
        &self,
        email: &str,
        client: IpAddr,
        check: impl std::future::Future<Output = Result<Guarded<T>, OpsError>>,
    ) -> Result<Guarded<T>, OpsError> {
        let attempt = match throttle::reserve(self.store(), email, client, now_ms()).await? {
            Ok(attempt) => attempt,
            Err(retry_after) => return Ok(Guarded::Throttled { retry_after }),
        };
        let result = check.await;
        let failed = matches!(result, Ok(Guarded::Refused(_)));
        throttle::finish(self.store(), attempt, failed, now_ms()).await?;
        result
    }

    async fn check_disable_own_totp(
        &self,
        who: &SignedIn,
        field: &str,
    ) -> Result<Guarded<()>, OpsError> {
        let refused = Guarded::Refused(Refusal::Code { uri: None });
        let Some(operator) = self.store().get_operator_by_email(&who.email).await? else {
            return Ok(refused);
        };
        match self.store().operator_totp(operator.id).await? {
            Some(row) if row.confirmed_at.is_some() => {}
            _ => return Ok(refused),
        }
        if !self.second_factor_holds(&operator, field).await? {
            return Ok(refused);
        }
        self.store().delete_operator_totp(operator.id).await?;
        self.log(
            &who.actor(),
            Activity::OperatorTotpDisable,
            None,
            &who.email,
        )
        .await?;
        Ok(Guarded::Done(()))
    }

    /// The signed-in operator's two-factor state.
    pub async fn totp_state(&self, who: &SignedIn) -> Result<TotpState, OpsError> {
        Ok(match self.store().operator_totp(who.operator_id).await? {
            None => TotpState::Off,
            Some(row) if row.confirmed_at.is_none() => TotpState::Pending,
            Some(_) => TotpState::On {
                recovery_codes_left: self.store().recovery_codes_left(who.operator_id).await?,
            },
        })
    }

    /// The operator of `who`, when `password` is theirs (one Argon2 verification either way).
    async fn password_holds(
        &self,
        who: &SignedIn,
        password: &str,
    ) -> Result<Option<OperatorRow>, OpsError> {
        let operator = self.store().get_operator_by_email(&who.email).await?;
        let hash = operator
            .as_ref()
            .map_or_else(|| dummy_hash().to_string(), |o| o.password_hash.clone());
        let candidate = password.to_string();
        let matches = blocking(move || verify_password(&hash, &candidate)).await?;
        Ok(operator.filter(|o| matches && o.id == who.operator_id))
    }

    /// Starts (or shows again) the signed-in operator's own enrolment on the console, given
    /// their current password: the `otpauth://` URI of a pending secret, which counts only once
    /// a code of it is confirmed ([`App::confirm_totp`]); `Done(None)` when two-factor sign-in
    /// is on already. A session alone neither starts an enrolment nor sees a pending secret:
    /// a stolen cookie cannot enrol its own authenticator and lock the operator out. Tries
    /// count in the failed-login throttle like a sign-in.
    pub async fn begin_totp(
        &self,
        who: &SignedIn,
        password: &str,
        client: IpAddr,
    ) -> Result<Guarded<Option<String>>, OpsError> {
        self.throttled(&who.email, client, self.check_begin_totp(who, password))
            .await
    }

    async fn check_begin_totp(
        &self,
        who: &SignedIn,
        password: &str,
    ) -> Result<Guarded<Option<String>>, OpsError> {
        if self.password_holds(who, password).await?.is_none() {
            return Ok(Guarded::Refused(Refusal::Password));
        }
        let secret = match self.store().operator_totp(who.operator_id).await? {
            Some(row) if row.confirmed_at.is_some() => return Ok(Guarded::Done(None)),
            Some(row) => totp::unseal(self.secret(), who.operator_id, &row.secret_sealed),
            None => None,
        };
        let secret = match secret {
            Some(secret) => secret,
            None => {
                let secret = totp::new_secret();
                self.store()
                    .put_operator_totp(
                        who.operator_id,
                        &totp::seal(self.secret(), who.operator_id, &secret),
                        false,
                        &[],
                    )
                    .await?;
                secret
            }
        };
        Ok(Guarded::Done(Some(totp::otpauth_uri(
            &secret,
            &self.issuer(),
            &who.email,
        ))))
    }

    /// Confirms the signed-in operator's pending enrolment with their current password and a
    /// first code: from now on the code is asked for at sign-in. Returns the new recovery codes
    /// (shown once). A wrong password is [`Refusal::Password`]; with the right password, a wrong
    /// code (or nothing pending) is [`Refusal::Code`] with the pending URI to show again. Tries
    /// count in the failed-login throttle like a sign-in.
    pub async fn confirm_totp(
        &self,
        who: &SignedIn,
        password: &str,
        field: &str,
        client: IpAddr,
    ) -> Result<Guarded<Vec<String>>, OpsError> {
        self.throttled(
            &who.email,
            client,
            self.check_confirm_totp(who, password, field),
        )
        .await
    }

    async fn check_confirm_totp(
        &self,
        who: &SignedIn,
        password: &str,
        field: &str,
    ) -> Result<Guarded<Vec<String>>, OpsError> {
        if self.password_holds(who, password).await?.is_none() {
            return Ok(Guarded::Refused(Refusal::Password));
        }
        let Some(row) = self.store().operator_totp(who.operator_id).await? else {
            return Ok(Guarded::Refused(Refusal::Code { uri: None }));
        };
        if row.confirmed_at.is_some() {
            return Ok(Guarded::Refused(Refusal::Code { uri: None }));
        }
        let Some(secret) = totp::unseal(self.secret(), who.operator_id, &row.secret_sealed) else {
            return Ok(Guarded::Refused(Refusal::Code { uri: None }));
        };
        let wrong = || {
            Ok(Guarded::Refused(Refusal::Code {
                uri: Some(totp::otpauth_uri(&secret, &self.issuer(), &who.email)),
            }))
        };
        let Ok(Some(SecondFactor::Code(code))) = totp::parse_field(field) else {
            return wrong();
        };
        let Some(step) = totp::matching_step(&secret, &code, now_seconds()) else {
            return wrong();
        };
        if !self
            .store()
            .claim_totp_step(who.operator_id, i64::try_from(step).unwrap_or(i64::MAX))
            .await?
        {
            return wrong();
        }
        let codes = totp::new_recovery_codes();
        let hashes: Vec<String> = codes
            .iter()
            .map(|c| totp::recovery_hash(self.secret(), c))
            .collect();
        self.store()
            .put_recovery_codes(who.operator_id, &hashes)
            .await?;
        self.log(&who.actor(), Activity::OperatorTotp, None, &who.email)
            .await?;
        Ok(Guarded::Done(codes))
    }
}

/// How long a mailed sign-in link works.
pub const RESET_TTL: Duration = Duration::minutes(30);
/// Sign-in links mailed to one operator per hour at most; more requests mail nothing.
pub const RESETS_PER_HOUR: i64 = 3;

/// What a request for a sign-in link does. The page answers the same for [`Self::Mail`] and
/// [`Self::Nothing`], so it does not tell which addresses are operators; and both have done the
/// same work by then (the link is made and mailed by [`App::send_reset_link`], after the
/// answer), so neither does its timing.
#[derive(Debug)]
pub enum ResetRequest {
    /// An operator: hand this to [`App::send_reset_link`] in the background.
    Mail(PendingReset),
    /// Not an operator.
    Nothing,
    /// Too many requests for this address or from this client (the login throttle's buckets).
    Throttled { retry_after: std::time::Duration },
}

/// A sign-in link to make and mail, once the request is answered.
#[derive(Debug)]
pub struct PendingReset {
    operator: OperatorRow,
}

impl PendingReset {
    /// Whom the link is for.
    pub fn email(&self) -> &str {
        &self.operator.email
    }
}

/// What following a sign-in link did.
#[derive(Debug)]
pub enum ResetOutcome {
    SignedIn(NewSession),
    /// The link was used, expired or never made.
    Dead,
    /// The operator has two-factor sign-in and the code was missing or wrong (the link stays).
    CodeRefused,
    Throttled {
        retry_after: std::time::Duration,
    },
}

impl App {
    /// Mails the sign-in link of `token` to the operator `to`: DKIM-signed like every message
    /// we send, from the envelope sender of the other transactional mail (`mail.return_path`).
    async fn mail_reset_link(&self, to: &str, token: &str) -> anyhow::Result<()> {
        let settings = self.settings();
        let message = crate::mail::reset::compose(
            &settings.mail,
            &settings.newsletter,
            &settings.http.public_url,
            to,
            token,
            RESET_TTL.num_minutes(),
        )?;
        let engine = self.engine().await?;
        let message = match &engine.dkim {
            Some(signer) => signer.sign(&message, None),
            None => message,
        };
        let to: lettre::Address = to.parse()?;
        engine
            .transport
            .send_raw(
                &crate::bounces::verp::plain_sender(&settings.mail),
                &to,
                &message,
            )
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))
    }

    /// `/admin/reset`: whether to make a one-time sign-in link for `email` (when it is an
    /// operator). Every request counts in the failed-login throttle (per address and per
    /// client); the link itself is made by [`App::send_reset_link`].
    pub async fn request_reset(
        &self,
        email: &str,
        client: IpAddr,
    ) -> Result<ResetRequest, OpsError> {
        let attempt = match throttle::reserve(self.store(), email, client, now_ms()).await? {
            Ok(attempt) => attempt,
            Err(retry_after) => return Ok(ResetRequest::Throttled { retry_after }),
        };
        throttle::finish(self.store(), attempt, true, now_ms()).await?;
        let operator = match OperatorEmail::parse(email) {
            Ok(email) => self.store().get_operator_by_email(email.as_str()).await?,
            Err(_) => None,
        };
        Ok(match operator {
            Some(operator) => ResetRequest::Mail(PendingReset { operator }),
            None => ResetRequest::Nothing,
        })
    }

    /// Makes and mails the sign-in link of a [`ResetRequest::Mail`] (after the request was
    /// answered): `false`, and nothing made, when [`RESETS_PER_HOUR`] links were made for the
    /// operator within the hour.
    pub async fn send_reset_link(&self, pending: PendingReset) -> anyhow::Result<bool> {
        let operator = pending.operator;
        let now = Utc::now();
        if self
            .store()
            .reset_tokens_since(operator.id, now - Duration::hours(1))
            .await?
            >= RESETS_PER_HOUR
        {
            tracing::warn!(operator = %operator.email, "sign-in link not mailed: {RESETS_PER_HOUR} this hour already");
            return Ok(false);
        }
        let token = random_token();
        self.store()
            .insert_reset_token(&token_hash(&token), operator.id, now + RESET_TTL)
            .await?;
        self.mail_reset_link(&operator.email, &token).await?;
        Ok(true)
    }

    /// Whether `token` is a live sign-in link, and whether its operator must give a code.
    pub async fn reset_link(&self, token: &str) -> Result<Option<bool>, OpsError> {
        let Some(operator) = self
            .store()
            .live_reset_token(&token_hash(token), Utc::now())
            .await?
        else {
            return Ok(None);
        };
        let enrolled = self
            .store()
            .operator_totp(operator.id)
            .await?
            .is_some_and(|t| t.confirmed_at.is_some());
        Ok(Some(enrolled))
    }

    /// Follows a sign-in link: sets `new_password` (ending the operator's other sessions and
    /// using up their other links) and opens a session. An operator with two-factor sign-in must also give a code — a mailbox
    /// alone does not get past it. The link works once.
    pub async fn follow_reset(
        &self,
        token: &str,
        new_password: &Password,
        totp_field: &str,
        client: IpAddr,
    ) -> Result<ResetOutcome, OpsError> {
        let now = Utc::now();
        let hash = token_hash(token);
        let Some(operator) = self.store().live_reset_token(&hash, now).await? else {
            return Ok(ResetOutcome::Dead);
        };
        let attempt =
            match throttle::reserve(self.store(), &operator.email, client, now_ms()).await? {
                Ok(attempt) => attempt,
                Err(retry_after) => return Ok(ResetOutcome::Throttled { retry_after }),
            };
        let holds = self.second_factor_holds(&operator, totp_field).await;
        throttle::finish(self.store(), attempt, !matches!(holds, Ok(true)), now_ms()).await?;
        if !holds? {
            return Ok(ResetOutcome::CodeRefused);
        }
        let password = new_password.clone();
        let password_hash = blocking(move || hash_password(&password)).await??;
        // One transaction: the link used, the password set, the sessions ended and every other
        // link of the operator's used up (an older mail must not undo this change).
        if !self
            .store()
            .redeem_reset_token(&hash, &operator.email, &password_hash, Utc::now())
            .await?
        {
            return Ok(ResetOutcome::Dead);
        }
        self.log(
            &Actor::Operator(operator.email.clone()),
            Activity::OperatorPasswd,
            None,
            "by a mailed sign-in link",
        )
        .await?;
        Ok(ResetOutcome::SignedIn(
            self.open_session(operator, "by a mailed sign-in link")
                .await?,
        ))
    }
}
