//! Queueing formulas the simulator is checked against, and that capacity
//! planning compares with: Erlang B, Erlang C (M/M/N), Erlang A (M/M/N+M,
//! exponential patience) and a waiting pool of limited size (M/M/N/N+K,
//! with or without patience).
//!
//! Units are the caller's as long as they agree: rates per minute and times
//! in minutes, or per second and seconds.

/// Erlang B blocking probability for `n` servers and offered load `a`
/// (Erlangs), by the numerically stable recursion. An infinite load blocks
/// everyone (its limit, 1: the recursion gave ∞/∞ = NaN); a load that is
/// NaN or negative has no blocking probability: NaN.
pub fn erlang_b(n: u32, a: f64) -> f64 {
    if a.is_nan() || a < 0.0 {
        return f64::NAN;
    }
    if a == f64::INFINITY {
        return 1.0;
    }
    let mut b = 1.0;
    for k in 1..=n {
        b = a * b / (f64::from(k) + a * b);
        // 0 stays 0: far more servers than load need not be walked (a
        // sweep up to 10 000 agents spent most of its report here)
        if b == 0.0 {
            break;
        }
    }
    b
}

/// Steady-state figures of a queue with `n` servers.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Erlang {
    /// P(W > 0): an arrival finds every server busy.
    pub wait_probability: f64,
    /// P(abandon) over all arrivals (0 without abandonment).
    pub abandon_rate: f64,
    /// Mean wait of the customers who are served.
    pub asa: f64,
}

/// How far below its servers a load must be to have a steady state here:
/// within rounding of them it has none (see [`erlang_c`]).
const STABLE_MARGIN: f64 = 1e-9;

/// Erlang C (M/M/n, infinite patience). `None` if unstable: a ≥ n, or
/// within rounding of it (200/h at 3 min is a = 10 in exact arithmetic and
/// 9.999999999999998 in floating point, where the formulas gave an ASA of
/// 1.4e20 ms instead of "no steady state"); an infinite λ or a μ of 0 are
/// that too. `None` as well for a rate that is NaN or negative, or a load
/// λ/μ that is no number (both rates 0 or infinite); an infinite μ is
/// its limit, nobody waiting.
pub fn erlang_c(n: u32, lambda: f64, mu: f64) -> Option<Erlang> {
    if [lambda, mu].iter().any(|x| x.is_nan() || *x < 0.0) {
        return None;
    }
    let a = lambda / mu;
    let nf = f64::from(n);
    // NaN fails this too: 0/0 and ∞/∞ have no steady state to give
    if a.is_nan() || a >= nf * (1.0 - STABLE_MARGIN) {
        return None;
    }
    let b = erlang_b(n, a);
    let c = nf * b / (nf - a * (1.0 - b));
    Some(Erlang { wait_probability: c, abandon_rate: 0.0, asa: c / (nf * mu - lambda) })
}

/// Erlang C service level: P(W ≤ t). `None` where [`erlang_c`] is, and
/// for a `t` that is NaN or negative (no wait is that short); an infinite
/// `t` is its limit, 1.
pub fn erlang_c_service_level(n: u32, lambda: f64, mu: f64, t: f64) -> Option<f64> {
    if t.is_nan() || t < 0.0 {
        return None;
    }
    let c = erlang_c(n, lambda, mu)?.wait_probability;
    // nμ − λ = ∞ (an infinite μ) at t = 0 is ∞·0: nobody waits anyway
    if c == 0.0 {
        return Some(1.0);
    }
    Some(1.0 - c * (-(f64::from(n) * mu - lambda) * t).exp())
}

/// Erlang A (M/M/n+M) with abandonment rate `theta` (mean patience 1/θ).
///
/// The chain's figures summed in closed or semi-closed form (see
/// [`waiting`]): as cheap at a patience of months with the load far past
/// the servers as at a minute, where the chain walked state by state
/// needed millions of states and gave no figure past [`MAX_STATES`]. A
/// customer who finds `k` waiting ahead passes stages `k, k−1, …, 0`;
/// stage `i` ends at rate `nμ + iθ` (a service or an abandonment ahead)
/// and the customer abandons at rate θ throughout, so P(served | k) =
/// Πᵢ rᵢ/(rᵢ+θ) and E[W | served, k] = Σᵢ 1/(rᵢ+θ). `None` where
/// [`waiting`] is: its series past [`MAX_STATES`] terms, at a λ/θ or
/// nμ/θ past some 10¹¹ (a patience of millennia at 10 calls a minute)
/// with the load within 10√(λ/θ) of the servers.
///
/// θ = 0 is Erlang C ([`erlang_c`], `None` when unstable); θ = ∞ (no
/// patience at all) is its limit, Erlang B: whoever finds every server
/// busy leaves at once. `None` for no server (nobody is served: the ASA
/// has no value), for an infinite λ or μ, and for a rate NaN or negative.
pub fn erlang_a(n: u32, lambda: f64, mu: f64, theta: f64) -> Option<Erlang> {
    if theta == 0.0 {
        return erlang_c(n, lambda, mu);
    }
    let w = open_pool(n, lambda, mu, theta)?;
    Some(Erlang { wait_probability: w.wait, abandon_rate: w.abandon, asa: w.asa })
}

/// Erlang A's service level: served within `t`, over all arrivals.
///
/// A customer who finds `k` waiting is served within `t` if it moves
/// through its `k + 1` stages before abandoning and before `t`; each
/// stage's length is exponential at its total rate `rᵢ + θ` whichever
/// event ends it, so P(served, W ≤ t | k) = Πᵢ rᵢ/(rᵢ+θ) · P(Σᵢ Exp(rᵢ+θ)
/// ≤ t). Summed over `k` that is a closed form (see [`served_within`]),
/// as cheap at a `t` of days or at 10 000 agents as at 20 s and 40: the
/// stages walked one by one needed their count times the Poisson steps to
/// `t`, and gave no figure past ten million of them.
///
/// θ = 0 and θ = ∞ as in [`erlang_a`]; an infinite `t` is its limit, the
/// share served. `None` where [`erlang_a`] is, for a `t` NaN or negative,
/// and where the closed form would take more than [`MAX_STATES`] terms
/// (see [`served_within`]: a patience of millennia, as in [`erlang_a`]).
pub fn erlang_a_service_level(n: u32, lambda: f64, mu: f64, theta: f64, t: f64) -> Option<f64> {
    if theta == 0.0 {
        return erlang_c_service_level(n, lambda, mu, t);
    }
    if t.is_nan() || t < 0.0 {
        return None;
    }
    if closed_form(n, lambda, mu, theta).is_none() {
        return chain(n, None, lambda, mu, theta, Some(t))?.service_level;
    }
    let w = open_pool(n, lambda, mu, theta)?;
    // nobody waits (10 000 agents well staffed): the share within t,
    // whatever its cost, would count for nothing
    if w.wait == 0.0 {
        return Some(1.0);
    }
    let s = served_within(n, lambda, mu, theta, t)?;
    // rounding of 1 − P(wait) + P(served after waiting)·s put 1 past 1
    Some((1.0 - w.wait + w.served * s).min(1.0))
}

/// Erlang A's figures over all arrivals, θ > 0 and no pool limit.
struct Open {
    wait: f64,
    abandon: f64,
    /// Served after waiting: P(wait) − P(abandon), without its
    /// cancellation far past the servers.
    served: f64,
    asa: f64,
}

/// c = nμ/θ + 1 and x = λ/θ of [`waiting`], for the inputs it is for:
/// `None` for those it has no use for (no arrivals, no patience at all, a
/// rate NaN, negative or infinite, no server) and a θ so small that c or
/// x is infinite. Those are the chain's, as before.
fn closed_form(n: u32, lambda: f64, mu: f64, theta: f64) -> Option<(f64, f64)> {
    let plain = [lambda, mu, theta].iter().all(|x| x.is_finite() && *x > 0.0) && n > 0;
    let (c, x) = (f64::from(n) * mu / theta + 1.0, lambda / theta);
    (plain && c.is_finite() && x.is_finite()).then_some((c, x))
}

/// [`waiting`] with Erlang B's E = B(n, λ/μ) for the servers, or the
/// chain where [`closed_form`] is `None`.
fn open_pool(n: u32, lambda: f64, mu: f64, theta: f64) -> Option<Open> {
    let Some((c, x)) = closed_form(n, lambda, mu, theta) else {
        let q = chain(n, None, lambda, mu, theta, None)?;
        let (wait, abandon) = (q.wait_probability, q.abandon_rate);
        return Some(Open { wait, abandon, served: wait - abandon, asa: q.asa });
    };
    let w = waiting(c, x)?;
    let e = erlang_b(n, lambda / mu);
    // P(wait) = S·E/(1 + (S − 1)E), S the waiting states' weight over π_n
    let wait = e / (w.inv_s + e * (1.0 - w.inv_s));
    let served = wait * w.served;
    Some(Open {
        wait,
        abandon: wait * w.abandon,
        served,
        // nobody served after waiting (E = 0): nobody waits at all
        asa: if served > 0.0 { served * w.served_wait / theta / (1.0 - wait + served) } else { 0.0 },
    })
}

/// Of the customers of Erlang A who find every server busy: the share
/// served, the share that abandons, θ times the mean wait of the served,
/// and 1/S (S as in [`waiting`]).
struct Waiting {
    inv_s: f64,
    served: f64,
    abandon: f64,
    served_wait: f64,
}

/// How far past its servers, in standard deviations of a Poisson(λ/θ),
/// a load is summed by the closed form of [`waiting`] rather than its
/// series: there the upper tail Q(c, λ/θ) it leaves out is below e^{−K²/2}
/// (Chernoff), 2e-22.
const OVERLOAD_SDS: f64 = 10.0;

/// The waiting states of Erlang A, with c = nμ/θ + 1 and x = λ/θ. Past
/// π_n the chain's weights are rₖ = xᵏ/(c)ₖ, (c)ₖ the rising factorial,
/// and with tᵢ = xⁱ/((c+1)⋯(c+i)) (the series of the regularized lower
/// incomplete gamma function P(c, x) = D(c, x)·Σtᵢ, see [`ln_gamma_p`]):
///
/// * S = Σrₖ = 1 + xT/c, T = Σtᵢ;
/// * served: Σrₖ·(c−1)/(c+k) = (c−1)T/c, over S;
/// * abandoned: Σrₖ·(k+1)/(c+k) = Σ(i+1)tᵢ/c, over S (the same, 1 − the
///   served share, without the cancellation of a tiny abandonment);
/// * θ·the mean wait of the served, Σ 1/(c+j−1) over the k + 1 stages:
///   1/c + Σtᵢ·Hᵢ/T, Hᵢ = Σ_{j≤i} 1/(c+j).
///
/// These are Mandelbaum and Zeltyn's J = ∫₀^∞ exp(x(1 − e^{−θv}) −
/// nμv)dv (S = nμJ) and its moments: with u = e^{−θv}, a gamma(c, x)
/// variable U truncated to U < 1, θ·the served's wait E[−ln U | U < 1] =
/// ln x − ψ(c) − ∂_c ln P(c, x). Summed term by term up to [`MAX_STATES`]
/// terms (`None` past them) while x is within [`OVERLOAD_SDS`] √x of c;
/// past that the terms peak near k = x − c, millions of them at a patience
/// of months, and P(c, x) is 1 to 2e-22: T = P/D from [`ln_gamma_p`] and
/// θ·the mean wait ln x − ψ(c).
fn waiting(c: f64, x: f64) -> Option<Waiting> {
    let a = c - 1.0; // nμ/θ
    if x - c > OVERLOAD_SDS * x.sqrt() {
        // 1/T: D/P, underflowing to 0 far past the servers
        let inv_t = (ln_poisson(c, x) - ln_gamma_p(c, x)?).exp();
        let whole = c * inv_t + x; // c·S/T
        return Some(Waiting {
            inv_s: c * inv_t / whole,
            served: a / whole,
            abandon: (c * inv_t + (x - a)) / whole,
            served_wait: ((x - c) / c).ln_1p() + ln_over_digamma(c),
        });
    }
    let (mut t, mut h) = (1.0, 0.0);
    let (mut sum_t, mut sum_k, mut sum_h) = (1.0, 1.0, 0.0);
    let mut i = 0.0;
    loop {
        i += 1.0;
        t *= x / (c + i);
        h += 1.0 / (c + i);
        sum_t += t;
        sum_k += (i + 1.0) * t;
        sum_h += h * t;
        // past the peak the rest is below a geometric tail of ratio r
        let r = x / (c + i + 1.0);
        if r < 1.0 {
            let tail = t / (1.0 - r) * f64::EPSILON.recip();
            if tail * (i + 2.0) <= sum_k && tail * (h + 1.0 / c) <= sum_h + sum_t / c {
                break;
            }
        }
        if i > MAX_STATES as f64 {
            return None;
        }
    }
    let s = 1.0 + x * sum_t / c;
    Some(Waiting {
        inv_s: 1.0 / s,
        served: a * sum_t / c / s,
        abandon: sum_k / c / s,
        served_wait: 1.0 / c + sum_h / sum_t,
    })
}

/// ln c − ψ(c) for c ≥ 1 (ψ the digamma function): its asymptotic series
/// from 10 up, to 1e-16 there, and ψ(c) = ψ(c + 1) − 1/c below.
fn ln_over_digamma(c: f64) -> f64 {
    let (mut z, mut shift) = (c, 0.0);
    while z < 10.0 {
        shift += 1.0 / z - (1.0 / z).ln_1p();
        z += 1.0;
    }
    let r = 1.0 / (z * z);
    shift + 0.5 / z + r * (1.0 / 12.0 - r * (1.0 / 120.0 - r * (1.0 / 252.0 - r / 240.0)))
}

/// Of the customers of Erlang A who wait and are served, the share served
/// within `t` (θ > 0).
///
/// The wait an arrival would have if it never abandoned, V, has the
/// density f(x) ∝ exp(λ(1 − e^{−θx})/θ − nμx) for x > 0 (M/M/n+G with
/// exponential patience, Mandelbaum and Zeltyn's summary of M/M/n+G), and
/// a customer is served if its patience outlasts V, with probability
/// e^{−θx}. With u = e^{−θx} the served ones' ∫₀ᵗ f(x)e^{−θx}dx is, up to
/// a factor, γ(c, λ/θ) − γ(c, qλ/θ) with c = nμ/θ + 1 and q = e^{−θt}
/// (γ the lower incomplete gamma function), and their whole ∫₀^∞ is
/// γ(c, λ/θ): the share is 1 − P(c, qλ/θ)/P(c, λ/θ), P the regularized
/// γ, taken in logarithms since both underflow for a load well under the
/// servers. `None` when P takes more than [`MAX_STATES`] terms (patience
/// of centuries at a load at the servers, where the chain is too long to
/// walk anyway).
fn served_within(n: u32, lambda: f64, mu: f64, theta: f64, t: f64) -> Option<f64> {
    if t <= 0.0 {
        return Some(0.0);
    }
    let c = f64::from(n) * mu / theta + 1.0;
    let x = lambda / theta;
    if !(c.is_finite() && x.is_finite()) {
        return None;
    }
    let ratio = ln_gamma_p(c, x * (-theta * t).exp())? - ln_gamma_p(c, x)?;
    Some(-ratio.exp_m1())
}

/// ln P(a, y), P the regularized lower incomplete gamma function (a ≥ 1,
/// y ≥ 0): its series below y = a + 1, and 1 − Q with Q's continued
/// fraction above (Numerical Recipes §6.2, with the modified Lentz
/// method), each within [`MAX_STATES`] terms or `None`; ln 0 = −∞ at y = 0.
fn ln_gamma_p(a: f64, y: f64) -> Option<f64> {
    if y <= 0.0 {
        return Some(f64::NEG_INFINITY);
    }
    let ln_d = ln_poisson(a, y);
    if y < a + 1.0 {
        // P = D·Σ_{i≥0} yⁱ/((a+1)⋯(a+i)), every term below the one before
        let (mut term, mut sum, mut i) = (1.0, 1.0, 0.0);
        while term > sum * f64::EPSILON {
            i += 1.0;
            term *= y / (a + i);
            sum += term;
            if i > MAX_STATES as f64 {
                return None;
            }
        }
        return Some(ln_d + sum.ln());
    }
    // Q = a·D·(1/(y+1−a− 1(1−a)/(y+3−a− 2(2−a)/(y+5−a− ⋯))))
    let tiny = f64::MIN_POSITIVE / f64::EPSILON;
    let mut b = y + 1.0 - a;
    let (mut c, mut d) = (1.0 / tiny, 1.0 / b);
    let mut h = d;
    for i in 1..=MAX_STATES {
        let i = i as f64;
        let an = -i * (i - a);
        b += 2.0;
        d = an * d + b;
        if d.abs() < tiny {
            d = tiny;
        }
        c = b + an / c;
        if c.abs() < tiny {
            c = tiny;
        }
        d = 1.0 / d;
        let step = d * c;
        h *= step;
        if (step - 1.0).abs() <= f64::EPSILON {
            return Some((-(ln_d + a.ln()).exp() * h).ln_1p());
        }
    }
    None
}

/// ln D(a, y) = ln(e^{−y} yᵃ / Γ(a + 1)), the Poisson probability of `a`
/// at mean `y` for a real `a`. For a large `a` its terms are each near
/// a ln a and cancel; taken as −a(d − ln(1 + d)) − ½ln(2πa) − the
/// Stirling series, d = (y − a)/a, it keeps its digits.
fn ln_poisson(a: f64, y: f64) -> f64 {
    if a < 10.0 {
        return -y + a * y.ln() - ln_gamma(a + 1.0);
    }
    let d = (y - a) / a;
    -a * (d - d.ln_1p()) - 0.5 * (std::f64::consts::TAU * a).ln() - stirling(a)
}

/// ln Γ(z) for z > 0, by Stirling's series from 10 up.
fn ln_gamma(mut z: f64) -> f64 {
    let mut shift = 0.0;
    while z < 10.0 {
        shift += z.ln();
        z += 1.0;
    }
    (z - 0.5) * z.ln() - z + 0.5 * std::f64::consts::TAU.ln() + stirling(z) - shift
}

/// ln Γ(z) − ((z − ½)ln z − z + ½ln 2π): Stirling's series, to 1e-14 from
/// z = 10 up.
fn stirling(z: f64) -> f64 {
    let r = 1.0 / (z * z);
    (1.0 / 12.0 - r * (1.0 / 360.0 - r * (1.0 / 1260.0 - r * (1.0 / 1680.0 - r / 1188.0)))) / z
}

/// Steady-state figures of a queue whose waiting pool holds at most `k`
/// (`queue_limit`): M/M/n/n+k, or M/M/n/n+k+M with abandonment.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Limited {
    /// P(not assigned on arrival): waited, or found the pool full.
    pub wait_probability: f64,
    /// Abandoned, over all arrivals.
    pub abandon_rate: f64,
    /// Refused because the pool was full, over all arrivals.
    pub reject_rate: f64,
    /// Mean wait of the customers who are served.
    pub asa: f64,
    /// Served within `t`, over all arrivals (`None` for a `t` NaN or
    /// negative, or, with patience, a pool that fills and whose stages
    /// are too long to compute: see [`stages_within`]).
    pub service_level: Option<f64>,
}

/// The queue with `n` servers, a pool of `k` places and abandonment rate
/// `theta` (0: nobody leaves), and its service level at `t`. Stable at
/// every load: past `n + k` arrivals are refused. `None` when the chain
/// would need more than ten million states to reach its negligible tail,
/// and for the inputs [`erlang_a`] refuses (θ = ∞ is Erlang B's limit:
/// who finds every server busy abandons at once, or with `k = 0` is
/// refused).
///
/// A customer who finds `m < k` waiting waits as in [`erlang_a`]; without
/// abandonment the wait is the sum of `m + 1` exponential stages of rate
/// `nμ`, so P(W ≤ t | m) is an Erlang (gamma) distribution function. With
/// abandonment, a pool the chain never fills is Erlang A's (its service
/// level the closed form of [`served_within`]); one it fills is walked
/// stage by stage ([`stages_within`]), which can be too long: no service
/// level then.
pub fn limited_pool(n: u32, k: u32, lambda: f64, mu: f64, theta: f64, t: f64) -> Option<Limited> {
    chain(n, Some(k), lambda, mu, theta, Some(t))
}

/// Most steps × stages [`stages_within`] walks (a few hundredths of a
/// second: a sweep asks it at every point).
const MAX_UNIFORMIZED: usize = 10_000_000;

/// P(Σ_{i ≤ m} Exp(rates[i]) ≤ t) for every `m`, by uniformization: the
/// stages as a chain that, at Poisson(Λ) ticks with Λ the largest rate,
/// leaves stage `i` with probability rᵢ/Λ. Exact but for the Poisson tail
/// left out (ten standard deviations past Λt); `None` when the steps
/// times the stages pass [`MAX_UNIFORMIZED`].
fn stages_within(rates: &[f64], t: f64) -> Option<Vec<f64>> {
    let big = rates.iter().copied().fold(0.0, f64::max);
    if rates.is_empty() || t <= 0.0 || big <= 0.0 {
        return Some(vec![0.0; rates.len()]);
    }
    let x = big * t;
    let steps = (x + 10.0 * x.sqrt() + 20.0).ceil();
    if steps * rates.len() as f64 > MAX_UNIFORMIZED as f64 {
        return None;
    }
    let leave: Vec<f64> = rates.iter().map(|r| r / big).collect();
    // done[m]: all of stages m..0 passed within the ticks so far
    let mut done = vec![0.0; rates.len()];
    let mut within = vec![0.0; rates.len()];
    let mut ln_p = -x; // ln P(N = 0 ticks)
    for tick in 0..steps as usize {
        let p = ln_p.exp();
        if p > 0.0 {
            within.iter_mut().zip(&done).for_each(|(w, d)| *w += p * d);
        }
        // from the top, so that done[m - 1] is still the previous tick's
        for m in (0..rates.len()).rev() {
            let next = if m == 0 { 1.0 } else { done[m - 1] };
            done[m] = leave[m] * next + (1.0 - leave[m]) * done[m];
        }
        ln_p += x.ln() - ((tick + 1) as f64).ln();
    }
    Some(within)
}

/// Most states a chain is walked over: the tail of a pool of a billion
/// places that is nearly always full would take gigabytes.
const MAX_STATES: usize = 10_000_000;

/// The birth–death chain on customers in the system (birth λ below the
/// capacity `n + cap`, death `min(j, n)μ + max(j − n, 0)θ`), walked to the
/// capacity or, without one, to where its weights are negligible; `None`
/// past [`MAX_STATES`]. PASTA: an arrival sees the stationary distribution.
/// θ = ∞ is Erlang B's limit; `None` for a rate NaN or negative, λ or μ
/// infinite, or, with arrivals, no server. No service level for a `t`
/// NaN or negative.
fn chain(n: u32, cap: Option<u32>, lambda: f64, mu: f64, theta: f64, sl_t: Option<f64>) -> Option<Limited> {
    if [lambda, mu, theta].iter().any(|x| x.is_nan() || *x < 0.0) || lambda.is_infinite() || mu.is_infinite()
    {
        return None;
    }
    let sl_t = sl_t.filter(|t| *t >= 0.0);
    // Nobody arrives (a bot resolving every session): the chain stays at 0.
    // Walked, every weight past it would be ln 0 = −∞, never 50 below π_n's.
    if lambda == 0.0 {
        let (wait_probability, abandon_rate, reject_rate, asa) = (0.0, 0.0, 0.0, 0.0);
        let service_level = sl_t.map(|_| 1.0);
        return Some(Limited { wait_probability, abandon_rate, reject_rate, asa, service_level });
    }
    // with nobody to serve, the ASA of the served is 0/0
    if n == 0 || mu == 0.0 {
        return None;
    }
    // No patience at all: whoever finds every server busy leaves at once,
    // as Erlang B refuses them (walked, the first stage's rate was nμ + 0·∞)
    if theta == f64::INFINITY {
        let b = erlang_b(n, lambda / mu);
        let pool = cap != Some(0);
        return Some(Limited {
            wait_probability: b,
            abandon_rate: if pool { b } else { 0.0 },
            reject_rate: if pool { 0.0 } else { b },
            asa: 0.0,
            service_level: sl_t.map(|_| 1.0 - b),
        });
    }
    let nf = f64::from(n);
    // log-weights avoid overflow of A^j/j! for large n
    let mut logw = Vec::new();
    let mut lw = 0.0_f64;
    logw.push(lw);
    for j in 1..=n {
        lw += (lambda / mu).ln() - f64::from(j).ln();
        logw.push(lw);
    }
    let mut k = 0u32;
    while cap.is_none_or(|c| k < c) {
        k += 1;
        lw += lambda.ln() - (nf * mu + f64::from(k) * theta).ln();
        logw.push(lw);
        // stop once the weights are negligible and falling geometrically
        if lw < logw[n as usize] - 50.0 && lambda < nf * mu + f64::from(k) * theta {
            break;
        }
        // Without a capacity too: a chain cut before its tail is negligible
        // gives the cut chain's figures, far off when the pool piles up past
        // the cut (found by probing, see the tests)
        if logw.len() > MAX_STATES {
            return None;
        }
    }
    // a chain cut before its capacity refuses nobody it could measure
    let full = cap.is_some_and(|c| k == c);
    let max = logw.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let w: Vec<f64> = logw.iter().map(|l| (l - max).exp()).collect();
    let total: f64 = w.iter().sum();
    let pi = |j: usize| w[j] / total;
    let reject_rate = if full { pi(w.len() - 1) } else { 0.0 };
    let mut wait_probability = 0.0;
    let mut mean_queue = 0.0;
    let mut served = 0.0;
    let mut served_wait = 0.0;
    let mut within = 0.0;
    // An arrival that finds j = n + k in the system has k waiting ahead.
    let (mut p_serve, mut e_wait) = (1.0, 0.0);
    // with abandonment and a pool that never fills, the closed form (see
    // [`served_within`]); with one that fills, P(the stages from k ahead
    // pass within t) for every k, each stage at rate r + θ (see
    // [`erlang_a_service_level`]); Some(None): asked, but too long to compute
    let open = theta > 0.0 && !full;
    let staged = sl_t.filter(|_| theta > 0.0 && !open).map(|t| {
        let rates: Vec<f64> =
            (n as usize..w.len()).map(|j| nf * mu + (j - n as usize + 1) as f64 * theta).collect();
        stages_within(&rates, t)
    });
    // P(W ≤ t) for m + 1 stages of rate nμ: 1 − Σ_{i ≤ m} e^{−x} xⁱ/i!, x = nμt
    let x = sl_t.map_or(0.0, |t| nf * mu * t);
    let (mut poisson_cdf, mut ln_fact) = (0.0, 0.0);
    for j in (n as usize)..w.len() {
        let ahead = (j - n as usize) as f64;
        wait_probability += pi(j);
        mean_queue += ahead * pi(j);
        if full && j == w.len() - 1 {
            break; // refused: the pool is full
        }
        let r = nf * mu + ahead * theta;
        // extend the product/sum by the stage the newcomer starts in
        p_serve *= r / (r + theta);
        e_wait += 1.0 / (r + theta);
        served += pi(j) * p_serve;
        served_wait += pi(j) * p_serve * e_wait;
        if let Some(staged) = &staged {
            within += staged.as_ref().map_or(0.0, |s| pi(j) * p_serve * s[j - n as usize]);
        } else if sl_t.is_some() && theta == 0.0 {
            if ahead > 0.0 {
                ln_fact += ahead.ln();
            }
            // at t = 0 every wait is longer: the sum is 1 from its first term
            poisson_cdf += if x > 0.0 {
                (-x + ahead * x.ln() - ln_fact).exp()
            } else {
                f64::from(u8::from(ahead == 0.0))
            };
            within += pi(j) * (1.0 - poisson_cdf).max(0.0);
        }
    }
    let p_immediate: f64 = (0..n as usize).map(pi).sum();
    let abandon_rate = theta * mean_queue / lambda;
    let service_level = match sl_t {
        // rounding of the normalization put 1 − 1e-15 + 2e-15 past 1
        Some(t) if open => {
            served_within(n, lambda, mu, theta, t).map(|s| (p_immediate + served * s).min(1.0))
        }
        Some(_) if matches!(staged, Some(None)) => None,
        Some(_) => Some(p_immediate + within),
        None => None,
    };
    Some(Limited {
        wait_probability,
        abandon_rate,
        reject_rate,
        asa: served_wait / (p_immediate + served),
        service_level,
    })
}

/// What queueing theory predicts for a scenario that is a plain Erlang
/// case, in the units of `summary.json`.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Prediction {
    /// `erlang_b`, `erlang_c`, `erlang_a`, or with a limited waiting pool
    /// `erlang_c_limited` (M/M/n/n+k) and `erlang_a_limited` (with patience).
    pub model: String,
    /// Servers: agents × slots.
    pub servers: u32,
    /// P(not assigned on arrival).
    pub wait_probability: f64,
    /// Mean wait of answered sessions [ms].
    pub asa_ms: f64,
    /// Abandoned share (refusals are `reject_rate`: Erlang B has none
    /// abandoning, as nobody waits).
    pub abandon_rate: f64,
    /// Refused for a full pool, over all arrivals (absent from files
    /// written before limited pools had a prediction: 0).
    #[serde(default)]
    pub reject_rate: f64,
    /// Answered within T / offered (`None` when too long to compute: with
    /// patience, a pool that fills and whose stages take more than ten
    /// million steps, see [`limited_pool`]).
    pub service_level: Option<f64>,
    /// Busy slot share.
    pub occupancy: f64,
}

impl Prediction {
    /// Whether theory gives the summary metric `path` at all (a service
    /// level may still have no figure at one staffing: see [`predict`]).
    pub fn gives(path: &str) -> bool {
        matches!(path, "wait_probability" | "asa_ms" | "abandon_rate" | "service_level" | "occupancy")
    }

    /// The predicted value of a summary metric, if theory gives it.
    pub fn metric(&self, path: &str) -> Option<f64> {
        match path {
            "wait_probability" => Some(self.wait_probability),
            "asa_ms" => Some(self.asa_ms),
            "abandon_rate" => Some(self.abandon_rate),
            "service_level" => self.service_level,
            "occupancy" => Some(self.occupancy),
            _ => None,
        }
    }
}

/// The Erlang prediction for `sc`, when it is a plain Erlang case: one
/// account; Poisson arrivals without profile; one message per session;
/// exponential reply time, the same for every agent, no wrap-up, no shifts,
/// no slowdown (so k slots are k servers); patience none or exponential, the
/// same on every entry; waiting pool unbounded (Erlang C or A), off
/// (`queue_limit = 0`, Erlang B) or limited (M/M/n/n+k, with or without
/// patience). A bot in front resolving a share p, with
/// any reply time and turns, is a delay without a queue (M/G/∞), whose
/// output is Poisson: people see λ·(1−p). `None` otherwise (transfers
/// included), when Erlang C is unstable, or when the chain is too long to
/// walk (a huge pool, or patience so long that the pool holds millions).
pub fn predict(sc: &crate::scenario::Scenario) -> Option<Prediction> {
    let Plain { servers, lambda, mu, patience_us: patience } = plain(sc)?;
    let t = sc.service_level_us as f64 / 1e6;
    let n = f64::from(servers);
    let (model, wait_probability, asa_s, abandon_rate, reject_rate, service_level) =
        match (sc.accounts[0].queue_limit, patience) {
            (Some(0), _) => {
                let b = erlang_b(servers, lambda / mu);
                // nobody waits, so nobody abandons: a refusal is not an
                // abandonment (found by probing: sweep.json said 12 %
                // abandoned where the simulation, rightly, said 0)
                ("erlang_b", b, 0.0, 0.0, b, Some(1.0 - b))
            }
            (Some(k), p) => {
                let theta = p.map_or(0.0, |p| 1e6 / p);
                let l = limited_pool(servers, k, lambda, mu, theta, t)?;
                let model = if p.is_some() { "erlang_a_limited" } else { "erlang_c_limited" };
                (model, l.wait_probability, l.asa, l.abandon_rate, l.reject_rate, l.service_level)
            }
            (None, None) => {
                let c = erlang_c(servers, lambda, mu)?;
                let sl = erlang_c_service_level(servers, lambda, mu, t);
                ("erlang_c", c.wait_probability, c.asa, 0.0, 0.0, sl)
            }
            (None, Some(p)) => {
                let a = chain(servers, None, lambda, mu, 1e6 / p, Some(t))?;
                ("erlang_a", a.wait_probability, a.asa, a.abandon_rate, 0.0, a.service_level)
            }
        };
    let lost = abandon_rate + reject_rate;
    Some(Prediction {
        model: model.into(),
        servers,
        wait_probability,
        asa_ms: asa_s * 1e3,
        abandon_rate,
        reject_rate,
        service_level,
        occupancy: lambda * (1.0 - lost) / mu / n,
    })
}

/// What theory needs of a plain Erlang case (see [`predict`]).
struct Plain {
    servers: u32,
    /// Arrivals reaching people, per second.
    lambda: f64,
    /// Services per second of one server.
    mu: f64,
    /// Mean of the exponential patience, if any [µs].
    patience_us: Option<f64>,
}

/// A queue with no patience and no bound on the waiting pool whose offered
/// load is at or above its servers: it has no steady state, its pool grows
/// for as long as it runs and its figures (ASA, service level) follow the
/// run's length. The warning to give. A plain Erlang case but for the
/// handle times, whose distribution does not matter (λ·E[S] ≥ c for any:
/// an M/D/1 at ρ = 1.2 ran unwarned, found by probing); groups may differ
/// in their mean.
pub fn unstable(sc: &crate::scenario::Scenario) -> Option<String> {
    use crate::scenario::CountDist;
    if sc.accounts.len() != 1 || sc.accounts[0].queue_limit.is_some() {
        return None;
    }
    let (mut servers, mut capacity) = (0u64, 0.0); // slots, and sessions per second they end
    for g in &sc.groups {
        let steady = g.transfer.is_none() && g.wrap_up.is_zero() && g.online.is_empty();
        if !steady || (g.slowdown != 0.0 && g.max_concurrent > 1) {
            return None;
        }
        let slots = u64::from(g.count) * u64::from(g.max_concurrent);
        servers += slots;
        capacity += slots as f64 * 1e6 / g.reply_delay.mean_us();
    }
    let mut lambda = 0.0; // per second, reaching people
    for e in &sc.entries {
        let flat = e.profile.is_empty() || e.profile.iter().all(|p| p.1 == 1.0);
        if !flat || e.messages != (CountDist::Constant { value: 1 }) || e.patience.is_some() {
            return None;
        }
        lambda += e.rate_per_s;
    }
    if let Some(bot) = &sc.accounts[0].bot {
        lambda *= 1.0 - bot.resolve;
    }
    // in Erlangs: λ·E[S] with one mean, λ over the servers' mean rate with several
    let load = lambda / capacity * servers as f64;
    // as unstable as Erlang C takes it: a load within rounding of the
    // servers had neither a prediction nor this warning (found by probing)
    (lambda > 0.0 && lambda >= capacity * (1.0 - STABLE_MARGIN)).then(|| {
        format!(
            "the offered load is {load:.2} Erlangs for {servers} servers (agents × max_concurrent), with no \
             patience and no queue_limit: the waiting pool grows without bound, so the waits, ASA and \
             service level depend on the run's length, not on the staffing alone"
        )
    })
}

/// The plain Erlang case `sc` is, if it is one (see [`predict`]).
fn plain(sc: &crate::scenario::Scenario) -> Option<Plain> {
    use crate::scenario::{CountDist, TimeDist};
    if sc.accounts.len() != 1 || sc.groups.iter().any(|g| g.transfer.is_some()) {
        return None;
    }
    let mut mean_us = None;
    let mut servers = 0u32;
    for g in &sc.groups {
        let TimeDist::Exponential { mean_us: m } = g.reply_delay else { return None };
        if mean_us.is_some_and(|x| x != m) || !g.wrap_up.is_zero() || !g.online.is_empty() {
            return None;
        }
        if g.slowdown != 0.0 && g.max_concurrent > 1 {
            return None;
        }
        mean_us = Some(m);
        servers = servers.checked_add(g.count.checked_mul(g.max_concurrent)?)?;
    }
    let mut patience = None;
    let mut lambda = 0.0; // per second
    for (i, e) in sc.entries.iter().enumerate() {
        let flat = e.profile.is_empty() || e.profile.iter().all(|p| p.1 == 1.0);
        if !flat || e.messages != (CountDist::Constant { value: 1 }) {
            return None;
        }
        let p = match e.patience {
            None => None,
            Some(TimeDist::Exponential { mean_us }) => Some(mean_us),
            Some(_) => return None,
        };
        if i > 0 && p != patience {
            return None;
        }
        patience = p;
        lambda += e.rate_per_s;
    }
    if let Some(bot) = &sc.accounts[0].bot {
        lambda *= 1.0 - bot.resolve;
    }
    Some(Plain { servers, lambda, mu: 1e6 / mean_us?, patience_us: patience })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The table in shared/reference/queueing.md, as a cross-check of the
    /// formulas (λ = 10/min, AHT 4 min).
    #[test]
    fn reference_values() {
        let c = erlang_c(44, 10.0, 0.25).unwrap();
        assert!((c.wait_probability - 0.43170).abs() < 5e-5, "{c:?}");
        assert!((c.asa * 60.0 - 25.90).abs() < 5e-3, "{c:?}");
        let sl = erlang_c_service_level(44, 10.0, 0.25, 20.0 / 60.0).unwrap();
        assert!((sl - 0.69067).abs() < 5e-5, "{sl}");

        let a = erlang_a(42, 10.0, 0.25, 0.5).unwrap();
        assert!((a.wait_probability - 0.33563).abs() < 5e-5, "{a:?}");
        assert!((a.abandon_rate - 0.05084).abs() < 5e-5, "{a:?}");
        assert!((a.asa * 60.0 - 5.603).abs() < 5e-3, "{a:?}");
        let sl = erlang_a_service_level(42, 10.0, 0.25, 0.5, 20.0 / 60.0).unwrap();
        assert!((sl - 0.84155).abs() < 5e-5, "{sl}");

        let chat = erlang_c(12, 1.0, 1.0 / 8.0).unwrap();
        assert!((chat.wait_probability - 0.13984).abs() < 5e-5, "{chat:?}");
        assert!((chat.asa * 60.0 - 16.781).abs() < 5e-3, "{chat:?}");
    }

    #[test]
    fn erlang_a_tends_to_erlang_c_as_patience_grows() {
        let c = erlang_c(44, 10.0, 0.25).unwrap();
        let a = erlang_a(44, 10.0, 0.25, 1e-7).unwrap();
        assert!((a.wait_probability - c.wait_probability).abs() < 1e-4, "{a:?} vs {c:?}");
        assert!((a.asa - c.asa).abs() / c.asa < 1e-3, "{a:?} vs {c:?}");
    }

    #[test]
    fn predictions_only_for_erlang_shaped_scenarios() {
        let text = r#"
name = "p"
service_level = "20s"
[[account]]
name = "a"
[[agents]]
count = 44
reply_delay = { dist = "exponential", mean = "4m" }
[[entry]]
scene = "web"
rate = "10/min"
"#;
        let sc = crate::scenario::Scenario::parse(text, "p.toml").unwrap();
        let p = predict(&sc).unwrap();
        assert_eq!((p.model.as_str(), p.servers), ("erlang_c", 44));
        assert!((p.service_level.unwrap() - 0.69067).abs() < 5e-5);
        assert!((p.asa_ms - 25_902.0).abs() < 5.0);
        let sets = |s: &[&str]| {
            crate::scenario::Scenario::parse_with(
                text,
                "p.toml",
                &s.iter().map(|x| x.to_string()).collect::<Vec<_>>(),
            )
            .unwrap()
        };
        assert_eq!(predict(&sets(&["agents.a.wrap_up=10s"])), None);
        assert_eq!(predict(&sets(&["entry.web.messages=2"])), None);
        assert_eq!(predict(&sets(&["agents.a.reply_delay=4m"])), None);
        assert_eq!(predict(&sets(&["agents.a.count=30"])), None, "unstable Erlang C");
        // found by probing: an overloaded queue's figures grow with the run, unsaid
        let over = unstable(&sets(&["agents.a.count=40"])).expect("A = 40 Erlangs on 40 servers");
        assert!(over.contains("40.00 Erlangs for 40 servers"), "{over}");
        assert_eq!(unstable(&sets(&["agents.a.count=41"])), None);
        let brink = sets(&["agents.a.count=40", "entry.web.rate=9.99999999999/min"]);
        assert_eq!(predict(&brink), None, "no steady state within rounding");
        assert!(unstable(&brink).is_some(), "and said so");
        assert_eq!(unstable(&sets(&["agents.a.count=20", "account.a.queue_limit=5"])), None, "bounded pool");
        let patient = "entry.web.patience={ dist = \"exponential\", mean = \"2m\" }";
        assert_eq!(unstable(&sets(&[patient, "agents.a.count=20"])), None, "Erlang A is stable");
        // any handle time: an M/D/40 at 40 Erlangs, an M/G/c with a lognormal
        let fixed = unstable(&sets(&["agents.a.count=40", "agents.a.reply_delay=4m"])).expect("M/D/40");
        assert!(fixed.contains("40.00 Erlangs for 40 servers"), "{fixed}");
        assert_eq!(unstable(&sets(&["agents.a.count=41", "agents.a.reply_delay=4m"])), None);
        // a mean of 2m·e^(σ²/2), σ = ln 8 / 1.645: 4.45 min, 44.5 Erlangs
        let skewed = "agents.a.reply_delay={ dist = \"lognormal\", median = \"2m\", p95 = \"16m\" }";
        assert!(unstable(&sets(&[skewed, "agents.a.count=44"])).is_some());
        assert_eq!(unstable(&sets(&[skewed, "agents.a.count=45"])), None);
        let quick = "agents.a.reply_delay=1s";
        assert_eq!(unstable(&sets(&[quick, "agents.a.count=1"])), None, "1/6 Erlang on one server");
        let chat = predict(&sets(&["agents.a.count=15", "agents.a.max_concurrent=3"])).unwrap();
        assert_eq!(chat.servers, 45);
        let a = predict(&sets(&[
            "entry.web.patience={ dist = \"exponential\", mean = \"2m\" }",
            "agents.a.count=42",
        ]));
        assert_eq!(a.unwrap().model, "erlang_a");
        let b = predict(&sets(&["account.a.queue_limit=0", "agents.a.count=40"])).unwrap();
        assert!((b.reject_rate - erlang_b(40, 40.0)).abs() < 1e-12);
        assert_eq!((b.abandon_rate, b.metric("abandon_rate")), (0.0, Some(0.0)), "nobody waits to abandon");
        assert!((b.occupancy - (1.0 - erlang_b(40, 40.0))).abs() < 1e-12, "refusals counted once");
        let k = predict(&sets(&["account.a.queue_limit=5", "agents.a.count=40"])).unwrap();
        let l = limited_pool(40, 5, 10.0 / 60.0, 1.0 / 240.0, 0.0, 20.0).unwrap();
        assert_eq!(
            (k.model.as_str(), k.reject_rate, k.service_level),
            ("erlang_c_limited", l.reject_rate, l.service_level)
        );
        assert!((k.occupancy - (1.0 - l.reject_rate)).abs() < 1e-12);
        let patience = "entry.web.patience={ dist = \"exponential\", mean = \"2m\" }";
        let ka = predict(&sets(&["account.a.queue_limit=5", "agents.a.count=40", patience])).unwrap();
        let l = limited_pool(40, 5, 10.0 / 60.0, 1.0 / 240.0, 1.0 / 120.0, 20.0).unwrap();
        assert_eq!((ka.model.as_str(), ka.service_level), ("erlang_a_limited", l.service_level));
        assert!(ka.abandon_rate > 0.0 && ka.reject_rate > 0.0 && ka.reject_rate < k.reject_rate);
        // a bot resolving 40 % leaves people 6/min, whatever its timing
        let bot = "account.a.bot={ reply_delay = \"30s\", resolve = 0.4, turns = 2 }";
        let p = predict(&sets(&[bot, "agents.a.count=27"])).unwrap();
        let c = erlang_c(27, 6.0 / 60.0, 1.0 / 240.0).unwrap();
        assert!((p.asa_ms - c.asa * 1e3).abs() < 1e-6 && p.wait_probability == c.wait_probability);
        assert_eq!(predict(&sets(&["agents.a.transfer={ to = \"a\", share = 0.5 }"])), None);
    }

    /// M/M/1 with one place in the pool, by hand: λ = μ = 1 puts a third
    /// of the time in each of 0, 1 and 2 customers; with θ = 1 the weights
    /// are 1, 1 and ½.
    #[test]
    fn a_limited_pool_by_hand() {
        let l = limited_pool(1, 1, 1.0, 1.0, 0.0, 1.0).unwrap();
        let third = 1.0 / 3.0;
        assert!((l.reject_rate - third).abs() < 1e-12, "{l:?}");
        assert!((l.wait_probability - 2.0 * third).abs() < 1e-12, "{l:?}");
        assert_eq!(l.abandon_rate, 0.0);
        // only who found one customer waits: Exp(1), mean 1, over 2/3 served
        assert!((l.asa - 0.5).abs() < 1e-12, "{l:?}");
        let sl = third + third * (1.0 - (-1.0f64).exp());
        assert!((l.service_level.unwrap() - sl).abs() < 1e-12, "{l:?}");

        let a = limited_pool(1, 1, 1.0, 1.0, 1.0, 1.0).unwrap();
        assert!((a.reject_rate - 0.2).abs() < 1e-12, "{a:?}");
        assert!((a.wait_probability - 0.6).abs() < 1e-12, "{a:?}");
        // who found one customer (0.4) is served with probability ½
        assert!((a.abandon_rate - 0.2).abs() < 1e-12, "{a:?}");
        assert!((a.asa - 1.0 / 6.0).abs() < 1e-12, "{a:?}");
        // who found one customer is served with probability ½ after a
        // stage of rate 2 (a service or its own abandonment): within 1 with
        // probability 1 − e⁻²
        let sl = 0.4 + 0.4 * 0.5 * (1.0 - (-2.0f64).exp());
        assert!((a.service_level.unwrap() - sl).abs() < 1e-9, "{a:?}");
    }

    /// Uniformization against the closed forms: Exp(1) alone, and Exp(2)
    /// then Exp(1), whose sum has P(S ≤ t) = 1 − 2e⁻ᵗ + e⁻²ᵗ.
    #[test]
    fn stages_within_matches_the_hypoexponential() {
        let t = 1.3f64;
        let p = stages_within(&[1.0, 2.0], t).unwrap();
        assert!((p[0] - (1.0 - (-t).exp())).abs() < 1e-12, "{p:?}");
        assert!((p[1] - (1.0 - 2.0 * (-t).exp() + (-2.0 * t).exp())).abs() < 1e-12, "{p:?}");
        assert_eq!(stages_within(&[1.0, 2.0], 0.0).unwrap(), [0.0, 0.0]);
        assert_eq!(stages_within(&[1e9; 100], 1e9), None, "too long to walk: no figure");
    }

    /// A pool of 0 is Erlang B; a pool too large to fill is Erlang C or A.
    #[test]
    fn a_limited_pool_between_erlang_b_and_c() {
        let b = limited_pool(40, 0, 10.0, 0.25, 0.0, 1.0 / 3.0).unwrap();
        let eb = erlang_b(40, 40.0);
        assert!((b.reject_rate - eb).abs() < 1e-12 && (b.wait_probability - eb).abs() < 1e-12, "{b:?}");
        assert!((b.service_level.unwrap() - (1.0 - eb)).abs() < 1e-12, "{b:?}");

        let c = erlang_c(44, 10.0, 0.25).unwrap();
        let sl = erlang_c_service_level(44, 10.0, 0.25, 1.0 / 3.0).unwrap();
        let l = limited_pool(44, 100_000, 10.0, 0.25, 0.0, 1.0 / 3.0).unwrap();
        assert!(l.reject_rate < 1e-15, "{l:?}");
        assert!((l.wait_probability - c.wait_probability).abs() < 1e-9, "{l:?} vs {c:?}");
        assert!((l.asa - c.asa).abs() < 1e-9, "{l:?} vs {c:?}");
        assert!((l.service_level.unwrap() - sl).abs() < 1e-9, "{l:?} vs {sl}");

        let a = erlang_a(42, 10.0, 0.25, 0.5).unwrap();
        let l = limited_pool(42, 100_000, 10.0, 0.25, 0.5, 1.0 / 3.0).unwrap();
        // the closed form of erlang_a against the chain walked
        for (l, a) in
            [(l.wait_probability, a.wait_probability), (l.abandon_rate, a.abandon_rate), (l.asa, a.asa)]
        {
            assert!((l - a).abs() < 1e-12 * a, "{l} vs {a}");
        }

        // overloaded and still stable: at λ = 2nμ the servers, nearly
        // always busy, pass at most nμ, so about half is refused
        let o = limited_pool(10, 20, 2.0, 0.1, 0.0, 1.0).unwrap();
        assert!(o.reject_rate >= 0.5 && o.reject_rate < 0.501, "{o:?}");
        // a pool of a billion that always fills is not walked
        assert_eq!(limited_pool(10, 1_000_000_000, 2.0, 0.1, 0.0, 1.0), None);
    }

    /// A bot resolving every session leaves people no arrivals: nothing
    /// waits or abandons, as Erlang C says in its limit. With patience the
    /// walk's stop (weights 50 below π_n's) never came, every weight past
    /// state 0 being ln 0 = −∞: it walked ten million states and divided 0
    /// by 0 (found by probing: sweep.csv said NaN for the abandonment and
    /// occupancy of a bot resolving everything).
    #[test]
    fn no_arrivals_nothing_waits() {
        let a = erlang_a(2, 0.0, 0.25, 0.5).expect("one state to walk");
        assert_eq!((a.wait_probability, a.abandon_rate, a.asa), (0.0, 0.0, 0.0), "{a:?}");
        let l = limited_pool(2, 3, 0.0, 0.25, 0.5, 1.0 / 3.0).unwrap();
        let sl = erlang_c_service_level(2, 0.0, 0.25, 1.0 / 3.0);
        assert_eq!((l.abandon_rate, l.reject_rate, l.service_level), (0.0, 0.0, sl), "{l:?}");
        let text = r#"
name = "p"
[[account]]
name = "a"
bot = { reply_delay = "10s", resolve = 1.0 }
[[agents]]
count = 2
reply_delay = { dist = "exponential", mean = "4m" }
[[entry]]
scene = "web"
rate = "10/min"
patience = { dist = "exponential", mean = "2m" }
"#;
        let sc = crate::scenario::Scenario::parse(text, "p.toml").unwrap();
        let p = predict(&sc).unwrap();
        assert_eq!((p.abandon_rate, p.occupancy, p.service_level), (0.0, 0.0, Some(1.0)), "{p:?}");
    }

    /// Far past its servers with patience of months, more than ten million
    /// wait at once: the walk stopped there and gave the cut chain's
    /// figures (found by probing: one agent at 100/min with a patience of
    /// 100 days said 69 % abandon, where all but the 0.25/min served do).
    /// No figure rather than a wrong one from the chain (ten days is
    /// walked); Erlang A in closed form has one at either (see
    /// [`erlang_a_against_high_precision_values`] for its other figures).
    #[test]
    fn a_chain_too_long_to_walk_gives_no_figure() {
        let day = 1440.0; // minutes
        assert_eq!(chain(1, None, 100.0, 0.25, 1.0 / (100.0 * day), None), None);
        let q = chain(1, None, 100.0, 0.25, 1.0 / (10.0 * day), None).expect("1.4 million states");
        assert!((q.abandon_rate - (1.0 - 0.25 / 100.0)).abs() < 1e-9, "{q:?}");
        for patience in [10.0, 100.0] {
            let a = erlang_a(1, 100.0, 0.25, 1.0 / (patience * day)).expect("a figure");
            assert!((a.abandon_rate - (1.0 - 0.25 / 100.0)).abs() < 1e-12, "{a:?}");
        }
    }

    /// The closed form against the chain walked state by state, wherever
    /// the chain is short enough: one agent to a hundred, under and over
    /// their load, a patience of a second to ten days (up to 1.4 million
    /// states). To 1e-10 relative, or 1e-15 absolute for a figure near 0:
    /// the chain's own sums of a million states are off by 1e-12 (one agent
    /// at 100/min with a patience of ten days, 0.9975 abandoning by mpmath
    /// and the closed form, 0.99749999999873 by the chain).
    #[test]
    fn erlang_a_in_closed_form_agrees_with_the_chain() {
        for n in [1, 2, 5, 30, 38, 40, 42, 44, 100] {
            for lambda in [0.1, 1.0, 9.0, 10.0, 11.0, 25.0, 100.0] {
                for patience in [1.0 / 60.0, 0.5, 2.0, 10.0, 60.0, 1440.0, 14_400.0] {
                    let (mu, theta) = (0.25, 1.0 / patience);
                    let Some(q) = chain(n, None, lambda, mu, theta, None) else { continue };
                    let a = erlang_a(n, lambda, mu, theta).expect("a figure where the chain has one");
                    for (got, want) in [
                        (a.wait_probability, q.wait_probability),
                        (a.abandon_rate, q.abandon_rate),
                        (a.asa, q.asa),
                    ] {
                        let err = (got - want).abs();
                        assert!(
                            err <= 1e-10 * want || err <= 1e-15,
                            "n = {n}, λ = {lambda}, patience {patience}: {a:?} vs {q:?}"
                        );
                    }
                }
            }
        }
    }

    /// Erlang A's figures against mpmath at 40 digits: the chain summed
    /// state by state, with each stage's P(served) and mean wait (up to
    /// 200 000 states), or past that (marked) the offered wait's density
    /// ∝ exp(λ(1 − e^{−θx})/θ − nμx) integrated by quadrature in
    /// u = e^{−θx} (where both run with nμ/θ ≥ 1, they agree to 1e-34).
    /// μ = 0.25/min; patience (in seconds) of 1 s to 100 days, 44 agents at
    /// the bench load and fewer, 1 to 5 agents, 10 000 agents, two of them
    /// too long for the chain in Rust. To 1e-11 relative (1.4e-12 at
    /// worst here).
    #[test]
    fn erlang_a_against_high_precision_values() {
        for (n, lambda, patience, wait, abandon, asa) in [
            (44, 10.0, 1.0, 0.0737027578431103, 0.062994463424741, 0.000167697467787796),
            (40, 10.0, 1.0, 0.131732792461764, 0.114108858968408, 0.00029610607991275),
            (38, 10.0, 1.0, 0.16665354327729, 0.145335103121629, 0.000373942757081649),
            (30, 10.0, 1.0, 0.331407611047493, 0.297047768705152, 0.000754532155510009),
            (44, 10.0, 60.0, 0.202021803032232, 0.0404150008441609, 0.0348003141633793),
            (40, 10.0, 60.0, 0.362820177527994, 0.0837390400889594, 0.07346036371717),
            (38, 10.0, 60.0, 0.452662066097594, 0.112615635969912, 0.100373216896731),
            (30, 10.0, 60.0, 0.775671318079508, 0.265785647750885, 0.262670069225103),
            (44, 10.0, 600.0, 0.33460597177397, 0.0170850323857051, 0.166057032090629),
            (40, 10.0, 600.0, 0.628576120405859, 0.0488130321243766, 0.481049752484318),
            (38, 10.0, 600.0, 0.772049790031588, 0.076077577457279, 0.761468503682353),
            (30, 10.0, 600.0, 0.996488014274565, 0.250247132774522, 2.81433573059881),
            (44, 10.0, 3600.0, 0.401507467930125, 0.00531281395299822, 0.316534527670795),
            (40, 10.0, 3600.0, 0.803110216786642, 0.0258755234678422, 1.55300315156299),
            (38, 10.0, 3600.0, 0.952061928211214, 0.0554841308564615, 3.38474395771519),
            (30, 10.0, 3600.0, 0.99999999994729, 0.250000000003709, 17.1942823721311),
            (44, 10.0, 86400.0, 0.430026975909144, 0.000294422783708195, 0.423805204447479),
            (40, 10.0, 86400.0, 0.951944775435286, 0.00631548306206034, 9.10430224690325),
            (38, 10.0, 86400.0, 0.999999999779333, 0.0500000000252444, 73.8097130196142),
            (30, 10.0, 86400.0, 1.0, 0.25, 414.195518692704),
            (44, 10.0, 864000.0, 0.43153012302862, 2.99238226436796e-5, 0.430886080103195),
            (40, 10.0, 864000.0, 0.984263801105744, 0.00206807269091108, 29.7926815149562),
            (38, 10.0, 864000.0, 1.0, 0.05, 738.570807665903),
            (30, 10.0, 864000.0, 1.0, 0.25, 4142.55517674186),
            (44, 10.0, 8640000.0, 0.431683146052551, 2.99736260245018e-6, 0.431618511752351),
            (40, 10.0, 8640000.0, 0.994967249872868, 0.000661410876161443, 95.2564324744904),
            (38, 10.0, 8640000.0, 1.0, 0.05, 7386.18176023474),
            (30, 10.0, 8640000.0, 1.0, 0.25, 41426.1517664001), // quadrature
            (1, 0.1, 30.0, 0.294882253431897, 0.262794366420257, 0.0195868311371735),
            (1, 1.0, 30.0, 0.862485869193241, 0.78437853270169, 0.181660922770614),
            (2, 0.3, 30.0, 0.269693908014171, 0.218552838770701, 0.0271580347589182),
            (5, 1.0, 30.0, 0.254750558144465, 0.167846167642302, 0.0360965206546445),
            (5, 3.0, 30.0, 0.82247281694249, 0.603772160862657, 0.237498463773022),
            (1, 0.1, 120.0, 0.314060750667507, 0.214848123331233, 0.1767116826327),
            (1, 1.0, 120.0, 0.946463595179319, 0.76338410120517, 1.59748282112398),
            (2, 0.3, 120.0, 0.309596542882368, 0.170186008627433, 0.191790899512695),
            (5, 1.0, 120.0, 0.32711962447497, 0.127270307636607, 0.186768714898535),
            (5, 3.0, 120.0, 0.960938188222751, 0.587830546774947, 1.42627315666802),
            (1, 0.1, 6000.0, 0.390846982699749, 0.0228825432506272, 2.20825545808852),
            (1, 1.0, 6000.0, 1.0, 0.75, 136.642767313612),
            (2, 0.3, 6000.0, 0.43465602418279, 0.0185987585663145, 1.81729085015211),
            (5, 1.0, 6000.0, 0.524620363132101, 0.0165356701856423, 1.63188786307958),
            (5, 3.0, 6000.0, 1.0, 0.583333333333333, 87.1474070653101),
            (1, 100.0, 8640000.0, 1.0, 0.9975, 862768.894792809), // quadrature
            (1, 100.0, 864000.0, 1.0, 0.9975, 86275.0895709475),  // quadrature
            (44, 10.0, 600000000.0, 0.431699934724344, 4.31699028159147e-8, 0.431699003625782),
            (10000, 2500.0, 120.0, 0.415773554473262, 0.0046738443982295, 0.00930835425262603),
            (10000, 2600.0, 120.0, 0.997293634194859, 0.0384676348016296, 0.0782549112161412),
            (10000, 2500.0, 1800.0, 0.733231088150634, 0.00213416628743122, 0.0640151038857286),
            (10000, 2400.0, 86400.0, 2.68470556266445e-5, 1.86374499083323e-10, 2.68377415928712e-7),
            (10000, 3000.0, 8640000.0, 1.0, 0.166666666666667, 26254.3039783295), // quadrature
            (42, 10.0, 120.0, 0.335633883074427, 0.0508428035619125, 0.0933907971318666),
        ] {
            let a = erlang_a(n, lambda, 0.25, 60.0 / patience).expect("a figure");
            for (got, want) in [(a.wait_probability, wait), (a.abandon_rate, abandon), (a.asa, asa)] {
                assert!(
                    (got - want).abs() <= 1e-11 * want,
                    "n = {n}, λ = {lambda}, patience {patience} s: {a:?} vs {wait}, {abandon}, {asa}"
                );
            }
        }
        let chain_of = |n, lambda, patience| chain(n, None, lambda, 0.25, 60.0 / patience, None);
        assert_eq!(chain_of(10_000, 3000.0, 8_640_000.0), None, "72 million waiting");
        assert_eq!(chain_of(1, 100.0, 8_640_000.0), None, "14 million waiting");
    }

    /// Stopping once B is 0 changes no bit: every later step keeps it 0.
    #[test]
    fn erlang_b_stops_early_with_the_same_value() {
        let walked = |n: u32, a: f64| (1..=n).fold(1.0, |b, k| a * b / (f64::from(k) + a * b));
        for (n, a) in [(10_000, 667.0), (5_000, 40.0), (44, 40.0), (3_000, 2_999.5), (100_000, 1.0)] {
            assert_eq!(erlang_b(n, a).to_bits(), walked(n, a).to_bits(), "n = {n}, a = {a}");
        }
        assert_eq!(erlang_b(10_000, 667.0), 0.0, "the case that stops early");
    }

    #[test]
    fn erlang_b_small_case_by_hand() {
        // n = 1: B = a / (1 + a)
        assert!((erlang_b(1, 3.0) - 0.75).abs() < 1e-12);
        assert!(erlang_c(2, 3.0, 1.0).is_none(), "unstable");
        // ρ = 1 in exact arithmetic, just under it in floating point
        let (lambda, mu) = (200.0 / 3600.0, 1.0 / 180.0);
        assert!(lambda / mu < 10.0, "the case this test is for: a rounds below n");
        assert!(erlang_c(10, lambda, mu).is_none(), "critically loaded");
        assert!(erlang_c_service_level(10, lambda, mu, 20.0).is_none());
    }

    /// Erlang A's service level where the stages walked one by one gave
    /// none (38 agents at 40 Erlangs with a patience of a day, some 700
    /// waiting, and a threshold of 10 h; 10 000 agents with a patience of
    /// 30 min and a threshold of 2 min), where the chain gave none (a
    /// patience of 100 days with one agent at 100/min or 10 000 at
    /// 3000/min) or walked some 360 000 states (30 agents at 10/min), at
    /// thresholds near the offered wait's peak of weeks to years (within
    /// 20 s: 1e-21415 or less), and elsewhere, against the integral of
    /// the offered wait's density ∝ exp(λ(1 − e^{−θx})/θ − nμx), weighted
    /// by e^{−θx}, by mpmath's quadrature at 40 digits (not the incomplete
    /// gamma functions used here; at 42 agents also the hypoexponential
    /// summed stage by stage, to 30 digits): to 1e-12, or 1e-9 at a
    /// patience of a million minutes, whose c of 1.25 million costs some
    /// digits in ln D.
    #[test]
    fn erlang_a_service_level_at_long_thresholds_and_many_agents() {
        let third = 1.0 / 3.0;
        for (n, lambda, mu, theta, t, want, tol) in [
            (42, 10.0, 0.25, 0.5, third, 0.841_550_408_416_287_8, 1e-12),
            (38, 10.0, 0.25, 1.0 / 1440.0, 120.0, 0.949_910_225_666_508_9, 1e-12),
            (38, 10.0, 0.25, 1.0 / 1440.0, 600.0, 0.949_999_999_974_755_6, 1e-12),
            (10_000, 2500.0, 0.25, 1.0 / 30.0, 2.0, 0.997_865_833_712_568_8, 1e-12),
            (10_000, 2600.0, 0.25, 0.5, third, 0.961_532_365_198_370_4, 1e-12),
            (5, 1.0, 0.25, 1e-6, 2.0, 0.663_919_305_378_821, 1e-9),
            (1, 100.0, 0.25, 1.0 / 144_000.0, 862_770.894_783_549_4, 0.001_253_504_338_286_770_7, 1e-12),
            (1, 100.0, 0.25, 1.0 / 144_000.0, 1_440_000.0, 0.0025, 1e-12),
            (10_000, 3000.0, 0.25, 1.0 / 144_000.0, 26_254.304_178_329_457, 0.416_678_347_835_421_07, 1e-12),
            (30, 10.0, 0.25, 1.0 / 144_000.0, 41_426.218_433_056_45, 0.375_191_941_171_435_47, 1e-12),
        ] {
            let sl = erlang_a_service_level(n, lambda, mu, theta, t).expect("a figure");
            assert!((sl - want).abs() < tol, "n = {n}, λ = {lambda}, θ = {theta}, t = {t}: {sl} vs {want}");
        }
        // one agent at 40 Erlangs with a patience of 20 days: some 280 000
        // wait, and 4.5e-110418 are served within 20 s (mpmath): 0 here
        let sl = erlang_a_service_level(1, 10.0, 0.25, 1.0 / 28_800.0, third).expect("a figure");
        assert!((0.0..1e-300).contains(&sl), "{sl}");
        // its limits: t = 0 serves only who is assigned at once, t = ∞
        // everyone served; no abandonment is Erlang C's
        let a = erlang_a(42, 10.0, 0.25, 0.5).unwrap();
        let at = |t: f64| erlang_a_service_level(42, 10.0, 0.25, 0.5, t).unwrap();
        assert!((at(0.0) - (1.0 - a.wait_probability)).abs() < 1e-12, "{}", at(0.0));
        assert!((at(f64::INFINITY) - (1.0 - a.abandon_rate)).abs() < 1e-12, "{}", at(f64::INFINITY));
        let c = erlang_c_service_level(44, 10.0, 0.25, third).unwrap();
        let a = erlang_a_service_level(44, 10.0, 0.25, 1e-9, third).unwrap();
        assert!((a - c).abs() < 1e-6, "{a} vs {c}");
    }

    /// Inputs at their limits: an infinite load blocks everyone (Erlang B
    /// gave NaN, ∞/∞), no patience at all is Erlang B (walked, the first
    /// stage's rate nμ + 0·∞ made every figure NaN) and infinite patience
    /// Erlang C; what has no figure (a NaN or negative input, no server, an
    /// infinite arrival rate) is `None`.
    #[test]
    fn inputs_at_their_limits() {
        let (inf, nan, third) = (f64::INFINITY, f64::NAN, 1.0 / 3.0);
        assert_eq!((erlang_b(5, inf), erlang_b(0, inf), erlang_b(5, 0.0)), (1.0, 1.0, 0.0));
        assert!(erlang_b(5, nan).is_nan() && erlang_b(5, -1.0).is_nan());
        for (lambda, mu) in
            [(inf, 1.0), (1.0, 0.0), (0.0, 0.0), (inf, inf), (nan, 1.0), (1.0, nan), (-1.0, 1.0)]
        {
            assert_eq!(erlang_c(5, lambda, mu), None, "λ = {lambda}, μ = {mu}");
            assert_eq!(erlang_c_service_level(5, lambda, mu, 1.0), None, "λ = {lambda}, μ = {mu}");
        }
        let instant = erlang_c(5, 1.0, inf).expect("nobody waits");
        assert_eq!((instant.wait_probability, instant.asa), (0.0, 0.0));
        assert_eq!(erlang_c_service_level(5, 1.0, inf, 0.0), Some(1.0));
        assert_eq!(erlang_c_service_level(5, 1.0, 1.0, inf), Some(1.0));
        assert_eq!(erlang_c_service_level(5, 1.0, 1.0, nan), None);
        assert_eq!(erlang_c_service_level(5, 1.0, 1.0, -1.0), None);

        let b = erlang_b(44, 40.0);
        let a = erlang_a(44, 10.0, 0.25, inf).expect("Erlang B");
        assert_eq!((a.wait_probability, a.abandon_rate, a.asa), (b, b, 0.0));
        assert_eq!(erlang_a_service_level(44, 10.0, 0.25, inf, third), Some(1.0 - b));
        let l = limited_pool(44, 3, 10.0, 0.25, inf, third).unwrap();
        assert_eq!((l.abandon_rate, l.reject_rate, l.service_level), (b, 0.0, Some(1.0 - b)));
        let l = limited_pool(44, 0, 10.0, 0.25, inf, third).unwrap();
        assert_eq!((l.abandon_rate, l.reject_rate), (0.0, b));
        assert_eq!(erlang_a(44, 10.0, 0.25, 0.0), erlang_c(44, 10.0, 0.25));
        let c = erlang_c_service_level(44, 10.0, 0.25, third);
        assert_eq!(erlang_a_service_level(44, 10.0, 0.25, 0.0, third), c);
        assert_eq!(erlang_a(40, 10.0, 0.25, 0.0), None, "unstable without abandonment");

        for (n, lambda, mu, theta) in [
            (0, 10.0, 0.25, 0.5),
            (44, inf, 0.25, 0.5),
            (44, 10.0, inf, 0.5),
            (44, 10.0, 0.0, 0.5),
            (44, nan, 0.25, 0.5),
            (44, 10.0, nan, 0.5),
            (44, 10.0, 0.25, nan),
            (44, -10.0, 0.25, 0.5),
            (44, 10.0, 0.25, -0.5),
        ] {
            let at = format!("n = {n}, λ = {lambda}, μ = {mu}, θ = {theta}");
            assert_eq!(erlang_a(n, lambda, mu, theta), None, "{at}");
            assert_eq!(erlang_a_service_level(n, lambda, mu, theta, third), None, "{at}");
            assert_eq!(limited_pool(n, 3, lambda, mu, theta, third), None, "{at}");
        }
        assert_eq!(erlang_a_service_level(44, 10.0, 0.25, 0.5, nan), None);
        assert_eq!(erlang_a_service_level(44, 10.0, 0.25, 0.5, -1.0), None);
        assert_eq!(limited_pool(44, 3, 10.0, 0.25, 0.5, nan).unwrap().service_level, None);
    }
}
