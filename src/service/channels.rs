//! The driver ports: HTTP stand-ins for the WeChat app (customers, over
//! channels) and the WeCom client (servicers), so that kfsim can play both
//! sides. (The routes keep their `/sim/` prefix: it is the wire protocol.)
//!
//! Customers are driven in bulk: a driver opens a channel, sends many
//! customer actions per request (`batch`), and pulls everything meant for
//! its customers — replies and session changes — from one cursor-based
//! long-poll. No connection per customer. Servicers long-poll their own
//! queue and act one request (or one batch) at a time. All routes need
//! `?access_token=`.

use std::borrow::Cow;
use std::marker::PhantomData;

use axum::extract::{Request, State as AxState};
use axum::response::Response;
use axum::routing::post;
use serde::de::{self, DeserializeOwned, SeqAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::value::RawValue;

use super::Service;
use super::errors::{ApiError, code};
use super::faults::Caller;
use super::http::{
    call, closing, error, from_raw, long_poll, null_is_default, ok, parse_json, poll_args, query_param,
    read_body, refuse_unread,
};
use super::model::{Numbered, Sender, with_content};
use super::session::{CustomerAck, Pulled};
use super::state::State;

/// Actions per batch at most.
pub const MAX_BATCH: usize = 1000;

/// The refusal of a batch past [`MAX_BATCH`].
const TOO_MANY: &str = "at most 1000 actions per batch";
const _: () = assert!(MAX_BATCH == 1000, "TOO_MANY names the limit");
/// Actions run under one acquisition of the state lock.
const CHUNK: usize = 64;

macro_rules! post_op {
    ($op:expr) => {
        post(|AxState(svc): AxState<Service>, req: Request| call(svc, req, $op))
    };
}

/// A close: answered once the channel's customers are ended and forgotten,
/// which is done a part per hold of the lock.
macro_rules! post_closing {
    ($op:expr) => {
        post(|AxState(svc): AxState<Service>, req: Request| async move {
            let r = call(svc.clone(), req, $op).await;
            super::finish_closing(&svc).await;
            r
        })
    };
}

/// The `/sim` routes.
pub fn routes() -> axum::Router<Service> {
    axum::Router::new()
        .route("/sim/customer/open_channel", post_op!(open_channel))
        .route("/sim/customer/close_channel", post_closing!(close_channel))
        .route("/sim/customer/batch", post(customer_batch))
        .route("/sim/customer/pull", post(customer_pull))
        .route("/sim/servicer/open_channel", post_op!(open_servicer_channel))
        .route("/sim/servicer/close_channel", post_closing!(close_servicer_channel))
        .route("/sim/servicer/set_status", post_op!(set_status))
        .route("/sim/servicer/pull", post(servicer_pull))
        .route("/sim/servicer/reply", post_op!(reply))
        .route("/sim/servicer/transfer", post_op!(transfer))
        .route("/sim/servicer/end", post_op!(end))
        .route("/sim/servicer/batch", post(servicer_batch))
}

#[derive(Serialize)]
struct Empty {}

#[derive(Deserialize)]
struct OpenChannel {
    queue_cap: Option<i64>,
}

/// A channel's `queue_cap`, checked.
fn queue_cap(cap: Option<i64>) -> Result<Option<usize>, ApiError> {
    match cap {
        Some(c) if c < 1 => Err(ApiError::param("queue_cap must be at least 1")),
        Some(c) => Ok(Some(usize::try_from(c).unwrap_or(usize::MAX))),
        None => Ok(None),
    }
}

fn open_channel(st: &mut State, r: OpenChannel, _now: u64) -> Result<serde_json::Value, ApiError> {
    Ok(serde_json::json!({ "channel_id": st.open_channel(queue_cap(r.queue_cap)?)? }))
}

#[derive(Deserialize)]
struct OpenServicerChannel {
    queue_cap: Option<i64>,
    #[serde(default, deserialize_with = "null_is_default")]
    servicer_userids: Vec<String>,
}

/// A channel that carries the queues of many servicers, for a driver that
/// plays them all: one long-poll instead of one per servicer.
fn open_servicer_channel(
    st: &mut State,
    r: OpenServicerChannel,
    _now: u64,
) -> Result<serde_json::Value, ApiError> {
    if r.servicer_userids.is_empty() {
        return Err(ApiError::missing("servicer_userids"));
    }
    // all or none: an unknown servicer fails the call before anything opens
    for u in &r.servicer_userids {
        st.servicer_index(u)?;
    }
    let id = st.open_channel_for(queue_cap(r.queue_cap)?, true)?;
    let ch = st.channel_of(&id)?;
    st.bind_servicers(ch, &r.servicer_userids)?;
    Ok(serde_json::json!({ "channel_id": id }))
}

#[derive(Deserialize)]
struct ByChannel {
    #[serde(default)]
    channel_id: String,
}

/// The rest of the close is [`post_closing`]'s, a part per hold of the lock.
fn close_channel(st: &mut State, r: ByChannel, _now: u64) -> Result<Empty, ApiError> {
    st.channel_of_kind(&r.channel_id, false)?;
    st.begin_close(&r.channel_id).map(|()| Empty {})
}

fn close_servicer_channel(st: &mut State, r: ByChannel, _now: u64) -> Result<Empty, ApiError> {
    st.channel_of_kind(&r.channel_id, true)?;
    st.begin_close(&r.channel_id).map(|()| Empty {})
}

with_content! {
    /// One customer action of a batch.
    #[derive(Deserialize)]
    struct CustomerAction {
        /// `enter`, `message` or `leave`.
        #[serde(rename = "type", default)]
        kind: String,
        /// The driver's handle of the customer, unique within the channel.
        #[serde(default)]
        customer: String,
        #[serde(default)]
        open_kfid: String,
        #[serde(default)]
        scene: String,
        #[serde(default)]
        scene_param: String,
        client_msgid: Option<String>,
    }
}

/// A batch, its actions read as `A`: in one pass when every action is
/// well formed, else each apart from a `&RawValue` (see [`run_batch`]).
#[derive(Deserialize)]
#[serde(bound(deserialize = "A: Deserialize<'de>"))]
struct Batch<A> {
    #[serde(default)]
    channel_id: String,
    #[serde(default = "Vec::new", deserialize_with = "at_most_max_batch")]
    actions: Vec<A>,
}

/// The actions, refused at the one past [`MAX_BATCH`]: counted after the
/// whole body was read (twice, when an action was malformed), a 1 MiB body
/// of 400 000 actions cost 0.7 s of CPU before its refusal.
fn at_most_max_batch<'de, D: Deserializer<'de>, A: Deserialize<'de>>(d: D) -> Result<Vec<A>, D::Error> {
    struct Bounded<A>(PhantomData<A>);
    impl<'de, A: Deserialize<'de>> Visitor<'de> for Bounded<A> {
        type Value = Vec<A>;
        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("an array of actions")
        }
        fn visit_seq<S: SeqAccess<'de>>(self, mut seq: S) -> Result<Vec<A>, S::Error> {
            let mut actions = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(MAX_BATCH));
            while let Some(a) = seq.next_element()? {
                if actions.len() == MAX_BATCH {
                    return Err(de::Error::custom(TOO_MANY));
                }
                actions.push(a);
            }
            Ok(actions)
        }
    }
    d.deserialize_seq(Bounded(PhantomData))
}

/// A batch action's answer: errcode and errmsg, and the ack on success.
#[derive(Serialize)]
struct ActionResult<T> {
    errcode: i32,
    errmsg: Cow<'static, str>,
    #[serde(flatten)]
    ack: Option<T>,
}

fn action_result<T>(r: Result<T, ApiError>) -> ActionResult<T> {
    match r {
        Ok(ack) => ActionResult { errcode: 0, errmsg: Cow::Borrowed("ok"), ack: Some(ack) },
        Err(e) => ActionResult { errcode: e.code, errmsg: e.msg, ack: None },
    }
}

fn customer_act(st: &mut State, ch: u32, mut a: CustomerAction, now: u64) -> Result<CustomerAck, ApiError> {
    match a.kind.as_str() {
        "enter" => st.customer_enter(ch, &a.customer, &a.open_kfid, &a.scene, &a.scene_param, now),
        "message" => {
            let content = a.content().into_content(Sender::Customer)?;
            st.customer_message(ch, &a.customer, &a.open_kfid, a.client_msgid.as_deref(), content, now)
        }
        "leave" => st.customer_leave(ch, &a.customer, &a.open_kfid, now),
        "" => Err(ApiError::missing("type")),
        other => Err(ApiError::param(format!("unknown action type `{other}`: use enter, message or leave"))),
    }
}

/// Run up to [`MAX_BATCH`] actions in order, a chunk per lock, with one
/// result per action. With `on_channel`, a batch naming a channel the
/// service does not know (never opened, closed, expired, or opened before
/// a restart) is refused whole, before anything in it runs: the driver
/// sends it again on a channel it opens anew, instead of taking each
/// action's refusal for the target's word on that action.
///
/// The body is read in one pass into `A`s; only if that fails is it read
/// again with each action kept raw and read apart, so that a malformed
/// action, or one that is not an object, is refused alone. Raw first and then each action cost a second
/// scan of every action, 3 000 instructions of a one-message batch.
async fn run_batch<A: DeserializeOwned, T: Serialize>(
    svc: Service,
    req: Request,
    on_channel: bool,
    act: impl Fn(&mut State, &str, Result<A, ApiError>, u64) -> Result<T, ApiError>,
) -> Response {
    let (parts, body) = req.into_parts();
    let token = query_param(parts.uri.query(), "access_token");
    let caller = Caller::of(&parts.headers);
    // a caller without a valid token gets nothing buffered for it
    if let Err(e) = svc.with_state(|st, now| st.check_token(&token, caller, now)) {
        return refuse_unread(e, body, &parts.headers).await;
    }
    let bytes = match read_body(&svc, body, &parts.headers).await {
        Ok(bytes) => bytes,
        Err(e) => return closing(error(e)),
    };
    let (channel_id, actions): (String, Vec<Result<A, ApiError>>) = match parse_json::<Batch<A>>(&bytes) {
        Ok(b) => (b.channel_id, b.actions.into_iter().map(Ok).collect()),
        Err(_) => match parse_json::<Batch<&RawValue>>(&bytes) {
            Ok(b) => (b.channel_id, b.actions.into_iter().map(from_raw).collect()),
            // a raw action cannot fail, so neither can a string of the
            // body's own be taken for the limit here
            Err(e) if e.msg.contains(TOO_MANY) => return error(ApiError::param(TOO_MANY)),
            Err(e) => return error(e),
        },
    };
    if on_channel && let Err(e) = svc.with_state(|st, _| st.channel_of_kind(&channel_id, false)) {
        return error(e);
    }
    let mut results = Vec::with_capacity(actions.len());
    let mut channel_end = None;
    let chunks = actions.len().div_ceil(CHUNK);
    let mut actions = actions.into_iter();
    for i in 0..chunks {
        svc.with_state(|st, now| {
            results.extend(actions.by_ref().take(CHUNK).map(|a| action_result(act(st, &channel_id, a, now))));
            if on_channel && i + 1 == chunks {
                channel_end = st.channel_end(&channel_id);
            }
        });
    }
    if on_channel && chunks == 0 {
        channel_end = svc.with_state(|st, _| st.channel_end(&channel_id));
    }
    // written straight from the results: through a `json!` value each
    // result's keys and strings were copied once more
    ok(Results { results, channel_end })
}

#[derive(Serialize)]
struct Results<T> {
    results: Vec<ActionResult<T>>,
    /// Customer batches: the `seq` the channel's next event gets, read
    /// after the last action ran. Every event that came before an answer
    /// (an assignment that made a `leave` fail with 40058) has a lower one.
    #[serde(skip_serializing_if = "Option::is_none")]
    channel_end: Option<u64>,
}

pub(super) async fn customer_batch(AxState(svc): AxState<Service>, req: Request) -> Response {
    run_batch(svc, req, true, |st, channel, a, now| {
        let ch = st.use_channel_of(channel, false, now)?;
        customer_act(st, ch, a?, now)
    })
    .await
}

#[derive(Deserialize)]
struct PullReq {
    #[serde(default)]
    channel_id: String,
    #[serde(default)]
    servicer_userid: String,
    #[serde(default)]
    cursor: String,
    limit: Option<i64>,
    timeout_ms: Option<i64>,
}

#[derive(Serialize)]
struct PullOut<'a> {
    next_cursor: &'a str,
    has_more: u8,
    missed: u64,
    event_list: Vec<Numbered<'a>>,
}

fn pulled(p: &Pulled) -> Response {
    ok(PullOut {
        next_cursor: &p.next_cursor,
        has_more: u8::from(p.has_more),
        missed: p.missed,
        event_list: p.items.iter().map(|(seq, (to, item))| Numbered(*seq, item, to.as_ref())).collect(),
    })
}

/// Parse a pull request and check the token; the answer if either fails.
async fn pull_request(svc: &Service, req: Request) -> Result<PullReq, Response> {
    let (parts, body) = req.into_parts();
    let token = query_param(parts.uri.query(), "access_token");
    let caller = Caller::of(&parts.headers);
    if let Err(e) = svc.with_state(|st, now| st.check_token(&token, caller, now)) {
        return Err(refuse_unread(e, body, &parts.headers).await);
    }
    let bytes = read_body(svc, body, &parts.headers).await.map_err(|e| closing(error(e)))?;
    parse_json::<PullReq>(&bytes).map_err(error)
}

pub(super) async fn customer_pull(AxState(svc): AxState<Service>, req: Request) -> Response {
    pull(svc, req, |st, r, limit, now| {
        let ch = st.use_channel_of(&r.channel_id, false, now)?;
        Ok((st.pull_channel(ch, &r.cursor, limit)?, st.channel_notify(ch).expect("open channel")))
    })
    .await
}

/// A servicer's own queue, or with `channel_id` a servicer channel.
pub(super) async fn servicer_pull(AxState(svc): AxState<Service>, req: Request) -> Response {
    pull(svc, req, |st, r, limit, now| {
        if !r.channel_id.is_empty() {
            let ch = st.use_channel_of(&r.channel_id, true, now)?;
            return Ok((
                st.pull_channel(ch, &r.cursor, limit)?,
                st.channel_notify(ch).expect("open channel"),
            ));
        }
        let u = st.servicer_index(&r.servicer_userid)?;
        Ok((st.pull_servicer(u, &r.cursor, limit)?, st.servicer_notify(u).expect("servicer")))
    })
    .await
}

/// A cursor pull of one queue (`read` names it), long-polling when empty.
async fn pull(
    svc: Service,
    req: Request,
    read: impl Fn(
        &mut State,
        &PullReq,
        usize,
        u64,
    ) -> Result<(Pulled, std::sync::Arc<tokio::sync::Notify>), ApiError>,
) -> Response {
    let r = match pull_request(&svc, req).await {
        Ok(r) => r,
        Err(answer) => return answer,
    };
    let (limit, wait) = match poll_args(r.limit, r.timeout_ms) {
        Ok(x) => x,
        Err(e) => return error(e),
    };
    let result = long_poll(&svc, wait, |st, now| {
        let (p, notify) = read(st, &r, limit, now)?;
        let ready = !p.items.is_empty() || p.missed > 0;
        Ok((p, ready, notify))
    })
    .await;
    match result {
        Ok(p) => pulled(&p),
        Err(e) => error(e),
    }
}

#[derive(Deserialize)]
struct SetStatus {
    #[serde(default)]
    servicer_userid: String,
    status: Option<i64>,
    #[serde(default, deserialize_with = "null_is_default")]
    stop_type: i64,
}

fn set_status(st: &mut State, r: SetStatus, now: u64) -> Result<Empty, ApiError> {
    let status = r.status.ok_or_else(|| ApiError::missing("status"))?;
    let status = u8::try_from(status).map_err(|_| ApiError::param("status must be 0 or 1"))?;
    let stop_type = u8::try_from(r.stop_type).map_err(|_| ApiError::param("stop_type must be 0 or 1"))?;
    st.servicer_set_status(&r.servicer_userid, status, stop_type, now).map(|()| Empty {})
}

with_content! {
    /// A servicer action: `reply` (with content), `transfer` (to
    /// `to_servicer_userid`, or to the pool when absent) or `end`.
    #[derive(Deserialize)]
    struct ServicerAction {
        #[serde(rename = "type", default)]
        kind: String,
        #[serde(default)]
        servicer_userid: String,
        #[serde(default)]
        open_kfid: String,
        #[serde(default)]
        external_userid: String,
        to_servicer_userid: Option<String>,
        /// A transfer to another account (kfsim's; WeCom has none).
        to_open_kfid: Option<String>,
        in_reply_to: Option<String>,
        client_msgid: Option<String>,
    }
}

/// A servicer action's answer.
#[derive(Serialize, Default)]
struct ServicerAck {
    #[serde(skip_serializing_if = "Option::is_none")]
    msgid: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    service_state: Option<u8>,
}

fn servicer_act(
    st: &mut State,
    mut a: ServicerAction,
    kind: &str,
    now: u64,
) -> Result<ServicerAck, ApiError> {
    let content = a.content();
    let (u, k, e) = (a.servicer_userid.as_str(), a.open_kfid.as_str(), a.external_userid.as_str());
    match kind {
        "reply" => {
            let content = content.into_content(Sender::Enterprise)?;
            let msgid = st.servicer_reply(
                u,
                k,
                e,
                content,
                a.in_reply_to.as_deref(),
                a.client_msgid.as_deref(),
                now,
            )?;
            Ok(ServicerAck { msgid: Some(msgid), service_state: None })
        }
        "transfer" => {
            let state = match a.to_open_kfid.as_deref().filter(|t| !t.is_empty()) {
                Some(_) if a.to_servicer_userid.as_deref().is_some_and(|t| !t.is_empty()) => {
                    return Err(ApiError::param(
                        "a transfer names to_servicer_userid (in the account) or to_open_kfid (another account), not both",
                    ));
                }
                Some(to) => st.servicer_transfer_account(u, k, e, to, now)?,
                None => st.servicer_transfer(u, k, e, a.to_servicer_userid.as_deref(), now)?,
            };
            Ok(ServicerAck { msgid: None, service_state: Some(state) })
        }
        "end" => st.servicer_end(u, k, e, now).map(|()| ServicerAck { msgid: None, service_state: Some(4) }),
        "" => Err(ApiError::missing("type")),
        other => Err(ApiError::new(
            code::INVALID_PARAM,
            format!("unknown action type `{other}`: use reply, transfer or end"),
        )),
    }
}

pub(super) async fn servicer_batch(AxState(svc): AxState<Service>, req: Request) -> Response {
    run_batch(svc, req, false, |st, _channel, a: Result<ServicerAction, _>, now| {
        let a = a?;
        let kind = a.kind.clone();
        servicer_act(st, a, &kind, now)
    })
    .await
}

fn reply(st: &mut State, a: ServicerAction, now: u64) -> Result<ServicerAck, ApiError> {
    servicer_act(st, a, "reply", now)
}

fn transfer(st: &mut State, a: ServicerAction, now: u64) -> Result<ServicerAck, ApiError> {
    servicer_act(st, a, "transfer", now)
}

fn end(st: &mut State, a: ServicerAction, now: u64) -> Result<ServicerAck, ApiError> {
    servicer_act(st, a, "end", now)
}
