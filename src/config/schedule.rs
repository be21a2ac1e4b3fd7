//! `[schedule]` and the value types of times: cron, time zone, duration.

use super::*;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScheduleSettings {
    pub cron: CronSetting,
    pub timezone: TimezoneSetting,
    pub catch_up: DurationSetting,
}

/// A cron expression accepted by the `cron` crate; a 5-field crontab gets `0` seconds prepended.
#[derive(Debug, Clone, Deserialize)]
#[serde(try_from = "String")]
pub struct CronSetting {
    pub source: String,
    pub schedule: cron::Schedule,
}

impl TryFrom<String> for CronSetting {
    type Error = String;
    fn try_from(value: String) -> Result<Self, String> {
        let fields = value.split_whitespace().count();
        let expr = if fields == 5 {
            format!("0 {value}")
        } else {
            value.clone()
        };
        cron::Schedule::from_str(&expr)
            .map(|schedule| CronSetting {
                source: value.clone(),
                schedule,
            })
            .map_err(|e| format!("{value:?} is not a cron expression: {e}"))
    }
}

/// An IANA time zone name such as `Europe/Berlin`.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(try_from = "String")]
pub struct TimezoneSetting(pub chrono_tz::Tz);

impl TryFrom<String> for TimezoneSetting {
    type Error = String;
    fn try_from(value: String) -> Result<Self, String> {
        chrono_tz::Tz::from_str(&value)
            .map(TimezoneSetting)
            .map_err(|_| format!("{value:?} is not an IANA time zone (e.g. Europe/Berlin)"))
    }
}

/// A duration written like `6h`, `90m` or `1h 30m`.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(try_from = "String")]
pub struct DurationSetting(pub Duration);

impl TryFrom<String> for DurationSetting {
    type Error = String;
    fn try_from(value: String) -> Result<Self, String> {
        humantime::parse_duration(&value)
            .map(DurationSetting)
            .map_err(|e| format!("{value:?} is not a duration like 6h or 90m: {e}"))
    }
}
