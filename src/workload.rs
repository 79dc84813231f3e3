//! Seeded samplers for everything random in a run: arrivals, customer
//! behaviour and agent behaviour.
//!
//! Every random draw comes from a stream derived from the scenario's seed and
//! a label naming its purpose (`"arrivals/channels"`, `"replies/day-shift"`).
//! Streams are keyed by name, not position, so adding an entry point or an
//! agent group leaves the other streams' draws unchanged.

use rand::SeedableRng;
use rand_distr::{Distribution, Exp1, Gamma, LogNormal, StandardUniform};
use rand_xoshiro::Xoshiro256PlusPlus;

use crate::scenario::{CountDist, Entry, RouteRule, TimeDist};

/// The generator used for every stream: fast, small, and with a documented,
/// stable output for a given seed.
pub type Stream = Xoshiro256PlusPlus;

/// Longest sampled duration [µs] (about 31 years): keeps `now + draw` far
/// from overflow whatever the tail of a distribution does.
const MAX_DRAW_US: f64 = 1e15;

/// The stream for `label` under `seed`.
pub fn stream(seed: u64, label: &str) -> Stream {
    // FNV-1a over the label, mixed with the seed: stable across platforms
    // and Rust versions, unlike `std::hash`.
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in label.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    Stream::seed_from_u64(seed ^ h.rotate_left(17))
}

/// A uniform draw in [0, 1).
#[inline]
pub fn unit(rng: &mut Stream) -> f64 {
    StandardUniform.sample(rng)
}

/// Draws durations [µs] from a [`TimeDist`].
#[derive(Debug, Clone)]
pub enum TimeSampler {
    /// Always the same value.
    Constant(u64),
    /// Exponential with this mean [µs].
    Exponential(f64),
    /// Uniform on `[min, min + width]` [µs].
    Uniform(f64, f64),
    /// Lognormal in seconds.
    Lognormal(LogNormal<f64>),
    /// Gamma in µs.
    Gamma(Gamma<f64>),
}

impl TimeSampler {
    /// A sampler for `dist`. Panics only if `dist` was not validated.
    pub fn new(dist: &TimeDist) -> TimeSampler {
        match *dist {
            TimeDist::Constant { us } => TimeSampler::Constant(us),
            TimeDist::Exponential { mean_us } => TimeSampler::Exponential(mean_us),
            TimeDist::Uniform { min_us, max_us } => TimeSampler::Uniform(min_us, max_us - min_us),
            TimeDist::Lognormal { mu, sigma } => {
                TimeSampler::Lognormal(LogNormal::new(mu, sigma).expect("validated lognormal"))
            }
            TimeDist::Gamma { mean_us, cv } => {
                let shape = 1.0 / (cv * cv);
                TimeSampler::Gamma(Gamma::new(shape, mean_us / shape).expect("validated gamma"))
            }
        }
    }

    /// One draw [µs].
    #[inline]
    pub fn sample(&self, rng: &mut Stream) -> u64 {
        let us = match self {
            TimeSampler::Constant(us) => return *us,
            TimeSampler::Exponential(mean) => {
                let e: f64 = Exp1.sample(rng);
                e * mean
            }
            TimeSampler::Uniform(min, width) => min + width * unit(rng),
            TimeSampler::Lognormal(d) => lognormal_us(d, rng),
            TimeSampler::Gamma(d) => gamma_us(d, rng),
        };
        round_u64(us.min(MAX_DRAW_US))
    }

    /// True when every draw is 0.
    pub fn is_zero(&self) -> bool {
        matches!(self, TimeSampler::Constant(0))
    }
}

// The distributions of many instructions are drawn out of line, so that
// `TimeSampler::sample` stays small enough to inline where it is called.
#[inline(never)]
fn lognormal_us(d: &LogNormal<f64>, rng: &mut Stream) -> f64 {
    d.sample(rng) * 1e6
}

#[inline(never)]
fn gamma_us(d: &Gamma<f64>, rng: &mut Stream) -> f64 {
    d.sample(rng)
}

/// `x.round() as u64`, without the call to libm's `round` that the
/// baseline x86-64 target makes (it has no SSE4.1 rounding instruction):
/// libm's `round` and `ceil` were ~3 % of bench-chat's instructions.
/// Within `[0, 2⁵³)`, where `x − ⌊x⌋` is computed without error, the
/// conversions go through `i64`: one instruction each way where `u64`'s
/// take a dozen (x86-64 has no unsigned ones). Larger values are whole.
#[inline]
pub fn round_u64(x: f64) -> u64 {
    if (0.0..EXACT).contains(&x) {
        let whole = x as i64;
        return (whole + i64::from(x - whole as f64 >= 0.5)) as u64;
    }
    x.round() as u64
}

/// `x.ceil() as u64`, exactly, without libm's `ceil` (see [`round_u64`]).
#[inline]
pub fn ceil_u64(x: f64) -> u64 {
    if (0.0..EXACT).contains(&x) {
        let whole = x as i64;
        return (whole + i64::from((whole as f64) < x)) as u64;
    }
    x.ceil() as u64
}

/// 2⁵³: below it every `f64` converts to `i64` and back without loss.
const EXACT: f64 = 9_007_199_254_740_992.0;

/// Draws counts (≥ 1) from a [`CountDist`].
#[derive(Debug, Clone, Copy)]
pub enum CountSampler {
    /// Always the same count.
    Constant(u32),
    /// Geometric on {1, 2, …}; holds ln(1 − p) for inversion.
    Geometric(f64),
}

impl CountSampler {
    /// A sampler for `dist`.
    pub fn new(dist: &CountDist) -> CountSampler {
        match *dist {
            CountDist::Constant { value } => CountSampler::Constant(value),
            CountDist::Geometric { mean } if mean <= 1.0 => CountSampler::Constant(1),
            CountDist::Geometric { mean } => CountSampler::Geometric((1.0 - 1.0 / mean).ln()),
        }
    }

    /// One draw.
    #[inline]
    pub fn sample(&self, rng: &mut Stream) -> u32 {
        match *self {
            CountSampler::Constant(v) => v,
            CountSampler::Geometric(ln_q) => {
                // Inversion: P(N > k) = q^k, so N = 1 + floor(ln U / ln q).
                let u = 1.0 - unit(rng); // in (0, 1]
                (1.0 + (u.ln() / ln_q).floor()).min(1e6) as u32
            }
        }
    }
}

/// Draws message types by their shares (index into `MSG_TYPES`).
#[derive(Debug, Clone)]
pub struct MixSampler {
    cdf: [f64; 9],
    only: Option<u8>,
}

impl MixSampler {
    /// A sampler for the shares `mix`.
    pub fn new(mix: &[f64; 9]) -> MixSampler {
        let mut cdf = [0.0; 9];
        let mut acc = 0.0;
        for (c, w) in cdf.iter_mut().zip(mix) {
            acc += w;
            *c = acc;
        }
        let nonzero: Vec<usize> = (0..9).filter(|&i| mix[i] > 0.0).collect();
        MixSampler { cdf, only: (nonzero.len() == 1).then(|| nonzero[0] as u8) }
    }

    /// One draw; no random number is used when only one type has a share.
    #[inline]
    pub fn sample(&self, rng: &mut Stream) -> u8 {
        if let Some(t) = self.only {
            return t;
        }
        let u = unit(rng) * self.cdf[8];
        self.cdf.iter().position(|&c| u < c).unwrap_or(8) as u8
    }
}

/// The arrival times of one entry point: a Poisson process whose rate is
/// `rate × profile(t)`, drawn by thinning a process at the profile's peak
/// rate.
#[derive(Debug, Clone)]
pub struct Arrivals {
    mean_gap_us: f64,
    profile: Vec<(u64, f64)>,
    peak: f64,
    cursor: usize,
    t_us: f64,
    /// The end [µs] as a float, converted once (a u64 takes a dozen instructions).
    end_us: f64,
}

impl Arrivals {
    /// Arrivals of `entry` over `[0, end_us)`.
    pub fn new(entry: &Entry, end_us: u64) -> Arrivals {
        let peak = entry.profile.iter().map(|p| p.1).fold(0.0, f64::max);
        let peak = if entry.profile.is_empty() { 1.0 } else { peak };
        Arrivals {
            mean_gap_us: 1e6 / (entry.rate_per_s * peak),
            profile: entry.profile.clone(),
            peak,
            cursor: 0,
            t_us: 0.0,
            end_us: end_us as f64,
        }
    }

    /// The next arrival time [µs], or `None` once past the end.
    #[inline]
    pub fn next(&mut self, rng: &mut Stream) -> Option<u64> {
        if !self.profile.is_empty() {
            return self.next_thinned(rng);
        }
        let e: f64 = Exp1.sample(rng);
        self.t_us += e * self.mean_gap_us;
        (self.t_us < self.end_us).then_some(self.t_us as u64)
    }

    /// [`Arrivals::next`] under a rate profile.
    #[inline(never)]
    fn next_thinned(&mut self, rng: &mut Stream) -> Option<u64> {
        loop {
            let e: f64 = Exp1.sample(rng);
            self.t_us += e * self.mean_gap_us;
            if self.t_us >= self.end_us {
                return None;
            }
            let f = self.factor(self.t_us);
            if f >= self.peak || unit(rng) * self.peak < f {
                return Some(self.t_us as u64);
            }
        }
    }

    /// The profile's multiplier at `t` (times only grow between calls).
    fn factor(&mut self, t: f64) -> f64 {
        let p = &self.profile;
        while self.cursor + 1 < p.len() && (p[self.cursor + 1].0 as f64) <= t {
            self.cursor += 1;
        }
        let (t0, f0) = p[self.cursor];
        if (t0 as f64) > t {
            return f0; // before the first point
        }
        match p.get(self.cursor + 1) {
            None => f0,
            Some(&(t1, f1)) => f0 + (f1 - f0) * (t - t0 as f64) / (t1 - t0) as f64,
        }
    }
}

/// The seeded behaviour of one entry point's customers, the same in both
/// engines: when they arrive and how they talk.
#[derive(Debug, Clone)]
pub struct EntryBehaviour {
    /// Index of the entry's account.
    pub account: usize,
    /// Arrival times.
    pub arrivals: Arrivals,
    /// The stream of the arrival times.
    pub arrival_rng: Stream,
    /// The stream of everything else the customers draw.
    pub rng: Stream,
    /// Messages per session.
    pub messages: CountSampler,
    /// Gap after each reply.
    pub think: TimeSampler,
    /// Time before leaving the pool.
    pub patience: Option<TimeSampler>,
    /// Message types.
    pub mix: MixSampler,
    /// Share of returning customers.
    pub returning: f64,
}

impl EntryBehaviour {
    /// The behaviour of `entry`'s customers for a run seeded `seed` whose
    /// arrivals stop at `end_us`.
    pub fn new(entry: &Entry, seed: u64, end_us: u64) -> EntryBehaviour {
        EntryBehaviour {
            account: entry.account,
            arrivals: Arrivals::new(entry, end_us),
            arrival_rng: stream(seed, &format!("arrivals/{}", entry.name)),
            rng: stream(seed, &format!("customers/{}", entry.name)),
            messages: CountSampler::new(&entry.messages),
            think: TimeSampler::new(&entry.think),
            patience: entry.patience.as_ref().map(TimeSampler::new),
            mix: MixSampler::new(&entry.mix),
            returning: entry.returning,
        }
    }
}

/// An entry's `route` rules (skills routing) with their stream
/// (`route/<entry>`), shared by both engines so that they send the same
/// arrivals to the same accounts.
#[derive(Debug, Clone)]
pub struct RoutePicker {
    rules: Vec<RouteRule>,
    rng: Stream,
}

impl RoutePicker {
    /// The picker of `entry` for a run seeded `seed`; `None` when the
    /// entry has no rules (every arrival stays in its account).
    pub fn new(entry: &Entry, seed: u64) -> Option<RoutePicker> {
        (!entry.route.is_empty()).then(|| RoutePicker {
            rules: entry.route.clone(),
            rng: stream(seed, &format!("route/{}", entry.name)),
        })
    }

    /// The account of the first rule that takes this arrival, else `home`.
    /// A rule with a share below 1 draws once when it is reached.
    pub fn pick(&mut self, returning: bool, home: usize) -> usize {
        for r in &self.rules {
            if r.returning.is_some_and(|want| want != returning) {
                continue;
            }
            if r.share >= 1.0 || unit(&mut self.rng) < r.share {
                return r.account;
            }
        }
        home
    }
}

/// The customers an account has seen, for `returning` draws and
/// 优先分配给上次接待人员. A ring of the latest `capacity` customers keeps
/// memory bounded on runs of any length; a returning customer is drawn
/// uniformly from it.
#[derive(Debug, Clone)]
pub struct CustomerMemory {
    ring: Vec<LastContact>,
    capacity: u64,
    seen: u64,
}

/// A customer's latest session with the account.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LastContact {
    /// Global index of the agent, or `u32::MAX` if none yet.
    pub agent: u32,
    /// When that agent last served them [µs].
    pub at_us: u64,
    /// Their sessions open now: a customer has one session with an
    /// account at a time (as on WeCom), so one still in a session does not
    /// come back as a returning customer.
    pub open: u32,
}

impl CustomerMemory {
    /// Memory of at most `capacity` customers.
    pub fn new(capacity: u64) -> CustomerMemory {
        CustomerMemory { ring: Vec::new(), capacity: capacity.max(1), seen: 0 }
    }

    /// A new customer's id.
    pub fn new_customer(&mut self) -> u64 {
        let id = self.seen;
        self.seen += 1;
        let blank = LastContact { agent: u32::MAX, at_us: 0, open: 0 };
        if (self.ring.len() as u64) < self.capacity {
            self.ring.push(blank);
        } else {
            self.ring[(id % self.capacity) as usize] = blank;
        }
        id
    }

    /// A customer seen before, drawn uniformly from those remembered, with
    /// their last contact; `None` before the first customer.
    pub fn returning(&self, rng: &mut Stream) -> Option<(u64, LastContact)> {
        if self.seen == 0 {
            return None;
        }
        let kept = self.seen.min(self.capacity);
        let id = self.seen - kept + ((unit(rng) * kept as f64) as u64).min(kept - 1);
        Some((id, self.ring[(id % self.capacity) as usize]))
    }

    /// Record that `agent` served customer `id` at `at_us`.
    pub fn touch(&mut self, id: u64, agent: u32, at_us: u64) {
        if let Some(c) = self.remembered(id) {
            (c.agent, c.at_us) = (agent, at_us);
        }
    }

    /// Customer `id` opened a session.
    pub fn open(&mut self, id: u64) {
        if let Some(c) = self.remembered(id) {
            c.open += 1;
        }
    }

    /// A session of customer `id` is over (after all its transfers).
    pub fn close(&mut self, id: u64) {
        if let Some(c) = self.remembered(id) {
            c.open = c.open.saturating_sub(1);
        }
    }

    /// Customer `id`'s entry, unless a later customer has taken its place.
    fn remembered(&mut self, id: u64) -> Option<&mut LastContact> {
        (id + self.capacity >= self.seen).then(|| &mut self.ring[(id % self.capacity) as usize])
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn round_and_ceil_match_the_standard_library() {
        use rand::{RngExt, SeedableRng};
        let mut xs = vec![
            0.0,
            -0.0,
            0.5,
            1.5,
            2.5,
            0.49999999999999994,
            0.5000000000000001,
            -0.4,
            -0.5,
            -3.7,
            4503599627370495.5,
            4503599627370496.0,
            9007199254740993.0,
            1e15,
            1.8446744073709552e19,
            1e20,
            f64::INFINITY,
            f64::NEG_INFINITY,
            f64::NAN,
            f64::MIN_POSITIVE,
        ];
        let mut rng = rand_xoshiro::Xoshiro256PlusPlus::seed_from_u64(3);
        for _ in 0..200_000 {
            let scale = 10f64.powi(rng.random_range(0..16));
            let x: f64 = rng.random::<f64>() * scale;
            xs.extend([x, x.floor() + 0.5, x.floor()]);
        }
        for x in xs {
            assert_eq!(round_u64(x), x.round() as u64, "round({x:e})");
            assert_eq!(ceil_u64(x), x.ceil() as u64, "ceil({x:e})");
        }
    }

    use super::*;
    use rand::Rng;

    fn mean_of(s: &TimeSampler, n: usize) -> f64 {
        let mut rng = stream(3, "t");
        (0..n).map(|_| s.sample(&mut rng) as f64).sum::<f64>() / n as f64
    }

    #[test]
    fn streams_are_stable_and_distinct() {
        let a: Vec<u64> = (0..3).map(|_| 0).scan(stream(7, "a"), |r, _| Some(r.next_u64())).collect();
        let a2: Vec<u64> = (0..3).map(|_| 0).scan(stream(7, "a"), |r, _| Some(r.next_u64())).collect();
        let b: Vec<u64> = (0..3).map(|_| 0).scan(stream(7, "b"), |r, _| Some(r.next_u64())).collect();
        assert_eq!(a, a2);
        assert_ne!(a, b);
    }

    #[test]
    fn sampler_means_match_within_4_standard_errors() {
        let n = 200_000;
        // (distribution, mean, standard deviation) [µs]
        let cases = [
            (TimeDist::Exponential { mean_us: 4e6 }, 4e6, 4e6),
            (TimeDist::Uniform { min_us: 1e6, max_us: 3e6 }, 2e6, 2e6 / 12f64.sqrt()),
            (TimeDist::Gamma { mean_us: 5e6, cv: 0.5 }, 5e6, 2.5e6),
        ];
        for (dist, mean, sd) in cases {
            let got = mean_of(&TimeSampler::new(&dist), n);
            let se = sd / (n as f64).sqrt();
            assert!((got - mean).abs() < 4.0 * se, "{dist:?}: mean {got} vs {mean}");
        }
        let TimeSampler::Lognormal(_) = TimeSampler::new(&TimeDist::Lognormal { mu: 0.0, sigma: 0.5 }) else {
            panic!()
        };
        let ln = TimeDist::Lognormal { mu: 25f64.ln(), sigma: (120f64 / 25.0).ln() / 1.6448536 };
        let mut rng = stream(1, "ln");
        let s = TimeSampler::new(&ln);
        let mut draws: Vec<u64> = (0..n).map(|_| s.sample(&mut rng)).collect();
        draws.sort_unstable();
        let median = draws[n / 2] as f64 / 1e6;
        let p95 = draws[n * 95 / 100] as f64 / 1e6;
        assert!((median - 25.0).abs() < 0.5, "median {median}");
        assert!((p95 - 120.0).abs() < 4.0, "p95 {p95}");
    }

    #[test]
    fn geometric_counts_have_the_mean_and_start_at_one() {
        let s = CountSampler::new(&CountDist::Geometric { mean: 3.0 });
        let mut rng = stream(5, "g");
        let n = 200_000;
        let draws: Vec<u32> = (0..n).map(|_| s.sample(&mut rng)).collect();
        assert_eq!(*draws.iter().min().unwrap(), 1);
        let mean = draws.iter().map(|&d| d as f64).sum::<f64>() / n as f64;
        // sd of a geometric with p = 1/3 is sqrt(1 - p)/p ≈ 2.45
        assert!((mean - 3.0).abs() < 4.0 * 2.45 / (n as f64).sqrt(), "mean {mean}");
    }

    #[test]
    fn mix_follows_the_shares() {
        let mut w = [0.0; 9];
        w[0] = 0.7;
        w[1] = 0.3;
        let m = MixSampler::new(&w);
        let mut rng = stream(9, "m");
        let n = 100_000;
        let images = (0..n).filter(|_| m.sample(&mut rng) == 1).count() as f64 / n as f64;
        assert!((images - 0.3).abs() < 4.0 * (0.21f64 / n as f64).sqrt(), "{images}");
        assert_eq!(MixSampler::new(&crate::scenario::Mix::default().0).sample(&mut rng), 0);
    }

    #[test]
    fn profile_shapes_the_arrival_rate() {
        let text = r#"
name = "p"
[[account]]
name = "a"
[[agents]]
count = 1
reply_delay = "1s"
[[entry]]
scene = "web"
rate = "100/s"
profile = [{ at = "0s", factor = 1.0 }, { at = "100s", factor = 1.0 }, { at = "100s", factor = 3.0 }]
"#;
        let sc = crate::scenario::Scenario::parse(text, "p.toml").unwrap();
        let mut arr = Arrivals::new(&sc.entries[0], 200_000_000);
        let mut rng = stream(1, "arrivals");
        let mut counts = [0u32; 2];
        while let Some(t) = arr.next(&mut rng) {
            counts[(t >= 100_000_000) as usize] += 1;
        }
        // expected 10 000 and 30 000, Poisson sd 100 and 173
        assert!((counts[0] as f64 - 10_000.0).abs() < 400.0, "{counts:?}");
        assert!((counts[1] as f64 - 30_000.0).abs() < 700.0, "{counts:?}");
    }

    #[test]
    fn memory_is_bounded_and_returns_recent_customers() {
        let mut m = CustomerMemory::new(4);
        let mut rng = stream(2, "c");
        assert!(m.returning(&mut rng).is_none());
        for i in 0..10 {
            let id = m.new_customer();
            m.touch(id, i as u32, i * 10);
        }
        assert_eq!(m.ring.len(), 4);
        for _ in 0..100 {
            let (id, last) = m.returning(&mut rng).unwrap();
            assert!((6..10).contains(&id));
            assert_eq!(last.agent as u64, id);
        }
        m.touch(0, 99, 1000); // forgotten: ignored
        assert!(m.ring.iter().all(|c| c.agent != 99));
    }
}
