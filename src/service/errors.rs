//! WeCom-style errors: an `errcode` and an `errmsg`, for both surfaces.
//!
//! WeCom answers HTTP 200 with a non-zero `errcode`; so does kfsim, except
//! for requests that never reach an endpoint (unknown path 404, wrong method
//! 405, body over the cap 413), which still carry a JSON errcode. The codes
//! come from `shared/reference/wechat-kf-api.md`; where WeCom's code for a
//! case is not known, kfsim uses the nearest documented one and
//! `docs/protocol.md` says so.

use std::borrow::Cow;

/// Error codes used by kfsim, named after their WeCom meaning.
pub mod code {
    /// 系统繁忙.
    pub const SYSTEM_BUSY: i32 = -1;
    /// 不合法的secret参数.
    pub const INVALID_SECRET: i32 = 40001;
    /// 不合法的msgtype参数.
    pub const INVALID_MSGTYPE: i32 = 40008;
    /// 不合法的corpid.
    pub const INVALID_CORPID: i32 = 40013;
    /// 不合法的access_token.
    pub const INVALID_TOKEN: i32 = 40014;
    /// 不合法的参数 (a value out of range, too long, malformed, or missing).
    pub const INVALID_PARAM: i32 = 40058;
    /// 缺少access_token参数.
    pub const MISSING_TOKEN: i32 = 41001;
    /// 缺少corpid参数.
    pub const MISSING_CORPID: i32 = 41002;
    /// 缺少secret参数.
    pub const MISSING_SECRET: i32 = 41004;
    /// access_token已过期.
    pub const EXPIRED_TOKEN: i32 = 42001;
    /// 接口调用超过限制 (here: a bounded queue or table is full).
    pub const LIMIT: i32 = 45009;
    /// 数据格式错误: "Warning: wrong json format.".
    pub const BAD_JSON: i32 = 47001;
    /// API 禁止调用 (here: the caller may not touch this session).
    pub const FORBIDDEN: i32 = 48002;
    /// 不合法的open_kfid.
    pub const INVALID_OPEN_KFID: i32 = 95000;
    /// 发送客服消息次数限制 (5 messages per 48 h after the customer's last).
    pub const SEND_LIMIT: i32 = 95001;
    /// open_kfid不存在.
    pub const OPEN_KFID_NOT_FOUND: i32 = 95004;
    /// 不合法的msg token / code.
    pub const INVALID_CODE: i32 = 95007;
    /// 会话已经结束.
    pub const SESSION_ENDED: i32 = 95013;
    /// 用户不是接待人员 / not receiving (停止接待) / at 接待上限.
    pub const NOT_SERVICER: i32 = 95014;
    /// 不允许这种状态转换.
    pub const BAD_TRANSITION: i32 = 95016;
    /// send msg session status invalid (send_msg outside states 0 and 1).
    pub const SESSION_STATE: i32 = 95018;
    /// The userid or chat_id is not configured in 升级服务.
    pub const NOT_IN_UPGRADE_RANGE: i32 = 95021;
}

/// An error answer: `errcode`, `errmsg`, and the HTTP status it travels
/// with (200 for everything an endpoint answers).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    /// WeCom errcode.
    pub code: i32,
    /// Human-readable errmsg.
    pub msg: Cow<'static, str>,
    /// HTTP status.
    pub status: u16,
}

/// The longest `errmsg` [bytes]; a longer one is cut, with `…`.
pub const MAX_ERRMSG: usize = 512;

impl ApiError {
    /// An error answered with HTTP 200, as WeCom does.
    pub fn new(code: i32, msg: impl Into<Cow<'static, str>>) -> ApiError {
        let mut msg = msg.into();
        // many messages name the value that was wrong: one of a megabyte
        // came back whole, in each of a batch's thousand results too
        if msg.len() > MAX_ERRMSG {
            let mut end = MAX_ERRMSG;
            while !msg.is_char_boundary(end) {
                end -= 1;
            }
            let m = msg.to_mut();
            m.truncate(end);
            m.push('…');
        }
        ApiError { code, msg, status: 200 }
    }

    /// The same error with another HTTP status.
    pub fn with_status(mut self, status: u16) -> ApiError {
        self.status = status;
        self
    }

    /// 40058 with what is wrong.
    pub fn param(msg: impl Into<Cow<'static, str>>) -> ApiError {
        ApiError::new(code::INVALID_PARAM, msg)
    }

    /// 40058 for a required field that is absent or empty.
    pub fn missing(field: &str) -> ApiError {
        ApiError::param(format!("invalid Request Parameter: missing `{field}`"))
    }

    /// 40058 for a string longer than WeCom allows.
    pub fn too_long(field: &str, max_bytes: usize) -> ApiError {
        ApiError::param(format!("invalid Request Parameter: `{field}` is longer than {max_bytes} bytes"))
    }

    /// 47001 for a body that is not JSON or has a value of the wrong type.
    pub fn bad_json(detail: impl std::fmt::Display) -> ApiError {
        ApiError::new(code::BAD_JSON, format!("Warning: wrong json format. {detail}"))
    }

    /// 95004 for an open_kfid that names no account.
    pub fn no_account(open_kfid: &str) -> ApiError {
        ApiError::new(code::OPEN_KFID_NOT_FOUND, format!("open_kfid not exist: {open_kfid}"))
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "errcode {}: {}", self.code, self.msg)
    }
}

impl std::error::Error for ApiError {}

/// Check a required string field: present, not empty, at most `max` bytes.
pub fn required<'a>(field: &str, value: &'a str, max: usize) -> Result<&'a str, ApiError> {
    if value.is_empty() {
        return Err(ApiError::missing(field));
    }
    limit(field, value, max)?;
    Ok(value)
}

/// An optional field that is given must not be empty: WeCom refuses
/// `"open_kfid": ""` in `sync_msg` and `"msgid": ""` in `send_msg` (which
/// SDKs learned: silenceper/wechat's fixes #563 and #672 quote its
/// answer), where leaving the field out is fine.
pub fn absent_or_given(field: &str, value: Option<&str>) -> Result<(), ApiError> {
    if value == Some("") {
        return Err(ApiError::param(format!(
            "invalid Request Parameter: field `{field}` unexpected empty string"
        )));
    }
    Ok(())
}

/// Check an optional string field's length.
pub fn limit(field: &str, value: &str, max: usize) -> Result<(), ApiError> {
    if value.len() > max {
        return Err(ApiError::too_long(field, max));
    }
    Ok(())
}

/// Check an identifier: 1..=`max` bytes of `[0-9a-zA-Z_-]` (WeCom's rule for
/// msgid and scene, used here for every id a client chooses).
pub fn ident<'a>(field: &str, value: &'a str, max: usize) -> Result<&'a str, ApiError> {
    required(field, value, max)?;
    if !value.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-') {
        return Err(ApiError::param(format!(
            "invalid Request Parameter: `{field}` may contain only 0-9 a-z A-Z _ -"
        )));
    }
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn field_checks_name_the_field() {
        assert_eq!(required("name", "", 16).unwrap_err().code, code::INVALID_PARAM);
        assert!(required("name", &"x".repeat(17), 16).unwrap_err().msg.contains("`name`"));
        assert_eq!(required("name", "ok", 16), Ok("ok"));
        assert!(ident("scene", "a b", 32).is_err());
        assert_eq!(ident("scene", "web_1-a", 32), Ok("web_1-a"));
        assert!(ApiError::bad_json("x").msg.starts_with("Warning: wrong json format."));
    }

    /// A value named in an errmsg came back whole, however long.
    #[test]
    fn an_errmsg_is_cut_to_its_bound_at_a_character() {
        let e = ApiError::no_account(&"w".repeat(900_000));
        assert_eq!(e.msg.len(), MAX_ERRMSG + '…'.len_utf8());
        assert!(e.msg.starts_with("open_kfid not exist: www") && e.msg.ends_with("w…"), "{e}");
        // a cut inside a character keeps the whole characters before it
        let e = ApiError::param(format!("x{}", "接".repeat(400)));
        assert!(e.msg.len() <= MAX_ERRMSG + '…'.len_utf8() && e.msg.ends_with("接…"), "{e}");
        let short = "open_kfid not exist: wk1";
        assert_eq!(ApiError::no_account("wk1").msg, short);
    }
}
