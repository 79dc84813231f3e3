// A small KF middleware written with node-easywechat 3.6 (the Node.js port
// of EasyWeChat), as a user writes one: the same reactions as
// wechatpy_middleware.py, through the other SDK family. WeCom calls it back
// (`kf_msg_or_event`), EasyWeChat's Server checks the signature and
// decrypts the callback, and the middleware pulls the messages with
// `sync_msg` (with the callback's Token, until `has_more` is 0, keeping its
// cursor), welcomes a customer with the `welcome_code`, answers the first
// text as a bot, and then puts the session in the waiting pool.
//
// Run it against kfsim (nothing here knows it is not WeCom but the base URL):
//
//   npm install node-easywechat@3.6 node-socialite@~1.4.1
//   KFSIM_API=http://127.0.0.1:8080/ node easywechat_middleware.js --port 8000
//   kfsim serve --addr 127.0.0.1:8080 --scenario scenarios/quickstart.toml --api-managed \
//       --callback-url http://127.0.0.1:8000/kf/callback \
//       --callback-token kfsimToken --callback-aes-key jWmYm7qr5nMoAUwZRjGtBxmz3KA1tkAj3ykkR6q2B2C
//
// Settings come from the environment: KFSIM_API (WeCom's base URL, ending
// in /), KF_CORPID, KF_SECRET, KF_TOKEN, KF_AES_KEY. GET /stats answers
// what it did as JSON, with the keys of wechatpy_middleware.py's, so a test
// can reconcile it with kfsim's report.
const http = require('http');
const { Work } = require('node-easywechat');
const ServerRequest = require('node-easywechat/dist/Core/Http/ServerRequest');
const Server = require('node-easywechat/dist/Work/Server');

const env = (k, d) => process.env[k] || d;
const app = new Work({
  corp_id: env('KF_CORPID', 'kfsim'),
  secret: env('KF_SECRET', 'kfsim-secret'),
  token: env('KF_TOKEN', 'kfsimToken'),
  aes_key: env('KF_AES_KEY', 'jWmYm7qr5nMoAUwZRjGtBxmz3KA1tkAj3ykkR6q2B2C'),
  http: { baseURL: env('KFSIM_API', 'https://qyapi.weixin.qq.com/') },
});
const client = app.getClient();

const stats = { callbacks: 0, synced: 0, welcomed: 0, bot_replies: 0, handed_off: 0, answers_dropped: 0, errors: {} };
let cursor = '';

// A WeCom error (errcode ≠ 0) is counted and raised; node-easywechat
// returns it as an answer.
async function call(path, body) {
  const r = (await client.postJson(path, body)).toObject();
  if (r.errcode) {
    stats.errors[r.errcode] = (stats.errors[r.errcode] || 0) + 1;
    const e = new Error(`${path}: ${r.errcode} ${r.errmsg}`);
    e.wecom = true;
    throw e;
  }
  return r;
}

async function handle(m) {
  if (m.msgtype === 'event') {
    const ev = m.event;
    if (ev.event_type === 'enter_session' && ev.welcome_code) {
      await call('cgi-bin/kf/send_msg_on_event', {
        code: ev.welcome_code, msgtype: 'text', text: { content: 'Welcome! How can we help?' },
      });
      stats.welcomed += 1;
    }
    return;
  }
  if (m.origin !== 3) return;
  const who = { open_kfid: m.open_kfid, external_userid: m.external_userid };
  const state = (await call('cgi-bin/kf/service_state/get', who)).service_state;
  if (state !== 0 && state !== 1) return;
  await call('cgi-bin/kf/send_msg', {
    touser: m.external_userid, open_kfid: m.open_kfid, msgtype: 'text',
    text: { content: 'Hello, I am the bot. A colleague will take over.' },
  });
  stats.bot_replies += 1;
  await call('cgi-bin/kf/service_state/trans', { ...who, service_state: 2 });
  stats.handed_off += 1;
}

async function onCallback(token) {
  for (;;) {
    const page = await call('cgi-bin/kf/sync_msg', { token, cursor, limit: 1000 });
    for (const m of page.msg_list || []) {
      stats.synced += 1;
      try {
        await handle(m);
      } catch (e) {
        if (!e.wecom) throw e;
      }
    }
    cursor = page.next_cursor;
    if (!page.has_more) break;
  }
}

// One sync at a time: the cursor is read and written whole.
let syncing = Promise.resolve();
const serially = (f) => {
  const run = syncing.then(f, f);
  syncing = run.catch(() => {});
  return run;
};

http.createServer(async (req, res) => {
  const answer = (status, text) => {
    if (res.destroyed) {
      stats.answers_dropped += 1;
      return;
    }
    res.writeHead(status, { 'Content-Length': Buffer.byteLength(text) });
    res.end(text);
  };
  try {
    if (req.method === 'GET' && req.url === '/stats') return answer(200, JSON.stringify(stats));
    const request = await ServerRequest.createFromIncomingMessage(req);
    // a Server per request: EasyWeChat's keeps the handlers it is given
    const server = new Server(app.getEncryptor(), request);
    server.with(async (message, next) => {
      if (message.Event === 'kf_msg_or_event') {
        stats.callbacks += 1;
        try {
          await serially(() => onCallback(message.Token));
        } catch (e) {
          if (!e.wecom) throw e;
        }
      }
      return next(message);
    });
    const response = await server.serve();
    answer(response.getStatusCode(), String(response.getBody()));
  } catch (e) {
    // a bad signature or key: not from WeCom
    answer(403, String(e && e.message ? e.message : e));
  }
}).listen(Number(process.argv[process.argv.indexOf('--port') + 1] || 8000), '127.0.0.1', function () {
  console.log(`listening on ${this.address().port}`);
});
