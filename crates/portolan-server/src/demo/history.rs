//! The demo's past: 90 days of deployments and incidents of its services before the demo was
//! first loaded, so that a newcomer's first look at the DORA page shows trends and bands, and the
//! days since in the same vein. Each day's events come from a generator seeded by the service
//! and the day, and how far the trend has come is counted from that first load: a restart (or a
//! start days later) adds the days since and rewrites nothing.

use portolan_model::{DAY, HOUR, Millis, format_millis};
use portolan_store::KpiSample;
use serde_json::{Value, json};

use crate::services::initiatives::progress_samples;
use crate::services::scorecards::ALL_TEAMS;
use portolan_model::initiative::Progress;

pub const DAYS: i64 = 90;

/// How a service's delivery changes over the 90 days: from `start` to `end`, linearly.
struct Profile {
    service: &'static str,
    /// Deployments per day.
    rate: (f64, f64),
    /// Chance that a deployment fails.
    failure: (f64, f64),
    /// Hours from commit to deployment.
    lead_hours: (f64, f64),
}

/// Cart improves steadily (the team adopted trunk-based delivery); Products stays slow.
const PROFILES: [Profile; 2] = [
    Profile { service: "cart-service", rate: (0.5, 2.2), failure: (0.25, 0.06), lead_hours: (60.0, 5.0) },
    Profile { service: "products-service", rate: (0.35, 0.5), failure: (0.15, 0.12), lead_hours: (70.0, 50.0) },
];

/// SplitMix64: small, seedable, and the same everywhere.
struct Random(u64);

impl Random {
    fn new(service: &str, day: i64) -> Self {
        let seed = service.bytes().fold(day as u64, |h, b| h.wrapping_mul(31).wrapping_add(u64::from(b)));
        Random(seed)
    }

    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }

    fn between(&mut self, low: f64, high: f64) -> f64 {
        low + (high - low) * self.unit()
    }
}

/// The generated deployments and incidents, as entity documents, of the whole days from 90 days
/// before `first_loaded` to before `now`.
pub fn history(first_loaded: Millis, now: Millis) -> (Vec<Value>, Vec<Value>) {
    let start = first_loaded.div_euclid(DAY) - DAYS;
    let today = now.div_euclid(DAY);
    let mut deployments = Vec::new();
    let mut incidents = Vec::new();
    for profile in &PROFILES {
        for day in start..today {
            let progress = ((day - start) as f64 / DAYS as f64).min(1.0);
            let lerp = |(a, b): (f64, f64)| a + (b - a) * progress;
            let mut random = Random::new(profile.service, day);
            // A whole number of deployments whose average is the day's rate.
            let rate = lerp(profile.rate);
            let count = rate.floor() as i64 + i64::from(random.unit() < rate.fract());
            for n in 0..count {
                let id = format!("{}-{}-{n}", profile.service, format_millis(day * DAY).get(..10).unwrap_or_default());
                let at = day * DAY + (9.0 * HOUR as f64 + random.between(0.0, 8.0) * HOUR as f64) as Millis;
                let lead = (random.between(0.5, 1.5) * lerp(profile.lead_hours) * HOUR as f64) as Millis;
                let version = format!("2.{}.{n}", day - start);
                let failed = random.unit() < lerp(profile.failure);
                let reverted = failed && random.unit() < 0.5;
                let status = if failed && !reverted { "failed" } else { "succeeded" };
                deployments.push(deployment(&id, profile.service, at, Some(at - lead), &version, "canary", status));
                if !failed {
                    continue;
                }
                // Restored by a revert or a fix, within minutes or hours.
                let restored = at + (random.between(0.3, if reverted { 1.5 } else { 5.0 }) * HOUR as f64) as Millis;
                let (fix, strategy) = if reverted { ("revert", "revert") } else { ("fix", "blue-green") };
                let fix_commit = (!reverted).then_some(restored - HOUR / 2);
                let fix_id = format!("{id}-{fix}");
                deployments.push(deployment(
                    &fix_id,
                    profile.service,
                    restored,
                    fix_commit,
                    &version,
                    strategy,
                    "succeeded",
                ));
                if random.unit() < 0.6 {
                    let opened = at + (random.between(0.05, 0.2) * HOUR as f64) as Millis;
                    incidents.push(incident(&format!("inc-{id}"), profile.service, opened, restored));
                }
            }
        }
    }
    (deployments, incidents)
}

/// Each service's production-readiness level in each of the three months before the demo was first
/// loaded: a level a month until where it is today (Cart Gold, Products Silver).
const CLIMBS: [(&str, [usize; 3]); 2] = [("team-cart", [1, 2, 3]), ("team-products", [0, 1, 2])];
const GOLD: usize = 3;

/// The demo's production-readiness levels before it was first loaded.
pub fn readiness_levels(first_loaded: Millis) -> Vec<(Millis, Vec<KpiSample>)> {
    const LEVELS: [&str; 4] = ["Basic", "Bronze", "Silver", "Gold"];
    let metric = crate::services::scorecards::level_metric("service", "production-readiness");
    let start = first_loaded.div_euclid(DAY) - DAYS;
    (0..DAYS)
        .map(|d| {
            let month = (d * 3 / DAYS) as usize;
            let mut totals = [0u64; 4];
            let mut samples = Vec::new();
            for (team, levels) in CLIMBS {
                let level = levels[month];
                totals[level] += 1;
                let label = LEVELS[level].to_string();
                samples.push(KpiSample { metric: metric.clone(), team: team.into(), label, value: 1.0 });
            }
            for (level, n) in totals.iter().enumerate() {
                let label = LEVELS[level].to_string();
                samples.push(KpiSample { metric: metric.clone(), team: ALL_TEAMS.into(), label, value: *n as f64 });
            }
            ((start + d) * DAY, samples)
        })
        .collect()
}

/// The demo's initiative: every production service at Gold readiness, started 60 days before the
/// demo was first loaded and due 30 days after; half-way there (Cart made it, Products has not).
pub fn gold_initiative(first_loaded: Millis) -> Value {
    json!({
        "identifier": GOLD_INITIATIVE,
        "title": "Gold readiness for every production service",
        "description": "Every service in production meets every rule of the Gold level of Production readiness.",
        "blueprint": "service",
        "filter": {"combinator": "and", "rules": [{"property": "lifecycle", "operator": "=", "value": "production"}]},
        "goal": {"scorecard": "production-readiness", "level": "Gold"},
        "owner": "team-platform",
        "startsAt": format_millis(first_loaded - 60 * DAY),
        "targetDate": format_millis(first_loaded + 30 * DAY),
        "fixes": {"highly-available": "update_pod_count"}
    })
}

pub const GOLD_INITIATIVE: &str = "gold-readiness";

/// The initiative's burn-up from its start to the demo's first load, from the same climbs.
pub fn gold_initiative_progress(first_loaded: Millis) -> Vec<(Millis, Vec<KpiSample>)> {
    let start = first_loaded.div_euclid(DAY) - DAYS;
    (DAYS - 60..DAYS)
        .map(|d| {
            let month = (d * 3 / DAYS) as usize;
            let mut progress = Progress::default();
            for (team, levels) in CLIMBS {
                progress.add(&[team.to_string()], levels[month] >= GOLD);
            }
            ((start + d) * DAY, progress_samples(GOLD_INITIATIVE, &progress))
        })
        .collect()
}

fn deployment(
    id: &str,
    service: &str,
    at: Millis,
    commit: Option<Millis>,
    version: &str,
    strategy: &str,
    status: &str,
) -> Value {
    let mut properties =
        json!({"version": version, "strategy": strategy, "status": status, "deployedAt": format_millis(at)});
    if let Some(commit) = commit {
        properties["commitAt"] = Value::from(format_millis(commit));
    }
    json!({"identifier": id, "title": format!("{service} {version}"), "properties": properties,
           "relations": {"service": service}})
}

fn incident(id: &str, service: &str, opened: Millis, resolved: Millis) -> Value {
    json!({"identifier": id, "title": format!("{service} degraded"),
           "properties": {"status": "resolved", "urgency": "high", "openedAt": format_millis(opened),
                          "resolvedAt": format_millis(resolved)},
           "relations": {"service": service}})
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_days_give_the_same_history_and_a_later_start_only_adds_days() {
        let loaded = portolan_model::parse_millis("2026-12-07T10:00:00Z").expect("time");
        let (first, incidents) = history(loaded, loaded);
        assert_eq!(history(loaded, loaded).0, first, "generated from seeds, not the clock");
        let (later, _) = history(loaded, loaded + 5 * DAY);
        assert!(later.len() > first.len(), "the days since are added");
        assert_eq!(later[..first.len() / 2], first[..first.len() / 2], "a day is generated the same whenever it is");
        for doc in &first {
            assert!(later.contains(doc), "{} is the same", doc["identifier"]);
        }
        assert!(first.len() > 100, "about 90 days of two services: {}", first.len());
        assert!(!incidents.is_empty());
        assert!(first.iter().any(|d| d["properties"]["strategy"] == "revert"));
        assert!(first.iter().any(|d| d["properties"]["status"] == "failed"));
    }
}
