//! The enterprise API, compatible with WeCom's `cgi-bin/kf`: request and
//! response shapes and the routes. Every call but `gettoken` needs
//! `?access_token=`. Field names, limits and errcodes follow
//! `shared/reference/wechat-kf-api.md`; kfsim's extensions (an account's
//! `reception_rule`, a servicer's `max_concurrent`) are optional fields
//! WeCom clients never send.

use axum::extract::{Request, State as AxState};
use axum::response::Response;
use axum::routing::{get, post};
use serde::{Deserialize, Serialize};

use super::Service;
use super::errors::{ApiError, absent_or_given, required};
use super::faults::Caller;
use super::http::{call, error, null_is_default, own_origin, query_param, respond};
use super::model::{Name, Sender, SyncEntry, with_content};
use super::state::{AccountInfo, Rule, ServicerInfo, State};
use super::upgrade::UpgradeTo;

/// Register a POST endpoint running `op`.
macro_rules! post_op {
    ($op:expr) => {
        post(|AxState(svc): AxState<Service>, req: Request| call(svc, req, $op))
    };
}

/// The `cgi-bin` routes.
pub fn routes() -> axum::Router<Service> {
    axum::Router::new()
        .route("/cgi-bin/gettoken", get(gettoken))
        .route("/cgi-bin/kf/account/add", post_op!(account_add))
        .route("/cgi-bin/kf/account/del", post_op!(account_del))
        .route("/cgi-bin/kf/account/update", post_op!(account_update))
        .route("/cgi-bin/kf/account/list", post(account_list_post).get(account_list_get))
        .route("/cgi-bin/kf/add_contact_way", post_op!(add_contact_way))
        .route("/cgi-bin/kf/servicer/add", post_op!(servicer_add))
        .route("/cgi-bin/kf/servicer/del", post_op!(servicer_del))
        .route("/cgi-bin/kf/servicer/list", get(servicer_list))
        .route("/cgi-bin/kf/service_state/get", post_op!(state_get))
        .route("/cgi-bin/kf/service_state/trans", post_op!(state_trans))
        .route("/cgi-bin/kf/sync_msg", post_op!(sync_msg))
        .route("/cgi-bin/kf/send_msg", post_op!(send_msg))
        .route("/cgi-bin/kf/send_msg_on_event", post_op!(send_msg_on_event))
        .route("/cgi-bin/kf/customer/batchget", post_op!(customer_batchget))
        .route("/cgi-bin/kf/customer/get_upgrade_service_config", get(upgrade_service_config))
        .route("/cgi-bin/kf/customer/upgrade_service", post_op!(upgrade_service))
        .route("/cgi-bin/kf/customer/cancel_upgrade_service", post_op!(cancel_upgrade_service))
        .route("/cgi-bin/kf/get_corp_statistic", post_op!(corp_statistic))
        .route("/cgi-bin/kf/get_servicer_statistic", post_op!(servicer_statistic))
        .route("/cgi-bin/kf/get_corp_qualification", get(corp_qualification))
        .route("/cgi-bin/media/upload", post(super::media::upload))
        .route("/cgi-bin/media/get", get(super::media::get))
        .route("/avatar/{open_kfid}/{media_id}", get(super::media::avatar))
}

/// The hot endpoints of the front (`front.rs`), which calls them without
/// the router: the same handlers as their routes'.
pub(super) async fn send_msg_direct(svc: Service, req: Request) -> Response {
    call(svc, req, send_msg).await
}
pub(super) async fn sync_msg_direct(svc: Service, req: Request) -> Response {
    call(svc, req, sync_msg).await
}
pub(super) async fn state_get_direct(svc: Service, req: Request) -> Response {
    call(svc, req, state_get).await
}
pub(super) async fn state_trans_direct(svc: Service, req: Request) -> Response {
    call(svc, req, state_trans).await
}

/// Nothing but errcode and errmsg.
#[derive(Serialize)]
struct Empty {}

async fn gettoken(AxState(svc): AxState<Service>, req: Request) -> Response {
    let q = req.uri().query();
    let (corpid, secret) = (query_param(q, "corpid"), query_param(q, "corpsecret"));
    let caller = Caller::of(req.headers());
    respond(svc.with_state(|st, now| {
        let (access_token, expires_in) = st.get_token(&corpid, &secret, caller, now)?;
        Ok(serde_json::json!({ "access_token": access_token, "expires_in": expires_in }))
    }))
}

#[derive(Deserialize)]
struct AccountAdd {
    #[serde(default)]
    name: String,
    #[serde(default)]
    media_id: String,
    reception_rule: Option<Rule>,
}

#[derive(Serialize)]
struct OpenKfid {
    open_kfid: String,
}

fn account_add(st: &mut State, r: AccountAdd, now: u64) -> Result<OpenKfid, ApiError> {
    Ok(OpenKfid { open_kfid: st.account_add(&r.name, &r.media_id, r.reception_rule, now)? })
}

#[derive(Deserialize)]
struct ByAccount {
    #[serde(default)]
    open_kfid: String,
}

fn account_del(st: &mut State, r: ByAccount, now: u64) -> Result<Empty, ApiError> {
    st.account_del(&r.open_kfid, now).map(|()| Empty {})
}

#[derive(Deserialize)]
struct AccountUpdate {
    #[serde(default)]
    open_kfid: String,
    name: Option<String>,
    media_id: Option<String>,
    reception_rule: Option<Rule>,
}

fn account_update(st: &mut State, r: AccountUpdate, now: u64) -> Result<Empty, ApiError> {
    st.account_update(&r.open_kfid, r.name.as_deref(), r.media_id.as_deref(), r.reception_rule, now)
        .map(|()| Empty {})
}

#[derive(Deserialize)]
struct AccountList {
    offset: Option<i64>,
    limit: Option<i64>,
}

#[derive(Serialize)]
struct AccountListOut {
    account_list: Vec<AccountInfo>,
}

fn account_list(st: &mut State, r: AccountList, origin: &str) -> Result<AccountListOut, ApiError> {
    let offset = r.offset.unwrap_or(0);
    // 0 is the default, as in sync_msg (Go SDKs send 0 for a limit not set)
    let limit = r.limit.filter(|&l| l != 0).unwrap_or(100);
    if offset < 0 {
        return Err(ApiError::param("offset must not be negative"));
    }
    if !(1..=100).contains(&limit) {
        return Err(ApiError::param("limit must be between 1 and 100"));
    }
    Ok(AccountListOut { account_list: st.account_list(offset as usize, limit as usize, origin) })
}

/// `account/list`'s avatars are URLs on this service, at the address the
/// caller reached it by.
async fn account_list_post(AxState(svc): AxState<Service>, req: Request) -> Response {
    let origin = own_origin(&req);
    call(svc, req, move |st, r, _now| account_list(st, r, &origin)).await
}

/// Older SDKs call `account/list` with GET and no body.
async fn account_list_get(AxState(svc): AxState<Service>, req: Request) -> Response {
    let token = query_param(req.uri().query(), "access_token");
    let caller = Caller::of(req.headers());
    let origin = own_origin(&req);
    respond(svc.with_state(|st, now| {
        st.check_token(&token, caller, now)?;
        account_list(st, AccountList { offset: None, limit: None }, &origin)
    }))
}

#[derive(Deserialize)]
struct ContactWay {
    #[serde(default)]
    open_kfid: String,
    #[serde(default)]
    scene: String,
}

fn add_contact_way(st: &mut State, r: ContactWay, _now: u64) -> Result<serde_json::Value, ApiError> {
    Ok(serde_json::json!({ "url": st.add_contact_way(&r.open_kfid, &r.scene)? }))
}

#[derive(Deserialize)]
struct ServicerChange {
    #[serde(default)]
    open_kfid: String,
    #[serde(default, deserialize_with = "null_is_default")]
    userid_list: Vec<String>,
    #[serde(default, deserialize_with = "null_is_default")]
    department_id_list: Vec<i64>,
    max_concurrent: Option<u32>,
}

#[derive(Serialize)]
struct ResultItem {
    #[serde(skip_serializing_if = "Option::is_none")]
    userid: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    department_id: Option<i64>,
    errcode: i32,
    errmsg: String,
}

#[derive(Serialize)]
struct ResultList {
    result_list: Vec<ResultItem>,
}

fn servicer_change(r: ServicerChange, add: bool, st: &mut State, now: u64) -> Result<ResultList, ApiError> {
    if r.userid_list.is_empty() && r.department_id_list.is_empty() {
        return Err(ApiError::missing("userid_list"));
    }
    if r.department_id_list.len() > 100 {
        return Err(ApiError::param("department_id_list may have at most 100 ids"));
    }
    let mut out = Vec::new();
    if !r.userid_list.is_empty() {
        let results = if add {
            st.servicer_add(&r.open_kfid, &r.userid_list, r.max_concurrent, now)?
        } else {
            st.servicer_del(&r.open_kfid, &r.userid_list, now)?
        };
        out.extend(results.into_iter().map(|(userid, errcode, errmsg)| ResultItem {
            userid: Some(userid),
            department_id: None,
            errcode,
            errmsg,
        }));
    } else {
        st.account_of(&r.open_kfid)?;
    }
    out.extend(r.department_id_list.iter().map(|&d| ResultItem {
        userid: None,
        department_id: Some(d),
        errcode: super::errors::code::INVALID_PARAM,
        errmsg: "departments are not modelled by kfsim: add servicers by userid".into(),
    }));
    Ok(ResultList { result_list: out })
}

fn servicer_add(st: &mut State, r: ServicerChange, now: u64) -> Result<ResultList, ApiError> {
    servicer_change(r, true, st, now)
}

fn servicer_del(st: &mut State, r: ServicerChange, now: u64) -> Result<ResultList, ApiError> {
    servicer_change(r, false, st, now)
}

#[derive(Serialize)]
struct ServicerListOut {
    servicer_list: Vec<ServicerInfo>,
}

async fn servicer_list(AxState(svc): AxState<Service>, req: Request) -> Response {
    let q = req.uri().query();
    let (token, open_kfid) = (query_param(q, "access_token"), query_param(q, "open_kfid"));
    let caller = Caller::of(req.headers());
    respond(svc.with_state(|st, now| {
        st.check_token(&token, caller, now)?;
        Ok(ServicerListOut { servicer_list: st.servicer_list(&open_kfid)? })
    }))
}

#[derive(Deserialize)]
struct StateGet {
    #[serde(default)]
    open_kfid: String,
    #[serde(default)]
    external_userid: String,
}

fn state_get(st: &mut State, r: StateGet, _now: u64) -> Result<serde_json::Value, ApiError> {
    let (service_state, servicer) = st.service_state_get(&r.open_kfid, &r.external_userid)?;
    Ok(serde_json::json!({ "service_state": service_state, "servicer_userid": servicer.unwrap_or_default() }))
}

#[derive(Deserialize)]
struct StateTrans {
    #[serde(default)]
    open_kfid: String,
    #[serde(default)]
    external_userid: String,
    service_state: Option<i64>,
    servicer_userid: Option<String>,
}

fn state_trans(st: &mut State, r: StateTrans, now: u64) -> Result<serde_json::Value, ApiError> {
    let to = r.service_state.ok_or_else(|| ApiError::missing("service_state"))?;
    let to = u8::try_from(to)
        .ok()
        .filter(|&s| s <= 4)
        .ok_or_else(|| ApiError::param("service_state must be 0 to 4"))?;
    let code =
        st.service_state_trans(&r.open_kfid, &r.external_userid, to, r.servicer_userid.as_deref(), now)?;
    Ok(match code {
        Some(c) => serde_json::json!({ "msg_code": c }),
        None => serde_json::json!({}),
    })
}

#[derive(Deserialize)]
struct SyncMsg {
    #[serde(default)]
    cursor: String,
    #[serde(default)]
    token: String,
    limit: Option<i64>,
    #[serde(default, deserialize_with = "null_is_default")]
    voice_format: i64,
    /// Absent: every account's log; given, it must not be empty.
    open_kfid: Option<String>,
}

#[derive(Serialize)]
struct SyncOut {
    next_cursor: String,
    has_more: u8,
    msg_list: Vec<SyncEntry>,
}

fn sync_msg(st: &mut State, r: SyncMsg, now: u64) -> Result<SyncOut, ApiError> {
    super::errors::limit("cursor", &r.cursor, 64)?;
    super::errors::limit("token", &r.token, 128)?;
    st.check_sync_token(&r.token, now)?;
    if r.token.is_empty() {
        st.note_sync_without_token();
    }
    if !(0..=1).contains(&r.voice_format) {
        return Err(ApiError::param("voice_format must be 0 (amr) or 1 (silk)"));
    }
    // 0 is the default: silenceper/wechat's SyncMsgOptions sends
    // `"limit": 0` whenever its user sets none (no omitempty), and works
    // against WeCom; it was 40058 here
    let limit = r.limit.filter(|&l| l != 0).unwrap_or(1000);
    if !(1..=1000).contains(&limit) {
        return Err(ApiError::param("limit must be between 1 and 1000"));
    }
    absent_or_given("open_kfid", r.open_kfid.as_deref())?;
    let page = st.sync_msg(r.open_kfid.as_deref().unwrap_or(""), &r.cursor, limit as usize, now)?;
    Ok(SyncOut { next_cursor: page.next_cursor, has_more: u8::from(page.has_more), msg_list: page.msg_list })
}

with_content! {
    #[derive(Deserialize)]
    struct SendMsg {
        #[serde(default)]
        touser: String,
        #[serde(default)]
        open_kfid: String,
        msgid: Option<String>,
    }
}

#[derive(Serialize)]
struct MsgidOut {
    msgid: Name,
}

fn send_msg(st: &mut State, mut r: SendMsg, now: u64) -> Result<MsgidOut, ApiError> {
    required("touser", &r.touser, 64)?;
    absent_or_given("msgid", r.msgid.as_deref())?;
    let content = r.content().into_content(Sender::Enterprise)?;
    Ok(MsgidOut { msgid: st.send_msg(&r.touser, &r.open_kfid, r.msgid.as_deref(), content, now)? })
}

with_content! {
    #[derive(Deserialize)]
    struct SendOnEvent {
        #[serde(default)]
        code: String,
        msgid: Option<String>,
    }
}

fn send_msg_on_event(st: &mut State, mut r: SendOnEvent, now: u64) -> Result<MsgidOut, ApiError> {
    required("code", &r.code, 128)?;
    absent_or_given("msgid", r.msgid.as_deref())?;
    let content = r.content().into_content(Sender::OnEvent)?;
    Ok(MsgidOut { msgid: st.send_msg_on_event(&r.code, r.msgid.as_deref(), content, now)? })
}

#[derive(Deserialize)]
struct BatchGet {
    #[serde(default, deserialize_with = "null_is_default")]
    external_userid_list: Vec<String>,
    #[serde(default, deserialize_with = "null_is_default")]
    need_enter_session_context: i64,
}

fn customer_batchget(st: &mut State, r: BatchGet, _now: u64) -> Result<serde_json::Value, ApiError> {
    if r.external_userid_list.is_empty() {
        return Err(ApiError::missing("external_userid_list"));
    }
    if r.external_userid_list.len() > 100 {
        return Err(ApiError::param("external_userid_list may have at most 100 ids"));
    }
    let (found, invalid) = st.customer_batchget(&r.external_userid_list, r.need_enter_session_context == 1);
    Ok(serde_json::json!({ "customer_list": found, "invalid_external_userid": invalid }))
}

/// 升级服务 configuration: every servicer is a 专员; no departments, no
/// group chats (`upgrade.rs`).
async fn upgrade_service_config(AxState(svc): AxState<Service>, req: Request) -> Response {
    let token = query_param(req.uri().query(), "access_token");
    let caller = Caller::of(req.headers());
    respond(svc.with_state(|st, now| {
        st.check_token(&token, caller, now)?;
        Ok(serde_json::json!({
            "member_range": {"userid_list": st.upgrade_member_range(), "department_id_list": []},
            "groupchat_range": {"chat_id_list": []},
        }))
    }))
}

/// `member` of an upgrade. Its `wording` (推荐语) is not read: WeCom shows
/// it with the recommendation, and kfsim has no WeChat client to show it in.
#[derive(Deserialize)]
struct UpgradeMember {
    #[serde(default)]
    userid: String,
}

#[derive(Deserialize)]
struct UpgradeGroupchat {
    #[serde(default)]
    chat_id: String,
}

#[derive(Deserialize)]
struct UpgradeService {
    #[serde(default)]
    open_kfid: String,
    #[serde(default)]
    external_userid: String,
    #[serde(rename = "type")]
    kind: Option<i64>,
    member: Option<UpgradeMember>,
    groupchat: Option<UpgradeGroupchat>,
}

fn upgrade_service(st: &mut State, r: UpgradeService, now: u64) -> Result<Empty, ApiError> {
    let to = match r.kind.ok_or_else(|| ApiError::missing("type"))? {
        1 => UpgradeTo::Member(&r.member.as_ref().ok_or_else(|| ApiError::missing("member"))?.userid),
        2 => {
            UpgradeTo::Groupchat(&r.groupchat.as_ref().ok_or_else(|| ApiError::missing("groupchat"))?.chat_id)
        }
        t => return Err(ApiError::param(format!("type must be 1 (专员) or 2 (客户群), not {t}"))),
    };
    st.upgrade_service(&r.open_kfid, &r.external_userid, to, now).map(|()| Empty {})
}

fn cancel_upgrade_service(st: &mut State, r: StateGet, now: u64) -> Result<Empty, ApiError> {
    st.cancel_upgrade_service(&r.open_kfid, &r.external_userid, now).map(|()| Empty {})
}

#[derive(Deserialize)]
struct StatisticQuery {
    #[serde(default)]
    open_kfid: String,
    #[serde(default)]
    servicer_userid: String,
    start_time: Option<u64>,
    end_time: Option<u64>,
}

impl StatisticQuery {
    fn span(&self) -> Result<(u64, u64), ApiError> {
        Ok((
            self.start_time.ok_or_else(|| ApiError::missing("start_time"))?,
            self.end_time.ok_or_else(|| ApiError::missing("end_time"))?,
        ))
    }
}

fn statistic_list<T: Serialize>(days: Vec<(u64, T)>) -> serde_json::Value {
    let list: Vec<serde_json::Value> = days
        .into_iter()
        .map(|(stat_time, statistic)| serde_json::json!({"stat_time": stat_time, "statistic": statistic}))
        .collect();
    serde_json::json!({ "statistic_list": list })
}

fn corp_statistic(st: &mut State, r: StatisticQuery, _now: u64) -> Result<serde_json::Value, ApiError> {
    let (from, to) = r.span()?;
    Ok(statistic_list(st.corp_statistic(&r.open_kfid, from, to)?))
}

fn servicer_statistic(st: &mut State, r: StatisticQuery, _now: u64) -> Result<serde_json::Value, ApiError> {
    let (from, to) = r.span()?;
    Ok(statistic_list(st.servicer_statistic(&r.open_kfid, &r.servicer_userid, from, to)?))
}

/// 视频号 binding (`get_corp_qualification`). WeCom caps the customers of a
/// corp without it (100 unverified, 10 000 verified); kfsim caps none and
/// its customers come from WeChat Channels too, as those of a verified
/// corp with a bound 视频号.
async fn corp_qualification(AxState(svc): AxState<Service>, req: Request) -> Response {
    let token = query_param(req.uri().query(), "access_token");
    let caller = Caller::of(req.headers());
    respond(svc.with_state(|st, now| {
        st.check_token(&token, caller, now)?;
        Ok(serde_json::json!({ "wechat_channels_binding": true }))
    }))
}

/// Unknown paths. Under `/cgi-bin/` (a WeCom API kfsim does not implement)
/// HTTP 200 with an errcode that names it, as SDKs check the status before
/// the errcode; elsewhere HTTP 404, both with a WeCom-style body.
pub(super) async fn not_found(req: Request) -> Response {
    let path = req.uri().path();
    if path.starts_with("/cgi-bin/") {
        // a 200 to CONNECT says "tunnel open": the body would be lost
        // (found by probing); WeCom's APIs are GET and POST
        if !matches!(*req.method(), axum::http::Method::GET | axum::http::Method::POST) {
            return wrong_method(req).await;
        }
        return error(ApiError::new(
            super::errors::code::FORBIDDEN,
            format!(
                "kfsim does not implement the WeCom API {path}: docs/protocol.md lists the ones it serves"
            ),
        ));
    }
    error(ApiError::param(format!("invalid url: no API at {path}")).with_status(404))
}

/// Known paths with the wrong method: HTTP 405 with a WeCom-style body.
pub(super) async fn wrong_method(req: Request) -> Response {
    error(
        ApiError::param(format!("method {} not allowed for {}", req.method(), req.uri().path()))
            .with_status(405),
    )
}
