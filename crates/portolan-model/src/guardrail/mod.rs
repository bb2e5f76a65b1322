//! Guardrails of an action. Manual approval: who may approve a run, how many must, for how long
//! an approval may be given, and the state a waiting run carries. Pure: the server supplies who is
//! deciding, whether they hold the approve grant, and the time.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::Millis;
use crate::error::FieldErrors;
use crate::permission::User;

mod approval;
pub use approval::*;

/// Every guardrail of an action (`guardrails` in its document).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Guardrails {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approval: Option<ApprovalRule>,
    /// At most `max` runs per user, team or action in a period.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub quotas: Vec<Quota>,
    /// At most so many runs not yet ended, per action and per entity.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub concurrency: Option<Concurrency>,
    /// Limits on number inputs, absolute and relative to the entity's current value.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub bounds: Vec<Bound>,
    /// Queries the entity must pass for a run to start.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub preconditions: Vec<Precondition>,
    /// A run not ended this long after it started (or was approved) ends `TIMED_OUT`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_minutes: Option<u32>,
    /// Times in which the action refuses to run.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub freezes: Vec<Freeze>,
    /// Lock entities (`{"blueprint", "identifier"}`) whose `locked` property, while true, stops
    /// the action: "Lock deployments" sets it, "Unlock" clears it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub locks: Vec<LockRef>,
}

impl Guardrails {
    pub fn is_empty(&self) -> bool {
        self.approval.is_none()
            && self.quotas.is_empty()
            && self.concurrency.is_none()
            && self.bounds.is_empty()
            && self.preconditions.is_empty()
            && self.timeout_minutes.is_none()
            && self.freezes.is_empty()
            && self.locks.is_empty()
    }

    /// Checks what can be checked without the catalog (the server checks precondition queries).
    pub fn check(&self, errors: &mut FieldErrors) {
        if let Some(rule) = &self.approval {
            rule.check("/guardrails/approval", errors);
        }
        for (i, freeze) in self.freezes.iter().enumerate() {
            if let Err(why) = freeze.check() {
                errors.push(format!("/guardrails/freezes/{i}"), why);
            }
        }
        if self.timeout_minutes == Some(0) {
            errors.push("/guardrails/timeoutMinutes", "a timeout is at least 1 minute");
        }
        for (i, quota) in self.quotas.iter().enumerate() {
            if quota.max == 0 || quota.period_hours == 0 {
                errors.push(format!("/guardrails/quotas/{i}"), "max and periodHours are at least 1");
            }
        }
        for (i, bound) in self.bounds.iter().enumerate() {
            let path = format!("/guardrails/bounds/{i}");
            if bound.max_share_down.is_some_and(|s| !(0.0..=1.0).contains(&s)) {
                errors.push(format!("{path}/maxShareDown"), "a share is between 0 and 1");
            }
            if bound.max_factor_up.is_some_and(|f| f < 1.0) || bound.step.is_some_and(|s| s <= 0.0) {
                errors.push(path, "maxFactorUp is at least 1 and step above 0");
            }
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum QuotaScope {
    User,
    Team,
    Action,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Quota {
    pub per: QuotaScope,
    pub max: u32,
    pub period_hours: u32,
}

impl Quota {
    /// The verdict given the start times of the runs that count (newest first).
    pub fn verdict(&self, counted: &[Millis], now: Millis) -> Verdict {
        let period = i64::from(self.period_hours) * 3_600_000;
        let recent: Vec<Millis> = counted.iter().copied().filter(|at| *at > now - period).collect();
        let scope = match self.per {
            QuotaScope::User => "you",
            QuotaScope::Team => "your team",
            QuotaScope::Action => "everyone",
        };
        let used = recent.len() as u32;
        if used < self.max {
            let left = self.max - used;
            return Verdict::pass(
                "quota",
                format!("{left} of {} runs left for {scope} in {} h", self.max, self.period_hours),
            );
        }
        // A slot frees when enough of the oldest runs that count have left the window.
        let mut oldest_first = recent.clone();
        oldest_first.sort_unstable();
        let leaving = (used - self.max) as usize;
        let frees = oldest_first.get(leaving).map_or(0, |at| at + period - now);
        let message = format!("{scope} ran this {used} times in {} h (at most {})", self.period_hours, self.max);
        Verdict {
            retry_after_seconds: Some((frees.max(1000) as u64).div_ceil(1000)),
            ..Verdict::refuse("quota", message)
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Concurrency {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub per_action: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub per_entity: Option<u32>,
}

/// Limits on one number input.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Bound {
    pub input: String,
    /// The entity property the input changes (default: the input's name).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub property: Option<String>,
    /// The new value is at most this many times the current one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_factor_up: Option<f64>,
    /// The new value is at most this share below the current one (0.5: half).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_share_down: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub step: Option<f64>,
    /// Who may go past the relative limits, giving a reason: `admin`, or `member` for anyone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub override_role: Option<String>,
}

impl Bound {
    pub fn property(&self) -> &str {
        self.property.as_deref().unwrap_or(&self.input)
    }

    /// The verdict on `value` given the entity's `current` value; relative limits may be
    /// overridden by someone of the override role with a reason.
    pub fn verdict(&self, value: f64, current: Option<f64>, user: Option<&User>, reason: Option<&str>) -> Verdict {
        let name = format!("bounds.{}", self.input);
        let mut absolute = Vec::new();
        if let Some(min) = self.min.filter(|m| value < *m) {
            absolute.push(format!("at least {min}"));
        }
        if let Some(max) = self.max.filter(|m| value > *m) {
            absolute.push(format!("at most {max}"));
        }
        if let Some(step) = self.step {
            let from = self.min.unwrap_or(0.0);
            let steps = (value - from) / step;
            if (steps - steps.round()).abs() > 1e-9 {
                absolute.push(format!("in steps of {step}"));
            }
        }
        if !absolute.is_empty() {
            return Verdict::refuse(&name, format!("{} must be {}", self.input, absolute.join(" and ")));
        }
        let mut relative = Vec::new();
        if let Some(current) = current {
            // From nothing (or below), any growth is past a factor.
            let too_high = |factor: f64| if current > 0.0 { value > current * factor } else { value > current };
            if let Some(factor) = self.max_factor_up.filter(|f| too_high(*f)) {
                relative.push(format!("{value} is more than ×{factor} the current {current}"));
            }
            if let Some(share) = self.max_share_down.filter(|s| value < current * (1.0 - s)) {
                relative.push(format!("{value} is more than {}% below the current {current}", share * 100.0));
            }
        }
        if relative.is_empty() {
            return Verdict::pass(&name, format!("{value} is within bounds"));
        }
        let may_override = match (self.override_role.as_deref(), user) {
            (Some("member"), Some(_)) => true,
            (Some("admin"), Some(user)) => user.is_admin(),
            _ => false,
        };
        match (may_override, reason.filter(|r| !r.trim().is_empty())) {
            (true, Some(reason)) => Verdict::pass(&name, format!("{}; overridden: {reason}", relative.join("; "))),
            (true, None) => {
                Verdict::refuse(&name, format!("{}; give overrideReason to go past it", relative.join("; ")))
            }
            (false, _) => Verdict::refuse(&name, relative.join("; ")),
        }
    }
}

/// A freeze: a date range (`from`, `to`), a weekly window (`days` and `start`–`end`, UTC), or a
/// recurring one that starts when a cron expression matches (UTC) and lasts `durationMinutes`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Freeze {
    pub title: String,
    #[serde(default, with = "crate::timestamp::option", skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>)]
    pub from: Option<Millis>,
    #[serde(default, with = "crate::timestamp::option", skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>)]
    pub to: Option<Millis>,
    /// `MON` ... `SUN`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub days: Vec<String>,
    /// `HH:MM`, UTC (default `00:00`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start: Option<String>,
    /// `HH:MM`, UTC, exclusive (default `24:00`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end: Option<String>,
    /// `minute hour day-of-month month day-of-week`, e.g. `0 18 * * FRI` (Fridays 18:00 UTC).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cron: Option<String>,
    /// How long a cron-started freeze lasts (at most a week).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration_minutes: Option<u32>,
}

const DAYS: [&str; 7] = ["MON", "TUE", "WED", "THU", "FRI", "SAT", "SUN"];

fn minute_of_day(text: &str) -> Option<i64> {
    let (h, m) = text.split_once(':')?;
    let (h, m): (i64, i64) = (h.parse().ok()?, m.parse().ok()?);
    ((0..=24).contains(&h) && (0..60).contains(&m) && h * 60 + m <= 1440).then_some(h * 60 + m)
}

impl Freeze {
    fn check(&self) -> Result<(), String> {
        let weekly = !self.days.is_empty() || self.start.is_some() || self.end.is_some();
        let range = self.from.is_some() || self.to.is_some();
        let cron = self.cron.is_some() || self.duration_minutes.is_some();
        if [weekly, range, cron].iter().filter(|k| **k).count() != 1 {
            return Err(
                "a freeze is a date range (from, to), a weekly window (days, start, end) or a cron start with durationMinutes"
                    .into(),
            );
        }
        if cron {
            Cron::parse(self.cron.as_deref().unwrap_or_default())?;
            if !self.duration_minutes.is_some_and(|d| (1..=7 * 24 * 60).contains(&d)) {
                return Err("durationMinutes is 1 to 10080 (a week)".into());
            }
        }
        if let Some(day) = self.days.iter().find(|d| !DAYS.contains(&d.as_str())) {
            return Err(format!("unknown day '{day}': use MON ... SUN"));
        }
        for time in [&self.start, &self.end].into_iter().flatten() {
            minute_of_day(time).ok_or_else(|| format!("'{time}' is not a time HH:MM"))?;
        }
        let start = self.start.as_deref().and_then(minute_of_day).unwrap_or(0);
        let end = self.end.as_deref().and_then(minute_of_day).unwrap_or(1440);
        if weekly && start >= end {
            return Err("a weekly window ends after it starts on the same day; split an overnight one in two".into());
        }
        Ok(())
    }

    /// When the freeze in force at `now` ends, or `None` when it is not in force.
    pub fn frozen_until(&self, now: Millis) -> Option<Millis> {
        if let (Some(expression), Some(duration)) = (&self.cron, self.duration_minutes) {
            let cron = Cron::parse(expression).ok()?;
            let minute = now.div_euclid(60_000);
            // The latest start no longer ago than the duration.
            let start = (0..i64::from(duration)).map(|back| minute - back).find(|m| cron.matches(*m))?;
            return Some((start + i64::from(duration)) * 60_000);
        }
        if self.days.is_empty() && self.start.is_none() && self.end.is_none() {
            let started = self.from.is_none_or(|from| from <= now);
            let open_ended = self.to.is_none_or(|to| now < to);
            return (started && open_ended).then_some(self.to.unwrap_or(Millis::MAX));
        }
        let day_start = now.div_euclid(crate::DAY) * crate::DAY;
        // 1970-01-01 was a Thursday.
        let weekday = DAYS[((now.div_euclid(crate::DAY) + 3).rem_euclid(7)) as usize];
        let minute = (now - day_start) / 60_000;
        let start = self.start.as_deref().and_then(minute_of_day).unwrap_or(0);
        let end = self.end.as_deref().and_then(minute_of_day).unwrap_or(1440);
        let today = self.days.is_empty() || self.days.iter().any(|d| d == weekday);
        (today && start <= minute && minute < end).then_some(day_start + end * 60_000)
    }
}

/// A cron expression: the minutes, hours, days of the month, months and days of the week it
/// matches (Sunday is 0 or 7; names `MON`...`SUN` work too). As in cron, when both day fields are
/// restricted a minute matches either.
struct Cron {
    fields: [Vec<bool>; 5],
    days_restricted: (bool, bool),
}

impl Cron {
    fn parse(text: &str) -> Result<Cron, String> {
        let parts: Vec<&str> = text.split_whitespace().collect();
        let [minute, hour, dom, month, dow] = parts.as_slice() else {
            return Err(format!("'{text}' is not a cron expression of five fields"));
        };
        let field = |spec: &str, low: u32, high: u32| -> Result<Vec<bool>, String> {
            let mut allowed = vec![false; high as usize + 1];
            for item in spec.split(',') {
                let (range, step) = match item.split_once('/') {
                    Some((range, step)) => (range, step.parse::<u32>().map_err(|_| format!("bad step in '{item}'"))?),
                    None => (item, 1),
                };
                // Day names: MON is 1 ... SAT 6; SUN is 0 where a range starts and 7 elsewhere.
                let number = |s: &str, starts: bool| -> Result<u32, String> {
                    let named = DAYS.iter().position(|d| d.eq_ignore_ascii_case(s)).map(|i| match (i, starts) {
                        (6, true) => 0,
                        (i, _) => i as u32 + 1,
                    });
                    named.or_else(|| s.parse().ok()).ok_or_else(|| format!("'{s}' in '{text}' is not a number"))
                };
                let (from, to) = match range {
                    "*" => (low, high),
                    r => match r.split_once('-') {
                        Some((a, b)) => (number(a, true)?, number(b, false)?),
                        None => (number(r, false)?, number(r, false)?),
                    },
                };
                if from < low || to > high || from > to || step == 0 {
                    return Err(format!("'{item}' is out of range {low}-{high} in '{text}'"));
                }
                for value in (from..=to).step_by(step as usize) {
                    allowed[value as usize] = true;
                }
            }
            Ok(allowed)
        };
        let mut days = field(dow, 0, 7)?;
        if days[7] {
            days[0] = true;
        }
        Ok(Cron {
            fields: [field(minute, 0, 59)?, field(hour, 0, 23)?, field(dom, 1, 31)?, field(month, 1, 12)?, days],
            days_restricted: (!dom.starts_with('*'), !dow.starts_with('*')),
        })
    }

    /// Whether the cron matches the minute that many minutes after the epoch (UTC).
    fn matches(&self, minute: i64) -> bool {
        let Ok(time) = time::OffsetDateTime::from_unix_timestamp(minute * 60) else { return false };
        let [minutes, hours, doms, months, dows] = &self.fields;
        let dom = doms[time.day() as usize];
        let dow = dows[time.weekday().number_days_from_sunday() as usize];
        let day = match self.days_restricted {
            (true, true) => dom || dow,
            _ => dom && dow,
        };
        minutes[time.minute() as usize] && hours[time.hour() as usize] && months[u8::from(time.month()) as usize] && day
    }
}

/// An entity whose `locked` property stops an action while it is true.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LockRef {
    pub blueprint: String,
    pub identifier: String,
}

/// A query the run's entity must pass, named for the refusal.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Precondition {
    pub title: String,
    #[schema(value_type = Object)]
    pub query: Value,
}

/// One guardrail's decision on a run about to start.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Verdict {
    /// `approval`, `quota`, `concurrency`, `bounds.<input>`, `precondition`.
    pub guardrail: String,
    pub passed: bool,
    pub message: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_after_seconds: Option<u64>,
}

impl Verdict {
    pub fn pass(guardrail: &str, message: impl Into<String>) -> Self {
        Verdict { guardrail: guardrail.into(), passed: true, message: message.into(), retry_after_seconds: None }
    }

    pub fn refuse(guardrail: &str, message: impl Into<String>) -> Self {
        Verdict { guardrail: guardrail.into(), passed: false, message: message.into(), retry_after_seconds: None }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::permission::Role;

    fn user(id: &str, teams: &[&str]) -> User {
        User { id: id.into(), role: Role::Member, teams: teams.iter().map(|t| t.to_string()).collect() }
    }

    fn rule(mode: ApprovalMode, approvers: Option<Approvers>) -> ApprovalRule {
        ApprovalRule { mode, approvers, policy: None, when: None, expires_after_hours: 1, notify: None }
    }

    #[test]
    fn any_needs_one_approver_who_is_not_the_requester() {
        let mut approval = Approval::new(&rule(ApprovalMode::Any, None), "h".into(), 0);
        let (ana, bo) = (user("ana", &[]), user("bo", &[]));
        let err = approval.decide("ana", &ana, true, Decision::Approve, None, "h", 1).expect_err("self");
        assert!(err.contains("own run"));
        assert_eq!(
            approval.decide("ana", &bo, false, Decision::Approve, None, "h", 1),
            Err("you are not an approver of this run".into())
        );
        assert_eq!(approval.decide("ana", &bo, true, Decision::Approve, None, "h", 1), Ok(Standing::Approved));
        assert!(approval.decide("ana", &bo, true, Decision::Approve, None, "h", 2).is_err(), "twice");
    }

    #[test]
    fn all_needs_every_listed_approver_and_a_decline_ends_it() {
        let list = Approvers { users: vec!["cy".into()], teams: vec!["sre".into()], roles: vec![] };
        let mut approval = Approval::new(&rule(ApprovalMode::All, Some(list)), "h".into(), 0);
        assert_eq!(
            approval.decide("ana", &user("cy", &[]), false, Decision::Approve, None, "h", 1),
            Ok(Standing::Waiting)
        );
        assert_eq!(
            approval.decide("ana", &user("dee", &["sre"]), false, Decision::Approve, None, "h", 2),
            Ok(Standing::Approved)
        );
        let list = Approvers { users: vec!["cy".into(), "ed".into()], ..Approvers::default() };
        let mut approval = Approval::new(&rule(ApprovalMode::All, Some(list)), "h".into(), 0);
        let declined =
            approval.decide("ana", &user("ed", &[]), false, Decision::Decline, Some("not today".into()), "h", 1);
        assert_eq!(declined, Ok(Standing::Declined("declined by ed: not today".into())));
    }

    #[test]
    fn expired_or_changed_requests_cannot_be_approved() {
        let mut approval = Approval::new(&rule(ApprovalMode::Any, None), "h".into(), 0);
        let bo = user("bo", &[]);
        assert!(
            approval
                .decide("ana", &bo, true, Decision::Approve, None, "other", 1)
                .expect_err("changed")
                .contains("changed")
        );
        assert!(
            approval
                .decide("ana", &bo, true, Decision::Approve, None, "h", 3_600_000)
                .expect_err("late")
                .contains("expired")
        );
        let mut errors = FieldErrors::default();
        rule(ApprovalMode::All, None).check("/guardrails/approval", &mut errors);
        assert_eq!(errors.0[0].path, "/guardrails/approval/approvers");
    }

    #[test]
    fn a_cron_freeze_lasts_its_duration_from_each_start() {
        // Friday 2027-01-15 08:00 UTC, in minutes.
        let friday_8 = 1_800_000_000_000 / 60_000;
        let freeze = Freeze {
            title: "weekend".into(),
            from: None,
            to: None,
            days: vec![],
            start: None,
            end: None,
            cron: Some("0 18 * * FRI".into()),
            duration_minutes: Some(64 * 60),
        };
        assert_eq!(freeze.check(), Ok(()));
        assert_eq!(freeze.frozen_until(friday_8 * 60_000), None, "before it starts");
        let friday_19 = (friday_8 + 11 * 60) * 60_000;
        let monday_10 = (friday_8 + 10 * 60 + 64 * 60) * 60_000;
        assert_eq!(freeze.frozen_until(friday_19), Some(monday_10));
        assert_eq!(freeze.frozen_until(monday_10), None, "over on Monday 10:00");
        let office = Cron::parse("*/15 9-17 * * MON-FRI").expect("parses");
        assert!(office.matches(friday_8 + 60 + 30), "Friday 09:30");
        assert!(!office.matches(friday_8 + 60 + 31));
        assert!(!office.matches(friday_8 + 24 * 60 + 60), "Saturday 09:00");
        for bad in ["* * *", "61 * * * *", "0 18 * * FUN", "*/0 * * * *"] {
            assert!(Cron::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn bounds_from_zero_overnight_windows_and_sunday_ranges() {
        let bound = Bound {
            input: "replicas".into(),
            property: None,
            max_factor_up: Some(2.0),
            max_share_down: None,
            min: None,
            max: None,
            step: None,
            override_role: None,
        };
        assert!(!bound.verdict(5.0, Some(0.0), None, None).passed, "from nothing any growth is past a factor");
        assert!(bound.verdict(0.0, Some(0.0), None, None).passed);
        let overnight = Freeze {
            title: "night".into(),
            from: None,
            to: None,
            days: vec!["FRI".into()],
            start: Some("22:00".into()),
            end: Some("06:00".into()),
            cron: None,
            duration_minutes: None,
        };
        assert!(overnight.check().is_err(), "an overnight window is refused, not silently ignored");
        assert!(Cron::parse("0 0 * * SUN-TUE").is_ok(), "a range may start on Sunday");
        let stepped = Cron::parse("0 0 */2 * MON").expect("parses");
        assert_eq!(
            stepped.days_restricted,
            (false, true),
            "a field starting with * counts as unrestricted, as in cron"
        );
    }
}
