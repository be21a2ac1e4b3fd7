//! The schedule in words, for readers: "One email a week, on Mondays at 09:00 UTC", from
//! `schedule.cron` in `schedule.timezone`. Read off the fires of the next four weeks, so any
//! spelling of the cron expression gives the same sentence; a schedule that is not the same
//! every week is told by its next fire instead.

use chrono::{DateTime, Datelike, Duration, Timelike, Utc, Weekday};
use chrono_tz::Tz;

/// Most fires looked at (an every-minute cron must not cost a page render thousands).
const MAX_FIRES: usize = 200;

/// The sentence, without a final full stop.
pub fn schedule_sentence(schedule: &cron::Schedule, tz: Tz, now: DateTime<Utc>) -> String {
    let horizon = now + Duration::days(28);
    let fires: Vec<DateTime<Tz>> = schedule
        .after(&now.with_timezone(&tz))
        .take_while(|t| t.with_timezone(&Utc) <= horizon)
        .take(MAX_FIRES + 1)
        .collect();
    let Some(first) = schedule.after(&now.with_timezone(&tz)).next() else {
        return "No email is scheduled at the moment".to_string();
    };
    let at = format!("{:02}:{:02} {}", first.hour(), first.minute(), tz.name());
    let same_time = fires
        .iter()
        .all(|t| (t.hour(), t.minute()) == (first.hour(), first.minute()));
    let mut days: Vec<Weekday> = Vec::new();
    for t in &fires {
        if !days.contains(&t.weekday()) {
            days.push(t.weekday());
        }
    }
    days.sort_by_key(|d| d.num_days_from_monday());
    // Weekly: each of its weekdays exactly four times in four weeks, at one time of day.
    let weekly =
        !fires.is_empty() && fires.len() <= MAX_FIRES && same_time && fires.len() == 4 * days.len();
    if !weekly {
        return format!(
            "The next email goes out on {} at {at}",
            first.format("%A %-d %B")
        );
    }
    if days.len() == 7 {
        return format!("One email a day, at {at}");
    }
    let count = ["One", "Two", "Three", "Four", "Five", "Six"][days.len() - 1];
    let plural = if days.len() == 1 { "email" } else { "emails" };
    let names: Vec<String> = days.iter().map(|d| format!("{}s", day_name(*d))).collect();
    let on = match names.as_slice() {
        [one] => one.clone(),
        [rest @ .., last] => format!("{} and {last}", rest.join(", ")),
        [] => unreachable!("a weekly schedule has a day"),
    };
    format!("{count} {plural} a week, on {on} at {at}")
}

fn day_name(day: Weekday) -> &'static str {
    match day {
        Weekday::Mon => "Monday",
        Weekday::Tue => "Tuesday",
        Weekday::Wed => "Wednesday",
        Weekday::Thu => "Thursday",
        Weekday::Fri => "Friday",
        Weekday::Sat => "Saturday",
        Weekday::Sun => "Sunday",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;
    use std::str::FromStr;

    fn words(cron: &str, tz: &str) -> String {
        let now = Utc.with_ymd_and_hms(2026, 12, 4, 19, 0, 0).unwrap();
        schedule_sentence(
            &cron::Schedule::from_str(cron).unwrap(),
            tz.parse().unwrap(),
            now,
        )
    }

    #[test]
    fn the_schedule_in_words() {
        for (cron, tz, sentence) in [
            (
                "0 0 9 * * Mon",
                "UTC",
                "One email a week, on Mondays at 09:00 UTC",
            ),
            // The cron crate counts days from Sunday = 1: "2" is Monday, and the sentence says
            // what will actually happen.
            (
                "0 30 7 * * 2",
                "Europe/Berlin",
                "One email a week, on Mondays at 07:30 Europe/Berlin",
            ),
            (
                "0 0 18 * * Mon,Thu",
                "UTC",
                "Two emails a week, on Mondays and Thursdays at 18:00 UTC",
            ),
            (
                "0 0 8 * * Mon-Fri",
                "UTC",
                "Five emails a week, on Mondays, Tuesdays, Wednesdays, Thursdays and Fridays at 08:00 UTC",
            ),
            ("0 15 6 * * *", "UTC", "One email a day, at 06:15 UTC"),
            // The first of each month is not weekly: its next fire.
            (
                "0 0 9 1 * *",
                "UTC",
                "The next email goes out on Friday 1 January at 09:00 UTC",
            ),
            (
                "0 * * * * *",
                "UTC",
                "The next email goes out on Friday 4 December at 19:01 UTC",
            ),
        ] {
            assert_eq!(words(cron, tz), sentence, "{cron} {tz}");
        }
    }
}
