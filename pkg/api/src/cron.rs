//! CronJob schedules: the standard five cron fields (minute, hour, day of month, month, day of
//! week; names like `MON` and `JAN`; `*/5`, ranges and lists) and the nicknames `@yearly`,
//! `@annually`, `@monthly`, `@weekly`, `@daily`, `@midnight` and `@hourly`, read by the
//! `croner` crate with POSIX rules (a day matches when day of month *or* day of week does,
//! when both are restricted), in a time zone from the IANA database (`chrono-tz`).
//!
//! Not supported: `@every <duration>` (robfig/cron's extension that Kubernetes accepts), and
//! `TZ=`/`CRON_TZ=` prefixes, which Kubernetes refuses too (`spec.timeZone` says it).

use std::str::FromStr;

use chrono::{DateTime, TimeZone, Utc};
use chrono_tz::Tz;
use croner::Cron;
use croner::parser::{CronParser, Seconds, Year};
use jiff::Timestamp;

/// A parsed schedule in its time zone.
#[derive(Clone, Debug)]
pub struct Schedule {
    cron: Cron,
    zone: Tz,
}

impl Schedule {
    /// Parses `schedule` for the IANA `time_zone` (UTC when `None`).
    ///
    /// # Errors
    /// A message saying what is wrong, in Kubernetes' words where it has them.
    pub fn parse(schedule: &str, time_zone: Option<&str>) -> Result<Schedule, String> {
        let trimmed = schedule.trim();
        if trimmed.starts_with("TZ=") || trimmed.starts_with("CRON_TZ=") {
            return Err("cannot use TZ or CRON_TZ in schedule, use timeZone field instead".into());
        }
        if trimmed.starts_with("@every") {
            return Err("unsupported schedule: @every is not supported by rkube".into());
        }
        let zone = match time_zone {
            None => Tz::UTC,
            Some(name) => Tz::from_str(name).map_err(|_| format!("unknown time zone {name}"))?,
        };
        let parser = CronParser::builder().seconds(Seconds::Disallowed).year(Year::Disallowed).build();
        let cron = parser.parse(trimmed).map_err(|error| format!("unparseable schedule: {error}"))?;
        Ok(Schedule { cron, zone })
    }

    /// The first time the schedule fires strictly after `after`.
    pub fn next_after(&self, after: Timestamp) -> Option<Timestamp> {
        let start = self.local(after)?;
        self.cron.find_next_occurrence(&start, false).ok().and_then(|next| from_chrono(&next))
    }

    /// The last time the schedule fired at or before `at`.
    pub fn last_at_or_before(&self, at: Timestamp) -> Option<Timestamp> {
        let start = self.local(at)?;
        self.cron.find_previous_occurrence(&start, true).ok().and_then(|previous| from_chrono(&previous))
    }

    fn local(&self, t: Timestamp) -> Option<DateTime<Tz>> {
        let utc: DateTime<Utc> = Utc.timestamp_opt(t.as_second(), 0).single()?;
        Some(utc.with_timezone(&self.zone))
    }
}

fn from_chrono<Z: TimeZone>(t: &DateTime<Z>) -> Option<Timestamp> {
    Timestamp::from_second(t.timestamp()).ok()
}

/// Whether `name` is a time zone of the IANA database.
pub fn is_time_zone(name: &str) -> bool {
    Tz::from_str(name).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> Timestamp {
        text.parse().expect("timestamp")
    }

    #[test]
    fn standard_schedules_fire_when_cron_says() {
        let every_five = Schedule::parse("*/5 * * * *", None).expect("parses");
        assert_eq!(every_five.next_after(at("2026-01-01T00:02:30Z")), Some(at("2026-01-01T00:05:00Z")));
        assert_eq!(every_five.next_after(at("2026-01-01T00:05:00Z")), Some(at("2026-01-01T00:10:00Z")));
        assert_eq!(every_five.last_at_or_before(at("2026-01-01T00:05:00Z")), Some(at("2026-01-01T00:05:00Z")));
        let hourly = Schedule::parse("@hourly", None).expect("parses");
        assert_eq!(hourly.next_after(at("2026-01-01T00:02:30Z")), Some(at("2026-01-01T01:00:00Z")));
        let weekdays = Schedule::parse("30 9 * * MON-FRI", None).expect("parses");
        // 2026-01-03 is a Saturday: next is Monday the 5th.
        assert_eq!(weekdays.next_after(at("2026-01-03T10:00:00Z")), Some(at("2026-01-05T09:30:00Z")));
    }

    #[test]
    fn a_time_zone_moves_the_schedule() {
        let nine_in_tokyo = Schedule::parse("0 9 * * *", Some("Asia/Tokyo")).expect("parses");
        assert_eq!(nine_in_tokyo.next_after(at("2026-01-01T01:00:00Z")), Some(at("2026-01-02T00:00:00Z")));
    }

    #[test]
    fn bad_schedules_say_why() {
        for bad in ["", "* * *", "61 * * * *", "0 0 * * * *", "TZ=UTC 0 * * * *", "@every 5m"] {
            assert!(Schedule::parse(bad, None).is_err(), "{bad:?} accepted");
        }
        assert!(Schedule::parse("0 * * * *", Some("Mars/Olympus")).is_err());
        assert!(is_time_zone("Europe/Paris") && !is_time_zone("Nowhere"));
    }
}
