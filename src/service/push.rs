//! Delivering `kf_msg_or_event` callbacks as WeCom does, and checking a
//! callback URL the way WeCom checks it when it is configured.
//!
//! A callback is a POST to the configured URL with `msg_signature`,
//! `timestamp` and `nonce` in the query and the encrypted event in the body
//! (see [`super::crypto`]). An answer with a 2xx status within the deadline
//! is a delivery; anything else (a timeout, a refused connection, another
//! status) is an attempt that failed, and the callback is sent again after
//! `retry_delay` (at once by default), up to `retries` times. WeCom's
//! general callback rule is 5 s and three retries; the reference marks it
//! unverified for `kf_msg_or_event`, and says nothing of a wait between
//! attempts, so all three are settings. The wait is what keeps a
//! middleware that answers 503 under load from getting its load again at
//! once, four times over.
//!
//! Which callbacks are owed, and their Tokens, is decided by the state
//! ([`super::callbacks`]); this module only carries them out and counts.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use http_body_util::{BodyExt, Full, LengthLimitError, Limited};
use hyper::body::Bytes;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use percent_encoding::{NON_ALPHANUMERIC, utf8_percent_encode};
use rand::RngExt;

use super::Service;
use super::callbacks::CallbackDue;
use super::crypto::CallbackCrypto;
use crate::metrics::Hist;
use crate::scenario::TimeDist;
use crate::workload::{TimeSampler, stream, unit};

/// The largest answer read from a callback URL; the rest is not awaited.
const MAX_ANSWER: usize = 64 * 1024;

/// Where and how callbacks go.
#[derive(Debug, Clone)]
pub struct CallbackSettings {
    /// The URL the middleware receives callbacks on.
    pub url: String,
    /// Its Token and EncodingAESKey, with the corpid as receive id.
    pub crypto: CallbackCrypto,
    /// The corpid, written as `ToUserName`.
    pub corpid: String,
    /// How long an attempt waits for the answer (WeCom: 5 s).
    pub timeout: Duration,
    /// Attempts after the first that failed (WeCom: 3).
    pub retries: u32,
    /// The wait before each retry (zero: at once).
    pub retry_delay: Duration,
    /// Callbacks of one account out at once; more owed are coalesced.
    pub max_in_flight: u32,
    /// Faults to inject into deliveries.
    pub faults: CallbackFaults,
}

/// Faults the platform injects into its callbacks, for resilience tests of
/// a middleware. Each injected fault is counted.
#[derive(Debug, Clone, Default)]
pub struct CallbackFaults {
    /// Extra time before a callback is sent.
    pub delay: Option<TimeDist>,
    /// Share of callbacks never sent (the platform lost them).
    pub drop_rate: f64,
    /// Share of callbacks delivered twice.
    pub duplicate_rate: f64,
}

/// What became of the callbacks, for `/metrics` and tests. Those taken for
/// delivery are counted by the state (`Counters::callbacks_sent`), where
/// they stop being owed.
#[derive(Debug, Default)]
pub struct CallbackStats {
    /// POSTs sent (first attempts, retries and duplicates).
    pub attempts: AtomicU64,
    /// Attempts after a failed one.
    pub retries: AtomicU64,
    /// Callbacks answered with a 2xx status.
    pub delivered: AtomicU64,
    /// Callbacks given up on after every retry failed.
    pub failed: AtomicU64,
    /// Injected: callbacks not sent at all.
    pub dropped: AtomicU64,
    /// Injected: callbacks sent a second time.
    pub duplicated: AtomicU64,
    /// Injected: callbacks held back before sending.
    pub delayed: AtomicU64,
    /// Time to a 2xx answer [µs] of each delivered attempt.
    latency: std::sync::Mutex<Hist>,
}

impl CallbackStats {
    /// `(count, p50, p99)` of answer latency [ms].
    pub fn latency_ms(&self) -> (u64, Option<f64>, Option<f64>) {
        let h = self.latency.lock().unwrap_or_else(|e| e.into_inner());
        let s = h.stats_ms();
        (h.count(), s.p50, s.p99)
    }

    /// Answer latency of delivered attempts [ms].
    pub fn latency_stats(&self) -> crate::summary::LatencyStats {
        self.latency.lock().unwrap_or_else(|e| e.into_inner()).stats_ms()
    }

    fn count(&self, c: &AtomicU64) {
        c.fetch_add(1, Ordering::Relaxed);
    }
}

/// One callback with everything drawn for it beforehand (so that the
/// service's seeded stream decides it, not the order tasks run in).
struct Prepared {
    due: CallbackDue,
    delay: Option<Duration>,
    dropped: bool,
    duplicate: bool,
    random: [u8; 16],
    nonce: u32,
}

type HttpClient = Client<HttpConnector, Full<Bytes>>;

fn client() -> HttpClient {
    Client::builder(TokioExecutor::new()).build_http()
}

/// Take the callbacks the state owes, whenever it owes some, and deliver
/// each in a task of its own. Runs until the service stops.
pub(super) async fn deliver(
    svc: Service,
    settings: Arc<CallbackSettings>,
    stats: Arc<CallbackStats>,
    seed: u64,
) {
    let client = client();
    let mut rng = stream(seed, "callbacks");
    let delay = settings.faults.delay.as_ref().map(TimeSampler::new);
    let mut due = Vec::new();
    loop {
        if let Some(n) = svc.callback_notify() {
            // the timeout is a safety net; logging an entry wakes it at once
            let _ = tokio::time::timeout(Duration::from_millis(100), n.notified()).await;
        }
        svc.with_state(|st, now| st.take_callbacks(now, &mut due));
        for d in due.drain(..) {
            let f = &settings.faults;
            let p = Prepared {
                due: d,
                delay: delay.as_ref().map(|s| Duration::from_micros(s.sample(&mut rng))),
                dropped: f.drop_rate > 0.0 && unit(&mut rng) < f.drop_rate,
                duplicate: f.duplicate_rate > 0.0 && unit(&mut rng) < f.duplicate_rate,
                random: rng.random(),
                nonce: rng.random(),
            };
            tokio::spawn(deliver_one(svc.clone(), client.clone(), settings.clone(), stats.clone(), p));
        }
        // the deliveries just spawned run before the next round
        tokio::task::yield_now().await;
    }
}

async fn deliver_one(
    svc: Service,
    client: HttpClient,
    settings: Arc<CallbackSettings>,
    stats: Arc<CallbackStats>,
    p: Prepared,
) {
    if let Some(d) = p.delay {
        stats.count(&stats.delayed);
        tokio::time::sleep(d).await;
    }
    if p.dropped {
        stats.count(&stats.dropped);
    } else {
        let timestamp = (svc.now_us() / 1_000_000).to_string();
        let (query, body) = encrypt(&settings, &p, &timestamp);
        let mut delivered = false;
        for attempt in 0..=settings.retries {
            if attempt > 0 {
                if !settings.retry_delay.is_zero() {
                    tokio::time::sleep(settings.retry_delay).await;
                }
                stats.count(&stats.retries);
            }
            if post(&client, &settings, &query, &body, &stats).await {
                delivered = true;
                break;
            }
        }
        stats.count(if delivered { &stats.delivered } else { &stats.failed });
        if p.duplicate {
            stats.count(&stats.duplicated);
            post(&client, &settings, &query, &body, &stats).await;
        }
    }
    svc.with_state(|st, _| st.callback_done(&p.due.open_kfid));
}

/// The query string and body of one callback.
fn encrypt(settings: &CallbackSettings, p: &Prepared, timestamp: &str) -> (String, Bytes) {
    let xml = format!(
        "<xml><ToUserName><![CDATA[{corp}]]></ToUserName><CreateTime>{timestamp}</CreateTime>\
         <MsgType><![CDATA[event]]></MsgType><Event><![CDATA[kf_msg_or_event]]></Event>\
         <Token><![CDATA[{token}]]></Token><OpenKfId><![CDATA[{kf}]]></OpenKfId></xml>",
        corp = settings.corpid,
        token = p.due.token,
        kf = p.due.open_kfid,
    );
    let encrypted = settings.crypto.encrypt(xml.as_bytes(), p.random);
    let nonce = p.nonce.to_string();
    let signature = settings.crypto.signature(timestamp, &nonce, &encrypted);
    let body = format!(
        "<xml><ToUserName><![CDATA[{}]]></ToUserName><Encrypt><![CDATA[{encrypted}]]></Encrypt>\
         <AgentID><![CDATA[]]></AgentID></xml>",
        settings.corpid
    );
    (format!("msg_signature={signature}&timestamp={timestamp}&nonce={nonce}"), Bytes::from(body))
}

/// One POST; whether it was answered with a 2xx status in time.
#[allow(clippy::disallowed_methods)] // an answer's latency is wall time
async fn post(
    client: &HttpClient,
    s: &CallbackSettings,
    query: &str,
    body: &Bytes,
    stats: &CallbackStats,
) -> bool {
    stats.count(&stats.attempts);
    let sep = if s.url.contains('?') { '&' } else { '?' };
    let Ok(req) = hyper::Request::post(format!("{}{sep}{query}", s.url))
        .header(hyper::header::CONTENT_TYPE, "text/xml")
        .body(Full::new(body.clone()))
    else {
        return false;
    };
    let started = std::time::Instant::now();
    let answered = tokio::time::timeout(s.timeout, async {
        let resp = client.request(req).await.ok()?;
        let ok = resp.status().is_success();
        // the answer is read (bounded) so the connection can be reused; one
        // longer than that was still given in time, and its connection is
        // dropped rather than read to the end
        match Limited::new(resp.into_body(), MAX_ANSWER).collect().await {
            Err(e) if !e.is::<LengthLimitError>() => None,
            _ => Some(ok),
        }
    })
    .await;
    let ok = matches!(answered, Ok(Some(true)));
    if ok {
        let us = started.elapsed().as_micros() as u64;
        stats.latency.lock().unwrap_or_else(|e| e.into_inner()).record(us);
    }
    ok
}

/// Why a callback URL did not verify.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    /// Nothing answered at the URL.
    #[error("no answer from {url}: {reason}")]
    Unreachable {
        /// The URL.
        url: String,
        /// What went wrong.
        reason: String,
    },
    /// It answered with another status than 200.
    #[error("{url} answered the URL check with HTTP {status}")]
    Status {
        /// The URL.
        url: String,
        /// Its status.
        status: u16,
    },
    /// It answered something else than the decrypted `echostr`.
    #[error(
        "{url} answered the URL check with {answer:?}, not the decrypted echostr {expected:?}: check its Token, EncodingAESKey and corpid"
    )]
    WrongAnswer {
        /// The URL.
        url: String,
        /// What it answered (cut to 100 characters).
        answer: String,
        /// What it should have answered.
        expected: String,
    },
}

/// Check the callback URL as WeCom does when it is saved: a GET with an
/// encrypted, signed `echostr`, answered by its plaintext. `seed` and
/// `now_s` make the check's random text and timestamp.
pub async fn verify_url(s: &CallbackSettings, seed: u64, now_s: u64) -> Result<(), VerifyError> {
    let mut rng = stream(seed, "verify_url");
    let expected = rng.random::<u64>().to_string();
    let echostr = s.crypto.encrypt(expected.as_bytes(), rng.random());
    let (timestamp, nonce) = (now_s.to_string(), rng.random::<u32>().to_string());
    let signature = s.crypto.signature(&timestamp, &nonce, &echostr);
    let sep = if s.url.contains('?') { '&' } else { '?' };
    let url = format!(
        "{}{sep}msg_signature={signature}&timestamp={timestamp}&nonce={nonce}&echostr={}",
        s.url,
        utf8_percent_encode(&echostr, NON_ALPHANUMERIC)
    );
    let unreachable = |reason: String| VerifyError::Unreachable { url: s.url.clone(), reason };
    let req =
        hyper::Request::get(url).body(Full::new(Bytes::new())).map_err(|e| unreachable(e.to_string()))?;
    let answer = tokio::time::timeout(s.timeout, async {
        let resp = client().request(req).await.map_err(|e| unreachable(e.to_string()))?;
        let status = resp.status().as_u16();
        if status != 200 {
            // whatever its body, a status is what the check is refused with
            return Err(VerifyError::Status { url: s.url.clone(), status });
        }
        match Limited::new(resp.into_body(), MAX_ANSWER).collect().await {
            Ok(body) => Ok(body.to_bytes()),
            // an answer this long is not an echostr, and asking again will not shorten it
            Err(e) if e.is::<LengthLimitError>() => Err(VerifyError::WrongAnswer {
                url: s.url.clone(),
                answer: format!("more than {MAX_ANSWER} bytes"),
                expected: expected.clone(),
            }),
            Err(e) => Err(unreachable(e.to_string())),
        }
    })
    .await
    .map_err(|_| unreachable(format!("no answer within {:?}", s.timeout)))??;
    let text = String::from_utf8_lossy(&answer);
    if text.trim() != expected {
        let answer: String = text.chars().take(100).collect();
        return Err(VerifyError::WrongAnswer { url: s.url.clone(), answer, expected });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> CallbackSettings {
        CallbackSettings {
            url: "http://127.0.0.1:9/cb".into(),
            crypto: CallbackCrypto::new("tok", "jWmYm7qr5nMoAUwZRjGtBxmz3KA1tkAj3ykkR6q2B2C", "wwcorp")
                .unwrap(),
            corpid: "wwcorp".into(),
            timeout: Duration::from_secs(5),
            retries: 3,
            retry_delay: Duration::ZERO,
            max_in_flight: 8,
            faults: CallbackFaults::default(),
        }
    }

    /// A one-connection server that reads a request and writes `answer`.
    async fn answering(answer: Vec<u8>) -> String {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/cb", listener.local_addr().unwrap());
        tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.unwrap();
            let mut buf = vec![0u8; 64 * 1024];
            let _ = s.read(&mut buf).await;
            let _ = s.write_all(&answer).await;
            // held open: a client waiting for the end of the body waits for its timeout
            tokio::time::sleep(Duration::from_secs(60)).await;
        });
        url
    }

    fn ok_with_body(len: usize) -> Vec<u8> {
        let mut a = format!("HTTP/1.1 200 OK\r\nContent-Length: {len}\r\n\r\n").into_bytes();
        a.resize(a.len() + len, b'x');
        a
    }

    #[tokio::test]
    async fn a_2xx_answer_longer_than_what_is_read_is_a_delivery() {
        for len in [10, MAX_ANSWER + 1, 4 * MAX_ANSWER] {
            let s = CallbackSettings { url: answering(ok_with_body(len)).await, ..settings() };
            let (stats, body, client) = (CallbackStats::default(), Bytes::new(), client());
            // well within the deadline: the rest of a long answer is not read
            let answered = post(&client, &s, "a=b", &body, &stats);
            assert_eq!(tokio::time::timeout(s.timeout / 5, answered).await, Ok(true), "{len} bytes");
        }
    }

    #[tokio::test]
    async fn a_url_check_answered_at_length_is_a_wrong_answer_and_a_status_is_a_status() {
        let big = CallbackSettings { url: answering(ok_with_body(MAX_ANSWER + 1)).await, ..settings() };
        let e = verify_url(&big, 1, 1_700_000_000).await.unwrap_err();
        assert!(matches!(e, VerifyError::WrongAnswer { .. }), "{e}");
        let mut page = b"HTTP/1.1 404 Not Found\r\n".to_vec();
        page.extend_from_slice(&ok_with_body(MAX_ANSWER + 1)[17..]);
        let missing = CallbackSettings { url: answering(page).await, ..settings() };
        let e = verify_url(&missing, 1, 1_700_000_000).await.unwrap_err();
        assert!(matches!(e, VerifyError::Status { status: 404, .. }), "{e}");
    }

    /// The summary's `sent`, the entries coalesced and those unannounced
    /// add up to the entries logged whenever they are read, even between
    /// the callbacks being taken and their delivery tasks starting (before,
    /// a callback counted as sent only once its task ran: read then, the
    /// 10 entries below summed to 8, none of the 3 callbacks sent).
    #[test]
    fn every_entry_logged_is_sent_coalesced_or_unannounced_at_any_moment() {
        use super::super::state::{Config, State};
        use super::super::{ManualClock, Options, Service};
        use crate::service::model::Content;
        const T0: u64 = 1_700_000_000_000_000;
        let options = Options {
            callbacks: Some(CallbackSettings { max_in_flight: 3, ..settings() }),
            ..Options::default()
        };
        let svc = Service::new(State::new(Config::default()), Arc::new(ManualClock::new(T0)), options);
        let rt = tokio::runtime::Builder::new_current_thread().build().expect("a runtime");
        let kf = svc.with_state(|st, now| st.account_add("presale", "", None, now).unwrap());
        let log = |from: usize, n: usize| {
            svc.with_state(|st, now| {
                let id = st.open_channel(None).unwrap();
                let ch = st.channel_of(&id).unwrap();
                for i in from..from + n {
                    st.customer_message(ch, &format!("c{i}"), &kf, None, Content::text("hi"), now).unwrap();
                }
            })
        };
        let identity = |logged: u64| {
            let c = rt.block_on(svc.middleware_summary(1.0, 20_000_000)).callbacks;
            let coalesced = svc.with_state(|st, _| st.figures().counters.callbacks_coalesced);
            assert_eq!(c.sent + coalesced + c.unannounced_at_end, logged, "{c:?}, coalesced {coalesced}");
        };
        log(0, 10);
        identity(10);
        // taken as the delivery loop takes them; no task has run
        let mut due = Vec::new();
        svc.with_state(|st, now| st.take_callbacks(now, &mut due));
        assert_eq!(due.iter().map(|d| d.covers).collect::<Vec<_>>(), [1, 1, 8]);
        identity(10);
        // every place out: what is logged now is owed, unannounced
        log(10, 4);
        identity(14);
        svc.with_state(|st, _| st.callback_done(&due[0].open_kfid));
        due.clear();
        svc.with_state(|st, now| st.take_callbacks(now, &mut due));
        assert_eq!(due.iter().map(|d| d.covers).collect::<Vec<_>>(), [4]);
        identity(14);
    }

    #[test]
    fn a_callback_is_signed_and_decrypts_to_the_event() {
        let s = settings();
        let due = CallbackDue { open_kfid: "wkA".into(), token: "ENCxyz".into(), covers: 1 };
        let p = Prepared { due, delay: None, dropped: false, duplicate: false, random: [3; 16], nonce: 42 };
        let (query, body) = encrypt(&s, &p, "1700000000");
        let body = String::from_utf8(body.to_vec()).unwrap();
        let encrypted = body.split("<Encrypt><![CDATA[").nth(1).unwrap().split("]]>").next().unwrap();
        let signature = query.strip_prefix("msg_signature=").unwrap().split('&').next().unwrap();
        assert!(s.crypto.verify(signature, "1700000000", "42", encrypted), "{query}");
        assert!(query.ends_with("&timestamp=1700000000&nonce=42"));
        let (xml, receive_id) = s.crypto.decrypt(encrypted).unwrap();
        let xml = String::from_utf8(xml).unwrap();
        assert_eq!(receive_id, "wwcorp");
        for part in [
            "<Event><![CDATA[kf_msg_or_event]]></Event>",
            "<Token><![CDATA[ENCxyz]]></Token>",
            "<OpenKfId><![CDATA[wkA]]></OpenKfId>",
            "<ToUserName><![CDATA[wwcorp]]></ToUserName>",
            "<CreateTime>1700000000</CreateTime>",
        ] {
            assert!(xml.contains(part), "{part} in {xml}");
        }
    }
}
