//! Probability distributions as written in scenario files, validated while
//! they are deserialized so that an error carries the position of the value.
//!
//! A time distribution is a bare duration (a constant) or a table:
//! `{ dist = "exponential", mean = "40s" }`. A count distribution is a bare
//! integer or `{ dist = "geometric", mean = 3 }`. These are plain data; the
//! samplers live in `workload`.

use std::fmt;

use serde::de::{self, DeserializeSeed, MapAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize};

use super::units::parse_duration;

/// z such that Φ(z) = 0.95: converts a lognormal's median and p95 to σ.
const Z95: f64 = 1.644_853_626_951_472_2;

/// A distribution of durations, in microseconds.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[serde(tag = "dist", rename_all = "lowercase")]
pub enum TimeDist {
    /// Always `us`.
    Constant {
        /// The value [µs].
        us: u64,
    },
    /// Exponential with the given mean.
    Exponential {
        /// Mean [µs].
        mean_us: f64,
    },
    /// Uniform on `[min_us, max_us]`.
    Uniform {
        /// Lower bound [µs].
        min_us: f64,
        /// Upper bound [µs].
        max_us: f64,
    },
    /// exp(N(mu, sigma²)) seconds.
    Lognormal {
        /// Mean of the logarithm of the value in seconds.
        mu: f64,
        /// Standard deviation of that logarithm.
        sigma: f64,
    },
    /// Gamma with the given mean and coefficient of variation.
    Gamma {
        /// Mean [µs].
        mean_us: f64,
        /// Standard deviation / mean.
        cv: f64,
    },
}

impl TimeDist {
    /// The mean of the distribution [µs].
    pub fn mean_us(&self) -> f64 {
        match *self {
            TimeDist::Constant { us } => us as f64,
            TimeDist::Exponential { mean_us } | TimeDist::Gamma { mean_us, .. } => mean_us,
            TimeDist::Uniform { min_us, max_us } => (min_us + max_us) / 2.0,
            TimeDist::Lognormal { mu, sigma } => (mu + sigma * sigma / 2.0).exp() * 1e6,
        }
    }

    /// True when every draw is zero, so the engine can skip the event.
    pub fn is_zero(&self) -> bool {
        matches!(self, TimeDist::Constant { us: 0 })
    }
}

/// A distribution of counts (customer messages per session), always ≥ 1.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[serde(tag = "dist", rename_all = "lowercase")]
pub enum CountDist {
    /// Always `value`.
    Constant {
        /// The count.
        value: u32,
    },
    /// Number of trials up to and including the first success, so support
    /// starts at 1 and the mean is `mean` (success probability 1/mean).
    Geometric {
        /// Mean count, ≥ 1.
        mean: f64,
    },
}

impl CountDist {
    /// The mean count.
    pub fn mean(&self) -> f64 {
        match *self {
            CountDist::Constant { value } => value as f64,
            CountDist::Geometric { mean } => mean,
        }
    }
}

#[derive(Deserialize, Debug, Clone, Copy, PartialEq)]
#[serde(rename_all = "lowercase", remote = "Self")]
enum Kind {
    Constant,
    Exponential,
    Uniform,
    Lognormal,
    Gamma,
    Geometric,
}

super::schema::by_name_only!(Kind);

/// A parameter that is a number (counts, σ, cv) or a duration string.
#[derive(Debug, Clone)]
enum Param {
    Number(f64),
    Text(String),
}

impl<'de> Deserialize<'de> for Param {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Param;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a number or a duration string")
            }
            fn visit_i64<E>(self, v: i64) -> Result<Param, E> {
                Ok(Param::Number(v as f64))
            }
            fn visit_u64<E>(self, v: u64) -> Result<Param, E> {
                Ok(Param::Number(v as f64))
            }
            fn visit_f64<E>(self, v: f64) -> Result<Param, E> {
                Ok(Param::Number(v))
            }
            fn visit_str<E>(self, v: &str) -> Result<Param, E> {
                Ok(Param::Text(v.to_owned()))
            }
        }
        d.deserialize_any(V)
    }
}

/// The parameters each distribution takes (a lognormal in one of two
/// forms), for the table's check and the check of each value as it is read.
const CONSTANT: &[&str] = &["value"];
const EXPONENTIAL: &[&str] = &["mean"];
const UNIFORM: &[&str] = &["min", "max"];
const QUANTILES: &[&str] = &["median", "p95"];
const MOMENTS: &[&str] = &["mu", "sigma"];
const GAMMA: &[&str] = &["mean", "cv"];
const GEOMETRIC: &[&str] = &["mean"];

/// The keys of the table form.
const FIELDS: &[&str] = &["dist", "value", "mean", "min", "max", "median", "p95", "mu", "sigma", "cv"];

/// A key of the table form, refused at its own place when unknown.
struct Field(&'static str);

impl<'de> Deserialize<'de> for Field {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Field;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a parameter of a distribution")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Field, E> {
                FIELDS.iter().find(|f| **f == v).map(|f| Field(f)).ok_or_else(|| E::unknown_field(v, FIELDS))
            }
        }
        d.deserialize_identifier(V)
    }
}

/// A parameter's value, checked as it is read, so that an error points at
/// the value itself: in the dotted form (`reply_delay.mean = "4x"`) the
/// table's own position is its first key's line, not the mistaken one.
/// What only the whole table can tell (a parameter missing or foreign to
/// the distribution, `min` above `max`) is checked after, at the table, and
/// so is a value read before its `dist` or foreign to it: checked as what
/// it is not, it got the wrong advice ("`mean` must be a duration string"
/// where the table's mistake is a count's distribution in a time field).
struct Checked {
    name: &'static str,
    /// In a time distribution (else a count's).
    time: bool,
    /// The value is one of the `dist` read before it.
    check: bool,
}

impl Checked {
    /// Whether `name` is a parameter of `kind` (in a time distribution if
    /// `time`), given the parameters of `t` read so far.
    fn belongs(kind: Kind, time: bool, name: &str, t: &Table) -> bool {
        let takes = |params: &[&str]| params.contains(&name);
        match (kind, time) {
            (Kind::Constant, _) => takes(CONSTANT),
            (Kind::Exponential, true) => takes(EXPONENTIAL),
            (Kind::Uniform, true) => takes(UNIFORM),
            // one of the two forms, whichever came first
            (Kind::Lognormal, true) if t.mu.is_some() || t.sigma.is_some() => takes(MOMENTS),
            (Kind::Lognormal, true) if t.median.is_some() || t.p95.is_some() => takes(QUANTILES),
            (Kind::Lognormal, true) => takes(MOMENTS) || takes(QUANTILES),
            (Kind::Gamma, true) => takes(GAMMA),
            (Kind::Geometric, false) => takes(GEOMETRIC),
            _ => false,
        }
    }

    fn check(&self, p: &Param) -> Result<(), String> {
        let name = self.name;
        if !self.check {
            return Ok(());
        }
        let duration = self.time && !["mu", "sigma", "cv"].contains(&name);
        match p {
            Param::Text(t) if duration => {
                let us = parse_duration(t)?;
                if us == 0 && ["mean", "median"].contains(&name) {
                    return Err(format!("`{name}` must be positive"));
                }
                Ok(())
            }
            Param::Number(n) if duration => {
                Err(format!("`{name}` must be a duration string like \"{n}s\", not a bare number"))
            }
            Param::Text(_) if self.time => Err(format!("`{name}` must be a finite number")),
            Param::Text(_) => Err(format!("`{name}` must be a number")),
            Param::Number(n) if !n.is_finite() => Err(format!("`{name}` must be a finite number")),
            Param::Number(n) if self.time => match name {
                "sigma" if *n <= 0.0 => Err("`sigma` must be positive".into()),
                // beyond these the gamma's shape 1/cv² under- or overflows
                "cv" if !(1e-3..=1e3).contains(n) => Err("`cv` must be between 0.001 and 1000".into()),
                _ => Ok(()),
            },
            Param::Number(n) => match name {
                "value" => count_value(*n).map(|_| ()),
                "mean" if !(1.0..=1e6).contains(n) => {
                    Err("geometric `mean` must be between 1 and 1000000".into())
                }
                _ => Ok(()),
            },
        }
    }
}

impl<'de> DeserializeSeed<'de> for Checked {
    type Value = Param;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Param, D::Error> {
        let p = Param::deserialize(d)?;
        self.check(&p).map_err(de::Error::custom)?;
        Ok(p)
    }
}

/// The table form, before it is known whether it describes time or counts.
#[derive(Debug, Default)]
struct Table {
    dist: Option<Kind>,
    value: Option<Param>,
    mean: Option<Param>,
    min: Option<Param>,
    max: Option<Param>,
    median: Option<Param>,
    p95: Option<Param>,
    mu: Option<Param>,
    sigma: Option<Param>,
    cv: Option<Param>,
}

impl Table {
    /// Read the table's keys in any order, each value checked where it is
    /// (see [`Checked`]).
    fn read<'de, A: MapAccess<'de>>(mut map: A, time: bool) -> Result<Table, A::Error> {
        let mut t = Table::default();
        while let Some(Field(name)) = map.next_key()? {
            if name == "dist" {
                t.dist = Some(map.next_value()?);
                continue;
            }
            let check = t.dist.is_some_and(|k| Checked::belongs(k, time, name, &t));
            let slot = match name {
                "value" => &mut t.value,
                "mean" => &mut t.mean,
                "min" => &mut t.min,
                "max" => &mut t.max,
                "median" => &mut t.median,
                "p95" => &mut t.p95,
                "mu" => &mut t.mu,
                "sigma" => &mut t.sigma,
                _ => &mut t.cv,
            };
            *slot = Some(map.next_value_seed(Checked { name, time, check })?);
        }
        if t.dist.is_none() {
            return Err(de::Error::missing_field("dist"));
        }
        Ok(t)
    }

    /// Refuse parameters that the chosen distribution does not use: a
    /// misplaced `p95` on an exponential is a mistake worth reporting.
    fn only(&self, allowed: &[&str], dist: &str) -> Result<(), String> {
        let present = [
            ("value", self.value.is_some()),
            ("mean", self.mean.is_some()),
            ("min", self.min.is_some()),
            ("max", self.max.is_some()),
            ("median", self.median.is_some()),
            ("p95", self.p95.is_some()),
            ("mu", self.mu.is_some()),
            ("sigma", self.sigma.is_some()),
            ("cv", self.cv.is_some()),
        ];
        for (name, here) in present {
            if here && !allowed.contains(&name) {
                return Err(format!(
                    "`{name}` is not a parameter of dist = \"{dist}\" (it takes {})",
                    allowed.iter().map(|a| format!("`{a}`")).collect::<Vec<_>>().join(", ")
                ));
            }
        }
        Ok(())
    }

    fn into_time(self) -> Result<TimeDist, String> {
        let dur = |p: &Option<Param>, name: &str| -> Result<f64, String> {
            match p {
                None => Err(format!("missing `{name}`")),
                Some(Param::Text(t)) => parse_duration(t).map(|us| us as f64),
                Some(Param::Number(n)) => {
                    Err(format!("`{name}` must be a duration string like \"{n}s\", not a bare number"))
                }
            }
        };
        let num = |p: &Option<Param>, name: &str| -> Result<f64, String> {
            match p {
                None => Err(format!("missing `{name}`")),
                Some(Param::Number(n)) if n.is_finite() => Ok(*n),
                Some(_) => Err(format!("`{name}` must be a finite number")),
            }
        };
        let positive = |v: f64, what: &str| {
            if v > 0.0 { Ok(v) } else { Err(format!("{what} must be positive")) }
        };
        let dist = match self.dist.expect("read() requires dist") {
            Kind::Constant => {
                self.only(CONSTANT, "constant")?;
                TimeDist::Constant { us: dur(&self.value, "value")? as u64 }
            }
            Kind::Exponential => {
                self.only(EXPONENTIAL, "exponential")?;
                TimeDist::Exponential { mean_us: positive(dur(&self.mean, "mean")?, "`mean`")? }
            }
            Kind::Uniform => {
                self.only(UNIFORM, "uniform")?;
                let (min_us, max_us) = (dur(&self.min, "min")?, dur(&self.max, "max")?);
                if min_us > max_us {
                    return Err("`min` must not exceed `max`".into());
                }
                TimeDist::Uniform { min_us, max_us }
            }
            Kind::Lognormal if self.median.is_some() || self.p95.is_some() => {
                self.only(QUANTILES, "lognormal")?;
                let median = positive(dur(&self.median, "median")?, "`median`")?;
                let p95 = dur(&self.p95, "p95")?;
                if p95 <= median {
                    return Err("`p95` must be greater than `median`".into());
                }
                TimeDist::Lognormal { mu: (median / 1e6).ln(), sigma: (p95 / median).ln() / Z95 }
            }
            Kind::Lognormal => {
                self.only(MOMENTS, "lognormal")?;
                let mu = num(&self.mu, "mu (or median and p95)")?;
                let sigma = positive(num(&self.sigma, "sigma")?, "`sigma`")?;
                TimeDist::Lognormal { mu, sigma }
            }
            Kind::Gamma => {
                self.only(GAMMA, "gamma")?;
                let mean_us = positive(dur(&self.mean, "mean")?, "`mean`")?;
                let cv = num(&self.cv, "cv")?;
                // beyond these the gamma's shape 1/cv² under- or overflows
                if !(1e-3..=1e3).contains(&cv) {
                    return Err("`cv` must be between 0.001 and 1000".into());
                }
                TimeDist::Gamma { mean_us, cv }
            }
            Kind::Geometric => {
                return Err("dist = \"geometric\" is for counts (like `messages`), not durations; \
                     use constant, exponential, uniform, lognormal or gamma"
                    .into());
            }
        };
        if dist.mean_us() > 1e17 || !dist.mean_us().is_finite() {
            // with the bound and where such a mean comes from: a lognormal
            // of a p95 far above its median had no visible cause
            return Err(format!(
                "the distribution's mean is {:.3e} µs, above the most kfsim keeps, 1e17 µs (about 3 170 years){}",
                dist.mean_us(),
                if matches!(dist, TimeDist::Lognormal { .. }) {
                    ": a lognormal's mean grows steeply with its spread (`p95` over `median`, or `sigma`)"
                } else {
                    ""
                }
            ));
        }
        Ok(dist)
    }

    fn into_count(self) -> Result<CountDist, String> {
        let num = |p: &Option<Param>, name: &str| -> Result<f64, String> {
            match p {
                None => Err(format!("missing `{name}`")),
                Some(Param::Number(n)) if n.is_finite() => Ok(*n),
                Some(_) => Err(format!("`{name}` must be a number")),
            }
        };
        match self.dist.expect("read() requires dist") {
            Kind::Constant => {
                self.only(CONSTANT, "constant")?;
                count_value(num(&self.value, "value")?)
            }
            Kind::Geometric => {
                self.only(GEOMETRIC, "geometric")?;
                let mean = num(&self.mean, "mean")?;
                if !(1.0..=1e6).contains(&mean) {
                    return Err("geometric `mean` must be between 1 and 1000000".into());
                }
                Ok(CountDist::Geometric { mean })
            }
            _ => Err("a count takes dist = \"constant\" or \"geometric\"".into()),
        }
    }
}

fn count_value(v: f64) -> Result<CountDist, String> {
    if v.fract() != 0.0 || !(1.0..=1e6).contains(&v) {
        // past 2⁵³ the number read is not the one written: not quoted
        let not = if v.abs() < 9.007_199_254_740_992e15 { format!(", not {v}") } else { String::new() };
        return Err(format!("a count must be a whole number from 1 to 1000000{not}"));
    }
    Ok(CountDist::Constant { value: v as u32 })
}

impl<'de> Deserialize<'de> for TimeDist {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = TimeDist;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(
                    "a duration like \"40s\" or a table like { dist = \"exponential\", mean = \"40s\" }",
                )
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<TimeDist, E> {
                parse_duration(v).map(|us| TimeDist::Constant { us }).map_err(E::custom)
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<TimeDist, A::Error> {
                Table::read(map, true)?.into_time().map_err(de::Error::custom)
            }
        }
        d.deserialize_any(V)
    }
}

impl<'de> Deserialize<'de> for CountDist {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = CountDist;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a whole number like 3 or a table like { dist = \"geometric\", mean = 3 }")
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<CountDist, E> {
                count_value(v as f64).map_err(E::custom)
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<CountDist, E> {
                count_value(v as f64).map_err(E::custom)
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<CountDist, A::Error> {
                Table::read(map, false)?.into_count().map_err(de::Error::custom)
            }
        }
        d.deserialize_any(V)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_count_out_of_range_is_quoted_only_as_written() {
        assert_eq!(count_value(0.0).unwrap_err(), "a count must be a whole number from 1 to 1000000, not 0");
        // i64::MAX read as a float is 9223372036854775808: not what the file says
        assert_eq!(
            count_value(i64::MAX as f64).unwrap_err(),
            "a count must be a whole number from 1 to 1000000"
        );
    }

    fn time(s: &str) -> Result<TimeDist, String> {
        #[derive(Deserialize)]
        struct W {
            d: TimeDist,
        }
        toml::from_str::<W>(&format!("d = {s}")).map(|w| w.d).map_err(|e| e.message().to_owned())
    }

    fn count(s: &str) -> Result<CountDist, String> {
        #[derive(Deserialize)]
        struct W {
            d: CountDist,
        }
        toml::from_str::<W>(&format!("d = {s}")).map(|w| w.d).map_err(|e| e.message().to_owned())
    }

    #[test]
    fn time_forms() {
        assert_eq!(time("\"30s\""), Ok(TimeDist::Constant { us: 30_000_000 }));
        assert_eq!(
            time("{ dist = \"exponential\", mean = \"4m\" }"),
            Ok(TimeDist::Exponential { mean_us: 240e6 })
        );
        let TimeDist::Lognormal { mu, sigma } =
            time("{ dist = \"lognormal\", median = \"25s\", p95 = \"2m\" }").unwrap()
        else {
            panic!("not lognormal")
        };
        assert!((mu - 25f64.ln()).abs() < 1e-12);
        assert!(((mu + Z95 * sigma).exp() - 120.0).abs() < 1e-9, "p95 must map back to 2 min");
        assert_eq!(
            time("{ dist = \"gamma\", mean = \"1m\", cv = 0.5 }"),
            Ok(TimeDist::Gamma { mean_us: 60e6, cv: 0.5 })
        );
    }

    #[test]
    fn time_errors_say_what_is_wrong() {
        let cases = [
            ("{ dist = \"exponential\", mean = 40 }", "duration string"),
            ("{ dist = \"exponential\" }", "missing `mean`"),
            ("{ dist = \"exponential\", mean = \"4m\", p95 = \"1m\" }", "`p95` is not a parameter"),
            ("{ dist = \"uniform\", min = \"2m\", max = \"1m\" }", "must not exceed"),
            ("{ dist = \"lognormal\", median = \"2m\", p95 = \"1m\" }", "greater than `median`"),
            ("{ dist = \"geometric\", mean = 3 }", "for counts"),
            ("{ dist = \"weibull\", mean = \"3s\" }", "unknown variant"),
            ("40", "a duration like"),
            ("\"5 minutes please\"", "invalid duration"),
            // a value before its `dist`, or foreign to it, is the table's
            // mistake, not the value's (found by review: these got the
            // advice of the distribution they are not)
            ("{ mean = 3, dist = \"geometric\" }", "for counts"),
            ("{ dist = \"constant\", mean = \"0s\" }", "`mean` is not a parameter"),
            ("{ mean = \"0s\", dist = \"uniform\" }", "`mean` is not a parameter"),
            (
                "{ dist = \"lognormal\", median = \"1s\", p95 = \"2s\", sigma = 0 }",
                "`sigma` is not a parameter",
            ),
        ];
        for (src, want) in cases {
            let err = time(src).expect_err(src);
            assert!(err.contains(want), "{src}: {err:?} should mention {want:?}");
        }
    }

    #[test]
    fn counts() {
        assert_eq!(count("3"), Ok(CountDist::Constant { value: 3 }));
        assert_eq!(count("{ dist = \"geometric\", mean = 3 }"), Ok(CountDist::Geometric { mean: 3.0 }));
        assert!(count("0").unwrap_err().contains("from 1"));
        assert!(count("{ dist = \"geometric\", mean = 0.5 }").unwrap_err().contains("between 1"));
        assert!(count("\"3\"").is_err());
        assert!(
            count("{ mean = \"4s\", dist = \"exponential\" }")
                .unwrap_err()
                .contains("\"constant\" or \"geometric\"")
        );
        assert!(
            count("{ dist = \"geometric\", value = 2.5 }")
                .unwrap_err()
                .contains("`value` is not a parameter")
        );
    }
}
