//! Shards and their merge: what a process running part of a live run, a
//! sweep or a plan (`--shard I/N`) leaves in its folder (`shard.json`), and
//! `kfsim merge`'s reading, checking and combining of those files.
//!
//! A run's shard keeps its settled measured state (`crate::tally`): the
//! merge adds the states up and computes the summary, series and
//! histograms of the whole by the code every run finishes with. A sweep's
//! shard keeps the values of its (point, replication) jobs, a plan's those
//! of every replication its search read; the merge builds the sweep or
//! reruns the search from them, so both equal an unsharded run number for
//! number.
//!
//! Each file names its scenario (text, overrides, seed and fingerprint),
//! the kfsim version and its shard: folders of different scenarios,
//! versions or shard counts, a shard missing or given twice, are refused
//! ([`Refused`]) before anything is merged.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use anyhow::Context;
use serde::de::{DeserializeOwned, IgnoredAny};
use serde::{Deserialize, Serialize};

use crate::live::state::LiveState;
use crate::metrics::{Measured, Metrics, Settled, StateMerge};
use crate::observe::{Engine, RunStats};
use crate::scenario::Scenario;
use crate::sweep::RepValues;
use crate::tally::{RunState, Shard};

/// The schema of `shard.json`.
pub const SCHEMA: &str = "kfsim/shard@1";
/// The file a shard leaves in its folder.
pub const FILE: &str = "shard.json";

/// Shard folders that cannot be merged, and why (exit 2).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct Refused(pub String);

fn refuse<T>(msg: impl Into<String>) -> Result<T, Refused> {
    Err(Refused(msg.into()))
}

/// What was sharded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase", remote = "Self")]
pub enum Kind {
    /// `kfsim run`.
    Run,
    /// `kfsim sweep`.
    Sweep,
    /// `kfsim plan`.
    Plan,
}

crate::scenario::by_name_only!(Kind);
crate::scenario::serialize_as_derived!(Kind);

/// The scenario a shard ran, as given: enough to build it again.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Source {
    /// Its name.
    pub name: String,
    /// Its fingerprint (`Scenario::fingerprint`, seed excluded).
    pub fingerprint: String,
    /// The file it was read from (for messages).
    pub file: String,
    /// The file's text.
    pub text: String,
    /// The `--set` overrides.
    pub sets: Vec<String>,
    /// The seed it ran with.
    pub seed: u64,
}

impl Source {
    /// The source of `sc`, read from `file` as `text` with `sets`.
    pub fn new(sc: &Scenario, file: &str, text: &str, sets: &[String]) -> Source {
        Source {
            name: sc.name.clone(),
            fingerprint: sc.fingerprint(),
            file: file.to_owned(),
            text: text.to_owned(),
            sets: sets.to_vec(),
            seed: sc.seed,
        }
    }

    /// The scenario again; refused if it no longer has its fingerprint.
    pub fn scenario(&self) -> Result<Scenario, Refused> {
        let mut sc = Scenario::parse_with(&self.text, &self.file, &self.sets).map_err(|e| {
            Refused(format!(
                "the scenario text kept in the shards' shard.json (not the file on disk) does not parse: {e}"
            ))
        })?;
        sc.seed = self.seed;
        if sc.fingerprint() != self.fingerprint {
            return refuse(format!(
                "the shards' scenario {} has fingerprint {}, not the recorded {} (a file edited by hand?)",
                self.file,
                sc.fingerprint(),
                self.fingerprint
            ));
        }
        Ok(sc)
    }
}

/// One (point, replication) of a sweep shard.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SweepRep {
    /// The grid point (index in the grid).
    pub point: usize,
    /// The replication.
    pub replication: u32,
    /// Its values.
    pub values: RepValues,
}

/// A sweep shard's part.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SweepPart {
    /// The `--vary` arguments, as given.
    pub vary: Vec<String>,
    /// Replications per point.
    pub replications: u32,
    /// Its jobs' values.
    pub results: Vec<SweepRep>,
}

/// What a plan was asked.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PlanSpec {
    /// The `--target` arguments.
    pub targets: Vec<String>,
    /// The path varied.
    pub vary: String,
    /// Replications per value to begin with.
    pub replications: u32,
    /// At most.
    pub max_replications: u32,
    /// `--per-interval`.
    pub per_interval: Option<String>,
    /// Whether the staffing curve around the answer was evaluated (`--out`).
    pub curve: bool,
}

/// A plan shard's part: the question, and every replication its search
/// read, keyed by [`rep_key`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PlanPart {
    /// The question.
    pub spec: PlanSpec,
    /// The replications.
    pub values: BTreeMap<String, RepValues>,
}

/// The key of replication `r` of scenario `sc` in a plan's exchange.
pub fn rep_key(sc: &Scenario, r: u32) -> String {
    format!("{}-{:016x}-r{r}", sc.fingerprint(), sc.seed)
}

/// `shard.json`. A run's metrics state (`M`) is the run's own settled
/// state while the run writes it, and left unread ([`IgnoredAny`]) by
/// [`read_shards`]: [`merge_run`] reads it as [`Metrics`], a shard at a
/// time.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ShardFile<M = Settled> {
    /// Always [`SCHEMA`].
    pub schema: String,
    /// What was sharded.
    pub kind: Kind,
    /// Which shard.
    pub shard: Shard,
    /// The kfsim that wrote it.
    pub kfsim_version: String,
    /// The scenario.
    pub source: Source,
    /// A run's engine.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub engine: Option<Engine>,
    /// A run's state.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run: Option<RunState<M>>,
    /// A sweep's part.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sweep: Option<SweepPart>,
    /// A plan's part.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plan: Option<PlanPart>,
}

impl<M: Serialize> ShardFile<M> {
    /// A shard file of `kind` for `shard` of `source`'s scenario.
    pub fn new(kind: Kind, shard: Shard, source: Source) -> ShardFile<M> {
        ShardFile {
            schema: SCHEMA.into(),
            kind,
            shard,
            kfsim_version: env!("KFSIM_VERSION").into(),
            source,
            engine: None,
            run: None,
            sweep: None,
            plan: None,
        }
    }

    /// Write it into `dir`, streamed: a run's state of a million agents
    /// is a hundred megabytes of text.
    pub fn write(&self, dir: &Path) -> anyhow::Result<()> {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        crate::files::write_whole(&dir.join(FILE), |w| {
            serde_json::to_writer(&mut *w, self)?;
            w.write_all(b"\n")
        })
    }
}

/// Remove an earlier run's shard file from `dir`, before a run, a sweep
/// shard or a plan shard begins to write there: killed before it wrote
/// its own, it left the earlier one, which a merge then took as its
/// result (found by probing: a reused folder merged the seed of the run
/// before, exit 0).
pub fn clear_stale(dir: &Path) -> anyhow::Result<()> {
    crate::files::remove_stale(&dir.join(FILE))
}

/// A shard folder's file as [`read_shards`] read it.
#[derive(Debug)]
pub struct ReadShard {
    /// The file.
    pub path: PathBuf,
    /// What it holds but a run's metrics state, which [`merge_run`] reads
    /// from `path` when it adds the shards up.
    pub file: ShardFile<IgnoredAny>,
}

/// `DIR/shard.json`, or a `shard.json` named directly.
fn shard_path(path: &Path) -> PathBuf {
    if path.is_dir() { path.join(FILE) } else { path.to_path_buf() }
}

/// Read `file` (of the folder or file `path`) as a `T`, streamed: a run's
/// shard file of a million agents is 160 MB of text. What does not read is
/// refused as it was when the file was read as a JSON tree: not JSON, not
/// a shard file (by its `schema`), or a shard file that does not read
/// (now with where).
fn read_json<T: DeserializeOwned>(path: &Path, file: &Path) -> Result<T, Refused> {
    let open = || match std::fs::File::open(file) {
        // an endless pipe ends at the bound, as not JSON
        Ok(f) => {
            use std::io::BufRead;
            let mut r = std::io::BufReader::new(std::io::Read::take(f, crate::files::MAX_READ_BYTES));
            // as files::read_json_text: an editor's byte-order mark is not JSON
            if r.fill_buf().is_ok_and(|b| b.starts_with(b"\xef\xbb\xbf")) {
                r.consume(3);
            }
            Ok(r)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => refuse(format!(
            "{} has no {FILE}: not a shard folder (run, sweep and plan write one; a sweep or plan only with --shard)",
            path.display()
        )),
        Err(e) => refuse(format!("reading {}: {e}", file.display())),
    };
    let e = match serde_json::from_reader(open()?) {
        Ok(v) => return Ok(v),
        Err(e) => e,
    };
    let not_json = |e: serde_json::Error| {
        if e.is_io() {
            Refused(format!("reading {}: {e}", file.display()))
        } else {
            Refused(format!("{} is not valid JSON: {e}", file.display()))
        }
    };
    if !e.is_data() {
        return Err(not_json(e));
    }
    // a field that does not read may come before text that is not JSON,
    // or lie in a file of another schema: those are said first
    match serde_json::from_reader::<_, Schema>(open()?) {
        Err(probe) => Err(not_json(probe)),
        Ok(Schema(Some(s))) if s == SCHEMA => {
            refuse(format!("{} is not a kfsim shard file: {e}", file.display()))
        }
        Ok(_) => refuse(format!("{} is not a kfsim shard file (schema {SCHEMA})", file.display())),
    }
}

/// The `schema` of a JSON document, if it is an object with a string
/// there; the rest is skipped, not kept.
struct Schema(Option<String>);

impl<'de> Deserialize<'de> for Schema {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Schema, D::Error> {
        struct Visit;
        impl<'de> serde::de::Visitor<'de> for Visit {
            type Value = Schema;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("any JSON")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Schema, A::Error> {
                let mut schema = None;
                while let Some(key) = map.next_key::<String>()? {
                    if key == "schema" {
                        // the last one, as a JSON tree keeps it
                        schema = match map.next_value::<serde_json::Value>()? {
                            serde_json::Value::String(s) => Some(s),
                            _ => None,
                        };
                    } else {
                        map.next_value::<IgnoredAny>()?;
                    }
                }
                Ok(Schema(schema))
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Schema, A::Error> {
                while seq.next_element::<IgnoredAny>()?.is_some() {}
                Ok(Schema(None))
            }
            fn visit_bool<E>(self, _: bool) -> Result<Schema, E> {
                Ok(Schema(None))
            }
            fn visit_i64<E>(self, _: i64) -> Result<Schema, E> {
                Ok(Schema(None))
            }
            fn visit_u64<E>(self, _: u64) -> Result<Schema, E> {
                Ok(Schema(None))
            }
            fn visit_f64<E>(self, _: f64) -> Result<Schema, E> {
                Ok(Schema(None))
            }
            fn visit_str<E>(self, _: &str) -> Result<Schema, E> {
                Ok(Schema(None))
            }
            fn visit_unit<E>(self) -> Result<Schema, E> {
                Ok(Schema(None))
            }
        }
        d.deserialize_any(Visit)
    }
}

impl ReadShard {
    /// Read `DIR/shard.json` (or a `shard.json` named directly), a run's
    /// metrics state skipped.
    pub fn read(path: &Path) -> Result<ReadShard, Refused> {
        let file = shard_path(path);
        let f: ShardFile<IgnoredAny> = read_json(path, &file)?;
        if f.schema != SCHEMA {
            return refuse(format!("{} is not a kfsim shard file (schema {SCHEMA})", file.display()));
        }
        Ok(ReadShard { path: file, file: f })
    }

    /// The run's metrics state in the file, read now.
    fn metrics(&self) -> Result<Metrics, Refused> {
        #[derive(Deserialize)]
        struct StateOf {
            shard: Shard,
            run: Option<MetricsOf>,
        }
        #[derive(Deserialize)]
        struct MetricsOf {
            metrics: Metrics,
        }
        let state: StateOf = read_json(&self.path, &self.path)?;
        match state.run {
            // the file was replaced since it was checked
            _ if state.shard != self.file.shard => {
                refuse(format!("{} changed while the shards were merged", self.path.display()))
            }
            Some(run) => Ok(run.metrics),
            None => refuse(format!("shard {} holds no run state ({})", self.file.shard, self.path.display())),
        }
    }
}

/// Read the shard folders `dirs` and check that they are the shards of
/// one thing: same kind, scenario (fingerprint, seed), kfsim version and
/// shard count, each shard once, none missing. Returned in shard order.
/// A run's metrics state is left in the files until [`merge_run`]: shards
/// of another kfsim version keep it in another form, and are refused for
/// their version.
pub fn read_shards(dirs: &[PathBuf]) -> Result<Vec<ReadShard>, Refused> {
    if dirs.is_empty() {
        return refuse("no shard folders given");
    }
    let files: Vec<(String, ReadShard)> = dirs
        .iter()
        .map(|d| Ok((d.display().to_string(), ReadShard::read(d)?)))
        .collect::<Result<_, Refused>>()?;
    let (first_dir, ReadShard { file: first, .. }) = &files[0];
    for (dir, ReadShard { file: f, .. }) in &files[1..] {
        let differ = |what: &str, a: &dyn std::fmt::Display, b: &dyn std::fmt::Display| {
            Refused(format!("{first_dir} and {dir} are not shards of one run: {what} {a} and {b}"))
        };
        let kind = |k: Kind| format!("{k:?}").to_lowercase();
        if f.kind != first.kind {
            return Err(differ("kfsim commands", &kind(first.kind), &kind(f.kind)));
        }
        if f.source.name != first.source.name {
            return Err(differ("scenarios", &first.source.name, &f.source.name));
        }
        if f.source.fingerprint != first.source.fingerprint {
            return Err(differ("scenario fingerprints", &first.source.fingerprint, &f.source.fingerprint));
        }
        if f.source.seed != first.source.seed {
            return Err(differ("seeds", &first.source.seed, &f.source.seed));
        }
        if f.kfsim_version != first.kfsim_version {
            return Err(differ("kfsim versions", &first.kfsim_version, &f.kfsim_version));
        }
        // the fingerprint is checked against the text once, for the
        // first shard: another's text must then be the same (an edited
        // one merged, found by probing)
        if f.source.text != first.source.text || f.source.sets != first.source.sets {
            return Err(Refused(format!(
                "{first_dir} and {dir} are not shards of one run: their scenario texts or --set overrides differ"
            )));
        }
        if f.shard.count != first.shard.count {
            return Err(differ("shard counts", &first.shard.count, &f.shard.count));
        }
        let engine = |e: Option<Engine>| e.map_or("-".to_owned(), |e| e.to_string());
        if f.engine != first.engine {
            return Err(differ("engines", &engine(first.engine), &engine(f.engine)));
        }
        if f.sweep.as_ref().map(|s| (&s.vary, s.replications))
            != first.sweep.as_ref().map(|s| (&s.vary, s.replications))
        {
            return Err(Refused(format!(
                "{first_dir} and {dir} are not shards of one sweep: different --vary or --replications"
            )));
        }
        if f.plan.as_ref().map(|p| &p.spec) != first.plan.as_ref().map(|p| &p.spec) {
            return Err(Refused(format!(
                "{first_dir} and {dir} are not shards of one plan: different targets, --vary, replications or --per-interval"
            )));
        }
    }
    let n = first.shard.count;
    let mut seen: BTreeMap<u32, &str> = BTreeMap::new();
    for (dir, ReadShard { file: f, .. }) in &files {
        if let Some(other) = seen.insert(f.shard.index, dir) {
            return refuse(format!("shard {} is given twice: {other} and {dir}", f.shard));
        }
    }
    // named up to a few: a count of thousands would fill the screen
    const NAMED: usize = 10;
    let absent = n as usize - seen.len();
    let mut missing: Vec<String> =
        (0..n).filter(|i| !seen.contains_key(i)).take(NAMED).map(|i| format!("{i}/{n}")).collect();
    if absent > NAMED {
        missing.push(format!("and {} more", absent - NAMED));
    }
    if absent > 0 {
        return refuse(format!(
            "shard{} {} missing: {} of {n} given ({})",
            if absent > 1 { "s" } else { "" },
            if absent > 1 { format!("{} are", missing.join(", ")) } else { format!("{} is", missing[0]) },
            files.len(),
            files.iter().map(|(d, _)| d.as_str()).collect::<Vec<_>>().join(", ")
        ));
    }
    let mut out: Vec<ReadShard> = files.into_iter().map(|(_, f)| f).collect();
    out.sort_by_key(|r| r.file.shard.index);
    Ok(out)
}

/// A merged run.
pub struct MergedRun {
    /// The scenario.
    pub scenario: Scenario,
    /// What the whole measured.
    pub measured: Measured,
    /// Shards that were interrupted.
    pub interrupted: Vec<Shard>,
    /// Live shards whose driver was behind its own schedule for more than
    /// [`SATURATED_WARN`](crate::summary::SATURATED_WARN) of their run,
    /// with that share: the merged `live.saturated` pools the shards' wake-ups,
    /// so one shard of eight behind all along reads 0.125 there, under the
    /// warning's threshold, while its own figures measure its driver.
    pub saturated: Vec<(Shard, f64)>,
}

/// Merge the shards of a run (checked by [`read_shards`]), reading each
/// one's metrics state in turn.
pub fn merge_run(shards: &[ReadShard]) -> Result<MergedRun, Refused> {
    let first = &shards.first().ok_or_else(|| Refused("no shards".into()))?.file;
    if first.kind != Kind::Run {
        return refuse("not the shards of a run");
    }
    let sc = first.source.scenario()?;
    let states: Vec<&RunState<IgnoredAny>> = shards
        .iter()
        .map(|r| {
            r.file.run.as_ref().ok_or_else(|| {
                Refused(format!("shard {} holds no run state ({})", r.file.shard, r.path.display()))
            })
        })
        .collect::<Result<_, _>>()?;
    let mut fresh = Metrics::new(&sc);
    fresh.keep_interval_histograms();
    let mut sum = StateMerge::new(fresh);
    for r in shards {
        sum.add(r.metrics()?).map_err(|e| {
            Refused(format!(
                "the shards' metrics do not merge: {} does not fit the others: {e}",
                r.path.display()
            ))
        })?;
    }
    let metrics = sum.finish().map_err(|(culprit, e)| match culprit.and_then(|i| shards.get(i)) {
        Some(r) => Refused(format!("{e} (in {})", r.path.display())),
        None => Refused(e),
    })?;
    let stats = RunStats {
        end_us: states.iter().map(|s| s.end_us).max().unwrap_or(0),
        events: 0,
        sessions: states.iter().map(|s| s.sessions).sum(),
        // each shard's peak came at its own moment: their sum bounds the
        // whole's from above
        peak_in_flight: states.iter().map(|s| s.peak_in_flight).sum(),
        shed: states.iter().map(|s| s.shed).sum(),
        interrupted: states.iter().any(|s| s.interrupted),
        horizon: states.iter().any(|s| s.horizon),
    };
    let mut saturated = Vec::new();
    let live = match first.engine {
        Some(Engine::Live) => {
            let lives: Vec<&serde_json::Value> = states
                .iter()
                .map(|s| s.live.as_ref().ok_or_else(|| Refused("a live shard without its live state".into())))
                .collect::<Result<_, _>>()?;
            let read = |v: &serde_json::Value| -> Result<LiveState, Refused> {
                serde_json::from_value(v.clone())
                    .map_err(|e| Refused(format!("a live state that does not read: {e}")))
            };
            let start = read(lives[0])?;
            for (r, v) in shards.iter().zip(&lives) {
                let (f, l) = (&r.file, read(v)?);
                if let Some(share) = l.saturated().filter(|&x| x > crate::summary::SATURATED_WARN) {
                    saturated.push((f.shard, share));
                }
                if l.time_scale != start.time_scale || l.target != start.target {
                    return refuse(format!(
                        "shard {} ran at ×{} against {}, shard {} at ×{} against {}: not one run",
                        first.shard, start.time_scale, start.target, f.shard, l.time_scale, l.target
                    ));
                }
            }
            let fresh = serde_json::to_value(LiveState::fresh(&start.target, start.time_scale))
                .expect("the live state is JSON");
            let merged = crate::tally::merge(&fresh, &lives)
                .map_err(|e| Refused(format!("the shards' live figures do not merge: {e}")))?;
            let live: LiveState = serde_json::from_value(merged)
                .map_err(|e| Refused(format!("a merged live state that does not read: {e}")))?;
            let wall_s = states.iter().filter_map(|s| s.wall_s).fold(0.0, f64::max);
            Some(live.figures(&sc, stats.end_us, wall_s))
        }
        _ => None,
    };
    let measured = metrics.finish_all(&sc, &stats, live);
    let interrupted =
        shards.iter().zip(&states).filter(|(_, s)| s.interrupted).map(|(r, _)| r.file.shard).collect();
    Ok(MergedRun { scenario: sc, measured, interrupted, saturated })
}

/// The values of every (point, replication) of a sweep's shards, by point
/// in replication order; refused if one is missing or given twice.
pub fn sweep_values(shards: &[ReadShard], points: usize) -> Result<Vec<Vec<RepValues>>, Refused> {
    let part =
        shards.first().and_then(|r| r.file.sweep.as_ref()).ok_or_else(|| Refused("not a sweep".into()))?;
    let r = part.replications;
    let mut got: BTreeMap<(usize, u32), (&Path, RepValues)> = BTreeMap::new();
    for ReadShard { file: f, path } in shards {
        let Some(p) = &f.sweep else {
            return refuse(format!("shard {} holds no sweep results ({})", f.shard, path.display()));
        };
        for rep in &p.results {
            if rep.point >= points || rep.replication >= r {
                return refuse(format!(
                    "shard {} ({}) holds replication {} of point {}, outside the sweep's {points} points × {r} replications",
                    f.shard,
                    path.display(),
                    rep.replication,
                    rep.point
                ));
            }
            if let Some((other, _)) = got.insert((rep.point, rep.replication), (path, rep.values.clone())) {
                // the same file twice is a file edited, not two shards
                // that overlap: "in shards 0/2 and 0/2" said neither
                let place = if other == path.as_path() {
                    format!("twice in {}", path.display())
                } else {
                    format!("in {} and {}", other.display(), path.display())
                };
                return refuse(format!("replication {} of point {} is {place}", rep.replication, rep.point));
            }
        }
    }
    (0..points)
        .map(|p| {
            (0..r)
                .map(|i| match got.remove(&(p, i)) {
                    Some((_, v)) => Ok(v),
                    None => refuse(format!(
                        "replication {i} of point {p} is in no shard (was a shard interrupted, or given the wrong --replications?)"
                    )),
                })
                .collect()
        })
        .collect()
}

/// Replications read back from the files of a plan's shards: the search
/// run again over them takes the course the shards took.
pub struct Cached {
    values: BTreeMap<String, RepValues>,
}

impl Cached {
    /// The union of the shards' replications.
    pub fn of(shards: &[ReadShard]) -> Result<Cached, Refused> {
        let mut values = BTreeMap::new();
        for ReadShard { file: f, .. } in shards {
            let Some(p) = &f.plan else { return refuse(format!("shard {} holds no plan", f.shard)) };
            values.extend(p.values.iter().map(|(k, v)| (k.clone(), v.clone())));
        }
        Ok(Cached { values })
    }
}

impl crate::sweep::Replicate for Cached {
    fn replicate(
        &self,
        sc: &Scenario,
        reps: std::ops::Range<u32>,
        extra: &[String],
    ) -> anyhow::Result<Vec<RepValues>> {
        reps.map(|r| {
            let v = self.values.get(&rep_key(sc, r)).ok_or_else(|| {
                Refused(format!(
                    "no shard holds replication {r} of {} at this step of the search (an interrupted shard?)",
                    sc.name
                ))
            })?;
            let missing: BTreeSet<&String> = extra.iter().filter(|p| !v.contains_key(*p)).collect();
            if !missing.is_empty() {
                return Err(Refused(format!("the shards' replications lack {missing:?}")).into());
            }
            Ok(v.clone())
        })
        .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A shard file's `kind` is a name: serde's derive read `{"run":
    /// null}` as `"run"` too.
    #[test]
    fn a_shards_kind_is_read_from_its_name_alone() {
        assert_eq!(serde_json::from_str::<Kind>(r#""sweep""#).unwrap(), Kind::Sweep);
        for table in [r#"{"run": null}"#, r#"{"plan": {}}"#] {
            let read = serde_json::from_str::<Kind>(table);
            assert!(read.is_err(), "{table} read as {read:?}");
        }
    }

    fn dir(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("kfsim-merge-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    /// How shard files were read before: whole, as a JSON tree.
    fn read_as_tree(path: &Path) -> Result<(), String> {
        let file = shard_path(path);
        let text = std::fs::read_to_string(&file).map_err(|e| format!("reading {}: {e}", file.display()))?;
        let value: serde_json::Value =
            serde_json::from_str(&text).map_err(|e| format!("{} is not valid JSON: {e}", file.display()))?;
        if value.get("schema").and_then(|s| s.as_str()) != Some(SCHEMA) {
            return Err(format!("{} is not a kfsim shard file (schema {SCHEMA})", file.display()));
        }
        serde_json::from_value::<ShardFile<serde_json::Value>>(value)
            .map(drop)
            .map_err(|e| format!("{} is not a kfsim shard file: {e}", file.display()))
    }

    /// A malformed file is refused as it was when read as a tree: not
    /// JSON, not a shard file, or a shard file that does not read (then
    /// with where, which the tree could not say).
    #[test]
    fn malformed_files_are_refused_as_they_were() {
        let cases = [
            ("empty", ""),
            ("not-json", "{\"schema\": \"kfsim/shard@1\", "),
            ("a-list", "[\"kfsim/shard@1\"]"),
            ("a-number", "3"),
            ("another-schema", r#"{"schema": "kfsim/summary@1", "kind": "run"}"#),
            ("schema-not-text", r#"{"schema": 1, "kind": "nope"}"#),
            ("no-schema", r#"{"kind": "run"}"#),
            // a field that does not read before a text that is not JSON
            ("late-syntax", r#"{"schema": "kfsim/shard@1", "kind": "nope", "x": [1,}"#),
            ("schema-twice", r#"{"schema": "kfsim/shard@1", "schema": "x", "kind": "run"}"#),
            ("not-a-shard", r#"{"schema": "kfsim/shard@1", "kind": "nope"}"#),
            ("missing", r#"{"schema": "kfsim/shard@1", "kind": "run"}"#),
        ];
        for (name, text) in cases {
            let d = dir(name);
            std::fs::write(d.join(FILE), text).unwrap();
            let old = read_as_tree(&d).unwrap_err();
            let new = ReadShard::read(&d).unwrap_err().0;
            let file = d.join(FILE).display().to_string();
            assert!(new.starts_with(&file), "{name}: the file is named: {new}");
            match old.split_once(": ") {
                // serde's words: the typed reading says where, the tree did not
                Some((head, _)) if head.ends_with("is not a kfsim shard file") => {
                    assert!(new.starts_with(&format!("{head}: ")), "{name}: {new} (was {old})");
                    assert!(new.contains(" at line 1 column "), "{name}: {new}");
                }
                _ => assert_eq!(new, old, "{name}"),
            }
            std::fs::remove_dir_all(&d).unwrap();
        }
        // a byte-order mark before it is not what is wrong (it was "not
        // valid JSON")
        let d = dir("bom");
        std::fs::write(d.join(FILE), format!("\u{feff}{}", r#"{"schema": "kfsim/summary@1"}"#)).unwrap();
        let e = ReadShard::read(&d).unwrap_err().0;
        assert!(e.contains("is not a kfsim shard file (schema"), "{e}");
        std::fs::remove_dir_all(&d).unwrap();
        let d = dir("none");
        let e = ReadShard::read(&d.join("nothing-here")).unwrap_err().0;
        assert!(e.ends_with("nothing-here has no shard.json: not a shard folder (run, sweep and plan write one; a sweep or plan only with --shard)"), "{e}");
        std::fs::remove_dir_all(&d).unwrap();
    }

    fn source() -> Source {
        let text = String::new();
        Source {
            name: "t".into(),
            fingerprint: "f".into(),
            file: "t.toml".into(),
            text,
            sets: Vec::new(),
            seed: 1,
        }
    }

    /// The shards' headers are checked before any run state is read: the
    /// state of another kfsim version, in a form this one does not read,
    /// is refused for its version.
    #[test]
    fn another_versions_state_is_refused_for_its_version() {
        let write = |name: &str, index: u32, version: &str, metrics: serde_json::Value| {
            let d = dir(name);
            let mut f: ShardFile<serde_json::Value> =
                ShardFile::new(Kind::Run, Shard::new(index, 2).unwrap(), source());
            f.kfsim_version = version.to_owned();
            f.engine = Some(Engine::Sim);
            f.run = Some(RunState {
                end_us: 1,
                sessions: 2,
                peak_in_flight: 1,
                shed: 0,
                interrupted: false,
                horizon: false,
                wall_s: None,
                metrics,
                live: None,
            });
            f.write(&d).unwrap();
            d
        };
        let a = write("v-a", 0, "1.0", serde_json::json!({"agents": "another form"}));
        let b = write("v-b", 1, "2.0", serde_json::json!([1, 2, 3]));
        let e = read_shards(&[a.clone(), b.clone()]).unwrap_err().0;
        assert!(e.contains("are not shards of one run: kfsim versions 1.0 and 2.0"), "{e}");
        // of one version, the headers are read and checked; the states
        // are read when merged
        let c = write("v-c", 1, "1.0", serde_json::json!([1, 2, 3]));
        let shards = read_shards(&[c.clone(), a.clone()]).unwrap();
        assert_eq!(shards.iter().map(|r| r.file.shard.index).collect::<Vec<_>>(), [0, 1]);
        assert_eq!(shards[1].path, c.join(FILE));
        let e = shards[0].metrics().unwrap_err().0;
        assert!(e.starts_with(&format!("{} is not a kfsim shard file: ", a.join(FILE).display())), "{e}");
        for d in [a, b, c] {
            std::fs::remove_dir_all(d).unwrap();
        }
    }
}
