//! `verdicts operators add|list|remove|passwd|totp`: console accounts, managed on the server.

use std::io::BufRead;

use super::{Failure, OperatorsCommand, open_app};
use crate::app::{Actor, App};
use crate::config::Settings;
use crate::operators::{OperatorEmail, Password};

pub(super) async fn run(
    settings: &Settings,
    command: OperatorsCommand,
    json: bool,
) -> Result<(), Failure> {
    // Check what was typed before touching the database.
    let checked = |email: &str| {
        OperatorEmail::parse(email).map_err(|e| Failure::Input(format!("EMAIL: {e}")))
    };
    let app = open_app(settings).await?;
    let result = match command {
        OperatorsCommand::Add {
            email,
            role,
            password_stdin,
        } => {
            let email = checked(&email)?;
            let password = read_password(password_stdin)?;
            add(&app, &email, role, &password, json).await
        }
        OperatorsCommand::List => list(&app, json).await,
        OperatorsCommand::Remove { email } => {
            let email = checked(&email)?;
            app.remove_operator(&Actor::Cli, &email).await?;
            print(json, serde_json::json!({ "removed": email }), || {
                format!("removed operator {email}; their sessions are ended")
            });
            Ok(())
        }
        OperatorsCommand::Passwd {
            email,
            password_stdin,
        } => {
            let email = checked(&email)?;
            let password = read_password(password_stdin)?;
            app.set_operator_password(&Actor::Cli, &email, &password)
                .await?;
            print(
                json,
                serde_json::json!({ "password_changed": email }),
                || format!("new password set for {email}; their sessions are ended"),
            );
            Ok(())
        }
        OperatorsCommand::Totp { email, disable } => {
            let email = checked(&email)?;
            totp(&app, &email, disable, json).await
        }
    };
    app.close().await;
    result
}

async fn totp(app: &App, email: &OperatorEmail, disable: bool, json: bool) -> Result<(), Failure> {
    if disable {
        let removed = app.disable_totp(&Actor::Cli, email).await?;
        print(
            json,
            serde_json::json!({ "operator": email, "totp_removed": removed }),
            || {
                if removed {
                    format!("two-factor sign-in removed for {email}; the password alone signs in")
                } else {
                    format!("{email} had no two-factor sign-in")
                }
            },
        );
        return Ok(());
    }
    let enrolment = app.enrol_totp(&Actor::Cli, email).await?;
    print(
        json,
        serde_json::json!({
            "operator": email,
            "otpauth_uri": enrolment.uri,
            "recovery_codes": enrolment.recovery_codes,
        }),
        || {
            format!(
                "two-factor sign-in is on for {email}; from the next sign-in the console asks for a code.\n\
                 Add this to the authenticator app (or scan it on the console's Account page):\n\n  {}\n\n\
                 Recovery codes, each works once in place of a code (keep them safe, they are not shown again):\n\n  {}",
                enrolment.uri,
                enrolment.recovery_codes.join("\n  ")
            )
        },
    );
    Ok(())
}

fn print(json: bool, value: serde_json::Value, human: impl FnOnce() -> String) {
    if json {
        println!("{value}");
    } else {
        println!("{}", human());
    }
}

/// The password: the first line of standard input (without its line ending).
fn read_password(password_stdin: bool) -> Result<Password, Failure> {
    if !password_stdin {
        return Err(Failure::Input(
            "give the password on standard input with --password-stdin".into(),
        ));
    }
    let mut line = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut line)
        .map_err(|e| Failure::Input(format!("reading the password from standard input: {e}")))?;
    let line = line.strip_suffix('\n').unwrap_or(&line);
    let line = line.strip_suffix('\r').unwrap_or(line);
    Password::parse(line).map_err(|e| Failure::Input(format!("--password-stdin: {e}")))
}

async fn add(
    app: &App,
    email: &OperatorEmail,
    role: Option<crate::operators::Role>,
    password: &Password,
    json: bool,
) -> Result<(), Failure> {
    let row = app.add_operator(&Actor::Cli, email, role, password).await?;
    print(json, serde_json::json!({ "operator": row }), || {
        format!("added operator {} ({})", row.email, row.role)
    });
    Ok(())
}

async fn list(app: &App, json: bool) -> Result<(), Failure> {
    let rows = app.list_operators(&Actor::Cli).await?;
    if json {
        println!("{}", serde_json::json!(rows));
        return Ok(());
    }
    if rows.is_empty() {
        println!("no operators: add one with `verdicts operators add EMAIL --password-stdin`");
        return Ok(());
    }
    println!("{:<40}  {:<6}  ADDED (UTC)", "EMAIL", "ROLE");
    for r in &rows {
        println!(
            "{:<40}  {:<6}  {}",
            r.email,
            r.role.as_str(),
            r.created_at.format("%Y-%m-%d %H:%M")
        );
    }
    println!("{} operator(s)", rows.len());
    Ok(())
}
