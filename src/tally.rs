//! Measured state that adds up: what lets shards of one run be merged
//! without merge code per metric.
//!
//! A run's accumulators (the metrics' counters and histograms, the series'
//! per-interval sums, the live engine's counts) are serialised with serde
//! once their instantaneous state is settled (see `Metrics::state`), and
//! [`merge`] combines such JSON trees structurally: numbers add up
//! (relative to a freshly built state, so that configuration a fresh state
//! already holds — a threshold, a count of agents — stays as it is), flags
//! are set if any shard set them, strings must agree, arrays and maps merge
//! element by element, and histograms (objects tagged [`HIST_TAG`]) merge
//! as HDR histograms. A counter or histogram added to the metrics later is
//! merged by the same rules with no code here; the summary is then
//! recomputed from the merged state by the code every run uses.

use std::collections::BTreeMap;

use base64::Engine as _;
use hdrhistogram::Histogram;
use hdrhistogram::serialization::{Deserializer, Serializer, V2DeflateSerializer};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Number, Value};

/// The key that marks a serialised histogram: `{"hdr": BASE64, "sum":
/// "DECIMAL", "max": N}` (`hdr` empty for no samples; `sum` a string as it
/// may pass 2⁶⁴).
pub const HIST_TAG: &str = "hdr";

/// `h` in the compressed V2 format, base64-encoded.
pub fn encode_hist(h: &Histogram<u64>) -> String {
    let mut bytes = Vec::new();
    V2DeflateSerializer::new().serialize(h, &mut bytes).expect("serializing into memory cannot fail");
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// Decode what [`encode_hist`] wrote (or any V2 / V2-deflate histogram).
pub fn decode_hist(text: &str) -> Result<Histogram<u64>, String> {
    let bytes = hist_text_bytes(text)?;
    Deserializer::new().deserialize(&mut bytes.as_slice()).map_err(|e| format!("not an HdrHistogram: {e:?}"))
}

/// A histogram with its exact sum and maximum, as a tagged JSON object.
pub fn hist_value(h: Option<&Histogram<u64>>, sum: u128, max: u64) -> Value {
    hist_value_of(h.filter(|h| !h.is_empty()).map(encode_hist), sum, max)
}

/// [`hist_value`] of a histogram serialised already (`None` without
/// samples): see `hdr::Counts::to_v2_deflate`.
pub fn hist_value_serialized(bytes: Option<Vec<u8>>, sum: u128, max: u64) -> Value {
    hist_value_of(bytes.map(|b| base64::engine::general_purpose::STANDARD.encode(b)), sum, max)
}

fn hist_value_of(text: Option<String>, sum: u128, max: u64) -> Value {
    let mut m = Map::new();
    m.insert(HIST_TAG.into(), Value::String(text.unwrap_or_default()));
    m.insert("sum".into(), Value::String(sum.to_string()));
    m.insert("max".into(), Value::from(max));
    Value::Object(m)
}

/// The parts of a tagged histogram object: the histogram (`None` without
/// samples), the sum and the maximum.
pub fn hist_parts(v: &Value) -> Result<(Option<Histogram<u64>>, u128, u64), String> {
    let text = v.get(HIST_TAG).and_then(Value::as_str).ok_or("a histogram without its \"hdr\"")?;
    let h = if text.is_empty() { None } else { Some(decode_hist(text)?) };
    let (sum, max) = hist_totals(v)?;
    Ok((h, sum, max))
}

/// [`hist_parts`] with the histogram left serialised (its bytes, `None`
/// without samples), for a reader that counts them itself
/// (`hdr::Counts::add_serialized`).
pub fn hist_bytes(v: &Value) -> Result<(Option<Vec<u8>>, u128, u64), String> {
    let text = v.get(HIST_TAG).and_then(Value::as_str).ok_or("a histogram without its \"hdr\"")?;
    let bytes = if text.is_empty() { None } else { Some(hist_text_bytes(text)?) };
    let (sum, max) = hist_totals(v)?;
    Ok((bytes, sum, max))
}

/// The bytes of a serialised histogram's base64 text.
fn hist_text_bytes(text: &str) -> Result<Vec<u8>, String> {
    base64::engine::general_purpose::STANDARD.decode(text.trim()).map_err(|e| format!("not base64: {e}"))
}

fn hist_totals(v: &Value) -> Result<(u128, u64), String> {
    let sum = match v.get("sum") {
        Some(Value::String(s)) => s.parse::<u128>().map_err(|_| format!("a histogram sum \"{s}\""))?,
        Some(Value::Number(n)) => u128::from(n.as_u64().ok_or("a histogram sum that is not a count")?),
        _ => 0,
    };
    let max = v.get("max").and_then(Value::as_u64).unwrap_or(0);
    Ok((sum, max))
}

/// Why two states could not be merged: the JSON path and what differs.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{path}: {what}")]
pub struct MergeError {
    /// Where, as `/a/b/3`.
    pub path: String,
    /// What.
    pub what: String,
}

fn err(path: &str, what: impl Into<String>) -> MergeError {
    MergeError { path: if path.is_empty() { "/".into() } else { path.into() }, what: what.into() }
}

/// Merge `parts` (states of shards) relative to `fresh` (the state a run
/// starts with): see the module's rules.
pub fn merge(fresh: &Value, parts: &[&Value]) -> Result<Value, MergeError> {
    merge_at("", Some(fresh), parts)
}

fn merge_at(path: &str, fresh: Option<&Value>, parts: &[&Value]) -> Result<Value, MergeError> {
    let Some(first) = parts.first() else {
        return Ok(fresh.cloned().unwrap_or(Value::Null));
    };
    if parts.iter().all(|v| v.is_null()) {
        return Ok(Value::Null);
    }
    match first {
        Value::Object(o) if o.contains_key(HIST_TAG) => merge_hists(path, parts),
        Value::Object(_) => {
            let mut keys: Vec<&String> = Vec::new();
            for p in parts {
                let Value::Object(o) = p else {
                    return Err(err(path, "an object in one shard, not in another"));
                };
                keys.extend(o.keys());
            }
            keys.sort();
            keys.dedup();
            let mut out = Map::new();
            for k in keys {
                let sub: Vec<&Value> = parts.iter().filter_map(|p| p.get(k)).collect();
                let f = fresh.and_then(|f| f.get(k));
                out.insert(k.clone(), merge_at(&format!("{path}/{k}"), f, &sub)?);
            }
            Ok(Value::Object(out))
        }
        Value::Array(_) => {
            let mut len = 0;
            for p in parts {
                let Value::Array(a) = p else { return Err(err(path, "a list in one shard, not in another")) };
                len = len.max(a.len());
            }
            let items = (0..len)
                .map(|i| {
                    let sub: Vec<&Value> = parts.iter().filter_map(|p| p.get(i)).collect();
                    merge_at(&format!("{path}/{i}"), fresh.and_then(|f| f.get(i)), &sub)
                })
                .collect::<Result<Vec<_>, _>>()?;
            Ok(Value::Array(items))
        }
        Value::Number(_) | Value::Null => merge_numbers(path, fresh, parts),
        Value::Bool(_) => {
            let base = fresh.and_then(Value::as_bool).unwrap_or(false);
            let mut out = base;
            for p in parts {
                let b = p.as_bool().ok_or_else(|| err(path, "a flag in one shard, not in another"))?;
                if b != base {
                    out = b;
                }
            }
            Ok(Value::Bool(out))
        }
        Value::String(s) => {
            if let Some(other) = parts.iter().find(|p| p.as_str() != Some(s)) {
                return Err(err(path, format!("\"{s}\" in one shard, {other} in another")));
            }
            Ok(Value::String(s.clone()))
        }
    }
}

/// `fresh + Σ (part − fresh)`: a counter (fresh 0) is summed, a setting
/// every shard kept as it started with stays. Integers stay exact.
fn merge_numbers(path: &str, fresh: Option<&Value>, parts: &[&Value]) -> Result<Value, MergeError> {
    let nums: Vec<Option<&Number>> = parts
        .iter()
        .map(|p| match p {
            Value::Number(n) => Ok(Some(n)),
            Value::Null => Ok(None),
            _ => Err(err(path, "a number in one shard, not in another")),
        })
        .collect::<Result<_, _>>()?;
    let present: Vec<&Number> = nums.iter().flatten().copied().collect();
    if present.is_empty() {
        return Ok(Value::Null);
    }
    let base = fresh.and_then(Value::as_number);
    let all_int = present.iter().chain(base.iter()).all(|n| n.is_u64() || n.is_i64());
    if all_int {
        let b = base.and_then(Number::as_i128).unwrap_or(0);
        let mut total = b;
        for n in &present {
            total += n.as_i128().expect("an integer") - b;
        }
        return Ok(if let Ok(u) = u64::try_from(total) {
            Value::from(u)
        } else if let Ok(i) = i64::try_from(total) {
            Value::from(i)
        } else {
            return Err(err(path, format!("{total} overflows")));
        });
    }
    let b = base.and_then(Number::as_f64).unwrap_or(0.0);
    // a single shard's value is kept as it is, bit for bit
    if present.len() == 1 {
        return Ok(Value::Number(present[0].clone()));
    }
    let total = b + present.iter().map(|n| n.as_f64().unwrap_or(0.0) - b).sum::<f64>();
    Number::from_f64(total).map(Value::Number).ok_or_else(|| err(path, "not a finite number"))
}

fn merge_hists(path: &str, parts: &[&Value]) -> Result<Value, MergeError> {
    let mut hist: Option<Histogram<u64>> = None;
    let (mut sum, mut max) = (0u128, 0u64);
    for p in parts {
        let (h, s, m) = hist_parts(p).map_err(|e| err(path, e))?;
        sum += s;
        max = max.max(m);
        if let Some(h) = h {
            match &mut hist {
                None => hist = Some(h),
                Some(acc) => acc.add(&h).map_err(|e| err(path, format!("histograms do not add: {e:?}")))?,
            }
        }
    }
    Ok(hist_value(hist.as_ref(), sum, max))
}

/// A record kept per agent, added up typed by [`merge`]'s rules: a
/// million agents as JSON trees took gigabytes to merge (`metrics::StateMerge`).
pub trait Adds {
    /// Add `part` (one shard's) into `self` (the sum so far, begun as
    /// `fresh`) as [`merge`] adds numbers and flags relative to `fresh`;
    /// what is wrong otherwise.
    fn add(&mut self, fresh: &Self, part: &Self) -> Result<(), String>;
}

/// `acc + (part − fresh)` without overflow in between: the rule of
/// `merge_numbers`, one shard at a time.
fn add_int<N: Copy + Into<i128> + TryFrom<i128>>(acc: &mut N, fresh: N, part: N) -> Result<(), String> {
    let total = (*acc).into() + part.into() - fresh.into();
    *acc = N::try_from(total).map_err(|_| format!("{total} overflows"))?;
    Ok(())
}

impl Adds for u16 {
    fn add(&mut self, fresh: &u16, part: &u16) -> Result<(), String> {
        add_int(self, *fresh, *part)
    }
}

impl Adds for u32 {
    fn add(&mut self, fresh: &u32, part: &u32) -> Result<(), String> {
        add_int(self, *fresh, *part)
    }
}

impl Adds for u64 {
    fn add(&mut self, fresh: &u64, part: &u64) -> Result<(), String> {
        add_int(self, *fresh, *part)
    }
}

impl Adds for u128 {
    fn add(&mut self, fresh: &u128, part: &u128) -> Result<(), String> {
        *self = self.checked_add(*part).and_then(|s| s.checked_sub(*fresh)).ok_or("a sum that overflows")?;
        Ok(())
    }
}

impl Adds for bool {
    /// Set if any shard set it (relative to `fresh`), as `merge` does.
    fn add(&mut self, fresh: &bool, part: &bool) -> Result<(), String> {
        if part != fresh {
            *self = *part;
        }
        Ok(())
    }
}

/// Add a shard's list of records (`part`) into `acc`, element by element,
/// relative to `fresh`: all three as long as the scenario has agents (a
/// shorter list is refused, where a merge of trees made a list as long as
/// the longest and left the summary to index past it).
pub fn add_list<T: Adds>(path: &str, acc: &mut [T], fresh: &[T], part: &[T]) -> Result<(), MergeError> {
    if part.len() != fresh.len() || acc.len() != fresh.len() {
        return Err(err(path, format!("{} in one shard, {} in the scenario", part.len(), fresh.len())));
    }
    for (i, ((a, f), p)) in acc.iter_mut().zip(fresh).zip(part).enumerate() {
        a.add(f, p).map_err(|e| err(&format!("{path}/{i}"), e))?;
    }
    Ok(())
}

/// A map of histograms keyed by name, tagged, for a state file.
pub fn hist_map_value(hists: &BTreeMap<String, Histogram<u64>>) -> Value {
    Value::Object(hists.iter().map(|(k, h)| (k.clone(), hist_value(Some(h), 0, h.max()))).collect())
}

/// One of `count` processes sharing a run, a sweep or a plan (`--shard
/// I/N`); `0/1` is the whole.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Shard {
    /// Which one, from 0.
    pub index: u32,
    /// How many.
    pub count: u32,
}

impl Default for Shard {
    fn default() -> Shard {
        Shard::WHOLE
    }
}

impl Shard {
    /// The whole run, unsharded.
    pub const WHOLE: Shard = Shard { index: 0, count: 1 };

    /// Parse `I/N` (0 ≤ I < N).
    pub fn parse(text: &str) -> Result<Shard, String> {
        let bad = || format!("--shard {text}: expected I/N with 0 ≤ I < N, like 0/4");
        let (i, n) = text.split_once('/').ok_or_else(bad)?;
        let (index, count) = (i.trim().parse().map_err(|_| bad())?, n.trim().parse().map_err(|_| bad())?);
        Shard::new(index, count).ok_or_else(bad)
    }

    /// Shard `index` of `count`, if `index < count` (and `count` at most
    /// [`MAX_SHARDS`]).
    pub fn new(index: u32, count: u32) -> Option<Shard> {
        (index < count && count <= MAX_SHARDS).then_some(Shard { index, count })
    }

    /// Whether item `k` of a sequence dealt round-robin is this shard's.
    pub fn owns(&self, k: u64) -> bool {
        k % u64::from(self.count) == u64::from(self.index)
    }

    /// Whether this is a part of something larger.
    pub fn is_part(&self) -> bool {
        self.count > 1
    }
}

impl std::fmt::Display for Shard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

/// Most shards of one run.
pub const MAX_SHARDS: u32 = 10_000;

/// Everything a run leaves for a merge: how it ended and its settled
/// state (the metrics', and a live run's own). The metrics' state (`M`) is
/// the run's own as it writes it (`metrics::Settled`), and skipped, then
/// read typed, by the merge (`crate::merge::merge_run`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunState<M> {
    /// Scenario time when it stopped [µs].
    pub end_us: u64,
    /// Sessions that arrived, warm-up included.
    pub sessions: u64,
    /// Most sessions in flight at once.
    pub peak_in_flight: u64,
    /// Arrivals refused at the bound on sessions in flight.
    #[serde(default)]
    pub shed: u64,
    /// Stopped early.
    pub interrupted: bool,
    /// The simulator stopped at its clock's horizon.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub horizon: bool,
    /// Wall time of a live run [s].
    pub wall_s: Option<f64>,
    /// The metrics' settled state (`Metrics::state`).
    pub metrics: M,
    /// A live run's own state (`live::state::LiveState`).
    pub live: Option<Value>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn counters_add_settings_stay_strings_must_agree() {
        let fresh = json!({"n": 0, "t": 20, "x": 0.0, "name": "a", "on": false, "v": []});
        let a = json!({"n": 3, "t": 20, "x": 0.5, "name": "a", "on": true, "v": [1, 2]});
        let b = json!({"n": 4, "t": 20, "x": 0.25, "name": "a", "on": false, "v": [1]});
        let m = merge(&fresh, &[&a, &b]).unwrap();
        assert_eq!(m, json!({"n": 7, "t": 20, "x": 0.75, "name": "a", "on": true, "v": [2, 2]}));
        let c = json!({"n": 1, "t": 20, "x": 0.0, "name": "b", "on": false, "v": []});
        let e = merge(&fresh, &[&a, &c]).unwrap_err();
        assert_eq!(e.path, "/name");
    }

    /// A record per agent added up typed, as `merge` adds up its tree.
    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    struct Rec {
        n: u64,
        t: u16,
        w: u128,
        on: bool,
    }

    impl Adds for Rec {
        fn add(&mut self, fresh: &Rec, part: &Rec) -> Result<(), String> {
            let Rec { n, t, w, on } = part;
            self.n.add(&fresh.n, n)?;
            self.t.add(&fresh.t, t)?;
            self.w.add(&fresh.w, w)?;
            self.on.add(&fresh.on, on)
        }
    }

    #[test]
    fn records_add_up_as_their_trees_merge() {
        let rec = |n, t, w, on| Rec { n, t, w, on };
        let fresh = vec![rec(0, 20, 0, false), rec(0, 3, 0, true), rec(5, 0, 1, false)];
        let parts = [
            vec![rec(4, 20, 7, true), rec(1, 3, 0, true), rec(5, 0, 1, false)],
            // a setting one shard changed, a flag one shard cleared
            vec![rec(2, 21, 1 << 40, false), rec(0, 3, 9, false), rec(9, 0, 3, true)],
            vec![rec(0, 20, 0, false), rec(0, 2, 0, true), rec(5, 0, 1, false)],
        ];
        let mut sum = fresh.clone();
        for p in &parts {
            add_list("/agents", &mut sum, &fresh, p).unwrap();
        }
        let tree = |v: &Vec<Rec>| serde_json::to_value(v).unwrap();
        let trees: Vec<Value> = parts.iter().map(tree).collect();
        let merged = merge(&tree(&fresh), &trees.iter().collect::<Vec<_>>()).unwrap();
        assert_eq!(tree(&sum), merged);
        assert_eq!((sum[1].w, sum[0].w), (9, 7 + (1 << 40)));
        let mut wide = u128::from(u64::MAX);
        wide.add(&0, &(1 << 100)).unwrap();
        assert_eq!(wide, u128::from(u64::MAX) + (1 << 100), "exact past 2⁶⁴");
        assert!(wide.add(&0, &u128::MAX).is_err());
        assert_eq!((sum[1].on, sum[0].t, sum[1].t), (false, 21, 2));
        // a shorter list, or a sum out of range, is said where
        let e = add_list("/agents", &mut sum.clone(), &fresh, &parts[0][..2]).unwrap_err();
        assert_eq!((e.path.as_str(), e.what.as_str()), ("/agents", "2 in one shard, 3 in the scenario"));
        let big = vec![rec(0, u16::MAX, 0, false), rec(0, 3, 0, true), rec(5, 0, 1, false)];
        let e = add_list("/agents", &mut sum, &fresh, &big).unwrap_err();
        assert_eq!((e.path.as_str(), e.what.as_str()), ("/agents/0", "65536 overflows"));
    }

    #[test]
    fn histograms_merge_as_histograms() {
        let mut h1 = Histogram::<u64>::new_with_bounds(1, 1_000_000, 3).unwrap();
        let mut h2 = h1.clone();
        for v in 1..=100 {
            h1.record(v).unwrap();
            h2.record(v * 1000).unwrap();
        }
        let a = hist_value(Some(&h1), 5050, 100);
        let b = hist_value(Some(&h2), 5_050_000, 100_000);
        let empty = hist_value(None, 0, 0);
        let m = merge(&empty, &[&a, &b, &empty]).unwrap();
        let (h, sum, max) = hist_parts(&m).unwrap();
        let h = h.unwrap();
        assert_eq!((h.len(), sum, max), (200, 5_055_050, 100_000));
        assert_eq!(h.value_at_quantile(0.5), h1.highest_equivalent(100));
    }
}
