//! Temporary media (临时素材): `cgi-bin/media/upload` and
//! `cgi-bin/media/get`, as integrations use them to send images, voice,
//! video and files and to download what customers sent.
//!
//! Uploads are kept for 3 days (WeCom's lifetime of a temporary media id)
//! and in at most `media_cap_bytes` in all, each weighed with what it costs
//! besides its bytes; past that the oldest go first, so a load test that
//! uploads without end holds memory flat. A customer message with a media
//! id makes that id downloadable too, as a small placeholder file of its
//! type (kfsim's customers send no real files); those ids are kept for 3
//! days and at most `sync_log_cap` of them, compactly: a load test's
//! customers send thousands a second.
//!
//! The store is pure state (time is an argument); the handlers below read
//! the multipart body with their own cap (the 1 MiB cap stays for JSON).

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::{Path, Request, State as AxState};
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};

use super::Service;
use super::errors::ApiError;
use super::faults::Caller;
use super::http::{BodyShare, Charged, closing, error, ok, over_budget, query_param};
use super::model::Content;
use super::state::State;

/// The largest upload of any type [bytes] (a file: 20 MB).
pub const MAX_MEDIA: usize = 20 << 20;
/// How long an upload can be fetched [µs] (WeCom: 3 days).
const LIFETIME_US: u64 = 3 * 86_400_000_000;
/// The smallest upload WeCom takes [bytes].
const MIN_MEDIA: usize = 5;
/// What a stored upload costs besides its bytes and its strings: its
/// entries in the map and in the order [bytes, about].
const ENTRY_OVERHEAD: usize = 160;
/// What a customer's media id costs in the store [bytes, about]: its hash
/// and kind in the map, and in the order.
const PLACEHOLDER_WEIGHT: usize = 48;

/// errcodes of the media API.
mod code {
    pub const INVALID_TYPE: i32 = 40004;
    pub const INVALID_SIZE: i32 = 40006;
    pub const INVALID_MEDIA_ID: i32 = 40007;
    pub const EMPTY: i32 = 44001;
}

/// The four types and their size limits [bytes] (WeCom's 临时素材 rules).
fn limit_of(kind: &str) -> Option<usize> {
    match kind {
        "image" | "video" => Some(10 << 20),
        "voice" => Some(2 << 20),
        "file" => Some(MAX_MEDIA),
        _ => None,
    }
}

/// One stored medium.
#[derive(Debug, Clone)]
pub struct Medium {
    /// `image`, `voice`, `video` or `file`.
    pub kind: &'static str,
    /// The uploaded file's name.
    pub filename: String,
    /// Its content type as uploaded.
    pub content_type: String,
    /// The bytes.
    pub bytes: Bytes,
    created_us: u64,
}

impl Medium {
    fn new(kind: &'static str, filename: &str, content_type: &str, bytes: Bytes, created_us: u64) -> Medium {
        Medium { kind, filename: filename.into(), content_type: content_type.into(), bytes, created_us }
    }

    /// About how much memory it holds under `id`: its bytes, the id (in
    /// the map and in the order), its names, the entries.
    fn weight(&self, id: &str) -> usize {
        self.bytes.len() + 2 * id.len() + self.filename.len() + self.content_type.len() + ENTRY_OVERHEAD
    }
}

/// The kinds of media, by their index in a placeholder.
const KINDS: [&str; 4] = ["image", "voice", "video", "file"];

/// Stored media, bounded by age and weight; customers' media ids, bounded
/// by age and count.
#[derive(Debug)]
pub(super) struct MediaStore {
    items: HashMap<Box<str>, Medium>,
    order: VecDeque<(Box<str>, u64)>,
    bytes: usize,
    cap_bytes: usize,
    /// Customers' media ids by a 64-bit hash of the id (a hash collides
    /// with another id about once in 10¹⁴ lookups of a full store), with
    /// the kind's index in [`KINDS`] and when it was sent.
    placeholders: HashMap<u64, (u8, u64)>,
    placeholder_order: VecDeque<(u64, u64)>,
    placeholder_cap: usize,
}

/// The hash a customer's media id is kept by.
fn id_hash(id: &str) -> u64 {
    use std::hash::{Hash, Hasher};
    // fixed keys: the same id hashes the same for the life of the process
    let mut h = std::hash::DefaultHasher::new();
    id.hash(&mut h);
    h.finish()
}

impl MediaStore {
    pub(super) fn new(cap_bytes: usize, placeholder_cap: usize) -> MediaStore {
        MediaStore {
            items: HashMap::new(),
            order: VecDeque::new(),
            bytes: 0,
            cap_bytes,
            placeholders: HashMap::new(),
            placeholder_order: VecDeque::new(),
            placeholder_cap: placeholder_cap.max(1),
        }
    }

    fn insert(&mut self, id: &str, m: Medium) {
        self.bytes += m.weight(id);
        self.order.push_back((id.into(), m.created_us));
        if let Some(old) = self.items.insert(id.into(), m) {
            self.bytes -= old.weight(id);
        }
        while self.bytes > self.cap_bytes && self.evict_oldest() {}
    }

    fn evict_oldest(&mut self) -> bool {
        let Some((id, created)) = self.order.pop_front() else { return false };
        // a re-registered id has a newer entry further on
        if self.items.get(&id).is_some_and(|m| m.created_us == created)
            && let Some(m) = self.items.remove(&id)
        {
            self.bytes -= m.weight(&id);
        }
        true
    }

    /// A customer sent a medium of `kind` with this id.
    fn insert_placeholder(&mut self, kind: &'static str, id: &str, now_us: u64) {
        let h = id_hash(id);
        let k = KINDS.iter().position(|&x| x == kind).unwrap_or(3) as u8;
        self.placeholders.insert(h, (k, now_us));
        self.placeholder_order.push_back((h, now_us));
        while self.placeholder_order.len() > self.placeholder_cap && self.evict_oldest_placeholder() {}
    }

    fn evict_oldest_placeholder(&mut self) -> bool {
        let Some((h, sent)) = self.placeholder_order.pop_front() else { return false };
        // an id sent again has a newer entry further on
        if self.placeholders.get(&h).is_some_and(|&(_, t)| t == sent) {
            self.placeholders.remove(&h);
        }
        true
    }

    /// The placeholder of a customer's media id, if one was sent.
    fn placeholder_of(&self, id: &str) -> Option<(&'static str, u64)> {
        self.placeholders.get(&id_hash(id)).map(|&(k, sent)| (KINDS[k as usize], sent))
    }

    /// Drop what is older than 3 days.
    pub(super) fn expire(&mut self, now_us: u64) {
        while self.order.front().is_some_and(|(_, t)| now_us.saturating_sub(*t) >= LIFETIME_US) {
            self.evict_oldest();
        }
        while self.placeholder_order.front().is_some_and(|(_, t)| now_us.saturating_sub(*t) >= LIFETIME_US) {
            self.evict_oldest_placeholder();
        }
    }

    /// About how much memory it holds [bytes].
    pub(super) fn bytes(&self) -> usize {
        self.bytes + self.placeholder_order.len() * PLACEHOLDER_WEIGHT
    }
}

/// What a customer's placeholder medium holds, by type.
fn placeholder(kind: &'static str) -> (&'static str, &'static str, Bytes) {
    // a valid 1×1 PNG, so that image code paths decode something real
    const PNG: &[u8] = &[
        0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a, 0, 0, 0, 0x0d, 0x49, 0x48, 0x44, 0x52, 0, 0, 0, 1, 0,
        0, 0, 1, 8, 6, 0, 0, 0, 0x1f, 0x15, 0xc4, 0x89, 0, 0, 0, 0x0d, 0x49, 0x44, 0x41, 0x54, 0x78, 0x9c,
        0x63, 0, 1, 0, 0, 5, 0, 1, 0x0d, 0x0a, 0x2d, 0xb4, 0, 0, 0, 0, 0x49, 0x45, 0x4e, 0x44, 0xae, 0x42,
        0x60, 0x82,
    ];
    match kind {
        "image" => ("customer.png", "image/png", Bytes::from_static(PNG)),
        "voice" => ("customer.amr", "audio/amr", Bytes::from_static(b"#!AMR\n")),
        "video" => ("customer.mp4", "video/mp4", Bytes::from_static(b"\0\0\0\x18ftypmp42")),
        _ => ("customer.txt", "text/plain", Bytes::from_static(b"kfsim customer file\n")),
    }
}

impl State {
    /// Store an upload; its media_id.
    pub fn media_upload(
        &mut self,
        kind: &str,
        filename: &str,
        content_type: &str,
        bytes: Bytes,
        now_us: u64,
    ) -> Result<String, ApiError> {
        let max = limit_of(kind)
            .ok_or_else(|| ApiError::new(code::INVALID_TYPE, "type must be image, voice, video or file"))?;
        let kind: &'static str = match kind {
            "image" => "image",
            "voice" => "voice",
            "video" => "video",
            _ => "file",
        };
        if bytes.len() < MIN_MEDIA || bytes.len() > max {
            return Err(ApiError::new(
                code::INVALID_SIZE,
                format!(
                    "a {kind} must be {MIN_MEDIA} bytes to {} MB; this one is {} bytes",
                    max >> 20,
                    bytes.len()
                ),
            ));
        }
        let id = format!("3{}", self.new_id());
        self.media.insert(&id, Medium::new(kind, filename, content_type, bytes, now_us));
        Ok(id)
    }

    /// A medium by id (40007 when unknown or expired): an upload, or the
    /// placeholder of a customer's.
    pub fn media_get(&self, media_id: &str, now_us: u64) -> Result<Medium, ApiError> {
        let live = |t: u64| now_us.saturating_sub(t) < LIFETIME_US;
        let upload = self.media.items.get(media_id).filter(|m| live(m.created_us)).cloned();
        upload
            .or_else(|| {
                let (kind, sent) = self.media.placeholder_of(media_id).filter(|&(_, t)| live(t))?;
                let (filename, content_type, bytes) = placeholder(kind);
                Some(Medium::new(kind, filename, content_type, bytes, sent))
            })
            .ok_or_else(|| ApiError::new(code::INVALID_MEDIA_ID, format!("invalid media_id `{media_id}`")))
    }

    /// Whether `media/get` would answer `media_id`: an upload, or a
    /// customer's, not older than 3 days.
    fn media_known(&self, media_id: &str, now_us: u64) -> bool {
        let live = |t: u64| now_us.saturating_sub(t) < LIFETIME_US;
        self.media.items.get(media_id).is_some_and(|m| live(m.created_us))
            || self.media.placeholder_of(media_id).is_some_and(|(_, t)| live(t))
    }

    /// 40007 unless every media id a message to a customer names is known
    /// here. WeCom refuses a `send_msg` naming a media id it does not have
    /// (never uploaded, expired, or a customer's from more than 3 days
    /// ago); taking it let a middleware pass here that fails in production.
    pub(super) fn check_media(&self, content: &Content, now_us: u64) -> Result<(), ApiError> {
        let id = match content {
            Content::Image(m) | Content::Voice(m) | Content::Video(m) | Content::File(m) => &m.media_id,
            Content::Link(l) => &l.thumb_media_id,
            Content::Miniprogram(m) => &m.thumb_media_id,
            _ => return Ok(()),
        };
        // a link's and a mini program's thumbnails are optional here
        if id.is_empty() || self.media_known(id, now_us) {
            return Ok(());
        }
        Err(ApiError::new(
            code::INVALID_MEDIA_ID,
            format!("invalid media_id `{id}`: not uploaded, or expired"),
        ))
    }

    /// The avatar of account `open_kfid` if `media_id` is its current
    /// one (a replaced avatar's URL is gone): the upload while it is kept,
    /// if it is an image, else a 1×1 PNG. kfsim takes any media_id on
    /// `account/add` and keeps uploads 3 days, where WeCom keeps an avatar
    /// for good; the PNG keeps every avatar URL an image.
    pub fn avatar(&self, open_kfid: &str, media_id: &str, now_us: u64) -> Option<Medium> {
        let acct = self.accounts.get(*self.account_ix.get(open_kfid)?)?;
        if acct.avatar_id() != media_id {
            return None;
        }
        let upload = self.media_get(media_id, now_us).ok().filter(|m| m.kind == "image");
        Some(upload.unwrap_or_else(|| {
            let (filename, content_type, bytes) = placeholder("image");
            Medium::new("image", filename, content_type, bytes, now_us)
        }))
    }

    /// A customer sent a medium with this id: make it downloadable.
    pub(super) fn customer_medium(&mut self, kind: &'static str, media_id: &str, now_us: u64) {
        if media_id.is_empty() || self.media.items.contains_key(media_id) {
            return;
        }
        self.media.insert_placeholder(kind, media_id, now_us);
    }
}

/// `POST cgi-bin/media/upload?access_token=&type=`: a multipart body whose
/// part `media` is the file.
pub(super) async fn upload(AxState(svc): AxState<Service>, req: Request) -> Response {
    let (parts, body) = req.into_parts();
    let q = parts.uri.query();
    let (token, kind) = (query_param(q, "access_token"), query_param(q, "type"));
    let caller = Caller::of(&parts.headers);
    // who may upload is checked before the body is read
    if let Err(e) = svc.with_state(|st, now| st.check_token(&token, caller, now)) {
        return error(e);
    }
    if limit_of(&kind).is_none() {
        return error(ApiError::new(code::INVALID_TYPE, "type must be image, voice, video or file"));
    }
    let boundary = parts
        .headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|ct| multer::parse_boundary(ct).ok());
    let Some(boundary) = boundary else {
        return error(ApiError::new(code::EMPTY, "expected a multipart/form-data body with a `media` part"));
    };
    let too_large = || {
        ApiError::new(code::INVALID_SIZE, format!("upload larger than {} MB", MAX_MEDIA >> 20))
            .with_status(413)
    };
    let whole = MAX_MEDIA + (64 << 10);
    // taken as the bytes come, held until the upload is stored (the store
    // has its own cap)
    let share = Arc::new(std::sync::Mutex::new(BodyShare::new(&svc)));
    let busy = share.lock().unwrap_or_else(|p| p.into_inner()).busy();
    let body = axum::body::Body::new(Charged { inner: body, share: share.clone() });
    let constraints =
        multer::Constraints::new().size_limit(multer::SizeLimit::new().whole_stream(whole as u64));
    let mut form = multer::Multipart::with_constraints(body.into_data_stream(), boundary, constraints);
    // the body has the time any other has; the parts after `media` are
    // read too (and dropped), so that the connection can carry the next
    // request
    let read = async {
        let mut media = None;
        loop {
            let field = match form.next_field().await {
                Ok(Some(f)) => f,
                Ok(None) => break,
                Err(e) if over_budget(&e) => return Err(busy.clone()),
                Err(multer::Error::StreamSizeExceeded { .. }) => return Err(too_large()),
                Err(e) if media.is_none() => {
                    return Err(ApiError::param(format!("malformed multipart body: {e}")));
                }
                // the file is here; a broken tail leaves the rest unread
                Err(_) => break,
            };
            if media.is_some() || field.name() != Some("media") {
                continue;
            }
            let filename = field.file_name().unwrap_or("media").to_owned();
            let content_type =
                field.content_type().map_or("application/octet-stream".to_owned(), |m| m.to_string());
            let bytes = match field.bytes().await {
                Ok(b) => b,
                Err(e) if over_budget(&e) => return Err(busy.clone()),
                Err(multer::Error::StreamSizeExceeded { .. } | multer::Error::FieldSizeExceeded { .. }) => {
                    return Err(too_large());
                }
                Err(e) => return Err(ApiError::param(format!("malformed multipart body: {e}"))),
            };
            media = Some((filename, content_type, bytes));
        }
        media.ok_or_else(|| ApiError::new(code::EMPTY, "the multipart body has no `media` part with a file"))
    };
    let (filename, content_type, bytes) = match tokio::time::timeout(svc.inner.body_read, read).await {
        Ok(Ok(media)) => media,
        // the rest of a body refused for the budget is not read
        Ok(Err(e)) if e == busy => return closing(error(e)),
        Ok(Err(e)) => return error(e),
        Err(_) => return error(ApiError::param("request body not received in time").with_status(408)),
    };
    if bytes.is_empty() {
        return error(ApiError::new(code::EMPTY, "the `media` part is empty"));
    }
    match svc.with_state(|st, now| {
        st.media_upload(&kind, &filename, &content_type, bytes, now).map(|id| (id, now))
    }) {
        Ok((media_id, now)) => ok(serde_json::json!({
            "type": kind,
            "media_id": media_id,
            "created_at": (now / 1_000_000).to_string(),
        })),
        Err(e) => error(e),
    }
}

/// `GET cgi-bin/media/get?access_token=&media_id=`: the file, or a JSON
/// error.
pub(super) async fn get(AxState(svc): AxState<Service>, req: Request) -> Response {
    let q = req.uri().query();
    let (token, media_id) = (query_param(q, "access_token"), query_param(q, "media_id"));
    let caller = Caller::of(req.headers());
    let found = svc.with_state(|st, now| {
        st.check_token(&token, caller, now)?;
        st.media_get(&media_id, now)
    });
    let m = match found {
        Ok(m) => m,
        Err(e) => return error(e),
    };
    let mut resp = Body::from(m.bytes).into_response();
    let h = resp.headers_mut();
    let ct = HeaderValue::from_str(&m.content_type)
        .unwrap_or(HeaderValue::from_static("application/octet-stream"));
    h.insert(header::CONTENT_TYPE, ct);
    let safe: String = m.filename.chars().filter(|c| !c.is_control() && *c != '"' && *c != '\\').collect();
    if let Ok(v) = HeaderValue::from_str(&format!("attachment; filename=\"{safe}\"")) {
        h.insert(header::CONTENT_DISPOSITION, v);
    }
    resp
}

/// `GET /avatar/{open_kfid}/{media_id}`: an account's avatar, as
/// `account/list` names it. No access_token, as an image server's URL
/// needs none. 404 when the account has no such avatar (any more).
pub(super) async fn avatar(
    AxState(svc): AxState<Service>,
    Path((open_kfid, media_id)): Path<(String, String)>,
) -> Response {
    let Some(m) = svc.with_state(|st, now| st.avatar(&open_kfid, &media_id, now)) else {
        return error(
            ApiError::param(format!("no avatar {media_id} of account {open_kfid}")).with_status(404),
        );
    };
    let mut resp = Body::from(m.bytes).into_response();
    let ct = HeaderValue::from_str(&m.content_type)
        .unwrap_or(HeaderValue::from_static("application/octet-stream"));
    resp.headers_mut().insert(header::CONTENT_TYPE, ct);
    resp
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::service::state::Config;

    const T0: u64 = 1_700_000_000_000_000;

    #[test]
    fn uploads_follow_wecoms_size_rules_and_expire_after_three_days() {
        let mut st = State::new(Config::default());
        let img = st.media_upload("image", "a.png", "image/png", Bytes::from(vec![1; 100]), T0).unwrap();
        assert_eq!(st.media_get(&img, T0 + LIFETIME_US - 1).unwrap().bytes.len(), 100);
        assert_eq!(st.media_get(&img, T0 + LIFETIME_US).unwrap_err().code, code::INVALID_MEDIA_ID);
        let e = st
            .media_upload("voice", "v.amr", "audio/amr", Bytes::from(vec![0; (2 << 20) + 1]), T0)
            .unwrap_err();
        assert_eq!(e.code, code::INVALID_SIZE);
        assert_eq!(
            st.media_upload("file", "f", "x", Bytes::from_static(b"tiny"), T0).unwrap_err().code,
            code::INVALID_SIZE
        );
        assert_eq!(
            st.media_upload("gif", "f", "x", Bytes::from(vec![0; 10]), T0).unwrap_err().code,
            code::INVALID_TYPE
        );
        assert!(st.media_upload("file", "f", "x", Bytes::from(vec![0; MAX_MEDIA]), T0).is_ok());
        st.media.expire(T0 + LIFETIME_US);
        assert_eq!(st.media.bytes(), 0);
    }

    #[test]
    fn the_store_keeps_to_its_byte_cap_oldest_first() {
        let mut st = State::new(Config { media_cap_bytes: 1000, ..Config::default() });
        let ids: Vec<String> = (0..5)
            .map(|i| st.media_upload("file", "f", "x", Bytes::from(vec![0; 300]), T0 + i).unwrap())
            .collect();
        // each weighs its bytes, its id twice, its names and its entries
        let weight = 300 + 2 * ids[0].len() + 2 + ENTRY_OVERHEAD;
        assert_eq!(st.media.bytes(), 2 * weight);
        assert!(st.media_get(&ids[2], T0 + 10).is_err());
        assert!(st.media_get(&ids[0], T0 + 10).is_err() && st.media_get(&ids[1], T0 + 10).is_err());
        assert!(st.media_get(&ids[4], T0 + 10).is_ok());
        st.customer_medium("image", "MID", T0);
        assert_eq!(st.media_get("MID", T0).unwrap().content_type, "image/png");
    }

    #[test]
    fn a_message_may_name_only_media_kfsim_has() {
        use crate::service::model::{Link, Media};
        let mut st = State::new(Config::default());
        let img = st.media_upload("image", "a.png", "image/png", Bytes::from(vec![1; 100]), T0).unwrap();
        st.customer_medium("voice", "CUSTVOICE", T0);
        let media = |id: &str| Content::Image(Media { media_id: id.into() });
        assert!(st.check_media(&media(&img), T0).is_ok());
        assert!(st.check_media(&media("CUSTVOICE"), T0).is_ok(), "a customer's media id may be sent back");
        assert_eq!(st.check_media(&media("never"), T0).unwrap_err().code, code::INVALID_MEDIA_ID);
        assert_eq!(st.check_media(&media(&img), T0 + LIFETIME_US).unwrap_err().code, code::INVALID_MEDIA_ID);
        let link = |thumb: &str| {
            let (title, desc, url, pic_url) = ("t".into(), String::new(), "https://a".into(), String::new());
            Content::Link(Link { title, desc, url, pic_url, thumb_media_id: thumb.into() })
        };
        assert!(st.check_media(&link(""), T0).is_ok());
        assert_eq!(st.check_media(&link("never"), T0).unwrap_err().code, code::INVALID_MEDIA_ID);
        assert!(st.check_media(&Content::text("no media"), T0).is_ok());
    }

    /// Each customer message with a media id made a placeholder upload of
    /// it, weighed by its few bytes of content only: the store's 256 MiB
    /// held millions of them, and a soak's service grew by a megabyte a
    /// minute. Customers' media ids are kept compactly now, for 3 days and
    /// at most the configured count, oldest first.
    #[test]
    fn customers_media_ids_are_bounded_by_count_and_age() {
        let mut st = State::new(Config { sync_log_cap: 3, ..Config::default() });
        for (i, kind) in ["image", "voice", "video", "file"].into_iter().enumerate() {
            st.customer_medium(kind, &format!("m{i}"), T0 + i as u64);
        }
        assert_eq!(st.media_get("m0", T0 + 10).unwrap_err().code, code::INVALID_MEDIA_ID, "pushed out");
        assert_eq!(st.media_get("m1", T0 + 10).unwrap().content_type, "audio/amr");
        assert_eq!(st.media_get("m3", T0 + 10).unwrap().kind, "file");
        assert_eq!(st.media.bytes(), 3 * PLACEHOLDER_WEIGHT);
        // sent again: kept from the later send
        st.customer_medium("voice", "m1", T0 + 100);
        st.media.expire(T0 + 3 + LIFETIME_US);
        assert!(st.media_get("m1", T0 + 3 + LIFETIME_US).is_ok());
        assert!(st.media_get("m2", T0 + 3 + LIFETIME_US).is_err());
        st.media.expire(T0 + 100 + LIFETIME_US);
        assert_eq!(st.media.bytes(), 0);
    }
}
