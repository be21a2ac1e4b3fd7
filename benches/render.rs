//! Rendering cost: a full render of a 10-comparison issue (Tera + mrml, once per issue) against
//! the per-recipient step (filling the footer slots), which runs once per message; and the whole
//! per-recipient message (headers, multipart, transfer encoding) built by encoding the body
//! afresh (`message_encode_whole_body`) against splicing into the body encoded once per issue
//! (`message_pre_encoded_body`, what the delivery engine does).
//!
//! Run: `cargo bench --bench render`

use chrono::{TimeZone, Utc};
use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use lettre::message::{Body, Mailbox};
use verdicts::comparisons::Comparison;
use verdicts::comparisons::page::PageContext;
use verdicts::config::Settings;
use verdicts::mail::newsletter::{IssueMail, Recipient};
use verdicts::mail::{Envelope, compose};
use verdicts::render::{IssueInput, Personalizer, Renderer, SlotValues};

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
    };
    c.bench_function("full_render_10_comparisons", |b| {
        b.iter(|| renderer.render_issue(&settings, black_box(&input)).unwrap())
    });
    let rendered = renderer.render_issue(&settings, &input).unwrap();
    let personalizer = Personalizer::new(&rendered.html, &rendered.text);
    let mut n = 0u64;
    c.bench_function("personalize_one_recipient", |b| {
        b.iter(|| {
            n += 1;
            let email = format!("reader{n}@example.org");
            let url = format!("https://news.example/unsubscribe/{n:032x}");
            let values =
                SlotValues::for_recipient(&email, "Weekly AI Tool Verdicts", black_box(&url));
            let html = personalizer.html(&values);
            let text = personalizer.text(&values);
            black_box((html, text))
        })
    });

    let mail = IssueMail::new(12, &rendered.subject, &personalizer);
    let recipient = |n: u64| {
        let email = format!("reader{n}@example.org");
        let url = format!("https://news.example/unsubscribe/{n:032x}");
        let values = SlotValues::for_recipient(&email, "Weekly AI Tool Verdicts", &url);
        (email, url, values)
    };
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
}

criterion_group!(benches, bench);
criterion_main!(benches);
