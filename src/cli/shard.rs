//! The command line's side of shards: `--shard I/N` (or `--shards N` with
//! the index from `JOB_COMPLETION_INDEX`, as a Kubernetes Indexed Job sets
//! it), the start barrier of live shards, and the exchange through which
//! the shards of a plan share their replications.

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::Context;

use super::ArgError;
use crate::merge::rep_key;
use crate::scenario::Scenario;
use crate::sweep::{self, RepValues, Replicate};
use crate::tally::Shard;

/// The variable a Kubernetes Indexed Job sets to the pod's index.
pub const INDEX_VAR: &str = "JOB_COMPLETION_INDEX";

/// `--shard` and `--shards`.
#[derive(Debug, Clone, clap::Args)]
pub struct ShardArgs {
    /// Run shard I of N (0 ≤ I < N ≤ 10000): its share of the work; `kfsim merge` combines the N folders.
    #[arg(long, value_name = "I/N", value_parser = Shard::parse)]
    pub shard: Option<Shard>,
    /// Run one of N shards, the index taken from JOB_COMPLETION_INDEX (a Kubernetes Indexed Job).
    #[arg(long, value_name = "N", conflicts_with = "shard")]
    pub shards: Option<u32>,
}

impl ShardArgs {
    /// This process's shard: `--shard`, else `--shards` with the index from
    /// the environment, else the whole.
    pub fn resolve(&self) -> Result<Shard, ArgError> {
        if let Some(s) = self.shard {
            return Ok(s);
        }
        let Some(n) = self.shards else { return Ok(Shard::WHOLE) };
        let var = std::env::var(INDEX_VAR).map_err(|_| {
            ArgError(format!(
                "--shards {n} takes this shard's index from {INDEX_VAR}, which is not set: give --shard I/{n}"
            ))
        })?;
        let i: u32 = var
            .trim()
            .parse()
            .map_err(|_| ArgError(format!("{INDEX_VAR}={var} is not a shard index (0, 1, …)")))?;
        Shard::new(i, n).ok_or_else(|| {
            ArgError(format!("{INDEX_VAR}={i} is not a shard of --shards {n} (0 ≤ index < {n} ≤ 10000)"))
        })
    }
}

fn unix_ms(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

/// The bytes of `path`, at most `max`, or `None` while it is not there.
/// The files of the barrier and the exchange are small and written whole
/// (to a temporary name, then renamed), so one that is there and does not
/// read is not waited on: a directory was taken for a file not written
/// yet until the wait ran out, and `/dev/zero` was read until memory ran
/// out (found by probing).
fn read_small(path: &Path, max: u64) -> anyhow::Result<Option<Vec<u8>>> {
    use std::io::Read;
    let mut bytes = Vec::new();
    match std::fs::File::open(path).and_then(|f| f.take(max + 1).read_to_end(&mut bytes)) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(anyhow::Error::new(e).context(format!("reading {}", path.display()))),
        Ok(_) if bytes.len() as u64 > max => {
            anyhow::bail!("{} is larger than {max} bytes: not a file kfsim wrote", path.display())
        }
        Ok(_) => Ok(Some(bytes)),
    }
}

/// How far ahead of this machine's clock another shard's ready time may
/// be: a shard starts 3 s after the latest, so one whose clock ran ahead
/// held every shard back by as much, silently (a year ahead, a year;
/// found by probing). Shards whose clocks disagree this much would not
/// start together anyway.
const MAX_CLOCK_AHEAD: Duration = Duration::from_secs(60);

/// The ready time [ms since the epoch] in the barrier file `path`, or
/// `None` while it is not there.
fn ready_time(path: &Path) -> anyhow::Result<Option<u64>> {
    let Some(bytes) = read_small(path, 64)? else { return Ok(None) };
    let text = String::from_utf8_lossy(&bytes);
    let ms = text.trim().parse().map_err(|_| {
        anyhow::anyhow!(
            "{} is not a shard's ready file: it holds {:?}, not a time in ms since the epoch",
            path.display(),
            text.trim()
        )
    })?;
    let ahead = Duration::from_millis(ms).saturating_sub(Duration::from_millis(unix_ms(SystemTime::now())));
    anyhow::ensure!(
        ahead <= MAX_CLOCK_AHEAD,
        "{} says its shard was ready {} s ahead of this machine's clock (more than {} s): the shards' clocks \
         disagree; synchronise them (NTP) and start again",
        path.display(),
        ahead.as_secs(),
        MAX_CLOCK_AHEAD.as_secs()
    );
    Ok(Some(ms))
}

/// Write `bytes` to `path` so that a reader never sees half of it.
fn write_atomic(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    crate::files::write_whole(path, |w| w.write_all(bytes))
}

/// How long after the last shard is ready the live shards start: time for
/// every shard to see the last one's file.
const BARRIER_LEAD: Duration = Duration::from_secs(3);

/// The start barrier of live shards: write `DIR/ready-I-of-N` (this
/// shard's ready time), wait until all N are there, and start
/// [`BARRIER_LEAD`] after the latest — the same instant for every shard,
/// as close as the machines' clocks agree. Gives up after `wait`; stopped
/// by `stop` (Ctrl-C, SIGTERM: a pod being deleted), it takes its file
/// back, so that the others do not start counting on it. So it does when
/// it gives up, or refuses another shard's file: the others, and this
/// shard run again, would otherwise count on a shard that never started.
pub fn barrier(dir: &Path, shard: Shard, wait: Duration, stop: &AtomicBool) -> anyhow::Result<SystemTime> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let name = |i: u32| dir.join(format!("ready-{i}-of-{}", shard.count));
    let ours = name(shard.index);
    write_atomic(&ours, unix_ms(SystemTime::now()).to_string().as_bytes())?;
    let met = meet(dir, shard, &name, wait, stop);
    if let Err(e) = &met
        && let Err(left) = crate::files::remove_stale(&ours)
    {
        // the first error is why; this one says what a retry will find
        return Err(anyhow::anyhow!("{e:#}; and {left:#}"));
    }
    met
}

/// [`barrier`] after this shard's file is written: the start, when every
/// shard's file is there.
fn meet(
    dir: &Path,
    shard: Shard,
    name: &dyn Fn(u32) -> PathBuf,
    wait: Duration,
    stop: &AtomicBool,
) -> anyhow::Result<SystemTime> {
    let deadline = Instant::now() + wait;
    loop {
        if stop.load(Ordering::Relaxed) {
            return Err(
                super::Stopped(format!("stopped at the barrier {}: nothing ran", dir.display())).into()
            );
        }
        let ready: Vec<Option<u64>> =
            (0..shard.count).map(|i| ready_time(&name(i))).collect::<Result<_, _>>()?;
        if ready.iter().all(Option::is_some) {
            let last = ready.into_iter().flatten().max().unwrap_or(0);
            return Ok(UNIX_EPOCH + Duration::from_millis(last) + BARRIER_LEAD);
        }
        if Instant::now() >= deadline {
            let missing: Vec<String> = ready
                .iter()
                .enumerate()
                .filter(|(_, r)| r.is_none())
                .map(|(i, _)| format!("{i}/{}", shard.count))
                .collect();
            anyhow::bail!(
                "waited {} s at the barrier {} for shard(s) {}: are they running, with the same --barrier?",
                wait.as_secs(),
                dir.display(),
                missing.join(", ")
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The replications of a sharded plan: each shard runs its share of every
/// point the search evaluates and writes them into a folder all shards
/// share, then reads the others'. Every shard follows the same search (its
/// course depends only on the replications' values), so they meet at the
/// same points; what each read is kept for its `shard.json`.
pub struct Exchange {
    dir: PathBuf,
    shard: Shard,
    parallel: bool,
    wait: Duration,
    /// Whether to go on: not after Ctrl-C, SIGTERM or SIGHUP.
    go_on: Box<dyn Fn() -> bool + Sync + Send>,
    /// Every replication read, by [`rep_key`].
    pub seen: Mutex<std::collections::BTreeMap<String, RepValues>>,
}

impl Exchange {
    /// An exchange in `dir` (made if missing), for `shard`. Its
    /// replications stop when `go_on` says no: those that finished are in
    /// the exchange (a shard started again takes them up), and
    /// [`Replicate::replicate`] fails with [`sweep::Interrupted`].
    pub fn new(
        dir: &Path,
        shard: Shard,
        parallel: bool,
        wait: Duration,
        go_on: Box<dyn Fn() -> bool + Sync + Send>,
    ) -> anyhow::Result<Exchange> {
        // results of another kfsim version may differ: they meet apart
        let tag = env!("KFSIM_VERSION")
            .bytes()
            .fold(0xcbf2_9ce4_8422_2325_u64, |h, b| (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3));
        let dir = dir.join(format!("exchange-{tag:016x}"));
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        Ok(Exchange { dir, shard, parallel, wait, go_on, seen: Default::default() })
    }

    /// The folder of this kfsim version's replications.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn path(&self, key: &str) -> PathBuf {
        self.dir.join(format!("{key}.json"))
    }
}

/// A replication's file in the exchange: its key and the figures recorded
/// of it. Two plans sharing an exchange (the default is `--out`'s parent)
/// record different figures of the same replication (their targets, the
/// varied group's load): one plan reading the other's file lacked its own
/// and its merge was refused (found by review).
fn exchange_key(sc: &Scenario, r: u32, extra: &[String]) -> String {
    let h = crate::scenario::fnv1a(extra.iter().flat_map(|p| p.bytes().chain([0])));
    format!("{}-{h:016x}", rep_key(sc, r))
}

impl Replicate for Exchange {
    fn replicate(
        &self,
        sc: &Scenario,
        reps: std::ops::Range<u32>,
        extra: &[String],
    ) -> anyhow::Result<Vec<RepValues>> {
        // deal each point's replications from a point-dependent shard, so
        // that the first replications of every point do not all fall to
        // the first shards
        let offset = u64::from_str_radix(&sc.fingerprint(), 16).unwrap_or(0) % u64::from(self.shard.count);
        let mine: Vec<(usize, u32)> = reps
            .clone()
            .filter(|&r| self.shard.owns(u64::from(r) + offset))
            .filter(|&r| !self.path(&exchange_key(sc, r, extra)).exists())
            .map(|r| (0, r))
            .collect();
        let runs =
            sweep::run_values_until(std::slice::from_ref(sc), &mine, self.parallel, &*self.go_on, extra);
        for ((_, r), values) in mine.iter().zip(&runs) {
            if let Some(values) = values {
                write_atomic(&self.path(&exchange_key(sc, *r, extra)), &serde_json::to_vec(values)?)?;
            }
        }
        if runs.iter().any(Option::is_none) {
            return Err(sweep::Interrupted.into());
        }
        let deadline = Instant::now() + self.wait;
        let mut out = Vec::new();
        for r in reps {
            let file = self.path(&exchange_key(sc, r, extra));
            let values: RepValues = loop {
                // a dozen figures: a megabyte is far past any
                if let Some(text) = read_small(&file, 1 << 20)? {
                    break serde_json::from_slice(&text)
                        .with_context(|| format!("{} is not a replication's values", file.display()))?;
                }
                if !(self.go_on)() {
                    return Err(sweep::Interrupted.into());
                }
                if Instant::now() >= deadline {
                    let owner = (u64::from(r) + offset) % u64::from(self.shard.count);
                    anyhow::bail!(
                        "waited {} s for replication {r} of {} from shard {owner}/{} in {}: is it running, with the same --exchange?",
                        self.wait.as_secs(),
                        sc.name,
                        self.shard.count,
                        self.dir.display()
                    );
                }
                std::thread::sleep(Duration::from_millis(20));
            };
            self.seen.lock().unwrap_or_else(|e| e.into_inner()).insert(rep_key(sc, r), values.clone());
            out.push(values);
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A file of the barrier or the exchange is read to its bound and no
    /// further; one not there is waited for, one that does not read is not.
    #[test]
    fn small_files_are_read_to_their_bound() {
        let dir = std::env::temp_dir().join(format!("kfsim-small-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        assert!(read_small(&dir.join("absent"), 64).unwrap().is_none());
        let err = read_small(Path::new("/dev/zero"), 64).unwrap_err().to_string();
        assert!(err.contains("larger than 64 bytes"), "{err}");
        assert!(read_small(&dir, 64).is_err(), "a folder is not a file yet to come");
        std::fs::write(dir.join("r"), "1234").unwrap();
        assert_eq!(read_small(&dir.join("r"), 64).unwrap().as_deref(), Some(&b"1234"[..]));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
