//! The little statistics the planning and comparison tools need: normal and
//! Student-t quantiles, and confidence intervals that stay inside what is
//! possible — on the logit scale for shares (service level, abandonment,
//! occupancy, Jain's index), on the log scale for times, so that an
//! interval of a service level of 99 % cannot reach past 100 % and one of a
//! wait cannot go below 0. (An occupancy can pass 1, when agents gone off
//! line keep their sessions: its interval is then the plain one.)
//!
//! Pure functions, no state: used by `sweep`, `plan` and `compare`.

use serde::{Deserialize, Serialize};

/// The standard normal quantile: `x` with P(Z ≤ x) = `p` (Acklam's
/// rational approximation, relative error below 1.2e-9).
pub fn normal_quantile(p: f64) -> f64 {
    assert!(p > 0.0 && p < 1.0, "a quantile needs 0 < p < 1, not {p}");
    const A: [f64; 6] = [
        -3.969_683_028_665_376e1,
        2.209_460_984_245_205e2,
        -2.759_285_104_469_687e2,
        1.383_577_518_672_69e2,
        -3.066_479_806_614_716e1,
        2.506_628_277_459_239,
    ];
    const B: [f64; 5] = [
        -5.447_609_879_822_406e1,
        1.615_858_368_580_409e2,
        -1.556_989_798_598_866e2,
        6.680_131_188_771_972e1,
        -1.328_068_155_288_572e1,
    ];
    const C: [f64; 6] = [
        -7.784_894_002_430_293e-3,
        -3.223_964_580_411_365e-1,
        -2.400_758_277_161_838,
        -2.549_732_539_343_734,
        4.374_664_141_464_968,
        2.938_163_982_698_783,
    ];
    const D: [f64; 4] =
        [7.784_695_709_041_462e-3, 3.224_671_290_700_398e-1, 2.445_134_137_142_996, 3.754_408_661_907_416];
    let tail = |q: f64| {
        (((((C[0] * q + C[1]) * q + C[2]) * q + C[3]) * q + C[4]) * q + C[5])
            / ((((D[0] * q + D[1]) * q + D[2]) * q + D[3]) * q + 1.0)
    };
    if p < 0.02425 {
        tail((-2.0 * p.ln()).sqrt())
    } else if p > 1.0 - 0.02425 {
        -tail((-2.0 * (1.0 - p).ln()).sqrt())
    } else {
        let q = p - 0.5;
        let r = q * q;
        (((((A[0] * r + A[1]) * r + A[2]) * r + A[3]) * r + A[4]) * r + A[5]) * q
            / (((((B[0] * r + B[1]) * r + B[2]) * r + B[3]) * r + B[4]) * r + 1.0)
    }
}

/// The standard normal distribution function (Abramowitz–Stegun 26.2.17,
/// absolute error below 7.5e-8).
pub fn normal_cdf(x: f64) -> f64 {
    let t = 1.0 / (1.0 + 0.231_641_9 * x.abs());
    let poly = t
        * (0.319_381_530
            + t * (-0.356_563_782 + t * (1.781_477_937 + t * (-1.821_255_978 + t * 1.330_274_429))));
    let upper = (-x * x / 2.0).exp() / (2.0 * std::f64::consts::PI).sqrt() * poly;
    if x >= 0.0 { 1.0 - upper } else { upper }
}

/// Student's t quantile with `df` degrees of freedom: exact for 1 and 2,
/// Cornish–Fisher to the fourth term above (within 0.2 % of the tables
/// from 3 degrees of freedom on for p ≤ 0.999).
pub fn t_quantile(p: f64, df: u32) -> f64 {
    assert!(df > 0, "Student's t needs at least one degree of freedom");
    let n = f64::from(df);
    match df {
        1 => (std::f64::consts::PI * (p - 0.5)).tan(),
        2 => (2.0 * p - 1.0) / (2.0 * p * (1.0 - p)).sqrt(),
        _ => {
            let z = normal_quantile(p);
            let z3 = z.powi(3);
            let z5 = z.powi(5);
            let z7 = z.powi(7);
            let z9 = z.powi(9);
            z + (z3 + z) / (4.0 * n)
                + (5.0 * z5 + 16.0 * z3 + 3.0 * z) / (96.0 * n * n)
                + (3.0 * z7 + 19.0 * z5 + 17.0 * z3 - 15.0 * z) / (384.0 * n.powi(3))
                + (79.0 * z9 + 776.0 * z7 + 1482.0 * z5 - 1920.0 * z3 - 945.0 * z) / (92_160.0 * n.powi(4))
        }
    }
}

/// P(T ≤ `x`) for Student's t with `df` degrees of freedom, by inverting
/// [`t_quantile`] (bisection on p; enough for a "how sure" figure).
pub fn t_cdf(x: f64, df: u32) -> f64 {
    if x == 0.0 {
        return 0.5;
    }
    let (mut lo, mut hi) = (1e-12, 1.0 - 1e-12);
    if x >= t_quantile(hi, df) {
        return hi;
    }
    if x <= t_quantile(lo, df) {
        return lo;
    }
    for _ in 0..80 {
        let mid = (lo + hi) / 2.0;
        if t_quantile(mid, df) < x { lo = mid } else { hi = mid }
    }
    (lo + hi) / 2.0
}

/// How a metric's values are bounded, which decides the scale of its
/// confidence interval. Worked out from a metric's path, never read from
/// a file: it has no serde derive, which would read `{"share": null}` as
/// `"share"` (see `scenario::by_name_only`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scale {
    /// A share in [0, 1]: the interval is built on the logit scale.
    Share,
    /// A non-negative amount (a time, a count): the interval is built on
    /// the log scale.
    Positive,
    /// Anything else: the plain Student-t interval.
    Linear,
}

impl Scale {
    /// The scale of a summary metric, from its path.
    pub fn of(path: &str) -> Scale {
        let last = path.rsplit('.').next().unwrap_or(path);
        let shares = [
            "service_level",
            "wait_probability",
            "abandon_rate",
            "occupancy",
            "jain",
            "jain_busy",
            "gini",
            "rate",
            "error_rate",
        ];
        if shares.contains(&last) {
            Scale::Share
        } else if path.contains("_ms") || path.starts_with("http.") || path.starts_with("by_entry.") {
            Scale::Positive
        } else {
            Scale::Linear
        }
    }
}

/// A mean over independent replications with a confidence interval on the
/// metric's [`Scale`]: the interval respects the metric's bounds and is
/// skewed where the values are (a service level near 100 % has a longer
/// lower tail).
///
/// The interval is Student's t on the transformed mean with the delta
/// method: for shares `logit(m) ± t·SE/(m(1−m))`, for positive amounts
/// `ln(m) ± t·SE/m`, transformed back. All replications equal (SE 0) give
/// the point itself.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Interval {
    /// The mean.
    pub mean: f64,
    /// Lower end.
    pub lo: f64,
    /// Upper end.
    pub hi: f64,
    /// Standard error of the mean.
    pub se: f64,
    /// Number of values.
    pub n: u32,
}

fn logit(p: f64) -> f64 {
    (p / (1.0 - p)).ln()
}

fn expit(x: f64) -> f64 {
    1.0 / (1.0 + (-x).exp())
}

/// The interval at two-sided `confidence` (0.95) of `values` on `scale`;
/// `None` without values.
pub fn interval(values: &[f64], scale: Scale, confidence: f64) -> Option<Interval> {
    let n = values.len();
    if n == 0 {
        return None;
    }
    let mean = values.iter().sum::<f64>() / n as f64;
    let se = if n < 2 {
        0.0
    } else {
        let var = values.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n as f64 - 1.0);
        (var / n as f64).sqrt()
    };
    let (lo, hi) = if se == 0.0 || n < 2 {
        (mean, mean)
    } else {
        let t = t_quantile(0.5 + confidence / 2.0, n as u32 - 1);
        bounds(mean, se, t, scale)
    };
    Some(Interval { mean, lo, hi, se, n: n as u32 })
}

/// The ends of `mean ± t·se` on `scale`.
fn bounds(mean: f64, se: f64, t: f64, scale: Scale) -> (f64, f64) {
    match scale {
        Scale::Share if mean > 0.0 && mean < 1.0 => {
            let (c, s) = (logit(mean), se / (mean * (1.0 - mean)));
            (expit(c - t * s), expit(c + t * s))
        }
        // every replication at a bound: the mean is that bound, and the
        // interval reaches inwards only as far as the spread says
        Scale::Share if mean == 0.0 || mean == 1.0 => {
            ((mean - t * se).clamp(0.0, 1.0), (mean + t * se).clamp(0.0, 1.0))
        }
        // a "share" past its bound (occupancy counts the sessions agents
        // gone off line keep, and passes 1): no bound to respect, and
        // clamping put the whole interval below its own mean
        Scale::Share => (mean - t * se, mean + t * se),
        Scale::Positive if mean > 0.0 => {
            let s = se / mean;
            (mean * (-t * s).exp(), mean * (t * s).exp())
        }
        Scale::Positive => (0.0, (t * se).max(0.0)),
        Scale::Linear => (mean - t * se, mean + t * se),
    }
}

impl Interval {
    /// The statistic of "the mean is above `x`" on this interval's scale
    /// (a t value with n − 1 degrees of freedom); `None` when it cannot be
    /// formed (one value, or no spread).
    fn t_above(&self, x: f64, scale: Scale) -> Option<f64> {
        if self.n < 2 || self.se == 0.0 {
            return None;
        }
        let (m, se) = (self.mean, self.se);
        match scale {
            Scale::Share if m > 0.0 && m < 1.0 && x > 0.0 && x < 1.0 => {
                Some((logit(m) - logit(x)) / (se / (m * (1.0 - m))))
            }
            Scale::Positive if m > 0.0 && x > 0.0 => Some((m.ln() - x.ln()) / (se / m)),
            _ => Some((m - x) / se),
        }
    }

    /// How sure the replications make us that the true mean is above `x`
    /// (`above`) or below it: the one-sided confidence level at which the
    /// interval's edge reaches `x`. With no spread, 1 or 0.
    pub fn sure(&self, x: f64, above: bool, scale: Scale) -> f64 {
        match self.t_above(x, scale) {
            Some(t) => {
                let p = t_cdf(t, self.n - 1);
                if above { p } else { 1.0 - p }
            }
            None => {
                let holds = if above { self.mean > x } else { self.mean < x };
                if holds { 1.0 } else { 0.0 }
            }
        }
    }
}

/// The Wilson score interval of `x` successes in `n` trials at two-sided
/// `confidence`: inside [0, 1] by construction.
pub fn wilson(x: f64, n: f64, confidence: f64) -> Option<(f64, f64)> {
    if n <= 0.0 {
        return None;
    }
    let z = normal_quantile(0.5 + confidence / 2.0);
    let p = x / n;
    let den = 1.0 + z * z / n;
    let centre = (p + z * z / (2.0 * n)) / den;
    let half = z * (p * (1.0 - p) / n + z * z / (4.0 * n * n)).sqrt() / den;
    Some(((centre - half).max(0.0), (centre + half).min(1.0)))
}

/// The lower `p` quantile of χ² with `df` degrees of freedom: exact for 1
/// and 2, Wilson–Hilferty above (at p = 0.05 it is 7 % below the tables
/// at 3 degrees of freedom, 3 % at 4, under 1 % from 10: a bound divided
/// by it errs on the wide side).
pub fn chi2_quantile(p: f64, df: u32) -> f64 {
    assert!(p > 0.0 && p < 1.0 && df > 0, "a χ² quantile needs 0 < p < 1 and a degree of freedom");
    match df {
        1 => normal_quantile(0.5 + p / 2.0).powi(2),
        2 => -2.0 * (1.0 - p).ln(),
        _ => {
            let k = f64::from(df);
            let c = 2.0 / (9.0 * k);
            (k * (1.0 - c + normal_quantile(p) * c.sqrt()).powi(3)).max(0.0)
        }
    }
}

/// A share target's sessions over replications: how many of how many
/// landed on the share's side (on time, for a service level), and how
/// much more the replications' counts vary than independent sessions
/// would. A share's replications are not a normal sample: with a few
/// dozen sessions each, late answers come in congestion episodes, most
/// replications have none and a few have many (8 000 replications of an
/// M/M/c at 48 sessions each varied 5–10 times more than binomially).
/// The mean of such shares and its spread fall together, so the Student-t
/// interval of the replications' shares said "meets" 3–17 % of the time
/// at a target set at the true level, where 2.5 % is allowed.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Counted {
    /// Sessions on the share's side, over all replications.
    pub x: f64,
    /// Sessions, over all replications.
    pub n: f64,
    /// Replications.
    pub r: u32,
    /// Pearson's χ² of the replications' counts about the pooled share
    /// (0 at an edge).
    pub pearson: f64,
}

/// How sure the overdispersion bound is ([`Counted::dispersion`]).
pub const DISPERSION_BOUND: f64 = 0.95;

impl Counted {
    /// The counts of replications given as (share, sessions); those without
    /// sessions are left out. `None` when no replication has any.
    pub fn of(shares: &[(f64, f64)]) -> Option<Counted> {
        let counted: Vec<(f64, f64)> =
            shares.iter().filter(|(_, n)| *n > 0.0).map(|&(p, n)| (p * n, n)).collect();
        let (x, n) = counted.iter().fold((0.0, 0.0), |(x, n), (xi, ni)| (x + xi, n + ni));
        if counted.is_empty() {
            return None;
        }
        let p = x / n;
        let pearson = if p > 0.0 && p < 1.0 {
            counted.iter().map(|(xi, ni)| (xi - p * ni).powi(2) / (ni * p * (1.0 - p))).sum()
        } else {
            0.0
        };
        Some(Counted { x, n, r: counted.len() as u32, pearson })
    }

    /// The pooled share: sessions on its side over all sessions (the
    /// long-run share, which the mean of the replications' shares is not
    /// when their sizes vary).
    pub fn share(&self) -> f64 {
        self.x / self.n
    }

    /// Whether every session landed on one side.
    pub fn at_edge(&self) -> bool {
        self.x <= 0.0 || self.x >= self.n
    }

    /// A [`DISPERSION_BOUND`] upper bound on the variance of the counts
    /// over the binomial one (1 or more): Pearson's estimate over its χ²
    /// quantile. The estimate alone, from R − 1 degrees of freedom of
    /// skewed counts, is low exactly when few late answers make a target
    /// look met (with it: 5–12 % "meets" at a target at the true level;
    /// with the bound, 2.3 % at most). `None` at an edge or with one
    /// replication: the counts say nothing of it.
    pub fn dispersion(&self) -> Option<f64> {
        if self.r < 2 || self.at_edge() {
            return None;
        }
        let df = self.r - 1;
        Some((self.pearson / chi2_quantile(1.0 - DISPERSION_BOUND, df)).max(1.0))
    }

    /// How sure the counts make us that the true share is above `t`
    /// (`above`) or below it, for 0 < `t` < 1: the score test at `t`, whose
    /// variance is the threshold's binomial one times the dispersion bound
    /// (the variance at the estimate shrinks as it leaves the threshold,
    /// which made a far estimate surer than it is), against Student's t
    /// with R − 1 degrees of freedom. Where the counts cannot bound the
    /// dispersion (an edge, one replication) `edge_dispersion` stands in:
    /// at an edge the chance that every one of n/φ independent sessions
    /// lands on one side, with one replication the normal test.
    pub fn sure(&self, t: f64, above: bool, edge_dispersion: f64) -> f64 {
        debug_assert!(t > 0.0 && t < 1.0);
        let p = self.share();
        let holds = if above { p >= t } else { p <= t };
        if self.at_edge() {
            // Every session on one side is evidence for that side only:
            // however few they are, never surer of the other than even
            // (5 replications all in time, few sessions over a large
            // dispersion, were "sure" to miss a target of 99.99 %, and the
            // plan stopped: found by review)
            let all_there = (if p >= 1.0 { t } else { 1.0 - t }).powf(self.n / edge_dispersion.max(1.0));
            return if holds { (1.0 - all_there).max(0.5) } else { all_there.min(0.5) };
        }
        let (phi, below): (f64, fn(f64, u32) -> f64) = match self.dispersion() {
            Some(phi) => (phi, t_cdf),
            None => (edge_dispersion.max(1.0), |z, _| normal_cdf(z)),
        };
        let z = (self.x - t * self.n) / (phi * self.n * t * (1.0 - t)).sqrt();
        let up = below(z, self.r.saturating_sub(1).max(1));
        if above { up } else { 1.0 - up }
    }

    /// The thresholds [`Counted::sure`] cannot put on either side at
    /// two-sided `confidence`: the interval that agrees with the decision
    /// (the Student-t interval of the replications' shares could lie
    /// below a target the counts were 3.7 % sure of, beside "unclear";
    /// found by review). It inverts the same score test, so it has
    /// Wilson's form over n/φ sessions, with Student's t over the
    /// replications where they bound φ (as `sure` has); at an edge, the
    /// thresholds t for which 1 − t^(n/φ) stays short of the confidence.
    pub fn interval(&self, confidence: f64, edge_dispersion: f64) -> (f64, f64) {
        let tail = (1.0 - confidence) / 2.0;
        let p = self.share();
        if self.at_edge() {
            let reach = tail.powf(edge_dispersion.max(1.0) / self.n);
            return if p >= 1.0 { (reach, 1.0) } else { (0.0, 1.0 - reach) };
        }
        let q = match self.dispersion() {
            Some(_) => t_quantile(1.0 - tail, self.r.saturating_sub(1).max(1)),
            None => normal_quantile(1.0 - tail),
        };
        let phi = self.dispersion().unwrap_or(edge_dispersion.max(1.0));
        // (p − t)² = k·t(1 − t), solved for t
        let k = q * q * phi / self.n;
        let centre = 2.0 * p + k;
        let half = (k * (k + 4.0 * p * (1.0 - p))).sqrt();
        let den = 2.0 * (1.0 + k);
        (((centre - half) / den).max(0.0), ((centre + half) / den).min(1.0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_match_the_tables() {
        assert!((normal_quantile(0.975) - 1.959_964).abs() < 1e-6);
        assert!((normal_quantile(0.001) + 3.090_232).abs() < 1e-6);
        assert!((normal_cdf(1.959_964) - 0.975).abs() < 1e-6);
        // two-sided 95 % and one-sided 99.9 % t values from the tables
        for (df, t975, t999) in [
            (1, 12.706, 318.31),
            (2, 4.303, 22.327),
            (3, 3.182, 10.215),
            (4, 2.776, 7.173),
            (9, 2.262, 4.297),
        ] {
            assert!((t_quantile(0.975, df) - t975).abs() / t975 < 2e-3, "df {df}: {}", t_quantile(0.975, df));
            // Cornish–Fisher is coarse in the far tail at 3–4 df
            let tol = if df <= 4 { 0.06 } else { 5e-3 };
            assert!((t_quantile(0.999, df) - t999).abs() / t999 < tol, "df {df}: {}", t_quantile(0.999, df));
        }
        assert!((t_quantile(0.975, 29) - 2.045).abs() < 2e-3);
        assert!((t_cdf(2.776, 4) - 0.975).abs() < 1e-3);
        assert!((t_cdf(-2.776, 4) - 0.025).abs() < 1e-3);
    }

    #[test]
    fn share_intervals_stay_inside_0_and_1() {
        // the case of the issue: 99.1 % with a spread that a symmetric
        // interval would take to 100.4 %
        let v = [0.999, 0.985, 0.997, 0.978, 0.996];
        let i = interval(&v, Scale::Share, 0.95).unwrap();
        assert!(i.hi < 1.0 && i.lo > 0.9 && i.lo < i.mean && i.mean < i.hi, "{i:?}");
        assert!(i.hi - i.mean < i.mean - i.lo, "skewed towards the open side: {i:?}");
        let all_one = interval(&[1.0, 1.0, 1.0], Scale::Share, 0.95).unwrap();
        assert_eq!((all_one.lo, all_one.hi), (1.0, 1.0));
        let at_bound = interval(&[1.0, 0.0], Scale::Share, 0.95).unwrap();
        assert!(at_bound.lo >= 0.0 && at_bound.hi <= 1.0);
        // an occupancy past 1 (agents gone off line keep their sessions)
        // has its interval around its mean, not clamped below it
        let past = interval(&[1.04, 1.08, 1.06], Scale::Share, 0.95).unwrap();
        assert!(past.lo < 1.06 && past.hi > 1.06 && past.lo > 0.9, "{past:?}");
        assert!((past.hi - 1.06 - (1.06 - past.lo)).abs() < 1e-9, "{past:?}");
        let sure = past.sure(1.0, true, Scale::Share);
        assert!(sure > 0.97, "the mean is above 1: {sure}");
    }

    #[test]
    fn time_intervals_stay_positive() {
        let i = interval(&[10.0, 0.0, 0.0, 0.0, 1.0], Scale::Positive, 0.95).unwrap();
        assert!(i.lo > 0.0 && i.hi > i.mean, "{i:?}");
        let linear = interval(&[10.0, 0.0, 0.0, 0.0, 1.0], Scale::Linear, 0.95).unwrap();
        assert!(linear.lo < 0.0, "the plain interval would go below 0: {linear:?}");
    }

    #[test]
    fn how_sure() {
        let i = interval(&[0.80, 0.82, 0.84, 0.81, 0.83], Scale::Share, 0.95).unwrap();
        assert!(i.sure(0.8, true, Scale::Share) > 0.95);
        assert!(i.sure(0.82, true, Scale::Share) > 0.4 && i.sure(0.82, true, Scale::Share) < 0.6);
        assert!(i.sure(0.9, false, Scale::Share) > 0.99);
        let fixed = interval(&[0.5, 0.5], Scale::Share, 0.95).unwrap();
        assert_eq!(fixed.sure(0.4, true, Scale::Share), 1.0);
    }

    #[test]
    fn chi2_quantiles_match_the_tables() {
        // lower 5 % points, from the tables
        for (df, table, within) in
            [(1, 0.003_932, 1e-4), (2, 0.102_587, 1e-4), (10, 3.940, 0.01), (39, 25.695, 0.01)]
        {
            let q = chi2_quantile(0.05, df);
            assert!((q / table - 1.0).abs() < within, "{df}: {q} against {table}");
        }
        // where Wilson–Hilferty is off, it is low: a bound divided by it is wider
        for (df, table) in [(3, 0.351_8), (4, 0.710_7)] {
            let q = chi2_quantile(0.05, df);
            assert!(q < table && q > 0.9 * table, "{df}: {q} against {table}");
        }
    }

    #[test]
    fn counted_shares() {
        // four replications of 50 sessions, 40, 45, 35 and 40 on time
        let c = Counted::of(&[(0.8, 50.0), (0.9, 50.0), (0.7, 50.0), (0.8, 50.0), (0.5, 0.0)]).unwrap();
        assert_eq!((c.x, c.n, c.r), (160.0, 200.0, 4));
        assert!((c.pearson - 50.0 / 8.0).abs() < 1e-9, "{c:?}");
        // φ̂ = 6.25/3 ≈ 2.08, over the 5 % point of χ²(3)/3
        let phi = c.dispersion().unwrap();
        assert!((phi - 6.25 / chi2_quantile(0.05, 3)).abs() < 1e-9 && phi > 15.0, "{phi}");
        // below the threshold by the same count as above it: as sure either way
        let up = c.sure(0.7, true, 1.0);
        assert!(up > 0.6 && up < 0.9, "{up}");
        assert!((c.sure(0.7, false, 1.0) - (1.0 - up)).abs() < 1e-12);
        // counts that agree exactly bound the dispersion at 1: binomial
        let flat = Counted::of(&[(0.8, 50.0); 5]).unwrap();
        assert_eq!(flat.dispersion(), Some(1.0));
        let z = (200.0 - 0.75 * 250.0) / (250.0f64 * 0.75 * 0.25).sqrt();
        assert!((flat.sure(0.75, true, 1.0) - t_cdf(z, 4)).abs() < 1e-12);
        // an edge says as much as its sessions over the dispersion standing in
        let edge = Counted::of(&[(1.0, 48.0); 5]).unwrap();
        assert_eq!(edge.dispersion(), None);
        assert!((edge.sure(0.99, true, 1.0) - (1.0 - 0.99f64.powi(240))).abs() < 1e-12);
        assert!((edge.sure(0.99, true, 2.0) - (1.0 - 0.99f64.powf(120.0))).abs() < 1e-12);
        assert_eq!(edge.sure(0.99, false, 8.0), 0.5, "all in time: not surely below");
        // too few to say anything: even odds, not a miss
        assert_eq!(edge.sure(0.9999, true, 20.0), 0.5);
        let late = Counted::of(&[(0.0, 48.0); 5]).unwrap();
        assert_eq!(late.sure(0.0001, true, 20.0), 0.5);
        assert!(late.sure(0.5, true, 1.0) < 1e-50);
        assert_eq!(Counted::of(&[(0.5, 0.0)]), None);
    }

    #[test]
    fn a_counted_interval_agrees_with_how_sure_the_counts_are() {
        let cases = [
            Counted::of(&[(0.8, 50.0), (0.9, 50.0), (0.7, 50.0), (0.8, 50.0)]).unwrap(),
            Counted::of(&[(0.97, 100.0), (0.99, 100.0), (1.0, 120.0), (0.9, 80.0), (0.98, 90.0)]).unwrap(),
            Counted::of(&[(0.25, 40.0)]).unwrap(),
            Counted::of(&[(1.0, 48.0); 5]).unwrap(),
            Counted::of(&[(0.0, 48.0); 5]).unwrap(),
        ];
        for c in &cases {
            for edge in [1.0, 6.0] {
                let (lo, hi) = c.interval(0.95, edge);
                assert!(lo <= c.share() && c.share() <= hi && lo >= 0.0 && hi <= 1.0, "{c:?}: {lo} {hi}");
                for i in 1..1000 {
                    let t = f64::from(i) / 1000.0;
                    let sure = c.sure(t, true, edge);
                    // outside the interval, and only there, the counts are
                    // 97.5 % sure which side the share is on
                    if t < lo - 1e-9 {
                        assert!(sure > 0.975 - 1e-6, "{c:?} {edge}: {t} below {lo} but {sure}");
                    } else if t > hi + 1e-9 {
                        assert!(sure < 0.025 + 1e-6, "{c:?} {edge}: {t} above {hi} but {sure}");
                    } else if t > lo + 1e-9 && t < hi - 1e-9 {
                        assert!(
                            (0.025 - 1e-6..=0.975 + 1e-6).contains(&sure),
                            "{c:?} {edge}: {t} in, {sure}"
                        );
                    }
                }
            }
        }
        // a larger dispersion widens it
        let c = &cases[1];
        let (a, b) = (c.interval(0.95, 1.0), Counted { pearson: 4.0 * c.pearson, ..*c }.interval(0.95, 1.0));
        assert!(b.0 < a.0 && b.1 > a.1, "{a:?} {b:?}");
    }

    #[test]
    fn wilson_interval() {
        let (lo, hi) = wilson(99.0, 100.0, 0.95).unwrap();
        assert!(lo > 0.94 && hi < 1.0, "{lo} {hi}");
        let (lo, hi) = wilson(0.0, 10.0, 0.95).unwrap();
        assert_eq!(lo, 0.0);
        assert!(hi > 0.2 && hi < 0.35);
        assert_eq!(wilson(0.0, 0.0, 0.95), None);
    }

    #[test]
    fn scales_of_metrics() {
        assert_eq!(Scale::of("service_level"), Scale::Share);
        assert_eq!(Scale::of("fairness.kf.jain"), Scale::Share);
        assert_eq!(Scale::of("latency_ms.first_response.p95"), Scale::Positive);
        assert_eq!(Scale::of("asa_ms"), Scale::Positive);
    }
}
