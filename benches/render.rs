//! Rendering cost: a full render of a 10-comparison issue (Tera + mrml, once per issue) against
//! the per-recipient step, which runs once per message (as delivery's `compose_for`: the
//! unsubscribe, manage and vote-reader HMACs, then filling the slots); and the whole
//! per-recipient message (headers, multipart, transfer encoding) built by encoding the body
//! afresh (`message_encode_whole_body`) against splicing into the body encoded once per issue
//! (`message_pre_encoded_body`, what the delivery engine does). Then DKIM: the whole signed
//! message per key kind (`message_signed_*`), signing a built message with and without the body
//! prefix hashed once per issue, and the relaxed body hash of a whole body alone.
//!
//! Run: `cargo bench --bench render`

use chrono::{TimeZone, Utc};
use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use lettre::message::{Body, Mailbox};
use verdicts::comparisons::Comparison;
use verdicts::comparisons::page::PageContext;
use verdicts::config::{SecretKey, Settings};
use verdicts::delivery::dkim::{Algorithm, BodyHasher, DkimSigner, SigningKey};
use verdicts::mail::newsletter::{IssueMail, Recipient};
use verdicts::mail::{Envelope, compose};
use verdicts::render::{IssueInput, Personalizer, Renderer, SlotValues};
use verdicts::subscribers::lifecycle::{manage_url, unsubscribe_url};

fn ten_comparisons() -> Vec<Comparison> {
    let ctx = PageContext {
        base_url: "https://shiporskip.example",
        published_at: Utc.with_ymd_and_hms(2026, 11, 18, 10, 0, 0).unwrap(),
    };
    let a = Comparison::from_page_text(
        include_str!("../tests/fixtures/claude-4-sonnet-vs-smolvlm2-2b.txt"),
        &ctx,
    )
    .unwrap();
    let b = Comparison::from_page_text(
        include_str!("../tests/fixtures/claude-haiku-open-weights-vs-smolvlm2-turbo.txt"),
        &ctx,
    )
    .unwrap();
    (0..10)
        .map(|i| if i % 2 == 0 { a.clone() } else { b.clone() })
        .collect()
}

fn bench(c: &mut Criterion) {
    let settings = Settings::from_toml("").unwrap();
    let renderer = Renderer::new().unwrap();
    let comparisons = ten_comparisons();
    let input = IssueInput {
        number: 12,
        week: "2026-W47".parse().unwrap(),
        comparisons: &comparisons,
        secret: &SecretKey::from_bytes(b"bench key, not a secret"),
        previous: &[],
        positions: None,
    };
    c.bench_function("full_render_10_comparisons", |b| {
        b.iter(|| renderer.render_issue(&settings, black_box(&input)).unwrap())
    });
    let rendered = renderer.render_issue(&settings, &input).unwrap();
    let personalizer = Personalizer::new(&rendered.html, &rendered.text);
    // What the delivery engine's `compose_for` does per recipient before building the message:
    // the unsubscribe and manage links (one HMAC each), the reader's part of the vote links
    // (one HMAC, keyed once per issue by `IssueMail::with_votes`), the slot values with the
    // manage link.
    let secret = SecretKey::from_bytes(b"bench key, not a secret");
    let public = &settings.http.public_url;
    let mail = IssueMail::new(12, &rendered.subject, &personalizer).with_votes(&secret);
    let recipient = |n: u64| {
        let sid = n as i64;
        let email = format!("reader{n}@example.org");
        let url = unsubscribe_url(public, &secret, sid);
        let values = SlotValues::for_recipient(
            &email,
            &settings.newsletter.name.0,
            black_box(&url),
            mail.vote_reader(sid),
        )
        .with_manage_link(&manage_url(public, &secret, sid));
        (email, url, values)
    };
    let mut n = 0u64;
    c.bench_function("personalize_one_recipient", |b| {
        b.iter(|| {
            n += 1;
            let (_, _, values) = recipient(n);
            let html = personalizer.html(&values);
            let text = personalizer.text(&values);
            black_box((html, text))
        })
    });

    // The fill alone (the slot values made once): the part the vote links' 40 slots changed,
    // comparable with the first rounds' figure, which made its values with one format!.
    let (_, _, values) = recipient(0);
    c.bench_function("personalize_fill_only", |b| {
        b.iter(|| {
            let html = personalizer.html(black_box(&values));
            let text = personalizer.text(black_box(&values));
            black_box((html, text))
        })
    });

    c.bench_function("message_encode_whole_body", |b| {
        b.iter(|| {
            n += 1;
            let (email, url, values) = recipient(n);
            let message = compose(
                &settings,
                Envelope {
                    to: Mailbox::new(None, email.parse().unwrap()),
                    message_id_local: &format!("issue-12.sub-{n}"),
                    subject: &rendered.subject,
                    unsubscribe_url: &url,
                    text: Body::new(personalizer.text(&values)),
                    html: Body::new(personalizer.html(&values)),
                    feedback_id: Some("12:weekly-verdicts.shiporskip.example:newsletter:x"),
                },
                None,
            )
            .unwrap();
            black_box(message.formatted())
        })
    });
    c.bench_function("message_pre_encoded_body", |b| {
        b.iter(|| {
            n += 1;
            let (email, url, values) = recipient(n);
            black_box(
                mail.message(
                    &settings,
                    None,
                    Recipient {
                        to: Mailbox::new(None, email.parse().unwrap()),
                        message_id_local: &format!("issue-12.sub-{n}"),
                        unsubscribe_url: &url,
                        values: &values,
                    },
                )
                .unwrap(),
            )
        })
    });
    bench_dkim(c, &settings, &rendered.subject, &personalizer);
}

/// The DKIM benches, on the issue `bench` rendered.
fn bench_dkim(c: &mut Criterion, settings: &Settings, subject: &str, personalizer: &Personalizer) {
    let mut mail = IssueMail::new(12, subject, personalizer);
    mail.prepare_dkim(settings).unwrap();
    let key = |a| SigningKey::generate(a).unwrap().0;
    let rsa = DkimSigner::new("shiporskip.example", [("rsa", key(Algorithm::Rsa))]);
    let ed = DkimSigner::new("shiporskip.example", [("ed", key(Algorithm::Ed25519))]);
    let both = DkimSigner::new(
        "shiporskip.example",
        [
            ("rsa", key(Algorithm::Rsa)),
            ("ed", key(Algorithm::Ed25519)),
        ],
    );
    let values = SlotValues::for_recipient(
        "reader1@example.org",
        "Weekly AI Tool Verdicts",
        "https://news.example/unsubscribe/1",
        "A".repeat(28),
    );
    let message = |signer: Option<&DkimSigner>| {
        mail.message(
            settings,
            signer,
            Recipient {
                to: Mailbox::new(None, "reader1@example.org".parse().unwrap()),
                message_id_local: "issue-12.sub-1",
                unsubscribe_url: "https://news.example/unsubscribe/1",
                values: &values,
            },
        )
        .unwrap()
    };
    for (name, signer) in [
        ("message_signed_rsa", &rsa),
        ("message_signed_ed25519", &ed),
        ("message_signed_rsa_and_ed25519", &both),
    ] {
        c.bench_function(name, |b| b.iter(|| black_box(message(Some(signer)))));
    }
    let unsigned = message(None);
    c.bench_function("dkim_sign_rsa_without_body_prefix", |b| {
        b.iter(|| black_box(rsa.sign(black_box(&unsigned), None)))
    });
    c.bench_function("dkim_sign_ed25519_without_body_prefix", |b| {
        b.iter(|| black_box(ed.sign(black_box(&unsigned), None)))
    });
    let body = &unsigned[unsigned.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4..];
    c.bench_function(&format!("dkim_body_hash_{}_bytes", body.len()), |b| {
        b.iter(|| {
            let mut h = BodyHasher::new();
            h.update(black_box(body));
            black_box(h.finish())
        })
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
