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

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::io::Read as _;

use base64::Engine as _;
use hdrhistogram::Histogram;
use hdrhistogram::serialization::{Deserializer, Serializer, V2DeflateSerializer};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Number, Value};

use crate::hdr::{V2_COOKIE, V2_DEFLATE_COOKIE, V2_HEADER, be_u32};

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

/// Decode what [`encode_hist`] wrote (or any V2 / V2-deflate histogram
/// whose counts array is at most [`MOST_COUNTS`] long).
pub fn decode_hist(text: &str) -> Result<Histogram<u64>, String> {
    let bytes = hist_text_bytes(text)?;
    let v2 = checked_v2(&bytes)?;
    Deserializer::new().deserialize(&mut &v2[..]).map_err(|e| format!("not an HdrHistogram: {e:?}"))
}

/// The counts all histograms of one file may have together: kfsim's widest
/// layout (35,840 counts) ten thousand times, more than a run at the
/// scenario bounds keeps (two per entry, one per account, a few dozen
/// more), about 2.7 GiB. Each histogram allocates its layout's counts
/// whatever its payload: 3000 empty ones of a wide layout, 225 KB of
/// `histograms.json`, took 20 GB (found by probing).
pub const MOST_FILE_COUNTS: usize = 10_000 * 35_840;

/// Decode the histograms `texts` of one file ([`decode_hist`] each), their
/// counts together at most [`MOST_FILE_COUNTS`]; an error names the key.
pub fn decode_hists(
    texts: impl IntoIterator<Item = (String, String)>,
) -> Result<std::collections::BTreeMap<String, Histogram<u64>>, String> {
    decode_hists_within(texts, MOST_FILE_COUNTS)
}

fn decode_hists_within(
    texts: impl IntoIterator<Item = (String, String)>,
    most: usize,
) -> Result<std::collections::BTreeMap<String, Histogram<u64>>, String> {
    let mut room = most;
    let mut out = std::collections::BTreeMap::new();
    for (key, text) in texts {
        let named = |e: String| format!("\"{key}\": {e}");
        let bytes = hist_text_bytes(&text).map_err(named)?;
        let v2 = checked_v2(&bytes).map_err(named)?;
        // told by the header, before the counts are allocated
        let counts = layout_counts(&v2).map_err(named)?;
        room = room.checked_sub(counts).ok_or_else(|| {
            named(format!("past the {most} counts the histograms of one file kfsim writes hold together"))
        })?;
        let h = Deserializer::new()
            .deserialize(&mut &v2[..])
            .map_err(|e| named(format!("not an HdrHistogram: {e:?}")))?;
        out.insert(key, h);
    }
    Ok(out)
}

/// The longest counts array a histogram read from a file may have.
/// hdrhistogram allocates the array its header asks for (up to 48 × 2¹⁷
/// counts, 50 MB, at 5 significant digits) and a buffer of the length it
/// states (up to 4 GB) before reading a count, so a small crafted file
/// could take gigabytes. kfsim's widest layout (1 µs to 10¹³ µs at 3
/// digits) has 35,840 counts; 2²⁰ (8 MB) leaves a margin of 29 and admits
/// any layout of up to 4 digits over the whole u64 range, as other tools
/// may write.
pub const MOST_COUNTS: usize = 1 << 20;

/// hdrhistogram's LEB128 takes at most 9 bytes a count (a run of zeros
/// takes one number), so a payload longer than this for its layout is
/// not one hdrhistogram wrote.
fn most_v2_bytes(counts: usize) -> usize {
    V2_HEADER + 9 * counts
}

/// The plain V2 bytes of a V2 or V2-deflate histogram, checked so that
/// hdrhistogram's deserializer allocates no more than [`MOST_COUNTS`]
/// implies and cannot panic.
fn checked_v2(bytes: &[u8]) -> Result<Cow<'_, [u8]>, String> {
    match be_u32(bytes, 0) {
        Some(V2_COOKIE) => {
            let len = checked_payload(bytes)?;
            Ok(Cow::Borrowed(&bytes[..V2_HEADER + len]))
        }
        Some(V2_DEFLATE_COOKIE) => {
            let stated = be_u32(bytes, 4).ok_or("a truncated histogram")? as usize;
            let rest = &bytes[8.min(bytes.len())..];
            let body = rest.get(..stated).ok_or_else(|| {
                format!("a deflated histogram stating {stated} bytes, {} present", rest.len())
            })?;
            let mut z = flate2::read::ZlibDecoder::new(body);
            let mut v2 = Vec::with_capacity(V2_HEADER);
            let inflate = |e: std::io::Error| format!("a histogram that does not inflate: {e}");
            // the header first: it says how far inflating may go
            (&mut z).take(V2_HEADER as u64).read_to_end(&mut v2).map_err(inflate)?;
            if be_u32(&v2, 0) != Some(V2_COOKIE) && v2.len() >= 4 {
                return Err("a deflated histogram that is not an HdrHistogram V2".into());
            }
            let most = most_v2_bytes(layout_counts(&v2)?);
            z.take((most - V2_HEADER) as u64 + 1).read_to_end(&mut v2).map_err(inflate)?;
            if v2.len() > most {
                return Err(format!(
                    "a deflated histogram inflating past the {most} bytes its layout can take"
                ));
            }
            let len = checked_payload(&v2)?;
            v2.truncate(V2_HEADER + len);
            Ok(Cow::Owned(v2))
        }
        Some(cookie) => Err(format!("not an HdrHistogram V2 (cookie {cookie:#010x})")),
        None => Err("a truncated histogram".into()),
    }
}

/// The payload length of plain V2 `v2`, checked against the bytes present
/// and the layout, and its counts checked for the one hdrhistogram cannot
/// take without overflowing.
fn checked_payload(v2: &[u8]) -> Result<usize, String> {
    let counts = layout_counts(v2)?;
    let len = be_u32(v2, 4).ok_or("a truncated histogram")? as usize;
    let present = v2.len() - V2_HEADER;
    if len > present {
        return Err(format!("a histogram stating {len} bytes of counts, {present} present"));
    }
    if V2_HEADER + len > most_v2_bytes(counts) {
        return Err(format!("a histogram of {len} bytes of counts, more than its {counts} counts can take"));
    }
    let mut payload = &v2[V2_HEADER..V2_HEADER + len];
    while let Some((raw, used)) = crate::hdr::varint(payload) {
        // zigzag of u64::MAX is i64::MIN, a run of zeros hdrhistogram
        // negates (a panic where overflow is checked)
        if raw == u64::MAX {
            return Err("a histogram with a count out of range".into());
        }
        payload = &payload[used..];
    }
    Ok(len)
}

/// The length of the counts array hdrhistogram allocates for the layout in
/// V2 header `v2` (or more, never less), if it is a layout and that
/// length is at most [`MOST_COUNTS`].
fn layout_counts(v2: &[u8]) -> Result<usize, String> {
    let header = v2.get(..V2_HEADER).ok_or_else(|| {
        format!("a truncated histogram: {} of the {V2_HEADER} bytes of its header", v2.len())
    })?;
    let word = |at: usize| u64::from_be_bytes(header[at..at + 8].try_into().expect("8 bytes"));
    let digits = be_u32(header, 12).expect("in the header");
    let (low, high) = (word(16), word(24));
    if digits > 5 || low == 0 || low > u64::MAX / 2 || high < 2 * low {
        return Err(format!("not a histogram layout: {digits} significant digits from {low} to {high}"));
    }
    // as `Histogram::new_with_bounds`, in integers: its unit magnitude (a
    // float's log₂, rounded up for some `low`) is at least this one, and
    // a greater one only means fewer buckets
    let unit = 63 - low.leading_zeros();
    let sub_mag = (2 * 10u32.pow(digits)).next_power_of_two().trailing_zeros();
    if unit + sub_mag > 63 {
        return Err(format!("not a histogram layout: {digits} significant digits from {low}"));
    }
    // `buckets_to_cover(high)`
    let mut untrackable = 1u64 << (unit + sub_mag);
    let mut buckets = 1usize;
    while untrackable <= high {
        if untrackable > u64::MAX / 2 {
            buckets += 1;
            break;
        }
        untrackable <<= 1;
        buckets += 1;
    }
    let counts = (buckets + 1) << (sub_mag - 1);
    if counts > MOST_COUNTS {
        return Err(format!(
            "a histogram of {counts} counts ({digits} significant digits from {low} to {high}), \
             past the {MOST_COUNTS} read"
        ));
    }
    Ok(counts)
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
#[serde(try_from = "RawShard")]
pub struct Shard {
    /// Which one, from 0.
    pub index: u32,
    /// How many.
    pub count: u32,
}

/// A [`Shard`] as a file gives it, checked as `--shard` is: a hand-edited
/// count of 10⁸ made a merge list every missing shard (10 GB), one of 0
/// merged three shards of nothing.
#[derive(Deserialize)]
struct RawShard {
    index: u32,
    count: u32,
}

impl TryFrom<RawShard> for Shard {
    type Error = String;
    fn try_from(r: RawShard) -> Result<Shard, String> {
        Shard::new(r.index, r.count).ok_or_else(|| {
            format!("shard {}/{}: expected I/N with 0 ≤ I < N ≤ {MAX_SHARDS}", r.index, r.count)
        })
    }
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
        let bad = || format!("--shard {text}: expected I/N with 0 ≤ I < N ≤ {MAX_SHARDS}, like 0/4");
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

    /// A count past the bound is refused naming the bound: `0/10001`
    /// was told only "0 ≤ I < N", which it meets (found by probing).
    #[test]
    fn a_shard_past_the_bound_is_told_the_bound() {
        assert_eq!(Shard::parse("3/10000").map(|s| s.to_string()), Ok("3/10000".to_owned()));
        let e = Shard::parse("0/10001").unwrap_err();
        assert!(e.contains("N ≤ 10000"), "{e}");
    }

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

    /// A V2 header: `payload` bytes of counts stated, of the layout
    /// `digits`, `low`, `high`.
    fn v2_header(payload: u32, digits: u32, low: u64, high: u64) -> Vec<u8> {
        let mut b = Vec::new();
        b.extend_from_slice(&V2_COOKIE.to_be_bytes());
        b.extend_from_slice(&payload.to_be_bytes());
        b.extend_from_slice(&0u32.to_be_bytes());
        b.extend_from_slice(&digits.to_be_bytes());
        b.extend_from_slice(&low.to_be_bytes());
        b.extend_from_slice(&high.to_be_bytes());
        b.extend_from_slice(&1f64.to_be_bytes());
        b
    }

    fn deflated(v2_parts: &[&[u8]], repeat_last: usize) -> Vec<u8> {
        use std::io::Write as _;
        let mut out = V2_DEFLATE_COOKIE.to_be_bytes().to_vec();
        out.extend_from_slice(&0u32.to_be_bytes());
        let mut z = flate2::write::ZlibEncoder::new(out, flate2::Compression::default());
        for (i, part) in v2_parts.iter().enumerate() {
            let times = if i + 1 == v2_parts.len() { repeat_last } else { 1 };
            for _ in 0..times {
                z.write_all(part).unwrap();
            }
        }
        let mut out = z.finish().unwrap();
        let len = (out.len() - 8) as u32;
        out[4..8].copy_from_slice(&len.to_be_bytes());
        out
    }

    fn decode_bytes(bytes: &[u8]) -> Result<Histogram<u64>, String> {
        decode_hist(&base64::engine::general_purpose::STANDARD.encode(bytes))
    }

    fn kfsim_widest() -> Histogram<u64> {
        Histogram::new_with_bounds(1, 10_000_000_000_000, 3).unwrap()
    }

    /// The histograms of one file are bounded together, by their headers
    /// before their counts are allocated: each empty histogram of a wide
    /// layout is 56 bytes of base64 for megabytes of counts.
    #[test]
    fn the_histograms_of_a_file_are_bounded_together() {
        let b64 = |b: &[u8]| base64::engine::general_purpose::STANDARD.encode(b);
        let empty = b64(&v2_header(0, 3, 1, 10_000_000_000_000));
        let each = kfsim_widest().distinct_values();
        let texts = |n: usize| (0..n).map(|i| (format!("h{i}"), empty.clone())).collect::<Vec<_>>();
        assert_eq!(decode_hists_within(texts(3), 3 * each).unwrap().len(), 3);
        let e = decode_hists_within(texts(4), 3 * each).unwrap_err();
        assert!(e.starts_with("\"h3\": past the"), "{e}");
        // the bound holds far more than kfsim's own: two per entry, one per account
        assert!(MOST_FILE_COUNTS >= (2 * 1000 + 5000 + 100) * each);
        let e = decode_hists([("x".to_owned(), "not base64!".to_owned())]).unwrap_err();
        assert!(e.starts_with("\"x\": "), "{e}");
    }

    #[test]
    fn a_stated_payload_longer_than_the_bytes_is_refused_unread() {
        // 4 GB stated, 10 bytes there: hdrhistogram would zero 4 GB first
        let mut b = v2_header(u32::MAX, 3, 1, 10_000_000_000_000);
        b.extend_from_slice(&[2; 10]);
        let e = decode_bytes(&b).unwrap_err();
        assert!(e.contains("4294967295 bytes of counts") && e.contains("10 present"), "{e}");
    }

    #[test]
    fn a_deflated_histogram_is_inflated_no_further_than_its_layout_allows() {
        // 100 MB of zero counts (each a count of 0), some 100 kB deflated
        let header = v2_header(100_000_000, 3, 1, 10_000_000_000_000);
        let bytes = deflated(&[&header, &[0u8; 1_000_000]], 100);
        assert!(bytes.len() < 1_000_000, "{}", bytes.len());
        let e = decode_bytes(&bytes).unwrap_err();
        let most = V2_HEADER + 9 * kfsim_widest().distinct_values();
        assert!(e.contains(&format!("past the {most} bytes")), "{e}");
    }

    #[test]
    fn a_layout_of_too_many_counts_is_refused_before_it_is_allocated() {
        // 47 × 2¹⁷ counts, 50 MB of them
        let wide = Histogram::<u64>::new_with_bounds(1, u64::MAX / 2, 5).unwrap().distinct_values();
        assert!(wide > MOST_COUNTS, "{wide}");
        let plain = v2_header(0, 5, 1, u64::MAX / 2);
        let e = decode_bytes(&plain).unwrap_err();
        assert!(e.contains(&format!("{wide} counts")) && e.contains("past the"), "{e}");
        let e = decode_bytes(&deflated(&[&plain], 1)).unwrap_err();
        assert!(e.contains(&format!("{wide} counts")), "{e}");
        // layouts hdrhistogram cannot build at all, said as such
        for (digits, low, high) in [(6, 1, 1000), (3, 0, 1000), (3, 10, 19), (3, u64::MAX / 2 + 1, u64::MAX)]
        {
            let e = decode_bytes(&v2_header(0, digits, low, high)).unwrap_err();
            assert!(e.contains("layout"), "{digits} {low} {high}: {e}");
        }
    }

    #[test]
    fn the_counts_array_bound_is_what_hdrhistogram_allocates_or_more() {
        for digits in 0..=5u8 {
            for low in [1, 2, 3, 1000, 1 << 20, (1 << 40) - 1, 1 << 50] {
                for high in [2 * low, 10_000_000_000_000, u64::MAX / 2, u64::MAX] {
                    let Ok(h) = Histogram::<u64>::new_with_bounds(low, high, digits) else { continue };
                    match layout_counts(&v2_header(0, u32::from(digits), low, high)) {
                        Ok(n) => assert!(n >= h.distinct_values(), "{digits} {low} {high}"),
                        Err(e) => assert!(e.contains("past the"), "{digits} {low} {high}: {e}"),
                    }
                }
            }
        }
        let widest = v2_header(0, 3, 1, 10_000_000_000_000);
        assert_eq!(layout_counts(&widest), Ok(kfsim_widest().distinct_values()));
    }

    #[test]
    fn truncated_histograms_are_said_to_be() {
        let mut h = kfsim_widest();
        h.record(1234).unwrap();
        let mut v2 = Vec::new();
        hdrhistogram::serialization::V2Serializer::new().serialize(&h, &mut v2).unwrap();
        for cut in [0, 3, 4, 12, 39, 40, v2.len() - 1] {
            let e = decode_bytes(&v2[..cut]).unwrap_err();
            assert!(e.contains("truncated") || e.contains("present"), "{cut}: {e}");
        }
        let deflate = base64::engine::general_purpose::STANDARD.decode(encode_hist(&h)).unwrap();
        for cut in [4, 7, 8, 20, deflate.len() - 1] {
            let e = decode_bytes(&deflate[..cut]).unwrap_err();
            assert!(e.contains("truncated") || e.contains("present"), "{cut}: {e}");
        }
        // a stream complete in fewer bytes than stated is still short of them
        let mut long = deflate.clone();
        let stated = (deflate.len() - 8 + 100) as u32;
        long[4..8].copy_from_slice(&stated.to_be_bytes());
        let e = decode_bytes(&long).unwrap_err();
        assert!(e.contains(&format!("{stated} bytes")), "{e}");
        // inside a deflated histogram: a header cut short
        let e = decode_bytes(&deflated(&[&v2[..30]], 1)).unwrap_err();
        assert!(e.contains("truncated"), "{e}");
    }

    #[test]
    fn a_count_out_of_range_is_an_error_not_a_panic() {
        // zigzag of u64::MAX is i64::MIN, which hdrhistogram negates
        let mut b = v2_header(9, 3, 1, 1_000_000);
        b.extend_from_slice(&[0xff; 9]);
        let e = decode_bytes(&b).unwrap_err();
        assert!(e.contains("out of range"), "{e}");
    }

    #[test]
    fn garbled_histograms_are_errors_not_panics() {
        use rand::{RngExt, SeedableRng};
        let mut rng = rand_xoshiro::Xoshiro256PlusPlus::seed_from_u64(11);
        let mut h = kfsim_widest();
        for v in [1, 999, 123_456, 10_000_000_000_000] {
            h.record(v).unwrap();
        }
        let mut real = Vec::new();
        hdrhistogram::serialization::V2Serializer::new().serialize(&h, &mut real).unwrap();
        for _ in 0..20_000 {
            // layouts near the edges, counts of random bytes
            let low = 1u64 << rng.random_range(0..64u32) >> rng.random_range(0..2u32);
            let high = low.saturating_mul(rng.random_range(1..5u64)) | rng.random_range(0..2u64) << 63;
            let payload: Vec<u8> = (0..rng.random_range(0..40)).map(|_| rng.random::<u8>()).collect();
            let mut b = v2_header(payload.len() as u32, rng.random_range(0..7u32), low, high);
            b.extend_from_slice(&payload);
            let _ = decode_bytes(&b);
            let _ = decode_bytes(&deflated(&[&b], 1));
            // a real histogram with a byte changed
            let mut g = real.clone();
            let at = rng.random_range(0..g.len());
            g[at] = rng.random::<u8>();
            let _ = decode_bytes(&g);
        }
    }

    #[test]
    fn histograms_still_round_trip() {
        let mut h = kfsim_widest();
        for v in (1..=200_000u64).map(|i| i * i) {
            h.record_n(v, v % 7 + 1).unwrap();
        }
        h.record(10_000_000_000_000).unwrap();
        assert_eq!(decode_hist(&encode_hist(&h)).unwrap(), h);
        assert_eq!(crate::report::hgrm::from_base64(&encode_hist(&h)).unwrap(), h);
        let mut v2 = Vec::new();
        hdrhistogram::serialization::V2Serializer::new().serialize(&h, &mut v2).unwrap();
        assert_eq!(decode_bytes(&v2).unwrap(), h);
        // the widest layout let through, full
        let mut fine = Histogram::<u64>::new_with_bounds(1, (1 << 24) - 1, 5).unwrap();
        assert_eq!(fine.distinct_values(), MOST_COUNTS);
        for v in 1..(1u64 << 24) {
            fine.record(v).unwrap();
        }
        assert_eq!(decode_hist(&encode_hist(&fine)).unwrap(), fine);
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
