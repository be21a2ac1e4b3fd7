use chrono::{TimeZone, Utc};
use verdicts::comparisons::{Comparison, page::PageContext};
use verdicts::config::Settings;
use verdicts::render::{IssueInput, Personalizer, Renderer, SlotValues};
fn main() {
    let s = Settings::from_toml("").unwrap();
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
    let ten: Vec<Comparison> = (0..10)
        .map(|i| if i % 2 == 0 { a.clone() } else { b.clone() })
        .collect();
    let r = Renderer::new().unwrap();
    let out = r
        .render_issue(
            &s,
            &IssueInput {
                number: 12,
                week: "2026-W47".parse().unwrap(),
                comparisons: &ten,
            },
        )
        .unwrap();
    println!("subject: {}", out.subject);
    println!(
        "html bytes: {}  text bytes: {}",
        out.html.len(),
        out.text.len()
    );
    println!("markers in html: {}", out.html.matches('\u{1}').count());
    let p = Personalizer::new(&out.html, &out.text);
    let v = SlotValues::for_recipient("ada@example.org", "Weekly", "https://x/unsubscribe/abc");
    let html = p.html(&v);
    println!("personalized bytes: {}", html.len());
    std::fs::write("/tmp/issue10.html", &html).unwrap();
    std::fs::write("/tmp/issue10.txt", p.text(&v)).unwrap();
}
