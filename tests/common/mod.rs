//! Helpers shared by the integration tests.
#![allow(dead_code)]

use kfsim::scenario::Scenario;
use kfsim::summary::Summary;

/// Run the scenario text once per seed, after applying `sets`.
pub fn replicate(text: &str, sets: &[&str], seeds: std::ops::Range<u64>) -> Vec<Summary> {
    seeds
        .map(|seed| {
            let mut all: Vec<String> = sets.iter().map(|s| s.to_string()).collect();
            all.push(format!("seed={seed}"));
            let sc = Scenario::parse_with(text, "test.toml", &all).expect("valid scenario");
            kfsim::sim::simulate(&sc)
        })
        .collect()
}

/// Mean and standard error of the mean.
pub fn mean_se(values: &[f64]) -> (f64, f64) {
    let n = values.len() as f64;
    let mean = values.iter().sum::<f64>() / n;
    let var = values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1.0);
    (mean, (var / n).sqrt())
}

/// Assert that the replications' mean of `metric` is within `k` standard
/// errors of `theory`, and that the standard error is below `max_se` (so the
/// check has teeth).
pub fn assert_matches(
    name: &str,
    runs: &[Summary],
    metric: impl Fn(&Summary) -> f64,
    theory: f64,
    max_se: f64,
) {
    let values: Vec<f64> = runs.iter().map(&metric).collect();
    let (mean, se) = mean_se(&values);
    let k = 4.0;
    eprintln!("{name}: sim {mean:.5} ± {se:.5} (SE), theory {theory:.5}");
    assert!(se < max_se, "{name}: standard error {se} too large for a meaningful check (limit {max_se})");
    assert!(
        (mean - theory).abs() <= k * se,
        "{name}: simulated {mean} differs from theory {theory} by more than {k} standard errors ({se}); \
         per-seed values {values:?}"
    );
}

/// Mean and standard deviation of single simulated runs of `sc` over
/// `seeds` for one metric: the spread a live run of the same model must
/// fall within.
pub fn sim_spread(
    sc: &Scenario,
    seeds: std::ops::RangeInclusive<u64>,
    metric: impl Fn(&Summary) -> f64,
) -> (f64, f64) {
    let x: Vec<f64> = seeds
        .map(|seed| {
            let mut v = sc.clone();
            v.seed = seed;
            metric(&kfsim::sim::simulate(&v))
        })
        .collect();
    let mean = x.iter().sum::<f64>() / x.len() as f64;
    let sd = (x.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (x.len() as f64 - 1.0)).sqrt();
    (mean, sd)
}
