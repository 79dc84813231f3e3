//! The service's state: accounts (客服账号) with their reception rules and
//! routers, servicers (接待人员), customers, simulation channels, sessions,
//! message logs and access tokens — and the administrative operations on
//! them that are not about sessions (tokens, ids, wake-ups, figures).
//!
//! Pure: no I/O, no clock, no ambient randomness. Every operation takes the
//! time as `now_us` (µs since the Unix epoch) and ids come from a seeded
//! generator, so tests drive it with fixed times. Administration is in
//! `admin.rs`, sessions in `session.rs`, `agent.rs` and `enterprise.rs`; all
//! are `impl State`. Long-poll wake-ups are collected in
//! [`State::take_wakes`] for the caller to fire after it drops the lock.

use std::collections::VecDeque;
use std::hash::BuildHasher;
use std::sync::Arc;

use compact_str::CompactString;
use hashbrown::HashTable;
use rand::{Rng, SeedableRng};
use rand_xoshiro::Xoshiro256PlusPlus;
use serde::{Deserialize, Serialize};
use sha1::{Digest, Sha1};
use tokio::sync::Notify;

use super::errors::{ApiError, code};
use super::faults::Caller;
use super::feed::Feed;
use super::model::{Item, Msg, Name, SyncEntry};
use crate::reception::{Router, Ticket};
use crate::scenario::{PolicyKind, Scenario};

/// The service's maps, keyed mostly by ids and handles its clients choose.
/// foldhash rather than std's SipHash: hashing was a twentieth of a
/// customer message's cost, and foldhash's per-process random seed still
/// keeps a client from choosing keys that collide.
pub(super) type HashMap<K, V> = std::collections::HashMap<K, V, foldhash::fast::RandomState>;
pub(super) type HashSet<K> = std::collections::HashSet<K, foldhash::fast::RandomState>;

/// Contact-way scenes an account keeps: `add_contact_way` has no delete,
/// so without a bound a client could grow them without end.
pub const MAX_SCENES: usize = 10_000;

/// One day [µs].
pub const DAY_US: u64 = 86_400_000_000;
/// One hour [µs].
pub const HOUR_US: u64 = 3_600_000_000;

/// How far ahead of this service's clock another kfsim's clock may have
/// been when it issued a token this one accepts [µs].
pub const FOREIGN_TOKEN_SKEW_US: u64 = 60_000_000;

/// Limits and credentials of a service instance.
#[derive(Debug, Clone)]
pub struct Config {
    /// The corp id `gettoken` accepts.
    pub corpid: String,
    /// The secret `gettoken` accepts.
    pub corpsecret: String,
    /// Lifetime of an access_token [µs] (WeCom: 7200 s).
    pub token_ttl_us: u64,
    /// Fault: tokens stop working this long after they were issued, while
    /// `expires_in` still says `token_ttl_us` (40014/42001 on the next call).
    pub token_invalid_after_us: Option<u64>,
    /// Messages, events and queue items older than this are dropped, and
    /// customers idle this long are forgotten (WeCom's sync window: 3 days).
    pub retention_us: u64,
    /// A session with no message for this long ends (WeCom: 48 h).
    pub idle_end_us: u64,
    /// Entries kept per account log for `sync_msg`.
    pub sync_log_cap: usize,
    /// Items kept per servicer queue.
    pub servicer_queue_cap: usize,
    /// Items kept per customer channel queue unless the channel asks for
    /// another size (at most [`MAX_CHANNEL_QUEUE`]).
    pub channel_queue_cap: usize,
    /// Open customer channels at most.
    pub max_channels: usize,
    /// Customers remembered at most: a client naming ever new customers
    /// would otherwise grow the process by about 1 KB each until the
    /// retention forgets them. A new one beyond it is refused with 45009.
    pub max_customers: usize,
    /// A channel nobody pulled from or sent a batch on for this long is
    /// closed, as by `close_channel`: a driver that was killed does not
    /// keep its customers' sessions (and so servicers' slots) for ever.
    pub channel_lease_us: u64,
    /// Customer messages a waiting session (state 2) holds for its future
    /// servicer; more are refused with 45009.
    pub pending_cap: usize,
    /// Bytes of customer messages all waiting sessions hold at most
    /// (each weighed as the `sync_msg` log weighs it); more are refused
    /// with 45009. Without it `pending_cap` × `max_customers` messages of
    /// 2 KB could be held: terabytes.
    pub pending_bytes_cap: usize,
    /// 接待上限 of servicers added through the API when the account's rule
    /// gives none.
    pub default_max_concurrent: u32,
    /// Seed of ids, tokens and codes.
    pub seed: u64,
    /// Keep track of the `kf_msg_or_event` callbacks each account owes
    /// (a callback URL is configured).
    pub callbacks: bool,
    /// Callbacks of one account out at once; more owed are coalesced.
    pub callback_max_in_flight: u32,
    /// Servicers' queues are answered by [`State::auto_reply`]: keep the
    /// list of the servicers it has to look at.
    pub auto_reply: bool,
    /// Bytes of temporary media kept at most, each upload weighed with
    /// its id, names and entries (the oldest go first). Customers' media
    /// ids are kept apart: at most `sync_log_cap` of them.
    pub media_cap_bytes: usize,
}

/// The largest queue a channel may ask for.
pub const MAX_CHANNEL_QUEUE: usize = 1_000_000;

impl Default for Config {
    fn default() -> Config {
        Config {
            corpid: "kfsim".into(),
            corpsecret: "kfsim-secret".into(),
            token_ttl_us: 7200 * 1_000_000,
            token_invalid_after_us: None,
            retention_us: 3 * DAY_US,
            idle_end_us: 48 * HOUR_US,
            sync_log_cap: 100_000,
            servicer_queue_cap: 100_000,
            channel_queue_cap: 100_000,
            max_channels: 1024,
            // about 2 GB; the largest benchmark (benches/live/20k.toml)
            // names about 1.1 million customers in its 4.5 minutes
            max_customers: 2_000_000,
            channel_lease_us: 60 * 1_000_000,
            pending_cap: 1000,
            pending_bytes_cap: 512 << 20,
            default_max_concurrent: 1,
            seed: 1,
            callbacks: false,
            callback_max_in_flight: 64,
            auto_reply: false,
            media_cap_bytes: 256 << 20,
        }
    }
}

/// An account's reception rules (kfsim's extension of `account/add`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rule {
    /// `round_robin`, `idle_first` or `fill_first`.
    #[serde(default = "default_policy", deserialize_with = "policy_by_name")]
    pub policy: PolicyKind,
    /// 优先分配给上次接待人员.
    #[serde(default)]
    pub prefer_last_agent: bool,
    /// How recent the last session must be [s].
    #[serde(default = "default_prefer_within")]
    pub prefer_last_within_s: u64,
    /// Size of the waiting pool; `null` is unbounded, 0 turns waiting off.
    #[serde(default)]
    pub queue_limit: Option<u32>,
    /// 接待上限 of servicers added without one.
    #[serde(default)]
    pub max_concurrent: Option<u32>,
    /// Managed through the API (通过API管理): a new session stays in state
    /// 0 for the middleware, which answers it with `send_msg` or hands it
    /// on with `service_state/trans`; the reception rules above apply once
    /// it is put in the pool.
    #[serde(default)]
    pub api_managed: bool,
}

fn default_policy() -> PolicyKind {
    PolicyKind::RoundRobin
}

/// A policy, by its name. serde_json reads an enum from a string or an
/// object only, and answers any other value (`null`, 5) with a bare
/// "expected value", a syntax error's words for valid JSON; read through a
/// visitor that expects the names, such a value is refused naming them,
/// as an unknown name is.
fn policy_by_name<'de, D: serde::Deserializer<'de>>(d: D) -> Result<PolicyKind, D::Error> {
    struct Names;
    impl serde::de::Visitor<'_> for Names {
        type Value = PolicyKind;
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            // the words of serde's own unknown-variant error
            f.write_str("one of `round_robin`, `idle_first`, `fill_first`")
        }
        fn visit_str<E: serde::de::Error>(self, name: &str) -> Result<PolicyKind, E> {
            PolicyKind::deserialize(serde::de::IntoDeserializer::into_deserializer(name))
        }
    }
    d.deserialize_any(Names)
}

fn default_prefer_within() -> u64 {
    48 * 3600
}

impl Default for Rule {
    fn default() -> Rule {
        Rule {
            policy: default_policy(),
            prefer_last_agent: false,
            prefer_last_within_s: default_prefer_within(),
            queue_limit: None,
            max_concurrent: None,
            api_managed: false,
        }
    }
}

/// A table with stable indices and slot reuse.
#[derive(Debug)]
pub(super) struct Slab<T> {
    items: Vec<Option<T>>,
    free: Vec<u32>,
    len: usize,
}

impl<T> Slab<T> {
    fn new() -> Slab<T> {
        Slab { items: Vec::new(), free: Vec::new(), len: 0 }
    }

    pub(super) fn insert(&mut self, item: T) -> u32 {
        self.len += 1;
        if let Some(i) = self.free.pop() {
            self.items[i as usize] = Some(item);
            return i;
        }
        self.items.push(Some(item));
        (self.items.len() - 1) as u32
    }

    pub(super) fn remove(&mut self, i: u32) -> Option<T> {
        let item = self.items.get_mut(i as usize)?.take()?;
        self.free.push(i);
        self.len -= 1;
        Some(item)
    }

    /// Remove the item at `i` but keep its index from reuse until
    /// [`Slab::release`]: what still names the index (a closing channel's
    /// customers) is not taken for a newcomer's.
    pub(super) fn take(&mut self, i: u32) -> Option<T> {
        let item = self.items.get_mut(i as usize)?.take()?;
        self.len -= 1;
        Some(item)
    }

    /// Let the index of an item [`Slab::take`] removed be reused.
    pub(super) fn release(&mut self, i: u32) {
        debug_assert!(self.items[i as usize].is_none() && !self.free.contains(&i));
        self.free.push(i);
    }

    pub(super) fn get(&self, i: u32) -> Option<&T> {
        self.items.get(i as usize)?.as_ref()
    }

    pub(super) fn get_mut(&mut self, i: u32) -> Option<&mut T> {
        self.items.get_mut(i as usize)?.as_mut()
    }

    pub(super) fn len(&self) -> usize {
        self.len
    }

    /// Slots ever used (indices are below this).
    pub(super) fn capacity(&self) -> usize {
        self.items.len()
    }

    pub(super) fn iter(&self) -> impl Iterator<Item = (u32, &T)> {
        self.items.iter().enumerate().filter_map(|(i, x)| x.as_ref().map(|x| (i as u32, x)))
    }
}

/// Index of `T` in `s`, for code that knows it exists.
macro_rules! at {
    ($slab:expr, $i:expr) => {
        $slab.get_mut($i).expect("index of a live entry")
    };
}
pub(super) use at;

/// A customer-service account (客服账号).
#[derive(Debug)]
pub(super) struct Account {
    pub(super) open_kfid: Name,
    pub(super) name: String,
    pub(super) media_id: String,
    pub(super) rule: Rule,
    pub(super) router: Router<u32>,
    /// By router index: the servicer in that place, if any.
    pub(super) agents: Vec<Option<u32>>,
    /// Scenes of its contact ways (at most [`MAX_SCENES`]): looked up at
    /// every customer's `enter`.
    pub(super) scenes: HashSet<String>,
    pub(super) log: Feed<SyncEntry>,
    /// `log` entries before this one were returned by `sync_msg` already.
    pub(super) synced_upto: u64,
    /// Client-chosen `send_msg` msgids, unique within the account.
    pub(super) sent_ids: RecentIds,
    /// Sessions in states 0, 1, 2, 3.
    pub(super) by_state: [u64; 4],
    /// Callbacks owed and out.
    pub(super) owed: super::callbacks::Owed,
    /// Daily statistics.
    pub(super) days: super::stats::Days,
}

/// The avatar URL's last segment of an account made without a media_id
/// (a scenario's): WeCom gives every account an avatar, and a middleware
/// that fetches it would trip on an empty URL (found by review).
pub(super) const DEFAULT_AVATAR: &str = "default";

impl Account {
    pub(super) fn members(&self) -> usize {
        self.agents.iter().filter(|a| a.is_some()).count()
    }

    /// The media_id its avatar URL names ([`DEFAULT_AVATAR`] without one).
    pub(super) fn avatar_id(&self) -> &str {
        if self.media_id.is_empty() { DEFAULT_AVATAR } else { &self.media_id }
    }
}

/// A servicer (接待人员), who may serve several accounts.
#[derive(Debug)]
pub(super) struct User {
    pub(super) userid: Name,
    /// 0 接待中, 1 停止接待.
    pub(super) status: u8,
    /// 0 停止接待, 1 暂时挂起 (when status is 1).
    pub(super) stop_type: u8,
    /// `(account, router index)`.
    pub(super) memberships: Vec<(u32, u32)>,
    pub(super) feed: Feed<Item>,
    pub(super) notify: Arc<Notify>,
    pub(super) dirty: bool,
    /// In [`State::auto_due`].
    pub(super) auto_due: bool,
    /// Replies' `client_msgid` → msgid: a resend is not a new reply.
    pub(super) recent: RecentIds<Box<str>>,
    /// The channel that carries this servicer's items instead of its own
    /// queue (a driver that plays many servicers pulls one channel).
    pub(super) channel: Option<u32>,
}

/// A WeChat customer, created through a simulation channel.
#[derive(Debug)]
pub(super) struct Customer {
    pub(super) external_userid: Name,
    pub(super) handle: Name,
    pub(super) channel: u32,
    /// Sessions (open or remembered) with accounts.
    pub(super) convs: u32,
    /// `(account, conv)` of the customer's first session still remembered
    /// (`NO_CONV` when none): most customers write to one account, and
    /// this line of the customer is read anyway, where `conv_ix` would cost
    /// two cache misses more a message.
    pub(super) conv: (u32, u32),
    pub(super) last_us: u64,
    /// Scene and scene_param of the last entry (boxed: few customers enter
    /// by a contact way, and a customer is then 64 bytes).
    pub(super) enter: Option<Box<(String, String)>>,
}

/// [`Customer::conv`] when the customer has no session cached.
pub(super) const NO_CONV: (u32, u32) = (u32::MAX, u32::MAX);

/// A simulation-port channel: one customer driver's queue of replies and
/// session changes.
#[derive(Debug)]
pub(super) struct Channel {
    /// Items, each with the servicer it is for (`None`: for a customer).
    pub(super) feed: Feed<(Option<Name>, Item)>,
    pub(super) notify: Arc<Notify>,
    pub(super) dirty: bool,
    /// Handle → customer. Handles up to 24 bytes are kept in the table
    /// itself: a lookup compares the key without a miss on a heap string.
    pub(super) customers: HashMap<CompactString, u32>,
    /// Servicers whose queues this channel carries.
    pub(super) servicers: Vec<u32>,
    /// Customer messages' `client_msgid` → msgid: a resend is not a new
    /// message. Sized for a minute at 15 000 messages/s on one channel.
    pub(super) recent: RecentIds<Name, 1_000_000>,
    /// The channel's id.
    pub(super) id: Box<str>,
    /// When it was last used (a pull or a batch); `None` until then, when
    /// its lease starts at the next sweep.
    pub(super) last_us: Option<u64>,
    /// Opened for servicers (`/sim/servicer/open_channel`), not customers.
    pub(super) for_servicers: bool,
}

/// A closed channel whose customers are still to be forgotten: its index
/// in `channels` stays reserved meanwhile (see [`Slab::take`]).
#[derive(Debug)]
pub(super) struct Closing {
    pub(super) ch: u32,
    /// Those not looked at yet.
    pub(super) customers: std::collections::hash_map::IntoValues<CompactString, u32>,
    /// Those with sessions the record does not cache, ended and forgotten
    /// last ([`State::close_several`]).
    pub(super) several: Vec<u32>,
    /// `several`, a bit per customer index, set when their sessions begin
    /// to be looked for (empty until then).
    pub(super) marked: Vec<u64>,
    /// The next index of the session table to look at for them.
    pub(super) next_conv: u32,
}

/// What a `send_msg_on_event` code was issued for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum CodeKind {
    /// 欢迎语 (enter_session): 20 s, any state.
    Welcome,
    /// 排队提示语 (→ 2): 48 h, while in state 2.
    Queue,
    /// 接入提示语 (→ 3): 48 h, while in state 3.
    Assign,
    /// 结束语 (→ 4): 20 s, while in state 4.
    End,
}

/// An issued, unused code.
#[derive(Debug, Clone)]
pub(super) struct Code {
    pub(super) nonce: u64,
    pub(super) kind: CodeKind,
    pub(super) session_no: u32,
    pub(super) expires_us: u64,
}

/// The session of one customer with one account, kept across its
/// successive sessions (for quotas, the last agent and codes).
#[derive(Debug)]
pub(super) struct Conv {
    pub(super) account: u32,
    pub(super) customer: u32,
    /// 0 未处理, 1 智能助手, 2 待接入池, 3 人工接待, 4 已结束/未开始.
    pub(super) state: u8,
    /// Router index of the servicer holding it (state 3).
    pub(super) agent: Option<u32>,
    /// Place in the pool (state 2).
    pub(super) ticket: Option<Ticket>,
    /// Customer messages waiting for a servicer (state 2); taken and
    /// dropped through [`State::unpend`], which keeps
    /// [`State::pending_bytes`].
    pub(super) pending: Vec<Arc<Msg>>,
    /// Counts the sessions; codes are bound to one.
    pub(super) session_no: u32,
    pub(super) last_customer_us: Option<u64>,
    /// `send_msg` messages since the customer's last message.
    pub(super) api_sent: u8,
    pub(super) last_us: u64,
    /// `(router index, user, when)` of the last servicer, for
    /// prefer_last_agent.
    pub(super) last_agent: Option<(u32, u32, u64)>,
    pub(super) last_welcome_us: Option<u64>,
    pub(super) codes: Vec<Code>,
    /// Codes for "first time in state 2 / 3" were given this session.
    pub(super) coded_queue: bool,
    pub(super) coded_assign: bool,
    /// What the middleware owes it (API-managed accounts).
    pub(super) audit: super::audit::ConvAudit,
    /// 升级服务: boxed, as few customers are ever upgraded.
    pub(super) upgrade: Option<Box<super::upgrade::Upgrade>>,
}

/// Client-chosen ids seen recently, bounded by age and by count (`CAP`),
/// each with what it was answered (a message's msgid), so that a resend is
/// answered the same without running twice.
///
/// A channel's ledger grows to a million ids, and nothing in it may take
/// long to grow: each doubling of a hash table of the ids, rehashed as
/// strings, and of one deque of them stopped all requests for tens of
/// milliseconds. So the ids sit in arrival order in fixed-size chunks
/// (never moved), and the hash table holds only each one's hash and serial
/// (16 bytes; a doubling hashes nothing). The oldest ids leave the table
/// one by one; their chunk is freed when all of its ids have left.
///
/// An id is kept as a [`Key`], not as its text: a resend key is the
/// customer, the account and the client's id (some 50 to 90 bytes), and a
/// full channel ledger held a million of them, each its own allocation,
/// made and freed on every message.
///
/// A ledger written slowly fills its one chunk for a long time: a
/// servicer's, a few replies a second against a minute's window, held
/// every reply it had seen until 4096 had come (heaptrack: 14 of 22 MB
/// of a service five runs into the soak's loop). So while there is one chunk, the
/// ids still held move down once half of it has left: a ledger holds at
/// most about twice the ids it keeps, or one full chunk and the next (a
/// ledger fast enough to fill chunks has them leave as fast). The move
/// is paid by the ids that left, one each at most.
#[derive(Debug)]
pub(super) struct RecentIds<V = (), const CAP: usize = 100_000, S = foldhash::fast::RandomState> {
    /// `(hash, serial)` of each id held.
    table: HashTable<(u64, u64)>,
    /// Every chunk but the first holds `CHUNK` ids, the last one up to
    /// that; the first holds up to `CHUNK` (fewer once its ids moved down).
    chunks: VecDeque<Vec<Seen<V>>>,
    /// The serial of `chunks[0][0]`.
    base: u64,
    /// Ids at the start of `chunks[0]` that have left.
    gone: usize,
    hasher: S,
    /// Seeded apart from `hasher`: the second half of a [`Key`].
    check: foldhash::fast::RandomState,
}

/// An id as a ledger knows it: two independently seeded 64-bit hashes of
/// its parts. Two ids are taken for one only when both agree (about one
/// chance in 2^128 for two ids; the seeds are the process's own, so a
/// client cannot aim at one). Valid only with the ledger that made it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Key {
    hash: u64,
    check: u64,
}

// not derived: that would ask for `V: Default`
impl<V, const CAP: usize, S: Default> Default for RecentIds<V, CAP, S> {
    fn default() -> Self {
        RecentIds {
            table: HashTable::new(),
            chunks: VecDeque::new(),
            base: 0,
            gone: 0,
            hasher: S::default(),
            check: foldhash::fast::RandomState::default(),
        }
    }
}

const CHUNK: usize = 4096;
/// Ids that must have left a lone chunk before the rest move down (fewer
/// would move a few ids often for a few bytes).
const MOVE_AFTER: usize = 32;

#[derive(Debug)]
struct Seen<V> {
    when_us: u64,
    key: Key,
    value: V,
}

impl<V, const CAP: usize, S: BuildHasher> RecentIds<V, CAP, S> {
    /// The key of the id made of `parts` (`["a", "b"]` is another id than
    /// `["a\nb"]` or `["ab", ""]`: each part is hashed with its length).
    pub(super) fn key(&self, parts: &[&str]) -> Key {
        Key { hash: self.hasher.hash_one(parts), check: self.check.hash_one(parts) }
    }

    fn at(&self, serial: u64) -> &Seen<V> {
        let i = (serial - self.base) as usize;
        let first = self.chunks[0].len();
        if i < first {
            return &self.chunks[0][i];
        }
        let j = i - first;
        &self.chunks[1 + j / CHUNK][j % CHUNK]
    }

    fn find(&self, key: Key) -> Option<&Seen<V>> {
        let &(_, serial) = self.table.find(key.hash, |&(h, s)| h == key.hash && self.at(s).key == key)?;
        Some(self.at(serial))
    }

    fn oldest(&self) -> Option<&Seen<V>> {
        self.chunks.front()?.get(self.gone)
    }

    /// What the id of `key` was answered, if it was seen.
    pub(super) fn get(&self, key: Key) -> Option<&V> {
        self.find(key).map(|e| &e.value)
    }

    /// Record the id of `key`; `false` if it was seen already.
    pub(super) fn insert(&mut self, key: Key, value: V, now_us: u64) -> bool {
        if self.find(key).is_some() {
            return false;
        }
        if self.table.len() >= CAP {
            self.pop_oldest();
        }
        let held = self.gone + self.table.len();
        let serial = self.base + held as u64;
        if self.chunks.back().is_none_or(|c| c.len() == CHUNK) {
            // grown as it fills: a slow ledger's chunk stays small
            self.chunks.push_back(Vec::new());
        }
        let last = self.chunks.back_mut().expect("a chunk with room");
        last.push(Seen { when_us: now_us, key, value });
        self.table.insert_unique(key.hash, (key.hash, serial), |&(h, _)| h);
        true
    }

    pub(super) fn expire(&mut self, before_us: u64) {
        while self.oldest().is_some_and(|e| e.when_us < before_us) {
            self.pop_oldest();
        }
    }

    fn pop_oldest(&mut self) {
        let Some(hash) = self.oldest().map(|e| e.key.hash) else { return };
        let serial = self.base + self.gone as u64;
        if let Ok(slot) = self.table.find_entry(hash, |&(_, s)| s == serial) {
            slot.remove();
        }
        self.gone += 1;
        let lone = self.chunks.len() == 1;
        let first = &mut self.chunks[0];
        if self.gone == first.len() {
            self.chunks.pop_front();
            self.base += self.gone as u64;
            self.gone = 0;
        } else if lone && self.gone >= MOVE_AFTER && 2 * self.gone >= first.len() {
            first.drain(..self.gone);
            if first.capacity() > 4 * first.len() {
                first.shrink_to(2 * first.len());
            }
            self.base += self.gone as u64;
            self.gone = 0;
        }
    }

    /// Ids in the chunks: those held and those left but not freed.
    #[cfg(test)]
    fn stored(&self) -> usize {
        self.chunks.iter().map(Vec::len).sum()
    }

    /// Ids held.
    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        self.table.len()
    }
}

#[cfg(test)]
mod recent_tests {
    use super::RecentIds;
    use std::hash::{BuildHasher, BuildHasherDefault, Hasher};

    /// A ledger of one-part ids.
    trait ById<V> {
        fn ins(&mut self, id: impl AsRef<str>, value: V, now_us: u64) -> bool;
        fn see(&self, id: &str) -> Option<&V>;
    }
    impl<V, const CAP: usize, S: BuildHasher> ById<V> for RecentIds<V, CAP, S> {
        fn ins(&mut self, id: impl AsRef<str>, value: V, now_us: u64) -> bool {
            self.insert(self.key(&[id.as_ref()]), value, now_us)
        }
        fn see(&self, id: &str) -> Option<&V> {
            self.get(self.key(&[id]))
        }
    }

    /// Every id hashes alike in the table: the ledger must still tell
    /// them apart, and drop the right one when the oldest goes.
    #[derive(Default)]
    struct Same;
    impl Hasher for Same {
        fn finish(&self) -> u64 {
            7
        }
        fn write(&mut self, _: &[u8]) {}
    }

    fn check<S: std::hash::BuildHasher + Default>() {
        let mut r: RecentIds<u32, 3, S> = RecentIds::default();
        assert!(r.ins("a", 1, 10) && r.ins("b", 2, 20) && r.ins("c", 3, 30));
        assert!(!r.ins("b", 9, 31), "seen already");
        assert_eq!((r.see("a"), r.see("b"), r.see("c")), (Some(&1), Some(&2), Some(&3)));
        assert!(r.ins("d", 4, 40), "past the cap the oldest goes");
        assert_eq!((r.see("a"), r.see("b"), r.see("d"), r.len()), (None, Some(&2), Some(&4), 3));
        assert!(r.ins("a", 5, 50), "a dropped id is new again");
        r.expire(35);
        assert_eq!((r.see("b"), r.see("c"), r.see("d"), r.see("a")), (None, None, Some(&4), Some(&5)));
        r.expire(u64::MAX);
        assert_eq!((r.len(), r.see("a")), (0, None));
    }

    #[test]
    fn bounded_by_count_and_age() {
        check::<std::hash::RandomState>();
    }

    #[test]
    fn ids_of_one_hash_are_told_apart() {
        check::<BuildHasherDefault<Same>>();
    }

    /// Growing through many doublings keeps every id findable.
    #[test]
    fn grows_without_losing_ids() {
        let mut r: RecentIds<usize, 100_000> = RecentIds::default();
        for i in 0..50_000 {
            assert!(r.ins(format!("id-{i}"), i, i as u64));
        }
        assert!((0..50_000).all(|i| r.see(&format!("id-{i}")) == Some(&i)));
        assert_eq!(r.see("id-50000"), None);
        // ids leave across chunk boundaries, by age, then by count
        r.expire(20_000);
        assert_eq!(r.len(), 30_000);
        assert!((0..50_000).all(|i| r.see(&format!("id-{i}")).is_some() == (i >= 20_000)));
        let mut r: RecentIds<usize, 5_000> = RecentIds::default();
        for i in 0..12_345 {
            assert!(r.ins(format!("id-{i}"), i, 0));
        }
        assert_eq!(r.len(), 5_000);
        assert!((0..12_345).all(|i| r.see(&format!("id-{i}")).is_some() == (i >= 7_345)));
        r.expire(1);
        assert_eq!((r.len(), r.see("id-12344")), (0, None));
        assert!(r.ins("id-12344", 1, 2) && r.see("id-12344") == Some(&1), "usable again when empty");
    }

    /// A servicer's ledger: a reply a second against a window of 100 s.
    /// It kept every id it had seen until 4096 had come; it now holds
    /// about twice the ids it keeps.
    #[test]
    fn a_slow_ledger_holds_about_what_it_keeps() {
        let mut r: RecentIds<u32> = RecentIds::default();
        let mut most = 0;
        for i in 0..20_000u32 {
            let now = u64::from(i) * 1_000_000;
            assert!(r.ins(format!("id-{i}"), i, now));
            r.expire(now.saturating_sub(100_000_000));
            assert!(r.len() <= 101);
            most = most.max(r.stored());
        }
        assert!(most <= 2 * 101 + super::MOVE_AFTER, "{most} ids stored for 101 kept");
        assert!((0..20_000).all(|i| r.see(&format!("id-{i}")).is_some() == (i >= 19_899)));
    }

    /// Against a model (the ids in order, a set of those held): bursts
    /// that fill several chunks, slow stretches with one chunk whose ids
    /// move down, ids sent again, the cap and the age both taking ids.
    #[test]
    fn agrees_with_a_plain_queue() {
        use std::collections::{HashMap, VecDeque};
        const CAP: usize = 9_000;
        let mut r: RecentIds<u64, CAP> = RecentIds::default();
        let mut order: VecDeque<(u64, u64)> = VecDeque::new();
        let mut held: HashMap<u64, u64> = HashMap::new();
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        let mut draw = |n: u64| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed % n
        };
        let (mut now, mut next) = (0u64, 0u64);
        for step in 0..150_000u64 {
            // a burst of about a thousand ids an instant, every fifth of the way
            let burst = (step / 10_000) % 5 == 0;
            now += if burst { draw(2) } else { 1 + draw(40) };
            let id = if next > 0 && draw(8) == 0 { next - 1 - draw(next.min(12_000)) } else { next };
            let fresh = !held.contains_key(&id);
            assert_eq!(r.ins(format!("x{id}"), step, now), fresh, "id {id} at step {step}");
            if fresh {
                if held.len() >= CAP {
                    let (old, _) = order.pop_front().expect("held");
                    held.remove(&old);
                }
                order.push_back((id, now));
                held.insert(id, step);
                next = next.max(id + 1);
            }
            if draw(16) == 0 {
                let before = now.saturating_sub(draw(3_000));
                r.expire(before);
                while order.front().is_some_and(|&(_, t)| t < before) {
                    let (old, _) = order.pop_front().expect("held");
                    held.remove(&old);
                }
            }
            assert_eq!(r.len(), held.len(), "at step {step}");
            for _ in 0..2 {
                let probe = draw(next + 1);
                assert_eq!(r.see(&format!("x{probe}")), held.get(&probe), "id {probe} at step {step}");
            }
        }
        assert!(r.stored() <= 2 * r.len() + super::CHUNK, "{} stored for {} held", r.stored(), r.len());
    }

    /// A key's parts are not run together: ids that concatenate alike
    /// are other ids.
    #[test]
    fn parts_are_kept_apart() {
        let mut r: RecentIds<u32> = RecentIds::default();
        assert!(r.insert(r.key(&["a", "b", "c"]), 1, 0));
        for other in [&["a\nb", "c"][..], &["ab", "c"], &["a", "bc"], &["a", "b", "c", ""], &["abc"]] {
            assert!(r.insert(r.key(other), 2, 0), "{other:?} taken for [a, b, c]");
        }
        assert_eq!((r.get(r.key(&["a", "b", "c"])), r.len()), (Some(&1), 6));
        assert!(!r.insert(r.key(&["a", "b", "c"]), 3, 0), "the same parts are the same id");
    }
}

/// access_tokens: the current one and a few expired ones (to tell 42001
/// from 40014).
#[derive(Debug, Default)]
struct Tokens {
    /// The token, when it really stops working, and when `expires_in`
    /// said it would (later, when tokens are invalidated early).
    current: Option<(String, u64, u64)>,
    /// Earlier tokens, each with when `expires_in` said it would expire:
    /// kfsim's driver, spared from injected faults, may use one until then
    /// (another client's `gettoken` replaces a token invalidated early).
    old: VecDeque<(String, u64)>,
}

/// Running totals for `/metrics` and the per-minute log line.
#[derive(Debug, Default, Clone, Copy, Serialize)]
pub struct Counters {
    /// Customer messages accepted.
    pub customer_messages: u64,
    /// Customer messages handed to a servicer's queue.
    pub messages_routed: u64,
    /// Servicer messages (origin 5).
    pub servicer_messages: u64,
    /// `send_msg` and `send_msg_on_event` messages.
    pub api_messages: u64,
    /// Sessions started (4 → 0).
    pub sessions_started: u64,
    /// Assignments to a servicer (from routing, the pool or a transfer).
    pub assigned: u64,
    /// Sessions put in a waiting pool.
    pub queued: u64,
    /// Sessions refused because the pool was full.
    pub rejected: u64,
    /// Sessions ended.
    pub ended: u64,
    /// Sessions ended because they were idle.
    pub idle_ended: u64,
    /// Queue items pushed out of a full simulation-port queue.
    pub queue_overflows: u64,
    /// Log entries announced by a callback that also announced others
    /// (more were owed than could be out at once).
    pub callbacks_coalesced: u64,
    /// `kf_msg_or_event` callbacks taken for delivery: counted as their
    /// entries stop being owed, under the same lock, so that this, the
    /// entries coalesced and those unannounced add up to the entries
    /// logged whenever they are read (counted when a delivery task started,
    /// a summary read in between missed a callback from all three).
    pub callbacks_sent: u64,
    /// Fault: calls refused because their token was invalidated early.
    pub tokens_refused_early: u64,
    /// Channels closed because their lease ran out.
    pub channels_expired: u64,
    /// New customers refused because `max_customers` were remembered.
    pub customers_refused: u64,
}

/// The service state. See the module docs.
#[derive(Debug)]
pub struct State {
    pub(super) cfg: Config,
    pub(super) rng: Xoshiro256PlusPlus,
    /// The keys of the feeds' cursors, a stream of their own: the ids,
    /// tokens and codes `rng` draws stay what they were for a seed.
    cursor_keys: Xoshiro256PlusPlus,
    pub(super) next_id: u64,
    tokens: Tokens,
    pub(super) accounts: Slab<Account>,
    pub(super) account_ix: HashMap<Box<str>, u32>,
    pub(super) users: Slab<User>,
    pub(super) user_ix: HashMap<Box<str>, u32>,
    pub(super) customers: Slab<Customer>,
    /// By the 64 bits of their external_userid ([`customer_key`]): compared
    /// in the table itself, where a string key cost one more cache miss a
    /// lookup (its text) in a table of millions, and an allocation.
    pub(super) customer_ix: HashMap<u64, u32>,
    pub(super) channels: Slab<Channel>,
    pub(super) channel_ix: HashMap<Box<str>, u32>,
    pub(super) convs: Slab<Conv>,
    pub(super) conv_ix: HashMap<(u32, u32), u32>,
    pub(super) counters: Counters,
    /// Weight of every session's `pending` messages (see
    /// [`Config::pending_bytes_cap`]).
    pub(super) pending_bytes: usize,
    pub(super) wake_users: Vec<u32>,
    /// Auto-reply mode: the servicers whose queues got items since
    /// [`State::auto_reply`] last emptied them (each once; an index may
    /// outlive its servicer, whose flag then no longer says so).
    pub(super) auto_due: Vec<u32>,
    pub(super) wake_channels: Vec<u32>,
    /// The wake-ups of queues that went (a channel closed, a servicer
    /// removed): their long-polls answer at once (40058, 95014) instead of
    /// at their timeout.
    pub(super) wake_gone: Vec<Arc<Notify>>,
    /// Channels closed, for the caller to drop after it releases the
    /// state ([`State::take_closed`]).
    pub(super) closed: Vec<Channel>,
    /// Channels closed whose customers are still being forgotten, a
    /// bounded number at a time ([`State::drain_closing`]).
    pub(super) closing: VecDeque<Closing>,
    pub(super) sweep_at: u32,
    /// Every account's log entries in one feed, for `sync_msg` without
    /// `open_kfid` (the entries are shared with the accounts' logs).
    pub(super) corp_log: Feed<SyncEntry>,
    /// Accounts that owe callbacks.
    pub(super) owing: Vec<u32>,
    /// Callbacks out, all accounts together (see [`MAX_CALLBACKS_OUT`](super::callbacks::MAX_CALLBACKS_OUT)).
    pub(super) callbacks_out: u32,
    /// Serial number of the last callback Token.
    pub(super) token_serial: u64,
    /// Temporary media.
    pub(super) media: super::media::MediaStore,
    /// `corp_log` entries before this one were returned by `sync_msg` already.
    pub(super) corp_synced_upto: u64,
    /// What the middleware did (API-managed accounts).
    pub(super) audit: super::audit::Audit,
    /// Calls refused because their token was invalidated early (a fault);
    /// counted where tokens are checked, which takes `&self`.
    counters_early_expiry: std::cell::Cell<u64>,
}

/// One line of `account/list`.
#[derive(Debug, Clone, Serialize)]
pub struct AccountInfo {
    /// Its id.
    pub open_kfid: String,
    /// Its name.
    pub name: String,
    /// Avatar URL: `{origin}/avatar/{open_kfid}/{media_id}` on this
    /// service (kfsim), or empty when the account has no media_id.
    pub avatar: String,
    /// The caller may manage it (always true in kfsim).
    pub manage_privilege: bool,
    /// Reception rules (kfsim extension).
    pub reception_rule: Rule,
}

/// One line of `servicer/list`.
#[derive(Debug, Clone, Serialize)]
pub struct ServicerInfo {
    /// The servicer.
    pub userid: String,
    /// 0 接待中, 1 停止接待.
    pub status: u8,
    /// 0 停止接待, 1 暂时挂起.
    pub stop_type: u8,
    /// 接待上限 (kfsim extension).
    pub max_concurrent: u32,
    /// Sessions held now (kfsim extension).
    pub sessions: u32,
}

/// Per-account figures for `/metrics`.
#[derive(Debug, Clone, Serialize)]
pub struct AccountFigures {
    /// Account name.
    pub name: String,
    /// Its id.
    pub open_kfid: String,
    /// Open sessions in states 0, 1, 2, 3.
    pub by_state: [u64; 4],
    /// Sessions in the waiting pool.
    pub waiting: usize,
    /// Servicers.
    pub servicers: usize,
}

/// Figures for `/metrics`.
#[derive(Debug, Clone, Serialize)]
pub struct Figures {
    /// Totals.
    pub counters: Counters,
    /// Per account.
    pub accounts: Vec<AccountFigures>,
    /// Open customer channels.
    pub channels: usize,
    /// Customers remembered.
    pub customers: usize,
    /// Sessions (open and remembered).
    pub convs: usize,
    /// Bytes of temporary media held.
    pub media_bytes: usize,
}

impl State {
    /// An empty state: no accounts, no servicers.
    pub fn new(cfg: Config) -> State {
        let mut cursor_keys = crate::workload::stream(cfg.seed, "service cursor keys");
        let corp_log = Feed::new(cfg.sync_log_cap, draw_u128(&mut cursor_keys));
        let media = super::media::MediaStore::new(cfg.media_cap_bytes, cfg.sync_log_cap);
        State {
            rng: Xoshiro256PlusPlus::seed_from_u64(cfg.seed),
            cursor_keys,
            cfg,
            next_id: 0,
            tokens: Tokens::default(),
            accounts: Slab::new(),
            account_ix: HashMap::default(),
            users: Slab::new(),
            user_ix: HashMap::default(),
            customers: Slab::new(),
            customer_ix: HashMap::default(),
            channels: Slab::new(),
            channel_ix: HashMap::default(),
            convs: Slab::new(),
            conv_ix: HashMap::default(),
            counters: Counters::default(),
            pending_bytes: 0,
            wake_users: Vec::new(),
            auto_due: Vec::new(),
            wake_channels: Vec::new(),
            wake_gone: Vec::new(),
            closed: Vec::new(),
            closing: VecDeque::new(),
            sweep_at: 0,
            corp_log,
            corp_synced_upto: 0,
            audit: Default::default(),
            owing: Vec::new(),
            callbacks_out: 0,
            token_serial: 0,
            media,
            counters_early_expiry: Default::default(),
        }
    }

    /// A state with the scenario's accounts (rules from `[[account]]`;
    /// an account with a bot is API-managed), one contact way per entry
    /// in its account and each account its route rules name (scene = the
    /// entry's name, characters outside `[0-9a-zA-Z_-]` turned into `_`),
    /// and one servicer per agent named like the
    /// simulator's reports (`GROUP-01`…), 接待中, with the group's
    /// `max_concurrent` as 接待上限, a member of each account its group
    /// serves (`accounts = [...]`: in that order).
    pub fn from_scenario(sc: &Scenario, cfg: Config, now_us: u64) -> State {
        let mut st = State::new(cfg);
        let mut ids = Vec::new();
        for a in &sc.accounts {
            let rule = Rule {
                policy: a.policy,
                prefer_last_agent: a.prefer_last_agent,
                prefer_last_within_s: a.prefer_last_within_us / 1_000_000,
                queue_limit: a.queue_limit,
                max_concurrent: None,
                // a bot tier is played through the API by whoever drives
                // the service (the live driver, or a middleware)
                api_managed: a.api_managed || a.bot.is_some(),
            };
            ids.push(st.insert_account(a.name.clone(), String::new(), rule, now_us));
        }
        for e in &sc.entries {
            let scene: String = e
                .name
                .chars()
                .map(|c| if c.is_ascii_alphanumeric() || c == '-' { c } else { '_' })
                .take(32)
                .collect();
            // a customer a route rule sends elsewhere enters that account
            // through the same entry
            for a in std::iter::once(e.account).chain(e.route.iter().map(|r| r.account)) {
                let acct = at!(st.accounts, ids[a]);
                acct.scenes.insert(scene.clone());
            }
        }
        for g in &sc.groups {
            for n in 1..=g.count {
                let userid = g.agent_id(n);
                // in order of priority: a shared servicer's freed slot
                // serves its accounts' pools in the order it joined them
                for acct in g.accounts() {
                    st.add_member(ids[acct], &userid, g.max_concurrent, now_us);
                }
            }
        }
        st
    }

    /// What the middleware did so far (sessions of API-managed accounts).
    pub fn audit(&self) -> &super::audit::Audit {
        &self.audit
    }

    /// A `sync_msg` call came without a callback's Token: WeCom serves
    /// those under a strict rate limit (of a size it does not state), so a
    /// middleware that pulls so passes here and is throttled in production.
    pub fn note_sync_without_token(&mut self) {
        self.audit.sync_without_token += 1;
    }

    /// The configuration.
    pub fn config(&self) -> &Config {
        &self.cfg
    }

    /// A fresh server-side id (16 hex digits; unique: the counter goes
    /// through a bijective mix).
    pub(super) fn new_id(&mut self) -> String {
        std::str::from_utf8(&self.next_hex()).expect("hex digits are ASCII").to_owned()
    }

    /// [`State::new_id`] as a [`Name`] (inline: no allocation).
    pub(super) fn new_name(&mut self) -> Name {
        Name::new(std::str::from_utf8(&self.next_hex()).expect("hex digits are ASCII"))
    }

    /// A new customer's key and external_userid (`wm` and the key's
    /// [`hex16`] digits, so that [`customer_key`] reads the key back),
    /// drawn from the same sequence as [`State::new_id`].
    pub(super) fn new_customer_id(&mut self) -> (u64, Name) {
        let key = self.next_key();
        (key, customer_id(key))
    }

    /// The customer an external_userid names, if this service gave it out
    /// and still remembers the customer, and its channel is open.
    pub(super) fn customer_of(&self, external_userid: &str) -> Option<u32> {
        let c = customer_key(external_userid).and_then(|k| self.customer_ix.get(&k)).copied()?;
        (!self.closing_customer(c)).then_some(c)
    }

    /// A customer of a channel being closed, not yet ended and forgotten
    /// ([`State::drain_closing`]): it is gone for every caller already, as
    /// after the close. Known to the API in between, a reply or `send_msg`
    /// to it was taken, counted and logged, and delivered nowhere, with no
    /// `msg_send_fail`. Two table reads, no hash: the closed channel's
    /// index stays empty until its last customer is forgotten.
    pub(super) fn closing_customer(&self, cust: u32) -> bool {
        self.customers.get(cust).is_some_and(|c| self.channels.get(c.channel).is_none())
    }

    fn next_hex(&mut self) -> [u8; 16] {
        hex16(self.next_key())
    }

    fn next_key(&mut self) -> u64 {
        self.next_id += 1;
        mix(self.next_id ^ self.cfg.seed.rotate_left(32))
    }

    /// An unpredictable 64-bit value (codes, channel ids).
    pub(super) fn random(&mut self) -> u64 {
        self.rng.next_u64()
    }

    /// A new empty feed of at most `cap` items, with a key of its own for
    /// its cursors.
    pub(super) fn new_feed<T: Clone + super::feed::Weigh>(&mut self, cap: usize) -> Feed<T> {
        Feed::new(cap, draw_u128(&mut self.cursor_keys))
    }

    // ---- access tokens -------------------------------------------------

    /// `gettoken`: the current token while it is valid, else a new one.
    /// Returns the token and its remaining lifetime [s]. For kfsim's driver
    /// a token invalidated early (an injected fault) is still valid.
    pub fn get_token(
        &mut self,
        corpid: &str,
        secret: &str,
        caller: Caller,
        now_us: u64,
    ) -> Result<(String, u64), ApiError> {
        if corpid.is_empty() {
            return Err(ApiError::new(code::MISSING_CORPID, "corpid missing"));
        }
        if secret.is_empty() {
            return Err(ApiError::new(code::MISSING_SECRET, "corpsecret missing"));
        }
        if corpid != self.cfg.corpid {
            return Err(ApiError::new(code::INVALID_CORPID, "invalid corpid"));
        }
        if secret != self.cfg.corpsecret {
            return Err(ApiError::new(code::INVALID_SECRET, "invalid credential: corpsecret"));
        }
        if let Some((token, exp, said)) = &self.tokens.current
            && now_us < if caller == Caller::Driver { *said } else { *exp }
        {
            return Ok((token.clone(), (said - now_us) / 1_000_000));
        }
        let issued_ms = now_us / 1_000;
        let token = format!("{issued_ms:012x}{}", self.access_token_mac(issued_ms));
        if let Some((old, _, said)) = self.tokens.current.take() {
            self.tokens.old.push_back((old, said));
            if self.tokens.old.len() > 16 {
                self.tokens.old.pop_front();
            }
        }
        let (exp, said) = self.token_ends(issued_ms);
        self.tokens.current = Some((token.clone(), exp, said));
        Ok((token, self.cfg.token_ttl_us / 1_000_000))
    }

    /// When a token issued at `issued_ms` stops working and when
    /// `expires_in` said it would [µs].
    fn token_ends(&self, issued_ms: u64) -> (u64, u64) {
        let issued_us = issued_ms.saturating_mul(1_000);
        let lives = self.cfg.token_invalid_after_us.unwrap_or(u64::MAX).min(self.cfg.token_ttl_us);
        (issued_us.saturating_add(lives), issued_us.saturating_add(self.cfg.token_ttl_us))
    }

    /// The 20 hex digits that sign a token issued at `issued_ms`: keyed by
    /// the credentials alone, so that a token outlives the process that
    /// issued it, as WeCom's outlive a restart of the caller. A middleware
    /// that cached its token (in a file, in Redis) keeps using it against
    /// the next kfsim with the same corpid and secret.
    fn access_token_mac(&self, issued_ms: u64) -> String {
        let d = Sha1::new()
            .chain_update(b"kfsim access_token 1\0")
            .chain_update(self.cfg.corpid.as_bytes())
            .chain_update([0])
            .chain_update(self.cfg.corpsecret.as_bytes())
            .chain_update([0])
            .chain_update(issued_ms.to_be_bytes())
            .finalize();
        d[..10].iter().map(|b| format!("{b:02x}")).collect()
    }

    /// The time a token was issued at [ms], if this service's credentials
    /// signed it (whichever process issued it).
    fn token_issued_ms(&self, token: &str) -> Option<u64> {
        if token.len() != 32 || !token.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)) {
            return None;
        }
        let issued_ms = u64::from_str_radix(&token[..12], 16).ok()?;
        (self.access_token_mac(issued_ms) == token[12..]).then_some(issued_ms)
    }

    /// Check the `access_token` of a call. Tokens invalidated early (an
    /// injected fault) still work for kfsim's driver until the end
    /// `expires_in` promised: the fault is for the middleware under test.
    pub fn check_token(&self, token: &str, caller: Caller, now_us: u64) -> Result<(), ApiError> {
        if token.is_empty() {
            return Err(ApiError::new(code::MISSING_TOKEN, "access_token missing"));
        }
        let spared = |said: u64| caller == Caller::Driver && now_us < said;
        match &self.tokens.current {
            Some((t, exp, said)) if t == token => self.token_verdict(*exp, *said, caller, now_us),
            _ if self.tokens.old.iter().any(|(t, said)| t == token && spared(*said)) => Ok(()),
            _ if self.tokens.old.iter().any(|(t, _)| t == token) => {
                Err(ApiError::new(code::EXPIRED_TOKEN, "access_token expired"))
            }
            _ => self.check_foreign_token(token, caller, now_us),
        }
    }

    /// A token that stops working at `exp` and that `expires_in` said would
    /// at `said` (later when invalidated early), used by `caller` at
    /// `now_us`: kfsim's driver is spared the early end.
    fn token_verdict(&self, exp: u64, said: u64, caller: Caller, now_us: u64) -> Result<(), ApiError> {
        if now_us < exp || (caller == Caller::Driver && now_us < said) {
            Ok(())
        } else if now_us < said {
            self.counters_early_expiry.set(self.counters_early_expiry.get() + 1);
            Err(ApiError::new(
                code::EXPIRED_TOKEN,
                "access_token expired (invalidated early: an injected fault)",
            ))
        } else {
            Err(ApiError::new(code::EXPIRED_TOKEN, "access_token expired"))
        }
    }

    /// A token this process did not issue: an earlier kfsim's with the same
    /// credentials works for what is left of its life.
    #[cold]
    fn check_foreign_token(&self, token: &str, caller: Caller, now_us: u64) -> Result<(), ApiError> {
        let Some(issued_ms) = self.token_issued_ms(token) else {
            return Err(ApiError::new(code::INVALID_TOKEN, "invalid access_token"));
        };
        // issued by a clock far ahead of this one: not a token this
        // service could have handed out
        if issued_ms.saturating_mul(1_000) > now_us.saturating_add(FOREIGN_TOKEN_SKEW_US) {
            return Err(ApiError::new(code::INVALID_TOKEN, "invalid access_token (issued in the future)"));
        }
        let (exp, said) = self.token_ends(issued_ms);
        self.token_verdict(exp, said, caller, now_us)
    }

    // ---- wake-ups and figures -------------------------------------------

    /// Note that a servicer's queue got something.
    pub(super) fn touch_user(&mut self, u: u32) {
        let user = at!(self.users, u);
        if !user.dirty {
            user.dirty = true;
            self.wake_users.push(u);
        }
    }

    /// Note that a channel's queue got something.
    pub(super) fn touch_channel(&mut self, c: u32) {
        let ch = at!(self.channels, c);
        if !ch.dirty {
            ch.dirty = true;
            self.wake_channels.push(c);
        }
    }

    /// The notifiers of every queue that got items since the last call,
    /// for the caller to fire once it has released the state. Returns
    /// whether any servicer queue was among them.
    pub fn take_wakes(&mut self, out: &mut Vec<Arc<Notify>>) -> bool {
        let any_user = !self.wake_users.is_empty();
        // drained, not taken: the lists keep their room for the next call
        for u in self.wake_users.drain(..) {
            if let Some(user) = self.users.get_mut(u) {
                user.dirty = false;
                out.push(user.notify.clone());
            }
        }
        for c in self.wake_channels.drain(..) {
            if let Some(ch) = self.channels.get_mut(c) {
                ch.dirty = false;
                out.push(ch.notify.clone());
            }
        }
        out.append(&mut self.wake_gone);
        any_user
    }

    /// The channels closed since the last call, to be dropped by a caller
    /// that has released the state: a channel of a million customers took
    /// tens of milliseconds to drop, which no other call need wait for.
    pub(super) fn take_closed(&mut self) -> Vec<Channel> {
        std::mem::take(&mut self.closed)
    }

    /// Totals and per-account figures.
    pub fn figures(&self) -> Figures {
        Figures {
            counters: Counters { tokens_refused_early: self.counters_early_expiry.get(), ..self.counters },
            accounts: self
                .accounts
                .iter()
                .map(|(_, a)| AccountFigures {
                    name: a.name.clone(),
                    open_kfid: a.open_kfid.as_str().into(),
                    by_state: a.by_state,
                    waiting: a.router.waiting(),
                    servicers: a.members(),
                })
                .collect(),
            channels: self.channels.len(),
            customers: self.customers.len(),
            convs: self.convs.len(),
            media_bytes: self.media.bytes(),
        }
    }

    /// Userids of every servicer.
    pub fn servicer_ids(&self) -> Vec<String> {
        self.users.iter().map(|(_, u)| u.userid.as_str().to_owned()).collect()
    }
}

/// Append `v` in lower-case hex, zero-padded to `min_digits`: what
/// `write!(s, "{v:0min_digits$x}")` writes. Ids are made several times a
/// customer message, and `format!` spent ~700 instructions on each (8 %
/// of the message's cost in callgrind).
pub(super) fn push_hex(s: &mut String, v: u64, min_digits: u32) {
    let digits = (64 - v.leading_zeros()).div_ceil(4).max(min_digits).max(1) as usize;
    for _ in 16..digits {
        s.push('0');
    }
    // written into bytes and pushed at once: a char at a time checked
    // room and encoding 16 times an id
    let buf = hex16(v);
    let shown = &buf[16 - digits.min(16)..];
    s.push_str(std::str::from_utf8(shown).expect("hex digits are ASCII"));
}

/// The 64 bits of an external_userid this service gave out (`wm` and
/// [`hex16`] digits); `None` for any other text, which names no customer.
pub(super) fn customer_key(external_userid: &str) -> Option<u64> {
    let hex = external_userid.strip_prefix("wm")?;
    if hex.len() != 16 {
        return None;
    }
    hex.bytes().try_fold(0u64, |v, b| {
        let d = match b {
            b'0'..=b'9' => b - b'0',
            b'a'..=b'f' => b - b'a' + 10,
            _ => return None,
        };
        Some(v << 4 | u64::from(d))
    })
}

/// The external_userid written from a customer key: `wm` and its
/// [`hex16`] digits.
pub(super) fn customer_id(key: u64) -> Name {
    let mut id = [0u8; 18];
    id[..2].copy_from_slice(b"wm");
    id[2..].copy_from_slice(&hex16(key));
    Name::new(std::str::from_utf8(&id).expect("hex digits are ASCII"))
}

/// `v` in 16 lowercase hex digits.
pub(super) fn hex16(v: u64) -> [u8; 16] {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut buf = [0u8; 16];
    for (i, b) in buf.iter_mut().enumerate() {
        *b = DIGITS[((v >> (4 * (15 - i))) & 15) as usize];
    }
    buf
}

/// 128 random bits.
fn draw_u128(rng: &mut Xoshiro256PlusPlus) -> u128 {
    u128::from(rng.next_u64()) << 64 | u128::from(rng.next_u64())
}

/// SplitMix64's finalizer: a bijection on u64, so distinct inputs give
/// distinct ids.
pub(super) fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

#[cfg(test)]
mod hex_tests {
    use super::{customer_id, customer_key, mix, push_hex};

    #[test]
    fn a_customer_key_is_the_number_its_id_was_written_from() {
        for n in [0, 1, 2, 1 << 40, u64::MAX] {
            let v = mix(n);
            let id = customer_id(v).as_str().to_owned();
            assert_eq!(customer_key(&id), Some(v), "{id}");
            // any other spelling names no customer: case, length, prefix
            assert_eq!(customer_key(&id.to_uppercase()), None);
            assert_eq!(customer_key(&format!("wM{}", &id[2..])), None);
            assert_eq!(customer_key(&id[..17]), None);
            assert_eq!(customer_key(&format!("{id}0")), None);
            assert_eq!(customer_key(&format!("wo{}", &id[2..])), None);
        }
        assert_eq!(customer_key("wm000000000000000g"), None);
        assert_eq!(customer_key("wm+00000000000000f"), None);
        assert_eq!(customer_key(""), None);
    }

    #[test]
    fn push_hex_writes_what_format_writes() {
        let mut x = 0x2545_f491_4f6c_dd1du64;
        let mut values = vec![0, 1, 15, 16, 255, 256, u64::from(u32::MAX), u64::MAX, u64::MAX - 1, 1 << 63];
        for _ in 0..10_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            values.push(x >> (x % 64));
        }
        for v in values {
            for width in [0u32, 1, 5, 16, 20] {
                let mut s = String::from("p.");
                push_hex(&mut s, v, width);
                assert_eq!(s, format!("p.{v:0w$x}", w = width as usize), "{v} at width {width}");
            }
        }
    }
}
