//! The raw shape of a scenario file, as serde reads it.
//!
//! Every table denies unknown keys, and every value type checks itself while
//! it is deserialized, so a wrong value is reported at its own position.
//! Checks that need more than one value (references between tables, warm-up
//! shorter than the run) happen in `scenario::build`, using the `Spanned`
//! positions kept here. Nothing outside `scenario` sees these types.

use std::fmt;

use serde::de::{self, Visitor};
use serde::{Deserialize, Deserializer, Serialize};
use toml::Spanned;

use super::dist::{CountDist, TimeDist};
use super::units::{Rate, parse_duration};

/// Read `$ty`, a unit enum whose derive is kept as `#[serde(remote =
/// "Self")]`, from its name in a string alone. serde's derive also reads a
/// unit variant from a table of one key, the name (`policy = { round_robin
/// = {} }`, `scene = { web = {} }`, in JSON `{"pass": null}`), and such a
/// file was read as if the name stood there, though no format of kfsim's
/// has such a form (found by fuzzing). Used beyond the scenario by the
/// files kfsim reads back (summaries, comparisons, shard files); it sits
/// here, in the lowest layer, so that each of them may use it.
macro_rules! by_name_only {
    ($ty:ty) => {
        impl<'de> serde::Deserialize<'de> for $ty {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                struct V;
                impl serde::de::Visitor<'_> for V {
                    type Value = $ty;
                    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                        f.write_str("a name in quotes (a string)")
                    }
                    fn visit_str<E: serde::de::Error>(self, name: &str) -> Result<$ty, E> {
                        // the derive's own: its unknown-name error names them all
                        <$ty>::deserialize(serde::de::IntoDeserializer::into_deserializer(name))
                    }
                }
                d.deserialize_any(V)
            }
        }
    };
}
pub(crate) use by_name_only;

/// Write `$ty` as its derive does (see [`by_name_only`]).
macro_rules! serialize_as_derived {
    ($ty:ty) => {
        impl serde::Serialize for $ty {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                <$ty>::serialize(self, s)
            }
        }
    };
}
pub(crate) use serialize_as_derived;

#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
pub(super) struct RawScenario {
    pub name: Spanned<String>,
    pub seed: Option<Seed>,
    pub duration: Option<Spanned<Dur>>,
    pub warmup: Option<Spanned<Dur>>,
    pub service_level: Option<Dur>,
    pub drain: Option<Dur>,
    pub series_interval: Option<Spanned<Dur>>,
    pub customer_memory: Option<Spanned<u64>>,
    #[serde(default)]
    pub account: Vec<RawAccount>,
    #[serde(default)]
    pub agents: Vec<Spanned<RawAgents>>,
    #[serde(default)]
    pub entry: Vec<Spanned<RawEntry>>,
    pub gates: Option<RawGates>,
    pub time_scale: Option<Spanned<f64>>,
    pub target: Option<RawTarget>,
    pub wecom: Option<RawWeCom>,
}

/// `[wecom]`: kfsim playing WeCom for a middleware.
#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
pub(super) struct RawWeCom {
    pub listen: Option<Spanned<String>>,
    pub corpid: Option<Spanned<String>>,
    pub corpsecret: Option<Spanned<String>>,
    pub callback: Option<RawCallback>,
    pub faults: Option<RawFaults>,
}

/// `[wecom.callback]`: where the middleware receives `kf_msg_or_event`.
#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
pub(super) struct RawCallback {
    pub url: Option<Spanned<String>>,
    pub token: Spanned<String>,
    pub encoding_aes_key: Spanned<String>,
    pub timeout: Option<Spanned<Dur>>,
    pub retries: Option<Spanned<u32>>,
    pub retry_delay: Option<Spanned<Dur>>,
    pub max_in_flight: Option<Spanned<u32>>,
}

/// `[wecom.faults]`: what the platform injects.
#[derive(Deserialize, Debug, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawFaults {
    pub api_latency: Option<TimeDist>,
    pub api_error_rate: Option<Spanned<Probability>>,
    pub api_busy_rate: Option<Spanned<Probability>>,
    pub token_lifetime: Option<Spanned<Dur>>,
    pub callback_delay: Option<TimeDist>,
    pub callback_drop_rate: Option<Probability>,
    pub callback_duplicate_rate: Option<Probability>,
}

/// `[target]`: where the live engine sends its traffic.
#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
pub(super) struct RawTarget {
    pub url: Option<Spanned<String>>,
    pub corpid: Option<String>,
    pub corpsecret: Option<String>,
}

/// `[gates]`: metric path = condition, in file order.
#[derive(Debug, Default)]
pub(super) struct RawGates(pub Vec<(Spanned<String>, Spanned<toml::Value>)>);

impl<'de> Deserialize<'de> for RawGates {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = RawGates;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a table of \"metric\" = \"condition\", like \"first_response.p95\" = \"< 60s\"")
            }
            fn visit_map<A: de::MapAccess<'de>>(self, mut map: A) -> Result<RawGates, A::Error> {
                let mut out = Vec::new();
                // any value: a condition that is not a string is named with
                // its key's place (see `gate_conditions`)
                while let Some(entry) = map.next_entry::<Spanned<String>, Spanned<toml::Value>>()? {
                    out.push(entry);
                }
                Ok(RawGates(out))
            }
        }
        d.deserialize_map(V)
    }
}

#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
pub(super) struct RawAccount {
    pub name: Spanned<String>,
    pub policy: Option<PolicyKind>,
    pub prefer_last_agent: Option<bool>,
    pub prefer_last_within: Option<Dur>,
    pub queue_limit: Option<u32>,
    pub api_managed: Option<bool>,
    pub bot: Option<Spanned<RawBot>>,
}

/// A table's fields, read from a table only. serde's derive also reads a
/// struct from an array, by position, and the TOML reader drops elements
/// past the fields: `transfer = ["aftersales", 0.25, "30s", "junk"]` and a
/// profile point `["0h", 1.0, "30m", 10.0]` ran, the extra elements gone
/// (found by probing). `pair` lets the two-element form through where the
/// format documents it (a shift `["13h", "18h"]`), at exactly two.
macro_rules! table {
    ($(#[$doc:meta])* $name:ident, $what:literal, pair: $pair:tt, { $($field:ident: $ty:ty),* $(,)? }) => {
        $(#[$doc])*
        #[derive(Debug)]
        pub(super) struct $name {
            $(pub $field: $ty),*
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                #[derive(Deserialize)]
                #[serde(deny_unknown_fields)]
                struct Fields {
                    $($field: $ty),*
                }
                struct V;
                impl<'de> Visitor<'de> for V {
                    type Value = Fields;
                    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                        f.write_str($what)
                    }
                    fn visit_map<A: de::MapAccess<'de>>(self, map: A) -> Result<Fields, A::Error> {
                        Fields::deserialize(de::value::MapAccessDeserializer::new(map))
                    }
                    table!(@pair $pair, Fields, $($field),*);
                }
                let Fields { $($field),* } = d.deserialize_any(V)?;
                Ok($name { $($field),* })
            }
        }
    };
    (@pair false, $fields:ident, $($field:ident),*) => {};
    (@pair true, $fields:ident, $a:ident, $b:ident) => {
        fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<$fields, A::Error> {
            let $a = seq.next_element()?.ok_or_else(|| de::Error::invalid_length(0, &self))?;
            let $b = seq.next_element()?.ok_or_else(|| de::Error::invalid_length(1, &self))?;
            let mut n = 2;
            while seq.next_element::<de::IgnoredAny>()?.is_some() {
                n += 1;
            }
            if n > 2 {
                return Err(de::Error::invalid_length(n, &self));
            }
            Ok($fields { $a, $b })
        }
    };
}

table!(
    /// `[account.bot]`: the account's bot tier (智能助手).
    RawBot, "a table like `[account.bot]` with reply_delay, resolve, turns", pair: false, {
        reply_delay: TimeDist,
        resolve: Option<Probability>,
        turns: Option<Spanned<CountDist>>,
    }
);

table!(
    /// `transfer = { to, share, after }` of an `[[agents]]` group (转接).
    RawTransfer, "a table like { to = \"…\", share = 0.2, after = \"30s\" }", pair: false, {
        to: Spanned<String>,
        share: Probability,
        after: Option<TimeDist>,
    }
);

table!(
    /// One rule of an entry's `route`: the first that matches chooses the account.
    RawRoute, "a table like { account = \"…\", returning = true, share = 0.5 }", pair: false, {
        account: Spanned<String>,
        returning: Option<bool>,
        share: Option<Probability>,
    }
);

#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
pub(super) struct RawAgents {
    pub account: Option<Spanned<String>>,
    pub accounts: Option<Spanned<Vec<Spanned<String>>>>,
    pub transfer: Option<Spanned<RawTransfer>>,
    pub group: Option<Spanned<String>>,
    pub count: Spanned<u32>,
    pub max_concurrent: Option<Spanned<u32>>,
    pub reply_delay: TimeDist,
    pub slowdown: Option<NonNegative>,
    pub wrap_up: Option<TimeDist>,
    pub online: Option<Spanned<Vec<Spanned<RawShift>>>>,
}

#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
pub(super) struct RawEntry {
    pub name: Option<Spanned<String>>,
    pub scene: Spanned<Scene>,
    pub account: Option<Spanned<String>>,
    pub rate: Spanned<RateValue>,
    pub profile: Option<Spanned<Vec<Spanned<RawPoint>>>>,
    pub returning: Option<Probability>,
    pub messages: Option<Spanned<CountDist>>,
    pub think: Option<TimeDist>,
    pub patience: Option<TimeDist>,
    pub mix: Option<Mix>,
    pub route: Option<Spanned<Vec<Spanned<RawRoute>>>>,
}

/// How an account chooses among its agents with a free slot.
#[derive(Deserialize, Serialize, Debug, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "snake_case", remote = "Self")]
pub enum PolicyKind {
    /// 轮流接待: a fixed cyclic order; the next agent after the last one assigned.
    RoundRobin,
    /// 空闲接待: fewest current sessions; ties to the oldest last assignment.
    IdleFirst,
    /// Most current sessions still below the cap: packs agents.
    FillFirst,
}

by_name_only!(PolicyKind);
serialize_as_derived!(PolicyKind);

impl PolicyKind {
    /// The name used in scenario files.
    pub fn as_str(self) -> &'static str {
        match self {
            PolicyKind::RoundRobin => "round_robin",
            PolicyKind::IdleFirst => "idle_first",
            PolicyKind::FillFirst => "fill_first",
        }
    }
}

/// The entry point a customer came from (the `scene` of a contact way).
#[derive(Deserialize, Serialize, Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[serde(rename_all = "snake_case", remote = "Self")]
pub enum Scene {
    /// 视频号 WeChat Channels.
    Channels,
    /// 搜一搜 Search.
    Search,
    /// 支付凭证 payment receipt.
    Payment,
    /// 小程序 mini program.
    Miniprogram,
    /// 公众号 official account.
    OfficialAccount,
    /// A web page (H5).
    Web,
    /// A native app.
    App,
    /// An offline QR code.
    OfflineQr,
}

by_name_only!(Scene);
serialize_as_derived!(Scene);

impl Scene {
    /// The name used in scenario files and reports.
    pub fn as_str(self) -> &'static str {
        match self {
            Scene::Channels => "channels",
            Scene::Search => "search",
            Scene::Payment => "payment",
            Scene::Miniprogram => "miniprogram",
            Scene::OfficialAccount => "official_account",
            Scene::Web => "web",
            Scene::App => "app",
            Scene::OfflineQr => "offline_qr",
        }
    }
}

/// A duration in microseconds, written as a string with a unit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Dur(pub u64);

impl<'de> Deserialize<'de> for Dur {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Dur;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a duration string like \"30s\", \"5m\" or \"8h\"")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Dur, E> {
                parse_duration(v).map(Dur).map_err(E::custom)
            }
        }
        d.deserialize_any(V)
    }
}

/// A seed: a TOML integer, or a string of digits for the seeds above
/// 2⁶³ − 1, which TOML's integers do not reach but `--seed` and a
/// summary's `seed` do.
#[derive(Debug, Clone, Copy)]
pub(super) struct Seed(pub u64);

impl<'de> Deserialize<'de> for Seed {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Seed;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(
                    f,
                    "a whole number from 0 to {} (above 2^63 - 1, as a string: \"{}\")",
                    u64::MAX,
                    u64::MAX
                )
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Seed, E> {
                u64::try_from(v).map(Seed).map_err(|_| E::invalid_value(de::Unexpected::Signed(v), &self))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Seed, E> {
                Ok(Seed(v))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Seed, E> {
                let digits = !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit());
                match v.parse() {
                    Ok(n) if digits => Ok(Seed(n)),
                    _ => Err(E::invalid_value(de::Unexpected::Str(v), &self)),
                }
            }
        }
        d.deserialize_any(V)
    }
}

/// An arrival rate, written `"120/min"`.
#[derive(Debug, Clone, Copy)]
pub(super) struct RateValue(pub Rate);

impl<'de> Deserialize<'de> for RateValue {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = RateValue;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a rate string like \"2/s\", \"120/min\" or \"600/h\"")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<RateValue, E> {
                Rate::parse(v).map(RateValue).map_err(E::custom)
            }
        }
        d.deserialize_any(V)
    }
}

fn finite_number<'de, D: Deserializer<'de>>(d: D, what: &'static str) -> Result<f64, D::Error> {
    struct V(&'static str);
    impl Visitor<'_> for V {
        type Value = f64;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str(self.0)
        }
        fn visit_i64<E: de::Error>(self, v: i64) -> Result<f64, E> {
            Ok(v as f64)
        }
        fn visit_u64<E: de::Error>(self, v: u64) -> Result<f64, E> {
            Ok(v as f64)
        }
        fn visit_f64<E: de::Error>(self, v: f64) -> Result<f64, E> {
            if v.is_finite() { Ok(v) } else { Err(E::custom(format!("expected {}, got {v}", self.0))) }
        }
    }
    d.deserialize_any(V(what))
}

/// A share in `[0, 1]`.
#[derive(Debug, Clone, Copy)]
pub(super) struct Probability(pub f64);

impl<'de> Deserialize<'de> for Probability {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let v = finite_number(d, "a share between 0 and 1")?;
        if (0.0..=1.0).contains(&v) {
            Ok(Probability(v))
        } else {
            Err(de::Error::custom(format!("expected a share between 0 and 1, got {v}")))
        }
    }
}

/// A finite number ≥ 0.
#[derive(Debug, Clone, Copy)]
pub(super) struct NonNegative(pub f64);

impl<'de> Deserialize<'de> for NonNegative {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let v = finite_number(d, "a number ≥ 0")?;
        if v >= 0.0 {
            Ok(NonNegative(v))
        } else {
            Err(de::Error::custom(format!("expected a number ≥ 0, got {v}")))
        }
    }
}

table!(
    /// A point of an entry's `profile`.
    RawPoint, "a point like { at = \"2h\", factor = 1.5 } or [\"2h\", 1.5]", pair: true, {
        at: Dur,
        factor: NonNegative,
    }
);

table!(
    /// A shift of an `[[agents]]` group's `online`.
    RawShift, "a shift like { from = \"9h\", to = \"17h\" } or [\"9h\", \"17h\"]", pair: true, {
        from: Dur,
        to: Dur,
    }
);

/// Customer message types, as WeCom's `msgtype` names them.
pub const MSG_TYPES: [&str; 9] =
    ["text", "image", "voice", "video", "file", "location", "link", "business_card", "miniprogram"];

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMix {
    text: Option<Probability>,
    image: Option<Probability>,
    voice: Option<Probability>,
    video: Option<Probability>,
    file: Option<Probability>,
    location: Option<Probability>,
    link: Option<Probability>,
    business_card: Option<Probability>,
    miniprogram: Option<Probability>,
}

/// Shares of each message type, indexed like [`MSG_TYPES`]; they sum to 1.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Mix(pub [f64; 9]);

impl Default for Mix {
    fn default() -> Self {
        let mut w = [0.0; 9];
        w[0] = 1.0;
        Mix(w)
    }
}

impl<'de> Deserialize<'de> for Mix {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let r = RawMix::deserialize(d)?;
        let w =
            [r.text, r.image, r.voice, r.video, r.file, r.location, r.link, r.business_card, r.miniprogram]
                .map(|p| p.map_or(0.0, |p| p.0));
        let sum: f64 = w.iter().sum();
        if (sum - 1.0).abs() > 1e-6 {
            return Err(de::Error::custom(format!(
                "the shares of `mix` must sum to 1 (within 1e-6), but they sum to {sum}"
            )));
        }
        Ok(Mix(w))
    }
}
