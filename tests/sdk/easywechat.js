// node-easywechat 3.6 (the Node.js port of EasyWeChat) against kfsim serve,
// configured as for WeCom but for its base URL. Run by tests/sdk.rs:
//   node easywechat.js BASE_URL OPEN_KFID TOKEN AES_KEY ECHOSTR SIGNATURE TIMESTAMP NONCE
// Prints one JSON line of what each call answered.
const { Work } = require('node-easywechat');

const [base, kf, token, aesKey, echostr, signature, timestamp, nonce] = process.argv.slice(2);
const app = new Work({
  corp_id: 'kfsim',
  secret: 'kfsim-secret',
  token,
  aes_key: aesKey,
  http: { baseURL: `${base}/` },
});

(async () => {
  const client = app.getClient();
  const out = {};
  const call = async (name, p) => {
    const r = await p;
    out[name] = r.toObject();
    return out[name];
  };
  await call('account_list', client.postJson('cgi-bin/kf/account/list', { offset: 0, limit: 100 }));
  await call('contact_way', client.postJson('cgi-bin/kf/add_contact_way', { open_kfid: kf, scene: 'web' }));
  await call('servicer_list', client.get('cgi-bin/kf/servicer/list', { params: { open_kfid: kf } }));
  const sync = await call('sync_msg', client.postJson('cgi-bin/kf/sync_msg', { open_kfid: kf, cursor: '', limit: 1000 }));
  const enter = sync.msg_list.find((m) => m.msgtype === 'event' && m.event.event_type === 'enter_session');
  const text = sync.msg_list.find((m) => m.origin === 3);
  await call('welcome', client.postJson('cgi-bin/kf/send_msg_on_event', {
    code: enter.event.welcome_code, msgtype: 'text', text: { content: 'welcome from node-easywechat' },
  }));
  await call('send_msg', client.postJson('cgi-bin/kf/send_msg', {
    touser: text.external_userid, open_kfid: kf, msgtype: 'text', text: { content: 'a bot answer' },
  }));
  const who = { open_kfid: kf, external_userid: text.external_userid };
  await call('state_bot', client.postJson('cgi-bin/kf/service_state/get', who));
  await call('trans', client.postJson('cgi-bin/kf/service_state/trans', { ...who, service_state: 2 }));
  await call('state_human', client.postJson('cgi-bin/kf/service_state/get', who));
  await call('batchget', client.postJson('cgi-bin/kf/customer/batchget', { external_userid_list: [text.external_userid] }));
  const now = Math.floor(Date.now() / 1000);
  await call('corp_statistic', client.postJson('cgi-bin/kf/get_corp_statistic', { open_kfid: kf, start_time: now, end_time: now }));
  await call('upgrade_config', client.get('cgi-bin/kf/customer/get_upgrade_service_config'));
  // the callback URL check, as node-easywechat's server does it
  out.echostr = app.getEncryptor().decrypt(echostr, signature, nonce, timestamp);
  console.log(JSON.stringify(out));
})().catch((e) => {
  console.error(e && e.stack ? e.stack : e);
  process.exit(1);
});
